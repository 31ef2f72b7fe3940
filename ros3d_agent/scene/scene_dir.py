"""Reading and writing scene directories in the ScanNet ``posed_images`` layout.

Layout (DESIGN.md, "Scene directory")::

    <scene_id>/
        intrinsic.txt          colour intrinsics, 4×4 or 3×3 text matrix (required)
        depth_intrinsic.txt    depth intrinsics, only when they differ from colour (optional)
        NNNNN.jpg              colour image
        NNNNN.png              depth, uint16, millimetres (``depth_scale`` units per metre)
        NNNNN.txt              4×4 camera-to-world pose
        objects.json           [{"id": int, "label": str, "box": [cx,cy,cz,sx,sy,sz]}] (optional)
        points.ply             point cloud of the scene (optional)

This is the format users of 3D-LLMs already hold, and our synthetic scenes and bag exports write the
same thing, so one reader serves training, evaluation and replay. Depth is aligned to the colour
camera here, once, so every :class:`Frame` downstream has a single ``K``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import ArrayLike, NDArray

from .errors import FrameLoadError, InvalidFrameError, SceneDirError
from .geometry import align_depth_to_color
from .types import Box3D, Frame, SceneObject

__all__ = ["SceneDir", "INTRINSIC_FILE", "DEPTH_INTRINSIC_FILE", "OBJECTS_FILE", "POINTS_FILE"]

log = logging.getLogger(__name__)

INTRINSIC_FILE = "intrinsic.txt"
DEPTH_INTRINSIC_FILE = "depth_intrinsic.txt"
OBJECTS_FILE = "objects.json"
POINTS_FILE = "points.ply"

_FRAME_RE = re.compile(r"^(\d+)\.jpg$")
# ScanNet records at 30 Hz and names posed images by the sensor frame number, so number × period
# recovers an approximate acquisition time; the directory stores no real timestamps.
SCANNET_FRAME_PERIOD_NS = 33_333_333


def _read_intrinsics(path: Path) -> NDArray[np.float64]:
    try:
        M = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as exc:
        raise SceneDirError(f"{path}: cannot parse intrinsics matrix ({exc})") from exc
    if M.shape not in ((3, 3), (4, 4)):
        raise SceneDirError(f"{path}: expected a 3x3 or 4x4 matrix, got shape {M.shape}")
    K = M[:3, :3].copy()
    if not np.all(np.isfinite(K)) or not (K[0, 0] > 0 and K[1, 1] > 0):
        raise SceneDirError(f"{path}: focal lengths must be finite and positive, got fx={K[0, 0]}, fy={K[1, 1]}")
    return K


def _write_matrix(path: Path, M: NDArray[np.float64]) -> None:
    # %.17g round-trips float64 exactly, so write→read gives back the same pose/intrinsics bit for bit.
    np.savetxt(path, M, fmt="%.17g")


def _intrinsics_4x4(K: ArrayLike) -> NDArray[np.float64]:
    K = np.asarray(K, dtype=np.float64)
    if K.shape == (4, 4):
        K = K[:3, :3]
    if K.shape != (3, 3):
        raise SceneDirError(f"intrinsics: expected a 3x3 matrix, got shape {K.shape}")
    if not np.all(np.isfinite(K)) or not (K[0, 0] > 0 and K[1, 1] > 0):
        raise SceneDirError(f"intrinsics: focal lengths must be finite and positive, got fx={K[0, 0]}, fy={K[1, 1]}")
    M = np.eye(4)
    M[:3, :3] = K
    return M


def _scale_intrinsics(K: NDArray[np.float64], src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> NDArray[np.float64]:
    """Intrinsics of the same camera imaged at another resolution (same field of view).

    With pixel centres at integers, a pixel edge sits at -0.5, hence ``c' = s (c + 0.5) - 0.5``.
    """
    sy, sx = dst_hw[0] / src_hw[0], dst_hw[1] / src_hw[1]
    out = K.copy()
    out[0, 0] *= sx
    out[0, 1] *= sx
    out[0, 2] = sx * (K[0, 2] + 0.5) - 0.5
    out[1, 1] *= sy
    out[1, 2] = sy * (K[1, 2] + 0.5) - 0.5
    return out


class SceneDir:
    """One scene directory: frames, intrinsics, objects and point cloud.

    Args:
        path: the scene directory; its name is the ``scene_id``.
        depth_scale: depth PNG units per metre (1000: ScanNet millimetres).
        frame_period_ns: used to derive ``Frame.stamp`` from the frame number (see
            ``SCANNET_FRAME_PERIOD_NS``); pass 0 to get stamp 0 everywhere.

    Raises:
        SceneDirError: the directory does not exist, or ``intrinsic.txt`` is missing or malformed.
    """

    def __init__(self, path: str | os.PathLike[str], *, depth_scale: float = 1000.0, frame_period_ns: int = SCANNET_FRAME_PERIOD_NS) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise SceneDirError(f"scene directory {self.path} does not exist or is not a directory")
        if not depth_scale > 0:
            raise SceneDirError(f"depth_scale must be > 0, got {depth_scale}")
        self.depth_scale = float(depth_scale)
        self.frame_period_ns = int(frame_period_ns)
        intr = self.path / INTRINSIC_FILE
        if not intr.is_file():
            raise SceneDirError(f"{intr}: missing {INTRINSIC_FILE} (colour intrinsics are required to use a scene directory)")
        self.K_color = _read_intrinsics(intr)
        dintr = self.path / DEPTH_INTRINSIC_FILE
        self.K_depth: NDArray[np.float64] | None = _read_intrinsics(dintr) if dintr.is_file() else None
        #: Skip counts by reason from the last :meth:`iter_frames` pass.
        self.skipped: Counter[str] = Counter()
        #: frame_id → reason for each frame skipped in the last :meth:`iter_frames` pass.
        self.skipped_frames: dict[str, str] = {}

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        K_color: ArrayLike,
        K_depth: ArrayLike | None = None,
        **kwargs: float | int,
    ) -> SceneDir:
        """Make (or reuse) a directory, write its intrinsics and open it; the start of every writer."""
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        _write_matrix(p / INTRINSIC_FILE, _intrinsics_4x4(K_color))
        if K_depth is not None:
            _write_matrix(p / DEPTH_INTRINSIC_FILE, _intrinsics_4x4(K_depth))
        elif (p / DEPTH_INTRINSIC_FILE).exists():
            (p / DEPTH_INTRINSIC_FILE).unlink()
        return cls(p, **kwargs)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"SceneDir({str(self.path)!r})"

    @property
    def scene_id(self) -> str:
        return Path(os.path.abspath(self.path)).name

    # -- frames ----------------------------------------------------------------------------------
    def frame_ids(self) -> list[str]:
        """Stems of the ``NNNNN.jpg`` files, in numeric order."""
        ids = [m.group(1) for name in os.listdir(self.path) if (m := _FRAME_RE.match(name))]
        return sorted(ids, key=lambda s: (int(s), s))

    def __len__(self) -> int:
        return len(self.frame_ids())

    def _frame_path(self, frame_id: str | int, ext: str) -> Path:
        return self.path / f"{_normalise_frame_id(frame_id)}.{ext}"

    def load_pose(self, frame_id: str | int) -> NDArray[np.float64]:
        """The 4×4 camera-to-world pose; ScanNet marks failed tracking with ``-inf`` rows, which raise."""
        fid = _normalise_frame_id(frame_id)
        p = self._frame_path(fid, "txt")
        if not p.is_file():
            raise FrameLoadError(f"{p}: missing pose file", reason="missing_pose", frame_id=fid)
        try:
            T = np.loadtxt(p, dtype=np.float64, ndmin=2)
        except (OSError, ValueError) as exc:
            raise FrameLoadError(f"{p}: cannot parse pose ({exc})", reason="unreadable_pose", frame_id=fid) from exc
        if T.shape != (4, 4):
            raise FrameLoadError(f"{p}: expected a 4x4 pose, got shape {T.shape}", reason="unreadable_pose", frame_id=fid)
        if not np.all(np.isfinite(T)):
            raise FrameLoadError(f"{p}: pose contains NaN/inf (tracking lost)", reason="nonfinite_pose", frame_id=fid)
        return T

    def depth_intrinsics_for(self, depth_hw: tuple[int, int], color_hw: tuple[int, int]) -> NDArray[np.float64]:
        """Depth intrinsics: ``depth_intrinsic.txt`` if present, else colour intrinsics rescaled to the depth resolution."""
        if self.K_depth is not None:
            return self.K_depth
        if tuple(depth_hw) == tuple(color_hw):
            return self.K_color
        return _scale_intrinsics(self.K_color, color_hw, depth_hw)

    def load_frame(self, frame_id: str | int) -> Frame:
        """Load one frame as a :class:`Frame` with depth in metres on the colour grid.

        Raises:
            FrameLoadError: a file is missing or unreadable, or the pose is not finite (``reason`` says which).
            InvalidFrameError: the files load but do not form a valid frame (e.g. a non-rigid pose).
        """
        fid = _normalise_frame_id(frame_id)
        cpath, dpath = self._frame_path(fid, "jpg"), self._frame_path(fid, "png")
        if not cpath.is_file():
            raise FrameLoadError(f"{cpath}: missing colour image", reason="missing_color", frame_id=fid)
        bgr = cv2.imread(str(cpath), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FrameLoadError(f"{cpath}: unreadable colour image (corrupt or not an image)", reason="unreadable_color", frame_id=fid)
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        if not dpath.is_file():
            raise FrameLoadError(f"{dpath}: missing depth image", reason="missing_depth", frame_id=fid)
        raw = cv2.imread(str(dpath), cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise FrameLoadError(f"{dpath}: unreadable depth image (corrupt or not an image)", reason="unreadable_depth", frame_id=fid)
        if raw.dtype != np.uint16 or raw.ndim != 2:
            raise FrameLoadError(
                f"{dpath}: expected a single-channel uint16 depth PNG, got dtype {raw.dtype} shape {raw.shape}",
                reason="bad_depth_format",
                frame_id=fid,
            )
        T = self.load_pose(fid)
        depth = raw.astype(np.float32) / np.float32(self.depth_scale)
        color_hw = (rgb.shape[0], rgb.shape[1])
        K_d = self.depth_intrinsics_for(raw.shape, color_hw)
        if raw.shape != color_hw or not np.array_equal(K_d, self.K_color):
            depth = align_depth_to_color(depth, K_d, self.K_color, color_hw)
        stamp = int(fid) * self.frame_period_ns
        try:
            return Frame(rgb=rgb, depth=depth, K=self.K_color, T_world_cam=T, stamp=stamp, frame_id=fid)
        except InvalidFrameError as exc:
            raise InvalidFrameError(f"{self.path / fid}: {exc}") from exc

    def iter_frames(self) -> Iterator[Frame]:
        """Yield every loadable frame in order, skipping (and counting in ``skipped``) the broken ones.

        Real scans contain frames with lost tracking (NaN/inf poses) and the odd truncated image;
        dropping them is the right behaviour for training and evaluation, but silently dropping hides
        data problems, so each skip is counted by reason and logged at debug level.
        """
        self.skipped = Counter()
        self.skipped_frames = {}
        for fid in self.frame_ids():
            try:
                frame = self.load_frame(fid)
            except FrameLoadError as exc:
                reason = exc.reason
            except InvalidFrameError:
                reason = "invalid_frame"
            else:
                yield frame
                continue
            self.skipped[reason] += 1
            self.skipped_frames[fid] = reason
            log.debug("scene %s: skipping frame %s (%s)", self.scene_id, fid, reason)

    # -- writing ---------------------------------------------------------------------------------
    def write_intrinsics(self, K_color: ArrayLike, K_depth: ArrayLike | None = None) -> None:
        """Write ``intrinsic.txt`` (4×4, ScanNet style) and ``depth_intrinsic.txt`` when ``K_depth`` is given.

        Without ``K_depth`` a stale ``depth_intrinsic.txt`` is removed, since readers would otherwise
        align depth with intrinsics that no longer describe it.
        """
        Kc = _intrinsics_4x4(K_color)
        _write_matrix(self.path / INTRINSIC_FILE, Kc)
        self.K_color = Kc[:3, :3].copy()
        dpath = self.path / DEPTH_INTRINSIC_FILE
        if K_depth is not None:
            Kd = _intrinsics_4x4(K_depth)
            _write_matrix(dpath, Kd)
            self.K_depth = Kd[:3, :3].copy()
        else:
            if dpath.exists():
                dpath.unlink()
            self.K_depth = None

    def write_frame(self, frame_id: str | int, frame: Frame, *, jpeg_quality: int = 95) -> None:
        """Write ``frame`` as ``NNNNN.jpg/.png/.txt``.

        The frame's depth is registered to its colour image, so the scene must describe depth with
        the colour intrinsics (no differing ``depth_intrinsic.txt``) and ``frame.K`` must match
        ``intrinsic.txt``; otherwise reading back would misplace every point, so this raises instead.
        Depth beyond the uint16 range (65.535 m at scale 1000) is written as 0 (invalid) rather than
        saturated, which would invent a wall at the range limit. ``frame.stamp`` is not stored (the
        layout has no place for it); reading derives it from the frame number.
        """
        fid = _normalise_frame_id(frame_id)
        if not np.allclose(frame.K, self.K_color, rtol=1e-9, atol=1e-9):
            raise SceneDirError(f"{self.path}: frame {fid} has K {frame.K.tolist()} but the scene's {INTRINSIC_FILE} is {self.K_color.tolist()}")
        if self.K_depth is not None and not np.allclose(self.K_depth, self.K_color, rtol=1e-9, atol=1e-9):
            raise SceneDirError(f"{self.path}: has a {DEPTH_INTRINSIC_FILE} that differs from colour; cannot store colour-aligned depth in it")
        bgr = cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR)
        cpath = self._frame_path(fid, "jpg")
        if not cv2.imwrite(str(cpath), bgr, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]):
            raise SceneDirError(f"{cpath}: failed to write colour image")
        units = np.rint(frame.depth.astype(np.float64) * self.depth_scale)
        units[(units > np.iinfo(np.uint16).max) | ~np.isfinite(units)] = 0
        dpath = self._frame_path(fid, "png")
        if not cv2.imwrite(str(dpath), units.astype(np.uint16)):
            raise SceneDirError(f"{dpath}: failed to write depth image")
        _write_matrix(self._frame_path(fid, "txt"), frame.T_world_cam)

    # -- objects ---------------------------------------------------------------------------------
    @property
    def has_objects(self) -> bool:
        return (self.path / OBJECTS_FILE).is_file()

    def load_objects(self) -> list[SceneObject]:
        """Objects of ``objects.json``; an empty list when the scene has no annotation file."""
        p = self.path / OBJECTS_FILE
        if not p.is_file():
            return []
        try:
            records = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SceneDirError(f"{p}: cannot parse JSON ({exc})") from exc
        if not isinstance(records, list):
            raise SceneDirError(f"{p}: expected a JSON list of objects, got {type(records).__name__}")
        out = []
        for i, rec in enumerate(records):
            try:
                out.append(SceneObject.from_dict(rec))
            except (KeyError, TypeError, ValueError) as exc:
                raise SceneDirError(f"{p}: entry {i} is not a valid object record ({exc!r})") from exc
        return out

    def write_objects(self, objects: Iterable[SceneObject]) -> None:
        records = [o.to_dict() for o in objects]
        (self.path / OBJECTS_FILE).write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")

    # -- point cloud -----------------------------------------------------------------------------
    @property
    def points_path(self) -> Path | None:
        p = self.path / POINTS_FILE
        return p if p.is_file() else None

    def load_points(self) -> tuple[NDArray[np.float32], NDArray[np.uint8] | None]:
        """``(xyz (N, 3) float32, rgb (N, 3) uint8 or None)`` from ``points.ply``.

        A small numpy reader for the vertex element (ascii and binary PLY, ScanNet's
        ``*_vh_clean_2.ply`` included) avoids importing open3d, which is heavy and not everywhere.
        """
        p = self.points_path
        if p is None:
            raise SceneDirError(f"{self.path / POINTS_FILE}: scene has no point cloud")
        return _read_ply_vertices(p)

    def write_points(self, xyz: ArrayLike, rgb: ArrayLike | None = None) -> None:
        _write_ply_vertices(self.path / POINTS_FILE, xyz, rgb)


def _normalise_frame_id(frame_id: str | int) -> str:
    """Frame ids are digit strings (file stems); ints are zero-padded to ScanNet's five digits."""
    if isinstance(frame_id, (int, np.integer)) and not isinstance(frame_id, bool):
        if frame_id < 0:
            raise SceneDirError(f"frame id must be >= 0, got {frame_id}")
        return f"{int(frame_id):05d}"
    if isinstance(frame_id, str) and frame_id.isdigit() and frame_id.isascii():
        return frame_id
    raise SceneDirError(f"frame id must be a digit string like '00042' or a non-negative int, got {frame_id!r}")


# ---------------------------------------------------------------------------------------------------
# Minimal PLY (vertex element only)
# ---------------------------------------------------------------------------------------------------
_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip


def _read_ply_vertices(path: Path) -> tuple[NDArray[np.float32], NDArray[np.uint8] | None]:
    with open(path, "rb") as f:
        if f.readline().strip() != b"ply":
            raise SceneDirError(f"{path}: not a PLY file")
        fmt = None
        elements: list[tuple[str, int, list[tuple[str, str | None]]]] = []
        while True:
            line = f.readline()
            if not line:
                raise SceneDirError(f"{path}: truncated PLY header")
            tok = line.decode("ascii", "replace").split()
            if not tok or tok[0] in ("comment", "obj_info"):
                continue
            if tok[0] == "end_header":
                break
            if tok[0] == "format":
                fmt = tok[1]
            elif tok[0] == "element":
                elements.append((tok[1], int(tok[2]), []))
            elif tok[0] == "property" and elements:
                if tok[1] == "list":
                    elements[-1][2].append((tok[-1], None))
                else:
                    if tok[1] not in _PLY_TYPES:
                        raise SceneDirError(f"{path}: unsupported PLY property type {tok[1]!r}")
                    elements[-1][2].append((tok[2], _PLY_TYPES[tok[1]]))
        if not elements or elements[0][0] != "vertex":
            raise SceneDirError(f"{path}: expected 'vertex' to be the first PLY element")
        _, n, props = elements[0]
        if any(t is None for _, t in props):
            raise SceneDirError(f"{path}: list properties on vertices are not supported")
        names = [name for name, _ in props]
        if not {"x", "y", "z"} <= set(names):
            raise SceneDirError(f"{path}: vertex element lacks x/y/z")
        if fmt == "ascii":
            data = np.loadtxt(f, dtype=np.float64, max_rows=n, ndmin=2) if n else np.empty((0, len(names)))
            cols = {name: data[:, i] for i, name in enumerate(names)}
        elif fmt in ("binary_little_endian", "binary_big_endian"):
            endian = "<" if fmt == "binary_little_endian" else ">"
            dt = np.dtype([(name, endian + t) for name, t in props])  # type: ignore[operator]
            buf = f.read(dt.itemsize * n)
            if len(buf) < dt.itemsize * n:
                raise SceneDirError(f"{path}: truncated PLY vertex data")
            data = np.frombuffer(buf, dtype=dt, count=n)
            cols = {name: data[name] for name in names}
        else:
            raise SceneDirError(f"{path}: unsupported PLY format {fmt!r}")
    xyz = np.column_stack([cols["x"], cols["y"], cols["z"]]).astype(np.float32)
    rgb = None
    if {"red", "green", "blue"} <= set(names):
        rgb = np.column_stack([cols["red"], cols["green"], cols["blue"]]).astype(np.uint8)
    return xyz, rgb


def _write_ply_vertices(path: Path, xyz: ArrayLike, rgb: ArrayLike | None) -> None:
    pts = np.asarray(xyz, dtype=np.float32)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"xyz: expected shape (N, 3), got {pts.shape}")
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if rgb is not None:
        col = np.asarray(rgb)
        if col.shape != pts.shape or col.dtype != np.uint8:
            raise ValueError(f"rgb: expected uint8 shape {pts.shape}, got {col.dtype} {col.shape}")
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    data = np.empty(pts.shape[0], dtype=fields)
    data["x"], data["y"], data["z"] = pts[:, 0], pts[:, 1], pts[:, 2]
    if rgb is not None:
        data["red"], data["green"], data["blue"] = col[:, 0], col[:, 1], col[:, 2]
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {pts.shape[0]}"]
    header += ["property float x", "property float y", "property float z"]
    if rgb is not None:
        header += ["property uchar red", "property uchar green", "property uchar blue"]
    header.append("end_header")
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        f.write(data.tobytes())
