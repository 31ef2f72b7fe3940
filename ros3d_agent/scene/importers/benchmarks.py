"""Benchmark annotation files → our annotation JSONL: the shared part.

Each benchmark has its own small module (``scanqa``, ``sqa3d``, ``scanrefer``, ``multi3drefer``,
``scan2cap``) with ``convert(inputs, ctx) -> Iterator[dict]``; this module holds what they share:
reading the upstream JSON with errors that name the file, the per-scene ``objects.json`` lookup that
fills ``boxes``, the validation of every record through
:class:`~ros3d_agent.scene.annotations.records.AnnotationRecord` (the one definition of the format),
the warning summary and the JSONL writer.

Missing data never crashes an import. A record whose scene or object is not found under ``--scenes``
is kept with empty ``boxes`` (and ``meta.boxes_missing``) when the format can represent it (``qa``,
``multi_ground``), and counted; the format requires the target box of ``ground`` and ``caption``
records and an answer for every text task, so items that cannot satisfy that (a wall excluded at
import, a test split without answers) are skipped and counted by reason instead.
"""

from __future__ import annotations

import importlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ..annotations.records import TEXT_TASKS, AnnotationError, AnnotationRecord, write_annotations
from ..errors import SceneDirError, SceneError
from ..scene_dir import OBJECTS_FILE
from ..types import SceneObject
from .scannet import IMPORT_META_FILE

__all__ = [
    "BENCHMARKS",
    "AnnotationFormatError",
    "ImportSummary",
    "SceneIndex",
    "ConvertContext",
    "make_record",
    "finalize_record",
    "load_json_file",
    "load_json_list",
    "require_keys",
    "as_object_id",
    "convert_annotations",
    "write_jsonl",
    "import_annotations",
    "SCENES_REQUIRED",
]

#: benchmark name → module implementing ``convert(inputs, ctx)``.
BENCHMARKS: dict[str, str] = {
    "scanqa": "ros3d_agent.scene.importers.scanqa",
    "sqa3d": "ros3d_agent.scene.importers.sqa3d",
    "scanrefer": "ros3d_agent.scene.importers.scanrefer",
    "multi3drefer": "ros3d_agent.scene.importers.multi3drefer",
    "scan2cap": "ros3d_agent.scene.importers.scan2cap",
}

#: Benchmarks whose records need the target box (ground / caption), or whose empty boxes would read as
#: "no such object" (multi_ground): converting them without scene directories is refused up front.
SCENES_REQUIRED = ("scanrefer", "multi3drefer", "scan2cap")

T = TypeVar("T")


class AnnotationFormatError(SceneError, ValueError):
    """A benchmark file is missing, not JSON, or not in the benchmark's format; the message names the file."""


# ---------------------------------------------------------------------------------------------------
# Reading upstream files
# ---------------------------------------------------------------------------------------------------
def load_json_file(path: str | os.PathLike[str], what: str) -> Any:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise AnnotationFormatError(f"{p}: {what} not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise AnnotationFormatError(f"{p}: cannot read {what} ({exc})") from exc
    try:
        return json.loads(text)
    except ValueError as exc:
        raise AnnotationFormatError(f"{p}: corrupt JSON in {what} ({exc})") from exc


def load_json_list(path: Path, what: str) -> list[dict[str, Any]]:
    """A top-level JSON list of objects (ScanQA, ScanRefer, Multi3DRefer files)."""
    data = load_json_file(path, what)
    if not isinstance(data, list):
        raise AnnotationFormatError(f"{path}: expected a JSON list of {what} items, got {type(data).__name__} (wrong --benchmark?)")
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise AnnotationFormatError(f"{path}: item {i} is {type(item).__name__}, expected an object")
    return data


def require_keys(item: dict[str, Any], keys: Iterable[str], path: Path, where: str) -> None:
    missing = [k for k in keys if k not in item]
    if missing:
        raise AnnotationFormatError(f"{path}: {where} lacks {missing} (has {sorted(item)}); wrong --benchmark?")


def as_object_id(value: Any, path: Path, where: str) -> int:
    """ScanNet object ids: ints in ScanQA/Multi3DRefer, digit strings in ScanRefer (``"34"``)."""
    if isinstance(value, bool):
        raise AnnotationFormatError(f"{path}: {where}: object id {value!r} is not an integer")
    try:
        oid = int(value)
    except (TypeError, ValueError) as exc:
        raise AnnotationFormatError(f"{path}: {where}: object id {value!r} is not an integer") from exc
    if isinstance(value, float) and oid != value or oid < 0:
        raise AnnotationFormatError(f"{path}: {where}: object id {value!r} is not a non-negative integer")
    return oid


# ---------------------------------------------------------------------------------------------------
# Summary and scene lookup
# ---------------------------------------------------------------------------------------------------
@dataclass
class ImportSummary:
    """Counts and warnings of one conversion (never fatal; printed by the CLI)."""

    benchmark: str
    scenes_root: Path | None = None
    records: int = 0
    missing_scenes: Counter[str] = field(default_factory=Counter)  # scene -> records affected
    missing_objects: Counter[tuple[str, int]] = field(default_factory=Counter)  # (scene, object) -> records
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> items not turned into records
    skip_examples: dict[str, str] = field(default_factory=dict)  # reason -> the first affected record id
    duplicate_ids: Counter[str] = field(default_factory=Counter)
    situations_in_source_frame: int = 0

    def warnings(self, limit: int = 8) -> list[str]:
        out = []
        if self.scenes_root is None:
            out.append("no scenes directory given: 'boxes' are left empty")
        if self.missing_scenes:
            n = sum(self.missing_scenes.values())
            names = ", ".join(f"{s} ({c})" for s, c in self.missing_scenes.most_common(limit))
            more = f", ... {len(self.missing_scenes) - limit} more" if len(self.missing_scenes) > limit else ""
            out.append(f"{n} records lack boxes: {len(self.missing_scenes)} scenes missing (or without "
                       f"{OBJECTS_FILE}) under {self.scenes_root}: {names}{more}")
        if self.missing_objects:
            n = sum(self.missing_objects.values())
            names = ", ".join(f"{s}/{o} ({c})" for (s, o), c in self.missing_objects.most_common(limit))
            more = f", ... {len(self.missing_objects) - limit} more" if len(self.missing_objects) > limit else ""
            out.append(f"{n} records lack boxes: {len(self.missing_objects)} objects not in {OBJECTS_FILE} "
                       f"(excluded structure such as walls, or a different label set): {names}{more}")
        for reason, c in sorted(self.skipped.items()):
            example = f" (e.g. {self.skip_examples[reason]})" if reason in self.skip_examples else ""
            out.append(f"{c} items skipped: {reason}{example}")
        if self.duplicate_ids:
            out.append(f"{sum(self.duplicate_ids.values())} repeated record ids (first kept): {', '.join(list(self.duplicate_ids)[:limit])}")
        if self.situations_in_source_frame:
            out.append(f"{self.situations_in_source_frame} situations left in SQA3D's own frame (meta.situation_frame == 'sqa3d'): "
                       f"no {IMPORT_META_FILE} for their scene")
        return out

    def summary(self) -> str:
        lines = [f"{self.benchmark}: {self.records} records"]
        lines += [f"  warning: {w}" for w in self.warnings()]
        return "\n".join(lines)


class SceneIndex:
    """``objects.json`` and ``import_meta.json`` of the scene directories under a root, each read once."""

    def __init__(self, root: str | os.PathLike[str] | None) -> None:
        self.root = Path(root) if root is not None else None
        if self.root is not None and not self.root.is_dir():
            raise SceneDirError(f"{self.root}: scenes directory does not exist")
        self._objects: dict[str, dict[int, SceneObject] | None] = {}
        self._meta: dict[str, dict[str, Any] | None] = {}

    @staticmethod
    def _plain_name(scene_id: str) -> bool:
        """Scene ids come from input files: never let one reach outside the root (``../x``, ``a/b``)."""
        return isinstance(scene_id, str) and scene_id not in ("", ".", "..") and "/" not in scene_id and "\\" not in scene_id

    def objects(self, scene_id: str) -> dict[int, SceneObject] | None:
        """id → object, or ``None`` when the scene (or its objects file) is absent."""
        if self.root is None or not self._plain_name(scene_id):
            return None
        if scene_id not in self._objects:
            self._objects[scene_id] = self._load_objects(self.root / scene_id / OBJECTS_FILE)
        return self._objects[scene_id]

    @staticmethod
    def _load_objects(path: Path) -> dict[int, SceneObject] | None:
        if not path.is_file():
            return None
        try:
            records = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SceneDirError(f"{path}: cannot parse JSON ({exc})") from exc
        if not isinstance(records, list):
            raise SceneDirError(f"{path}: expected a JSON list of objects")
        out = {}
        for i, rec in enumerate(records):
            try:
                obj = SceneObject.from_dict(rec)
            except (KeyError, TypeError, ValueError) as exc:
                raise SceneDirError(f"{path}: entry {i} is not a valid object record ({exc!r})") from exc
            out[obj.id] = obj
        return out

    def import_meta(self, scene_id: str) -> dict[str, Any] | None:
        """What the ScanNet importer recorded (transform applied, raw mesh centre), if the scene has it."""
        if self.root is None or not self._plain_name(scene_id):
            return None
        if scene_id not in self._meta:
            p = self.root / scene_id / IMPORT_META_FILE
            try:
                self._meta[scene_id] = json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None
            except (OSError, ValueError) as exc:
                raise SceneDirError(f"{p}: cannot parse JSON ({exc})") from exc
        return self._meta[scene_id]

    def boxes(self, scene_id: str, object_ids: Sequence[int], summary: ImportSummary) -> list[list[float]]:
        """Boxes of ``object_ids`` in order, or ``[]`` (counted) when any of them cannot be found.

        All-or-nothing keeps ``boxes[i]`` the box of ``object_ids[i]``; a partial list would pair
        boxes with the wrong ids.
        """
        if self.root is None or not object_ids:
            return []
        objs = self.objects(scene_id)
        if objs is None:
            summary.missing_scenes[scene_id] += 1
            return []
        missing = [o for o in object_ids if o not in objs]
        for o in missing:
            summary.missing_objects[(scene_id, o)] += 1
        if missing:
            return []
        return [_aabb_list(objs[o]) for o in object_ids]


def _aabb_list(obj: SceneObject) -> list[float]:
    """``[cx, cy, cz, sx, sy, sz]``; a yawed box becomes its enclosing AABB (the benchmarks' boxes are axis-aligned)."""
    if obj.box.yaw is None:
        return obj.box.to_list()
    lo, hi = obj.box.bounds()
    return [float(v) for v in (lo + hi) / 2] + [float(v) for v in hi - lo]


@dataclass
class ConvertContext:
    """What a benchmark converter needs besides its input files."""

    scenes: SceneIndex
    summary: ImportSummary
    progress: bool = False

    def iterate(self, items: Sequence[T], desc: str) -> Iterable[T]:
        if not self.progress:
            return items
        from tqdm import tqdm

        return tqdm(items, desc=desc, unit="item", leave=False)


# ---------------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------------
def reference_meta(item: dict[str, Any]) -> dict[str, Any]:
    """The ScanRefer-family fields kept in ``meta``: object name, annotation id, Multi3DRefer eval type."""
    meta: dict[str, Any] = {"object_name": str(item.get("object_name", "")), "ann_id": str(item["ann_id"])}
    if "eval_type" in item:
        meta["eval_type"] = str(item["eval_type"])
    return meta


def make_record(
    *,
    id: str,
    scene_id: str,
    task: str,
    question: str,
    answers: Sequence[str],
    object_ids: Sequence[int],
    boxes: Sequence[Sequence[float]],
    situation: dict[str, Any] | None = None,
    box: Sequence[float] | None = None,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A record as a dict in the DESIGN.md key order (validated later by :func:`finalize_record`).

    ``meta`` holds upstream bookkeeping (``eval_type``, ``object_name``...); ``meta.boxes_missing``
    is set when targets were named but their boxes could not be found, so that an empty ``boxes`` is
    never mistaken for "no such object".
    """
    rec: dict[str, Any] = {
        "id": str(id),
        "scene_id": scene_id,
        "task": task,
        "question": question,
        "answers": [str(a) for a in answers],
        "object_ids": [int(o) for o in object_ids],
        "boxes": [[float(v) for v in b] for b in boxes],
    }
    if situation is not None:
        rec["situation"] = situation
    if box is not None:
        rec["box"] = [float(v) for v in box]
    meta = dict(meta or {})
    if rec["object_ids"] and not rec["boxes"]:
        meta["boxes_missing"] = True
    if meta:
        rec["meta"] = meta
    return rec


def finalize_record(rec: dict[str, Any], summary: ImportSummary) -> AnnotationRecord | None:
    """Validate ``rec`` as an :class:`AnnotationRecord`; ``None`` (counted by reason) when the format cannot hold it."""
    task = rec["task"]
    reason = None
    if task in TEXT_TASKS and not rec["answers"]:
        reason = f"{task} item without answers (a test split?); the format requires an answer"
    elif task == "ground" and len(rec["boxes"]) != 1:
        reason = "ground item whose target box was not found (see the missing scenes/objects above)"
    elif task == "caption" and rec.get("box") is None:
        reason = "caption item whose object box was not found (see the missing scenes/objects above)"
    elif task == "situated_qa" and rec.get("situation") is None:
        reason = "situated_qa item without a situation position/rotation"
    if reason is None:
        try:
            return AnnotationRecord.from_dict(rec)
        except AnnotationError as exc:
            reason = f"invalid record ({str(exc).split(': ', 1)[-1]})"
    summary.skipped[reason] += 1
    summary.skip_examples.setdefault(reason, rec["id"])
    return None


def convert_annotations(
    benchmark: str,
    inputs: Sequence[str | os.PathLike[str]],
    scenes_root: str | os.PathLike[str] | None = None,
    *,
    progress: bool = False,
) -> tuple[list[AnnotationRecord], ImportSummary]:
    """Convert upstream files of ``benchmark`` into validated records (input order) plus a summary.

    Raises:
        ValueError: unknown benchmark, or no ``scenes_root`` for a benchmark in :data:`SCENES_REQUIRED`.
        AnnotationFormatError: an input is missing, not JSON, or not in the benchmark's format.
        SceneDirError: a scene's ``objects.json`` / ``import_meta.json`` is corrupt.
    """
    if benchmark not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}; choose one of {sorted(BENCHMARKS)}")
    if scenes_root is None and benchmark in SCENES_REQUIRED:
        raise ValueError(f"{benchmark}: a scenes directory is required (--scenes): its records carry the target objects' boxes")
    if not inputs:
        raise AnnotationFormatError(f"{benchmark}: no input files given")
    paths = [Path(p) for p in inputs]
    for p in paths:
        if not p.is_file():
            raise AnnotationFormatError(f"{p}: input file not found")
    ctx = ConvertContext(SceneIndex(scenes_root), ImportSummary(benchmark, Path(scenes_root) if scenes_root else None), progress)
    module = importlib.import_module(BENCHMARKS[benchmark])
    records: list[AnnotationRecord] = []
    seen: set[str] = set()
    for raw in module.convert(paths, ctx):
        if raw["id"] in seen:
            ctx.summary.duplicate_ids[raw["id"]] += 1
            continue
        rec = finalize_record(raw, ctx.summary)
        if rec is not None:
            seen.add(rec.id)
            records.append(rec)
    ctx.summary.records = len(records)
    return records, ctx.summary


def write_jsonl(records: Iterable[AnnotationRecord], out: str | os.PathLike[str]) -> int:
    """Write records as JSONL through the shared writer (atomic; duplicate ids refused)."""
    return write_annotations(out, records)


def import_annotations(
    benchmark: str,
    inputs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    scenes_root: str | os.PathLike[str] | None = None,
    *,
    progress: bool = True,
) -> ImportSummary:
    """Convert and write ``out`` (JSONL); returns the summary with its warnings."""
    records, summary = convert_annotations(benchmark, inputs, scenes_root, progress=progress)
    write_jsonl(records, out)
    return summary
