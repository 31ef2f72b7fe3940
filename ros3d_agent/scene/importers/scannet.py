"""ScanNet scan → scene directory (``posed_images`` layout + ``objects.json`` + ``points.ply``).

What users hold after a ScanNet download is a scan folder::

    <scene>_vh_clean_2.ply                 mesh; vertices carry colour
    <scene>_vh_clean_2.0.010000.segs.json  {"segIndices": [one segment id per vertex]}
    <scene>.aggregation.json               {"segGroups": [{"id", "objectId", "segments", "label"}]}
    <scene>.txt                            meta, incl. "axisAlignment = 16 floats" (train/val scans)
    color/N.jpg depth/N.png pose/N.txt intrinsic/intrinsic_{color,depth}.txt   (SensReader export)
      — or posed_images/<scene>/NNNNN.{jpg,png,txt} + intrinsic.txt            (our layout already)
      — or <scene>.sens                                                        (the raw stream)

The benchmarks (ScanRefer, Multi3DRefer, ScanQA, Scan2Cap, and the Video-3D-LLM family) all work in
the *axis-aligned* frame: ``axisAlignment`` applied to the mesh, and to every camera pose. This module
produces exactly that, so boxes and poses agree with the benchmark annotations:

* frames: colour resized (default 640×480, intrinsics scaled), depth written untouched with its own
  ``depth_intrinsic.txt`` when it differs from colour, poses left-multiplied by the alignment;
  frames with NaN/inf poses (lost tracking: ScanNet writes ``-inf`` rows) are skipped and counted;
* ``objects.json``: one entry per aggregation ``objectId`` (the id ScanRefer / ScanQA / Multi3DRefer
  use), label raw or mapped through ``scannetv2-labels.combined.tsv``, box = AABB of the instance's
  aligned vertices; wall / floor / ceiling excluded by default;
* ``points.ply``: the aligned mesh vertices with colour;
* ``import_meta.json``: the transform applied and the raw mesh centre, which SQA3D situations need.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
from numpy.typing import NDArray

from ..errors import FrameLoadError, SceneDirError
from ..geometry import transform_points
from ..scene_dir import (
    DEPTH_INTRINSIC_FILE,
    INTRINSIC_FILE,
    OBJECTS_FILE,
    POINTS_FILE,
    SceneDir,
    _read_intrinsics,
    _read_ply_vertices,
    _scale_intrinsics,
    _write_matrix,
)
from ..types import Box3D, SceneObject

__all__ = [
    "IMPORT_META_FILE",
    "ScanNetFormatError",
    "ScanNetImportConfig",
    "ScanNetImportReport",
    "ScanNetScan",
    "SegGroup",
    "ObjectStats",
    "locate_scan",
    "read_scannet_meta",
    "axis_alignment_from_meta",
    "read_segments",
    "read_aggregation",
    "read_label_map",
    "build_objects",
    "import_scannet_scan",
]

log = logging.getLogger(__name__)

#: Written into every imported scene: the transform applied and where the raw mesh was centred.
IMPORT_META_FILE = "import_meta.json"
#: ScanNet's structural classes; not objects anyone asks about, and huge boxes that swamp proposals.
DEFAULT_EXCLUDED_LABELS = ("wall", "floor", "ceiling")
#: Boxes get at least this extent (metres) per axis: an instance of one vertex, or a perfectly planar
#: one, has zero extent, which no IoU can use.
MIN_BOX_EXTENT = 1e-3
_ROTATION_ATOL = 1e-3
_FRAME_FILE_RE = re.compile(r"^\d+\.(jpg|png|txt)$")


class ScanNetFormatError(SceneDirError):
    """A ScanNet scan folder is incomplete or holds a file that does not parse; the message names the file."""


# ---------------------------------------------------------------------------------------------------
# Configuration and report
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScanNetImportConfig:
    """How to turn one scan into a scene directory.

    Attributes:
        image_size: output colour size ``(height, width)``; ``None`` keeps the source size. 640×480 is
            what ``posed_images`` users (Video-3D-LLM, Ross3D, 3DRS) already feed their models.
        frame_skip: keep every ``frame_skip``-th available frame (in frame-number order).
        labels_tsv: ``scannetv2-labels.combined.tsv``; when given, raw labels map through ``label_column``.
        label_column: TSV column to map to (``nyu40class``, ``category``, ``eigen13class``, ``mpcat40``...).
        exclude_labels: objects whose raw or mapped label is one of these (case-insensitive) are dropped.
        axis_align: apply ``axisAlignment`` from ``<scene>.txt`` (the benchmarks' frame).
        jpeg_quality: quality of the re-encoded colour JPEGs.
        write_points: write ``points.ply`` (the aligned mesh vertices).
        overwrite: replace an existing scene of the same id in the output root (layout files only).
        progress: show a tqdm bar over frames.
    """

    image_size: tuple[int, int] | None = (480, 640)
    frame_skip: int = 1
    labels_tsv: Path | None = None
    label_column: str = "nyu40class"
    exclude_labels: tuple[str, ...] = DEFAULT_EXCLUDED_LABELS
    axis_align: bool = True
    jpeg_quality: int = 95
    write_points: bool = True
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.frame_skip < 1:
            raise ValueError(f"frame_skip must be >= 1, got {self.frame_skip}")
        if self.image_size is not None:
            h, w = self.image_size
            if int(h) <= 0 or int(w) <= 0:
                raise ValueError(f"image_size must be positive (height, width), got {self.image_size}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")


@dataclass
class ObjectStats:
    """What happened to the aggregation's instances."""

    written: int = 0
    excluded: Counter[str] = field(default_factory=Counter)  # label -> count
    empty_ids: list[int] = field(default_factory=list)  # objectIds whose segments hold no vertex
    unmapped_labels: Counter[str] = field(default_factory=Counter)  # raw labels absent from the TSV
    merged_duplicate_ids: list[int] = field(default_factory=list)  # objectIds listed in several segGroups


@dataclass
class ScanNetImportReport:
    """Counts of one import, for the CLI and for tests."""

    scene_id: str
    out_dir: Path
    image_source: str
    frames_considered: int = 0
    frames_written: int = 0
    frames_skipped: Counter[str] = field(default_factory=Counter)
    objects: ObjectStats = field(default_factory=ObjectStats)
    alignment_found: bool = False
    depth_intrinsic_written: bool = False

    def summary(self) -> str:
        skipped = ", ".join(f"{k} {v}" for k, v in sorted(self.frames_skipped.items())) or "none"
        o = self.objects
        excluded = ", ".join(f"{k} {v}" for k, v in sorted(o.excluded.items())) or "none"
        lines = [
            f"{self.scene_id} -> {self.out_dir}  (images from {self.image_source})",
            f"  frames: {self.frames_written} written of {self.frames_considered} considered; skipped: {skipped}",
            f"  objects: {o.written} written; excluded: {excluded}; empty: {len(o.empty_ids)}",
        ]
        if o.unmapped_labels:
            lines.append(f"  labels not in the TSV (kept raw): {', '.join(sorted(o.unmapped_labels))}")
        if o.merged_duplicate_ids:
            lines.append(f"  objectIds listed in several segGroups (segments merged): {o.merged_duplicate_ids}")
        if not self.alignment_found:
            lines.append("  note: no axisAlignment applied (absent from the meta file, or disabled); poses and boxes are in ScanNet's raw frame")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# Locating the files of a scan
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScanNetScan:
    """The resolved files of one scan; ``images`` is a folder (exported or posed layout) or a ``.sens`` file."""

    scene_id: str
    root: Path
    mesh: Path
    segs: Path
    aggregation: Path
    meta: Path | None
    images: Path | None


def _guess_scene_id(scan_dir: Path) -> str:
    if list(scan_dir.glob(f"{scan_dir.name}_vh_clean*.ply")) or (scan_dir / f"{scan_dir.name}.txt").is_file():
        return scan_dir.name
    meshes = sorted(scan_dir.glob("*_vh_clean_2.ply"))
    if len(meshes) == 1:
        return meshes[0].name[: -len("_vh_clean_2.ply")]
    raise ScanNetFormatError(
        f"{scan_dir}: cannot tell the scene id (expected <scene>_vh_clean_2.ply with the folder named after the scene); pass scene_id"
    )


def _segs_from_aggregation(agg_path: Path, scan_dir: Path) -> Path | None:
    """The segmentation file an aggregation names in ``segmentsFile`` (``"scannet."`` prefix dropped), if present."""
    try:
        name = json.loads(agg_path.read_text(encoding="utf-8")).get("segmentsFile")
    except (OSError, ValueError, AttributeError):
        return None  # read_aggregation reports the parse error with the file name
    if not isinstance(name, str) or not name:
        return None
    name = name.split("/")[-1]
    if name.startswith("scannet."):
        name = name[len("scannet."):]
    p = scan_dir / name
    return p if p.is_file() else None


def _mesh_for_segs(segs: Path) -> Path:
    """``X_vh_clean_2.0.010000.segs.json`` → ``X_vh_clean_2.ply``; ``X_vh_clean.segs.json`` → ``X_vh_clean.ply``."""
    stem = segs.name[: -len(".segs.json")]
    stem = re.sub(r"\.\d+\.\d+$", "", stem)
    return segs.with_name(stem + ".ply")


def _find_images(scan_dir: Path, scene_id: str) -> Path | None:
    if (scan_dir / "color").is_dir() and (scan_dir / "pose").is_dir():
        return scan_dir
    for cand in (scan_dir / "posed_images" / scene_id, scan_dir / "posed_images"):
        if (cand / INTRINSIC_FILE).is_file():
            return cand
    sens = scan_dir / f"{scene_id}.sens"
    return sens if sens.is_file() else None


def locate_scan(scan_dir: str | os.PathLike[str], *, scene_id: str | None = None, images: str | os.PathLike[str] | None = None) -> ScanNetScan:
    """Resolve the files of a scan folder, with an error naming the first missing file.

    The low-resolution trio (``_vh_clean_2.ply``, its ``.segs.json``, ``.aggregation.json``) is what
    every benchmark uses; ``<scene>_vh_clean.aggregation.json`` is accepted as a fallback, and then the
    segmentation file it names (and that file's mesh) are used.
    """
    root = Path(scan_dir)
    if not root.is_dir():
        raise ScanNetFormatError(f"{root}: scan directory does not exist")
    sid = scene_id or _guess_scene_id(root)
    agg = root / f"{sid}.aggregation.json"
    if not agg.is_file():
        alt = root / f"{sid}_vh_clean.aggregation.json"
        if not alt.is_file():
            raise ScanNetFormatError(f"{agg}: missing instance aggregation file (also looked for {alt.name})")
        agg = alt
    segs = _segs_from_aggregation(agg, root) or root / f"{sid}_vh_clean_2.0.010000.segs.json"
    if not segs.is_file():
        raise ScanNetFormatError(f"{segs}: missing over-segmentation file (the per-vertex segment ids the aggregation refers to)")
    mesh = _mesh_for_segs(segs)
    if not mesh.is_file():
        raise ScanNetFormatError(f"{mesh}: missing mesh (needed for object boxes and points.ply)")
    meta = root / f"{sid}.txt"
    img = Path(images) if images is not None else _find_images(root, sid)
    if img is not None and not img.exists():
        raise ScanNetFormatError(f"{img}: image source does not exist")
    return ScanNetScan(sid, root, mesh, segs, agg, meta if meta.is_file() else None, img)


# ---------------------------------------------------------------------------------------------------
# Reading the annotation files
# ---------------------------------------------------------------------------------------------------
def _load_json(path: Path, what: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ScanNetFormatError(f"{path}: missing {what}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ScanNetFormatError(f"{path}: cannot read {what} ({exc})") from exc
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ScanNetFormatError(f"{path}: corrupt JSON in {what} ({exc})") from exc


def read_scannet_meta(path: str | os.PathLike[str]) -> dict[str, str]:
    """``key = value`` lines of ``<scene>.txt`` (``axisAlignment``, ``colorWidth``, ``sceneType``, ...)."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise ScanNetFormatError(f"{p}: cannot read scan meta file ({exc})") from exc
    out = {}
    for line in lines:
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def axis_alignment_from_meta(meta: dict[str, str], path: str | os.PathLike[str] = "<meta>") -> NDArray[np.float64] | None:
    """The 4×4 ``axisAlignment`` (row-major), or ``None`` when absent (ScanNet's test scans have none)."""
    raw = meta.get("axisAlignment")
    if raw is None:
        return None
    try:
        vals = [float(v) for v in raw.split()]
    except ValueError as exc:
        raise ScanNetFormatError(f"{path}: axisAlignment is not 16 numbers ({exc})") from exc
    if len(vals) != 16:
        raise ScanNetFormatError(f"{path}: axisAlignment must have 16 numbers, got {len(vals)}")
    A = np.array(vals, dtype=np.float64).reshape(4, 4)
    R = A[:3, :3]
    if (not np.all(np.isfinite(A)) or not np.allclose(A[3], (0, 0, 0, 1))
            or np.abs(R @ R.T - np.eye(3)).max() > _ROTATION_ATOL or abs(np.linalg.det(R) - 1) > _ROTATION_ATOL):
        raise ScanNetFormatError(f"{path}: axisAlignment is not a rigid transform: {A.tolist()}")
    return A


def read_segments(path: str | os.PathLike[str]) -> NDArray[np.int64]:
    """Per-vertex segment ids from a ``*.segs.json``."""
    p = Path(path)
    data = _load_json(p, "over-segmentation file")
    seg = data.get("segIndices") if isinstance(data, dict) else None
    if not isinstance(seg, list):
        raise ScanNetFormatError(f"{p}: expected an object with a 'segIndices' list")
    try:
        return np.asarray(seg, dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise ScanNetFormatError(f"{p}: 'segIndices' must be integers ({exc})") from exc


@dataclass(frozen=True)
class SegGroup:
    """One annotated instance: ``object_id`` is the id the language benchmarks refer to."""

    object_id: int
    label: str
    segments: tuple[int, ...]


def read_aggregation(path: str | os.PathLike[str]) -> list[SegGroup]:
    """The ``segGroups`` of an aggregation file, validated."""
    p = Path(path)
    data = _load_json(p, "instance aggregation file")
    groups = data.get("segGroups") if isinstance(data, dict) else None
    if not isinstance(groups, list):
        raise ScanNetFormatError(f"{p}: expected an object with a 'segGroups' list")
    out = []
    for i, g in enumerate(groups):
        try:
            oid = g["objectId"] if "objectId" in g else g["id"]
            if isinstance(oid, bool) or int(oid) != oid or oid < 0:
                raise ValueError(f"objectId must be a non-negative integer, got {oid!r}")
            segs = tuple(int(s) for s in g["segments"])
            label = g.get("label", "")
            if not isinstance(label, str):
                raise ValueError(f"label must be a string, got {label!r}")
        except (KeyError, TypeError, ValueError) as exc:
            raise ScanNetFormatError(f"{p}: segGroups[{i}] is malformed ({exc!r})") from exc
        out.append(SegGroup(int(oid), label, segs))
    return out


def read_label_map(path: str | os.PathLike[str], column: str = "nyu40class") -> dict[str, str]:
    """``raw_category → column`` from ``scannetv2-labels.combined.tsv`` (columns looked up by header name)."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ScanNetFormatError(f"{p}: cannot read label map ({exc})") from exc
    if not lines:
        raise ScanNetFormatError(f"{p}: empty label map")
    header = lines[0].split("\t")
    if "raw_category" not in header or column not in header:
        raise ScanNetFormatError(f"{p}: label map needs columns 'raw_category' and {column!r}; has {header}")
    ki, vi = header.index("raw_category"), header.index(column)
    out = {}
    for line in lines[1:]:
        cells = line.split("\t")
        if len(cells) > max(ki, vi) and cells[ki]:
            out[cells[ki]] = cells[vi]
    return out


# ---------------------------------------------------------------------------------------------------
# Objects
# ---------------------------------------------------------------------------------------------------
def build_objects(
    vertices: NDArray[np.floating],
    seg_indices: NDArray[np.int64],
    groups: Iterable[SegGroup],
    *,
    label_map: dict[str, str] | None = None,
    exclude_labels: Sequence[str] = DEFAULT_EXCLUDED_LABELS,
) -> tuple[list[SceneObject], ObjectStats]:
    """One :class:`SceneObject` per ``objectId``: AABB of the vertices whose segment the instance owns.

    ``vertices`` must already be in the output frame (axis-aligned). Ids are kept as ScanNet's
    ``objectId`` so ScanRefer/ScanQA/Multi3DRefer ids index ``objects.json`` directly.
    """
    stats = ObjectStats()
    merged: dict[int, SegGroup] = {}
    for g in groups:
        if g.object_id in merged:
            prev = merged[g.object_id]
            merged[g.object_id] = SegGroup(g.object_id, prev.label, prev.segments + g.segments)
            stats.merged_duplicate_ids.append(g.object_id)
        else:
            merged[g.object_id] = g
    excluded = {s.lower() for s in exclude_labels}
    objects = []
    for oid in sorted(merged):
        g = merged[oid]
        label = g.label
        if label_map is not None:
            if label in label_map:
                label = label_map[label]
            else:
                stats.unmapped_labels[g.label] += 1
        if g.label.lower() in excluded or label.lower() in excluded:
            stats.excluded[label] += 1
            continue
        mask = np.isin(seg_indices, np.asarray(g.segments, dtype=np.int64))
        if not mask.any():
            stats.empty_ids.append(oid)
            continue
        pts = np.asarray(vertices[mask], dtype=np.float64)
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        box = Box3D((lo + hi) / 2, np.maximum(hi - lo, MIN_BOX_EXTENT))
        objects.append(SceneObject(id=oid, label=label, box=box))
    stats.written = len(objects)
    return objects, stats


# ---------------------------------------------------------------------------------------------------
# Frame sources: exported folders, posed_images, .sens
# ---------------------------------------------------------------------------------------------------
@dataclass
class _RawFrame:
    bgr: NDArray[np.uint8]
    depth: NDArray[np.uint16]
    pose: NDArray[np.float64]
    depth_file: Path | None  # the source PNG, copied byte for byte when set


class _FrameSource(Protocol):
    kind: str
    K_color: NDArray[np.float64]
    K_depth: NDArray[np.float64] | None

    def indices(self) -> list[int]: ...
    def load(self, index: int) -> _RawFrame: ...


def _read_pose(path: Path, fid: str) -> NDArray[np.float64]:
    """A 4×4 camera-to-world pose; raises :class:`FrameLoadError` with a countable ``reason``."""
    if not path.is_file():
        raise FrameLoadError(f"{path}: missing pose file", reason="missing_pose", frame_id=fid)
    try:
        T = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as exc:
        raise FrameLoadError(f"{path}: cannot parse pose ({exc})", reason="unreadable_pose", frame_id=fid) from exc
    if T.shape != (4, 4):
        raise FrameLoadError(f"{path}: expected a 4x4 pose, got shape {T.shape}", reason="unreadable_pose", frame_id=fid)
    return T


def _read_color(path: Path, fid: str) -> NDArray[np.uint8]:
    if not path.is_file():
        raise FrameLoadError(f"{path}: missing colour image", reason="missing_color", frame_id=fid)
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FrameLoadError(f"{path}: unreadable colour image", reason="unreadable_color", frame_id=fid)
    return bgr


def _read_depth(path: Path, fid: str) -> NDArray[np.uint16]:
    if not path.is_file():
        raise FrameLoadError(f"{path}: missing depth image", reason="missing_depth", frame_id=fid)
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise FrameLoadError(f"{path}: unreadable depth image", reason="unreadable_depth", frame_id=fid)
    if raw.dtype != np.uint16 or raw.ndim != 2:
        raise FrameLoadError(f"{path}: expected a single-channel uint16 depth PNG, got {raw.dtype} {raw.shape}",
                             reason="bad_depth_format", frame_id=fid)
    return raw


class _ExportedSource:
    """ScanNet SensReader export: ``color/N.jpg depth/N.png pose/N.txt intrinsic/intrinsic_*.txt``."""

    kind = "exported"

    def __init__(self, root: Path) -> None:
        self.root = root
        kc = root / "intrinsic" / "intrinsic_color.txt"
        if not kc.is_file():
            raise ScanNetFormatError(f"{kc}: missing colour intrinsics of the exported frames")
        self.K_color = _read_intrinsics(kc)
        kd = root / "intrinsic" / "intrinsic_depth.txt"
        self.K_depth = _read_intrinsics(kd) if kd.is_file() else None

    def indices(self) -> list[int]:
        """Frame numbers with a colour image or a pose, so a frame missing either is counted, not ignored."""
        found = {int(p.stem) for p in (self.root / "color").iterdir() if p.suffix.lower() == ".jpg" and p.stem.isdigit()}
        if (self.root / "pose").is_dir():
            found |= {int(p.stem) for p in (self.root / "pose").iterdir() if p.suffix == ".txt" and p.stem.isdigit()}
        return sorted(found)

    def load(self, index: int) -> _RawFrame:
        fid = f"{index:05d}"
        bgr = _read_color(self.root / "color" / f"{index}.jpg", fid)
        dpath = self.root / "depth" / f"{index}.png"
        depth = _read_depth(dpath, fid)
        pose = _read_pose(self.root / "pose" / f"{index}.txt", fid)
        return _RawFrame(bgr, depth, pose, dpath)


class _PosedImagesSource:
    """A folder already in our layout (``NNNNN.jpg/.png/.txt`` + ``intrinsic.txt``), poses in ScanNet's raw frame."""

    kind = "posed_images"

    def __init__(self, root: Path) -> None:
        sd = SceneDir(root)  # validates intrinsic.txt / depth_intrinsic.txt
        self.root = root
        self._names = {int(fid): fid for fid in sd.frame_ids()}
        self.K_color = sd.K_color
        self.K_depth = sd.K_depth

    def indices(self) -> list[int]:
        return sorted(self._names)

    def load(self, index: int) -> _RawFrame:
        name = self._names[index]
        fid = f"{index:05d}"
        bgr = _read_color(self.root / f"{name}.jpg", fid)
        dpath = self.root / f"{name}.png"
        depth = _read_depth(dpath, fid)
        pose = _read_pose(self.root / f"{name}.txt", fid)
        return _RawFrame(bgr, depth, pose, dpath)


class _SensSource:
    """Frames decoded straight from ``<scene>.sens``."""

    kind = "sens"

    def __init__(self, path: Path) -> None:
        from .scannet_sens import SensFile

        self.sens = SensFile(path)
        if abs(self.sens.depth_shift - 1000.0) > 1e-3:
            raise ScanNetFormatError(f"{path}: depth_shift is {self.sens.depth_shift}, but scene directories store millimetres (1000)")
        self.K_color = self.sens.K_color
        self.K_depth = self.sens.K_depth

    def indices(self) -> list[int]:
        return list(range(len(self.sens)))

    def load(self, index: int) -> _RawFrame:
        frame = self.sens.read_frame(index)
        return _RawFrame(self.sens.decode_color(frame), self.sens.decode_depth(frame), frame.camera_to_world, None)


def _open_source(images: Path) -> _FrameSource:
    if images.is_file() and images.suffix == ".sens":
        return _SensSource(images)
    if (images / "color").is_dir():
        return _ExportedSource(images)
    if (images / INTRINSIC_FILE).is_file():
        return _PosedImagesSource(images)
    raise ScanNetFormatError(
        f"{images}: not a recognised image source (expected color/ depth/ pose/ intrinsic/ from ScanNet's exporter, "
        f"a posed_images folder with {INTRINSIC_FILE}, or a .sens file)"
    )


# ---------------------------------------------------------------------------------------------------
# The import
# ---------------------------------------------------------------------------------------------------
def _check_rigid(T: NDArray[np.float64], fid: str) -> None:
    if not np.all(np.isfinite(T)):
        raise FrameLoadError(f"frame {fid}: pose contains NaN/inf (tracking lost)", reason="nonfinite_pose", frame_id=fid)
    R = T[:3, :3]
    if (not np.allclose(T[3], (0, 0, 0, 1)) or np.abs(R @ R.T - np.eye(3)).max() > _ROTATION_ATOL
            or abs(np.linalg.det(R) - 1) > _ROTATION_ATOL):
        raise FrameLoadError(f"frame {fid}: pose is not a rigid transform", reason="invalid_pose", frame_id=fid)


def _prepare_out_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise SceneDirError(f"{out}: exists and is not a directory")
    if not out.is_dir():
        return
    ours = [p for p in out.iterdir() if _FRAME_FILE_RE.match(p.name)
            or p.name in (INTRINSIC_FILE, DEPTH_INTRINSIC_FILE, OBJECTS_FILE, POINTS_FILE, IMPORT_META_FILE)]
    if not ours:
        return
    if not overwrite:
        raise SceneDirError(f"{out}: already holds a scene ({len(ours)} layout files); pass overwrite=True (--overwrite) to replace it")
    for p in ours:  # only our layout's files: never a blanket rmtree of a user-given path
        p.unlink()


def _probe_sizes(source: _FrameSource, indices: Sequence[int], where: Path) -> tuple[tuple[int, int], tuple[int, int]]:
    """Colour and depth resolution of the first frame that loads (ScanNet: 1296×968 and 640×480)."""
    for idx in indices:
        try:
            raw = source.load(idx)
        except FrameLoadError:
            continue
        return (raw.bgr.shape[0], raw.bgr.shape[1]), (raw.depth.shape[0], raw.depth.shape[1])
    raise ScanNetFormatError(f"{where}: no frame of the image source loads (tried {len(indices)}); nothing to import")


def _resize(bgr: NDArray[np.uint8], hw: tuple[int, int]) -> NDArray[np.uint8]:
    if bgr.shape[:2] == tuple(hw):
        return bgr
    shrink = hw[0] * hw[1] < bgr.shape[0] * bgr.shape[1]
    return cv2.resize(bgr, (hw[1], hw[0]), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


@dataclass
class _Geometry:
    """The scan's mesh in the output frame, its objects, and where the raw mesh was centred."""

    points: NDArray[np.float64]
    colors: NDArray[np.uint8] | None
    objects: list[SceneObject]
    stats: ObjectStats
    raw_center: NDArray[np.float64]


def _alignment(scan: ScanNetScan, cfg: ScanNetImportConfig) -> tuple[NDArray[np.float64], bool]:
    """``(world_from_scannet, found)``: ``axisAlignment`` when enabled and present, else identity."""
    if not cfg.axis_align:
        return np.eye(4), False
    if scan.meta is None:
        raise ScanNetFormatError(f"{scan.root / (scan.scene_id + '.txt')}: missing scan meta file with axisAlignment "
                                 "(disable axis alignment to import in ScanNet's raw frame)")
    found = axis_alignment_from_meta(read_scannet_meta(scan.meta), scan.meta)
    if found is None:
        log.warning("%s: no axisAlignment in %s (a test scan?); importing in the raw frame", scan.scene_id, scan.meta)
        return np.eye(4), False
    return found, True


def _geometry(scan: ScanNetScan, cfg: ScanNetImportConfig, A: NDArray[np.float64]) -> _Geometry:
    xyz, rgb = _read_ply_vertices(scan.mesh)
    seg = read_segments(scan.segs)
    if seg.shape[0] != xyz.shape[0]:
        raise ScanNetFormatError(f"{scan.segs}: has {seg.shape[0]} segment ids but {scan.mesh.name} has {xyz.shape[0]} vertices "
                                 "(files of different meshes?)")
    groups = read_aggregation(scan.aggregation)
    label_map = read_label_map(cfg.labels_tsv, cfg.label_column) if cfg.labels_tsv is not None else None
    raw = xyz.astype(np.float64)
    raw_center = (raw.min(axis=0) + raw.max(axis=0)) / 2 if len(raw) else np.zeros(3)
    aligned = transform_points(A, raw)
    objects, stats = build_objects(aligned, seg, groups, label_map=label_map, exclude_labels=cfg.exclude_labels)
    return _Geometry(aligned, rgb, objects, stats, raw_center)


@dataclass(frozen=True)
class _FramePlan:
    """Which frames to read and how to write them."""

    indices: list[int]
    color_hw: tuple[int, int]
    depth_hw: tuple[int, int]
    out_hw: tuple[int, int]
    K_out: NDArray[np.float64]
    K_depth: NDArray[np.float64] | None  # written as depth_intrinsic.txt; None when depth matches colour


def _plan_frames(source: _FrameSource, cfg: ScanNetImportConfig, where: Path) -> _FramePlan:
    selected = source.indices()[:: cfg.frame_skip]
    color_hw, depth_hw = _probe_sizes(source, selected, where)
    out_hw = (int(cfg.image_size[0]), int(cfg.image_size[1])) if cfg.image_size is not None else color_hw
    K_out = _scale_intrinsics(source.K_color, color_hw, out_hw)
    if source.K_depth is not None:
        K_depth = source.K_depth
    else:  # SceneDir's rule: colour intrinsics, rescaled to the depth resolution
        K_depth = source.K_color if depth_hw == color_hw else _scale_intrinsics(source.K_color, color_hw, depth_hw)
    differs = depth_hw != out_hw or not np.allclose(K_depth, K_out, rtol=0, atol=1e-9)
    return _FramePlan(selected, color_hw, depth_hw, out_hw, K_out, K_depth if differs else None)


def _write_frames(source: _FrameSource, plan: _FramePlan, out: Path, A: NDArray[np.float64],
                  cfg: ScanNetImportConfig, report: ScanNetImportReport) -> None:
    from tqdm import tqdm

    for idx in tqdm(plan.indices, desc=f"import {report.scene_id}", unit="frame", disable=not cfg.progress, leave=False):
        fid = f"{idx:05d}"
        try:
            raw = source.load(idx)
            if raw.bgr.shape[:2] != plan.color_hw:
                raise FrameLoadError(f"frame {fid}: colour is {raw.bgr.shape[:2]}, expected {plan.color_hw}", reason="color_size_mismatch")
            if raw.depth.shape != plan.depth_hw:
                raise FrameLoadError(f"frame {fid}: depth is {raw.depth.shape}, expected {plan.depth_hw}", reason="depth_size_mismatch")
            _check_rigid(raw.pose, fid)
        except FrameLoadError as exc:
            report.frames_skipped[exc.reason] += 1
            log.debug("%s: skipping frame %s (%s)", report.scene_id, fid, exc)
            continue
        cpath = out / f"{fid}.jpg"
        if not cv2.imwrite(str(cpath), _resize(raw.bgr, plan.out_hw), [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality]):
            raise SceneDirError(f"{cpath}: failed to write colour image")
        dpath = out / f"{fid}.png"
        if raw.depth_file is not None:
            shutil.copyfile(raw.depth_file, dpath)  # already a valid uint16 PNG: no re-encode
        elif not cv2.imwrite(str(dpath), raw.depth):
            raise SceneDirError(f"{dpath}: failed to write depth image")
        _write_matrix(out / f"{fid}.txt", A @ raw.pose)
        report.frames_written += 1


def import_scannet_scan(
    scan_dir: str | os.PathLike[str],
    out_root: str | os.PathLike[str],
    config: ScanNetImportConfig | None = None,
    *,
    scene_id: str | None = None,
    images: str | os.PathLike[str] | None = None,
) -> ScanNetImportReport:
    """Import one ScanNet scan into ``out_root/<scene_id>/``.

    Everything is parsed and checked before the first file is written, so a bad input leaves no
    half-written scene behind.

    Args:
        scan_dir: the scan folder (mesh, segs, aggregation, meta, and the frames in one of the
            supported forms, unless ``images`` points elsewhere).
        out_root: the folder that holds scene directories; the scene goes to ``out_root/<scene_id>``.
        config: see :class:`ScanNetImportConfig`.
        scene_id: override the id guessed from the folder / mesh name.
        images: explicit frame source: an exported folder, a posed_images folder or a ``.sens`` file.

    Raises:
        ScanNetFormatError: a required file is missing or malformed (the message names it).
        SceneDirError: the output already holds a scene and ``overwrite`` is off, or is the image source.
    """
    cfg = config or ScanNetImportConfig()
    scan = locate_scan(scan_dir, scene_id=scene_id, images=images)
    if scan.images is None:
        raise ScanNetFormatError(
            f"{scan.root}: no frames found (looked for color/ + pose/, posed_images/{scan.scene_id}/, {scan.scene_id}.sens); "
            "pass images=... (--images)"
        )
    A, alignment_found = _alignment(scan, cfg)
    geo = _geometry(scan, cfg, A)
    source = _open_source(scan.images)
    plan = _plan_frames(source, cfg, scan.images)

    out = Path(out_root) / scan.scene_id
    src = scan.images.resolve()
    if out.resolve() == src or out.resolve() in src.parents:
        raise SceneDirError(f"{out}: the output scene directory is the image source {scan.images}; choose another --out")
    _prepare_out_dir(out, cfg.overwrite)
    scene = SceneDir.create(out, plan.K_out, plan.K_depth)
    report = ScanNetImportReport(scan.scene_id, out, source.kind, frames_considered=len(plan.indices), objects=geo.stats,
                                 alignment_found=alignment_found, depth_intrinsic_written=plan.K_depth is not None)
    _write_frames(source, plan, out, A, cfg, report)
    scene.write_objects(geo.objects)
    if cfg.write_points:
        scene.write_points(geo.points.astype(np.float32), geo.colors)
    meta = {
        "source": "scannet",
        "scene_id": scan.scene_id,
        "image_source": source.kind,
        "axis_aligned": alignment_found,
        # x_scene = world_from_scannet @ x_raw for every pose, vertex and box of this scene.
        "world_from_scannet": A.reshape(-1).tolist(),
        # Centre of the raw mesh's bounding box (float32 vertices, as upstream tools load them):
        # SQA3D positions are relative to it.
        "raw_bbox_center": [float(v) for v in geo.raw_center],
        "labels": f"{cfg.labels_tsv.name}:{cfg.label_column}" if cfg.labels_tsv is not None else "raw",
        "excluded_labels": list(cfg.exclude_labels),
        "frames_written": report.frames_written,
        "frames_skipped": dict(report.frames_skipped),
    }
    (out / IMPORT_META_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    if report.frames_written == 0:
        log.warning("%s: no frame written (%s)", scan.scene_id, dict(report.frames_skipped))
    return report
