"""ScanRefer Acc@k and Multi3DRefer F1@k on boxes and IoU matrices with hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ros3d_agent.eval.grounding_metrics import (
    accuracy_scores,
    f1_scores,
    match_f1,
    multi_target_f1,
    select_multi_targets,
    select_single_target,
    top1_iou,
)

UNIT = [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
THIRD = [0.5, 0.0, 0.0, 1.0, 1.0, 1.0]  # IoU with UNIT: 0.5 / 1.5 = 1/3
HALF = [0.0, 0.0, 0.0, 2.0, 1.0, 1.0]  # contains UNIT, twice its volume: IoU exactly 0.5
FAR = [9.0, 9.0, 9.0, 1.0, 1.0, 1.0]


def test_top1_iou_uses_the_first_box_only():
    assert top1_iou([UNIT], UNIT) == 1.0
    assert top1_iou([THIRD], UNIT) == pytest.approx(1 / 3)
    assert top1_iou([HALF], UNIT) == 0.5
    assert top1_iou([FAR, UNIT], UNIT) == 0.0  # the right box ranked second does not count
    assert top1_iou([], UNIT) == 0.0
    assert top1_iou(None, UNIT) == 0.0


def test_accuracy_thresholds_are_inclusive():
    # IoU 1/3 passes 0.25 but not 0.5; IoU exactly 0.5 passes 0.5
    ious = [top1_iou([b], UNIT) for b in (UNIT, THIRD, HALF, FAR)]
    assert accuracy_scores(ious) == {"Acc@0.25": 75.0, "Acc@0.5": 50.0}
    assert accuracy_scores([1 / 3]) == {"Acc@0.25": 100.0, "Acc@0.5": 0.0}
    with pytest.raises(ValueError):
        accuracy_scores([])


def test_multi3drefer_two_gt_three_predictions():
    g1, g2 = UNIT, [5.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    p1 = g1  # IoU 1 with g1
    p2 = [5.5, 0.0, 0.0, 1.0, 1.0, 1.0]  # IoU 1/3 with g2
    p3 = FAR  # matches nothing
    # matched pairs p1-g1 (1.0), p2-g2 (1/3), p3-padding: TP@0.25 = 2, TP@0.5 = 1
    f25, f50 = multi_target_f1([p1, p2, p3], [g1, g2])
    assert f25 == pytest.approx(2 * 2 / (3 + 2))
    assert f50 == pytest.approx(2 * 1 / (3 + 2))


def test_zero_target_handling():
    assert multi_target_f1([], []) == (1.0, 1.0)  # "no such object" predicted for a zero-target query
    assert multi_target_f1([UNIT], []) == (0.0, 0.0)  # a box predicted for a zero-target query
    assert multi_target_f1([], [UNIT, THIRD]) == (0.0, 0.0)  # nothing predicted for a real target
    assert match_f1(np.zeros((0, 0))) == (1.0, 1.0)


def test_hungarian_maximises_total_iou():
    # greedy (best IoU first) would pair p0-g0 (0.9) and leave p1 with 0.0: TP@0.5 = 1
    # the assignment maximising total IoU pairs p0-g1 (0.5) and p1-g0 (0.6): TP@0.5 = 2
    assert match_f1([[0.9, 0.5], [0.6, 0.0]]) == (1.0, 1.0)


def test_matching_ignores_the_threshold_as_the_reference_does():
    # sum-of-IoU optimum is the diagonal (0.9 + 0.0 > 0.3 + 0.3), leaving one TP at 0.25 although a
    # 2-pair matching above 0.25 exists: F1@0.25 = 2*1/4
    assert match_f1([[0.9, 0.3], [0.3, 0.0]]) == (0.5, 0.5)


def test_iou_is_compared_in_float32_like_the_reference():
    just_below = 0.25 - 1e-10  # rounds to 0.25 in float32
    assert np.float32(just_below) == np.float32(0.25)
    assert match_f1([[just_below]]) == (1.0, 0.0)


def test_f1_scores_is_the_mean_over_queries_in_percent():
    assert f1_scores([(0.8, 0.4), (1.0, 1.0)]) == {"F1@0.25": pytest.approx(90.0), "F1@0.5": pytest.approx(70.0)}
    with pytest.raises(ValueError):
        f1_scores([])


def test_select_multi_targets_cumulative_probability():
    t = 0.07
    # exp(score / t) = 6, 3, 1 for the proposals and 2 for the zero-target: probabilities 6/12, 3/12, 1/12
    scores = [t * math.log(6), t * math.log(3), 0.0]
    zero = t * math.log(2)
    assert select_multi_targets(scores, zero, threshold=0.4) == [0]
    assert select_multi_targets(scores, zero, threshold=0.6) == [0, 1]
    assert select_multi_targets(scores, zero, threshold=0.8) == [0, 1, 2]
    assert select_multi_targets(scores, zero, threshold=0.95) == [0, 1, 2]  # never reached: everything
    assert select_multi_targets([t * math.log(3), t * math.log(6)], zero, threshold=0.4) == [1]
    assert select_multi_targets(scores, 1.0) == []  # zero-target wins: empty set
    assert select_multi_targets([], 1.0) == []


def test_select_single_target():
    assert select_single_target([0.1, 0.7, 0.7, 0.2]) == 1  # first of a tie
    assert select_single_target([0.1, 0.2], zero_target_score=5.0) == 1
    with pytest.raises(ValueError):
        select_single_target([])


def test_bad_iou_matrix_is_rejected():
    with pytest.raises(ValueError, match="matrix"):
        match_f1([0.5, 0.5])
