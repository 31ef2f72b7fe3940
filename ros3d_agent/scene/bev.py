"""Top-down (bird's-eye) orthographic renders of a scene, with the pixel ↔ world mapping.

Ross3D reconstructs a BEV image of each scene as an auxiliary target and masks the loss where the
render has holes; its renders are distributed precomputed with no script, so this module is our
generator. It also serves people: replay evaluation draws predicted and ground-truth boxes on it.

Rendering is a z-buffer done in one vectorised reduction: each point gets an int64 key
``(quantised height << 24) | rgb24`` and ``np.maximum.at`` keeps, per pixel, the key of the highest
point, which carries that point's colour in its low bits. No sort, no Python loop.

Image convention: column ``u`` grows with world +x, row ``v`` grows with world −y (north up, as on a
map); pixel centres sit at integer coordinates (OpenCV), so pixel ``(u, v)`` covers world
``x ∈ [x0 + u·m, x0 + (u+1)·m)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .errors import SceneDirError
from .fusion import frame_points
from .scene_dir import SceneDir
from .types import Box3D, Frame

__all__ = [
    "BevConfig",
    "BevMapping",
    "BevImage",
    "render_bev",
    "render_bev_from_frames",
    "estimate_ceiling_height",
    "render_scene_bev",
    "auto_stride",
    "DEFAULT_MAX_POINTS",
    "draw_boxes",
    "GT_COLOR",
    "PRED_COLOR",
]

#: Box colours used by :func:`draw_boxes` callers: ground truth green, predictions red (RGB).
GT_COLOR: tuple[int, int, int] = (40, 200, 40)
PRED_COLOR: tuple[int, int, int] = (230, 40, 40)

_Z_QUANT = 1e-3  # height resolution of the z-buffer key (1 mm)
_Z_LEVELS = 1 << 38  # 38 bits of height + 24 bits of colour fit a signed int64


@dataclass(frozen=True)
class BevMapping:
    """Affine map between world xy (metres) and BEV pixel coordinates.

    Attributes:
        x0, y1: world x of the image's left edge and world y of its top edge.
        mpp: metres per pixel (square pixels).
        width, height: image size in pixels.
    """

    x0: float
    y1: float
    mpp: float
    width: int
    height: int

    @classmethod
    def from_bounds(cls, xy_min: ArrayLike, xy_max: ArrayLike, width: int = 432, height: int = 432, pad: float = 0.05) -> BevMapping:
        """Fit the xy box into the image with square pixels, centred, with a ``pad`` margin on each side.

        ``pad`` is a fraction of the larger extent, so boxes touching the scene edge stay visible.
        """
        lo = np.asarray(xy_min, dtype=np.float64).reshape(2)
        hi = np.asarray(xy_max, dtype=np.float64).reshape(2)
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise ValueError(f"BEV bounds must be finite, got {lo.tolist()} .. {hi.tolist()}")
        if np.any(hi < lo):
            raise ValueError(f"BEV bounds: max < min ({lo.tolist()} .. {hi.tolist()})")
        if width < 1 or height < 1:
            raise ValueError(f"BEV image size must be positive, got {width}x{height}")
        if pad < 0:
            raise ValueError(f"pad must be >= 0, got {pad}")
        ext = np.maximum(hi - lo, 1e-3)  # a single point still gets a (1 mm) view
        ext_max = float(ext.max()) * (1 + 2 * pad)
        mpp = ext_max / min(width, height)
        centre = (lo + hi) / 2
        return cls(float(centre[0] - mpp * width / 2), float(centre[1] + mpp * height / 2), float(mpp), int(width), int(height))

    def world_to_pixel(self, xy: ArrayLike) -> NDArray[np.float64]:
        """Continuous pixel coordinates ``(u, v)`` (N, 2) of world points (N, 2+); pixel centres are integers."""
        p = np.asarray(xy, dtype=np.float64)
        p2 = p.reshape(-1, p.shape[-1])[:, :2]
        u = (p2[:, 0] - self.x0) / self.mpp - 0.5
        v = (self.y1 - p2[:, 1]) / self.mpp - 0.5
        return np.stack([u, v], axis=1)

    def pixel_index(self, xy: ArrayLike) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.bool_]]:
        """Integer ``(col, row)`` of the pixel containing each world point, and whether it is inside the image."""
        p = np.asarray(xy)
        p2 = p.reshape(-1, p.shape[-1])
        inv = 1.0 / self.mpp
        col = np.floor((p2[:, 0] - self.x0) * inv).astype(np.int64)
        row = np.floor((self.y1 - p2[:, 1]) * inv).astype(np.int64)
        inside = (col >= 0) & (col < self.width) & (row >= 0) & (row < self.height)
        return col, row, inside

    def pixel_to_world(self, uv: ArrayLike) -> NDArray[np.float64]:
        """World xy (N, 2) of pixel coordinates (N, 2); integer ``(u, v)`` gives the pixel centre."""
        q = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
        x = self.x0 + (q[:, 0] + 0.5) * self.mpp
        y = self.y1 - (q[:, 1] + 0.5) * self.mpp
        return np.stack([x, y], axis=1)

    def box_pixel_rect(self, box: Box3D) -> tuple[int, int, int, int] | None:
        """``(col0, row0, col1, row1)``: inclusive range of the pixels whose centre lies in the box's xy extent.

        For a yawed box this is the range of its axis-aligned hull. A box smaller than a pixel still
        gets the one pixel containing its centre. Clipped to the image; None when entirely outside.
        """
        lo, hi = box.bounds()
        eps = 1e-9
        col0 = int(np.ceil((lo[0] - self.x0) / self.mpp - 0.5 - eps))
        col1 = int(np.floor((hi[0] - self.x0) / self.mpp - 0.5 + eps))
        row0 = int(np.ceil((self.y1 - hi[1]) / self.mpp - 0.5 - eps))
        row1 = int(np.floor((self.y1 - lo[1]) / self.mpp - 0.5 + eps))
        if col0 > col1 or row0 > row1:  # thinner than a pixel along that axis: the pixel holding the centre
            c, r, _ = self.pixel_index(box.center[None, :2])
            if col0 > col1:
                col0 = col1 = int(c[0])
            if row0 > row1:
                row0 = row1 = int(r[0])
        col0, col1 = max(col0, 0), min(col1, self.width - 1)
        row0, row1 = max(row0, 0), min(row1, self.height - 1)
        if col0 > col1 or row0 > row1:
            return None
        return col0, row0, col1, row1

    def box_mask(self, box: Box3D) -> NDArray[np.bool_]:
        """Boolean H×W mask of the pixels whose centre lies in the box's footprint (yaw honoured).

        Only the pixels of :meth:`box_pixel_rect` are tested, so this is cheap for small boxes. A box
        so thin that no pixel centre falls inside gets its :meth:`box_pixel_rect` instead, so every
        box on the image has at least one pixel.
        """
        mask = np.zeros((self.height, self.width), dtype=np.bool_)
        rect = self.box_pixel_rect(box)
        if rect is None:
            return mask
        c0, r0, c1, r1 = rect
        v, u = np.mgrid[r0 : r1 + 1, c0 : c1 + 1]
        xy = self.pixel_to_world(np.stack([u.ravel(), v.ravel()], axis=1))
        pts = np.column_stack([xy, np.full(xy.shape[0], box.center[2])])
        inside = box.contains(pts).reshape(v.shape)
        if not inside.any():
            inside[:] = True
        mask[r0 : r1 + 1, c0 : c1 + 1] = inside
        return mask

    def to_dict(self) -> dict[str, float | int]:
        return {"x0": self.x0, "y1": self.y1, "mpp": self.mpp, "width": self.width, "height": self.height}

    @classmethod
    def from_dict(cls, d: dict[str, float | int]) -> BevMapping:
        return cls(float(d["x0"]), float(d["y1"]), float(d["mpp"]), int(d["width"]), int(d["height"]))


@dataclass(frozen=True)
class BevConfig:
    """How to render.

    Attributes:
        width, height: image size (Ross3D's BEV target is 432×432).
        pad: margin around the scene's xy bounds, as a fraction of the larger extent.
        bounds_quantile: xy bounds come from these lower/upper quantiles of the points, so a few
            flying pixels far outside the room do not shrink the room to a corner of the image.
        ceiling: ``"auto"`` drops points above a detected ceiling (see :func:`estimate_ceiling_height`),
            a number drops points above that world height, ``None`` keeps everything.
        ceiling_margin: with ``"auto"``, cut this far below the detected ceiling surface.
        background: colour of hole pixels.
    """

    width: int = 432
    height: int = 432
    pad: float = 0.03
    bounds_quantile: float = 0.001
    ceiling: float | Literal["auto"] | None = "auto"
    ceiling_margin: float = 0.15
    background: tuple[int, int, int] = (0, 0, 0)

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1:
            raise ValueError(f"BEV size must be positive, got {self.width}x{self.height}")
        if not 0 <= self.bounds_quantile < 0.5:
            raise ValueError(f"bounds_quantile must be in [0, 0.5), got {self.bounds_quantile}")
        if isinstance(self.ceiling, str) and self.ceiling != "auto":
            raise ValueError(f"ceiling must be 'auto', a height or None, got {self.ceiling!r}")


@dataclass
class BevImage:
    """A BEV render: ``rgb`` H×W×3 uint8, ``holes`` H×W bool (True where no point fell), ``height_map``
    H×W float32 (world z of the visible point, NaN in holes), the ``mapping``, and the ceiling cut used.
    """

    rgb: NDArray[np.uint8]
    holes: NDArray[np.bool_]
    height_map: NDArray[np.float32]
    mapping: BevMapping
    ceiling_cut: float | None = None

    @property
    def coverage(self) -> float:
        """Share of pixels that received a point."""
        return float(1.0 - self.holes.mean())


def _subsample(p: NDArray, max_points: int) -> NDArray:
    """Every k-th row so at most ``max_points`` remain: robust statistics need no more, and it is deterministic."""
    step = -(-p.shape[0] // max_points)
    return p[::step] if step > 1 else p


def _layer_cells(z: NDArray[np.floating], cols: NDArray[np.int64], z0: float, bin_size: float) -> NDArray[np.int64]:
    """Distinct xy columns per z bin (bins from ``z0``; points below are ignored): the horizontal area
    each height layer covers, in cells. Shared with :mod:`.proposals` (floor and support search)."""
    zb = np.floor((z - z0) / bin_size).astype(np.int64)
    ok = zb >= 0
    if not ok.any():
        return np.zeros(0, np.int64)
    span = int(cols.max()) + 1
    flat = zb[ok] * span + cols[ok]
    n_keys = int(flat.max()) + 1
    if n_keys <= 1 << 25:  # a bitmap beats sorting for the few million (bin, column) pairs of a room
        occ = np.zeros(n_keys, dtype=np.bool_)
        occ[flat] = True
        uk = np.flatnonzero(occ)
    else:
        uk = np.unique(flat)
    return np.bincount(uk // span)


def _xy_cells(p: NDArray[np.floating], cell: float) -> NDArray[np.int64]:
    """Integer id of the ``cell``-sized xy column of each point (ids are dense from 0)."""
    ij = np.floor(p[:, :2] / cell).astype(np.int64)
    ij -= ij.min(axis=0)
    return ij[:, 0] * (int(ij[:, 1].max()) + 1) + ij[:, 1]


def estimate_ceiling_height(xyz: ArrayLike, bin_size: float = 0.05, min_area_fraction: float = 0.25) -> float | None:
    """World z of a ceiling if the cloud has one, else None.

    A ceiling is a horizontal layer in the upper 40 % of the cloud's height range whose xy footprint
    covers at least ``min_area_fraction`` of the whole cloud's footprint (10 cm cells); the highest
    such layer wins. Table tops and shelves are far smaller, and a scan without a ceiling has no such
    layer, so nothing is cut there. Works on a deterministic subsample of at most 200k points.
    """
    p = np.asarray(xyz)
    if p.ndim != 2 or p.shape[1] != 3 or p.shape[0] < 100:
        return None
    p = _subsample(p, 200_000)
    p = p[np.isfinite(p).all(axis=1)]
    if p.shape[0] < 100:
        return None
    z = p[:, 2].astype(np.float64)
    zlo, zhi = np.quantile(z, [0.001, 0.999])
    if zhi - zlo < 1.0:
        return None
    cols = _xy_cells(p, 0.1)
    footprint = int(np.count_nonzero(np.bincount(cols)))
    zstart = zlo + 0.6 * (zhi - zlo)
    upper = (z >= zstart) & (z <= zhi + bin_size)
    best: float | None = None  # top edge of the highest qualifying bin
    # Two bin grids half a bin apart, so a plane straddling a bin edge is still caught whole.
    for offset in (0.0, bin_size / 2):
        cells = _layer_cells(z[upper], cols[upper], zstart + offset, bin_size)
        good = np.flatnonzero(cells >= min_area_fraction * footprint)
        if good.shape[0]:
            top = zstart + offset + (good[-1] + 1) * bin_size
            best = top if best is None else max(best, top)
    if best is None:
        return None
    band = (z >= best - bin_size) & (z < best)  # the bin itself: [top - bin, top)
    return float(np.median(z[band]))


def _bounds_xy(xyz: NDArray[np.floating], q: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    if q > 0 and xyz.shape[0] > 1000:
        sub = _subsample(xyz, 500_000)
        lo = np.array([np.quantile(sub[:, i], q) for i in range(2)])
        hi = np.array([np.quantile(sub[:, i], 1 - q) for i in range(2)])
    else:
        lo, hi = xyz[:, :2].min(axis=0).astype(np.float64), xyz[:, :2].max(axis=0).astype(np.float64)
    return lo, hi


def render_bev(
    xyz: ArrayLike,
    rgb: ArrayLike | None = None,
    config: BevConfig | None = None,
    *,
    mapping: BevMapping | None = None,
) -> BevImage:
    """Render points (N, 3) with colours (N, 3) uint8 from above.

    Each pixel shows the colour of its highest point (after the ceiling cut). The view covers the
    points' xy bounds (see :class:`BevConfig`) unless an explicit ``mapping`` is given, e.g. to
    render several clouds of one scene into the same frame.

    Raises:
        ValueError: no points (after dropping non-finite ones and the ceiling cut), or bad shapes.
    """
    cfg = config or BevConfig()
    pts = np.asarray(xyz)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"xyz: expected shape (N, 3), got {pts.shape}")
    if not np.issubdtype(pts.dtype, np.floating):
        pts = pts.astype(np.float64)
    col = np.full(pts.shape, 200, np.uint8) if rgb is None else np.asarray(rgb)
    if col.shape != pts.shape or col.dtype != np.uint8:
        raise ValueError(f"rgb: expected uint8 shape {pts.shape}, got {col.dtype} {col.shape}")
    finite = np.isfinite(pts).all(axis=1)
    if not finite.all():
        pts, col = pts[finite], col[finite]
    if pts.shape[0] == 0:
        raise ValueError("render_bev: no (finite) points to render; is the scene empty or is all depth invalid?")

    cut: float | None
    if cfg.ceiling == "auto":
        c = estimate_ceiling_height(pts)
        cut = None if c is None else c - cfg.ceiling_margin
    else:
        cut = None if cfg.ceiling is None else float(cfg.ceiling)
    if cut is not None:
        keep = pts[:, 2] <= cut
        pts, col = pts[keep], col[keep]
        if pts.shape[0] == 0:
            raise ValueError(f"render_bev: every point lies above the ceiling cut z={cut:.3f}")

    if mapping is None:
        lo, hi = _bounds_xy(pts, cfg.bounds_quantile)
        mapping = BevMapping.from_bounds(lo, hi, cfg.width, cfg.height, cfg.pad)
    return _zbuffer(pts, col, mapping, cfg.background, cut)


def _zbuffer(pts: NDArray[np.floating], col: NDArray[np.uint8], m: BevMapping, background: Sequence[int], cut: float | None) -> BevImage:
    ucol, urow, inside = m.pixel_index(pts)
    if not inside.all():
        ucol, urow, pts, col = ucol[inside], urow[inside], pts[inside], col[inside]
    pix = urow * m.width + ucol
    z = pts[:, 2]
    zmin = float(z.min()) if z.shape[0] else 0.0
    zq = np.floor((z - zmin) * (1.0 / _Z_QUANT)).astype(np.int64)
    np.clip(zq, 0, _Z_LEVELS - 1, out=zq)
    c = col.astype(np.int64)
    key = (zq << 24) | (c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]
    buf = np.full(m.width * m.height, -1, np.int64)
    np.maximum.at(buf, pix, key)
    holes = buf < 0
    kb = np.where(holes, 0, buf)
    img = np.empty((m.height * m.width, 3), np.uint8)
    img[:, 0] = (kb >> 16) & 0xFF
    img[:, 1] = (kb >> 8) & 0xFF
    img[:, 2] = kb & 0xFF
    img[holes] = np.asarray(background, dtype=np.uint8)
    hmap = ((kb >> 24).astype(np.float64) * _Z_QUANT + zmin).astype(np.float32)
    hmap[holes] = np.nan
    return BevImage(img.reshape(m.height, m.width, 3), holes.reshape(m.height, m.width), hmap.reshape(m.height, m.width), m, cut)


#: Default budget of back-projected samples for renders from frames: ~6 M points render in well under
#: a second, and at 432 px that is many samples per pixel.
DEFAULT_MAX_POINTS = 6_000_000


def auto_stride(n_frames: int, height: int, width: int, max_points: int = DEFAULT_MAX_POINTS) -> int:
    """Smallest pixel stride keeping ``n_frames`` frames of ``height × width`` within ``max_points`` samples.

    A 300-frame 640×480 scene gets stride 4; a 40-frame one stride 2, so short scenes are not left
    full of holes by a stride chosen for long ones.
    """
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    return max(1, math.ceil(math.sqrt(n_frames * height * width / max_points)))


def render_bev_from_frames(
    frames: Sequence[Frame],
    config: BevConfig | None = None,
    *,
    stride: int | None = None,
    max_depth: float | None = None,
    mapping: BevMapping | None = None,
) -> BevImage:
    """Render straight from frames: strided back-projection of every frame, then :func:`render_bev`.

    ``stride`` None picks :func:`auto_stride` (4 for 300 frames at 640×480, i.e. 19 200 samples per
    frame: at 2 m a sample every ~1.4 cm, below the ~2 cm BEV pixel of an 8 m room, and neighbouring
    frames overlap). Frames without valid depth add nothing.

    Raises:
        ValueError: no frames, or no frame has valid depth.
    """
    if len(frames) == 0:
        raise ValueError("render_bev_from_frames: no frames")
    if stride is None:
        stride = auto_stride(len(frames), frames[0].height, frames[0].width)
    parts = [frame_points(f, stride=stride, max_depth=max_depth) for f in frames]
    n = sum(p[0].shape[0] for p in parts)
    if n == 0:
        raise ValueError(f"render_bev_from_frames: none of the {len(frames)} frames has valid depth")
    xyz = np.concatenate([p[0] for p in parts])
    rgb = np.concatenate([p[1] for p in parts])
    return render_bev(xyz, rgb, config, mapping=mapping)


def render_scene_bev(
    scene: SceneDir,
    config: BevConfig | None = None,
    *,
    source: Literal["auto", "points", "frames"] = "auto",
    stride: int | None = None,
    progress: bool = False,
) -> BevImage:
    """BEV of a scene directory from its ``points.ply`` or its frames (``auto``: frames when it has any,
    since a fused cloud may leave out far readings).

    Frames are streamed: only their strided points are kept, never the images. ``stride`` None picks
    :func:`auto_stride` from the number and size of the frames.

    Raises:
        SceneDirError: the chosen source is missing, or no frame has valid depth.
    """
    if source not in ("auto", "points", "frames"):
        raise ValueError(f"source must be 'auto', 'points' or 'frames', got {source!r}")
    ids = scene.frame_ids()
    if source == "auto":
        source = "frames" if ids else "points"
    if source == "points":
        if scene.points_path is None:
            raise SceneDirError(f"{scene.path}: no points.ply to render (use the frames)")
        xyz, rgb = scene.load_points()
        if xyz.shape[0] == 0:
            raise SceneDirError(f"{scene.path}: points.ply is empty")
        return render_bev(xyz, rgb, config)
    if not ids:
        raise SceneDirError(f"{scene.path}: no frames to render")
    it = scene.iter_frames()
    if progress:
        from tqdm import tqdm

        it = tqdm(it, total=len(ids), desc="back-projecting", unit="frame")
    parts = []
    for frame in it:
        if stride is None:
            stride = auto_stride(len(ids), frame.height, frame.width)
        parts.append(frame_points(frame, stride=stride))
    if not parts or sum(p[0].shape[0] for p in parts) == 0:
        raise SceneDirError(f"{scene.path}: no frame has valid depth ({len(parts)} loadable of {len(ids)}; skipped: {dict(scene.skipped)})")
    return render_bev(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), config)


def draw_boxes(
    image: NDArray[np.uint8],
    mapping: BevMapping,
    boxes: Sequence[Box3D],
    *,
    color: tuple[int, int, int] = PRED_COLOR,
    labels: Sequence[str] | None = None,
    thickness: int = 1,
    scale: int = 1,
) -> NDArray[np.uint8]:
    """Draw box footprints (yaw honoured) and optional labels on a copy of an RGB BEV image.

    ``scale`` > 1 first enlarges the image (nearest neighbour) so thin outlines and text stay
    legible on a 432-pixel render; the mapping is scaled accordingly.
    """
    import cv2

    img = np.ascontiguousarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"image: expected H×W×3 uint8, got {img.dtype} {img.shape}")
    if img.shape[:2] != (mapping.height * scale, mapping.width * scale):
        if img.shape[:2] != (mapping.height, mapping.width):
            raise ValueError(f"image is {img.shape[1]}x{img.shape[0]} but the mapping is {mapping.width}x{mapping.height}")
        if scale > 1:
            img = np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)
    out = img.copy()
    if labels is not None and len(labels) != len(boxes):
        raise ValueError(f"labels: {len(labels)} given for {len(boxes)} boxes")
    bgr = tuple(int(c) for c in color)  # drawing on an RGB array: pass RGB directly
    # Outlines are drawn without anti-aliasing so box pixels carry exactly ``color`` (and can be
    # found again in the picture); only the label text is smoothed.
    for i, box in enumerate(boxes):
        uv = (mapping.world_to_pixel(box.footprint()) + 0.5) * scale - 0.5
        poly = np.round(uv).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(out, [poly], isClosed=True, color=bgr, thickness=thickness, lineType=cv2.LINE_8)
        if labels is not None and labels[i]:
            x, y = int(uv[:, 0].min()), int(uv[:, 1].min()) - 3
            fs = 0.35 * max(1, scale) ** 0.5
            cv2.putText(out, str(labels[i]), (max(x, 0), max(y, 8)), cv2.FONT_HERSHEY_SIMPLEX, fs, (0, 0, 0), 2, cv2.LINE_AA)
            cv2.putText(out, str(labels[i]), (max(x, 0), max(y, 8)), cv2.FONT_HERSHEY_SIMPLEX, fs, bgr, 1, cv2.LINE_AA)
    return out
