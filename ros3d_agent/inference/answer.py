"""The Answer contract: what a query returns to the node, evaluation, replay and LLM agents.

Plain dataclasses with a JSON form, so a planner or an LLM agent can take an answer as a tool
result without knowing torch or ROS, and replay can write it to ``results.jsonl`` unchanged.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from ros3d_agent.scene.types import Box3D

TASKS = ("qa", "situated_qa", "ground", "multi_ground", "caption")


@dataclass(frozen=True)
class GroundedBox:
    """One grounded object: a box in the scene's fixed frame, its label and selection score."""

    box: Box3D
    score: float
    proposal_id: int
    label: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"box": self.box.to_list(), "score": float(self.score), "proposal_id": int(self.proposal_id),
                "label": self.label}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GroundedBox":
        return cls(box=Box3D.from_list(d["box"]), score=float(d["score"]), proposal_id=int(d["proposal_id"]),
                   label=str(d.get("label", "")))


@dataclass
class Answer:
    """The result of one query. ``success`` is False with ``error`` set when it could not be answered."""

    question: str
    task: str
    text: str = ""
    objects: list[GroundedBox] = field(default_factory=list)
    keyframe_stamps: list[int] = field(default_factory=list)  # ns, of the frames the model looked at
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    success: bool = True
    error: str = ""
    query_id: str = ""

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, not {self.task!r}")
        for stage, seconds in self.timings.items():
            if not math.isfinite(seconds) or seconds < 0:
                raise ValueError(f"timing {stage!r} must be a finite non-negative number of seconds, not {seconds}")

    @classmethod
    def failure(cls, question: str, task: str, error: str, query_id: str = "") -> "Answer":
        return cls(question=question, task=task, success=False, error=error, query_id=query_id)

    def to_dict(self) -> dict[str, Any]:
        return {"query_id": self.query_id, "question": self.question, "task": self.task, "success": self.success,
                "error": self.error, "text": self.text, "objects": [o.to_dict() for o in self.objects],
                "keyframe_stamps": [int(s) for s in self.keyframe_stamps],
                "timings": {k: float(v) for k, v in self.timings.items()}}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Answer":
        return cls(question=d["question"], task=d["task"], text=d.get("text", ""),
                   objects=[GroundedBox.from_dict(o) for o in d.get("objects", [])],
                   keyframe_stamps=[int(s) for s in d.get("keyframe_stamps", [])],
                   timings={k: float(v) for k, v in d.get("timings", {}).items()},
                   success=bool(d.get("success", True)), error=d.get("error", ""), query_id=d.get("query_id", ""))
