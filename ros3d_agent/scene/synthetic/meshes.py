"""Triangle meshes of a layout: each object composed of open3d primitives, plus the room shell.

Every object is built in its own frame (origin at the centre of its footprint, z up from its bottom,
back facing +y) inside the box ``[-sx/2, sx/2] × [-sy/2, sy/2] × [0, sz]``, touching each face of it,
and then yawed and moved into the world. That is what makes the ground-truth box of the scene graph
the true extent of the rendered geometry rather than an approximation of it.

Parts carry their own albedo and :class:`~.catalog.Material`: the named colour goes on the parts a
person would name the object's colour by (a chair's seat and back, a lamp's shade), while legs,
poles, pots and frames get fixed neutral finishes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import open3d as o3d
from numpy.typing import NDArray

from .catalog import Material, color_rgb
from .layout import PlacedObject, Room, SceneLayout

__all__ = ["MeshPart", "object_parts", "object_box", "parts_box", "room_parts", "scene_parts", "combine_parts", "SURFACE_KINDS"]

SURFACE_KINDS = ("object", "floor", "wall", "ceiling")

_METAL = (0.55, 0.56, 0.58)
_DARK_METAL = (0.16, 0.16, 0.17)
_DARK_WOOD = (0.30, 0.19, 0.11)
_TERRACOTTA = (0.62, 0.33, 0.20)
_SCREEN = (0.04, 0.05, 0.08)
_PAGES = (0.93, 0.92, 0.86)
_LINEN = (0.95, 0.95, 0.93)

# Tessellation: enough that flat-shaded curved parts read as round at 640×480 and a few metres.
_CYL_RES = 32
_SPHERE_RES = 14

Mesh = o3d.geometry.TriangleMesh


@dataclass(frozen=True, eq=False)
class MeshPart:
    """One rigid, single-finish piece of the scene, in world coordinates.

    ``object_id`` is the scene-graph id, or -1 for the room shell; ``grain`` is the world xy direction
    wood stripes run along (the object's local x), so texture follows the object when it is yawed.
    """

    mesh: Mesh
    albedo: tuple[float, float, float]
    material: Material
    object_id: int
    surface: str = "object"
    grain: tuple[float, float] = (1.0, 0.0)

    @property
    def vertices(self) -> NDArray[np.float64]:
        return np.asarray(self.mesh.vertices)

    @property
    def triangles(self) -> NDArray[np.int32]:
        return np.asarray(self.mesh.triangles)


# ---------------------------------------------------------------------------------------------------
# Primitives in an object's local frame
# ---------------------------------------------------------------------------------------------------
def _box(x0: float, x1: float, y0: float, y1: float, z0: float, z1: float) -> Mesh:
    m = Mesh.create_box(x1 - x0, y1 - y0, z1 - z0)
    return m.translate((x0, y0, z0))


def _frustum(cx: float, cy: float, z0: float, z1: float, r0: float, r1: float | None = None, res: int = _CYL_RES) -> Mesh:
    """A closed cylinder (``r1`` None) or truncated cone with radius ``r0`` at ``z0`` and ``r1`` at ``z1``."""
    m = Mesh.create_cylinder(radius=r0, height=z1 - z0, resolution=res, split=1)
    if r1 is not None and r1 != r0:
        v = np.asarray(m.vertices).copy()
        top = v[:, 2] > 0
        v[top, :2] *= r1 / r0
        m.vertices = o3d.utility.Vector3dVector(v)
    return m.translate((cx, cy, (z0 + z1) / 2))


def _cone(cx: float, cy: float, z0: float, z1: float, r: float, res: int = _CYL_RES) -> Mesh:
    return Mesh.create_cone(radius=r, height=z1 - z0, resolution=res, split=1).translate((cx, cy, z0))


def _ellipsoid(center: tuple[float, float, float], radii: tuple[float, float, float], lower_half: bool = False) -> Mesh:
    m = Mesh.create_sphere(radius=1.0, resolution=_SPHERE_RES)
    if lower_half:  # an open shell: a bowl
        v = np.asarray(m.vertices)
        m.remove_vertices_by_mask(v[:, 2] > 1e-9)
    v = np.asarray(m.vertices) * np.asarray(radii) + np.asarray(center)
    m.vertices = o3d.utility.Vector3dVector(v)
    return m


def _handle(x_center: float, z_center: float, radius: float, tube: float, height: float) -> Mesh:
    """A torus standing in the xz plane (a mug handle), squashed to ``height`` overall."""
    m = Mesh.create_torus(torus_radius=radius, tube_radius=tube, radial_resolution=24, tubular_resolution=12)
    m.rotate(o3d.geometry.get_rotation_matrix_from_xyz((math.pi / 2, 0.0, 0.0)), center=(0.0, 0.0, 0.0))
    v = np.asarray(m.vertices).copy()
    v[:, 2] *= min(1.0, height / (2 * (radius + tube)))
    m.vertices = o3d.utility.Vector3dVector(v)
    return m.translate((x_center, 0.0, z_center))


# A builder returns (mesh, albedo, material) pieces for an object of size (sx, sy, sz) and colour c.
_Piece = tuple[Mesh, tuple[float, float, float], Material]
_Builder = Callable[[float, float, float, tuple[float, float, float], str], list[_Piece]]


def _accent(c: tuple[float, float, float]) -> tuple[float, float, float]:
    """Legs and frames: dark metal, unless the object itself is dark."""
    return _METAL if sum(c) < 0.6 else _DARK_METAL


def _table(sx: float, sy: float, sz: float, c: tuple[float, float, float], shape: str) -> list[_Piece]:
    t = 0.04
    if shape == "cylinder":
        r = sx / 2
        base_r = min(0.28, 0.6 * r)
        return [
            (_frustum(0, 0, sz - t, sz, r), c, Material.WOOD),
            (_frustum(0, 0, 0.03, sz - t, 0.045), _accent(c), Material.METAL),
            (_frustum(0, 0, 0.0, 0.03, base_r), _accent(c), Material.METAL),
        ]
    leg, inset = 0.05, 0.04
    pieces: list[_Piece] = [(_box(-sx / 2, sx / 2, -sy / 2, sy / 2, sz - t, sz), c, Material.WOOD)]
    for ix in (-1, 1):
        for iy in (-1, 1):
            x0 = ix * (sx / 2 - inset) - leg / 2
            y0 = iy * (sy / 2 - inset) - leg / 2
            pieces.append((_box(x0, x0 + leg, y0, y0 + leg, 0.0, sz - t), c, Material.WOOD))
    return pieces


def _chair(sx: float, sy: float, sz: float, c: tuple[float, float, float], shape: str) -> list[_Piece]:
    seat = min(0.46, sz - 0.3)
    leg = 0.035
    pieces: list[_Piece] = [
        (_box(-sx / 2, sx / 2, -sy / 2, sy / 2, seat - 0.05, seat), c, Material.PLAIN),
        (_box(-sx / 2, sx / 2, sy / 2 - 0.05, sy / 2, seat, sz), c, Material.PLAIN),
    ]
    for ix in (-1, 1):
        for iy in (-1, 1):
            x0 = -sx / 2 + 0.01 if ix < 0 else sx / 2 - 0.01 - leg
            y0 = -sy / 2 + 0.01 if iy < 0 else sy / 2 - 0.01 - leg
            pieces.append((_box(x0, x0 + leg, y0, y0 + leg, 0.0, seat - 0.05), _accent(c), Material.METAL))
    return pieces


def _sofa(sx: float, sy: float, sz: float, c: tuple[float, float, float], shape: str) -> list[_Piece]:
    foot, arm, back = 0.08, 0.16, 0.22
    pieces: list[_Piece] = [
        (_box(-sx / 2, sx / 2, -sy / 2, sy / 2, foot, 0.42), c, Material.FABRIC),
        (_box(-sx / 2 + arm, sx / 2 - arm, sy / 2 - back, sy / 2, 0.42, sz), c, Material.FABRIC),
        (_box(-sx / 2, -sx / 2 + arm, -sy / 2, sy / 2, 0.42, 0.62), c, Material.FABRIC),
        (_box(sx / 2 - arm, sx / 2, -sy / 2, sy / 2, 0.42, 0.62), c, Material.FABRIC),
    ]
    for ix in (-1, 1):
        for iy in (-1, 1):
            x0 = -sx / 2 + 0.05 if ix < 0 else sx / 2 - 0.11
            y0 = -sy / 2 + 0.05 if iy < 0 else sy / 2 - 0.11
            pieces.append((_box(x0, x0 + 0.06, y0, y0 + 0.06, 0.0, foot), _DARK_WOOD, Material.WOOD))
    return pieces


def _cabinet(sx: float, sy: float, sz: float, c: tuple[float, float, float], shape: str) -> list[_Piece]:
    h = 0.02  # handles stand proud of the doors by this much
    pieces: list[_Piece] = [(_box(-sx / 2, sx / 2, -sy / 2 + h, sy / 2, 0.0, sz), c, Material.WOOD)]
    for x in (-0.06, 0.04):
        pieces.append((_box(x, x + 0.02, -sy / 2, -sy / 2 + h, sz * 0.55, sz * 0.55 + 0.14), _accent(c), Material.METAL))
    return pieces


def _bookshelf(sx: float, sy: float, sz: float, c: tuple[float, float, float], shape: str) -> list[_Piece]:
    t = 0.025
    pieces: list[_Piece] = [
        (_box(-sx / 2, -sx / 2 + t, -sy / 2, sy / 2, 0.0, sz), c, Material.WOOD),
        (_box(sx / 2 - t, sx / 2, -sy / 2, sy / 2, 0.0, sz), c, Material.WOOD),
        (_box(-sx / 2 + t, sx / 2 - t, sy / 2 - 0.012, sy / 2, 0.0, sz), c, Material.WOOD),
        (_box(-sx / 2 + t, sx / 2 - t, -sy / 2, sy / 2 - 0.012, sz - t, sz), c, Material.WOOD),
    ]
    n = max(2, int(round(sz / 0.38)))
    for k in range(n):
        z = 0.06 + k * (sz - 0.06 - t) / n
        pieces.append((_box(-sx / 2 + t, sx / 2 - t, -sy / 2, sy / 2 - 0.012, z - t, z), c, Material.WOOD))
    return pieces


def _bed(sx: float, sy: float, sz: float, c: tuple[float, float, float], shape: str) -> list[_Piece]:
    head = 0.06
    y_head = sy / 2 - head
    return [
        (_box(-sx / 2, sx / 2, -sy / 2, y_head, 0.0, 0.32), _DARK_WOOD, Material.WOOD),
        (_box(-sx / 2 + 0.02, sx / 2 - 0.02, -sy / 2 + 0.02, y_head, 0.32, 0.54), c, Material.FABRIC),
        (_box(-sx / 2 + 0.12, sx / 2 - 0.12, y_head - 0.42, y_head - 0.06, 0.54, 0.64), _LINEN, Material.FABRIC),
        (_box(-sx / 2, sx / 2, y_head, sy / 2, 0.0, sz), _DARK_WOOD, Material.WOOD),
    ]


def _lamp(sx: float, sy: float, sz: float, c: tuple[float, float, float], shape: str) -> list[_Piece]:
    r = sx / 2
    shade_h = min(0.36, 0.24 * sz)
    shade = _frustum(0, 0, sz - shade_h, sz, r, 0.55 * r) if shape == "cone" else _frustum(0, 0, sz - shade_h, sz, r)
    return [
        (_frustum(0, 0, 0.0, 0.03, 0.6 * r), _DARK_METAL, Material.METAL),
        (_frustum(0, 0, 0.03, sz - shade_h, 0.014, res=12), _METAL, Material.METAL),
        (shade, c, Material.FABRIC),
    ]


def _plant(sx: float, sy: float, sz: float, c: tuple[float, float, float], shape: str) -> list[_Piece]:
    r = sx / 2
    pot_h = min(0.35, 0.3 * sz)
    pot_r = 0.55 * r
    pieces: list[_Piece] = [(_frustum(0, 0, 0.0, pot_h, 0.8 * pot_r, pot_r), _TERRACOTTA, Material.CERAMIC)]
    z0 = 0.85 * pot_h
    if shape == "cone":
        pieces.append((_cone(0, 0, z0, sz, r), c, Material.FOLIAGE))
    else:
        rz = (sz - z0) / 2
        pieces.append((_ellipsoid((0.0, 0.0, sz - rz), (r, r, rz)), c, Material.FOLIAGE))
    return pieces


def _monitor(sx: float, sy: float, sz: float, c: tuple[float, float, float], shape: str) -> list[_Piece]:
    panel_z0 = 0.28 * sz
    return [
        (_box(-0.16 * sx, 0.16 * sx, -sy / 2, sy / 2, 0.0, 0.015), c, Material.PLAIN),
        (_box(-0.025, 0.025, 0.02, 0.05, 0.015, panel_z0 + 0.05), c, Material.PLAIN),
        (_box(-sx / 2, sx / 2, -0.02, 0.02, panel_z0, sz), c, Material.PLAIN),
        (_box(-sx / 2 + 0.015, sx / 2 - 0.015, -0.026, -0.02, panel_z0 + 0.015, sz - 0.015), _SCREEN, Material.SCREEN),
    ]


def _cardboard(sx: float, sy: float, sz: float, c: tuple[float, float, float], shape: str) -> list[_Piece]:
    return [(_box(-sx / 2, sx / 2, -sy / 2, sy / 2, 0.0, sz), c, Material.PLAIN)]


def _mug(sx: float, sy: float, sz: float, c: tuple[float, float, float], shape: str) -> list[_Piece]:
    r = sy / 2
    xb = -sx / 2 + r  # body axis
    tube = min(0.008, 0.3 * (sx - sy))
    x_c = xb + r - 0.004
    radius = sx / 2 - x_c - tube
    return [
        (_frustum(xb, 0.0, 0.0, sz, r), c, Material.CERAMIC),
        (_handle(x_c, sz * 0.55, radius, tube, 0.7 * sz), c, Material.CERAMIC),
    ]


def _bottle(sx: float, sy: float, sz: float, c: tuple[float, float, float], shape: str) -> list[_Piece]:
    r = sx / 2
    return [
        (_frustum(0, 0, 0.0, 0.62 * sz, r), c, Material.CERAMIC),
        (_frustum(0, 0, 0.62 * sz, 0.8 * sz, r, 0.36 * r), c, Material.CERAMIC),
        (_frustum(0, 0, 0.8 * sz, 0.93 * sz, 0.34 * r), c, Material.CERAMIC),
        (_frustum(0, 0, 0.93 * sz, sz, 0.38 * r), _LINEN if sum(c) < 2.4 else _DARK_METAL, Material.PLAIN),
    ]


def _bowl(sx: float, sy: float, sz: float, c: tuple[float, float, float], shape: str) -> list[_Piece]:
    return [(_ellipsoid((0.0, 0.0, sz), (sx / 2, sx / 2, sz), lower_half=True), c, Material.CERAMIC)]


def _ball(sx: float, sy: float, sz: float, c: tuple[float, float, float], shape: str) -> list[_Piece]:
    return [(_ellipsoid((0.0, 0.0, sz / 2), (sx / 2, sx / 2, sz / 2)), c, Material.PLAIN)]


def _trash_can(sx: float, sy: float, sz: float, c: tuple[float, float, float], shape: str) -> list[_Piece]:
    if shape == "box":
        return [
            (_box(-sx / 2 + 0.01, sx / 2 - 0.01, -sy / 2 + 0.01, sy / 2 - 0.01, 0.0, sz - 0.03), c, Material.PLAIN),
            (_box(-sx / 2, sx / 2, -sy / 2, sy / 2, sz - 0.03, sz), c, Material.PLAIN),
        ]
    r = sx / 2
    return [
        (_frustum(0, 0, 0.0, sz - 0.03, 0.82 * r, 0.96 * r), c, Material.PLAIN),
        (_frustum(0, 0, sz - 0.03, sz, r), c, Material.PLAIN),
    ]


def _backpack(sx: float, sy: float, sz: float, c: tuple[float, float, float], shape: str) -> list[_Piece]:
    pocket = 0.06
    body_y0 = -sy / 2 + pocket
    ry = (sy / 2 - body_y0) / 2
    return [
        (_box(-sx / 2, sx / 2, body_y0, sy / 2, 0.0, 0.82 * sz), c, Material.FABRIC),
        (_ellipsoid((0.0, body_y0 + ry, 0.82 * sz), (sx / 2, ry, 0.18 * sz)), c, Material.FABRIC),
        (_box(-0.36 * sx, 0.36 * sx, -sy / 2, body_y0, 0.06 * sz, 0.48 * sz), c, Material.FABRIC),
    ]


def _vase(sx: float, sy: float, sz: float, c: tuple[float, float, float], shape: str) -> list[_Piece]:
    r = sx / 2
    if shape == "sphere":
        return [
            (_ellipsoid((0.0, 0.0, 0.38 * sz), (r, r, 0.38 * sz)), c, Material.CERAMIC),
            (_frustum(0, 0, 0.66 * sz, sz, 0.32 * r, 0.4 * r), c, Material.CERAMIC),
        ]
    return [
        (_frustum(0, 0, 0.0, 0.45 * sz, 0.72 * r, r), c, Material.CERAMIC),
        (_frustum(0, 0, 0.45 * sz, 0.85 * sz, r, 0.5 * r), c, Material.CERAMIC),
        (_frustum(0, 0, 0.85 * sz, sz, 0.5 * r, 0.62 * r), c, Material.CERAMIC),
    ]


def _book(sx: float, sy: float, sz: float, c: tuple[float, float, float], shape: str) -> list[_Piece]:
    t = min(0.004, sz / 5)
    return [
        (_box(-sx / 2, sx / 2, -sy / 2, sy / 2, 0.0, t), c, Material.PLAIN),
        (_box(-sx / 2, sx / 2, -sy / 2, sy / 2, sz - t, sz), c, Material.PLAIN),
        (_box(-sx / 2, -sx / 2 + t, -sy / 2, sy / 2, t, sz - t), c, Material.PLAIN),
        (_box(-sx / 2 + t, sx / 2 - 0.003, -sy / 2 + 0.003, sy / 2 - 0.003, t, sz - t), _PAGES, Material.PLAIN),
    ]


_BUILDERS: dict[str, _Builder] = {
    "table": _table,
    "chair": _chair,
    "sofa": _sofa,
    "cabinet": _cabinet,
    "bookshelf": _bookshelf,
    "bed": _bed,
    "lamp": _lamp,
    "plant": _plant,
    "monitor": _monitor,
    "box": _cardboard,
    "mug": _mug,
    "bottle": _bottle,
    "bowl": _bowl,
    "ball": _ball,
    "trash can": _trash_can,
    "backpack": _backpack,
    "vase": _vase,
    "book": _book,
}


def _to_world(mesh: Mesh, obj: PlacedObject) -> Mesh:
    R = o3d.geometry.get_rotation_matrix_from_xyz((0.0, 0.0, obj.yaw))
    mesh.rotate(R, center=(0.0, 0.0, 0.0))
    return mesh.translate(obj.position)


def object_parts(obj: PlacedObject) -> list[MeshPart]:
    """The world-space parts of one object; every vertex lies inside ``obj.oriented_box``."""
    try:
        build = _BUILDERS[obj.label]
    except KeyError:
        raise KeyError(f"no mesh builder for category {obj.label!r}; known: {sorted(_BUILDERS)}") from None
    sx, sy, sz = obj.size
    grain = (math.cos(obj.yaw), math.sin(obj.yaw))
    return [
        MeshPart(_to_world(mesh, obj), albedo, material, obj.id, "object", grain)
        for mesh, albedo, material in build(sx, sy, sz, obj.color_rgb, obj.shape)
    ]


def parts_box(parts: list[MeshPart]) -> list[float]:
    """``[cx, cy, cz, sx, sy, sz]`` around the vertices of ``parts``, rounded to 1 µm (JSON-stable)."""
    if not parts:
        raise ValueError("parts_box: no parts")
    v = np.concatenate([p.vertices for p in parts])
    lo, hi = v.min(axis=0), v.max(axis=0)
    return [round(float(x), 6) for x in (*((lo + hi) / 2), *(hi - lo))]


def object_box(obj: PlacedObject) -> list[float]:
    """The ground-truth axis-aligned box of an object: tight around its geometry, like a box fitted to
    a scan's instance points, and therefore what its rendered depth back-projects into."""
    return parts_box(object_parts(obj))


def _quad(corners: list[tuple[float, float, float]]) -> Mesh:
    m = Mesh()
    m.vertices = o3d.utility.Vector3dVector(np.asarray(corners, dtype=np.float64))
    m.triangles = o3d.utility.Vector3iVector(np.array([[0, 1, 2], [0, 2, 3]], dtype=np.int32))
    return m


def room_parts(room: Room) -> list[MeshPart]:
    """Floor, ceiling and four walls (single-sided quads; the renderer shades both sides)."""
    W, D, H = room.size
    floor_mat = Material.FLOOR_TILES if room.floor_pattern == "tiles" else Material.FLOOR_PLANKS
    wall = color_rgb(room.wall_color)
    return [
        MeshPart(_quad([(0, 0, 0), (W, 0, 0), (W, D, 0), (0, D, 0)]), color_rgb(room.floor_color), floor_mat, -1, "floor"),
        MeshPart(_quad([(0, 0, H), (0, D, H), (W, D, H), (W, 0, H)]), _LINEN, Material.WALL, -1, "ceiling"),
        MeshPart(_quad([(0, 0, 0), (0, 0, H), (W, 0, H), (W, 0, 0)]), wall, Material.WALL, -1, "wall", (1.0, 0.0)),
        MeshPart(_quad([(W, 0, 0), (W, 0, H), (W, D, H), (W, D, 0)]), wall, Material.WALL, -1, "wall", (0.0, 1.0)),
        MeshPart(_quad([(W, D, 0), (W, D, H), (0, D, H), (0, D, 0)]), wall, Material.WALL, -1, "wall", (1.0, 0.0)),
        MeshPart(_quad([(0, D, 0), (0, D, H), (0, 0, H), (0, 0, 0)]), wall, Material.WALL, -1, "wall", (0.0, 1.0)),
    ]


def scene_parts(layout: SceneLayout) -> list[MeshPart]:
    """Room shell first, then every object's parts in id order."""
    parts = room_parts(layout.room)
    for obj in layout.objects:
        parts += object_parts(obj)
    return parts


def combine_parts(parts: list[MeshPart]) -> Mesh:
    """One vertex-coloured legacy mesh of ``parts`` (for viewing or exporting a scene)."""
    out = Mesh()
    for p in parts:
        m = Mesh(p.mesh)
        m.paint_uniform_color(p.albedo)
        out += m
    return out
