"""Class-agnostic 3D box proposals from a point cloud alone (no learned model).

Grounding in Video-3D-LLM-style models is *selection* among candidate boxes (the published systems
use ≤ 50 Mask3D proposals), so grounding accuracy is capped by how many real objects some candidate
covers. A robot has no Mask3D, so this module makes candidates from geometry (and colour if given):

1. **Structure.** Indoor scenes are mostly floor, walls and ceiling, and every object touches one of
   them, so they must go before clustering or the whole room is one cluster. Gravity is +z (ROS
   REP-103, ScanNet's axis-aligned scans). The floor and ceiling are the lowest/highest horizontal
   layers covering a large share of the scene's footprint; walls are vertical layers found after
   rotating the scene by its dominant yaw (the angle at which x/y histograms are sharpest), accepted
   only if they are continuous, reach the top of the scene and have almost nothing behind them (which
   tells a wall from the front of a bookshelf). How thick each layer is in the cloud is measured from
   the noise on its far side, because depth noise grows with range.
2. **Clusters.** The rest is voxelised (2.5 cm, one mean point per voxel) and split into connected
   components, found with sorted 1-D voxel keys and a sparse graph, so cost follows the number of
   points, not the size of the room. Three linkings are used (plain; DBSCAN-like core voxels only;
   core voxels of similar colour), because each fails somewhere the others do not.
3. **Supports.** A table and the mug on it touch, so they form one component. A component with a large
   horizontal layer that has points above it is also proposed split: the support without what stands
   on it, and each object on it clustered separately (flat ones too, such as a book).
4. **Derived boxes.** Parts hidden from the camera are filled in by priors: two clusters stacked one
   over the other (a lamp's shade and pole) are merged, a floating cluster with nothing under it is
   extended to the floor, and a cluster close to a wall is extended to it.
5. **Boxes.** Axis-aligned boxes from robust quantiles of voxel means, snapped to the floor / support
   top / a wall when within a few centimetres (those points went with the structure), filtered for
   tiny, huge and flat (leftover structure) shapes, scored by a heuristic objectness, and NMS'd.

Everything is deterministic (no RANSAC sampling). :class:`IncrementalProposer` serves the ROS node: it
recomputes only when the fused cloud has grown enough and keeps proposal ids stable across updates.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from .bev import _layer_cells, _xy_cells, estimate_ceiling_height
from .fusion import voxel_keys
from .iou import pairwise_aabb_iou
from .types import Box3D

__all__ = [
    "ProposalConfig",
    "Wall",
    "SceneStructure",
    "ProposalResult",
    "estimate_structure",
    "scene_structure",
    "structure_mask",
    "propose_boxes",
    "IncrementalProposer",
    "nms_aabb",
]

#: Proposal kinds, in the order they win score ties.
KINDS = ("object", "support", "on_support", "stacked", "grounded", "to_wall")

# Points more than this behind a wall plane count as "behind it" (beyond any plausible depth noise).
_WALL_BEHIND = 0.3
# A wall reaches within this of the top of the scene (the ceiling, or the highest points seen).
_WALL_TOP_GAP = 0.4
# ... and occupies at least this share of its length × height (10 cm cells); less at the scene's edge.
_WALL_MIN_OCCUPANCY = 0.35
_WALL_MIN_OCCUPANCY_EDGE = 0.1
# Neighbouring voxels of one object: chromaticity within this L1 distance and brightness within this ratio.
_COLOUR_CHROMA = 0.12
_COLOUR_RATIO = 2.2
# Score penalties: a pole is narrower than _POLE_WIDTH both ways, a sliver thinner than _SLIVER one way.
_POLE_WIDTH = 0.12
_SLIVER = 0.06
# ... a free-standing pole (not on the floor) only counts as one when taller than this (a bottle is not).
_POLE_HEIGHT = 0.5
# A wall remnant is thinner than this and lies within this of the wall's noisy layer.
_WALL_HUG = 0.12
# Thickness of the height window in which a support surface (a table top and its depth noise) is sought.
_SUPPORT_BAND = 0.05
# Points this far above a support surface may belong to a flat object lying on it.
_FLAT_RISE = 0.012
# Two clusters are one stacked object when the smaller footprint lies this much inside the larger,
# the upper starts at most _STACK_GAP above the lower's top and overlaps it by at most _STACK_OVERLAP.
_STACK_NESTED = 0.6
_STACK_GAP = 0.15
_STACK_OVERLAP = 0.05
# A cluster whose bottom is this far above the floor floats, unless another one under it covers
# _FLOAT_SUPPORT of its footprint.
_FLOAT_HEIGHT = 0.3
_FLOAT_SUPPORT = 0.3
# Clusters ending between _WALL_SNAP_MIN and _WALL_REACH from a wall also get a box reaching it
# (closer ones were already snapped to it).
_WALL_SNAP_MIN = 0.02
_WALL_REACH = 0.45
# NMS sees at most this many times max_proposals candidates, the best scored.
_NMS_POOL = 12
# Candidate groups (a cluster and its support split) of clustering scale k are numbered from k * this.
_GROUPS_PER_SCALE = 1_000_000
# Measured floor/wall thickness is capped here: a thicker "noise" layer is really furniture.
_MAX_STRUCTURE_MARGIN = 0.15


@dataclass(frozen=True)
class ProposalConfig:
    """Knobs of :func:`propose_boxes` (metres unless noted); defaults are tuned on synthetic rooms.

    Attributes:
        voxel_size: clustering grid; gaps wider than ``link_voxels`` voxels separate objects.
        link_voxels: connectivity radius in voxels (1: the 26-neighbourhood).
        core_neighbours: only voxels with this many occupied neighbours chain clusters together
            (0: plain connected components); stops sparse noise from bridging objects.
        floor_margin: points within this height of the floor are floor (at least; the measured
            thickness of a noisy floor wins when larger).
        ceiling_margin: points within this distance below the ceiling are ceiling.
        wall_margin: points within this distance of a wall plane are wall (at least, as above).
        min_wall_length, min_wall_height: smallest visible extent of a wall.
        wall_outside_fraction: at most this share of the points near a wall may lie behind it.
        remove_walls: set False for clouds without walls (a table-top scan).
        split_supports: also propose supports and the objects on them separately.
        min_support_area: smallest horizontal layer (m²) treated as a support (a small chair seat is not).
        min_support_fraction: ... and it must cover this share of its component's footprint.
        min_support_height: supports are at least this far above the floor.
        support_gap: points this far above the top of a support's (noisy) surface layer stand on it.
        box_quantile: per-axis share of the points trimmed from each side of a box (robust to stray
            points and depth noise); 0 for min/max.
        snap_margin: extend a box to the floor, a support top or a wall within this gap (+ one voxel).
        min_voxels, min_extent: drop clusters with fewer voxels or a smaller largest extent.
        max_extent_xy, max_height: drop clusters bigger than any object (merged furniture/structure).
        flat_thickness, flat_min_area: drop thin, wide slabs (structure leftovers, rugs).
        nms_iou: suppress a candidate overlapping a better one by more than this 3D IoU.
        max_proposals: keep at most this many (Video-3D-LLM keeps 50 Mask3D proposals).
        scales: clustering runs on grids of ``voxel_size`` times each of these, and all candidates
            meet in NMS: the right grid depends on how densely the cloud samples surfaces.
    """

    voxel_size: float = 0.025
    link_voxels: int = 1
    core_neighbours: int = 4
    floor_margin: float = 0.03
    ceiling_margin: float = 0.10
    wall_margin: float = 0.04
    min_wall_length: float = 1.0
    min_wall_height: float = 1.0
    wall_outside_fraction: float = 0.05
    remove_walls: bool = True
    split_supports: bool = True
    min_support_area: float = 0.2
    min_support_fraction: float = 0.4
    min_support_height: float = 0.25
    support_gap: float = 0.012
    box_quantile: float = 0.01
    snap_margin: float = 0.04
    min_voxels: int = 8
    min_extent: float = 0.05
    max_extent_xy: float = 3.5
    max_height: float = 2.6
    flat_thickness: float = 0.03
    flat_min_area: float = 0.6
    nms_iou: float = 0.5
    max_proposals: int = 50
    scales: tuple[float, ...] = (1.0, 1.4)

    def __post_init__(self) -> None:
        for name in ("voxel_size", "floor_margin", "wall_margin", "min_wall_length", "min_wall_height", "min_extent", "max_extent_xy", "max_height"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if int(self.link_voxels) != self.link_voxels or not 1 <= self.link_voxels <= 3:
            raise ValueError(f"link_voxels must be 1, 2 or 3, got {self.link_voxels}")
        if not 0 <= self.box_quantile < 0.5:
            raise ValueError(f"box_quantile must be in [0, 0.5), got {self.box_quantile}")
        if not 0 < self.nms_iou <= 1:
            raise ValueError(f"nms_iou must be in (0, 1], got {self.nms_iou}")
        if self.max_proposals < 1 or self.min_voxels < 1:
            raise ValueError("max_proposals and min_voxels must be >= 1")
        if not self.scales or any(not (0.5 <= s <= 4.0) for s in self.scales):
            raise ValueError(f"scales must be a non-empty tuple of factors in [0.5, 4], got {self.scales}")


@dataclass(frozen=True)
class Wall:
    """A wall plane in the yaw-aligned frame: ``coord[axis] == offset``, the room on the ``inside`` side (+1/−1).

    ``margin`` is how far into the room its points reach: depth noise grows with range (a wall 5 m
    away is several centimetres thick in a fused cloud), so it is measured per wall.
    """

    axis: int
    offset: float
    inside: int
    span: tuple[float, float]
    margin: float


@dataclass(frozen=True)
class SceneStructure:
    """The room's supporting structure: floor/ceiling heights (None if absent), dominant yaw (rad), walls,
    the measured thickness of the floor layer above ``floor_z`` (``floor_margin``) and the extent of
    the points along the yaw-aligned axes (``bounds``, 0.2 % / 99.8 % quantiles)."""

    floor_z: float | None = None
    ceiling_z: float | None = None
    yaw: float = 0.0
    walls: tuple[Wall, ...] = ()
    floor_margin: float = 0.0
    bounds: tuple[tuple[float, float], tuple[float, float]] | None = None

    def boundary(self, axis: int, side: int) -> float | None:
        """Where the room ends along yaw-aligned ``axis`` on ``side`` (−1 low, +1 high): the wall if one
        was found, else the edge of the scene's points (nothing was seen beyond it), else None."""
        for w in self.walls:
            if w.axis == axis and w.inside == -side:
                return w.offset
        if self.bounds is None:
            return None
        return self.bounds[axis][0 if side < 0 else 1]

    def rotate(self, xy: NDArray[np.floating]) -> NDArray[np.float64]:
        """World xy (N, 2) → the yaw-aligned frame in which walls are axis-parallel."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        x, y = xy[:, 0].astype(np.float64), xy[:, 1].astype(np.float64)
        return np.stack([c * x + s * y, -s * x + c * y], axis=1)


@dataclass(frozen=True)
class ProposalResult:
    """Proposals, best first: ``boxes`` (list[Box3D]) with aligned ``scores``, ``ids``, ``kinds``, ``n_voxels``.

    ``kinds`` says how each box was made (see :data:`KINDS`): ``object`` a cluster, ``support`` a
    cluster without what stands on it, ``on_support`` a thing standing on a support, ``stacked`` /
    ``grounded`` / ``to_wall`` a cluster completed by a prior (see the module docstring).
    """

    boxes: list[Box3D]
    scores: NDArray[np.float32]
    ids: list[int]
    kinds: list[str]
    n_voxels: list[int]
    structure: SceneStructure = field(default_factory=SceneStructure)
    timings: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.boxes)

    def as_array(self) -> NDArray[np.float64]:
        """(N, 6) ``[cx, cy, cz, sx, sy, sz]``, the prediction format."""
        if not self.boxes:
            return np.empty((0, 6), np.float64)
        return np.array([b.to_list()[:6] for b in self.boxes], dtype=np.float64)


# ---------------------------------------------------------------------------------------------------
# Voxels and connectivity
# ---------------------------------------------------------------------------------------------------
def _voxel_means(
    xyz: NDArray[np.floating], vs: float, rgb: NDArray[np.uint8] | None = None
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64] | None]:
    """Sorted unique voxel keys, the mean position of the points in each and their mean colour (if given)."""
    keys = voxel_keys(xyz, vs)
    ukeys, inv, cnt = np.unique(keys, return_inverse=True, return_counts=True)
    means = np.empty((ukeys.shape[0], 3), np.float64)
    for i in range(3):
        means[:, i] = np.bincount(inv, weights=xyz[:, i], minlength=ukeys.shape[0])
    means /= cnt[:, None]
    colors = None
    if rgb is not None:
        colors = np.empty((ukeys.shape[0], 3), np.float64)
        for i in range(3):
            colors[:, i] = np.bincount(inv, weights=rgb[:, i], minlength=ukeys.shape[0])
        colors /= cnt[:, None]
    return ukeys, means, colors


def _similar_colour(colors: NDArray[np.float64], r: NDArray[np.int64], c: NDArray[np.int64]) -> NDArray[np.bool_]:
    """Edges whose two voxels have the same colour up to shading.

    Chromaticity (rgb / sum) ignores how brightly a face is lit; brightness still separates the
    grey family (black, grey, white), with a wide ratio because shading differs between faces.
    """
    total = colors.sum(axis=1) + 30.0  # +30: dark voxels have unreliable chromaticity, pull it to grey
    chroma = (colors + 10.0) / total[:, None]
    d_chroma = np.abs(chroma[r] - chroma[c]).sum(axis=1)
    ratio = total[r] / total[c]
    return (d_chroma < _COLOUR_CHROMA) & (ratio < _COLOUR_RATIO) & (ratio > 1.0 / _COLOUR_RATIO)


def _neighbour_offsets(r: int) -> list[tuple[int, int, int]]:
    """Half of the (2r+1)³−1 neighbourhood: each undirected edge is searched once."""
    out = []
    for dx in range(-r, r + 1):
        for dy in range(-r, r + 1):
            for dz in range(-r, r + 1):
                if (dx, dy, dz) > (0, 0, 0):
                    out.append((dx, dy, dz))
    return out


def _neighbour_edges(keys: NDArray[np.int64], link: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Undirected edges (i, j) between occupied voxels (sorted keys) within ``link`` voxels of each other."""
    n = keys.shape[0]
    rows, cols = [], []
    for dx, dy, dz in _neighbour_offsets(link):
        # Keys pack (x, y, z) in 21-bit fields with an offset, so a neighbour's key is a constant shift.
        delta = (dx << 42) + (dy << 21) + dz
        target = keys + delta
        pos = np.searchsorted(keys, target)
        pos[pos == n] = n - 1
        hit = keys[pos] == target
        if hit.any():
            rows.append(np.flatnonzero(hit))
            cols.append(pos[hit])
    if not rows:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(rows), np.concatenate(cols)


def _components(
    n: int, edges: tuple[NDArray[np.int64], NDArray[np.int64]], core_neighbours: int = 0
) -> tuple[int, NDArray[np.int32]]:
    """Connected components of ``n`` voxels given their neighbour ``edges``.

    With ``core_neighbours`` > 0 only voxels with at least that many occupied neighbours ("core",
    as in DBSCAN) link components; the others join a neighbouring core voxel's component or stay
    alone. Object surfaces are dense, while depth-noise speckle left between objects after the floor
    and walls are removed is sparse, so this keeps it from chaining objects together (at the price
    of cutting thin parts such as lamp poles and chair legs, which plain components keep).
    """
    if n == 0:
        return 0, np.empty(0, np.int32)
    r, c = edges
    if core_neighbours > 0 and r.shape[0]:
        deg = np.bincount(r, minlength=n) + np.bincount(c, minlength=n)
        core = deg >= core_neighbours
        both = core[r] & core[c]
        _, labels = _graph_components(n, r[both], c[both])
        # Border voxels take the component of a core neighbour (the first edge found, deterministically).
        r_b = np.concatenate([r, c])
        c_b = np.concatenate([c, r])
        attach = ~core[r_b] & core[c_b]
        r_b, c_b = r_b[attach][::-1], c_b[attach][::-1]  # reversed: the first edge is written last and wins
        labels[r_b] = labels[c_b]
        used = np.zeros(n, dtype=np.bool_)
        used[labels] = True
        remap = np.cumsum(used) - 1  # renumber the surviving labels 0..k-1, keeping their order
        return int(used.sum()), remap[labels].astype(np.int32)
    ncomp, labels = _graph_components(n, r, c)
    return int(ncomp), labels.astype(np.int32)


def _graph_components(n: int, r: NDArray[np.int64], c: NDArray[np.int64]) -> tuple[int, NDArray[np.int32]]:
    """Weakly connected components of the graph with edges r→c (one direction suffices: no transpose)."""
    g = csr_matrix((np.ones(r.shape[0], np.int8), (r, c)), shape=(n, n))
    ncomp, labels = connected_components(g, directed=True, connection="weak")
    return int(ncomp), labels


def _sub_edges(edges: tuple[NDArray[np.int64], NDArray[np.int64]], members: NDArray[np.int64], n: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The edges among ``members`` (indices into ``n`` voxels), renumbered 0..len(members)-1."""
    pos = np.full(n, -1, np.int64)
    pos[members] = np.arange(members.shape[0])
    r, c = pos[edges[0]], pos[edges[1]]
    keep = (r >= 0) & (c >= 0)
    return r[keep], c[keep]


def _group(labels: NDArray[np.integer], ncomp: int, min_size: int = 1) -> list[NDArray[np.int64]]:
    """Indices of each label with at least ``min_size`` members, in label order (labels from csgraph
    follow the first member's position). Noise makes thousands of tiny components; they are skipped
    here without a Python-level loop over them."""
    sizes = np.bincount(labels, minlength=ncomp)
    big = np.flatnonzero(sizes >= min_size)
    if big.shape[0] == 0:
        return []
    order = np.argsort(labels, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return [order[starts[i] : starts[i] + sizes[i]] for i in big]


# ---------------------------------------------------------------------------------------------------
# Structure: floor, ceiling, yaw, walls
# ---------------------------------------------------------------------------------------------------
def _find_floor(means: NDArray[np.float64], vs: float, min_fraction: float = 0.2) -> float | None:
    """Lowest horizontal layer (in the bottom 40 % of the height range) covering ``min_fraction`` of the footprint."""
    z = means[:, 2]
    zlo, zhi = np.quantile(z, [0.001, 0.999])
    if zhi - zlo < 0.3:
        return None
    cols = _xy_cells(means, vs)
    footprint = np.unique(cols).shape[0]
    low = z < zlo + 0.4 * (zhi - zlo)
    best = None
    for off in (0.0, vs / 2):
        z0 = zlo - vs + off
        cells = _layer_cells(z[low], cols[low], z0, vs)
        good = np.flatnonzero(cells >= min_fraction * footprint)
        if good.shape[0]:
            lo_edge = z0 + good[0] * vs
            if best is None or lo_edge < best:
                best = lo_edge
    if best is None:
        return None
    band = (z >= best) & (z < best + vs)
    zf = float(np.median(z[band]))
    near = np.abs(z - zf) <= vs  # refine on the layer's own points
    return float(np.median(z[near]))


def _estimate_yaw(xy: NDArray[np.float64], weights: NDArray[np.float64], bin_size: float = 0.05) -> float:
    """Yaw in [-45°, 45°) at which the weighted x/y histograms of the points are sharpest (walls axis-parallel).

    Prefers exactly 0 when it is nearly as sharp, since scans are usually axis-aligned already and a
    spurious small rotation would only blur boxes.
    """
    if xy.shape[0] < 50:
        return 0.0

    def sharpness(theta: float) -> float:
        c, s = math.cos(theta), math.sin(theta)
        total = 0.0
        for u in (c * xy[:, 0] + s * xy[:, 1], -s * xy[:, 0] + c * xy[:, 1]):
            b = np.floor((u - u.min()) / bin_size).astype(np.int64)
            h = np.bincount(b, weights=weights)
            total += float(np.dot(h, h))
        return total

    coarse = np.deg2rad(np.arange(-45.0, 45.0, 1.0))
    scores = np.array([sharpness(t) for t in coarse])
    best = float(coarse[int(np.argmax(scores))])
    fine = best + np.deg2rad(np.arange(-1.0, 1.0001, 0.1))
    fscores = np.array([sharpness(t) for t in fine])
    best, best_score = float(fine[int(np.argmax(fscores))]), float(fscores.max())
    if sharpness(0.0) >= 0.97 * best_score:
        return 0.0
    return best


def _columns_with_weights(p: NDArray[np.float64], cell: float, max_columns: int = 8000) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Occupied xy columns (centres) and how many points each holds: walls are long lines of tall columns."""
    ij = np.floor(p[:, :2] / cell).astype(np.int64)
    lo = ij.min(axis=0)
    ij -= lo
    span = int(ij[:, 1].max()) + 1
    cols, cnt = np.unique(ij[:, 0] * span + ij[:, 1], return_counts=True)
    step = -(-cols.shape[0] // max_columns)
    cols, cnt = cols[::step], cnt[::step]
    xy = (np.stack([cols // span, cols % span], axis=1) + lo + 0.5) * cell
    return xy.astype(np.float64), cnt.astype(np.float64)


def _wall_at(
    off: float, axis: int, c_all: NDArray[np.float64], o_all: NDArray[np.float64], z: NDArray[np.float64], zmask: NDArray[np.bool_],
    cfg: ProposalConfig, z_floor: float, z_top: float, outermost: bool,
) -> Wall | None:
    """The wall at coordinate ``off`` along ``axis`` if the points there look like one, else None."""
    band = (np.abs(c_all - off) <= cfg.wall_margin) & zmask
    ob = o_all[band]
    zb = z[band]
    olo, ohi = np.quantile(ob, [0.02, 0.98])
    zlo, zhi = np.quantile(zb, [0.02, 0.98])
    need_h = min(cfg.min_wall_height, 0.6 * (z_top - z_floor))
    if ohi - olo < cfg.min_wall_length or zhi - zlo < need_h or zhi < z_top - _WALL_TOP_GAP:
        return None
    # A wall is one continuous surface: most of its (length × height) is occupied, whereas a peak
    # made of several pieces of furniture at the same distance is mostly empty. At the very edge of
    # the scene nothing else can be, so a sparsely seen (far, occluded) wall is accepted there.
    cell = 0.1
    oc = np.floor((ob - olo) / cell).astype(np.int64)
    zc = np.floor((zb - z_floor) / cell).astype(np.int64)
    n_o = int((ohi - olo) // cell) + 1
    n_z = int((z_top - z_floor) // cell) + 1
    ok = (oc >= 0) & (oc < n_o) & (zc >= 0) & (zc < n_z)
    occupied = np.unique(oc[ok] * n_z + zc[ok]).shape[0]
    if occupied < (_WALL_MIN_OCCUPANCY_EDGE if outermost else _WALL_MIN_OCCUPANCY) * n_o * n_z:
        return None
    local = (o_all >= olo) & (o_all <= ohi)
    # "Behind" starts beyond the depth noise: a far wall is a fuzzy layer several cm thick.
    above = int(np.count_nonzero(local & (c_all > off + _WALL_BEHIND)))
    below = int(np.count_nonzero(local & (c_all < off - _WALL_BEHIND)))
    n_local = int(np.count_nonzero(local))
    if above <= cfg.wall_outside_fraction * n_local:
        inside = -1
    elif below <= cfg.wall_outside_fraction * n_local:
        inside = +1
    else:
        return None
    # Nothing stands behind a wall, so the spread of the points on that side is pure noise:
    # mirrored, it is how far the wall's own points reach into the room.
    dev = (c_all[local] - off) * inside
    behind = -dev[(dev < 0) & (dev > -_WALL_BEHIND)]
    noise = float(np.quantile(behind, 0.98)) if behind.shape[0] >= 20 else 0.0
    margin = float(np.clip(noise, cfg.wall_margin, _MAX_STRUCTURE_MARGIN))
    return Wall(axis, off, inside, (float(olo), float(ohi)), margin)


def _find_walls(
    means: NDArray[np.float64], rot: NDArray[np.float64], zmask: NDArray[np.bool_], cfg: ProposalConfig, z_floor: float, z_top: float
) -> list[Wall]:
    """Vertical layers, parallel to the yaw-aligned axes, that bound the scene.

    A candidate (a peak of the point histogram along x' or y') is a wall when it is long and tall
    enough, reaches up to near the top of the scene (furniture fronts do not), is mostly filled (a
    row of furniture at one distance is not), and almost nothing lies more than ``_WALL_BEHIND``
    behind it. Candidates are tried strongest first; a weaker peak within ``_WALL_BEHIND`` of an
    accepted wall is the face of something standing against it.
    """
    vs = cfg.voxel_size
    walls: list[Wall] = []
    min_count = 0.3 * cfg.min_wall_length * min(cfg.min_wall_height, z_top - z_floor) / (vs * vs)
    z = means[:, 2]
    for axis in (0, 1):
        c_all = rot[:, axis]
        o_all = rot[:, 1 - axis]
        c = c_all[zmask]
        if c.shape[0] == 0:
            continue
        c0 = float(c.min())
        edge_lo, edge_hi = np.quantile(c, [0.002, 0.998])
        bins_all = np.floor((c_all - c0) / vs)
        h = np.bincount(bins_all[zmask].astype(np.int64)).astype(np.float64)
        hs = np.convolve(h, np.ones(3), mode="same")
        w = max(1, int(round(2 * cfg.wall_margin / vs)))
        # Local maxima of the smoothed histogram, strongest first.
        padded = np.pad(hs, w, constant_values=-1.0)
        win = np.lib.stride_tricks.sliding_window_view(padded, 2 * w + 1).max(axis=1)
        centres = c0 + (np.arange(hs.shape[0]) + 0.5) * vs
        at_edge = (centres - edge_lo < _WALL_BEHIND) | (edge_hi - centres < _WALL_BEHIND)
        peaks = np.flatnonzero((hs >= win) & ((hs >= min_count) | (at_edge & (hs >= min_count / 3))))
        # A wall has (almost) nothing behind it over the whole scene too: this cumulative-histogram
        # test is free and rejects interior peaks (furniture fronts) before the exact local test.
        cum = np.cumsum(h)
        frac_below = (cum[np.maximum(peaks - 2, 0)] - h[np.maximum(peaks - 2, 0)]) / cum[-1]
        frac_above = (cum[-1] - cum[np.minimum(peaks + 2, h.shape[0] - 1)]) / cum[-1]
        peaks = peaks[np.minimum(frac_below, frac_above) <= max(0.25, 3 * cfg.wall_outside_fraction)]
        peaks = peaks[np.argsort(-hs[peaks], kind="stable")][:8]
        taken: list[float] = []
        for p in peaks:
            sel_bins = (np.abs(bins_all - p) <= 1) & zmask
            off = float(np.median(c_all[sel_bins]))
            if any(abs(off - t) < _WALL_BEHIND for t in taken):
                continue  # the face of something standing at a wall already found
            wall = _wall_at(off, axis, c_all, o_all, z, zmask, cfg, z_floor, z_top, bool(at_edge[p]))
            if wall is not None:
                walls.append(wall)
                taken.append(off)
    return walls


def estimate_structure(means: NDArray[np.float64], cfg: ProposalConfig) -> SceneStructure:
    """Floor, ceiling, dominant yaw and walls of a (voxel-downsampled) cloud."""
    if means.shape[0] < 100:
        return SceneStructure()
    floor_z = _find_floor(means, cfg.voxel_size)
    ceiling_z = estimate_ceiling_height(means)
    floor_margin = cfg.floor_margin
    if floor_z is not None:
        # As for walls: below the floor there is only noise, and its spread mirrors the floor's thickness.
        below = floor_z - means[(means[:, 2] < floor_z) & (means[:, 2] > floor_z - 0.25), 2]
        if below.shape[0] >= 20:
            floor_margin = float(np.clip(np.quantile(below, 0.98), cfg.floor_margin, _MAX_STRUCTURE_MARGIN))
    if not cfg.remove_walls:
        return SceneStructure(floor_z, ceiling_z, floor_margin=floor_margin)
    z = means[:, 2]
    zlo = floor_z if floor_z is not None else float(np.quantile(z, 0.001))
    zhi = ceiling_z if ceiling_z is not None else float(np.quantile(z, 0.999))
    zmask = (z > zlo + floor_margin + 0.05) & (z < zhi - cfg.ceiling_margin)
    if zmask.sum() < 50:
        return SceneStructure(floor_z, ceiling_z, floor_margin=floor_margin)
    yaw = _estimate_yaw(*_columns_with_weights(means[zmask], 2 * cfg.voxel_size))
    st = SceneStructure(floor_z, ceiling_z, yaw)
    rot = st.rotate(means[:, :2])
    walls = _find_walls(means, rot, zmask, cfg, zlo + floor_margin, zhi - cfg.ceiling_margin)
    q = np.quantile(rot, [0.002, 0.998], axis=0)
    bounds = ((float(q[0, 0]), float(q[1, 0])), (float(q[0, 1]), float(q[1, 1])))
    return SceneStructure(floor_z, ceiling_z, yaw, tuple(walls), floor_margin, bounds)


def _structure_keep(means: NDArray[np.float64], st: SceneStructure, cfg: ProposalConfig) -> NDArray[np.bool_]:
    """True for voxels that are not floor, ceiling, wall, or outside the walls."""
    z = means[:, 2]
    keep = np.ones(means.shape[0], dtype=np.bool_)
    if st.floor_z is not None:
        keep &= z > st.floor_z + st.floor_margin
    if st.ceiling_z is not None:
        keep &= z < st.ceiling_z - cfg.ceiling_margin
    if st.walls:
        rot = st.rotate(means[:, :2])
        for w in st.walls:
            c = rot[:, w.axis]
            keep &= (c - w.offset) * w.inside > w.margin
    return keep


# ---------------------------------------------------------------------------------------------------
# Candidates
# ---------------------------------------------------------------------------------------------------
@dataclass
class _Candidate:
    lo: NDArray[np.float64]
    hi: NDArray[np.float64]
    n: int
    kind: str
    fill: float
    group: int


def _fit(p: NDArray[np.float64], q: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Box of voxel means ``p``, trimming a share ``q`` of the voxels on each side of every axis.

    Voxel means rather than raw points: depth noise scatters a surface's points, and averaging per
    voxel pulls them back onto it. (Trimming by points per voxel was tried and loses the parts of an
    object seen from few views.)
    """
    if q > 0 and p.shape[0] >= 50:
        lo, hi = np.quantile(p, [q, 1 - q], axis=0)
        return lo.astype(np.float64), hi.astype(np.float64)
    return p.min(axis=0).astype(np.float64), p.max(axis=0).astype(np.float64)


def _footprint_fill(p: NDArray[np.float64], lo: NDArray[np.float64], hi: NDArray[np.float64], vs: float) -> float:
    """Share of the box's xy footprint covered by the cluster seen from above (objects are solid, clutter is not)."""
    cells = max(1.0, math.ceil((hi[0] - lo[0]) / vs + 1e-9) * math.ceil((hi[1] - lo[1]) / vs + 1e-9))
    return min(1.0, np.unique(_xy_cells(p, vs)).shape[0] / cells)


def _snap(lo: NDArray[np.float64], hi: NDArray[np.float64], st: SceneStructure, cfg: ProposalConfig) -> None:
    """Extend a box to the floor, and to walls when the scene is axis-aligned (in place)."""
    reach = cfg.snap_margin + cfg.voxel_size
    if st.floor_z is not None and lo[2] - st.floor_z <= st.floor_margin + reach:
        lo[2] = min(lo[2], st.floor_z)
    if st.yaw == 0.0:
        for w in st.walls:
            a = w.axis
            if w.inside > 0 and 0 <= lo[a] - w.offset <= w.margin + reach:
                lo[a] = w.offset
            elif w.inside < 0 and 0 <= w.offset - hi[a] <= w.margin + reach:
                hi[a] = w.offset


def _find_support(p: NDArray[np.float64], st: SceneStructure, cfg: ProposalConfig) -> tuple[float, float] | None:
    """The highest large horizontal surface of a cluster that has something standing on it.

    Returns ``(surface_z, cut_z)``: the surface height (where objects on it start) and the height
    above which points belong to those objects, which clears the surface's own depth noise. The
    surface is searched as a 5 cm window sliding in vs/2 steps over the cluster's heights, counting the
    distinct xy columns it covers, so a noisy top (a far table is a layer several cm thick) counts whole.
    """
    vs = cfg.voxel_size
    ext = p[:, :2].max(axis=0) - p[:, :2].min(axis=0)
    if ext[0] * ext[1] < cfg.min_support_area:
        return None  # cheap exit for the many small clusters
    z = p[:, 2]
    cols = _xy_cells(p, vs)
    ucols, colidx = np.unique(cols, return_inverse=True)
    footprint = ucols.shape[0]
    need = max(cfg.min_support_area / (vs * vs), cfg.min_support_fraction * footprint)
    if footprint < need:
        return None
    floor = st.floor_z if st.floor_z is not None else float(z.min())
    fine = vs / 2
    width = max(2, int(round(_SUPPORT_BAND / fine)))
    z0 = float(z.min())
    zb = np.floor((z - z0) / fine).astype(np.int64)
    nb = int(zb.max()) + 1
    occ = np.zeros((footprint, nb + 1), dtype=np.int32)
    occ[colidx, zb + 1] = 1
    cs = np.cumsum(occ, axis=1)
    starts = np.arange(0, max(nb - width + 1, 1))
    ends = np.minimum(starts + width, nb)
    cells = np.count_nonzero(cs[:, ends] - cs[:, starts], axis=0)  # columns seen in window [start, end)
    good = np.flatnonzero(cells >= need)
    while good.shape[0]:
        top = int(good[-1])
        # The highest qualifying window may only graze the surface: take the fullest one just below.
        lo = max(0, top - width)
        b = lo + int(np.argmax(cells[lo : top + 1]))
        band = (zb >= b) & (zb < b + width)
        surface = float(np.median(z[band]))
        cut = float(np.quantile(z[band], 0.95)) + cfg.support_gap
        if surface - floor < cfg.min_support_height:
            return None
        if np.count_nonzero(z > cut) >= cfg.min_voxels:
            return surface, cut
        good = good[good < lo]
    return None


def _candidates(
    means: NDArray[np.float64],
    keys: NDArray[np.int64],
    st: SceneStructure,
    cfg: ProposalConfig,
    colors: NDArray[np.float64] | None = None,
) -> list[_Candidate]:
    """Boxes of every hypothesis: core-linked clusters, plain connected clusters, colour-split
    clusters (when colours are given), and their support splits.

    Several clusterings are used because none is right everywhere: plain connectivity keeps thin
    parts (a lamp's pole, a round table's pedestal, chair legs) but lets noise chain neighbours
    together; core linking separates neighbours but drops thin parts; cutting links between
    differently coloured voxels separates things that touch (a book lying on a table, two mugs side
    by side) but also splits multi-coloured objects. NMS later removes duplicates.
    """
    vs = cfg.voxel_size
    n = keys.shape[0]
    edges = _neighbour_edges(keys, cfg.link_voxels)
    hypotheses = [(edges, cfg.core_neighbours)] if cfg.core_neighbours > 0 else []
    hypotheses.append((edges, 0))
    if colors is not None and edges[0].shape[0]:
        same = _similar_colour(colors, edges[0], edges[1])
        hypotheses.append(((edges[0][same], edges[1][same]), cfg.core_neighbours))
    out: list[_Candidate] = []
    group = 0

    def add(idx: NDArray[np.int64], kind: str, support_z: float | None = None) -> None:
        if idx.shape[0] < cfg.min_voxels:
            return
        p = means[idx]
        lo, hi = _fit(p, cfg.box_quantile)
        _snap(lo, hi, st, cfg)
        if support_z is not None and lo[2] - support_z <= cfg.support_gap + cfg.snap_margin + vs:
            lo[2] = min(lo[2], support_z)
        out.append(_Candidate(lo, hi, int(idx.shape[0]), kind, _footprint_fill(p, lo, hi, vs), group))

    seen: set[tuple[int, int, int]] = set()  # (size, first, last) of clusters already expanded
    for hyp_edges, core in hypotheses:
        ncomp, labels = _components(n, hyp_edges, core)
        for members in _group(labels, ncomp, cfg.min_voxels):
            sig = (int(members.shape[0]), int(members[0]), int(members[-1]))
            if sig in seen:
                continue  # the same cluster under both linkings
            seen.add(sig)
            group += 1
            add(members, "object")
            if not cfg.split_supports:
                continue
            support = _find_support(means[members], st, cfg)
            if support is None:
                continue
            zs, cut = support
            above = means[members, 2] > cut
            add(members[~above], "support")
            # Objects on the support: above the cut that clears the surface's noise, and also above a
            # cut just over the surface, which keeps flat things (a book) when the surface is clean.
            member_edges = _sub_edges(hyp_edges, members, n)
            levels = [cut] + ([zs + _FLAT_RISE] if zs + _FLAT_RISE < cut else [])
            for level in levels:
                high = means[members, 2] > level
                top = members[high]
                top_edges = _sub_edges(member_edges, np.flatnonzero(high), members.shape[0])
                # Small things on a table often nearly touch; a stricter core splits them, NMS dedupes.
                cores = (cfg.core_neighbours, 2 * cfg.core_neighbours) if level == cut else (cfg.core_neighbours,)
                for top_core in cores:
                    n_top, top_labels = _components(top.shape[0], top_edges, top_core)
                    for sub in _group(top_labels, n_top, cfg.min_voxels):
                        add(top[sub], "on_support", zs)
    objects = [c for c in out if c.kind == "object"]
    # Stacking pairs of noise fragments only floods NMS: merge clusters of some substance.
    out.extend(_stacked_merges([c for c in objects if c.n >= 2 * cfg.min_voxels]))
    out.extend(_grounded(objects, st))
    out.extend(_to_wall(objects, st))
    return out


def _grounded(objects: list[_Candidate], st: SceneStructure) -> list[_Candidate]:
    """Floating clusters extended down to the floor.

    Something hovering above the floor with nothing under it stands on a part too thin or too hidden
    to be seen (a lamp's pole, a pedestal under a round top), so the object reaches the floor.
    """
    if st.floor_z is None or not objects:
        return []
    lo = np.array([c.lo for c in objects])
    hi = np.array([c.hi for c in objects])
    floating = lo[:, 2] - st.floor_z > _FLOAT_HEIGHT
    ov = np.clip(np.minimum(hi[:, None, :2], hi[None, :, :2]) - np.maximum(lo[:, None, :2], lo[None, :, :2]), 0, None)
    area = np.maximum((hi[:, 0] - lo[:, 0]) * (hi[:, 1] - lo[:, 1]), 1e-6)
    # under[i, j]: j lies below i and covers a good part of i's footprint (i stands on j).
    under = (ov[..., 0] * ov[..., 1] >= _FLOAT_SUPPORT * area[:, None]) & (hi[None, :, 2] <= lo[:, None, 2] + _STACK_OVERLAP)
    np.fill_diagonal(under, False)
    out = []
    for i in np.flatnonzero(floating & ~under.any(axis=1)):
        c = objects[int(i)]
        new_lo = c.lo.copy()
        new_lo[2] = st.floor_z
        out.append(_Candidate(new_lo, c.hi.copy(), c.n, "grounded", c.fill, -1))
    return out


def _to_wall(objects: list[_Candidate], st: SceneStructure) -> list[_Candidate]:
    """Clusters near a wall extended to it: furniture stands back to the wall, and its rear is unseen.

    Only for scenes whose walls are parallel to the world axes (the boxes are world-axis-aligned);
    where no wall was found the edge of the scene's points stands in for it.
    """
    if st.yaw != 0.0 or st.bounds is None:
        return []
    out = []
    for c in objects:
        for axis in (0, 1):
            for side in (-1, 1):
                wall = st.boundary(axis, side)
                if wall is None:
                    continue
                face = c.lo[axis] if side < 0 else c.hi[axis]
                gap = (face - wall) * -side
                if _WALL_SNAP_MIN < gap <= _WALL_REACH:
                    lo, hi = c.lo.copy(), c.hi.copy()
                    (lo if side < 0 else hi)[axis] = wall
                    out.append(_Candidate(lo, hi, c.n, "to_wall", c.fill, -1))
    return out


def _stacked_merges(objects: list[_Candidate]) -> list[_Candidate]:
    """Unions of two clusters stacked one above the other (footprints nested, small vertical gap).

    The link between a lamp's shade and its pole, or a round table's top and its pedestal, is hidden
    inside or under the upper part, so the two are separate clusters; their union is the object.
    """
    if len(objects) < 2:
        return []
    lo = np.array([c.lo for c in objects])
    hi = np.array([c.hi for c in objects])
    ov = np.clip(np.minimum(hi[:, None, :2], hi[None, :, :2]) - np.maximum(lo[:, None, :2], lo[None, :, :2]), 0, None)
    inter = ov[..., 0] * ov[..., 1]
    area = np.maximum((hi[:, 0] - lo[:, 0]) * (hi[:, 1] - lo[:, 1]), 1e-6)
    nested = inter >= _STACK_NESTED * np.minimum(area[:, None], area[None, :])
    gap = lo[None, :, 2] - hi[:, None, 2]  # gap[i, j]: how far j starts above the top of i
    out: list[_Candidate] = []
    for i, j in np.argwhere(nested & (gap > -_STACK_OVERLAP) & (gap <= _STACK_GAP)):
        a, b = objects[int(i)], objects[int(j)]
        out.append(_Candidate(np.minimum(a.lo, b.lo), np.maximum(a.hi, b.hi), a.n + b.n, "stacked", min(a.fill, b.fill), -1))
    return out


def _keep_shape(c: _Candidate, st: SceneStructure, cfg: ProposalConfig) -> bool:
    size = c.hi - c.lo
    if size.max() < cfg.min_extent:
        return False
    if size[0] > cfg.max_extent_xy or size[1] > cfg.max_extent_xy or size[2] > cfg.max_height:
        return False
    thin = int(np.argmin(size))
    s = np.sort(size)
    # Thin, wide slabs are leftover structure (a wall strip, a rug), unless horizontal and raised:
    # that is a table top whose legs were too thin to be seen.
    raised = st.floor_z is not None and c.lo[2] - st.floor_z > cfg.min_support_height
    if s[0] < cfg.flat_thickness and s[1] * s[2] >= cfg.flat_min_area and not (thin == 2 and raised):
        return False
    return True


_KIND_WEIGHT = {"object": 1.0, "on_support": 0.95, "support": 0.9, "stacked": 0.75, "grounded": 0.75, "to_wall": 0.5}


def _score(c: _Candidate, st: SceneStructure) -> float:
    """Heuristic objectness in (0, 1], which decides what survives NMS and the proposal cap.

    Well-sampled clusters that look solid from above come first. Parts that are rarely objects on
    their own are pushed back: a thin pole (a chair leg, a lamp's pole, whose whole object the
    stacked/grounded variants propose), a thin vertical sliver (a bookshelf's side panel), and a thin
    slab hugging a wall (depth noise of the wall beyond its measured thickness). Derived variants
    rank a little behind the clusters they come from.
    """
    support = min(1.0, math.log1p(c.n) / math.log1p(150))
    shape = 0.5 + 0.5 * c.fill
    size = c.hi - c.lo
    width = max(size[0], size[1])
    on_floor = st.floor_z is not None and c.lo[2] - st.floor_z < 0.05
    if width < _POLE_WIDTH and size[2] > 2.5 * width and (on_floor or size[2] > _POLE_HEIGHT):
        shape *= 0.3
    elif min(size[0], size[1]) < _SLIVER and width > 3 * _SLIVER and size[2] > 3 * _SLIVER:
        shape *= 0.5
    elif _hugs_wall(c, st):
        shape *= 0.4
    return float(support * shape * _KIND_WEIGHT[c.kind])


def _hugs_wall(c: _Candidate, st: SceneStructure) -> bool:
    """A thin slab parallel to a wall and close to it: what is left of the wall's noisy layer."""
    if not st.walls:
        return False
    corners = np.array([[c.lo[0], c.lo[1]], [c.hi[0], c.hi[1]], [c.lo[0], c.hi[1]], [c.hi[0], c.lo[1]]])
    rot = st.rotate(corners)
    lo, hi = rot.min(axis=0), rot.max(axis=0)
    for w in st.walls:
        a = w.axis
        thick, along = hi[a] - lo[a], hi[1 - a] - lo[1 - a]
        near = min(abs(lo[a] - w.offset), abs(hi[a] - w.offset)) < w.margin + _WALL_HUG
        if near and thick < _WALL_HUG and along > 2 * _WALL_HUG:
            return True
    return False


def nms_aabb(
    boxes: NDArray[np.float64],
    scores: NDArray[np.floating],
    iou: float,
    max_keep: int | None = None,
    *,
    exempt: NDArray[np.bool_] | None = None,
) -> NDArray[np.int64]:
    """Greedy non-maximum suppression on axis-aligned boxes (N, 6); returns kept indices, best first.

    ``exempt[i, j]`` True means boxes i and j never suppress each other (used for a support and the
    support-plus-what-stands-on-it, which are both plausible objects however much they overlap).
    Ties in score keep the earlier box, so equal inputs give equal outputs.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 6)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if b.shape[0] != s.shape[0]:
        raise ValueError(f"nms_aabb: {b.shape[0]} boxes but {s.shape[0]} scores")
    order = np.argsort(-s, kind="stable")
    if b.shape[0] == 0:
        return order.astype(np.int64)
    ious = pairwise_aabb_iou(b[order], b[order])
    if exempt is not None:
        ex = np.asarray(exempt, dtype=np.bool_)
        if ex.shape != (b.shape[0], b.shape[0]):
            raise ValueError(f"nms_aabb: exempt must be {b.shape[0]}x{b.shape[0]}, got {ex.shape}")
        ious = np.where(ex[np.ix_(order, order)], 0.0, ious)
    suppressed = np.zeros(order.shape[0], dtype=np.bool_)
    keep: list[int] = []
    for i in range(order.shape[0]):
        if suppressed[i]:
            continue
        keep.append(int(order[i]))
        if max_keep is not None and len(keep) >= max_keep:
            break
        suppressed |= ious[i] > iou
    return np.asarray(keep, dtype=np.int64)


def _structure_of_means(means: NDArray[np.float64], cfg: ProposalConfig) -> SceneStructure:
    # Floor, walls and ceiling are metres across: a grid twice as coarse finds them as well, 4-8x faster.
    _, coarse, _ = _voxel_means(means, 2 * cfg.voxel_size)
    return estimate_structure(coarse, replace(cfg, voxel_size=2 * cfg.voxel_size))


def scene_structure(xyz: ArrayLike, config: ProposalConfig | None = None) -> SceneStructure:
    """Floor, ceiling, walls and dominant yaw of a world-frame point cloud (N, 3), as :func:`propose_boxes` sees them."""
    cfg = config or ProposalConfig()
    pts = np.asarray(xyz, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"xyz: expected shape (N, 3), got {pts.shape}")
    pts = pts[np.isfinite(pts).all(axis=1)]
    if pts.shape[0] == 0:
        return SceneStructure()
    _, means, _ = _voxel_means(pts, cfg.voxel_size)
    return _structure_of_means(means, cfg)


def structure_mask(xyz: ArrayLike, structure: SceneStructure, config: ProposalConfig | None = None) -> NDArray[np.bool_]:
    """True for the points (N, 3) that are not floor, ceiling, wall or behind a wall."""
    pts = np.asarray(xyz, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"xyz: expected shape (N, 3), got {pts.shape}")
    return _structure_keep(pts, structure, config or ProposalConfig())


def propose_boxes(xyz: ArrayLike, config: ProposalConfig | None = None, *, rgb: ArrayLike | None = None) -> ProposalResult:
    """Class-agnostic axis-aligned box proposals of a world-frame (z up) point cloud (N, 3).

    ``rgb`` (N, 3) uint8, when given, adds colour-split clusters to the candidates (things touching
    something of another colour). Returns an empty result for an empty cloud, or one that is all
    structure (floor, walls); non-finite points are ignored.
    """
    cfg = config or ProposalConfig()
    t0 = time.perf_counter()
    pts = np.asarray(xyz)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"xyz: expected shape (N, 3), got {pts.shape}")
    if not np.issubdtype(pts.dtype, np.floating):
        pts = pts.astype(np.float64)
    col = None
    if rgb is not None:
        col = np.asarray(rgb)
        if col.shape != pts.shape:
            raise ValueError(f"rgb: expected shape {pts.shape}, got {col.shape}")
    finite = np.isfinite(pts).all(axis=1)
    if not finite.all():
        pts = pts[finite]
        col = None if col is None else col[finite]
    empty = ProposalResult([], np.empty(0, np.float32), [], [], [], SceneStructure(), {})
    if pts.shape[0] < cfg.min_voxels:
        return empty
    keys, means, colors = _voxel_means(pts, cfg.voxel_size, col)
    t1 = time.perf_counter()
    st = _structure_of_means(means, cfg)
    t2 = time.perf_counter()
    cands: list[_Candidate] = []
    for k, scale in enumerate(cfg.scales):
        # Clouds differ in density (a sparse fused cloud fragments thin parts at a fine grid, a dense
        # one merges neighbours at a coarse grid), so clustering runs at several grids; NMS merges.
        s_cfg = cfg if scale == 1.0 else replace(cfg, voxel_size=cfg.voxel_size * scale)
        if scale == 1.0:
            s_keys, s_means, s_colors = keys, means, colors
        else:
            s_keys, s_means, s_colors = _voxel_means(means, s_cfg.voxel_size)
        keep = _structure_keep(s_means, st, s_cfg)
        # Colour splits matter for small touching things, which the finest grid resolves best.
        kept_colors = None if s_colors is None or k > 0 else s_colors[keep]
        for c in _candidates(s_means[keep], s_keys[keep], st, s_cfg, kept_colors):
            if _keep_shape(c, st, cfg):
                c.group = c.group + k * _GROUPS_PER_SCALE if c.group >= 0 else -1
                cands.append(c)
    t3 = time.perf_counter()
    timings = {"voxelize": t1 - t0, "structure": t2 - t1, "cluster": t3 - t2}
    if not cands:
        return ProposalResult([], np.empty(0, np.float32), [], [], [], st, timings)
    arr = np.array([np.concatenate([(c.lo + c.hi) / 2, np.maximum(c.hi - c.lo, 1e-3)]) for c in cands])
    scores = np.array([_score(c, st) for c in cands])
    # Deterministic order before NMS: score, then kind, then position. Only the best
    # _NMS_POOL × max_proposals enter NMS (its cost is quadratic; the rest would not survive the cap).
    kind_rank = np.array([KINDS.index(c.kind) for c in cands])
    order = np.lexsort((arr[:, 2], arr[:, 1], arr[:, 0], kind_rank, -scores))[: _NMS_POOL * cfg.max_proposals]
    arr, scores, cands = arr[order], scores[order], [cands[i] for i in order]
    groups = np.array([c.group for c in cands])
    kinds = np.array([c.kind for c in cands])
    parent_child = (groups[:, None] == groups[None, :]) & (
        ((kinds[:, None] == "object") & (kinds[None, :] == "support")) | ((kinds[:, None] == "support") & (kinds[None, :] == "object"))
    )
    kept = nms_aabb(arr, scores, cfg.nms_iou, cfg.max_proposals, exempt=parent_child)
    timings["nms"] = time.perf_counter() - t3
    timings["total"] = time.perf_counter() - t0
    return ProposalResult(
        boxes=[Box3D(arr[i, :3], arr[i, 3:]) for i in kept],
        scores=scores[kept].astype(np.float32),
        ids=list(range(len(kept))),
        kinds=[cands[i].kind for i in kept],
        n_voxels=[cands[i].n for i in kept],
        structure=st,
        timings=timings,
    )


class IncrementalProposer:
    """Proposals for a growing cloud (the node's fused scene), with ids stable across updates.

    :meth:`update` recomputes only when the cloud has grown (or shrunk) by ``min_growth`` of its size
    since the last computation, because a keyframe that adds 1 % more points rarely changes the
    boxes and recomputing costs ~0.1–0.5 s. A new proposal inherits the id of the previous proposal it
    overlaps most (IoU ≥ ``match_iou``), so a question about "proposal 7" keeps meaning the same object.
    """

    def __init__(self, config: ProposalConfig | None = None, *, min_growth: float = 0.05, match_iou: float = 0.5) -> None:
        self.config = config or ProposalConfig()
        if min_growth < 0:
            raise ValueError(f"min_growth must be >= 0, got {min_growth}")
        self.min_growth = float(min_growth)
        self.match_iou = float(match_iou)
        self._last_n: int | None = None
        self._result: ProposalResult | None = None
        self._next_id = 0
        #: how many updates actually recomputed
        self.n_computed = 0

    @property
    def result(self) -> ProposalResult | None:
        return self._result

    def needs_update(self, n_points: int) -> bool:
        if self._last_n is None:
            return True
        return abs(n_points - self._last_n) > self.min_growth * max(self._last_n, 1)

    def update(self, xyz: ArrayLike, *, rgb: ArrayLike | None = None, force: bool = False) -> ProposalResult:
        """Proposals for the cloud ``xyz`` (+ colours), recomputed only if it changed enough (or ``force``)."""
        pts = np.asarray(xyz)
        n = int(pts.shape[0]) if pts.ndim == 2 else 0
        if not force and self._result is not None and not self.needs_update(n):
            return self._result
        res = propose_boxes(pts, self.config, rgb=rgb)
        ids = self._assign_ids(res)
        self._result = ProposalResult(res.boxes, res.scores, ids, res.kinds, res.n_voxels, res.structure, res.timings)
        self._last_n = n
        self.n_computed += 1
        return self._result

    def _assign_ids(self, res: ProposalResult) -> list[int]:
        ids = [-1] * len(res)
        prev = self._result
        if prev is not None and len(prev) and len(res):
            iou = pairwise_aabb_iou(res.as_array(), prev.as_array())
            # Greedy one-to-one matching, strongest overlap first.
            pairs = np.argwhere(iou >= self.match_iou)
            pairs = pairs[np.argsort(-iou[pairs[:, 0], pairs[:, 1]], kind="stable")]
            used_new: set[int] = set()
            used_old: set[int] = set()
            for i, j in pairs:
                if i in used_new or j in used_old:
                    continue
                ids[i] = prev.ids[j]
                used_new.add(int(i))
                used_old.add(int(j))
        for i in range(len(ids)):
            if ids[i] < 0:
                ids[i] = self._next_id
                self._next_id += 1
            else:
                self._next_id = max(self._next_id, ids[i] + 1)
        return ids
