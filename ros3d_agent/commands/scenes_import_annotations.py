"""`ros3d-agent scenes import-annotations --benchmark B --input FILE... --out OUT.jsonl [--scenes DIR]`.

Thin wrapper over :func:`ros3d_agent.scene.importers.import_annotations`. Warnings (missing scenes
or objects, unmatched SQA3D ids) go to stderr; they never fail the import.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

_BENCHMARKS = ("scanqa", "sqa3d", "scanrefer", "multi3drefer", "scan2cap")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--benchmark", required=True, choices=_BENCHMARKS)
    parser.add_argument("--input", required=True, nargs="+", type=Path, metavar="FILE",
                        help="upstream file(s); SQA3D needs the questions and the annotations file of each split")
    parser.add_argument("--out", required=True, type=Path, help="output JSONL")
    parser.add_argument("--scenes", type=Path, default=None, metavar="DIR",
                        help="folder of scene directories (as written by import-scannet) to fill boxes from objects.json "
                             "and place SQA3D situations; required for scanrefer, multi3drefer, scan2cap")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    from ros3d_agent.scene.errors import SceneError
    from ros3d_agent.scene.importers.benchmarks import import_annotations

    try:
        summary = import_annotations(args.benchmark, args.input, args.out, args.scenes, progress=not args.quiet)
    except (SceneError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{summary.benchmark}: {summary.records} records -> {args.out}")
    for w in summary.warnings():
        print(f"warning: {w}", file=sys.stderr)
    return 0
