"""Deterministic (offline) replay: real bags through the node's sync/TF/keyframe/inference code.

The model is the ``tiny`` preset with random weights (no trained checkpoint exists yet): the
answers mean nothing, but every number here comes from running the real pipeline on a real bag.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from replay_support import ROBOT_FIXED_FRAME, ROBOT_TOPICS, copy_bag, mcap_file, run_cli

from ros3d_agent.replay.bag_source import BagSource
from ros3d_agent.replay.results import write_outputs
from ros3d_agent.replay.scenario import ModelChoice, Scenario, TopicMap, node_param_values, read_questions, run_scenario
from ros3d_agent.ros.ingest import message_stamp_ns
from ros3d_agent.ros.params import NodeParams

pytestmark = pytest.mark.slow
TINY = ["--preset", "tiny", "--allow-random-weights", "--device", "cpu", "--dtype", "float32", "--threads", "1", "--no-java"]
_TIMING_KEYS = ("latency_s", "timings")


def _params(**overrides) -> NodeParams:
    values = {"model.preset": "tiny", "model.allow_random_weights": True, "model.device": "cpu", "model.dtype": "float32", **overrides}
    return NodeParams.from_values(node_param_values("workstation", values))


@pytest.fixture(scope="module")
def engine():
    import torch

    from ros3d_agent.inference.engine import SceneEngine
    from ros3d_agent.replay.offline import engine_config_from_params

    torch.set_num_threads(1)
    e = SceneEngine(engine_config_from_params(_params()))
    yield e
    e.release()


def _stripped(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in _TIMING_KEYS} for r in records]


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_offline_replay_answers_every_question_through_the_node_pipeline(replay_data, engine, tmp_path):
    from ros3d_agent.replay.offline import run_offline

    source = BagSource(replay_data.bag)
    questions = read_questions(replay_data.questions)
    run = run_offline(source, TopicMap(), questions, _params(), engine=engine)
    assert run.bag_error is None and len(run.outcomes) == replay_data.n_questions
    c = run.counts
    assert (c["color_in"], c["frames_synced"], c["frames_posed"], c["frames_dropped"], c["tf_misses"]) == (24, 24, 24, 0, 0)
    assert 3 <= c["keyframes_admitted"] == c["keyframes"] <= 24
    color_stamps = {message_stamp_ns(source.deserialize(m)) for m in source.messages({TopicMap().color: "color"})}
    for o in run.outcomes:
        assert o.answer.success, (o.question.id, o.answer.error)
        assert o.answer.keyframe_stamps and set(o.answer.keyframe_stamps) <= color_stamps
        if o.question.task in ("ground", "multi_ground"):
            assert o.answer.objects and all(x.proposal_id >= 0 for x in o.answer.objects)
        if o.question.task == "caption":
            assert o.caption_object is not None and o.ask_text == f"#{o.caption_object['id']} {o.question.record.question}"
        if o.question.task == "situated_qa":
            assert o.ask_text.startswith("situation: ")
    early = run.outcomes[0]
    assert early.question.ask_at == 0.5 and early.asked_at_s == 0.5
    assert early.keyframes_in_memory < run.outcomes[-1].keyframes_in_memory  # asked mid-bag: less seen
    summary = write_outputs(run, tmp_path, {"bag_sha256": source.sha256()}, java=False)
    assert set(summary["metrics"]) == {"qa", "situated_qa", "ground", "multi_ground", "caption"}
    assert summary["metrics"]["ground"]["benchmark"] == "scanrefer" and "Acc@0.25" in summary["metrics"]["ground"]["metrics"]
    assert summary["latency_s"]["n"] == replay_data.n_questions and summary["latency_s"]["p50"] > 0
    assert summary["answered"] == replay_data.n_questions and summary["bag_complete"] and summary["determinism_digest"]
    assert (tmp_path / f"bev_{replay_data.scene.name}.png").stat().st_size > 1000
    preds = _read_jsonl(tmp_path / "predictions.jsonl")
    assert len(preds) == replay_data.n_questions
    # the predictions file is the eval format: `ros3d-agent eval score` reads it as it is
    from ros3d_agent.eval import score_files

    assert score_files("scanrefer", tmp_path / "predictions.jsonl", tmp_path / "ground_truth.jsonl", java=False).n == 2


def test_offline_replay_is_bit_for_bit_repeatable(replay_data, tmp_path):
    """Two runs in one process (fresh engines) and a third in another process give identical results."""
    sc = Scenario(bag=replay_data.bag, questions=replay_data.questions, out=tmp_path / "rep", mode="offline",
                  model=ModelChoice(preset="tiny", allow_random_weights=True, device="cpu", dtype="float32"), threads=1, repeat=2, java=False)
    lines: list[str] = []
    code, summaries = run_scenario(sc, say=lines.append)
    assert code == 0, "\n".join(lines)
    rep = json.loads((tmp_path / "rep" / "repeats.json").read_text())
    assert rep["identical"] and len(set(rep["determinism_digests"])) == 1
    a, b = (_read_jsonl(tmp_path / "rep" / f"run_{k}" / "results.jsonl") for k in (1, 2))
    assert _stripped(a) == _stripped(b)
    assert (tmp_path / "rep/run_1/predictions.jsonl").read_bytes() == (tmp_path / "rep/run_2/predictions.jsonl").read_bytes()
    code, out = run_cli(["--bag", str(replay_data.bag), "--questions", str(replay_data.questions), "--out", str(tmp_path / "cli"), *TINY])
    assert code == 0, out
    assert "frames: 24 synchronised, 24 placed by TF" in out and "latency: p50" in out
    assert json.loads((tmp_path / "cli/summary.json").read_text())["determinism_digest"] == rep["determinism_digests"][0]
    assert _stripped(_read_jsonl(tmp_path / "cli/results.jsonl")) == _stripped(a)


def test_truncated_bag_gives_a_clear_error_and_keeps_the_results(replay_data, tmp_path):
    bag = copy_bag(replay_data.bag, tmp_path / "cut")
    f = mcap_file(bag)
    os.truncate(f, int(f.stat().st_size * 0.75))
    code, out = run_cli(["--bag", str(bag), "--questions", str(replay_data.questions), "--out", str(tmp_path / "res"), *TINY])
    assert code == 3, out
    assert f"error: bag {bag} is truncated or corrupt" in out and "the results so far are in" in out
    records = _read_jsonl(tmp_path / "res/results.jsonl")
    assert len(records) == replay_data.n_questions  # nothing lost: questions still due were answered over what was read
    early, rest = records[0], records[1:]
    assert early["ask_at"] == 0.5 and early["bag_complete"] and early["success"]
    assert all(not r["bag_complete"] for r in rest)
    summary = json.loads((tmp_path / "res/summary.json").read_text())
    assert summary["bag_error"] and not summary["bag_complete"]
    assert 0 < summary["node"]["frames_synced"] < 24
    assert (tmp_path / "res/predictions.jsonl").is_file()


def test_robot_bag_with_other_topic_names_bgr8_and_its_own_tf_frames(replay_data, engine, tmp_path):
    from ros3d_agent.replay.offline import run_offline

    questions = read_questions(replay_data.questions)
    robot = run_offline(BagSource(replay_data.robot_bag), TopicMap(**ROBOT_TOPICS), questions, _params(fixed_frame=ROBOT_FIXED_FRAME),
                        engine=engine)
    assert all(o.answer.success for o in robot.outcomes), [o.answer.error for o in robot.outcomes]
    assert robot.counts["frames_posed"] == 24 and robot.counts["frames_dropped"] == 0
    standard = run_offline(BagSource(replay_data.bag), TopicMap(), questions, _params(), engine=engine)
    # the same room, seen through another driver's encodings and another robot's TF names: same keyframes, same colours
    assert [o.answer.keyframe_stamps for o in robot.outcomes] == [o.answer.keyframe_stamps for o in standard.outcomes]
    rgb_robot, rgb_std = robot.cloud[1], standard.cloud[1]
    assert abs(float(rgb_robot.mean()) - float(rgb_std.mean())) < 2.0
    assert abs(float(rgb_robot[:, 0].mean()) - float(rgb_std[:, 0].mean())) < 2.0  # bgr8 was swapped back to RGB


def test_wrong_fixed_frame_says_which_frames_the_bag_has(replay_data, engine):
    from ros3d_agent.replay.offline import run_offline

    source = BagSource(replay_data.robot_bag)
    run = run_offline(source, TopicMap(**ROBOT_TOPICS), read_questions(replay_data.questions)[:1], _params(), engine=engine)
    assert not run.outcomes[0].answer.success and run.outcomes[0].answer.error.startswith("empty_memory")
    assert run.counts["tf_misses"] == 24
    note = next(n for n in run.notes if "no frame could be placed" in n)
    assert "'map'" in note and "world -> odom_wheels" in note and "--fixed-frame" in note


def test_compressed_transport_mismatch_is_refused_before_loading_a_model(replay_data, tmp_path):
    sc = Scenario(bag=replay_data.bag, questions=replay_data.questions, out=tmp_path / "x",
                  model=ModelChoice(preset="tiny", allow_random_weights=True, device="cpu"), params={"input.color_transport": "compressed"})
    lines: list[str] = []
    code, _ = run_scenario(sc, say=lines.append)
    assert code == 2 and "carries Image" in lines[-1] and "input.color_transport:=raw" in lines[-1]
    assert not (tmp_path / "x").exists()
