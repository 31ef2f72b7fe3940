"""`ros3d-agent scenes proposals --scenes DIR`: recall of class-agnostic 3D proposals against objects.json.

Prints recall@0.25 / @0.5 over the scene directories under DIR (or DIR itself), the mean number of
proposals and the time per scene. Thin wrapper over :mod:`ros3d_agent.scene.proposal_recall`.
"""

from __future__ import annotations

import json
import sys


def add_arguments(parser) -> None:
    parser.add_argument("--scenes", required=True, metavar="DIR", help="a folder of scene directories, or one scene directory")
    parser.add_argument("--limit", type=int, default=None, help="evaluate at most this many scenes (sorted by name)")
    parser.add_argument("--voxel", type=float, default=None, help="clustering voxel in metres (default: ProposalConfig)")
    parser.add_argument("--max-proposals", type=int, default=None, help="keep at most this many per scene (default 50)")
    parser.add_argument("--cloud", choices=("auto", "points", "frames"), default="frames",
                        help="frames (default): fuse the scene's frames as the node does with its keyframes; "
                             "points: the scene's points.ply; auto: points.ply when present")
    parser.add_argument("--fuse-max-depth", type=float, default=None, metavar="M",
                        help="with frames: ignore depth beyond M metres (default: keep all)")
    parser.add_argument("--per-label", action="store_true", help="also print recall per object label")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the report as JSON (with per-scene rows)")


def main(args) -> int:
    from dataclasses import replace

    from ros3d_agent.scene import SceneError
    from ros3d_agent.scene.fusion import FusionConfig
    from ros3d_agent.scene.proposal_recall import evaluate_recall, find_scene_dirs
    from ros3d_agent.scene.proposals import ProposalConfig

    if args.limit is not None and args.limit < 1:
        print("error: --limit must be >= 1", file=sys.stderr)
        return 2
    try:
        config = ProposalConfig()
        if args.voxel is not None:
            config = replace(config, voxel_size=args.voxel)
        if args.max_proposals is not None:
            config = replace(config, max_proposals=args.max_proposals)
        fusion = FusionConfig(max_depth=args.fuse_max_depth)  # what the node fuses keyframes with
        dirs = find_scene_dirs(args.scenes, args.limit)
    except (SceneError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    report = evaluate_recall(dirs, config, fusion=fusion, source=args.cloud, progress=not args.no_progress)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, allow_nan=False))
    else:
        print(f"{len(report.scenes)} scene(s), {report.n_gt} GT boxes, {report.mean_proposals:.1f} proposals/scene, "
              f"{report.mean_seconds * 1000:.0f} ms/scene")
        print("  ".join(f"recall@{t:g} = {report.recall(t):.3f}" for t in report.thresholds))
        print(f"observed GT (>= {report.min_observed_points} cloud points in the box): {report.n_observed}/{report.n_gt}  "
              + "  ".join(f"recall@{t:g} = {report.recall_observed(t):.3f}" for t in report.thresholds))
        if args.per_label:
            for t in report.thresholds:
                rows = ", ".join(f"{k} {r:.2f} ({n})" for k, (r, n) in report.per_label(t).items())
                print(f"  @{t:g}: {rows}")
        for path, why in report.failed.items():
            print(f"failed: {path}: {why}", file=sys.stderr)
    if not report.scenes:
        return 1
    return 0
