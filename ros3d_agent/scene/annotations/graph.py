"""Typed view of a synthetic scene's ``scene_graph.json`` and the spatial relations annotations use.

The scene graph is the ground truth every question, referring expression and caption is computed
from, so it is validated strictly on load: a malformed graph would otherwise yield confidently wrong
annotations that no later check can tell from right ones. Every error names the file and the object.

World frame (the generator's contract): metres, z up, floor at z = 0, the room spans x in [0, W] and
y in [0, D]; an object's ``box`` is its axis-aligned world box. Relations are measured between the xy
*footprints* of those boxes, which is what a person judges "next to" and "closest" by, rather than
between box centres, which would call a mug "far" from the long sofa it stands beside.

Nothing here imports rclpy (DESIGN.md house rule).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import InvalidBoxError, SceneDirError
from ..types import Box3D

__all__ = [
    "SCENE_GRAPH_FILE",
    "SceneGraphError",
    "RelationConfig",
    "Room",
    "GraphObject",
    "SceneGraph",
    "load_scene_graph",
    "bearing_deg",
    "agent_frame",
    "side_of",
    "SIDES",
]

SCENE_GRAPH_FILE = "scene_graph.json"

#: The four agent-relative directions of situated questions, as half-planes of the agent frame.
SIDES = ("left", "right", "front", "behind")


class SceneGraphError(SceneDirError):
    """``scene_graph.json`` is missing, not JSON, or does not follow the generator's contract."""


@dataclass(frozen=True)
class RelationConfig:
    """Thresholds that turn geometry into words, with a dead band so that no answer rests on a coin toss.

    A relation is *true* on one side of its band, *false* on the other and *uncertain* inside it;
    generators only keep questions whose every relation is certain. This is what lets a model be
    held to an exact answer: a person looking at the scene would agree with it.
    """

    #: footprint gap (m) at or below which two objects are "next to" each other
    near_gap: float = 0.5
    #: footprint gap (m) from which two objects are clearly *not* next to each other
    far_gap: float = 0.9
    #: a "closest"/"farthest" winner must beat the runner-up by this fraction of its distance ...
    distance_margin_rel: float = 0.25
    #: ... and by at least this many metres
    distance_margin_abs: float = 0.25
    #: a "largest"/"smallest" winner must differ from the runner-up by this volume ratio
    volume_ratio: float = 1.4
    #: a "tallest"/"shortest" winner must differ from the runner-up by this height ratio
    height_ratio: float = 1.2
    #: angular dead band (degrees) around each half-plane boundary of the agent frame
    side_margin_deg: float = 20.0

    def __post_init__(self) -> None:
        if not 0 < self.near_gap < self.far_gap:
            raise ValueError(f"RelationConfig: need 0 < near_gap < far_gap, got {self.near_gap}, {self.far_gap}")
        if self.distance_margin_rel < 0 or self.distance_margin_abs < 0:
            raise ValueError("RelationConfig: distance margins must be >= 0")
        if self.volume_ratio < 1 or self.height_ratio < 1:
            raise ValueError("RelationConfig: volume_ratio and height_ratio must be >= 1")
        if not 0 <= self.side_margin_deg < 45:
            raise ValueError(f"RelationConfig: side_margin_deg must be in [0, 45), got {self.side_margin_deg}")


@dataclass(frozen=True)
class Room:
    """The room box: ``size`` = (W, D, H) in metres, plus its floor and wall colour names."""

    size: tuple[float, float, float]
    floor_color: str = ""
    wall_color: str = ""

    @property
    def centre_xy(self) -> NDArray[np.float64]:
        return np.array([self.size[0] / 2, self.size[1] / 2])


@dataclass(frozen=True, eq=False)
class GraphObject:
    """One object of the scene graph.

    ``box`` is the generator's ``box``: the *axis-aligned* world box of the object's geometry (what
    the grounding benchmarks score, DESIGN.md Box3D), so annotations carry it unchanged. ``yaw`` is
    the object's heading about z; it is kept for reference and is not applied to ``box``.
    """

    id: int
    label: str
    color: str
    box: Box3D
    support: int | None = None
    shape: str = ""
    size_class: str = ""
    yaw: float = 0.0
    color_rgb: tuple[float, float, float] | None = None
    visible_frames: int = 0
    visible_pixels: int = 0

    @cached_property
    def aabb(self) -> list[float]:
        """``[cx, cy, cz, sx, sy, sz]``: the box annotations carry (``box`` as listed in the graph)."""
        return [float(v) for v in (*self.box.center, *self.box.size)]

    @cached_property
    def footprint(self) -> NDArray[np.float64]:
        """4×2 xy corners of the box base, counter-clockwise (the box is axis-aligned)."""
        return self.box.footprint()

    @property
    def centre_xy(self) -> NDArray[np.float64]:
        return self.box.center[:2]

    @property
    def volume(self) -> float:
        return self.box.volume

    @property
    def height(self) -> float:
        return float(self.box.size[2])

    def is_visible(self, min_frames: int) -> bool:
        return self.visible_frames >= min_frames


# --------------------------------------------------------------------------------------------------
# Geometry helpers
# --------------------------------------------------------------------------------------------------
def _aabb_gap(lo_a: NDArray[np.float64], hi_a: NDArray[np.float64], lo_b: NDArray[np.float64], hi_b: NDArray[np.float64]) -> NDArray[np.float64]:
    """xy distance between axis-aligned rectangles (broadcasting), 0 when they overlap or touch."""
    d = np.maximum(np.maximum(lo_b - hi_a, lo_a - hi_b), 0.0)
    return np.hypot(d[..., 0], d[..., 1])


def agent_frame(position: Sequence[float], yaw: float, point: Sequence[float]) -> tuple[float, float]:
    """``(forward, left)`` coordinates of ``point`` in the frame of an agent at ``position`` facing ``yaw``.

    ``yaw`` is measured counter-clockwise from world +x about +z (right-handed, z up), so the agent's
    left is +90°: an agent at the origin facing +x sees a point at +y on its left.
    """
    dx, dy = float(point[0]) - float(position[0]), float(point[1]) - float(position[1])
    c, s = math.cos(yaw), math.sin(yaw)
    return dx * c + dy * s, -dx * s + dy * c


def bearing_deg(position: Sequence[float], yaw: float, point: Sequence[float]) -> float:
    """Angle of ``point`` in the agent frame, degrees in (-180, 180]: 0 ahead, +90 left, -90 right."""
    fwd, left = agent_frame(position, yaw, point)
    return math.degrees(math.atan2(left, fwd))


def side_of(bearing: float, side: str, margin_deg: float) -> bool | None:
    """Is a bearing in the ``side`` half-plane? ``None`` inside the dead band around its boundary.

    Halves: left = bearing in (0, 180), right = (-180, 0), front = |bearing| < 90, behind = |bearing| > 90.
    """
    # Angular distance to the half-plane's boundary line, signed positive on the inside: asin(sin b)
    # folds the bearing onto [-90, 90] (+ = left of the forward axis), asin(cos b) likewise for front.
    b = math.radians(bearing)
    if side in ("left", "right"):
        signed = math.degrees(math.asin(max(-1.0, min(1.0, math.sin(b)))))
        signed = signed if side == "left" else -signed
    elif side in ("front", "behind"):
        signed = math.degrees(math.asin(max(-1.0, min(1.0, math.cos(b)))))
        signed = signed if side == "front" else -signed
    else:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    if signed >= margin_deg:
        return True
    if signed <= -margin_deg:
        return False
    return None


# --------------------------------------------------------------------------------------------------
# Scene graph
# --------------------------------------------------------------------------------------------------
@dataclass(eq=False)
class SceneGraph:
    """A validated scene graph with cached pairwise geometry.

    ``objects`` holds *every* object, seen or not: relations and uniqueness are judged against the
    whole room (an unseen red mug still makes "the red mug" ambiguous), while generators only ask
    about objects a camera saw (:meth:`visible`).
    """

    scene_id: str
    room: Room
    objects: tuple[GraphObject, ...]
    seed: int | None = None
    generator_version: int | None = None
    trajectory: Mapping[str, Any] = field(default_factory=dict)
    source: str = "<memory>"

    def __post_init__(self) -> None:
        self._by_id = {o.id: o for o in self.objects}
        if len(self._by_id) != len(self.objects):
            raise SceneGraphError(f"{self.source}: duplicate object ids")
        for o in self.objects:
            if o.support is not None and o.support not in self._by_id:
                raise SceneGraphError(f"{self.source}: object {o.id} ({o.label}) stands on unknown object id {o.support}")
            if o.support == o.id:
                raise SceneGraphError(f"{self.source}: object {o.id} ({o.label}) is its own support")
        self._index = {o.id: i for i, o in enumerate(self.objects)}

    # -- lookup ----------------------------------------------------------------------------------
    def get(self, obj_id: int) -> GraphObject:
        try:
            return self._by_id[obj_id]
        except KeyError:
            raise KeyError(f"{self.scene_id}: no object with id {obj_id}") from None

    def visible(self, min_frames: int) -> list[GraphObject]:
        return [o for o in self.objects if o.is_visible(min_frames)]

    def with_label(self, label: str) -> list[GraphObject]:
        return [o for o in self.objects if o.label == label]

    def supported_by(self, obj_id: int) -> list[GraphObject]:
        """Objects standing directly on ``obj_id``."""
        return [o for o in self.objects if o.support == obj_id]

    @cached_property
    def labels(self) -> list[str]:
        return sorted({o.label for o in self.objects})

    @cached_property
    def colors(self) -> list[str]:
        return sorted({o.color for o in self.objects if o.color})

    def support_related(self, a: GraphObject, b: GraphObject) -> bool:
        """True when one stands directly on the other (then they are "on", never "next to")."""
        return a.support == b.id or b.support == a.id

    # -- pairwise geometry (cached) --------------------------------------------------------------
    @cached_property
    def _xy_bounds(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """(N, 2) min and max xy corners of every object's footprint."""
        c = np.array([o.box.center[:2] for o in self.objects]).reshape(-1, 2)
        h = np.array([o.box.size[:2] / 2 for o in self.objects]).reshape(-1, 2)
        return c - h, c + h

    @cached_property
    def _gaps(self) -> NDArray[np.float64]:
        lo, hi = self._xy_bounds
        return _aabb_gap(lo[:, None], hi[:, None], lo[None], hi[None])

    def gap(self, a: GraphObject, b: GraphObject) -> float:
        """xy distance between the footprints of ``a`` and ``b`` (0 when they overlap, e.g. a mug on a table)."""
        return float(self._gaps[self._index[a.id], self._index[b.id]])

    def wall_distance(self, o: GraphObject) -> float:
        """xy distance from the object's footprint to the nearest wall (0 when touching it)."""
        W, D = self.room.size[0], self.room.size[1]
        fp = o.footprint
        d = min(float(fp[:, 0].min()), W - float(fp[:, 0].max()), float(fp[:, 1].min()), D - float(fp[:, 1].max()))
        return max(d, 0.0)

    def centre_distance(self, o: GraphObject) -> float:
        """xy distance from the object's centre to the centre of the room."""
        return float(np.linalg.norm(o.centre_xy - self.room.centre_xy))

    def point_clearance(self, xy: Sequence[float]) -> float:
        """Distance from a floor point to the nearest floor-standing footprint (0 inside one)."""
        lo, hi = self._xy_bounds
        floor = np.array([o.support is None for o in self.objects], dtype=bool)
        if not floor.any():
            return math.inf
        p = np.asarray(xy, dtype=np.float64)
        return float(_aabb_gap(p, p, lo[floor], hi[floor]).min())

    def point_gap(self, xy: Sequence[float], o: GraphObject) -> float:
        """Distance from a floor point to one object's footprint (0 inside)."""
        lo, hi = self._xy_bounds
        p = np.asarray(xy, dtype=np.float64)
        i = self._index[o.id]
        return float(_aabb_gap(p, p, lo[i], hi[i]))

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> SceneGraph:
        """Validate a parsed ``scene_graph.json``; ``source`` names the file in every error."""
        if not isinstance(data, dict):
            raise SceneGraphError(f"{source}: expected a JSON object at the top level, got {type(data).__name__}")
        for key in ("scene_id", "room", "objects"):
            if key not in data:
                raise SceneGraphError(f"{source}: missing required key {key!r}")
        scene_id = data["scene_id"]
        if not isinstance(scene_id, str) or not scene_id:
            raise SceneGraphError(f"{source}: scene_id must be a non-empty string, got {scene_id!r}")
        room = _parse_room(data["room"], source)
        if not isinstance(data["objects"], list):
            raise SceneGraphError(f"{source}: 'objects' must be a list, got {type(data['objects']).__name__}")
        objects = tuple(_parse_object(rec, i, source) for i, rec in enumerate(data["objects"]))
        traj = data.get("trajectory") or {}
        if not isinstance(traj, dict):
            raise SceneGraphError(f"{source}: 'trajectory' must be an object")
        return cls(
            scene_id=scene_id,
            room=room,
            objects=objects,
            seed=_opt_int(data.get("seed"), "seed", source),
            generator_version=_opt_int(data.get("generator_version"), "generator_version", source),
            trajectory=traj,
            source=source,
        )


def load_scene_graph(path: str | os.PathLike[str]) -> SceneGraph:
    """Read and validate ``scene_graph.json`` (a file, or a scene directory holding one)."""
    p = Path(path)
    if p.is_dir():
        p = p / SCENE_GRAPH_FILE
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SceneGraphError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SceneGraphError(f"{p}: cannot read ({exc})") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SceneGraphError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from exc
    return SceneGraph.from_dict(data, source=str(p))


def _opt_int(value: Any, name: str, source: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise SceneGraphError(f"{source}: {name} must be an integer, got {value!r}")
    return value


def _numbers(value: Any, n: int, what: str) -> list[float]:
    if not isinstance(value, (list, tuple)) or len(value) != n:
        raise ValueError(f"{what} must be a list of {n} numbers, got {value!r}")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{what} must hold finite numbers, got {value!r}")
        out.append(float(v))
    return out


def _parse_room(rec: Any, source: str) -> Room:
    if not isinstance(rec, dict) or "size" not in rec:
        raise SceneGraphError(f"{source}: 'room' must be an object with a 'size' [W, D, H]")
    try:
        size = _numbers(rec["size"], 3, "room.size")
    except ValueError as exc:
        raise SceneGraphError(f"{source}: {exc}") from None
    if min(size) <= 0:
        raise SceneGraphError(f"{source}: room.size must be positive, got {size}")
    return Room(size=(size[0], size[1], size[2]), floor_color=str(rec.get("floor_color", "")), wall_color=str(rec.get("wall_color", "")))


def _parse_object(rec: Any, index: int, source: str) -> GraphObject:
    where = f"{source}: objects[{index}]"
    if not isinstance(rec, dict):
        raise SceneGraphError(f"{where}: expected an object, got {type(rec).__name__}")
    where += f" (id {rec.get('id')!r})"
    missing = [k for k in ("id", "label", "color", "box", "visible_frames") if k not in rec]
    if missing:
        raise SceneGraphError(f"{where}: missing required key(s) {missing}")
    oid = rec["id"]
    if isinstance(oid, bool) or not isinstance(oid, int):
        raise SceneGraphError(f"{where}: id must be an integer")
    label, color = rec["label"], rec["color"]
    if not isinstance(label, str) or not label.strip():
        raise SceneGraphError(f"{where}: label must be a non-empty string")
    if not isinstance(color, str):
        raise SceneGraphError(f"{where}: color must be a string")
    try:
        box_vals = _numbers(rec["box"], 6, "box [cx,cy,cz,sx,sy,sz]")
        yaw = float(rec.get("yaw") or 0.0)
        if not math.isfinite(yaw):
            raise ValueError(f"yaw must be finite, got {rec.get('yaw')!r}")
        box = Box3D(box_vals[:3], box_vals[3:])
        rgb = rec.get("color_rgb")
        color_rgb = tuple(_numbers(rgb, 3, "color_rgb")) if rgb is not None else None
    except (ValueError, TypeError, InvalidBoxError) as exc:
        raise SceneGraphError(f"{where}: {exc}") from None
    support = rec.get("support")
    if support is not None and (isinstance(support, bool) or not isinstance(support, int)):
        raise SceneGraphError(f"{where}: support must be an object id or null, got {support!r}")
    counts = []
    for key in ("visible_frames", "visible_pixels"):
        v = rec.get(key, 0)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise SceneGraphError(f"{where}: {key} must be a non-negative integer, got {v!r}")
        counts.append(v)
    return GraphObject(
        id=oid,
        label=" ".join(label.lower().split()),
        color=" ".join(color.lower().split()),
        box=box,
        support=support,
        shape=str(rec.get("shape", "")),
        size_class=str(rec.get("size_class", "")).lower().strip(),
        yaw=yaw,
        color_rgb=color_rgb,  # type: ignore[arg-type]
        visible_frames=counts[0],
        visible_pixels=counts[1],
    )

