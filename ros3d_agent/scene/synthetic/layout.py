"""Room and object placement: one seed in, one scene graph out.

A layout is the ground truth every other product of a synthetic scene is derived from (meshes,
rendered frames, ``objects.json``, ``scene_graph.json``), so it is pure data and depends only on the
seed and the :class:`LayoutConfig`.

World frame (the ``scene_graph.json`` contract): metres, z up, floor at z = 0, the room spans
x in [0, W] and y in [0, D] with axis-aligned walls.

Placement, in order: furniture with its back to a wall (sofa, bed, bookshelf, cabinet), tables,
free-standing floor objects (chairs pulled up to tables where there are some), then small objects
stacked on the tables and cabinets. A candidate is checked against the room, the camera's walkway
and everything already placed (yawed footprints intersected exactly, plus a gap); after a few failed
tries the object is dropped rather than squeezed in. The walkway is an ellipse around the room
centre that the camera trajectory follows (see :mod:`.trajectory`); keeping it clear is what lets
a "handheld" camera move through the room without passing through furniture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..iou import clip_convex_polygon, polygon_area
from ..types import Box3D
from .catalog import CATALOG, SIZE_CLASSES, Category, Placement, category, color_rgb, sample_size

__all__ = [
    "GENERATOR_VERSION",
    "LayoutConfig",
    "Room",
    "Walkway",
    "PlacedObject",
    "SceneLayout",
    "generate_layout",
    "scene_id_for_seed",
    "footprints_overlap",
]

#: Bumped whenever the same seed would produce a different scene (recorded in scene_graph.json).
GENERATOR_VERSION = 1

FLOOR_COLORS = ("beige", "brown", "gray", "white")
WALL_COLORS = ("white", "beige", "gray")


def scene_id_for_seed(seed: int) -> str:
    return f"synth_{int(seed):05d}"


def _check_range(name: str, rng: tuple[float, float], lo: float = 0.0) -> None:
    if len(rng) != 2 or not (lo <= rng[0] <= rng[1]) or not all(math.isfinite(v) for v in rng):
        raise ValueError(f"{name}: expected (min, max) with {lo} <= min <= max, got {rng}")


@dataclass(frozen=True)
class LayoutConfig:
    """Knobs of room and object placement.

    ``walkway_margin``: distance from the walls to the camera's elliptical path; the band between
    path and walls is where wall furniture stands, the island inside the path holds the rest.
    ``walkway_clearance``: no footprint comes closer than this to the path (camera body + jitter).
    """

    room_width: tuple[float, float] = (4.8, 7.5)
    room_depth: tuple[float, float] = (4.4, 6.5)
    room_height: tuple[float, float] = (2.5, 3.0)
    num_objects: tuple[int, int] = (5, 25)
    num_tables: tuple[int, int] = (0, 2)
    num_cabinets: tuple[int, int] = (0, 2)
    p_no_table: float = 0.12
    repeated_categories: tuple[int, int] = (2, 4)
    walkway_margin: tuple[float, float] = (1.2, 1.7)
    walkway_min_semi_axis: float = 0.8
    walkway_clearance: float = 0.45
    object_gap: float = 0.05
    surface_gap: float = 0.02
    wall_gap: float = 0.02
    placement_tries: int = 30
    p_chair_at_table: float = 0.75

    def __post_init__(self) -> None:
        _check_range("room_width", self.room_width, 2.0)
        _check_range("room_depth", self.room_depth, 2.0)
        _check_range("room_height", self.room_height, 2.0)
        _check_range("walkway_margin", self.walkway_margin, 0.0)
        lo, hi = self.num_objects
        if not (1 <= lo <= hi):
            raise ValueError(f"num_objects: expected (min, max) with 1 <= min <= max, got {self.num_objects}")
        for name in ("num_tables", "num_cabinets", "repeated_categories"):
            a, b = getattr(self, name)
            if not (0 <= a <= b):
                raise ValueError(f"{name}: expected (min, max) with 0 <= min <= max, got {(a, b)}")
        if not 0.0 <= self.p_no_table <= 1.0 or not 0.0 <= self.p_chair_at_table <= 1.0:
            raise ValueError("p_no_table and p_chair_at_table must be probabilities in [0, 1]")
        if self.placement_tries < 1:
            raise ValueError(f"placement_tries must be >= 1, got {self.placement_tries}")
        if min(self.room_width[0], self.room_depth[0]) / 2 - self.walkway_margin[0] < self.walkway_min_semi_axis:
            raise ValueError(
                f"the smallest room ({self.room_width[0]} x {self.room_depth[0]} m) leaves no walkway of semi-axis "
                f">= {self.walkway_min_semi_axis} m inside a {self.walkway_margin[0]} m wall margin"
            )


@dataclass(frozen=True)
class Room:
    width: float
    depth: float
    height: float
    floor_color: str
    wall_color: str
    floor_pattern: str  # "tiles" or "planks"
    floor_tile: float  # tile edge / plank width in metres

    @property
    def size(self) -> tuple[float, float, float]:
        return (self.width, self.depth, self.height)


@dataclass(frozen=True)
class Walkway:
    """The ellipse (in the floor plane) that the camera travels along."""

    center: tuple[float, float]
    semi_axes: tuple[float, float]

    def point(self, angle: NDArray[np.float64] | float) -> NDArray[np.float64]:
        a = np.asarray(angle, dtype=np.float64)
        return np.stack([self.center[0] + self.semi_axes[0] * np.cos(a), self.center[1] + self.semi_axes[1] * np.sin(a)], axis=-1)

    def samples(self, n: int = 128) -> NDArray[np.float64]:
        return self.point(np.linspace(0.0, 2 * math.pi, n, endpoint=False))


@dataclass(frozen=True)
class PlacedObject:
    """One object of the scene graph.

    ``size`` is the extent in the object's own frame (x width, y depth, z height; the back of
    furniture faces local +y) and ``position`` the centre of its footprint at its bottom z, so the
    oriented box is ``Box3D(position + (0, 0, sz/2), size, yaw)``.
    """

    id: int
    label: str
    shape: str
    color: str
    size_class: str
    size: tuple[float, float, float]
    position: tuple[float, float, float]
    yaw: float
    support: int | None
    round: bool = False

    @property
    def color_rgb(self) -> tuple[float, float, float]:
        return color_rgb(self.color)

    @property
    def bottom_z(self) -> float:
        return self.position[2]

    @property
    def top_z(self) -> float:
        return self.position[2] + self.size[2]

    @property
    def oriented_box(self) -> Box3D:
        x, y, z = self.position
        return Box3D((x, y, z + self.size[2] / 2), self.size, self.yaw)

    def footprint(self) -> NDArray[np.float64]:
        """4×2 yawed footprint corners, counter-clockwise."""
        return self.oriented_box.footprint()

    def aabb(self) -> list[float]:
        """``[cx, cy, cz, sx, sy, sz]`` of the axis-aligned world box around the oriented box.

        An upper bound of the geometry's box (a yawed monitor's narrow stand does not fill the
        corners of its oriented box); the scene graph uses the exact one from the meshes. A round
        object's footprint is a circle, which yaw does not enlarge. Rounded to 1 µm.
        """
        if self.round:
            r = self.size[0] / 2
            lo = np.array([self.position[0] - r, self.position[1] - r, self.bottom_z])
            hi = np.array([self.position[0] + r, self.position[1] + r, self.top_z])
        else:
            lo, hi = self.oriented_box.bounds()
        c, s = (lo + hi) / 2, hi - lo
        return [round(float(v), 6) for v in (*c, *s)]


@dataclass(frozen=True)
class SceneLayout:
    scene_id: str
    seed: int
    room: Room
    walkway: Walkway
    objects: tuple[PlacedObject, ...] = field(default_factory=tuple)

    def object(self, object_id: int) -> PlacedObject:
        for o in self.objects:
            if o.id == object_id:
                return o
        raise KeyError(f"{self.scene_id}: no object with id {object_id}")

    def scene_graph(
        self,
        *,
        boxes: Mapping[int, Sequence[float]] | None = None,
        visibility: Mapping[int, tuple[int, int]] | None = None,
        trajectory: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The ``scene_graph.json`` record (the shared contract).

        Args:
            boxes: object id -> ``[cx, cy, cz, sx, sy, sz]``, the axis-aligned box of the object's
                geometry (:func:`.meshes.object_box`); objects missing from it get the looser
                :meth:`PlacedObject.aabb`.
            visibility: object id -> ``(visible_frames, visible_pixels)`` from the renderer; objects
                missing from it get zeros.
            trajectory: the ``{"type", "num_frames", "fps"}`` record of the rendered camera path.
        """
        vis = visibility or {}
        boxes = boxes or {}
        objects = []
        for o in self.objects:
            frames, pixels = vis.get(o.id, (0, 0))
            box = [round(float(v), 6) for v in boxes[o.id]] if o.id in boxes else o.aabb()
            objects.append(
                {
                    "id": o.id,
                    "label": o.label,
                    "color": o.color,
                    "color_rgb": [float(v) for v in o.color_rgb],
                    "shape": o.shape,
                    "size_class": o.size_class,
                    "box": box,
                    "yaw": round(float(o.yaw), 6),
                    "support": o.support,
                    "visible_frames": int(frames),
                    "visible_pixels": int(pixels),
                }
            )
        return {
            "scene_id": self.scene_id,
            "seed": int(self.seed),
            "generator_version": GENERATOR_VERSION,
            "room": {"size": [float(v) for v in self.room.size], "floor_color": self.room.floor_color, "wall_color": self.room.wall_color},
            "objects": objects,
            "trajectory": dict(trajectory) if trajectory is not None else {"type": "orbit", "num_frames": 0, "fps": 30.0},
        }


# ---------------------------------------------------------------------------------------------------
# Geometry helpers
# ---------------------------------------------------------------------------------------------------
def _rect(x: float, y: float, sx: float, sy: float, yaw: float, inflate: float = 0.0) -> NDArray[np.float64]:
    return Box3D((x, y, 0.5), (sx + 2 * inflate, sy + 2 * inflate, 1.0), yaw).footprint()


def footprints_overlap(a: NDArray[np.float64], b: NDArray[np.float64], eps: float = 1e-9) -> bool:
    """Whether two convex counter-clockwise footprints share area (touching edges do not count)."""
    inter = clip_convex_polygon(a, b)
    return inter.shape[0] >= 3 and polygon_area(inter) > eps


def _distance_to_rect(points: NDArray[np.float64], x: float, y: float, sx: float, sy: float, yaw: float) -> NDArray[np.float64]:
    """Distance of 2D points to a yawed rectangle (0 inside)."""
    c, s = math.cos(yaw), math.sin(yaw)
    d = points - (x, y)
    u = c * d[:, 0] + s * d[:, 1]
    v = -s * d[:, 0] + c * d[:, 1]
    return np.hypot(np.maximum(np.abs(u) - sx / 2, 0.0), np.maximum(np.abs(v) - sy / 2, 0.0))


def _wrap(angle: float) -> float:
    """Angle in (-pi, pi]."""
    a = math.atan2(math.sin(angle), math.cos(angle))
    return math.pi if a <= -math.pi + 1e-12 else a


# ---------------------------------------------------------------------------------------------------
# Planning: which objects, with which looks
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Item:
    cat: Category
    shape: str
    color: str
    size_class: str


def _attributes(cat: Category, count: int, rng: np.random.Generator) -> list[tuple[str, str, str]]:
    """``count`` (shape, colour, size_class) triples with distinct (colour, size_class).

    Repeated instances of a category are the distractors of referring expressions, so they always
    differ in colour or size: mostly in colour, sometimes only in size.
    """
    weights = np.array([v.weight for v in cat.variants])
    shapes = [v.shape for v in cat.variants]

    def pick_shape() -> str:
        return shapes[int(rng.choice(len(shapes), p=weights / weights.sum()))]

    out: list[tuple[str, str, str]] = []
    used: set[tuple[str, str]] = set()
    first_shape = pick_shape()
    for i in range(count):
        for _ in range(20):
            shape = first_shape if (i == 0 or rng.random() < 0.7) else pick_shape()
            if i > 0 and (rng.random() < 0.65 and len(cat.colors) > 1):
                fresh = [c for c in cat.colors if c not in {u[0] for u in used}] or list(cat.colors)
                color = str(rng.choice(fresh))
            elif i > 0:
                color = out[int(rng.integers(len(out)))][1]
            else:
                color = str(rng.choice(cat.colors))
            size_class = str(rng.choice(SIZE_CLASSES))
            if (color, size_class) not in used:
                break
        else:
            continue  # could not find a distinct look: fewer instances
        used.add((color, size_class))
        out.append((shape, color, size_class))
    return out


def _plan(rng: np.random.Generator, cfg: LayoutConfig) -> list[_Item]:
    n_target = int(rng.integers(cfg.num_objects[0], cfg.num_objects[1] + 1))
    n_tables = 0 if rng.random() < cfg.p_no_table else int(rng.integers(max(cfg.num_tables[0], 1), max(cfg.num_tables[1], 1) + 1))
    n_cabinets = int(rng.integers(cfg.num_cabinets[0], cfg.num_cabinets[1] + 1))
    has_support = n_tables + n_cabinets > 0
    counts: dict[str, int] = {}
    if n_tables:
        counts["table"] = n_tables
    if n_cabinets:
        counts["cabinet"] = n_cabinets

    pool = [c for c in CATALOG.values() if c.weight > 0 and (has_support or c.placement != Placement.SURFACE)]
    n_rest = max(n_target - n_tables - n_cabinets, 0)
    n_repeat = int(rng.integers(cfg.repeated_categories[0], cfg.repeated_categories[1] + 1))
    if n_tables >= 2:
        n_repeat -= 1
    w = np.array([c.weight for c in pool], dtype=np.float64)
    order = rng.choice(len(pool), size=len(pool), replace=False, p=w / w.sum())
    placed = 0
    for idx in order:
        if placed >= n_rest:
            break
        cat = pool[int(idx)]
        k = 1
        if n_repeat > 0 and cat.max_per_scene > 1:
            k = int(rng.integers(2, min(3, cat.max_per_scene) + 1))
            n_repeat -= 1
        k = min(k, n_rest - placed) if n_rest - placed >= 1 else 0
        if k:
            counts[cat.label] = k
            placed += k

    items: list[_Item] = []
    for label, k in counts.items():
        cat = category(label)
        items += [_Item(cat, s, c, z) for s, c, z in _attributes(cat, k, rng)]
    rank = {Placement.WALL: 0, Placement.FLOOR: 2, Placement.FLOOR_OR_SURFACE: 3, Placement.SURFACE: 4}

    def key(it: _Item) -> tuple[int, float]:
        r = 1 if it.cat.label == "table" else (2.5 if it.cat.label == "chair" else rank[it.cat.placement])
        return (r, -float(np.prod(it.cat.variant(it.shape).size_max)))

    items.sort(key=key)  # stable: ties keep the seeded order
    return items


# ---------------------------------------------------------------------------------------------------
# Placement
# ---------------------------------------------------------------------------------------------------
class _Placer:
    def __init__(self, room: Room, walkway: Walkway, cfg: LayoutConfig, rng: np.random.Generator) -> None:
        self.room, self.walkway, self.cfg, self.rng = room, walkway, cfg, rng
        self.path = walkway.samples(192)
        self.objects: list[PlacedObject] = []

    # -- checks ------------------------------------------------------------------------------
    def _floor_ok(self, x: float, y: float, size: tuple[float, float, float], yaw: float) -> bool:
        cfg, room = self.cfg, self.room
        fp = _rect(x, y, size[0], size[1], yaw)
        g = cfg.wall_gap - 1e-9
        if fp[:, 0].min() < g or fp[:, 1].min() < g or fp[:, 0].max() > room.width - g or fp[:, 1].max() > room.depth - g:
            return False
        if _distance_to_rect(self.path, x, y, size[0], size[1], yaw).min() < cfg.walkway_clearance:
            return False
        mine = _rect(x, y, size[0], size[1], yaw, cfg.object_gap / 2)
        for o in self.objects:
            if o.support is None and footprints_overlap(mine, _rect(o.position[0], o.position[1], o.size[0], o.size[1], o.yaw, cfg.object_gap / 2)):
                return False
        return True

    def _surface_ok(self, sup: PlacedObject, x: float, y: float, size: tuple[float, float, float], yaw: float) -> bool:
        cfg = self.cfg
        fp = _rect(x, y, size[0], size[1], yaw)
        c, s = math.cos(sup.yaw), math.sin(sup.yaw)
        d = fp - sup.position[:2]
        u, v = c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]
        m = cfg.surface_gap
        if sup.round:
            if np.hypot(u, v).max() > sup.size[0] / 2 - m:
                return False
        elif np.abs(u).max() > sup.size[0] / 2 - m or np.abs(v).max() > sup.size[1] / 2 - m:
            return False
        mine = _rect(x, y, size[0], size[1], yaw, m / 2)
        for o in self.objects:
            if o.support == sup.id and footprints_overlap(mine, _rect(o.position[0], o.position[1], o.size[0], o.size[1], o.yaw, m / 2)):
                return False
        return True

    # -- candidates --------------------------------------------------------------------------
    def _wall_candidate(self, size: tuple[float, float, float]) -> tuple[float, float, float]:
        room, g, rng = self.room, self.cfg.wall_gap, self.rng
        wall = int(rng.integers(4))
        length = room.width if wall in (0, 2) else room.depth
        lo, hi = size[0] / 2 + g, length - size[0] / 2 - g
        if hi < lo:
            return (-1.0, -1.0, 0.0)  # does not fit along this wall; rejected by the room check
        s = float(rng.uniform(lo, hi))
        off = size[1] / 2 + g
        if wall == 0:  # y = 0, back faces -y
            return (s, off, math.pi)
        if wall == 2:  # y = D
            return (s, room.depth - off, 0.0)
        if wall == 1:  # x = W, back faces +x
            return (room.width - off, s, -math.pi / 2)
        return (off, s, math.pi / 2)  # x = 0

    def _chair_candidate(self, size: tuple[float, float, float]) -> tuple[float, float, float] | None:
        tables = [o for o in self.objects if o.label == "table"]
        if not tables or self.rng.random() >= self.cfg.p_chair_at_table:
            return None
        rng = self.rng
        t = tables[int(rng.integers(len(tables)))]
        side = int(rng.integers(4))
        dirs = ((1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0))
        dx, dy = dirs[side]
        half_n = t.size[0] / 2 if dx else t.size[1] / 2  # half extent of the table towards the chair
        half_t = t.size[1] / 2 if dx else t.size[0] / 2  # half extent along that side
        dist = half_n + size[1] / 2 + self.cfg.object_gap + float(rng.uniform(0.0, 0.12))
        along = float(rng.uniform(-0.5, 0.5)) * max(half_t - size[0] / 2, 0.0)
        lx, ly = dx * dist - dy * along, dy * dist + dx * along
        c, s = math.cos(t.yaw), math.sin(t.yaw)
        wx, wy = c * dx - s * dy, s * dx + c * dy  # away from the table, world frame
        x, y = t.position[0] + c * lx - s * ly, t.position[1] + s * lx + c * ly
        yaw = math.atan2(-wx, wy)  # local +y (the chair back) points away from the table
        return (x, y, yaw + float(rng.normal(0.0, 0.08)))

    def _free_candidate(self, item: _Item) -> tuple[float, float, float]:
        rng, room = self.rng, self.room
        x, y = float(rng.uniform(0, room.width)), float(rng.uniform(0, room.depth))
        if item.cat.label == "table":
            yaw = float(rng.choice([0.0, math.pi / 2]) + rng.uniform(-0.25, 0.25))
        else:
            yaw = float(rng.uniform(-math.pi, math.pi))
        return (x, y, yaw)

    # -- placing -----------------------------------------------------------------------------
    def place(self, item: _Item, on_surface: bool) -> bool:
        rng, cfg = self.rng, self.cfg
        variant = item.cat.variant(item.shape)
        size = sample_size(variant, item.size_class, rng)
        supports = [o for o in self.objects if category(o.label).supports and (item.cat.label != "monitor" or o.label == "table")]
        for _ in range(cfg.placement_tries):
            if on_surface:
                if not supports:
                    return False
                sup = supports[int(rng.integers(len(supports)))]
                r = max(sup.size[0], sup.size[1]) / 2
                c, s = math.cos(sup.yaw), math.sin(sup.yaw)
                u, v = float(rng.uniform(-r, r)), float(rng.uniform(-r, r))
                x, y = sup.position[0] + c * u - s * v, sup.position[1] + s * u + c * v
                yaw = float(rng.uniform(-math.pi, math.pi))
                if not self._surface_ok(sup, x, y, size, yaw):
                    continue
                self._add(item, size, (x, y, sup.top_z), yaw, sup.id)
                return True
            if item.cat.placement == Placement.WALL:
                x, y, yaw = self._wall_candidate(size)
            else:
                cand = self._chair_candidate(size) if item.cat.label == "chair" else None
                x, y, yaw = cand if cand is not None else self._free_candidate(item)
            if self._floor_ok(x, y, size, yaw):
                self._add(item, size, (x, y, 0.0), yaw, None)
                return True
        return False

    def _add(self, item: _Item, size: tuple[float, float, float], pos: tuple[float, float, float], yaw: float, support: int | None) -> None:
        pos = (round(pos[0], 4), round(pos[1], 4), round(pos[2], 4))
        self.objects.append(
            PlacedObject(
                id=len(self.objects),
                label=item.cat.label,
                shape=item.shape,
                color=item.color,
                size_class=item.size_class,
                size=size,
                position=pos,
                yaw=round(_wrap(yaw), 6),
                support=support,
                round=item.cat.variant(item.shape).round,
            )
        )


def generate_layout(seed: int, config: LayoutConfig | None = None) -> SceneLayout:
    """The scene graph of scene ``seed``: room, walkway and placed objects (deterministic per seed)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    cfg = config or LayoutConfig()
    rng = np.random.default_rng([int(seed), 0])
    W = round(float(rng.uniform(*cfg.room_width)), 3)
    D = round(float(rng.uniform(*cfg.room_depth)), 3)
    H = round(float(rng.uniform(*cfg.room_height)), 3)
    floor_color = str(rng.choice(FLOOR_COLORS))
    wall_color = str(rng.choice([c for c in WALL_COLORS if c != floor_color]))
    pattern = str(rng.choice(["tiles", "planks"]))
    tile = round(float(rng.uniform(0.4, 0.6) if pattern == "tiles" else rng.uniform(0.12, 0.2)), 3)
    room = Room(W, D, H, floor_color, wall_color, pattern, tile)
    mx = min(float(rng.uniform(*cfg.walkway_margin)), W / 2 - cfg.walkway_min_semi_axis)
    my = min(float(rng.uniform(*cfg.walkway_margin)), D / 2 - cfg.walkway_min_semi_axis)
    walkway = Walkway((W / 2, D / 2), (round(W / 2 - mx, 3), round(D / 2 - my, 3)))

    placer = _Placer(room, walkway, cfg, rng)
    plan = _plan(rng, cfg)
    for item in plan:
        if len(placer.objects) >= cfg.num_objects[1]:
            break
        has_support = any(category(o.label).supports for o in placer.objects)
        on_surface = item.cat.placement == Placement.SURFACE or (
            item.cat.placement == Placement.FLOOR_OR_SURFACE and item.size_class == "small" and has_support and rng.random() < 0.6
        )
        placer.place(item, on_surface)

    # Too crowded a plan can leave fewer objects than asked for: top up with small things.
    fillers = [c for c in CATALOG.values() if c.placement in (Placement.FLOOR, Placement.FLOOR_OR_SURFACE, Placement.SURFACE) and c.label != "chair"]
    tries = 0
    while len(placer.objects) < cfg.num_objects[0] and tries < 60:
        tries += 1
        cat = fillers[int(rng.integers(len(fillers)))]
        present = {(o.color, o.size_class) for o in placer.objects if o.label == cat.label}
        if sum(o.label == cat.label for o in placer.objects) >= cat.max_per_scene:
            continue
        has_support = any(category(o.label).supports for o in placer.objects)
        if cat.placement == Placement.SURFACE and not has_support:
            continue
        on_surface = cat.placement == Placement.SURFACE or (cat.placement == Placement.FLOOR_OR_SURFACE and has_support and rng.random() < 0.5)
        shape, color, size_class = _attributes(cat, 1, rng)[0]
        if on_surface and cat.placement == Placement.FLOOR_OR_SURFACE:
            size_class = "small"
        if (color, size_class) in present:
            continue
        placer.place(_Item(cat, shape, color, size_class), on_surface)
    if len(placer.objects) < cfg.num_objects[0]:
        raise RuntimeError(f"seed {seed}: placed only {len(placer.objects)} objects, fewer than {cfg.num_objects[0]}; loosen LayoutConfig")
    return SceneLayout(scene_id_for_seed(seed), int(seed), room, walkway, tuple(placer.objects))
