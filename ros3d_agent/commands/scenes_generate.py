"""`ros3d-agent scenes generate`: render procedural indoor RGB-D scenes into scene directories.

Thin wrapper over :mod:`ros3d_agent.scene.synthetic.generate`; see there for the output layout.
"""

from __future__ import annotations

import sys


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, help="directory to write synth_NNNNN scene directories into")
    parser.add_argument("--num", type=int, default=1, help="number of scenes (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first scene; scene i uses seed + i (default 0)")
    parser.add_argument("--frames", type=int, default=None, help="frames per scene (default 40)")
    parser.add_argument("--width", type=int, default=None, help="image width in pixels (default 640)")
    parser.add_argument("--height", type=int, default=None, help="image height in pixels (default 480)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--no-noise", action="store_true", help="exact depth and colour: no sensor noise or holes")
    parser.add_argument("--overwrite", action="store_true", help="regenerate scenes that already exist")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args) -> int:
    import time

    from ros3d_agent.scene.synthetic.generate import GenerateConfig, generate_scenes, summarize

    try:
        kwargs = {k: getattr(args, k) for k in ("frames", "width", "height") if getattr(args, k) is not None}
        config = GenerateConfig(noise=not args.no_noise, **kwargs)
        start = time.perf_counter()
        summaries = generate_scenes(
            args.out, args.num, args.seed, config, workers=args.workers, overwrite=args.overwrite, progress=not args.quiet
        )
    except (ValueError, NotADirectoryError) as exc:
        print(f"ros3d-agent scenes generate: error: {exc}", file=sys.stderr)
        return 2
    stats = summarize(summaries, time.perf_counter() - start)
    print(
        f"{int(stats['generated'])} scenes generated, {int(stats['skipped'])} already complete, in {args.out}; "
        f"{stats['wall_s']:.1f} s wall, {stats['wall_s_per_scene']:.2f} s/scene, {1000 * stats['wall_s_per_frame']:.1f} ms/frame"
    )
    if stats["generated"]:
        stages = ", ".join(f"{k} {1000 * stats[f'{k}_s_per_frame']:.1f}" for k in ("raycast", "shading", "noise", "write", "fuse"))
        print(f"per frame (ms, one worker's time): {stages}; CPU {stats['cpu_s_per_scene']:.2f} s/scene")
    return 0
