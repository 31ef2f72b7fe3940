#!/usr/bin/env python3
"""Back-project one 640×480 depth frame to world points and voxelise it (0.1 m), many times.

Why: every keyframe the node keeps is lifted to 3D and merged into the scene's occupancy, so this
runs at camera rate on a robot CPU; the goal is < 5 ms/frame. The baseline is measured in the same
run on the same data: a straightforward per-row Python loop (numpy inside each row, occupied voxels
gathered in a Python set), i.e. what one writes first. Both results are compared so a fast but wrong
path cannot pass.

    python benchmarks/backproject_voxelize.py [--iters 200] [--baseline-iters 5] [--torch] [--strict]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout without installing

from ros3d_agent.scene.geometry import backproject_depth, make_transform, occupied_voxels, voxelize  # noqa: E402

H, W = 480, 640
VOXEL = 0.1
GOAL_MS = 5.0
# ScanNet-like depth intrinsics.
K = np.array([[577.87, 0.0, 319.5], [0.0, 577.87, 239.5], [0.0, 0.0, 1.0]])
BOUNDS = np.array([[-6.0, -6.0, -1.0], [6.0, 6.0, 4.0]])


def synthetic_depth(seed: int = 0) -> np.ndarray:
    """A room seen from 1.5 m: a back wall, a floor, a box, sensor noise and ~5 % holes."""
    rng = np.random.default_rng(seed)
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    y_n = (v - K[1, 2]) / K[1, 1]
    wall = np.full((H, W), 4.0)
    floor = np.where(y_n > 1e-3, 1.5 / np.maximum(y_n, 1e-3), np.inf)
    depth = np.minimum(wall, floor)
    depth[200:330, 250:420] = 2.2
    depth += rng.normal(0, 0.005, size=depth.shape)
    depth[rng.random((H, W)) < 0.05] = 0.0
    return depth.astype(np.float32)


def camera_pose() -> np.ndarray:
    # Camera looking along world +x, 1.5 m up, slightly yawed (optical z -> world x, x -> -y, y -> -z).
    base = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    c, s = math.cos(0.3), math.sin(0.3)
    yaw = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return make_transform(yaw @ base, [0.5, -0.2, 1.5])


def vectorised(depth: np.ndarray, T: np.ndarray, bounds: np.ndarray | None) -> np.ndarray:
    """What a mapping step calls: points, then the occupied set."""
    pts, _ = backproject_depth(depth, K, T)
    return occupied_voxels(pts, VOXEL, bounds=bounds)


def vectorised_with_indices(depth: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Same, also materialising every point's voxel index (voxelize(..., return_unique=True))."""
    pts, _ = backproject_depth(depth, K, T)
    _, occupied = voxelize(pts, VOXEL, return_unique=True)
    return occupied


def baseline_per_row(depth: np.ndarray, T: np.ndarray) -> np.ndarray:
    """One row at a time, occupied voxels collected in a Python set."""
    R = T[:3, :3].astype(np.float32)
    t = T[:3, 3].astype(np.float32)
    occupied: set[tuple[int, int, int]] = set()
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    for v in range(depth.shape[0]):
        row = depth[v]
        cols = np.nonzero(np.isfinite(row) & (row > 0))[0]
        if cols.size == 0:
            continue
        z = row[cols]
        x = ((cols - cx) / fx).astype(np.float32) * z
        y = np.float32((v - cy) / fy) * z
        p = np.stack([x, y, z], axis=1) @ R.T + t
        ijk = np.floor(p / np.float32(VOXEL)).astype(np.int64)
        occupied.update(zip(ijk[:, 0].tolist(), ijk[:, 1].tolist(), ijk[:, 2].tolist()))
    return np.array(sorted(occupied), dtype=np.int64).reshape(-1, 3)


def time_it(fn: Callable[[], object], iters: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iters", type=int, default=200, help="timed frames for the vectorised paths")
    ap.add_argument("--baseline-iters", type=int, default=5, help="timed frames for the slow baseline")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--torch", action="store_true", help="also time backproject_depth_torch on CPU (back-projection only, no voxels)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when the < 5 ms/frame goal is missed")
    args = ap.parse_args(argv)

    depth = synthetic_depth()
    T = camera_pose()
    n_valid = int(np.count_nonzero(depth > 0))

    # Correctness first: every path must produce the same occupied set.
    ref = baseline_per_row(depth, T)
    fast = vectorised(depth, T, None)
    ref_set, fast_set = set(map(tuple, ref.tolist())), set(map(tuple, fast.tolist()))
    mismatch = len(ref_set ^ fast_set)
    if not np.array_equal(vectorised_with_indices(depth, T), fast):
        print("ERROR: voxelize(return_unique=True) and occupied_voxels disagree", file=sys.stderr)
        return 1

    rows: list[tuple[str, list[float]]] = [
        ("vectorised: occupied_voxels", time_it(lambda: vectorised(depth, T, None), args.iters, args.warmup)),
        ("vectorised: occupied, bounded", time_it(lambda: vectorised(depth, T, BOUNDS), args.iters, args.warmup)),
        ("vectorised: voxelize+indices", time_it(lambda: vectorised_with_indices(depth, T), args.iters, args.warmup)),
        ("baseline per-row loop", time_it(lambda: baseline_per_row(depth, T), args.baseline_iters, 1)),
    ]
    if args.torch:
        import torch

        from ros3d_agent.scene.geometry import backproject_depth_torch

        d_t, K_t, T_t = torch.from_numpy(depth)[None], torch.from_numpy(K)[None], torch.from_numpy(T)[None]
        rows.append(("torch CPU back-projection only", time_it(lambda: backproject_depth_torch(d_t, K_t, T_t), args.iters, args.warmup)))

    base_ms = statistics.median(rows[3][1])
    print(f"back-project + voxelise ({VOXEL} m), one {W}x{H} frame, {n_valid} valid pixels, {len(fast)} occupied voxels")
    print(f"numpy {np.__version__}, {os.cpu_count()} CPU cores\n")
    print(f"{'path':<32} {'frames':>6} {'median ms':>10} {'mean ms':>9} {'min ms':>8} {'speed-up':>9}")
    print("-" * 78)
    for name, t in rows:
        med = statistics.median(t)
        print(f"{name:<32} {len(t):>6} {med:>10.2f} {statistics.fmean(t):>9.2f} {min(t):>8.2f} {base_ms / med:>8.1f}x")
    print("-" * 78)
    best = statistics.median(rows[0][1])
    met = best < GOAL_MS
    print(f"goal: < {GOAL_MS:.0f} ms/frame on CPU (back-project + occupied_voxels, median): {best:.2f} ms -> {'MET' if met else 'NOT MET'}")
    print("bounded grid: 12x12x5 m room; speed-up = baseline median / path median; timings are wall clock, single process")
    print(f"occupied voxels, vectorised vs baseline: {len(fast_set)} vs {len(ref_set)}, {mismatch} differ")

    # Both paths use float32 and the same formulas; a few boundary voxels may differ by summation order.
    if mismatch > max(3, len(ref_set) // 1000):
        print("ERROR: vectorised result disagrees with the baseline", file=sys.stderr)
        return 1
    if args.strict and not met:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
