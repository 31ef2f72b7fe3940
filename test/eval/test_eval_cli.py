"""`ros3d-agent eval score` end to end on small annotation/prediction JSONL files, and its errors.

One subprocess per benchmark (stdout must be exactly one JSON object); error handling runs
in-process to keep the suite fast. All runs use --no-java: METEOR's Java start-up is covered once,
in test_caption_metrics.py.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ros3d_agent.commands import eval as eval_cmd
from ros3d_agent.scene.annotations.records import AnnotationRecord, write_annotations

UNIT = [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
THIRD = [0.5, 0.0, 0.0, 1.0, 1.0, 1.0]  # IoU 1/3 with UNIT
FAR = [9.0, 9.0, 9.0, 1.0, 1.0, 1.0]
G2 = [5.0, 0.0, 0.0, 1.0, 1.0, 1.0]
G2_THIRD = [5.5, 0.0, 0.0, 1.0, 1.0, 1.0]  # IoU 1/3 with G2
S1 = "the red chair near the window"
S2 = "a small blue lamp on a desk"
SITUATION = {"text": "I am facing the door.", "position": [0.0, 0.0, 0.0], "yaw": 0.0}


def _rec(id: str, task: str, **kw) -> AnnotationRecord:
    base = {"id": id, "scene_id": "scene0000_00", "task": task, "question": "q?", "answers": [], "object_ids": [], "boxes": []}
    base.update(kw)
    return AnnotationRecord.from_dict(base)


GT_RECORDS = [
    _rec("qa-1", "qa", answers=["red", "crimson"]),
    _rec("qa-2", "qa", answers=["two chairs"]),
    _rec("qa-3", "qa", answers=["blue"]),
    _rec("sqa-1", "situated_qa", answers=["left"], situation=SITUATION, meta={"qtype": "which"}),
    _rec("sqa-2", "situated_qa", answers=["chair"], situation=SITUATION, meta={"qtype": "what"}),
    _rec("g-1", "ground", object_ids=[1], boxes=[UNIT]),
    _rec("g-2", "ground", object_ids=[1], boxes=[UNIT]),
    _rec("g-3", "ground", object_ids=[1], boxes=[UNIT]),
    _rec("m-1", "multi_ground", object_ids=[1, 2], boxes=[UNIT, G2]),
    _rec("m-2", "multi_ground"),  # zero-target
    _rec("c-1", "caption", answers=[S1], object_ids=[1], boxes=[UNIT], box=UNIT),
    _rec("c-2", "caption", answers=[S2], object_ids=[2], boxes=[G2], box=G2),
]

PREDICTIONS = [
    {"id": "qa-1", "answer": "red"},  # qa-2 missing
    {"id": "qa-3", "answer": "blue."},  # not EM (raw match), EM-R; "blue" for the caption metrics
    {"id": "sqa-1", "answer": "The Left."},  # EM after clean-up
    {"id": "sqa-2", "answer": "brown chair"},  # EM-R only
    {"id": "g-1", "boxes": [UNIT], "scores": [0.9]},  # IoU 1
    {"id": "g-2", "boxes": [THIRD, UNIT], "scores": [0.8, 0.1]},  # top-1 IoU 1/3; g-3 missing
    {"id": "m-1", "boxes": [UNIT, G2_THIRD, FAR]},  # F1 (0.8, 0.4)
    {"id": "m-2", "boxes": []},  # zero-target, nothing predicted: F1 1
    {"id": "c-1", "answer": S1, "box": UNIT},  # hit
    {"id": "c-2", "answer": S2, "box": G2_THIRD},  # box IoU 1/3: scored as the empty caption
    {"id": "zzz", "answer": "not a GT id"},
]
N_PRED = len(PREDICTIONS)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("eval")
    gt, pred = d / "gt.jsonl", d / "pred.jsonl"
    write_annotations(gt, GT_RECORDS)
    pred.write_text("".join(json.dumps(p) + "\n" for p in PREDICTIONS), encoding="utf-8")
    return gt, pred


def _cli(*args: str) -> subprocess.CompletedProcess:
    """The real command line: `ros3d-agent eval ...` once registered in cli.py, else the same parser driven directly."""
    from ros3d_agent import cli

    if "eval" in cli.COMMANDS:
        cmd = [sys.executable, "-m", "ros3d_agent.cli", "eval", *args]
    else:
        driver = ("import argparse, sys\nfrom ros3d_agent.commands import eval as e\n"
                  "p = argparse.ArgumentParser(prog='ros3d-agent eval'); e.add_arguments(p)\n"
                  "sys.exit(e.main(p.parse_args(sys.argv[1:])))")
        cmd = [sys.executable, "-c", driver, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=dict(os.environ))


def _score(benchmark: str, files: tuple[Path, Path]) -> dict:
    gt, pred = files
    out = _cli("score", "--benchmark", benchmark, "--pred", str(pred), "--gt", str(gt), "--no-java")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # the whole of stdout is one JSON object


def test_scanqa(files):
    r = _score("scanqa", files)
    assert (r["benchmark"], r["task"], r["units"], r["n"], r["missing"]) == ("scanqa", "qa", "percent", 3, 1)
    assert r["missing_ids"] == ["qa-2"] and r["extra"] == N_PRED - 2
    m = r["metrics"]
    assert list(m) == ["EM", "EM-R", "CIDEr", "BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L"]
    assert m["EM"] == pytest.approx(100 / 3) and m["EM-R"] == pytest.approx(200 / 3)
    # CIDEr per sample: qa-1 "red" vs {"red", "crimson"}: unigram cosine 1 with one of two references
    # -> 10 * (1/4) / 2 = 1.25; qa-2 missing -> "" -> 0; qa-3 "blue." stripped to "blue" -> 10 * (1/4) = 2.5.
    # Mean 3.75 / 3 = 1.25 -> 125
    assert m["CIDEr"] == pytest.approx(125.0)
    assert m["METEOR"] is None


def test_sqa3d(files):
    r = _score("sqa3d", files)
    assert (r["n"], r["missing"]) == (2, 0)
    assert r["metrics"] == {"EM": 50.0, "EM-R": 100.0}
    assert r["per_type"] == {"what": {"n": 1, "EM": 0.0, "EM-R": 100.0}, "which": {"n": 1, "EM": 100.0, "EM-R": 100.0}}


def test_scanrefer(files):
    r = _score("scanrefer", files)
    assert (r["n"], r["missing"], r["missing_ids"]) == (3, 1, ["g-3"])
    assert r["metrics"]["Acc@0.25"] == pytest.approx(200 / 3)  # IoU 1 and 1/3 pass, missing fails
    assert r["metrics"]["Acc@0.5"] == pytest.approx(100 / 3)


def test_multi3drefer(files):
    r = _score("multi3drefer", files)
    assert r["n"] == 2 and r["counts"]["zero_target_gt"] == 1
    assert r["metrics"]["F1@0.25"] == pytest.approx(90.0)  # mean(0.8, 1.0)
    assert r["metrics"]["F1@0.5"] == pytest.approx(70.0)  # mean(0.4, 1.0)


def test_scan2cap(files):
    r = _score("scan2cap", files)
    assert r["n"] == 2 and r["counts"]["hits"] == 1 and r["counts"]["misses"] == 1
    assert r["metrics"]["CIDEr@0.5"] == pytest.approx(500.0)  # mean(10, 0) x 100
    assert r["metrics"]["METEOR@0.5"] is None


def test_bad_file_exits_2_with_nothing_on_stdout(tmp_path, files):
    gt, _ = files
    out = _cli("score", "--benchmark", "scanqa", "--pred", str(tmp_path / "nope.jsonl"), "--gt", str(gt), "--no-java")
    assert out.returncode == 2 and out.stdout == ""
    assert "nope.jsonl" in out.stderr and "cannot open" in out.stderr


def test_score_and_run_are_listed():
    p = argparse.ArgumentParser()
    eval_cmd.add_arguments(p)
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == ["score", "run"]


# -- errors, in-process -----------------------------------------------------------------------------
def _main(capsys, *args: str) -> tuple[int, str, str]:
    p = argparse.ArgumentParser()
    eval_cmd.add_arguments(p)
    rc = eval_cmd.main(p.parse_args(["score", *args]))
    out = capsys.readouterr()
    return rc, out.out, out.err


def _write(path: Path, lines: list) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "benchmark, lines, message",
    [
        ("scanrefer", [{"id": "g-1", "boxes": [[0, 0, 0, 1, 1]]}], "pred.jsonl:1: prediction 'g-1': boxes[0]"),
        ("scanrefer", [{"id": "g-1", "boxes": [[0, 0, 0, -1, 1, 1]]}], "sizes must be >= 0"),
        ("scanrefer", [{"id": "g-1", "boxes": [UNIT, UNIT], "scores": [0.1, 0.9]}], "best first"),
        ("scanrefer", [{"id": "g-1", "answer": "x"}], "has no 'boxes'"),
        ("scanqa", [{"id": "qa-1", "answers": ["red"]}], "unknown field(s) ['answers']"),
        ("scanqa", ["{not json"], "pred.jsonl:1: not valid JSON"),
        ("scanqa", [{"id": "qa-1", "answer": "a"}, {"id": "qa-1", "answer": "b"}], "duplicate id 'qa-1'"),
        ("scanqa", [{"id": "g-1", "boxes": [UNIT]}], "none of the 1 prediction id(s)"),
        ("scanqa", [{"id": 7, "answer": "red"}], "id: expected a non-empty string"),
        ("scanqa", [], "no predictions"),
    ],
)
def test_bad_predictions_exit_2(tmp_path, files, capsys, benchmark, lines, message):
    gt, _ = files
    pred = _write(tmp_path / "pred.jsonl", lines)
    rc, out, err = _main(capsys, "--benchmark", benchmark, "--pred", str(pred), "--gt", str(gt), "--no-java")
    assert rc == 2 and out == ""
    assert message in err


def test_gt_problems_exit_2(tmp_path, files, capsys):
    _, pred = files
    rc, out, err = _main(capsys, "--benchmark", "scanqa", "--pred", str(pred), "--gt", str(tmp_path / "missing.jsonl"), "--no-java")
    assert rc == 2 and out == "" and "missing.jsonl" in err
    only_qa = tmp_path / "qa.jsonl"
    write_annotations(only_qa, GT_RECORDS[:2])
    rc, out, err = _main(capsys, "--benchmark", "scanrefer", "--pred", str(pred), "--gt", str(only_qa), "--no-java")
    assert rc == 2 and "no such record" in err and "['qa']" in err


def test_strict_turns_missing_and_extra_into_errors(files, capsys):
    gt, pred = files
    rc, out, err = _main(capsys, "--benchmark", "scanrefer", "--pred", str(pred), "--gt", str(gt), "--no-java", "--strict")
    assert rc == 2 and out == "" and "strict" in err and "g-3" in err


def test_notes_go_to_stderr(files, capsys):
    gt, pred = files
    rc, out, err = _main(capsys, "--benchmark", "scanqa", "--pred", str(pred), "--gt", str(gt), "--no-java")
    assert rc == 0 and json.loads(out)["metrics"]["EM"] == pytest.approx(100 / 3)
    assert "note: METEOR not computed" in err and "note: 1 GT id(s) without a prediction" in err


def test_missing_prediction_for_a_zero_target_query_is_wrong():
    """Absent is not "predicted nothing": a missing zero-target prediction scores F1 0, not 1."""
    from ros3d_agent.eval.benchmarks import score_benchmark
    from ros3d_agent.eval.predictions import Prediction

    gt = [r for r in GT_RECORDS if r.task == "multi_ground"]
    preds = {"m-1": Prediction(id="m-1", boxes=[UNIT, G2_THIRD, FAR])}
    r = score_benchmark("multi3drefer", gt, preds, java=False)
    assert r.metrics["F1@0.25"] == pytest.approx(40.0) and r.metrics["F1@0.5"] == pytest.approx(20.0)
    assert r.missing_ids == ["m-2"]


def test_multi_ground_records_whose_boxes_were_not_found_are_left_out():
    from ros3d_agent.eval.benchmarks import score_benchmark
    from ros3d_agent.eval.predictions import Prediction

    lost = _rec("m-3", "multi_ground", object_ids=[7], meta={"boxes_missing": True})
    gt = [r for r in GT_RECORDS if r.task == "multi_ground"] + [lost]
    preds = {"m-1": Prediction(id="m-1", boxes=[UNIT, G2_THIRD, FAR]), "m-2": Prediction(id="m-2", boxes=[]),
             "m-3": Prediction(id="m-3", boxes=[])}
    r = score_benchmark("multi3drefer", gt, preds, java=False)
    assert r.n == 2 and r.counts["gt_boxes_missing"] == 1 and r.extra_ids == [] and r.missing_ids == []
    assert r.metrics["F1@0.25"] == pytest.approx(90.0)  # m-3 would have scored 1 as a fake zero-target


def test_answers_empty_after_clean_up_are_counted():
    from ros3d_agent.eval.benchmarks import score_benchmark
    from ros3d_agent.eval.predictions import Prediction

    gt = [r for r in GT_RECORDS if r.task == "situated_qa"]
    preds = {"sqa-1": Prediction(id="sqa-1", answer=" . "), "sqa-2": Prediction(id="sqa-2", answer="table")}
    r = score_benchmark("sqa3d", gt, preds, java=False)
    assert r.metrics == {"EM": 0.0, "EM-R": 50.0}  # " . " cleans to "" and is EM-R-correct, as in the reference
    assert r.counts["empty_answers"] == 1 and any("empty after clean-up" in n for n in r.notes)
