"""Replay inputs: question files with ask_at, scenario files merged with the command line, topic remaps."""

from __future__ import annotations

import argparse
import json

import pytest

from ros3d_agent.replay.scenario import (
    ModelChoice,
    ReplayError,
    TopicMap,
    format_param_value,
    node_param_values,
    parse_param_overrides,
    read_questions,
)


def _record(i: int, task: str = "qa", **extra) -> dict:
    d = {"id": f"s-{task}-{i}", "scene_id": "s", "task": task, "question": f"question {i}?", "answers": ["yes"],
         "object_ids": [], "boxes": []}
    d.update(extra)
    return d


def test_questions_take_ask_at_at_top_level_or_in_meta(tmp_path):
    f = tmp_path / "q.jsonl"
    f.write_text("\n".join(json.dumps(d) for d in [_record(0, ask_at=1.5), _record(1, meta={"ask_at": 2, "qtype": "x"}), _record(2)]) + "\n\n")
    qs = read_questions(f)
    assert [q.ask_at for q in qs] == [1.5, 2.0, None]
    assert qs[1].record.meta == {"qtype": "x"}  # ask_at is not ground truth: it leaves meta
    assert [q.ask_at for q in read_questions(f, default_ask_at=9.0)] == [1.5, 2.0, 9.0]
    assert qs[0].due_ns(1_000) == 1_000 + 1_500_000_000 and qs[2].due_ns(1_000) is None


@pytest.mark.parametrize("line, message", [
    ("{not json", "not valid JSON"),
    (json.dumps(_record(0, ask_at=-1)), "ask_at must be a number of seconds >= 0"),
    (json.dumps(_record(0, answerz=["x"])), "unknown field"),
    (json.dumps(_record(0, task="ground")), "exactly one target box"),
])
def test_bad_question_lines_name_file_and_line(tmp_path, line, message):
    f = tmp_path / "q.jsonl"
    f.write_text(json.dumps(_record(9)) + "\n" + line + "\n")
    with pytest.raises(ReplayError, match=message) as err:
        read_questions(f)
    assert f"{f}:2" in str(err.value)


def test_duplicate_ids_and_empty_files_are_refused(tmp_path):
    f = tmp_path / "q.jsonl"
    f.write_text(json.dumps(_record(0)) + "\n" + json.dumps(_record(0)) + "\n")
    with pytest.raises(ReplayError, match="duplicate id"):
        read_questions(f)
    f.write_text("\n")
    with pytest.raises(ReplayError, match="holds no question"):
        read_questions(f)


def test_ask_text_carries_situation_and_caption_object_as_the_node_parses_them():
    from ros3d_agent.replay.scenario import ReplayQuestion
    from ros3d_agent.scene.annotations.records import AnnotationRecord

    sit = AnnotationRecord.from_dict(_record(0, "situated_qa", situation={"text": "I face the sofa.", "position": [1, 2, 0], "yaw": 0.5}))
    assert ReplayQuestion(sit).ask_text() == "situation: I face the sofa. question: question 0?"
    cap = AnnotationRecord.from_dict(_record(1, "caption", box=[1, 1, 1, 0.5, 0.5, 0.5]))
    assert ReplayQuestion(cap).ask_text(17) == "#17 question 1?"
    with pytest.raises(ValueError):
        ReplayQuestion(cap).ask_text()


def test_topic_map_remaps_only_what_differs():
    assert TopicMap().node_remaps(False) == []
    t = TopicMap(color="/head/rgb", depth="/head/depth", color_info="/head/rgb_info")
    assert t.node_remaps(False) == ["/camera/color/image_raw:=/head/rgb", "/camera/aligned_depth_to_color/image_raw:=/head/depth",
                                    "/camera/color/camera_info:=/head/rgb_info"]
    assert len(t.node_remaps(True)) == 3  # depth_info unchanged
    with pytest.raises(ReplayError, match="must differ"):
        TopicMap(color="/a", depth="/a")
    with pytest.raises(ReplayError, match="absolute"):
        TopicMap(color="relative/topic")


def test_param_overrides_parse_like_ros_and_format_back():
    p = parse_param_overrides(["keyframes.min_interval_sec:=0.1", "model.warmup:=false", "fixed_frame:=world", "query.queue_size:=8"])
    assert p == {"keyframes.min_interval_sec": 0.1, "model.warmup": False, "fixed_frame": "world", "query.queue_size": 8}
    assert [format_param_value(v) for v in (0.1, False, "world", 8, "")] == ["0.1", "false", "world", "8", "''"]
    with pytest.raises(ReplayError, match="name:=value"):
        parse_param_overrides(["oops"])
    values = node_param_values("workstation", p)
    assert values["fixed_frame"] == "world" and values["sync.slop_sec"] == 0.02


def test_model_choice_is_checked():
    with pytest.raises(ReplayError, match="no model"):
        ModelChoice().validate()
    with pytest.raises(ReplayError, match="allow-random-weights"):
        ModelChoice(preset="tiny").validate()
    with pytest.raises(ReplayError, match="does not exist"):
        ModelChoice(checkpoint="/nonexistent/ckpt").validate()
    ModelChoice(preset="tiny", allow_random_weights=True).validate()


def test_scenario_file_fills_what_the_command_line_leaves_out(tmp_path):
    from ros3d_agent.commands.replay import add_arguments, scenario_from_args

    (tmp_path / "sc.yaml").write_text(
        "bag: bags/run1\nquestions: q.jsonl\nout: results\nmode: realtime\nrate: 0.5\n"
        "model: {preset: tiny, allow_random_weights: true, device: cpu}\n"
        "topics: {color: /head/rgb, camera_info: /head/rgb_info}\nparams: {keyframes.min_interval_sec: 0.1}\nrepeat: 2\n")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    sc = scenario_from_args(parser.parse_args(["--scenario", str(tmp_path / "sc.yaml"), "--rate", "2", "-p", "query.queue_size:=8"]))
    assert sc.bag == tmp_path / "bags/run1" and sc.questions == tmp_path / "q.jsonl" and sc.out == tmp_path / "results"
    assert sc.mode == "realtime" and sc.rate == 2.0 and sc.repeat == 2
    assert sc.model == ModelChoice(preset="tiny", allow_random_weights=True, device="cpu")
    assert sc.topics.color == "/head/rgb" and sc.topics.color_info == "/head/rgb_info" and sc.topics.depth == TopicMap().depth
    assert sc.params == {"keyframes.min_interval_sec": 0.1, "query.queue_size": 8}
    (tmp_path / "bad.yaml").write_text("bag: x\nbagg: y\n")
    with pytest.raises(ReplayError, match="unknown key"):
        scenario_from_args(parser.parse_args(["--scenario", str(tmp_path / "bad.yaml")]))
    with pytest.raises(ReplayError, match="missing --bag, --questions, --out"):
        scenario_from_args(parser.parse_args([]))
