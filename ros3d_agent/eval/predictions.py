"""The predictions JSONL that eval scores and replay writes (DESIGN.md "Predictions"), with validation.

One JSON object per line, keyed by the annotation record's ``id``::

    {"id": "scene0011_00|5|0", "answer": "brown"}                         # qa / situated_qa
    {"id": "...", "boxes": [[cx, cy, cz, sx, sy, sz], ...], "scores": [...]}   # ground / multi_ground
    {"id": "...", "answer": "a brown chair ...", "box": [cx, cy, cz, sx, sy, sz]}  # caption

``boxes`` are best first: ScanRefer scores ``boxes[0]``; Multi3DRefer scores the whole list as the
predicted set (an empty list means "no such object"). ``scores``, when given, must match ``boxes``
in length and be non-increasing, which is how "best first" is checked. ``box`` on a caption is the
box the caption describes (Scan2Cap @0.5 scores it against the ground-truth box). ``meta`` is free
bookkeeping (timings, model name). Any other key is an error: a misspelt ``"answers"`` would
otherwise score as a missing answer.
"""

from __future__ import annotations

from ros3d_agent.utils.jsonl import iter_jsonl, write_jsonl

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PredictionError", "Prediction", "read_predictions", "write_predictions", "PREDICTION_KEYS"]

#: every key a prediction line may carry
PREDICTION_KEYS: tuple[str, ...] = ("id", "answer", "boxes", "scores", "box", "meta")


class PredictionError(ValueError):
    """A prediction or a predictions file is malformed; the message says where and why."""


def _number(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


def _box(value: Any, what: str) -> tuple[float, ...]:
    """``[cx, cy, cz, sx, sy, sz]``: six finite numbers, sizes >= 0 (a zero-size box just scores IoU 0)."""
    if not isinstance(value, (list, tuple)) or len(value) != 6 or not all(_number(v) for v in value):
        raise PredictionError(f"{what}: expected a box [cx, cy, cz, sx, sy, sz] of 6 finite numbers, got {value!r}")
    out = tuple(float(v) for v in value)
    if min(out[3:]) < 0:
        raise PredictionError(f"{what}: box sizes must be >= 0, got {value!r}")
    return out


@dataclass(frozen=True)
class Prediction:
    """One model output for one annotation id; validated on construction (see the module docstring)."""

    id: str
    answer: str | None = None
    boxes: tuple[tuple[float, ...], ...] | None = None
    scores: tuple[float, ...] | None = None
    box: tuple[float, ...] | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip():
            raise PredictionError(f"id: expected a non-empty string, got {self.id!r}")
        where = f"prediction {self.id!r}"
        if self.answer is not None and not isinstance(self.answer, str):
            raise PredictionError(f"{where}: answer must be a string, got {type(self.answer).__name__}")
        if self.boxes is not None:
            if not isinstance(self.boxes, (list, tuple)):
                raise PredictionError(f"{where}: boxes must be a list of boxes, got {self.boxes!r}")
            object.__setattr__(self, "boxes", tuple(_box(b, f"{where}: boxes[{i}]") for i, b in enumerate(self.boxes)))
        if self.scores is not None:
            if self.boxes is None:
                raise PredictionError(f"{where}: scores given without boxes")
            if not isinstance(self.scores, (list, tuple)) or not all(_number(s) for s in self.scores):
                raise PredictionError(f"{where}: scores must be a list of finite numbers, got {self.scores!r}")
            scores = tuple(float(s) for s in self.scores)
            if len(scores) != len(self.boxes):
                raise PredictionError(f"{where}: {len(scores)} scores for {len(self.boxes)} boxes")
            if any(b > a for a, b in zip(scores, scores[1:])):
                raise PredictionError(f"{where}: boxes must be best first, but scores increase: {list(scores)}")
            object.__setattr__(self, "scores", scores)
        if self.box is not None:
            object.__setattr__(self, "box", _box(self.box, f"{where}: box"))
        if not isinstance(self.meta, Mapping):
            raise PredictionError(f"{where}: meta must be an object, got {type(self.meta).__name__}")

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of one line; unset fields are left out."""
        out: dict[str, Any] = {"id": self.id}
        if self.answer is not None:
            out["answer"] = self.answer
        if self.boxes is not None:
            out["boxes"] = [list(b) for b in self.boxes]
        if self.scores is not None:
            out["scores"] = list(self.scores)
        if self.box is not None:
            out["box"] = list(self.box)
        if self.meta:
            out["meta"] = dict(self.meta)
        return out

    @classmethod
    def from_dict(cls, d: Any) -> Prediction:
        """Parse one JSON object; unknown keys are an error."""
        if not isinstance(d, Mapping):
            raise PredictionError(f"expected a JSON object per line, got {type(d).__name__}")
        if "id" not in d:
            raise PredictionError("missing required field 'id'")
        extra = sorted(set(d) - set(PREDICTION_KEYS))
        if extra:
            raise PredictionError(f"prediction {d['id']!r}: unknown field(s) {extra}; allowed: {list(PREDICTION_KEYS)}")
        return cls(
            id=d["id"],
            answer=d.get("answer"),
            boxes=d.get("boxes"),
            scores=d.get("scores"),
            box=d.get("box"),
            meta=d.get("meta") or {},
        )


def read_predictions(path: str | os.PathLike[str]) -> dict[str, Prediction]:
    """All predictions of a JSONL file by id, in file order. Blank lines are allowed; errors name ``file:line``.

    Raises:
        PredictionError: the file cannot be read, a line is not valid JSON or not a valid
            prediction, or an id appears twice (it would be scored twice or silently overwritten).
    """
    records = iter_jsonl(path, Prediction.from_dict, PredictionError, what="predictions file")
    return {pred.id: pred for pred in records}


def write_predictions(path: str | os.PathLike[str], predictions: Iterable[Prediction | Mapping[str, Any]]) -> int:
    """Write predictions as JSONL atomically (a reader never sees half a file); returns the count.

    Plain dicts are validated through :meth:`Prediction.from_dict`. Duplicate ids are refused.
    """
    def parse(item) -> Prediction:
        return item if isinstance(item, Prediction) else Prediction.from_dict(item)

    return write_jsonl(path, predictions, parse, PredictionError)
