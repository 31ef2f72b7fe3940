#!/usr/bin/env python3
"""Class-agnostic proposals: time per scene (goal: well under 1 s) and recall, against DBSCAN.

Why: the ROS node re-proposes on its fused cloud after new keyframes, and evaluation proposes on
every scene of a benchmark, so proposals must cost a fraction of a second on a CPU.

Ours: voxel means at 2.5 cm, structure removal, sparse-graph connected components under three
linkings, support splits, derived boxes, NMS (``ros3d_agent.scene.proposals.propose_boxes``).
Baseline, in the same run on the same clouds: open3d DBSCAN (eps 5 cm, 10 points) on the full,
non-downsampled cloud after the *same* structure removal, boxes of its clusters, the same NMS —
what one reaches for first. Recall@0.25/0.5 is reported for both so speed is not bought with quality.

Clouds: ``--scenes DIR`` (scene directories with objects.json; their points.ply, or their frames
fused with ``--cloud frames``), or by default procedural rooms built here: a noisy floor, walls
and ceiling, furniture boxes and cylinders, and small things on tables (no files, no downloads).

    python benchmarks/proposals.py [--scenes DIR] [--limit 20] [--baseline-scenes 3] [--strict]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout without installing

from ros3d_agent.scene.iou import pairwise_aabb_iou  # noqa: E402
from ros3d_agent.scene.proposals import ProposalConfig, nms_aabb, propose_boxes, scene_structure, structure_mask  # noqa: E402

GOAL_S = 1.0


# -- procedural rooms --------------------------------------------------------------------------------
def _face(axis: int, value: float, a: tuple[float, float], b: tuple[float, float], step: float) -> np.ndarray:
    u, v = np.meshgrid(np.arange(a[0], b[0] + 1e-9, step), np.arange(a[1], b[1] + 1e-9, step))
    p = np.empty((u.size, 3))
    o = [i for i in range(3) if i != axis]
    p[:, axis], p[:, o[0]], p[:, o[1]] = value, u.ravel(), v.ravel()
    return p


def _box(lo: np.ndarray, hi: np.ndarray, step: float) -> np.ndarray:
    faces = []
    for axis in range(3):
        o = [i for i in range(3) if i != axis]
        for value, skip in ((lo[axis], axis == 2), (hi[axis], False)):
            if not skip:
                faces.append(_face(axis, value, (lo[o[0]], lo[o[1]]), (hi[o[0]], hi[o[1]]), step))
    return np.concatenate(faces)


def _cylinder(cx: float, cy: float, r: float, z0: float, h: float, step: float) -> np.ndarray:
    n = max(12, int(2 * math.pi * r / step))
    a, z = np.meshgrid(np.linspace(0, 2 * math.pi, n, endpoint=False), np.arange(z0, z0 + h + 1e-9, step))
    side = np.stack([cx + r * np.cos(a.ravel()), cy + r * np.sin(a.ravel()), z.ravel()], axis=1)
    rr, aa = np.meshgrid(np.arange(0, r + 1e-9, step), np.linspace(0, 2 * math.pi, n, endpoint=False))
    top = np.stack([cx + rr.ravel() * np.cos(aa.ravel()), cy + rr.ravel() * np.sin(aa.ravel()), np.full(rr.size, z0 + h)], axis=1)
    return np.concatenate([side, top])


def procedural_room(seed: int, step: float = 0.012) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(xyz, rgb, GT boxes (M, 6)) of a random furnished room with range-dependent noise."""
    rng = np.random.default_rng(seed)
    W, D, H = rng.uniform(5, 8), rng.uniform(4, 6.5), 2.6
    parts, colours, gt = [], [], []

    def put(p: np.ndarray, colour, box=None) -> None:
        parts.append(p)
        colours.append(np.tile(np.asarray(colour, np.uint8), (len(p), 1)))
        if box is not None:
            gt.append(box)

    s = 2 * step
    put(_face(2, 0.0, (0, 0), (W, D), s), (150, 140, 120))
    put(_face(2, H, (0, 0), (W, D), s), (230, 230, 230))
    for axis, value, a, b in ((0, 0.0, (0, 0), (D, H)), (0, W, (0, 0), (D, H)), (1, 0.0, (0, 0), (W, H)), (1, D, (0, 0), (W, H))):
        put(_face(axis, value, a, b, s), (200, 195, 185))
    taken: list[tuple[float, float, float, float]] = []

    def free_spot(sx: float, sy: float) -> tuple[float, float] | None:
        for _ in range(50):
            x, y = rng.uniform(0.1, W - sx - 0.1), rng.uniform(0.1, D - sy - 0.1)
            if all(x + sx + 0.15 < a or a2 + 0.15 < x or y + sy + 0.15 < b or b2 + 0.15 < y for a, b, a2, b2 in taken):
                taken.append((x, y, x + sx, y + sy))
                return x, y
        return None

    for _ in range(rng.integers(2, 4)):  # tables with things on them
        sx, sy, sz = rng.uniform(0.8, 1.5), rng.uniform(0.6, 0.9), rng.uniform(0.7, 0.78)
        spot = free_spot(sx, sy)
        if spot is None:
            continue
        x, y = spot
        col = rng.integers(60, 200, 3)
        put(_box(np.array([x, y, sz - 0.04]), np.array([x + sx, y + sy, sz]), step), col, [x + sx / 2, y + sy / 2, sz / 2, sx, sy, sz])
        for lx, ly in ((x, y), (x + sx - 0.05, y), (x, y + sy - 0.05), (x + sx - 0.05, y + sy - 0.05)):
            put(_box(np.array([lx, ly, 0.0]), np.array([lx + 0.05, ly + 0.05, sz - 0.04]), step), col)
        for k in range(rng.integers(1, 4)):
            ox = x + 0.1 + k * (sx - 0.2) / 3
            oy = y + rng.uniform(0.15, sy - 0.15)
            if rng.random() < 0.5:
                r, h = rng.uniform(0.03, 0.06), rng.uniform(0.1, 0.3)
                put(_cylinder(ox + r, oy, r, sz, h, step * 0.6), rng.integers(0, 255, 3), [ox + r, oy, sz + h / 2, 2 * r, 2 * r, h])
            else:
                a, b, h = rng.uniform(0.1, 0.25), rng.uniform(0.1, 0.25), rng.uniform(0.05, 0.3)
                put(_box(np.array([ox, oy - b / 2, sz]), np.array([ox + a, oy + b / 2, sz + h]), step * 0.6), rng.integers(0, 255, 3),
                    [ox + a / 2, oy, sz + h / 2, a, b, h])
    for _ in range(rng.integers(5, 9)):  # things on the floor
        sx, sy, sz = rng.uniform(0.25, 1.2), rng.uniform(0.25, 0.9), rng.uniform(0.2, 1.6)
        spot = free_spot(sx, sy)
        if spot is None:
            continue
        x, y = spot
        if rng.random() < 0.3:
            r = min(sx, sy) / 2
            put(_cylinder(x + r, y + r, r, 0.0, sz, step), rng.integers(0, 255, 3), [x + r, y + r, sz / 2, 2 * r, 2 * r, sz])
        else:
            put(_box(np.array([x, y, 0.0]), np.array([x + sx, y + sy, sz]), step), rng.integers(0, 255, 3), [x + sx / 2, y + sy / 2, sz / 2, sx, sy, sz])
    xyz = np.concatenate(parts)
    # Depth-like noise: larger away from the room centre, where the camera walked.
    r = np.hypot(xyz[:, 0] - W / 2, xyz[:, 1] - D / 2)
    xyz += rng.normal(0, 1, xyz.shape) * (0.002 + 0.004 * r**2 / 9)[:, None]
    return xyz.astype(np.float32), np.concatenate(colours), np.array(gt, np.float64)


def scene_clouds(args: argparse.Namespace) -> list[tuple[str, np.ndarray, np.ndarray | None, np.ndarray]]:
    if args.scenes is None:
        return [(f"procedural_{s}", *procedural_room(s)) for s in range(args.limit)]
    from ros3d_agent.scene import SceneDir
    from ros3d_agent.scene.fusion import scene_cloud
    from ros3d_agent.scene.proposal_recall import find_scene_dirs

    out = []
    for d in find_scene_dirs(args.scenes, args.limit):
        sd = SceneDir(d)
        cloud = scene_cloud(sd, prefer_points=args.cloud == "points")
        gt = np.array([o.box.to_list()[:6] for o in sd.load_objects()], np.float64).reshape(-1, 6)
        out.append((sd.scene_id, cloud.xyz, cloud.rgb, gt))
    return out


# -- baseline ----------------------------------------------------------------------------------------
def dbscan_proposals(xyz: np.ndarray, cfg: ProposalConfig, eps: float = 0.05, min_points: int = 10) -> np.ndarray:
    """Same structure removal, then open3d DBSCAN on every remaining point, boxes, NMS."""
    import open3d as o3d

    st = scene_structure(xyz, cfg)
    pts = xyz[structure_mask(xyz, st, cfg)]
    if pts.shape[0] == 0:
        return np.empty((0, 6))
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts.astype(np.float64)))
    labels = np.asarray(pcd.cluster_dbscan(eps=eps, min_points=min_points))
    boxes, sizes = [], []
    for lab in range(labels.max() + 1):
        p = pts[labels == lab]
        lo, hi = np.quantile(p, [0.01, 0.99], axis=0)
        boxes.append(np.concatenate([(lo + hi) / 2, np.maximum(hi - lo, 1e-3)]))
        sizes.append(p.shape[0])
    if not boxes:
        return np.empty((0, 6))
    arr = np.array(boxes)
    keep = nms_aabb(arr, np.log1p(np.array(sizes, float)), cfg.nms_iou, cfg.max_proposals)
    return arr[keep]


def recall(gt: np.ndarray, boxes: np.ndarray, t: float) -> tuple[int, int]:
    if gt.shape[0] == 0:
        return 0, 0
    if boxes.shape[0] == 0:
        return 0, gt.shape[0]
    return int((pairwise_aabb_iou(gt, boxes).max(axis=1) >= t).sum()), gt.shape[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", default=None, help="folder of scene directories (default: procedural rooms)")
    ap.add_argument("--cloud", choices=("points", "frames"), default="points", help="with --scenes: points.ply or fused frames")
    ap.add_argument("--limit", type=int, default=10, help="scenes to time (default 10)")
    ap.add_argument("--baseline-scenes", type=int, default=3, help="scenes the (slow) baseline runs on (default 3)")
    ap.add_argument("--no-colour", action="store_true", help="propose from geometry only")
    ap.add_argument("--strict", action="store_true", help="exit 1 if the goal is missed")
    args = ap.parse_args()

    t0 = time.perf_counter()
    clouds = scene_clouds(args)
    print(f"{len(clouds)} clouds ({statistics.mean(len(c[1]) for c in clouds):,.0f} points on average) prepared in "
          f"{time.perf_counter() - t0:.1f} s (not timed)")
    cfg = ProposalConfig()
    ours_t, base_t, ours_hits, base_hits = [], [], {0.25: [0, 0], 0.5: [0, 0]}, {0.25: [0, 0], 0.5: [0, 0]}
    ours_on_base = {0.25: [0, 0], 0.5: [0, 0]}
    n_props = []
    for i, (name, xyz, rgb, gt) in enumerate(clouds):
        t = time.perf_counter()
        res = propose_boxes(xyz, cfg, rgb=None if args.no_colour else rgb)
        ours_t.append(time.perf_counter() - t)
        n_props.append(len(res))
        for th in (0.25, 0.5):
            h, n = recall(gt, res.as_array(), th)
            ours_hits[th][0] += h
            ours_hits[th][1] += n
        if i < args.baseline_scenes:
            t = time.perf_counter()
            base = dbscan_proposals(xyz, cfg)
            base_t.append(time.perf_counter() - t)
            for th in (0.25, 0.5):
                h, n = recall(gt, base, th)
                base_hits[th][0] += h
                base_hits[th][1] += n
                h, n = recall(gt, res.as_array(), th)
                ours_on_base[th][0] += h
                ours_on_base[th][1] += n
            print(f"  {name}: {len(xyz):,} points  ours {ours_t[-1] * 1000:.0f} ms ({len(res)} boxes)  dbscan {base_t[-1] * 1000:.0f} ms ({len(base)} boxes)")

    def rate(d, th):
        return d[th][0] / d[th][1] if d[th][1] else float("nan")

    print(f"ours:     {statistics.mean(ours_t) * 1000:7.0f} ms/scene mean, {statistics.median(ours_t) * 1000:.0f} median, "
          f"{max(ours_t) * 1000:.0f} max over {len(ours_t)} scenes; {statistics.mean(n_props):.1f} proposals; "
          f"recall@0.25 {rate(ours_hits, 0.25):.3f} @0.5 {rate(ours_hits, 0.5):.3f}")
    if base_t:
        mean_ours_same = statistics.mean(ours_t[: len(base_t)])
        print(f"baseline: {statistics.mean(base_t) * 1000:7.0f} ms/scene mean over {len(base_t)} scenes "
              f"({statistics.mean(base_t) / mean_ours_same:.1f}x ours on the same scenes); "
              f"recall@0.25 {rate(base_hits, 0.25):.3f} @0.5 {rate(base_hits, 0.5):.3f} "
              f"(ours on those scenes: {rate(ours_on_base, 0.25):.3f} / {rate(ours_on_base, 0.5):.3f})")
    goal = max(ours_t) < GOAL_S
    print(f"goal: every scene < {GOAL_S:.0f} s: {'PASS' if goal else 'MISS'}")
    return 1 if args.strict and not goal else 0


if __name__ == "__main__":
    sys.exit(main())
