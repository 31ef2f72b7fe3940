"""The annotation record and its JSONL reader/writer: the one place the shared format is defined.

DESIGN.md ("Annotations") fixes the fields; this module enforces them, so that the synthetic
annotator, the benchmark importers, training and eval can never drift apart silently. Every
importer should build :class:`AnnotationRecord` objects and write them with
:func:`write_annotations`; every consumer should read with :func:`read_annotations`.

One JSON object per line::

    {"id": "synth_00042-qa-0007", "scene_id": "synth_00042", "task": "qa",
     "question": "what color is the lamp next to the sofa?", "answers": ["red"],
     "object_ids": [5], "boxes": [[cx, cy, cz, sx, sy, sz]],
     "situation": {"text": ..., "position": [x, y, z], "yaw": rad},   # situated_qa only
     "box": [cx, cy, cz, sx, sy, sz],                                # caption only
     "meta": {"qtype": "color"}}                                     # optional bookkeeping

``meta`` is an extension of the DESIGN.md field list: a flat object of JSON scalars for bookkeeping
that no model input depends on (question type, ScanRefer "unique"/"multiple", source file). It lets
eval break scores down by question type without parsing question text.
"""

from __future__ import annotations

from ros3d_agent.utils.jsonl import iter_jsonl, write_jsonl

import math
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "TASKS",
    "TEXT_TASKS",
    "GROUNDING_TASKS",
    "AnnotationError",
    "Situation",
    "AnnotationRecord",
    "read_annotations",
    "iter_annotations",
    "write_annotations",
]

#: every task an annotation record may carry, in the order reports list them
TASKS: tuple[str, ...] = ("qa", "situated_qa", "ground", "multi_ground", "caption")
#: tasks scored on the text answer (EM, CIDEr, ...)
TEXT_TASKS: tuple[str, ...] = ("qa", "situated_qa", "caption")
#: tasks scored on boxes (Acc@k, F1@k)
GROUNDING_TASKS: tuple[str, ...] = ("ground", "multi_ground")

_REQUIRED = ("id", "scene_id", "task", "question", "answers", "object_ids", "boxes")
_OPTIONAL = ("situation", "box", "meta")


class AnnotationError(ValueError):
    """A record or an annotation file does not follow the format; the message says where and why."""


def _box(value: Any, what: str) -> tuple[float, ...]:
    """Validate ``[cx, cy, cz, sx, sy, sz]``: six finite numbers, every extent > 0."""
    if not isinstance(value, (list, tuple)) or len(value) != 6:
        raise AnnotationError(f"{what}: expected a box [cx, cy, cz, sx, sy, sz] of 6 numbers, got {value!r}")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise AnnotationError(f"{what}: box values must be finite numbers, got {value!r}")
        out.append(float(v))
    if min(out[3:]) <= 0:
        raise AnnotationError(f"{what}: box sizes must be > 0, got {value!r}")
    return tuple(out)


def _str_list(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise AnnotationError(f"{what}: expected a list of strings, got {value!r}")
    return tuple(value)


@dataclass(frozen=True)
class Situation:
    """Where the agent is and which way it faces (SQA3D): ``yaw`` counter-clockwise from world +x, radians."""

    text: str
    position: tuple[float, float, float]
    yaw: float

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or not self.text.strip():
            raise AnnotationError("situation.text: expected a non-empty string")
        pos = self.position
        if not isinstance(pos, (list, tuple)) or len(pos) != 3:
            raise AnnotationError(f"situation.position: expected [x, y, z], got {pos!r}")
        vals = []
        for v in pos:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise AnnotationError(f"situation.position: expected finite numbers, got {pos!r}")
            vals.append(float(v))
        object.__setattr__(self, "position", tuple(vals))
        if isinstance(self.yaw, bool) or not isinstance(self.yaw, (int, float)) or not math.isfinite(self.yaw):
            raise AnnotationError(f"situation.yaw: expected a finite number (radians), got {self.yaw!r}")
        object.__setattr__(self, "yaw", float(self.yaw))

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "position": list(self.position), "yaw": self.yaw}

    @classmethod
    def from_dict(cls, d: Any) -> Situation:
        if not isinstance(d, Mapping):
            raise AnnotationError(f"situation: expected an object, got {type(d).__name__}")
        missing = [k for k in ("text", "position", "yaw") if k not in d]
        if missing:
            raise AnnotationError(f"situation: missing field(s) {missing}")
        extra = sorted(set(d) - {"text", "position", "yaw"})
        if extra:
            raise AnnotationError(f"situation: unknown field(s) {extra}")
        return cls(text=d["text"], position=d["position"], yaw=d["yaw"])


@dataclass(frozen=True)
class AnnotationRecord:
    """One training/eval sample. Validated on construction; see the module docstring for the fields.

    Task rules (what each benchmark guarantees, enforced so a converter bug fails at write time):
    ``qa``/``situated_qa``/``caption`` need at least one answer; ``situated_qa`` needs a situation;
    ``caption`` needs ``box`` (the located object); ``ground`` has exactly one target box;
    ``multi_ground`` has any number, zero meaning "no such object". ``object_ids`` and ``boxes`` are
    parallel lists whenever both are given.
    """

    id: str
    scene_id: str
    task: str
    question: str
    answers: tuple[str, ...] = ()
    object_ids: tuple[int, ...] = ()
    boxes: tuple[tuple[float, ...], ...] = ()
    situation: Situation | None = None
    box: tuple[float, ...] | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("id", "scene_id"):
            v = getattr(self, name)
            if not isinstance(v, str) or not v.strip():
                raise AnnotationError(f"{name}: expected a non-empty string, got {v!r}")
        where = f"record {self.id!r}"
        if self.task not in TASKS:
            raise AnnotationError(f"{where}: task must be one of {list(TASKS)}, got {self.task!r}")
        if not isinstance(self.question, str) or not self.question.strip():
            raise AnnotationError(f"{where}: question must be a non-empty string")
        object.__setattr__(self, "answers", _str_list(self.answers, f"{where}: answers"))
        ids = self.object_ids
        if not isinstance(ids, (list, tuple)) or any(isinstance(i, bool) or not isinstance(i, int) for i in ids):
            raise AnnotationError(f"{where}: object_ids must be a list of integers, got {ids!r}")
        object.__setattr__(self, "object_ids", tuple(ids))
        if not isinstance(self.boxes, (list, tuple)):
            raise AnnotationError(f"{where}: boxes must be a list of boxes, got {self.boxes!r}")
        boxes = tuple(_box(b, f"{where}: boxes[{i}]") for i, b in enumerate(self.boxes))
        object.__setattr__(self, "boxes", boxes)
        if ids and boxes and len(ids) != len(boxes):
            raise AnnotationError(f"{where}: {len(ids)} object_ids but {len(boxes)} boxes (they are parallel lists)")
        if self.box is not None:
            object.__setattr__(self, "box", _box(self.box, f"{where}: box"))
        if self.situation is not None and not isinstance(self.situation, Situation):
            object.__setattr__(self, "situation", Situation.from_dict(self.situation))
        if not isinstance(self.meta, Mapping) or not all(
            isinstance(k, str) and (v is None or isinstance(v, (str, int, float, bool))) for k, v in self.meta.items()
        ):
            raise AnnotationError(f"{where}: meta must be a flat object of JSON scalars, got {self.meta!r}")
        object.__setattr__(self, "meta", dict(self.meta))

        if self.task in TEXT_TASKS and not self.answers:
            raise AnnotationError(f"{where}: task {self.task!r} needs at least one answer")
        if self.task == "situated_qa" and self.situation is None:
            raise AnnotationError(f"{where}: task 'situated_qa' needs a situation")
        if self.task != "situated_qa" and self.situation is not None:
            raise AnnotationError(f"{where}: only 'situated_qa' records carry a situation (task {self.task!r})")
        if self.task == "caption" and self.box is None:
            raise AnnotationError(f"{where}: task 'caption' needs 'box' (the object to describe)")
        if self.task == "ground" and len(self.boxes) != 1:
            raise AnnotationError(f"{where}: task 'ground' needs exactly one target box, got {len(self.boxes)}")

    # -- dict form -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The JSON object of one line; optional fields are written only when set."""
        out: dict[str, Any] = {
            "id": self.id,
            "scene_id": self.scene_id,
            "task": self.task,
            "question": self.question,
            "answers": list(self.answers),
            "object_ids": list(self.object_ids),
            "boxes": [list(b) for b in self.boxes],
        }
        if self.situation is not None:
            out["situation"] = self.situation.to_dict()
        if self.box is not None:
            out["box"] = list(self.box)
        if self.meta:
            out["meta"] = dict(self.meta)
        return out

    @classmethod
    def from_dict(cls, d: Any) -> AnnotationRecord:
        """Parse one JSON object; unknown keys are an error (they are usually a misspelt field)."""
        if not isinstance(d, Mapping):
            raise AnnotationError(f"expected a JSON object per line, got {type(d).__name__}")
        missing = [k for k in _REQUIRED if k not in d]
        if missing:
            raise AnnotationError(f"record {d.get('id')!r}: missing required field(s) {missing}")
        extra = sorted(set(d) - set(_REQUIRED) - set(_OPTIONAL))
        if extra:
            raise AnnotationError(f"record {d.get('id')!r}: unknown field(s) {extra}; allowed: {list(_REQUIRED + _OPTIONAL)}")
        situation = d.get("situation")
        return cls(
            id=d["id"],
            scene_id=d["scene_id"],
            task=d["task"],
            question=d["question"],
            answers=d["answers"],
            object_ids=d["object_ids"],
            boxes=d["boxes"],
            situation=Situation.from_dict(situation) if situation is not None else None,
            box=d.get("box"),
            meta=d.get("meta") or {},
        )

    @property
    def qtype(self) -> str | None:
        """The question type recorded in ``meta`` (``None`` for records that do not carry one)."""
        v = self.meta.get("qtype")
        return v if isinstance(v, str) else None


# --------------------------------------------------------------------------------------------------
# JSONL IO
# --------------------------------------------------------------------------------------------------
def iter_annotations(path: str | os.PathLike[str]) -> Iterator[AnnotationRecord]:
    """Stream records from a JSONL file; blank lines are allowed. Errors name ``file:line``.

    Duplicate ids are reported too: ids key predictions to samples, so a duplicate would silently
    score one sample twice.
    """
    yield from iter_jsonl(path, AnnotationRecord.from_dict, AnnotationError)


def read_annotations(path: str | os.PathLike[str]) -> list[AnnotationRecord]:
    """All records of a JSONL file (see :func:`iter_annotations`)."""
    return list(iter_annotations(path))


def write_annotations(path: str | os.PathLike[str], records: Iterable[AnnotationRecord | Mapping[str, Any]]) -> int:
    """Write records as JSONL, atomically (a reader never sees half a file); returns the count.

    Plain dicts are validated through :meth:`AnnotationRecord.from_dict` first. Duplicate ids are refused.
    """
    def parse(item) -> AnnotationRecord:
        return item if isinstance(item, AnnotationRecord) else AnnotationRecord.from_dict(item)

    return write_jsonl(path, records, parse, AnnotationError)

