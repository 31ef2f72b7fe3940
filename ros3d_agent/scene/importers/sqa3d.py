"""SQA3D (a questions file + an annotations file per split) → ``situated_qa`` records.

Upstream, per split ``S``:

* ``v1_balanced_questions_S_scannetv2.json``: ``{"info", "license", ..., "questions": [{"scene_id",
  "situation", "alternative_situation": [...], "question", "question_id": int}]}``
* ``v1_balanced_sqa_annotations_S_scannetv2.json``: ``{..., "annotations": [{"scene_id",
  "question_id", "answers": [{"answer", "answer_confidence", "answer_id"}], "position": {"x","y","z"},
  "rotation": {"_x","_y","_z","_w"}, "question_type", "answer_type"}]}``

The two are joined by ``question_id``; files may come in any order (each is recognised by its
top-level key), several splits at once.

Frames. SQA3D's ``position`` is relative to the centre of the *raw* ScanNet mesh's bounding box and its
rotation is in the raw frame too (SQA3D's own loader adds that centre, then applies
``axisAlignment``). When the scene was imported by our ScanNet importer, its ``import_meta.json``
holds both the centre and the transform applied, and the situation is converted into the scene's
frame (``meta.situation_frame == "scene"``). Otherwise the values are kept as given
(``meta.situation_frame == "sqa3d"``) and counted in the summary. ``yaw`` is the heading of the
situation's rotation about +z, counter-clockwise from +x: ``atan2(R[1,0], R[0,0])``, in (-π, π].

``meta.qtype`` is the question's first word bucket (what / is / how / can / which / others), the
breakdown SQA3D results are reported by. The ``alternative_situation`` texts are not kept: the record
format has one situation, and expanding them into extra samples is a training decision.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ..geometry import quaternion_to_matrix
from .benchmarks import AnnotationFormatError, ConvertContext, load_json_file, make_record, require_keys

__all__ = ["convert", "situation_pose", "question_type"]


def situation_pose(
    position: ArrayLike,
    quaternion_xyzw: ArrayLike,
    world_from_scannet: ArrayLike | None = None,
    raw_bbox_center: ArrayLike | None = None,
) -> tuple[list[float], float]:
    """``(position xyz, yaw)`` of an SQA3D situation, in the scene frame when the transform is given.

    Args:
        position: SQA3D ``position`` (metres, relative to the raw mesh's bounding-box centre).
        quaternion_xyzw: SQA3D ``rotation`` as ``(x, y, z, w)``.
        world_from_scannet: 4×4 transform the scene was imported with (``axisAlignment`` or identity);
            ``None`` leaves the pose in SQA3D's frame.
        raw_bbox_center: the raw mesh's bounding-box centre; required with ``world_from_scannet``.
    """
    p = np.asarray(position, dtype=np.float64).reshape(3)
    R = quaternion_to_matrix(np.asarray(quaternion_xyzw, dtype=np.float64))
    if world_from_scannet is not None:
        if raw_bbox_center is None:
            raise ValueError("raw_bbox_center is required to convert an SQA3D position")
        A = np.asarray(world_from_scannet, dtype=np.float64).reshape(4, 4)
        p = A[:3, :3] @ (p + np.asarray(raw_bbox_center, dtype=np.float64).reshape(3)) + A[:3, 3]
        R = A[:3, :3] @ R
    yaw = math.atan2(R[1, 0], R[0, 0])
    return [float(v) for v in p], float(yaw)


def _split_inputs(inputs: Sequence[Path]) -> tuple[dict[Any, dict[str, Any]], list[tuple[Path, int, dict[str, Any]]]]:
    questions: dict[Any, dict[str, Any]] = {}
    annotations: list[tuple[Path, int, dict[str, Any]]] = []
    n_qfiles = n_afiles = 0
    for path in inputs:
        data = load_json_file(path, "SQA3D file")
        if isinstance(data, dict) and isinstance(data.get("questions"), list):
            n_qfiles += 1
            for i, q in enumerate(data["questions"]):
                if not isinstance(q, dict):
                    raise AnnotationFormatError(f"{path}: questions[{i}] is not an object")
                require_keys(q, ("question_id", "scene_id", "situation", "question"), path, f"questions[{i}]")
                questions[q["question_id"]] = q
        elif isinstance(data, dict) and isinstance(data.get("annotations"), list):
            n_afiles += 1
            for i, a in enumerate(data["annotations"]):
                if not isinstance(a, dict):
                    raise AnnotationFormatError(f"{path}: annotations[{i}] is not an object")
                require_keys(a, ("question_id", "scene_id", "answers"), path, f"annotations[{i}]")
                annotations.append((path, i, a))
        else:
            raise AnnotationFormatError(
                f"{path}: not an SQA3D file (expected an object with a 'questions' list, as in "
                "v1_balanced_questions_*_scannetv2.json, or an 'annotations' list, as in v1_balanced_sqa_annotations_*_scannetv2.json)"
            )
    if not n_qfiles or not n_afiles:
        have = "questions" if n_qfiles else "annotations"
        raise AnnotationFormatError(
            f"SQA3D needs both a questions file and an annotations file per split; only {have} given ({', '.join(map(str, inputs))})"
        )
    return questions, annotations


def _answers(a: dict[str, Any], path: Path, where: str) -> list[str]:
    out = []
    for ans in a["answers"]:
        if isinstance(ans, dict) and "answer" in ans:
            out.append(str(ans["answer"]))
        elif isinstance(ans, str):
            out.append(ans)
        else:
            raise AnnotationFormatError(f"{path}: {where}: answer {ans!r} has no 'answer' field")
    return out


def question_type(question: str) -> str:
    """SQA3D's reporting bucket: the question's first word when it is what / is / how / can / which."""
    words = question.strip().split(maxsplit=1)
    first = words[0].lower() if words else ""
    return first if first in ("what", "is", "how", "can", "which") else "others"


def _situation(q: dict[str, Any], a: dict[str, Any], ctx: ConvertContext, path: Path, where: str) -> tuple[dict[str, Any] | None, str | None]:
    """``({"text", "position", "yaw"}, frame)``, or ``(None, None)`` when the annotation has no pose."""
    pos, rot = a.get("position"), a.get("rotation")
    if not isinstance(pos, dict) or not isinstance(rot, dict):
        return None, None
    try:
        xyz = [float(pos[k]) for k in ("x", "y", "z")]
        quat = [float(rot[k]) for k in ("_x", "_y", "_z", "_w")]
    except (KeyError, TypeError, ValueError) as exc:
        raise AnnotationFormatError(f"{path}: {where}: position/rotation malformed ({exc!r})") from exc
    meta = ctx.scenes.import_meta(a["scene_id"])
    A = c = None
    if meta is not None and "world_from_scannet" in meta and "raw_bbox_center" in meta:
        A, c = meta["world_from_scannet"], meta["raw_bbox_center"]
    try:
        position, yaw = situation_pose(xyz, quat, A, c)
    except ValueError as exc:
        raise AnnotationFormatError(f"{path}: {where}: invalid situation pose ({exc})") from exc
    if A is None:
        ctx.summary.situations_in_source_frame += 1
    return {"text": q["situation"], "position": position, "yaw": yaw}, ("scene" if A is not None else "sqa3d")


def convert(inputs: Sequence[Path], ctx: ConvertContext) -> Iterator[dict[str, Any]]:
    questions, annotations = _split_inputs(inputs)
    used = set()
    for path, i, a in ctx.iterate(annotations, "sqa3d"):
        where = f"annotations[{i}]"
        q = questions.get(a["question_id"])
        if q is None:
            ctx.summary.skipped["annotation without a question (question_id not in the questions file)"] += 1
            continue
        used.add(a["question_id"])
        situation, frame = _situation(q, a, ctx, path, where)
        meta = {"qtype": question_type(q["question"])}
        if frame is not None:
            meta["situation_frame"] = frame
        yield make_record(
            id=str(a["question_id"]),
            scene_id=a["scene_id"],
            task="situated_qa",
            question=q["question"],
            answers=_answers(a, path, where),
            object_ids=[],
            boxes=[],
            situation=situation,
            meta=meta,
        )
    unanswered = len(set(questions) - used)
    if unanswered:
        ctx.summary.skipped["question without an annotation (question_id not in the annotations file)"] += unanswered
