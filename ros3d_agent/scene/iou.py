"""3D intersection-over-union.

Axis-aligned IoU on ``[cx, cy, cz, sx, sy, sz]`` is what the grounding benchmarks (ScanRefer,
Multi3DRefer, Acc@0.25/0.5) score, so it is the default and has a vectorised pairwise form for
matching predictions to ground truth. Boxes with a yaw get an exact oriented IoU: the overlap of the
two rotated footprints (convex polygons, clipped with Sutherland–Hodgman) times the z overlap.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .types import Box3D

__all__ = ["aabb_iou", "pairwise_aabb_iou", "box_iou", "polygon_area", "clip_convex_polygon"]


def _as_boxes(name: str, boxes: ArrayLike) -> NDArray[np.float64]:
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 6:
        raise ValueError(f"{name}: expected shape (N, 6) as [cx, cy, cz, sx, sy, sz], got {arr.shape}")
    return arr


def pairwise_aabb_iou(A: ArrayLike, B: ArrayLike) -> NDArray[np.float64]:
    """(N, M) axis-aligned IoU between every box of ``A`` (N, 6) and ``B`` (M, 6).

    Pairs whose union has zero volume (degenerate boxes) get IoU 0 rather than NaN.
    """
    a = _as_boxes("A", A)
    b = _as_boxes("B", B)
    a_lo, a_hi = a[:, :3] - a[:, 3:] / 2, a[:, :3] + a[:, 3:] / 2
    b_lo, b_hi = b[:, :3] - b[:, 3:] / 2, b[:, :3] + b[:, 3:] / 2
    overlap = np.minimum(a_hi[:, None, :], b_hi[None, :, :]) - np.maximum(a_lo[:, None, :], b_lo[None, :, :])
    inter = np.prod(np.clip(overlap, 0.0, None), axis=-1)
    vol_a = np.prod(np.clip(a[:, 3:], 0.0, None), axis=-1)
    vol_b = np.prod(np.clip(b[:, 3:], 0.0, None), axis=-1)
    union = vol_a[:, None] + vol_b[None, :] - inter
    out = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def aabb_iou(a: ArrayLike, b: ArrayLike) -> float:
    """Axis-aligned IoU of two boxes given as ``[cx, cy, cz, sx, sy, sz]``."""
    return float(pairwise_aabb_iou(np.reshape(np.asarray(a, dtype=np.float64), (1, -1)), np.reshape(np.asarray(b, dtype=np.float64), (1, -1)))[0, 0])


def polygon_area(poly: ArrayLike) -> float:
    """Area of a simple polygon (K, 2) by the shoelace formula; positive when counter-clockwise."""
    p = np.asarray(poly, dtype=np.float64)
    if p.shape[0] < 3:
        return 0.0
    x, y = p[:, 0], p[:, 1]
    return float(0.5 * (np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def clip_convex_polygon(subject: ArrayLike, clip: ArrayLike) -> NDArray[np.float64]:
    """Sutherland–Hodgman: the part of ``subject`` inside the convex, counter-clockwise ``clip`` polygon.

    Points on a clip edge count as inside (with a tolerance scaled to the polygon size), so two
    coincident footprints intersect to themselves instead of losing area to rounding.
    """
    out = [tuple(p) for p in np.asarray(subject, dtype=np.float64)]
    clip_pts = np.asarray(clip, dtype=np.float64)
    scale = max(float(np.abs(clip_pts).max(initial=0.0)), float(np.abs(np.asarray(subject)).max(initial=0.0)), 1.0)
    eps = 1e-12 * scale * scale
    n = clip_pts.shape[0]
    for i in range(n):
        if not out:
            break
        ax, ay = clip_pts[i]
        bx, by = clip_pts[(i + 1) % n]
        ex, ey = bx - ax, by - ay

        def side(p: tuple[float, float]) -> float:  # > 0: left of edge a->b, i.e. inside for CCW clip
            return ex * (p[1] - ay) - ey * (p[0] - ax)

        inp, out = out, []
        prev = inp[-1]
        prev_side = side(prev)
        for cur in inp:
            cur_side = side(cur)
            if cur_side >= -eps:
                if prev_side < -eps:
                    out.append(_intersect(prev, cur, prev_side, cur_side))
                out.append(cur)
            elif prev_side >= -eps:
                out.append(_intersect(prev, cur, prev_side, cur_side))
            prev, prev_side = cur, cur_side
    return np.asarray(out, dtype=np.float64).reshape(-1, 2)


def _intersect(p: tuple[float, float], q: tuple[float, float], sp: float, sq: float) -> tuple[float, float]:
    """Point where segment p->q crosses the clip line, from the signed distances of its ends."""
    t = sp / (sp - sq)
    return (p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1]))


def box_iou(a: Box3D, b: Box3D) -> float:
    """IoU of two :class:`Box3D`: axis-aligned when neither has a yaw, exact oriented IoU otherwise."""
    if a.yaw is None and b.yaw is None:
        return aabb_iou(a.to_list(), b.to_list())
    z_overlap = min(a.center[2] + a.size[2] / 2, b.center[2] + b.size[2] / 2) - max(
        a.center[2] - a.size[2] / 2, b.center[2] - b.size[2] / 2
    )
    if z_overlap <= 0:
        return 0.0
    inter_poly = clip_convex_polygon(a.footprint(), b.footprint())
    inter = max(polygon_area(inter_poly), 0.0) * z_overlap
    union = a.volume + b.volume - inter
    return float(inter / union) if union > 0 else 0.0
