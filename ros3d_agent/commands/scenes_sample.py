"""`ros3d-agent scenes sample SCENE --k 16 --method {uniform,coverage}`: which frames the model would see.

Prints the chosen frame ids and the share of the scene's 0.1 m voxels they cover. Thin wrapper over
:mod:`ros3d_agent.scene.sampling`.
"""

from __future__ import annotations

import json
import sys


def _stop(text: str) -> float | None:
    import argparse

    if text.lower() in ("none", "off", "0"):
        return None
    try:
        v = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a ratio in (0, 1] or 'none', got {text!r}") from exc
    if not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f"coverage stop must be in (0, 1], got {v}")
    return v


def add_arguments(parser) -> None:
    parser.add_argument("scene", metavar="SCENE", help="scene directory (posed_images layout)")
    parser.add_argument("--k", type=int, default=16, help="view budget (default 16)")
    parser.add_argument("--method", choices=("uniform", "coverage"), default="coverage", help="sampling rule (default coverage)")
    parser.add_argument("--coverage-stop", type=_stop, default=0.95, metavar="RATIO",
                        help="coverage: stop once this share of voxels is covered; 'none' always takes k (default 0.95)")
    parser.add_argument("--voxel", type=float, default=0.1, help="voxel size in metres (default 0.1, as Video-3D-LLM)")
    parser.add_argument("--stride", type=int, default=4, help="back-projection pixel stride (default 4)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def main(args) -> int:
    from ros3d_agent.scene import SceneDir, SceneError
    from ros3d_agent.scene.sampling import coverage_of, max_coverage_sample, scene_voxel_sets, uniform_sample

    if args.k < 1 or args.voxel <= 0 or args.stride < 1:
        print("error: --k and --stride must be >= 1 and --voxel > 0", file=sys.stderr)
        return 2
    try:
        scene = SceneDir(args.scene)
        ids, sets = scene_voxel_sets(scene, args.voxel, args.stride, progress=not args.no_progress)
        if not ids:
            raise SceneError(f"{scene.path}: no loadable frames (skipped: {dict(scene.skipped)})")
        if args.method == "uniform":
            chosen = uniform_sample(len(ids), args.k)
            coverage = coverage_of(sets, chosen)
            order, gains = chosen, None
        else:
            res = max_coverage_sample(sets, args.k, args.voxel, args.coverage_stop)
            chosen, coverage, order, gains = res.indices, res.coverage, res.order, res.gains
    except (SceneError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    out = {
        "scene": scene.scene_id,
        "method": args.method,
        "n_frames": len(ids),
        "frame_ids": [ids[i] for i in chosen],
        "pick_order": [ids[i] for i in order],
        "gains": gains,
        "coverage": coverage,
        "skipped": dict(scene.skipped),
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"{scene.scene_id}: {len(chosen)} of {len(ids)} frames ({args.method}), coverage {coverage:.3f} of the scene's {args.voxel:g} m voxels")
    print(" ".join(out["frame_ids"]))
    if scene.skipped:
        print(f"skipped {sum(scene.skipped.values())} frame(s): {dict(scene.skipped)}")
    return 0
