"""The 7-row ablation of docs/RESULTS.md: same data, steps and seed, one switch changed per row.

``python -m training.ablation --config training/configs/cpu_proof.yaml --out runs/cpu_proof --jobs 2``

Every row is a normal training run (``python -m training.trainer``) with a few ``--set`` overrides,
followed by ``python -m training.evaluate`` on the held-out test scenes for each benchmark; the
table (``ablation.md`` / ``ablation.json`` in ``--out``) is read back from the runs' own
``metrics.json`` files, so it can never disagree with them. Rows run as separate processes
(``--jobs`` at a time, each reaped on exit); a row whose ``final/`` model already exists is not
retrained, and a killed row resumes from its latest checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ros3d_agent.utils.jsonl import read_json_object
from ros3d_agent.utils.processes import ManagedProcess, python_module_argv

__all__ = ["AblationRow", "ROWS", "BENCHMARK_COLUMNS", "build_table", "main"]


@dataclass(frozen=True)
class AblationRow:
    """One row: a name, what it tests, and the training-config overrides that make it."""

    name: str
    description: str
    overrides: tuple[str, ...] = ()


_NO_ROSS = "model.overrides.ross3d=null"
_NO_3DRS = "model.overrides.alignment3drs=null"

#: the rows, in table order (the training config itself is the "all" row)
ROWS: tuple[AblationRow, ...] = (
    AblationRow("text_only", "no visual input (pixels blanked, depth invalid); grounding sees box centres only",
                ("model.overrides.visual_input=false", _NO_ROSS, _NO_3DRS)),
    AblationRow("video3dllm", "Video-3D-LLM baseline: position-aware visual tokens, no 3D losses", (_NO_ROSS, _NO_3DRS)),
    AblationRow("cross_view", "+ Ross3D cross-view (masked-view) reconstruction", ("model.overrides.ross3d.bev=false", _NO_3DRS)),
    AblationRow("bev", "+ Ross3D BEV reconstruction", ("model.overrides.ross3d.cross_view=false", _NO_3DRS)),
    AblationRow("ross3d", "+ both Ross3D terms", (_NO_3DRS,)),
    AblationRow("3drs", "+ 3DRS alignment only", (_NO_ROSS,)),
    AblationRow("all", "+ Ross3D (both) + 3DRS", ()),
)

#: (benchmark, metric keys shown in the table)
BENCHMARK_COLUMNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("scanqa", ("EM", "CIDEr")),
    ("sqa3d", ("EM",)),
    ("scanrefer", ("Acc@0.25", "Acc@0.5")),
    ("multi3drefer", ("F1@0.25",)),
    ("scan2cap", ("CIDEr@0.5",)),
)


@dataclass
class RowJob:
    row: AblationRow
    run_dir: Path
    status: str = "pending"
    seconds: dict[str, float] = field(default_factory=dict)
    error: str | None = None


def _run_logged(argv: list[str], log_path: Path, env: dict[str, str], stop: threading.Event) -> int:
    """Run one child to completion (output appended to ``log_path``); reaped if ``stop`` is set."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(argv)}\n")
        log.flush()
        with ManagedProcess(argv, env=env, stdout=log, stderr=log, terminate_timeout_s=20.0) as proc:
            while proc.poll() is None:
                if stop.wait(1.0):
                    return proc.stop() or 1
            return proc.poll() or 0


def _row_steps(job: RowJob, args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    steps: list[tuple[str, list[str]]] = []
    final = job.run_dir / "final"
    if not (final / "config.json").is_file():
        train = ["--config", args.config, "--output", str(job.run_dir)]
        if (job.run_dir / "checkpoints" / "latest").exists():
            train.append("--resume")
        if args.max_steps:
            train += ["--max-steps", str(args.max_steps)]
        for item in (*job.row.overrides, *args.set):
            train += ["--set", item]
        steps.append(("train", python_module_argv("training.trainer", *train)))
    for bench, _ in BENCHMARK_COLUMNS:
        if bench not in args.benchmarks:
            continue
        out = final / "eval" / f"{bench}-{args.split}"
        if (out / "metrics.json").is_file() and not args.rescore:
            continue
        ev = ["--checkpoint", str(final), "--data", args.data, "--benchmark", bench, "--split", args.split,
              "--proposals", args.proposals, "--out", str(out), "--batch-size", str(args.eval_batch_size)]
        if args.eval_limit:
            ev += ["--limit", str(args.eval_limit)]
        if args.no_java:
            ev.append("--no-java")
        steps.append((f"eval:{bench}", python_module_argv("training.evaluate", *ev)))
    return steps


def _worker(queue: list[RowJob], lock: threading.Lock, args: argparse.Namespace, env: dict[str, str],
            stop: threading.Event) -> None:
    while not stop.is_set():
        with lock:
            job = next((j for j in queue if j.status == "pending"), None)
            if job is None:
                return
            job.status = "running"
        log_path = job.run_dir.parent / f"{job.row.name}.log"
        for label, argv in _row_steps(job, args):
            print(f"[ablation] {job.row.name}: {label} (log {log_path})", flush=True)
            t0 = time.monotonic()
            rc = _run_logged(argv, log_path, env, stop)
            job.seconds[label] = round(time.monotonic() - t0, 1)
            if rc != 0:
                job.status, job.error = "failed", f"{label} exited with {rc}; see {log_path}"
                print(f"[ablation] {job.row.name}: FAILED ({job.error})", flush=True)
                break
        else:
            job.status = "done"
            print(f"[ablation] {job.row.name}: done {job.seconds}", flush=True)


def build_table(out_dir: Path, rows: Sequence[AblationRow], split: str = "test") -> tuple[list[dict[str, Any]], str]:
    """Per-row metrics read from the runs' files, and the same as a markdown table."""
    records: list[dict[str, Any]] = []
    for row in rows:
        run = out_dir / row.name
        rec: dict[str, Any] = {"row": row.name, "description": row.description, "overrides": list(row.overrides)}
        summary = read_json_object(run / "run_summary.json")
        rec["steps"] = summary.get("steps")
        rec["train_s"] = summary.get("elapsed_s")
        for bench, keys in BENCHMARK_COLUMNS:
            m = read_json_object(run / "final" / "eval" / f"{bench}-{split}" / "metrics.json")
            if not m:
                continue
            rec[f"{bench}.n"] = m.get("n")
            for k in keys:
                rec[f"{bench}.{k}"] = (m.get("metrics") or {}).get(k)
        records.append(rec)
    header = ["row", "steps", "train min"] + [f"{b} {k}" for b, ks in BENCHMARK_COLUMNS for k in ks]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for rec in records:
        cells = [rec["row"], str(rec.get("steps") or "–"),
                 f"{rec['train_s'] / 60:.1f}" if rec.get("train_s") else "–"]
        for b, ks in BENCHMARK_COLUMNS:
            for k in ks:
                v = rec.get(f"{b}.{k}")
                cells.append("–" if v is None else f"{v:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return records, "\n".join(lines) + "\n"


def qa_em_by_type(out_dir: Path, rows: Sequence[AblationRow], annotations: Path, split: str = "test") -> dict[str, dict[str, float]]:
    """ScanQA EM (raw match, percent) per question type (``meta.qtype``) for each row: where vision or a
    3D loss helps is visible per type (colour, counting, spatial relations ...), not in the mean."""
    from ros3d_agent.eval import read_predictions
    from ros3d_agent.eval.qa_metrics import exact_match_raw
    from ros3d_agent.scene.annotations.records import read_annotations

    gt = {r.id: r for r in read_annotations(annotations) if r.task == "qa"}
    out: dict[str, dict[str, float]] = {}
    for row in rows:
        pred_file = out_dir / row.name / "final" / "eval" / f"scanqa-{split}" / "predictions.jsonl"
        if not pred_file.is_file():
            continue
        hits: dict[str, list[bool]] = {}
        for pred in read_predictions(pred_file).values():
            rec = gt.get(pred.id)
            if rec is None:
                continue
            qtype = str((rec.meta or {}).get("qtype", "other"))
            hits.setdefault(qtype, []).append(exact_match_raw(pred.answer or "", rec.answers))
        out[row.name] = {k: round(100.0 * sum(v) / len(v), 1) for k, v in sorted(hits.items())}
        out[row.name]["_n"] = float(sum(len(v) for v in hits.values()))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.ablation", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="training YAML of the full ('all') row")
    ap.add_argument("--out", required=True, help="root directory; each row trains into OUT/<row>")
    ap.add_argument("--data", default=None, help="scene root for evaluation (default: the config's data.scenes)")
    ap.add_argument("--rows", default=",".join(r.name for r in ROWS), help="comma-separated subset of rows")
    ap.add_argument("--jobs", type=int, default=1, help="rows trained at once (one process each)")
    ap.add_argument("--max-steps", type=int, default=None, help="override schedule.max_steps for every row")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra override for every row")
    ap.add_argument("--benchmarks", default=",".join(b for b, _ in BENCHMARK_COLUMNS))
    ap.add_argument("--split", default="test")
    ap.add_argument("--proposals", choices=("gt", "predicted"), default="gt",
                    help="grounding candidates at evaluation (gt: the training protocol's oracle boxes)")
    ap.add_argument("--eval-limit", type=int, default=None, help="score the first N records per benchmark")
    ap.add_argument("--eval-batch-size", type=int, default=16)
    ap.add_argument("--no-java", action="store_true", help="skip METEOR in the caption metrics")
    ap.add_argument("--rescore", action="store_true", help="re-run evaluations that already have metrics")
    ap.add_argument("--table-only", action="store_true", help="only rebuild the table from existing runs")
    args = ap.parse_args(argv)

    from .config import load_config

    cfg = load_config(args.config, check_paths=False)
    args.data = args.data or cfg.data.scenes
    args.benchmarks = [b.strip() for b in args.benchmarks.split(",") if b.strip()]
    known = {r.name: r for r in ROWS}
    wanted = [s.strip() for s in args.rows.split(",") if s.strip()]
    unknown = [w for w in wanted if w not in known]
    if unknown:
        ap.error(f"unknown row(s) {unknown}; known: {list(known)}")
    rows = [known[w] for w in wanted]
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    jobs = [RowJob(r, out_dir / r.name) for r in rows]
    if not args.table_only:
        env = dict(os.environ)
        if args.jobs > 1:  # the rows share the cores: one BLAS/OpenMP thread each
            env.setdefault("OMP_NUM_THREADS", "1")
            env.setdefault("MKL_NUM_THREADS", "1")
        stop = threading.Event()
        lock = threading.Lock()
        threads = [threading.Thread(target=_worker, args=(jobs, lock, args, env, stop), daemon=True)
                   for _ in range(max(1, args.jobs))]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        try:
            while any(t.is_alive() for t in threads):
                time.sleep(1.0)
        except KeyboardInterrupt:
            stop.set()
            for t in threads:
                t.join(timeout=60)
            print("[ablation] interrupted; finished rows are kept, rerun to continue", file=sys.stderr)
            return 130
        print(f"[ablation] all rows finished in {(time.monotonic() - t0) / 60:.1f} min", flush=True)

    records, table = build_table(out_dir, rows, args.split)
    annotations = Path(args.data) / "annotations" / f"{args.split}.jsonl"
    by_type = qa_em_by_type(out_dir, rows, annotations, args.split) if annotations.is_file() else {}
    if by_type:
        types = sorted({t for d in by_type.values() for t in d if not t.startswith("_")})
        table += "\nScanQA EM by question type:\n\n| row | " + " | ".join(types) + " |\n|" + "---|" * (len(types) + 1) + "\n"
        for name, d in by_type.items():
            table += f"| {name} | " + " | ".join(f"{d[t]:.1f}" if t in d else "–" for t in types) + " |\n"
    payload = {"config": args.config, "data": args.data, "split": args.split, "proposals": args.proposals,
               "eval_limit": args.eval_limit, "rows": records, "scanqa_em_by_type": by_type,
               "jobs": [{"row": j.row.name, "status": j.status, "seconds": j.seconds, "error": j.error} for j in jobs]}
    (out_dir / "ablation.json").write_text(json.dumps(payload, indent=1), encoding="utf-8")
    (out_dir / "ablation.md").write_text(table, encoding="utf-8")
    print(table)
    failed = [j for j in jobs if j.status == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
