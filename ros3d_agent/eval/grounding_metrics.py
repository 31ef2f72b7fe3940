"""Grounding metrics: ScanRefer Acc@k and Multi3DRefer F1@k, as the reference evaluations compute them.

Boxes are ``[cx, cy, cz, sx, sy, sz]`` and IoU is axis-aligned 3D IoU
(:mod:`ros3d_agent.scene.iou`), which is what the reference ``box3d_iou`` computes for the
axis-aligned boxes the benchmarks use.

* **ScanRefer Acc@k** (Video-3D-LLM ``eval_scanrefer.py``): mean over queries of
  ``1[IoU(top-1 predicted box, GT box) >= k]``; a query without a predicted box scores 0.
* **Multi3DRefer F1@k** (``eval_multi3drefer.py`` ``evaluate_one_query``): per query, if both the
  predicted set and the GT set are empty F1 = 1; if exactly one is empty F1 = 0; otherwise the
  P×G IoU matrix is zero-padded to square, matched one-to-one by the Hungarian algorithm
  *maximising total IoU* (the matching does not depend on k), a matched pair is a true positive
  when its IoU >= k, and F1 = 2·TP / (P + G). F1@k is the mean over queries. Like the reference,
  the IoU matrix is held in float32, so the threshold test sees the same rounded values.

The selection rules that turn proposal scores into predictions (argmax for ScanRefer;
softmax / cumulative-probability threshold for Multi3DRefer) belong to whoever writes the
predictions file; they are here too (:func:`select_single_target`, :func:`select_multi_targets`) so
that the runner applies the reference rule instead of re-deriving it.

Per-query functions return fractions; the ``*_scores`` aggregates return percentages.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from ros3d_agent.scene.iou import aabb_iou, pairwise_aabb_iou

__all__ = [
    "THRESHOLDS",
    "top1_iou",
    "accuracy_scores",
    "match_f1",
    "multi_target_f1",
    "f1_scores",
    "select_single_target",
    "select_multi_targets",
]

#: the IoU thresholds every grounding benchmark reports
THRESHOLDS: tuple[float, ...] = (0.25, 0.5)

Box = Sequence[float]


def _key(prefix: str, t: float) -> str:
    return f"{prefix}@{t:g}"


def top1_iou(pred_boxes: Sequence[Box] | None, gt_box: Box) -> float:
    """IoU of the best (first) predicted box with the GT box; 0 when nothing was predicted."""
    if not pred_boxes:
        return 0.0
    return aabb_iou(pred_boxes[0], gt_box)


def accuracy_scores(ious: Sequence[float], thresholds: Sequence[float] = THRESHOLDS) -> dict[str, float]:
    """``{"Acc@0.25": %, "Acc@0.5": %}``: share of queries whose top-1 IoU is >= each threshold."""
    if len(ious) == 0:
        raise ValueError("no queries to score")
    arr = np.asarray(ious, dtype=np.float64)
    return {_key("Acc", t): 100.0 * float(np.mean(arr >= t)) for t in thresholds}


def match_f1(iou: ArrayLike, thresholds: Sequence[float] = THRESHOLDS) -> tuple[float, ...]:
    """F1 at each threshold for one query from its (P predicted × G ground-truth) IoU matrix.

    Empty/empty is 1, one side empty is 0 (the reference's zero-target handling); otherwise
    Hungarian matching on IoU, then thresholding of the matched pairs (see the module docstring).
    """
    from scipy.optimize import linear_sum_assignment

    m = np.asarray(iou, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"iou: expected a (P, G) matrix, got shape {m.shape}")
    n_pred, n_gt = m.shape
    if n_pred == 0 and n_gt == 0:
        return tuple(1.0 for _ in thresholds)
    if n_pred == 0 or n_gt == 0:
        return tuple(0.0 for _ in thresholds)
    size = max(n_pred, n_gt)
    square = np.zeros((size, size), dtype=np.float32)
    square[:n_pred, :n_gt] = m
    rows, cols = linear_sum_assignment(-square)
    matched = square[rows[:n_pred], cols[:n_pred]]  # rows == arange(size): row i is prediction i
    return tuple(2.0 * int(np.count_nonzero(matched >= t)) / (n_pred + n_gt) for t in thresholds)


def multi_target_f1(
    pred_boxes: Sequence[Box], gt_boxes: Sequence[Box], thresholds: Sequence[float] = THRESHOLDS
) -> tuple[float, ...]:
    """F1 at each threshold for one Multi3DRefer query (``pred_boxes`` is the whole predicted set)."""
    if len(pred_boxes) and len(gt_boxes):
        iou = pairwise_aabb_iou(np.asarray(pred_boxes, dtype=np.float64), np.asarray(gt_boxes, dtype=np.float64))
    else:
        iou = np.zeros((len(pred_boxes), len(gt_boxes)))
    return match_f1(iou, thresholds)


def f1_scores(per_query: Sequence[Sequence[float]], thresholds: Sequence[float] = THRESHOLDS) -> dict[str, float]:
    """``{"F1@0.25": %, "F1@0.5": %}``: the mean of per-query F1 values (one tuple per query)."""
    if len(per_query) == 0:
        raise ValueError("no queries to score")
    arr = np.asarray(per_query, dtype=np.float64).reshape(len(per_query), len(thresholds))
    return {_key("F1", t): 100.0 * float(arr[:, i].mean()) for i, t in enumerate(thresholds)}


def select_single_target(proposal_scores: Sequence[float], zero_target_score: float | None = None) -> int:
    """ScanRefer's pick: the highest-scoring proposal. The zero-target never wins a ScanRefer query
    (every query has a target), so it is ignored (``model_scanrefer.py``); ties go to the first."""
    if len(proposal_scores) == 0:
        raise ValueError("no proposals to select from")
    del zero_target_score  # documented as ignored: a ScanRefer query always has a target
    return int(np.argmax(np.asarray(proposal_scores, dtype=np.float64)))


def select_multi_targets(
    proposal_scores: Sequence[float],
    zero_target_score: float,
    *,
    threshold: float = 0.4,
    temperature: float = 0.07,
) -> list[int]:
    """Multi3DRefer's pick (``eval_multi3drefer.py``): indices of the predicted set, most probable first.

    If the zero-target scores highest (ties go to the first proposal, as in an argmax over
    ``[proposals..., zero_target]``), the set is empty. Otherwise probabilities are
    ``softmax([proposals..., zero_target] / temperature)`` without the zero-target entry, and
    proposals are taken in descending probability until their cumulative probability reaches
    ``threshold``. The code default is 0.4; the paper's appendix says 0.25 (anchors-3dlmm §1.3).
    """
    s = np.asarray(list(proposal_scores) + [zero_target_score], dtype=np.float64)
    if s.size == 1:
        return []
    if int(np.argmax(s)) == s.size - 1:
        return []
    z = s / temperature
    p = np.exp(z - z.max())
    p = p[:-1] / p.sum()
    order = np.argsort(-p, kind="stable")
    chosen: list[int] = []
    total = 0.0
    for idx in order:
        chosen.append(int(idx))
        total += float(p[idx])
        if total >= threshold:
            break
    return chosen
