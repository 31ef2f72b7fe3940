"""`ros3d-agent scenes import-scannet SCAN_DIR... --out DIR`: ScanNet scans → scene directories.

Thin wrapper over :func:`ros3d_agent.scene.importers.import_scannet_scan`; each scan goes to
``DIR/<scene_id>/``. A scan that fails is reported and the others still run; the exit code is 1 if
any failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _image_size(text: str) -> tuple[int, int] | None:
    if text == "source":
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT (e.g. 640x480) or 'source', got {text!r}") from exc
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"image size must be positive, got {text!r}")
    return (h, w)


def _positive(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scan_dirs", nargs="+", type=Path, metavar="SCAN_DIR",
                        help="ScanNet scan folder(s): <scene>_vh_clean_2.ply, segs, aggregation, <scene>.txt, and frames")
    parser.add_argument("--out", required=True, type=Path, help="folder of scene directories; each scan goes to OUT/<scene_id>/")
    parser.add_argument("--frame-skip", type=_positive, default=1, help="keep every K-th available frame (default 1)")
    parser.add_argument("--labels", type=Path, default=None, metavar="TSV",
                        help="scannetv2-labels.combined.tsv: map raw labels through --label-column")
    parser.add_argument("--label-column", default="nyu40class", help="TSV column to map raw labels to (default nyu40class)")
    parser.add_argument("--image-size", type=_image_size, default=(480, 640), metavar="WxH",
                        help="output colour size, or 'source' to keep it (default 640x480)")
    parser.add_argument("--images", type=Path, default=None,
                        help="frames elsewhere: an exported folder (color/ depth/ pose/ intrinsic/), a posed_images folder, or a .sens file "
                             "(only with one SCAN_DIR)")
    parser.add_argument("--scene-id", default=None, help="override the scene id (only with one SCAN_DIR)")
    parser.add_argument("--keep-structure", action="store_true", help="keep wall / floor / ceiling objects")
    parser.add_argument("--no-axis-align", action="store_true", help="stay in ScanNet's raw frame (benchmarks use the aligned one)")
    parser.add_argument("--no-points", action="store_true", help="do not write points.ply")
    parser.add_argument("--jpeg-quality", type=int, default=95)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing scene of the same id")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    from ros3d_agent.scene.errors import SceneError
    from ros3d_agent.scene.importers.scannet import ScanNetImportConfig, import_scannet_scan

    if len(args.scan_dirs) > 1 and (args.images is not None or args.scene_id is not None):
        print("error: --images and --scene-id apply to a single SCAN_DIR", file=sys.stderr)
        return 2
    try:
        cfg = ScanNetImportConfig(
            image_size=args.image_size,
            frame_skip=args.frame_skip,
            labels_tsv=args.labels,
            label_column=args.label_column,
            exclude_labels=() if args.keep_structure else ScanNetImportConfig.exclude_labels,
            axis_align=not args.no_axis_align,
            jpeg_quality=args.jpeg_quality,
            write_points=not args.no_points,
            overwrite=args.overwrite,
            progress=not args.quiet,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = 0
    for scan_dir in args.scan_dirs:
        try:
            report = import_scannet_scan(scan_dir, args.out, cfg, scene_id=args.scene_id, images=args.images)
        except (SceneError, OSError) as exc:
            msg = str(exc)
            print(f"error: {msg if str(scan_dir) in msg else f'{scan_dir}: {msg}'}", file=sys.stderr)
            failed += 1
            continue
        print(report.summary())
    if len(args.scan_dirs) > 1:
        print(f"{len(args.scan_dirs) - failed} of {len(args.scan_dirs)} scans imported")
    return 1 if failed else 0
