"""The ablation rows really switch what they claim to, and the table reads back the runs' own files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.ablation import BENCHMARK_COLUMNS, ROWS, build_table, main
from training.config import load_config, parse_set_option
from training.model_init import resolve_model_config

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "training" / "configs" / "cpu_proof.yaml"


def _row_model(row):
    overrides = dict(parse_set_option(item) for item in row.overrides)
    cfg = load_config(CONFIG, overrides, check_paths=False)
    model_cfg = resolve_model_config(cfg)
    cfg.validate_against_model(model_cfg)
    return model_cfg


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_each_row_switches_exactly_its_components(row) -> None:
    m = _row_model(row)
    ross = m.ross3d
    has = {
        "vision": m.visual_input,
        "cross_view": ross is not None and ross.cross_view,
        "bev": ross is not None and ross.bev,
        "3drs": m.alignment3drs is not None,
    }
    expected = {
        "text_only": {"vision": False, "cross_view": False, "bev": False, "3drs": False},
        "video3dllm": {"vision": True, "cross_view": False, "bev": False, "3drs": False},
        "cross_view": {"vision": True, "cross_view": True, "bev": False, "3drs": False},
        "bev": {"vision": True, "cross_view": False, "bev": True, "3drs": False},
        "ross3d": {"vision": True, "cross_view": True, "bev": True, "3drs": False},
        "3drs": {"vision": True, "cross_view": False, "bev": False, "3drs": True},
        "all": {"vision": True, "cross_view": True, "bev": True, "3drs": True},
    }[row.name]
    assert has == expected
    # everything else is identical: same backbone sizes in every row
    base = _row_model(ROWS[-1])
    assert (m.vision, m.language, m.projector) == (base.vision, base.language, base.projector)


def test_table_is_read_from_the_runs_metrics(tmp_path) -> None:
    run = tmp_path / "video3dllm"
    (run / "final" / "eval" / "scanqa-test").mkdir(parents=True)
    (run / "run_summary.json").write_text(json.dumps({"steps": 1500, "elapsed_s": 600.0}))
    (run / "final" / "eval" / "scanqa-test" / "metrics.json").write_text(
        json.dumps({"n": 400, "metrics": {"EM": 41.25, "CIDEr": 80.0}}))
    records, table = build_table(tmp_path, [r for r in ROWS if r.name in ("video3dllm", "all")])
    assert records[0]["scanqa.EM"] == 41.25 and records[0]["scanqa.n"] == 400 and records[0]["steps"] == 1500
    assert "scanrefer.Acc@0.25" not in records[0]  # not evaluated: left empty, never invented
    lines = table.splitlines()
    assert len(lines) == 4 and lines[2].startswith("| video3dllm | 1500 | 10.0 | 41.2 | 80.0 | –")
    assert lines[3].startswith("| all | – | – | –")
    assert len(lines[0].split("|")) - 2 == 3 + sum(len(k) for _, k in BENCHMARK_COLUMNS)


def test_unknown_row_is_a_clear_error(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--config", str(CONFIG), "--out", "/nonexistent", "--rows", "video3dllm,nope", "--table-only"])
    assert "unknown row(s) ['nope']" in capsys.readouterr().err


def test_scanqa_em_by_question_type(tmp_path) -> None:
    from training.ablation import qa_em_by_type

    ann = tmp_path / "test.jsonl"
    recs = [{"id": f"s-qa-{i}", "scene_id": "s", "task": "qa", "question": "q?", "answers": [a], "object_ids": [], "boxes": [], "meta": {"qtype": t}}
            for i, (a, t) in enumerate([("red", "color"), ("blue", "color"), ("2", "count"), ("yes", "exist")])]
    ann.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    pred = tmp_path / "video3dllm" / "final" / "eval" / "scanqa-test"
    pred.mkdir(parents=True)
    answers = ["red", "green", "2", "no"]
    (pred / "predictions.jsonl").write_text("\n".join(json.dumps({"id": f"s-qa-{i}", "answer": a}) for i, a in enumerate(answers)) + "\n")
    out = qa_em_by_type(tmp_path, [r for r in ROWS if r.name in ("text_only", "video3dllm")], ann)
    assert out == {"video3dllm": {"color": 50.0, "count": 100.0, "exist": 0.0, "_n": 4.0}}
