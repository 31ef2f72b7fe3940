"""Real-time replay: player process (raw CDR + /clock) → the node (``ros3d-agent run``, use_sim_time)
→ questions through the AskScene action, all over real DDS on loopback in the test's own domain.

The node runs the ``tiny`` preset with random weights on the CPU; what is checked is the plumbing
(every question answered, in the fixed frame, from keyframes of the bag) and the measurements.
"""

from __future__ import annotations

import json
import os

import pytest
from replay_support import ROBOT_FIXED_FRAME, ROBOT_TOPICS, copy_bag, mcap_file, run_cli

from ros3d_agent.replay.scenario import ModelChoice, Scenario, TopicMap, run_scenario

pytestmark = [pytest.mark.ros, pytest.mark.slow]
TINY = ["--preset", "tiny", "--allow-random-weights", "--device", "cpu", "--dtype", "float32", "--no-java"]
# Three processes (player, node, client) plus pytest share CI's 2 cores: TF callbacks can then run more
# than the default 0.5 s (wall time) late, and frames would be dropped for lateness of the machine, not
# of the bag. A longer wait keeps these tests about the plumbing.
TF_WAIT = {"tf.timeout_sec": 3.0}
TF_WAIT_ARGS = [arg for name, value in TF_WAIT.items() for arg in ("-p", f"{name}:={value}")]


def _read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_realtime_replay_answers_every_question(replay_data, tmp_path):
    out = tmp_path / "rt"
    code, text = run_cli(["--mode", "realtime", "--bag", str(replay_data.bag), "--questions", str(replay_data.questions),
                          "--out", str(out), *TINY, *TF_WAIT_ARGS])
    assert code == 0, text + (out / "node.log").read_text()[-3000:] if (out / "node.log").exists() else text
    records = _read_jsonl(out / "results.jsonl")
    assert len(records) == replay_data.n_questions
    assert all(r["success"] for r in records), [(r["id"], r["error"]) for r in records if not r["success"]]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "realtime" and summary["answered"] == replay_data.n_questions and summary["bag_complete"]
    player = summary["player"]
    assert player["finished"] and not player["error"] and player["published"][TopicMap().color] == 24
    assert player["bag_seconds"] == pytest.approx(summary["bag_duration_s"], abs=1e-6)
    node = summary["node"]
    assert node["color_in"] + summary["transport_lost_color"] == 24 and node["frames_synced"] >= 12, node
    assert node["keyframes_admitted"] >= 2 and "dropped" in node and "tf_misses" in summary
    assert summary["latency_s"]["n"] == replay_data.n_questions and 0 < summary["latency_s"]["p50"] < 30
    assert set(summary["metrics"]) == {"qa", "situated_qa", "ground", "multi_ground", "caption"}
    early = records[0]
    assert early["ask_at"] == 0.5 and 0.5 <= early["asked_at_s"] < min(r["asked_at_s"] for r in records[1:])
    for r in records:
        assert r["keyframes_used"] >= 1
        if r["task"] in ("ground", "multi_ground"):
            assert r["boxes"] and len(r["boxes"]) == len(r["scores"])
        if r["task"] == "caption":
            assert r["caption_object"]["source"] == "objects of earlier grounding answers"
            assert r["ask_text"].startswith(f"#{r['caption_object']['id']} ")
    assert (out / f"bev_{replay_data.scene.name}.png").is_file()
    assert "autostart: node is active" in (out / "node.log").read_text()
    assert "the node exited with code" not in " ".join(summary["notes"])
    assert "latency: p50" in text and "frames:" in text


def test_realtime_robot_bag_with_remapped_topics_bgr8_and_other_frames(replay_data, tmp_path):
    sc = Scenario(bag=replay_data.robot_bag, questions=replay_data.questions, out=tmp_path / "robot", mode="realtime",
                  model=ModelChoice(preset="tiny", allow_random_weights=True, device="cpu", dtype="float32"),
                  topics=TopicMap(**ROBOT_TOPICS), fixed_frame=ROBOT_FIXED_FRAME, rate=2.0, java=False,
                  params=dict(TF_WAIT))
    lines: list[str] = []
    code, summaries = run_scenario(sc, say=lines.append)
    assert code == 0, "\n".join(lines)
    s = summaries[0]
    assert s["answered"] == replay_data.n_questions, s["failed"]
    assert s["node"]["frames_posed"] >= 12 and s["node"]["tf_misses"] == 0, s["node"]
    log = (tmp_path / "robot" / "node.log").read_text()
    assert f"-r /camera/color/image_raw:={ROBOT_TOPICS['color']}" in log and f"-p fixed_frame:={ROBOT_FIXED_FRAME}" in log
    assert "world -> odom_wheels -> base_footprint -> head_link -> head_rgb_optical" in log
    assert s["player"]["wall_seconds"] < s["bag_duration_s"]  # played at x2


def test_realtime_truncated_bag_reports_it_and_still_answers(replay_data, tmp_path):
    bag = copy_bag(replay_data.bag, tmp_path / "cut")
    f = mcap_file(bag)
    os.truncate(f, int(f.stat().st_size * 0.75))
    out = tmp_path / "res"
    code, text = run_cli(["--mode", "realtime", "--bag", str(bag), "--questions", str(replay_data.questions), "--out", str(out),
                          *TINY, *TF_WAIT_ARGS])
    assert code == 3, text
    assert "truncated or corrupt" in text and "the results so far are in" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["bag_error"] and summary["player"]["error"] and summary["answered"] == replay_data.n_questions
    assert 0 < summary["player"]["published"][TopicMap().color] < 24
    assert len(_read_jsonl(out / "results.jsonl")) == replay_data.n_questions
