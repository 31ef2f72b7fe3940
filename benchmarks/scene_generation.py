#!/usr/bin/env python3
"""Synthetic scene generation speed: seconds per scene and per frame, by stage, against baselines.

Why: the trainer, the node tests and the replay evaluation all start from generated scenes, and the
target is 100 default scenes (640×480, 40 frames) in a few minutes on two cores. Measured in one run
on the same seeds:

  * ``1 worker``   every scene in this process (Embree may use all cores for ray casting), with the
                   per-frame split raycast / shading / noise / file writing / cloud fusion;
  * ``2 workers``  the same scenes over two spawned processes, one core each: the speed-up of the
                   batch path, and a check that its depth PNGs and scene graphs are byte-identical
                   to the 1-worker run (so a fast but different path cannot pass);
  * ``raycast only`` the same views with ray casting alone (no shading, noise, writing or fusion):
                   the floor that the rest of the pipeline adds to.

    python benchmarks/scene_generation.py [--scenes 4] [--frames 40] [--width 640 --height 480] [--seed 1000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout without installing

from ros3d_agent.scene.synthetic.generate import SCENE_GRAPH_FILE, GenerateConfig, generate_scenes, summarize  # noqa: E402
from ros3d_agent.scene.synthetic.layout import generate_layout  # noqa: E402
from ros3d_agent.scene.synthetic.render import SceneRenderer  # noqa: E402
from ros3d_agent.scene.synthetic.trajectory import camera_intrinsics, orbit_trajectory  # noqa: E402


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _same_outputs(a: Path, b: Path) -> bool:
    for scene in sorted(p.name for p in a.iterdir() if p.is_dir()):
        for f in sorted((a / scene).iterdir()):
            if f.suffix == ".png" or f.name == SCENE_GRAPH_FILE:
                if f.read_bytes() != (b / scene / f.name).read_bytes():
                    print(f"  MISMATCH: {scene}/{f.name}")
                    return False
    return True


def raycast_only(seeds: range, cfg: GenerateConfig) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and frames for casting the same views with no other stage."""
    total, cpu, frames = 0.0, 0.0, 0
    for s in seeds:
        layout = generate_layout(s, cfg.layout)
        K = camera_intrinsics(cfg.width, cfg.height, np.random.default_rng([s, 3]), cfg.trajectory.focal)
        poses = orbit_trajectory(layout.walkway, cfg.trajectory, np.random.default_rng([s, 2]))
        r = SceneRenderer(layout, cfg.render)
        t0, c0 = time.perf_counter(), time.process_time()
        for T in poses:
            r.cast(T, K)
        total += time.perf_counter() - t0
        cpu += time.process_time() - c0
        frames += len(poses)
    return total, cpu, frames


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenes", type=int, default=4)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--out", default=None, help="work directory (default: a temporary one, deleted afterwards)")
    args = ap.parse_args()

    cfg = GenerateConfig(frames=args.frames, width=args.width, height=args.height)
    seeds = range(args.seed, args.seed + args.scenes)
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="scene_gen_bench_"))
    print(f"{args.scenes} scenes x {args.frames} frames at {args.width}x{args.height}, seeds {seeds.start}..{seeds.stop - 1}, "
          f"{os.cpu_count()} CPUs, work dir {work}")
    try:
        rows = []
        for workers in (1, 2):
            out = work / f"w{workers}"
            shutil.rmtree(out, ignore_errors=True)
            t0 = time.perf_counter()
            summaries = generate_scenes(out, args.scenes, args.seed, cfg, workers=workers, progress=False)
            stats = summarize(summaries, time.perf_counter() - t0)
            rows.append((f"{workers} worker{'s' if workers > 1 else ''}", stats))
        rc_s, rc_cpu, rc_frames = raycast_only(seeds, cfg)

        one, two = rows[0][1], rows[1][1]
        print()
        print(f"{'run':<14}{'s/scene':>9}{'ms/frame':>10}{'CPU s/scene':>12}{'raycast':>9}{'shading':>9}{'noise':>8}{'write':>8}{'fuse':>8}   (stages: ms/frame, per worker)")
        for name, st in rows:
            stages = "".join(f"{1000 * st[f'{k}_s_per_frame']:>{w}.1f}" for k, w in (("raycast", 9), ("shading", 9), ("noise", 8), ("write", 8), ("fuse", 8)))
            print(f"{name:<14}{st['wall_s_per_scene']:>9.2f}{1000 * st['wall_s_per_frame']:>10.1f}{st['cpu_s_per_scene']:>12.2f}{stages}")
        print(f"{'raycast only':<14}{rc_s / args.scenes:>9.2f}{1000 * rc_s / rc_frames:>10.1f}{rc_cpu / args.scenes:>12.2f}{1000 * rc_s / rc_frames:>9.1f}")
        print()
        print(f"2 workers vs 1: {one['wall_s'] / two['wall_s']:.2f}x faster; full pipeline vs raycast only: "
              f"{one['wall_s_per_frame'] / (rc_s / rc_frames):.2f}x the time")
        print(f"projected 100 scenes with 2 workers: {100 * two['wall_s_per_scene'] / 60:.1f} min at this machine's load; "
              f"{100 * two['cpu_s_per_scene'] / 2 / 60:.1f} min on 2 idle cores (from CPU time)")
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"load average during the run: {load:.2f} on {os.cpu_count()} CPUs (other processes inflate wall times)")
        size = _du(work / "w2") / args.scenes
        print(f"disk per scene: {size / 1e6:.1f} MB")
        same = _same_outputs(work / "w1", work / "w2")
        print(f"1-worker and 2-worker outputs identical (depth PNGs, scene graphs): {same}")
        return 0 if same else 1
    finally:
        if not args.out:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
