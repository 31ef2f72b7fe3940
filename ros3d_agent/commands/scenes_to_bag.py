"""`ros3d-agent scenes to-bag SCENE --out BAG`: a scene directory as a robot-like rosbag2 (MCAP).

Thin wrapper over :func:`ros3d_agent.scene.bag_export.export_scene_to_bag`.
"""

from __future__ import annotations

import json
import sys
from decimal import Decimal, InvalidOperation


def _start_time_ns(text: str) -> int:
    """Seconds since the epoch (decimal, parsed exactly) → integer nanoseconds."""
    import argparse

    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise argparse.ArgumentTypeError(f"expected seconds since the epoch, got {text!r}") from exc
    if not value.is_finite() or value < 0:
        raise argparse.ArgumentTypeError(f"start time must be a finite number of seconds >= 0, got {text!r}")
    return int(value * 1_000_000_000)


def add_arguments(parser) -> None:
    from ros3d_agent.scene.bag_export import COLOR_ENCODINGS, DEFAULT_START_TIME_NS, DEPTH_FORMATS, STORAGES

    parser.add_argument("scene", metavar="SCENE", help="scene directory (posed_images layout)")
    parser.add_argument("--out", required=True, metavar="BAG", help="output bag directory (must not exist unless --overwrite)")
    parser.add_argument("--depth-format", choices=DEPTH_FORMATS, default="16UC1",
                        help="16UC1 millimetres (default) or 32FC1 metres")
    parser.add_argument("--rate", type=float, default=30.0, help="frame rate in Hz used for the stamps (default 30)")
    parser.add_argument("--color-encoding", choices=COLOR_ENCODINGS, default="rgb8", help="colour encoding (default rgb8)")
    parser.add_argument("--topic-prefix", default="/camera", help="camera namespace (default /camera)")
    parser.add_argument("--storage", choices=STORAGES, default="mcap", help="rosbag2 storage plugin (default mcap)")
    parser.add_argument("--start-time", type=_start_time_ns, default=DEFAULT_START_TIME_NS, metavar="SEC",
                        help=f"stamp of the first frame, seconds since the epoch (default {DEFAULT_START_TIME_NS / 1e9:.0f}, fixed "
                             "so exports are reproducible)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing bag at --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def main(args) -> int:
    from ros3d_agent.scene import SceneError
    from ros3d_agent.scene.bag_export import BagExportConfig, export_scene_to_bag

    try:
        config = BagExportConfig(
            rate_hz=args.rate,
            start_time_ns=args.start_time,
            depth_format=args.depth_format,
            color_encoding=args.color_encoding,
            topic_prefix=args.topic_prefix,
            storage=args.storage,
            overwrite=args.overwrite,
        )
        result = export_scene_to_bag(args.scene, args.out, config, progress=not args.no_progress)
    except SceneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    print(f"wrote {result.path} ({result.storage}): {result.frames_written}/{result.frames_total} frames, "
          f"{result.duration_s:.3f} s of bag time, {result.size_bytes / 1e6:.1f} MB in {result.seconds:.2f} s")
    for topic, n in result.topic_counts.items():
        print(f"  {topic}: {n}")
    if result.skipped:
        detail = ", ".join(f"{reason}: {n}" for reason, n in sorted(result.skipped.items()))
        print(f"skipped {sum(result.skipped.values())} frame(s) ({detail})")
    return 0
