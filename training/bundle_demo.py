"""Bundle a trained run as the demo model: ``models/demo_small/`` (fp16 safetensors, config, tokenizer, card).

``python -m training.bundle_demo --run runs/cpu_proof/all --out models/demo_small``

The demo (:mod:`ros3d_agent.replay.demo`) and the node use the directory as an ordinary checkpoint.
The model card is written from the run's own files (``run_config.json``, ``run_summary.json``,
``final/eval/*/metrics.json``), so the figures in it are the measured ones. The bundle must stay
under ``--max-mb`` (30 MB: it lives in git); the tool loads it back before it reports success.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from ros3d_agent.utils.jsonl import read_json_object

__all__ = ["bundle_run", "model_card", "main"]

MAX_MB_DEFAULT = 30.0


def _eval_results(final: Path) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for metrics_file in sorted((final / "eval").glob("*/metrics.json")):
        m = read_json_object(metrics_file)
        if isinstance(m.get("metrics"), dict):
            out[metrics_file.parent.name] = {"n": m.get("n"), "proposals": (m.get("eval_run") or {}).get("proposals"),
                                             "metrics": m["metrics"]}
    return out


def model_card(run_dir: Path, params: int, size_mb: float, extra_note: str = "") -> str:
    """The README.md of the bundle: what the model is, how it was trained, what it scores, its limits."""
    cfg = read_json_object(run_dir / "run_config.json")
    summary = read_json_object(run_dir / "run_summary.json")
    evals = _eval_results(run_dir / "final")
    data = cfg.get("data", {})
    train = cfg.get("train", {})
    sched = cfg.get("schedule", {})
    lines = [
        "# ros3d_agent demo model",
        "",
        "A reduced `small` ros3d_agent model (Video-3D-LLM recipe: SigLIP-style vision tower → MLP projector →",
        "2×2-pooled tokens with a sin/cos 3D position code → Qwen2-style LLM; `<ground>` grounding head)",
        "trained **from scratch on the project's synthetic scenes only**. It exists so that `make demo`",
        "answers with a trained model instead of random weights. It is not a general 3D assistant: it",
        "knows the synthetic generator's 12+ object categories, colours and phrasings, nothing else.",
        "",
        f"- parameters (inference, no training heads): {params / 1e6:.2f} M; this bundle: {size_mb:.1f} MB (fp16)",
        f"- trained by: `{run_dir}` ({summary.get('steps', '?')} steps, {summary.get('samples_seen', '?')} samples, "
        f"{(summary.get('elapsed_s') or 0) / 60:.1f} min)",
        f"- data: `{data.get('scenes')}` split `{data.get('split')}`, {data.get('num_views')} views per sample "
        f"({data.get('sampling')}), grounding candidates `{data.get('proposals')}`",
        f"- batch {train.get('batch_size')}, {'fp32' if train.get('mixed_precision') in (None, 'no') else train.get('mixed_precision')}, "
        f"schedule {sched.get('kind')} to step {sched.get('max_steps')}",
        f"- model overrides of the `small` preset: `{json.dumps((cfg.get('model') or {}).get('overrides', {}))}`",
        "",
        "## Held-out results (test scenes never seen in training)",
        "",
        "| benchmark-split | n | candidates | metrics (percent) |",
        "|---|---|---|---|",
    ]
    for name, r in evals.items():
        metrics = ", ".join(f"{k} {v:.1f}" for k, v in r["metrics"].items() if isinstance(v, (int, float)))
        lines.append(f"| {name} | {r['n']} | {r['proposals'] or '–'} | {metrics} |")
    if not evals:
        lines.append("| (no evaluation found in the run) | | | |")
    lines += [
        "",
        "## Use",
        "",
        "```bash",
        "ros3d-agent demo                                   # picks models/demo_small up automatically",
        "ros3d-agent run --checkpoint models/demo_small -p query.default_views:=" + str(data.get("num_views") or 8) + "   # the node",
        "```",
        "",
        f"Ask it with the {data.get('num_views') or 8} views it was trained with (the demo does; the node's default is 8).",
        "",
        "## Limits",
        "",
        "- Synthetic indoor rooms only (procedural geometry, ray-cast and shaded); real camera images are",
        "  out of distribution.",
        "- Ross3D's targets came from a tiny *random* VAE and the 3DRS teacher was a tiny *random* DINOv2",
        "  (no pretrained weights can be fetched here): those losses shaped the visual outputs, but not",
        "  towards a real image prior or a real 3D foundation model.",
        "- Trained on CPU (see docs/RESULTS.md for the run, the ablation and what did not help).",
    ]
    if extra_note:
        lines += ["", extra_note]
    return "\n".join(lines) + "\n"


def bundle_run(run_dir: Path, out_dir: Path, max_mb: float = MAX_MB_DEFAULT, note: str = "") -> dict[str, Any]:
    """Write the bundle atomically (a temp dir renamed into place); returns what was written."""
    import torch

    from ros3d_agent.model.checkpoint import load_checkpoint, save_checkpoint

    final = run_dir / "final"
    if not (final / "config.json").is_file():
        raise FileNotFoundError(f"{final} has no config.json: is {run_dir} a finished training run?")
    loaded = load_checkpoint(final)
    if loaded.tokenizer is None:
        raise ValueError(f"{final} has no tokenizer/: the demo needs one")
    params = sum(p.numel() for p in loaded.model.parameters())
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        save_checkpoint(loaded.model, loaded.tokenizer, tmp, dtype=torch.float16, include_training_heads=False)
        size_mb = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file()) / 2**20
        if size_mb > max_mb:
            raise ValueError(f"the bundle is {size_mb:.1f} MB, over the {max_mb:g} MB limit")
        (tmp / "README.md").write_text(model_card(run_dir, params, size_mb, note), encoding="utf-8")
        run_cfg = read_json_object(run_dir / "run_config.json")
        views = (run_cfg.get("data") or {}).get("num_views")
        # the demo asks with as many views as the model was trained with (the node's default is 8)
        results = {"source_run": str(run_dir), "evaluations": _eval_results(final), "parameters": params,
                   "views_per_query": int(views) if isinstance(views, int) else None}
        (tmp / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
        check = load_checkpoint(tmp)  # the bundle must load as an ordinary checkpoint
        if check.tokenizer is None:
            raise ValueError("the bundle lost its tokenizer")
        tmp.chmod(0o755)  # mkdtemp made it private; the bundle is an ordinary, shareable directory
        for f in tmp.rglob("*"):
            f.chmod(0o755 if f.is_dir() else 0o644)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"out": str(out_dir), "size_mb": round(size_mb, 2), "parameters": params}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.bundle_demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="training run directory (holds final/, run_config.json)")
    ap.add_argument("--out", default="models/demo_small")
    ap.add_argument("--max-mb", type=float, default=MAX_MB_DEFAULT)
    ap.add_argument("--note", default="", help="extra paragraph for the model card")
    args = ap.parse_args(argv)
    try:
        info = bundle_run(Path(args.run), Path(args.out), args.max_mb, args.note)
    except (FileNotFoundError, ValueError) as exc:
        print(f"bundle_demo: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
