"""Benchmark registry: name → annotation task → metric functions → one result object.

========  ==============  ==========================================================================
name      GT task         metrics (all in percent, see below)
========  ==============  ==========================================================================
scanqa    ``qa``          EM (raw), EM-R (LEO), CIDEr, BLEU-1..4, METEOR, ROUGE-L
sqa3d     situated_qa     EM (LEO clean-up), EM-R; per question type (``meta.qtype``)
scanrefer ``ground``      Acc@0.25, Acc@0.5 (top-1 box); per ``meta.eval_type`` when present
multi3d.. multi_ground    F1@0.25, F1@0.5 (Hungarian); per ``meta.eval_type`` when present
scan2cap  ``caption``     CIDEr@0.5, BLEU-1..4@0.5, METEOR@0.5, ROUGE-L@0.5
========  ==============  ==========================================================================

**Units.** Every metric is reported ×100, as the papers print them: EM, Acc and F1 are percentages,
CIDEr is ×100 (a CIDEr of 1.021 reads 102.1), BLEU/METEOR/ROUGE-L are ×100. ``None`` means "not
computed" (METEOR without Java) and comes with a note; it is never a silent 0.

**Alignment.** Ground truth is the annotation JSONL; records of other tasks in the same file are
ignored. Every GT record of the task is scored: a GT id without a prediction counts as wrong (EM 0,
IoU 0, F1 0, empty caption) and is listed in ``missing_ids``. Predictions whose id is not a GT id of
the task are ignored and listed in ``extra_ids`` (a predictions file may cover several
benchmarks). ``strict=True`` turns both into errors. A predictions file that matches no GT id at all
is always an error (it is the wrong file).

Per-benchmark definitions live in :mod:`.qa_metrics`, :mod:`.grounding_metrics`,
:mod:`.caption_metrics` and :mod:`.caption_grounded`. The grounding and caption modules (numpy,
scipy, pycocoevalcap) are imported only when such a benchmark is scored, so the CLI stays quick to start.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .predictions import Prediction, read_predictions
from .qa_metrics import Matcher, match_scanqa, match_sqa3d
from .text_normalization import sqa3d_clean_answer, squeeze_whitespace

if TYPE_CHECKING:
    from ros3d_agent.scene.annotations.records import AnnotationRecord

__all__ = [
    "UNITS",
    "Benchmark",
    "BENCHMARKS",
    "BENCHMARK_NAMES",
    "EvalInputError",
    "EvalResult",
    "score_benchmark",
    "score_files",
]

UNITS = "percent"
#: how many missing / extra ids a result lists (the counts are always complete)
MAX_LISTED_IDS = 20


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: which annotation task it scores, what it reports, and how results are broken down."""

    name: str
    task: str
    metrics: tuple[str, ...]
    type_key: str | None
    description: str


_CAPTION_KEYS = ("CIDEr", "BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L")

BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark("scanqa", "qa", ("EM", "EM-R", *_CAPTION_KEYS), None,
                  "ScanQA val: raw exact match, LEO refined match, caption metrics vs all answers"),
        Benchmark("sqa3d", "situated_qa", ("EM", "EM-R"), "qtype",
                  "SQA3D test: exact and refined match after LEO's answer clean-up"),
        Benchmark("scanrefer", "ground", ("Acc@0.25", "Acc@0.5"), "eval_type",
                  "ScanRefer val: top-1 box IoU >= 0.25 / 0.5"),
        Benchmark("multi3drefer", "multi_ground", ("F1@0.25", "F1@0.5"), "eval_type",
                  "Multi3DRefer val: F1 of the predicted box set, Hungarian matching on IoU"),
        Benchmark("scan2cap", "caption", tuple(f"{k}@0.5" for k in _CAPTION_KEYS), None,
                  "Scan2Cap val: caption metrics, a caption counts only if its box has IoU >= 0.5"),
    )
}
BENCHMARK_NAMES: tuple[str, ...] = tuple(BENCHMARKS)


class EvalInputError(ValueError):
    """The inputs cannot be scored as asked (wrong task, no overlap, a field the benchmark needs is absent)."""


@dataclass
class EvalResult:
    """What ``eval score`` prints: metrics in percent, the sample counts, and anything worth knowing."""

    benchmark: str
    task: str
    n: int
    metrics: dict[str, float | None]
    missing_ids: list[str] = field(default_factory=list)
    extra_ids: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    per_type: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON form; the id lists are cut to the first :data:`MAX_LISTED_IDS` (the counts are complete)."""
        out: dict[str, Any] = {
            "benchmark": self.benchmark,
            "task": self.task,
            "units": UNITS,
            "n": self.n,
            "missing": len(self.missing_ids),
            "extra": len(self.extra_ids),
            "metrics": dict(self.metrics),
            "counts": dict(self.counts),
        }
        if self.per_type:
            out["per_type"] = self.per_type
        out["missing_ids"] = self.missing_ids[:MAX_LISTED_IDS]
        out["extra_ids"] = self.extra_ids[:MAX_LISTED_IDS]
        out["notes"] = list(self.notes)
        return out


@dataclass
class _Scored:
    """A scorer's output before the common bookkeeping is added."""

    metrics: dict[str, float | None]
    per_sample: dict[str, list[float]] = field(default_factory=dict)  # metric -> value in [0, 1] per pair
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


Pair = tuple["AnnotationRecord", Prediction | None]


def _need(pred: Prediction, attr: str, benchmark: str) -> Any:
    value = getattr(pred, attr)
    if value is None:
        raise EvalInputError(f"prediction {pred.id!r} has no {attr!r}, which {benchmark} scores")
    return value


def _qa(pairs: Sequence[Pair], matcher: Matcher, benchmark: str) -> tuple[list[float], list[float], int]:
    em: list[float] = []
    em_r: list[float] = []
    empty = 0
    for rec, pred in pairs:
        if pred is None:
            em.append(0.0)
            em_r.append(0.0)
            continue
        answer = _need(pred, "answer", benchmark)
        empty += not squeeze_whitespace(sqa3d_clean_answer(answer))  # where EM-R's substring rule always holds
        m = matcher(answer, rec.answers)
        em.append(float(m.em))
        em_r.append(float(m.em_r))
    return em, em_r, empty


def _mean_pct(values: Sequence[float]) -> float:
    return 100.0 * sum(values) / len(values)


def _score_scanqa(pairs: Sequence[Pair], java: bool) -> _Scored:
    from .caption_metrics import caption_scores
    from .text_normalization import strip_trailing_periods

    em, em_r, empty = _qa(pairs, match_scanqa, "scanqa")
    refs = {rec.id: list(rec.answers) for rec, _ in pairs}
    hyps = {rec.id: strip_trailing_periods(pred.answer) if pred is not None else "" for rec, pred in pairs}
    caps = caption_scores(refs, hyps, java=java, tokenize="none")
    notes = list(caps.notes)
    if empty:
        notes.append(f"{empty} answer(s) empty after clean-up: correct under EM-R (an empty string is a substring "
                     "of every answer, as in the reference)")
    if any(p is None for _, p in pairs):
        notes.append("missing predictions enter the caption metrics as the empty string")
    return _Scored(metrics={"EM": _mean_pct(em), "EM-R": _mean_pct(em_r), **caps.metrics},
                   per_sample={"EM": em, "EM-R": em_r}, counts={"empty_answers": empty}, notes=notes)


def _score_sqa3d(pairs: Sequence[Pair], java: bool) -> _Scored:
    em, em_r, empty = _qa(pairs, match_sqa3d, "sqa3d")
    notes = []
    if empty:
        notes.append(f"{empty} answer(s) empty after clean-up: correct under EM-R (an empty string is a substring "
                     "of every answer, as in the reference)")
    return _Scored(metrics={"EM": _mean_pct(em), "EM-R": _mean_pct(em_r)}, per_sample={"EM": em, "EM-R": em_r},
                   counts={"empty_answers": empty}, notes=notes)


def _score_scanrefer(pairs: Sequence[Pair], java: bool) -> _Scored:
    from .grounding_metrics import THRESHOLDS, accuracy_scores, top1_iou

    ious: list[float] = []
    empty = 0
    for rec, pred in pairs:
        if pred is None:
            ious.append(0.0)
            continue
        boxes = _need(pred, "boxes", "scanrefer")
        empty += not boxes
        ious.append(top1_iou(boxes, rec.boxes[0]))
    per_sample = {f"Acc@{t:g}": [float(i >= t) for i in ious] for t in THRESHOLDS}
    notes = [f"{empty} prediction(s) with no box: scored IoU 0"] if empty else []
    return _Scored(metrics=dict(accuracy_scores(ious)), per_sample=per_sample, counts={"empty_predictions": empty}, notes=notes)


def _score_multi3drefer(pairs: Sequence[Pair], java: bool) -> _Scored:
    from .grounding_metrics import THRESHOLDS, f1_scores, multi_target_f1

    f1: list[tuple[float, ...]] = []
    empty = zero_target = 0
    for rec, pred in pairs:
        zero_target += not rec.boxes
        if pred is None:
            f1.append(tuple(0.0 for _ in THRESHOLDS))  # missing is wrong, even for a zero-target query
            continue
        boxes = _need(pred, "boxes", "multi3drefer")
        empty += not boxes
        f1.append(multi_target_f1(boxes, rec.boxes))
    per_sample = {f"F1@{t:g}": [v[i] for v in f1] for i, t in enumerate(THRESHOLDS)}
    return _Scored(metrics=dict(f1_scores(f1)), per_sample=per_sample,
                   counts={"zero_target_gt": zero_target, "empty_predictions": empty})


def _score_scan2cap(pairs: Sequence[Pair], java: bool) -> _Scored:
    from .caption_grounded import grounded_caption_scores

    refs = {rec.id: list(rec.answers) for rec, _ in pairs}
    gt_boxes = {rec.id: rec.box for rec, _ in pairs}
    captions = {rec.id: _need(pred, "answer", "scan2cap") for rec, pred in pairs if pred is not None}
    pred_boxes = {rec.id: pred.box for rec, pred in pairs if pred is not None}
    res = grounded_caption_scores(refs, gt_boxes, captions, pred_boxes, iou_threshold=0.5, java=java)
    notes = list(res.notes)
    if res.misses or res.no_box or res.missing:
        notes.append(f"{res.misses} caption(s) with box IoU < 0.5, {res.no_box} without a box and {res.missing} missing "
                     "were scored as the empty caption ('sos  eos'): CIDEr 0, small non-zero BLEU/METEOR/ROUGE-L, "
                     "as in the reference")
    return _Scored(metrics=res.metrics,
                   counts={"hits": res.hits, "misses": res.misses, "no_box": res.no_box}, notes=notes)


_SCORERS: dict[str, Callable[[Sequence[Pair], bool], _Scored]] = {
    "scanqa": _score_scanqa,
    "sqa3d": _score_sqa3d,
    "scanrefer": _score_scanrefer,
    "multi3drefer": _score_multi3drefer,
    "scan2cap": _score_scan2cap,
}


def _per_type(pairs: Sequence[Pair], key: str, per_sample: Mapping[str, list[float]]) -> dict[str, dict[str, float]]:
    """Per-sample metrics averaged within each value of ``meta[key]`` (``{}`` when no record has the key)."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, (rec, _) in enumerate(pairs):
        value = rec.meta.get(key)
        groups[str(value) if value is not None else "unlabelled"].append(i)
    if set(groups) <= {"unlabelled"}:
        return {}
    out: dict[str, dict[str, float]] = {}
    for name in sorted(groups):
        idx = groups[name]
        row: dict[str, float] = {"n": len(idx)}
        for metric, values in per_sample.items():
            row[metric] = _mean_pct([values[i] for i in idx])
        out[name] = row
    return out


def score_benchmark(
    name: str,
    records: Iterable[AnnotationRecord],
    predictions: Mapping[str, Prediction],
    *,
    java: bool = True,
    strict: bool = False,
) -> EvalResult:
    """Score ``predictions`` against the GT ``records`` of benchmark ``name`` (see the module docstring).

    Args:
        java: allow Java-based scorers (METEOR); ``False`` reports METEOR as ``None`` with a note.
        strict: make missing and extra prediction ids an error instead of a report.

    Raises:
        EvalInputError: unknown benchmark, no GT records of its task, no prediction matching any GT
            id, a prediction without the field the benchmark needs, or (strict) missing/extra ids.
    """
    if name not in BENCHMARKS:
        raise EvalInputError(f"unknown benchmark {name!r}; known: {list(BENCHMARK_NAMES)}")
    bench = BENCHMARKS[name]
    all_records = list(records)
    gt = [r for r in all_records if r.task == bench.task]
    if not gt:
        tasks = sorted({r.task for r in all_records})
        raise EvalInputError(f"{name} scores task {bench.task!r}, but the ground truth has no such record (tasks present: {tasks})")
    notes: list[str] = []
    counts: dict[str, int] = {}
    unscorable: list[AnnotationRecord] = []
    if bench.task == "multi_ground":
        unscorable = [r for r in gt if r.meta.get("boxes_missing")]
        if unscorable:
            gt = [r for r in gt if not r.meta.get("boxes_missing")]
            counts["gt_boxes_missing"] = len(unscorable)
            notes.append(f"{len(unscorable)} GT record(s) left out: their target boxes were not found at import "
                         "(meta.boxes_missing), so their empty box list is not 'no such object'")
            if not gt:
                raise EvalInputError(f"no {bench.task!r} GT record has its boxes (all have meta.boxes_missing)")

    gt_ids = {r.id for r in gt} | {r.id for r in unscorable}  # a prediction for a left-out record is not "extra"
    missing = [r.id for r in gt if r.id not in predictions]
    extra = [pid for pid in predictions if pid not in gt_ids]
    if len(missing) == len(gt):
        raise EvalInputError(f"none of the {len(predictions)} prediction id(s) matches one of the {len(gt)} {bench.task!r} GT ids "
                             f"(e.g. prediction {next(iter(predictions), None)!r}, GT {gt[0].id!r}); wrong file or benchmark?")
    if strict and (missing or extra):
        raise EvalInputError(f"strict: {len(missing)} GT id(s) without a prediction (e.g. {missing[:3]}), "
                             f"{len(extra)} prediction id(s) not in the {bench.task!r} GT (e.g. {extra[:3]})")

    pairs: list[Pair] = [(r, predictions.get(r.id)) for r in gt]
    scored = _SCORERS[name](pairs, java)
    per_type = _per_type(pairs, bench.type_key, scored.per_sample) if bench.type_key and scored.per_sample else {}
    if missing:
        notes.append(f"{len(missing)} GT id(s) without a prediction were scored as wrong (see missing_ids)")
    if extra:
        notes.append(f"{len(extra)} prediction id(s) are not {bench.task!r} GT ids and were ignored (see extra_ids)")
    metrics = {k: scored.metrics[k] for k in bench.metrics}
    return EvalResult(
        benchmark=name,
        task=bench.task,
        n=len(gt),
        metrics=metrics,
        missing_ids=missing,
        extra_ids=extra,
        counts={**counts, **scored.counts},
        per_type=per_type,
        notes=notes + scored.notes,
    )


def score_files(
    name: str,
    pred_path: str | os.PathLike[str],
    gt_path: str | os.PathLike[str],
    *,
    java: bool = True,
    strict: bool = False,
) -> EvalResult:
    """Read a predictions JSONL and an annotation JSONL and score them (:func:`score_benchmark`).

    Raises:
        PredictionError / AnnotationError: a file is missing or malformed (messages name file:line).
        EvalInputError: as :func:`score_benchmark`.
    """
    from ros3d_agent.scene.annotations.records import read_annotations

    if name not in BENCHMARKS:  # before reading possibly large files
        raise EvalInputError(f"unknown benchmark {name!r}; known: {list(BENCHMARK_NAMES)}")
    records = read_annotations(gt_path)
    predictions = read_predictions(pred_path)
    if not predictions:
        raise EvalInputError(f"{pred_path}: no predictions in the file")
    return score_benchmark(name, records, predictions, java=java, strict=strict)
