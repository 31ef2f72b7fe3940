"""What a replay run produces, whichever mode ran it: results, predictions, summary, table, BEV.

Outputs in the run directory:

* ``results.jsonl``: one line per question: the question as asked, the answer, boxes and scores,
  per-question IoU / F1 / exact match against the ground truth, latency, the keyframes used;
* ``predictions.jsonl`` + ``ground_truth.jsonl``: the eval predictions format (DESIGN.md
  "Predictions") and the questions as plain annotation records, so ``ros3d-agent eval score`` can
  re-score a run;
* ``summary.json``: the :mod:`ros3d_agent.eval` metrics for each task present (the benchmark that
  scores it), latency p50/p95, drops and TF misses, the bag's and checkpoint's sha256, the package
  version, and a digest of everything that must not change between two offline runs;
* ``bev_<scene>.png``: the fused cloud of the replayed keyframes from above, ground-truth boxes
  green, predicted boxes red, each labelled with its question number.

A failed answer is *missing* for the metrics (scored wrong), never an empty prediction: an empty
box list means "no such object" to Multi3DRefer and would score as right for zero-target queries.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from ros3d_agent.inference.answer import Answer
from ros3d_agent.replay.scenario import ReplayQuestion
from ros3d_agent.scene.types import Box3D

__all__ = [
    "QuestionOutcome",
    "ReplayRun",
    "TASK_BENCHMARK",
    "box6",
    "best_object_for_box",
    "node_counts",
    "result_record",
    "prediction_for",
    "score_results",
    "tree_sha256",
    "model_identity",
    "determinism_digest",
    "write_outputs",
    "format_table",
    "render_replay_bev",
]

#: the benchmark whose metrics score each task (ros3d_agent.eval.BENCHMARKS)
TASK_BENCHMARK: Final = {"qa": "scanqa", "situated_qa": "sqa3d", "ground": "scanrefer", "multi_ground": "multi3drefer",
                         "caption": "scan2cap"}
_HASH_BLOCK: Final = 1 << 20


@dataclass
class QuestionOutcome:
    """One asked question and what came back (mode-independent).

    Attributes:
        ask_text: the text sent to the node (or built identically offline).
        asked_at_s: bag time of asking, seconds from the bag start.
        latency_s: from asking to the answer (real-time: goal sent → result received, wall time).
        keyframes_in_memory: keyframes the node held when asked (offline; None when unknown).
        caption_object: for captions, the proposal described: ``{"id", "box", "iou_to_gt", "source"}``.
        bag_complete: False when the bag could not be read to the question's ``ask_at`` (truncated).
    """

    question: ReplayQuestion
    answer: Answer
    ask_text: str
    asked_at_s: float | None
    latency_s: float
    keyframes_in_memory: int | None = None
    caption_object: dict[str, Any] | None = None
    bag_complete: bool = True


@dataclass
class ReplayRun:
    """Everything one run produced, for :func:`write_outputs`."""

    mode: str
    outcomes: list[QuestionOutcome]
    counts: dict[str, Any]
    engine_info: dict[str, Any]
    wall_s: float
    bag_error: str | None = None
    cloud: tuple[NDArray[np.float32], NDArray[np.uint8]] | None = None
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------
# Boxes and matching
# ---------------------------------------------------------------------------------------------------
def box6(box: Box3D) -> list[float]:
    """``[cx, cy, cz, sx, sy, sz]`` of the axis-aligned box enclosing ``box`` (what the benchmarks compare)."""
    if box.yaw is None:
        return [float(v) for v in box.center] + [float(v) for v in box.size]
    lo, hi = box.bounds()
    return [float(v) for v in (lo + hi) / 2] + [float(v) for v in hi - lo]


def best_object_for_box(objects: Sequence[tuple[int, Box3D]], gt: Sequence[float]) -> tuple[int, Box3D, float] | None:
    """The candidate ``(id, box)`` overlapping ``gt`` most (IoU), the nearest centre when none overlaps.

    Scan2Cap pairs each ground-truth object with the predicted proposal of highest IoU; a caption
    replay asks the node to describe that proposal.
    """
    from ros3d_agent.scene.iou import aabb_iou

    if not objects:
        return None
    gt_c = np.asarray(gt[:3], dtype=np.float64)
    scored = [(aabb_iou(box6(b), list(gt)), -float(np.linalg.norm(b.center - gt_c)), i) for i, (_, b) in enumerate(objects)]
    iou, _, i = max(scored)
    return objects[i][0], objects[i][1], float(iou)


def _gt_checks(q: ReplayQuestion, a: Answer, caption_object: Mapping[str, Any] | None) -> dict[str, Any]:
    """Per-question comparison with the ground truth (what the table prints)."""
    from ros3d_agent.eval.grounding_metrics import multi_target_f1, top1_iou
    from ros3d_agent.eval.qa_metrics import match_scanqa, match_sqa3d

    r = q.record
    boxes = [box6(o.box) for o in a.objects]
    if not a.success:
        return {}
    if r.task == "ground":
        return {"iou": round(top1_iou(boxes, r.boxes[0]), 6)}
    if r.task == "multi_ground":
        f1 = multi_target_f1(boxes, r.boxes)
        return {"f1@0.25": f1[0], "f1@0.5": f1[1], "n_gt": len(r.boxes), "n_pred": len(boxes)}
    if r.task == "caption":
        return {"iou": round(float(caption_object["iou_to_gt"]), 6)} if caption_object else {}
    match = (match_sqa3d if r.task == "situated_qa" else match_scanqa)(a.text, r.answers)
    return {"em": bool(match.em), "em_r": bool(match.em_r)}


# ---------------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------------
def result_record(o: QuestionOutcome) -> dict[str, Any]:
    """The ``results.jsonl`` line of one question."""
    r, a = o.question.record, o.answer
    return {
        "id": r.id,
        "scene_id": r.scene_id,
        "task": r.task,
        "question": r.question,
        "ask_text": o.ask_text,
        "ask_at": o.question.ask_at,
        "asked_at_s": None if o.asked_at_s is None else round(o.asked_at_s, 6),
        "success": a.success,
        "error": a.error,
        "answer": a.text,
        "boxes": [box6(x.box) for x in a.objects],
        "scores": [float(x.score) for x in a.objects],
        "object_ids": [int(x.proposal_id) for x in a.objects],
        "caption_object": o.caption_object,
        "gt_answers": list(r.answers),
        "gt_boxes": [list(b) for b in r.boxes],
        "gt_box": list(r.box) if r.box is not None else None,
        "vs_gt": _gt_checks(o.question, a, o.caption_object),
        "latency_s": round(o.latency_s, 6),
        "timings": {k: round(float(v), 6) for k, v in a.timings.items()},
        "keyframes_used": len(a.keyframe_stamps),
        "keyframe_stamps": [int(s) for s in a.keyframe_stamps],
        "keyframes_in_memory": o.keyframes_in_memory,
        "bag_complete": o.bag_complete,
    }


def prediction_for(o: QuestionOutcome) -> dict[str, Any] | None:
    """The eval prediction of one question (None for a failed answer: scored as missing)."""
    r, a = o.question.record, o.answer
    if not a.success:
        return None
    if r.task in ("ground", "multi_ground"):
        pairs = sorted(((float(x.score), box6(x.box)) for x in a.objects), key=lambda t: -t[0])
        return {"id": r.id, "boxes": [b for _, b in pairs], "scores": [s for s, _ in pairs]}
    if r.task == "caption":
        pred: dict[str, Any] = {"id": r.id, "answer": a.text}
        if o.caption_object:
            pred["box"] = list(o.caption_object["box"])
        return pred
    return {"id": r.id, "answer": a.text}


def score_results(outcomes: Sequence[QuestionOutcome], *, java: bool) -> dict[str, Any]:
    """``{task: EvalResult dict}`` for each task present; a task nobody could answer gets ``error``."""
    from ros3d_agent.eval.benchmarks import EvalInputError, score_benchmark
    from ros3d_agent.eval.predictions import Prediction

    records = [o.question.record for o in outcomes]
    preds = {p["id"]: Prediction.from_dict(p) for o in outcomes if (p := prediction_for(o)) is not None}
    out: dict[str, Any] = {}
    for task in TASK_BENCHMARK:
        if not any(r.task == task for r in records):
            continue
        name = TASK_BENCHMARK[task]
        mine = {r.id for r in records if r.task == task}
        try:
            out[task] = score_benchmark(name, records, {k: v for k, v in preds.items() if k in mine}, java=java).to_dict()
        except EvalInputError as exc:
            out[task] = {"benchmark": name, "task": task, "n": sum(r.task == task for r in records), "metrics": None, "error": str(exc)}
    return out


def node_counts(counters: Mapping[str, int], keyframes: int | None = None) -> dict[str, Any]:
    """Input, drop and TF-miss counts from node-style counters (``in.*``, ``frames.*``, ``drop.*``, ``sync.*``)."""
    drops = {k[5:]: int(v) for k, v in sorted(counters.items()) if k.startswith("drop.") and v}
    sync = {k[5:]: int(v) for k, v in sorted(counters.items()) if k.startswith("sync.") and v}
    out = {
        "color_in": int(counters.get("in.color", 0)),
        "depth_in": int(counters.get("in.depth", 0)),
        "info_in": int(counters.get("in.color_info", 0)),
        "tf_in": int(counters.get("in.tf", 0)) + int(counters.get("in.tf_static", 0)),
        "frames_synced": int(counters.get("frames.synced", 0)),
        "frames_posed": int(counters.get("frames.posed", 0)),
        "candidates": int(counters.get("frames.candidates", 0)),
        "keyframes_admitted": int(counters.get("keyframes.admitted", 0)),
        "frames_dropped": sum(drops.values()),
        "dropped": drops,
        "sync_dropped": sync,
        "tf_misses": sum(v for k, v in drops.items() if k.startswith("tf_")),
        "time_jumps": int(counters.get("time_jumps", 0)),
    }
    if keyframes is not None:
        out["keyframes"] = int(keyframes)
    return out


# ---------------------------------------------------------------------------------------------------
# Identity of inputs
# ---------------------------------------------------------------------------------------------------
def tree_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 over every file under ``path`` (relative path + bytes, sorted)."""
    root = Path(path)
    h = hashlib.sha256()
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for f in files:
        h.update(str(f.relative_to(root) if f != root else f.name).encode() + b"\0")
        with f.open("rb") as fh:
            while block := fh.read(_HASH_BLOCK):
                h.update(block)
    return h.hexdigest()


def model_identity(checkpoint: str, preset: str, seed: int = 0) -> dict[str, Any]:
    """What summary.json says about the model: the checkpoint's sha256, or the random preset."""
    if checkpoint:
        return {"checkpoint": str(checkpoint), "checkpoint_sha256": tree_sha256(checkpoint), "random_weights": False}
    return {"checkpoint": None, "checkpoint_sha256": None, "preset": preset, "seed": seed, "random_weights": True}


def determinism_digest(records: Sequence[Mapping[str, Any]], counts: Mapping[str, Any]) -> str:
    """sha256 of everything a deterministic run must reproduce: answers, boxes, scores, keyframes
    used, per-question checks and the ingest counters (timings and latencies left out)."""
    keep = ("id", "ask_text", "asked_at_s", "success", "error", "answer", "boxes", "scores", "object_ids", "caption_object",
            "vs_gt", "keyframe_stamps", "keyframes_in_memory", "bag_complete")
    payload = {"results": [{k: r.get(k) for k in keep} for r in records], "counts": dict(counts)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _percentiles(values: Sequence[float]) -> dict[str, float | None]:
    from ros3d_agent.ros.diagnostics import percentile

    vals = [v for v in values if math.isfinite(v)]
    if not vals:
        return {"p50": None, "p95": None, "max": None, "n": 0}
    return {"p50": round(percentile(vals, 50), 6), "p95": round(percentile(vals, 95), 6), "max": round(max(vals), 6), "n": len(vals)}


# ---------------------------------------------------------------------------------------------------
# BEV picture
# ---------------------------------------------------------------------------------------------------
def render_replay_bev(cloud: tuple[NDArray[np.float32], NDArray[np.uint8]], records: Sequence[Mapping[str, Any]], path: Path,
                      *, size: int = 432, scale: int = 2) -> Path:
    """Draw ground-truth (green) and predicted (red) boxes of the grounding and caption questions
    on the BEV render of the fused keyframe cloud; labels are question numbers (``Q3``)."""
    import cv2

    from ros3d_agent.scene.bev import GT_COLOR, PRED_COLOR, BevConfig, BevMapping, draw_boxes, render_bev

    xyz, rgb = cloud
    gt: list[tuple[Box3D, str]] = []
    pred: list[tuple[Box3D, str]] = []
    for i, r in enumerate(records, 1):
        if r["task"] in ("ground", "multi_ground"):
            gt += [(Box3D.from_list(b), f"Q{i}") for b in r["gt_boxes"]]
            pred += [(Box3D.from_list(b), f"Q{i}") for b in r["boxes"]]
        elif r["task"] == "caption" and r.get("gt_box"):
            gt.append((Box3D.from_list(r["gt_box"]), f"Q{i}"))
            if r.get("caption_object"):
                pred.append((Box3D.from_list(r["caption_object"]["box"]), f"Q{i}"))
    cfg = BevConfig(width=size, height=size)
    pts = np.asarray(xyz, dtype=np.float64)
    lo, hi = np.quantile(pts[:, :2], cfg.bounds_quantile, axis=0), np.quantile(pts[:, :2], 1 - cfg.bounds_quantile, axis=0)
    for b, _ in gt + pred:  # keep every box in the picture
        blo, bhi = b.bounds()
        lo, hi = np.minimum(lo, blo[:2]), np.maximum(hi, bhi[:2])
    mapping = BevMapping.from_bounds(lo, hi, size, size, cfg.pad)
    bev = render_bev(xyz, rgb, cfg, mapping=mapping)
    img = draw_boxes(bev.rgb, mapping, [b for b, _ in gt], color=GT_COLOR, labels=[t for _, t in gt], scale=scale, thickness=2)
    img = draw_boxes(img, mapping, [b for b, _ in pred], color=PRED_COLOR, labels=[t for _, t in pred], scale=scale)
    cv2.putText(img, "green: ground truth   red: predicted", (6, img.shape[0] - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                (255, 255, 255), 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(img[:, :, ::-1])):
        raise OSError(f"could not write {path}")
    return path


# ---------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------
def _write_jsonl(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
    os.replace(tmp, path)


def write_outputs(run: ReplayRun, out: Path, inputs: Mapping[str, Any], *, java: bool = True) -> dict[str, Any]:
    """Write results.jsonl, predictions.jsonl, summary.json and the BEV picture(s); returns the summary.

    ``inputs`` is merged into the summary as given (bag path and hash, model identity, scenario
    options). Written even for a run cut short by a damaged bag: results so far are kept.
    """
    from ros3d_agent import __version__
    from ros3d_agent.scene.annotations.records import write_annotations

    out.mkdir(parents=True, exist_ok=True)
    records = [result_record(o) for o in run.outcomes]
    _write_jsonl(out / "results.jsonl", records)
    _write_jsonl(out / "predictions.jsonl", [p for o in run.outcomes if (p := prediction_for(o)) is not None])
    # the questions as plain annotation records (no ask_at): `ros3d-agent eval score` pairs them with predictions.jsonl
    write_annotations(out / "ground_truth.jsonl", [o.question.record for o in run.outcomes])
    if java and shutil.which("java") is None:
        java = False
        run.notes.append("java not found: METEOR is not computed (install a JRE for it)")
    metrics = score_results(run.outcomes, java=java) if run.outcomes else {}
    bev_files: list[str] = []
    if run.cloud is not None and run.cloud[0].shape[0] > 0:
        for scene_id in sorted({r["scene_id"] for r in records}) or ["scene"]:
            mine = [r for r in records if r["scene_id"] == scene_id]
            try:
                bev_files.append(str(render_replay_bev(run.cloud, mine, out / f"bev_{scene_id}.png")))
            except (ValueError, OSError) as exc:
                run.notes.append(f"BEV picture of {scene_id} not drawn: {exc}")
    elif run.outcomes:
        run.notes.append("no BEV picture: no keyframe was fused (nothing reached the keyframe memory)")
    answered = [o for o in run.outcomes if o.answer.success]
    summary: dict[str, Any] = {
        "mode": run.mode,
        "package_version": __version__,
        **dict(inputs),
        "engine": {k: v for k, v in run.engine_info.items() if isinstance(v, (str, int, float, bool, type(None)))},
        "questions": len(run.outcomes),
        "answered": len(answered),
        "failed": {o.question.id: o.answer.error for o in run.outcomes if not o.answer.success},
        "metrics": metrics,
        "latency_s": _percentiles([o.latency_s for o in run.outcomes]),
        "model_time_s": _percentiles([o.answer.timings["total"] for o in answered if "total" in o.answer.timings]),
        "latency_by_task_s": {t: _percentiles([o.latency_s for o in run.outcomes if o.question.task == t])
                              for t in TASK_BENCHMARK if any(o.question.task == t for o in run.outcomes)},
        "node": run.counts,
        "drops": {**run.counts.get("dropped", {}), **{f"sync.{k}": v for k, v in run.counts.get("sync_dropped", {}).items()}},
        "tf_misses": run.counts.get("tf_misses", 0),
        "bag_error": run.bag_error,
        "bag_complete": run.bag_error is None,
        "bev": bev_files,
        "wall_s": round(run.wall_s, 3),
        "determinism_digest": determinism_digest(records, run.counts) if run.mode == "offline" else None,
        "notes": list(dict.fromkeys(run.notes)),
        **run.extra,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    return summary


# ---------------------------------------------------------------------------------------------------
# Table
# ---------------------------------------------------------------------------------------------------
def _short(text: str, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _check_text(r: Mapping[str, Any]) -> str:
    v = r.get("vs_gt") or {}
    if not r["success"]:
        return "failed"
    if "em" in v:
        return "EM " + ("yes" if v["em"] else "no") + f" (gt: {_short(', '.join(r['gt_answers']), 24)})"
    if r["task"] == "multi_ground":
        return f"F1@.25 {v['f1@0.25']:.2f}  F1@.5 {v['f1@0.5']:.2f} ({v['n_pred']} pred / {v['n_gt']} gt)"
    if "iou" in v:
        return f"IoU {v['iou']:.3f}"
    return ""


def format_table(records: Sequence[Mapping[str, Any]], summary: Mapping[str, Any]) -> str:
    """The readable report: one line per question, then metrics per task, latency and drops."""
    lines = [f"{'#':>3}  {'task':<12} {'question':<44} {'answer':<30} {'vs ground truth':<38} {'latency':>8}"]
    lines.append("-" * len(lines[0]))
    for i, r in enumerate(records, 1):
        if not r["success"]:
            ans = "FAILED: " + r["error"]
        elif r["task"] in ("ground", "multi_ground"):
            ans = f"{len(r['boxes'])} box(es)" + (f", best {r['scores'][0]:.2f}" if r["scores"] else "")
        else:
            ans = r["answer"] or "(empty)"
        lines.append(f"{i:>3}  {r['task']:<12} {_short(r['question'], 44):<44} {_short(ans, 30):<30} "
                     f"{_short(_check_text(r), 38):<38} {r['latency_s']:>7.3f}s")
    lines.append("")
    for task, res in (summary.get("metrics") or {}).items():
        if res.get("metrics") is None:
            lines.append(f"{task:<12} ({res['benchmark']}, n={res['n']}): not scored: {res.get('error', '')}")
            continue
        ms = ", ".join(f"{k} {v:.1f}" for k, v in res["metrics"].items() if v is not None)
        lines.append(f"{task:<12} ({res['benchmark']}, n={res['n']}): {ms}")
        lines += [f"{'':<12}   ({_short(note, 110)})" for note in res.get("notes", [])[:2]]
    lat = summary.get("latency_s") or {}
    if lat.get("n"):
        lines.append(f"latency: p50 {lat['p50']:.3f} s, p95 {lat['p95']:.3f} s over {lat['n']} question(s)")
    node = summary.get("node") or {}
    drops = summary.get("drops") or {}
    drop_txt = ", ".join(f"{k} {v}" for k, v in drops.items()) or "none"
    lines.append(f"frames: {node.get('frames_synced', 0)} synchronised, {node.get('frames_posed', 0)} placed by TF, "
                 f"{node.get('keyframes_admitted', 0)} keyframes; dropped: {drop_txt}; TF misses {summary.get('tf_misses', 0)}")
    if summary.get("bag_error"):
        lines.append(f"BAG ERROR: {summary['bag_error']}")
    return "\n".join(lines)
