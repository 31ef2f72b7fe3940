"""A short real training run through the CLI layer: the loss clearly goes down on a handful of
samples, tensorboard events and PNG plots are written, the final model loads as the node would
load it, and `eval run` turns it into predictions that ros3d_agent.eval scores."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.logging import read_metrics

REPO = Path(__file__).resolve().parents[2]
TINY_YAML = REPO / "training" / "configs" / "tiny_cpu.yaml"
STEPS = 60
EPOCH = 6  # 12 samples (6 QA + 6 grounding), batch 2


def _args(module, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return parser.parse_args(argv)


def _sets(overrides: dict) -> list[str]:
    return [a for k, v in overrides.items() for a in ("--set", f"{k}={json.dumps(v)}")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_data, tiny_overrides) -> dict:
    """Train through `ros3d-agent train` (its command module) on 6 QA + 6 grounding samples."""
    from ros3d_agent.commands import train as train_cmd

    out = tmp_path_factory.mktemp("run") / "overfit"
    overrides = tiny_overrides(out, **{"data.annotations": str(tiny_data["scenes"] / "annotations" / "train.jsonl"),
                                       "data.tasks": ["qa", "ground"], "optim.lr": 6e-3, "train.max_grad_norm": 2.0,
                                       "logging.plot_every": 30})
    overrides.pop("run.output_dir")
    argv = ["--config", str(TINY_YAML), "--max-steps", str(STEPS), "--output", str(out), *_sets(overrides)]
    assert train_cmd.main(_args(train_cmd, argv)) == 0
    return {"out": out, "argv": argv}


def _mean(rows: list[dict], key: str) -> float:
    vals = [r[key] for r in rows if key in r]
    assert vals, key
    return float(np.mean(vals))


def test_training_loss_clearly_decreases(trained) -> None:
    rows = read_metrics(trained["out"] / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    first, last = rows[:EPOCH], rows[-EPOCH:]
    assert _mean(last, "loss/lm") < 0.5 * _mean(first, "loss/lm")
    assert _mean(last, "loss/ground") < 0.7 * _mean(first, "loss/ground")
    assert _mean(last, "loss/align3drs") < 0.5 * _mean(first, "loss/align3drs")
    assert _mean(rows[-2 * EPOCH:], "loss/ross3d_bev") < _mean(rows[: 2 * EPOCH], "loss/ross3d_bev")
    # the task groups alternate batch by batch, never mixed in one batch
    assert {r["groups"] for r in rows} == {"qa", "grounding"}


def test_tensorboard_and_plots_are_written(trained) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = trained["out"]
    acc = EventAccumulator(str(out / "tb"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])
    expected = {f"loss/{t}" for t in ("loss", "lm", "ground", "ross3d_view", "ross3d_bev", "align3drs")}
    assert expected <= scalars and {"lr/llm", "lr/vision_tower", "perf/tokens_per_s", "perf/step_s"} <= scalars
    assert len(acc.Scalars("loss/lm")) == STEPS // 2  # logged on the QA half of the steps
    assert "recon" in acc.Tags()["images"]
    pngs = sorted((out / "plots").glob("*.png"))
    assert {p.name for p in pngs} == {"loss_curves.png", "recon_step00000030.png", "recon_step00000060.png"}
    for p in pngs:
        img = np.asarray(Image.open(p).convert("RGB"))
        assert img.shape[0] > 300 and img.shape[1] > 300 and img.std() > 10, p


def test_final_model_is_what_the_node_loads(trained) -> None:
    from ros3d_agent.model import load_checkpoint

    loaded = load_checkpoint(trained["out"] / "final")
    assert loaded.tokenizer is not None and loaded.config.preset == "tiny"
    assert not any(n.startswith("training_heads.") for n in loaded.model.state_dict())
    summary = json.loads((trained["out"] / "run_summary.json").read_text())
    assert summary["steps"] == STEPS and summary["final_model"].endswith("final")


def test_cli_refuses_bad_configs_and_existing_runs(trained, capsys) -> None:
    from ros3d_agent.commands import train as train_cmd

    assert train_cmd.main(_args(train_cmd, trained["argv"])) == 2  # checkpoints exist and no --resume
    assert "pass --resume" in capsys.readouterr().err
    assert train_cmd.main(_args(train_cmd, [*trained["argv"], "--set", "train.batch_size=0"])) == 2
    assert "train.batch_size must be >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("benchmark", ["scanqa", "scanrefer", "multi3drefer", "scan2cap"])
def test_eval_run_predictions_are_scored(trained, tiny_data, benchmark: str, tmp_path: Path) -> None:
    from ros3d_agent.commands import eval_run
    from ros3d_agent.eval import read_predictions, score_files
    from ros3d_agent.eval.benchmarks import BENCHMARKS
    from ros3d_agent.scene.annotations.records import read_annotations

    ann = tiny_data["annotations"]
    out = tmp_path / benchmark
    argv = ["--checkpoint", str(trained["out"] / "final"), "--data", str(tiny_data["scenes"]), "--benchmark", benchmark,
            "--annotations", str(ann), "--proposals", "gt", "--no-java", "--out", str(out), "--batch-size", "3"]
    assert eval_run.main(_args(eval_run, argv)) == 0
    records = [r for r in read_annotations(ann) if r.task == BENCHMARKS[benchmark].task]
    preds = read_predictions(out / "predictions.jsonl")
    assert list(preds) == [r.id for r in records]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == len(records) and metrics["missing"] == 0
    assert metrics["eval_run"]["views"]["k"] == 4  # the training run's view rule
    rescored = score_files(benchmark, out / "predictions.jsonl", ann, java=False)
    assert rescored.metrics == metrics["metrics"]
    if benchmark == "scanrefer":
        assert all(len(p.boxes) >= 2 and list(p.scores) == sorted(p.scores, reverse=True) for p in preds.values())
        assert "oracle" in metrics["eval_notes"][0]
    if benchmark == "scan2cap":
        assert all(p.box is not None and p.answer is not None for p in preds.values())


def test_eval_grounding_agrees_with_the_training_forward(trained, tiny_data, tmp_path: Path) -> None:
    """The evaluator's best box for a ScanRefer record is the proposal the training-time forward of
    the same model (same views, proposals, prompt) scores highest: no train/eval drift."""
    import torch

    from ros3d_agent.eval import read_predictions
    from ros3d_agent.model import load_checkpoint
    from training import data as data_mod
    from training.collate import collate_samples
    from training.config import load_config
    from training.evaluate import EvalRunConfig, evaluate
    from training.model_init import resolve_model_config

    ann = tiny_data["scenes"] / "annotations" / "train.jsonl"
    evaluate(EvalRunConfig(checkpoint=str(trained["out"] / "final"), data=str(tiny_data["scenes"]), benchmark="scanrefer",
                           annotations=str(ann), proposals="gt", java=False, out_dir=str(tmp_path)))
    preds = read_predictions(tmp_path / "predictions.jsonl")
    ck = load_checkpoint(trained["out"] / "final")
    cfg = load_config(TINY_YAML, {"data.scenes": str(tiny_data["scenes"]), "data.annotations": str(ann), "data.tasks": ["ground"],
                                  "data.cache_dir": str(tiny_data["cache"]), "run.output_dir": str(tmp_path / "x")})
    records = data_mod.load_records(cfg)
    scenes, views = data_mod.discover_run_scenes(cfg, resolve_model_config(cfg), records)
    specs, _, _ = data_mod.build_sample_specs(cfg, records, scenes, views)
    ds = data_mod.TrainDataset(specs, scenes, ck.tokenizer, ck.config, None, data_mod.TargetNeeds())
    batch = collate_samples([ds[i] for i in range(len(ds))], pad_id=0)
    with torch.no_grad():
        out = ck.model(batch["input_ids"], batch["attention_mask"], pixel_values=batch["pixel_values"], world_xyz=batch["world_xyz"],
                       world_valid=batch["world_valid"], proposals=batch["proposals"], proposal_valid=batch["proposal_valid"])
    for i, sid in enumerate(batch["ids"]):
        n = int(batch["proposal_valid"][i].sum())
        top = int(out.ground_logits[i, :n].argmax())
        assert preds[sid].boxes[0] == pytest.approx(batch["proposals"][i, top].tolist(), abs=1e-5), sid


def test_gradient_accumulation_counts_micro_batches(tmp_path: Path, make_config) -> None:
    """grad_accum=2: two micro-batches (each of one task group) per optimizer step, one lr step per optimizer step."""
    from training.checkpointing import find_latest_checkpoint
    from training.trainer import train

    cfg = make_config(tmp_path / "acc", **{"train.grad_accum": 2, "train.batch_size": 1, "schedule.max_steps": 3,
                                           "logging.recon_samples": 0, "checkpoint.save_final": False})
    res = train(cfg)
    assert res.steps == 3 and res.final_model is None
    state = json.loads((find_latest_checkpoint(res.run_dir) / "trainer_state.json").read_text())
    assert state["samples_seen"] == 6 and state["batch_in_epoch"] == 6
    sched = json.loads((find_latest_checkpoint(res.run_dir) / "scheduler.json").read_text())
    assert sched["last_epoch"] == 3
    rows = read_metrics(res.run_dir / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3]


def test_bundle_demo_writes_a_small_loadable_checkpoint_with_a_card(trained, tmp_path: Path) -> None:
    from safetensors import safe_open

    from ros3d_agent.model import load_checkpoint
    from training.bundle_demo import main as bundle_main

    out = tmp_path / "models" / "demo_small"
    assert bundle_main(["--run", str(trained["out"]), "--out", str(out)]) == 0
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        dtypes = {str(f.get_slice(k).get_dtype()) for k in f.keys()}
        assert not any(k.startswith("training_heads.") for k in f.keys())
    assert dtypes == {"F16"}
    loaded = load_checkpoint(out)
    assert loaded.tokenizer is not None and loaded.config.preset == "tiny"
    card = (out / "README.md").read_text()
    assert f"({STEPS} steps" in card and "random* VAE" in card
    from ros3d_agent.replay.demo import bundle_views_per_query

    trained_views = json.loads((trained["out"] / "run_config.json").read_text())["data"]["num_views"]
    assert bundle_views_per_query(out) == trained_views  # the demo asks with the training view count
    from ros3d_agent.replay.demo import bundle_score_line

    results = json.loads((out / "results.json").read_text())
    results["evaluations"] = {"scanqa-test": {"n": 10, "metrics": {"EM": 12.5}}, "scanrefer-test": {"n": 10, "metrics": {"Acc@0.25": 30.0}}}
    (out / "results.json").write_text(json.dumps(results))
    assert bundle_score_line(out) == "QA EM 12.5, grounding Acc@0.25 30.0"
    # over the size limit: a clear error, and the previous bundle is left as it was
    assert bundle_main(["--run", str(trained["out"]), "--out", str(out), "--max-mb", "0.001"]) == 2
    assert load_checkpoint(out).tokenizer is not None
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".demo_small.")]
