"""Exact match for the QA benchmarks: ScanQA EM, SQA3D EM, and EM-R ("refined").

Three different definitions share the name "EM" in the papers (anchors-3dlmm §1.3, §8); they are
kept apart here because mixing them moves scores by several points:

* **ScanQA EM** (Video-3D-LLM ``eval_scanqa.py``): the raw prediction string is one of the raw
  reference answers. No case folding, no trimming: ``"Red."`` does not match ``"red"``.
* **SQA3D EM** (Video-3D-LLM / Ross3D ``eval_sqa3d.py``): prediction and reference are equal after
  :func:`~ros3d_agent.eval.text_normalization.sqa3d_clean_answer`.
* **EM-R** (Ross3D ``eval_sqa3d.py`` ``answer_match``, "refer to LEO"): after the same clean-up, the
  prediction is one of the references, or, with all whitespace removed, the prediction is a
  substring of a reference or a reference is a substring of the prediction. For ScanQA, EM-R is
  LEO's ScanQA evaluator: clean-up of both sides, then the same refined match (Video-3D-LLM's
  ScanQA script reports no EM-R).

A quirk kept on purpose: with the substring rule, an *empty* (cleaned) prediction is contained in
every reference, so it counts as EM-R-correct, exactly as in the reference code. Scorers count
empty answers separately so the effect is visible. Missing predictions are never treated as empty:
they are wrong under every definition.

Per-sample functions return booleans; :func:`qa_scores` returns percentages.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .text_normalization import sqa3d_clean_answer, squeeze_whitespace

__all__ = [
    "QAMatch",
    "exact_match_raw",
    "refined_match",
    "match_scanqa",
    "match_sqa3d",
    "qa_scores",
]


@dataclass(frozen=True)
class QAMatch:
    """Whether one prediction is correct under EM and under EM-R (EM implies EM-R)."""

    em: bool
    em_r: bool


def exact_match_raw(prediction: str, answers: Sequence[str]) -> bool:
    """ScanQA EM: ``prediction in answers`` on the raw strings."""
    return prediction in answers


def refined_match(prediction: str, answers: Sequence[str]) -> QAMatch:
    """Ross3D's ``answer_match`` on already-normalised strings: exact first, then whitespace-free containment.

    Exact membership is tested against *all* references before any containment test, so a later
    exact reference is never shadowed by an earlier partial one.
    """
    if prediction in answers:
        return QAMatch(True, True)
    p = squeeze_whitespace(prediction)
    for gt in answers:
        g = squeeze_whitespace(gt)
        if p in g or g in p:
            return QAMatch(False, True)
    return QAMatch(False, False)


def match_scanqa(prediction: str, answers: Sequence[str]) -> QAMatch:
    """ScanQA: EM on raw strings (Video-3D-LLM); EM-R after LEO clean-up of both sides (LEO's ScanQA evaluator)."""
    em = exact_match_raw(prediction, answers)
    refined = refined_match(sqa3d_clean_answer(prediction), [sqa3d_clean_answer(a) for a in answers])
    return QAMatch(em, em or refined.em_r)


def match_sqa3d(prediction: str, answers: Sequence[str]) -> QAMatch:
    """SQA3D: EM and EM-R after LEO clean-up of prediction and references (SQA3D has one reference)."""
    return refined_match(sqa3d_clean_answer(prediction), [sqa3d_clean_answer(a) for a in answers])


Matcher = Callable[[str, Sequence[str]], QAMatch]


def qa_scores(
    predictions: Sequence[str | None], references: Sequence[Sequence[str]], matcher: Matcher
) -> dict[str, float]:
    """``{"EM": %, "EM-R": %}`` over all samples; a ``None`` prediction (missing) is wrong.

    Raises:
        ValueError: the two sequences differ in length, are empty, or a sample has no reference.
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists")
    if not references:
        raise ValueError("no samples to score")
    em = em_r = 0
    for i, (pred, refs) in enumerate(zip(predictions, references)):
        if not refs:
            raise ValueError(f"sample {i}: no reference answer")
        if pred is None:
            continue
        m = matcher(pred, refs)
        em += m.em
        em_r += m.em_r
    n = len(references)
    return {"EM": 100.0 * em / n, "EM-R": 100.0 * em_r / n}
