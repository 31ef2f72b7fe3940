"""`ros3d-agent scenes annotate`: QA / situated QA / referring / multi-referring / caption JSONL from scene graphs.

Thin: the work is in :func:`ros3d_agent.scene.annotations.pipeline.build_dataset`.
"""

from __future__ import annotations

import sys

from ros3d_agent.scene.annotations.records import TASKS


def _tasks(value: str) -> tuple[str, ...]:
    import argparse

    tasks = tuple(t.strip() for t in value.split(",") if t.strip())
    bad = [t for t in tasks if t not in TASKS]
    if bad or not tasks:
        raise argparse.ArgumentTypeError(f"unknown task(s) {bad or [value]}; choose from {','.join(TASKS)}")
    return tasks


def add_arguments(parser) -> None:
    parser.add_argument("--scenes", required=True, metavar="DIR",
                        help="folder of scene directories (each with scene_graph.json), or one scene directory")
    parser.add_argument("--out", metavar="DIR", help="output folder (default: DIR/annotations)")
    parser.add_argument("--per-scene", type=int, default=20, metavar="N", help="samples per scene and task (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of wording, sampling and the split (default 0)")
    parser.add_argument("--split", type=float, nargs=3, default=(0.8, 0.1, 0.1), metavar=("TRAIN", "VAL", "TEST"),
                        help="scene fractions of train/val/test (default 0.8 0.1 0.1)")
    parser.add_argument("--tasks", type=_tasks, default=TASKS, help=f"comma-separated subset of {','.join(TASKS)} (default all)")
    parser.add_argument("--min-visible-frames", type=int, default=2, metavar="N",
                        help="only ask about objects seen in at least N frames (default 2)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def print_report(report, cfg) -> None:
    from ros3d_agent.scene.annotations.baseline import format_baseline_table

    for s in report.skipped:
        print(f"skipped {s.path}: {s.reason}")
    if report.skipped:
        print(f"{len(report.skipped)} director{'y' if len(report.skipped) == 1 else 'ies'} skipped (no scene_graph.json)")
    for w in report.warnings:
        print(f"warning: {w}")
    print(f"wrote {report.out_dir}/{{train,val,test}}.jsonl and summary.json")
    header = f"{'split':<6} {'scenes':>6} " + " ".join(f"{t:>12}" for t in cfg.tasks)
    print(header)
    for split, counts in report.counts.items():
        print(f"{split:<6} {len(report.splits[split]):>6} " + " ".join(f"{counts[t]:>12}" for t in cfg.tasks))
    asked = {k: v for k, v in report.not_asked.items() if v}
    if asked:
        print("not asked (answer given away by the category): "
              + "; ".join(f"{k} of {', '.join(v)}" for k, v in asked.items()))
    if not any(row.n_test for row in report.baseline.values()):
        print("\ntext-only baselines: not measured (the test split has no QA; add scenes or raise the test fraction)")
        return
    print("\ntext-only baselines on test (EM; lower is better for the dataset):")
    print(format_baseline_table(report.baseline))


def main(args) -> int:
    from ros3d_agent.scene.annotations.generators import GeneratorConfig
    from ros3d_agent.scene.annotations.graph import SceneGraphError
    from ros3d_agent.scene.annotations.pipeline import AnnotateConfig, build_dataset
    from ros3d_agent.scene.annotations.records import AnnotationError

    try:
        cfg = AnnotateConfig(per_scene=args.per_scene, tasks=tuple(args.tasks), seed=args.seed, fractions=tuple(args.split),
                             generator=GeneratorConfig(min_visible_frames=args.min_visible_frames))
        report = build_dataset(args.scenes, args.out, cfg, progress=not args.no_progress)
    except (SceneGraphError, AnnotationError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_report(report, cfg)
    return 0
