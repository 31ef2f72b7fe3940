"""Axis-aligned and oriented 3D IoU against hand-computed values."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from ros3d_agent.scene import Box3D, aabb_iou, box_iou, pairwise_aabb_iou
from ros3d_agent.scene.iou import clip_convex_polygon, polygon_area

OCTAGON = 2 * (math.sqrt(2) - 1)  # unit square ∩ the same square rotated 45° about its centre


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ([0, 0, 0, 1, 1, 1], [0.5, 0, 0, 1, 1, 1], 1 / 3),
        ([0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 1], 1.0),
        ([0, 0, 0, 1, 1, 1], [0, 0, 0, 0.5, 0.5, 0.5], 0.125),
        ([0, 0, 0, 1, 1, 1], [1, 0, 0, 1, 1, 1], 0.0),  # touching faces
        ([0, 0, 0, 1, 1, 1], [5, 5, 5, 1, 1, 1], 0.0),
        ([0, 0, 0, 2, 2, 2], [1, 1, 1, 2, 2, 2], 1 / 15),  # 1 / (8 + 8 - 1)
    ],
)
def test_aabb_iou_hand_values(a, b, expected):
    assert aabb_iou(a, b) == pytest.approx(expected, abs=1e-15)
    assert aabb_iou(b, a) == pytest.approx(expected, abs=1e-15)


def test_pairwise_matches_scalar_and_has_right_shape():
    rng = np.random.default_rng(0)
    A = np.hstack([rng.uniform(-1, 1, (7, 3)), rng.uniform(0.1, 1.5, (7, 3))])
    B = np.hstack([rng.uniform(-1, 1, (5, 3)), rng.uniform(0.1, 1.5, (5, 3))])
    M = pairwise_aabb_iou(A, B)
    assert M.shape == (7, 5)
    for i in range(7):
        for j in range(5):
            assert M[i, j] == pytest.approx(aabb_iou(A[i], B[j]))
    assert np.all((M >= 0) & (M <= 1))
    assert pairwise_aabb_iou(np.empty((0, 6)), B).shape == (0, 5)


def test_degenerate_boxes_give_zero_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert aabb_iou([0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]) == 0.0


def test_pairwise_rejects_bad_shape():
    with pytest.raises(ValueError, match="N, 6"):
        pairwise_aabb_iou(np.zeros((2, 7)), np.zeros((1, 6)))


def test_box_iou_without_yaw_is_axis_aligned():
    a, b = Box3D.from_list([0, 0, 0, 1, 1, 1]), Box3D.from_list([0.5, 0, 0, 1, 1, 1])
    assert box_iou(a, b) == pytest.approx(1 / 3)


def test_oriented_iou_with_zero_yaw_matches_axis_aligned():
    a = Box3D([0, 0, 0], [1, 1, 1], yaw=0.0)
    b = Box3D([0.5, 0, 0], [1, 1, 1])
    assert box_iou(a, b) == pytest.approx(1 / 3, abs=1e-12)


def test_square_box_rotated_90_degrees_is_itself():
    a = Box3D([1, 2, 3], [1, 1, 2])
    b = Box3D([1, 2, 3], [1, 1, 2], yaw=math.pi / 2)
    assert box_iou(a, b) == pytest.approx(1.0, abs=1e-12)


def test_rectangle_rotated_90_degrees():
    a = Box3D([0, 0, 0], [2, 1, 1], yaw=0.0)
    b = Box3D([0, 0, 0], [2, 1, 1], yaw=math.pi / 2)
    assert box_iou(a, b) == pytest.approx(1 / 3, abs=1e-12)  # overlap 1x1, union 2 + 2 - 1


def test_square_rotated_45_degrees_gives_octagon():
    a = Box3D([0, 0, 0], [1, 1, 1])
    b = Box3D([0, 0, 0], [1, 1, 1], yaw=math.pi / 4)
    assert box_iou(a, b) == pytest.approx(OCTAGON / (2 - OCTAGON), abs=1e-12)
    inter = clip_convex_polygon(a.footprint(), b.footprint())
    assert inter.shape == (8, 2)
    assert polygon_area(inter) == pytest.approx(OCTAGON, abs=1e-12)


def test_oriented_iou_scales_with_z_overlap_and_zero_when_disjoint():
    a = Box3D([0, 0, 0], [1, 1, 1])
    b = Box3D([0, 0, 0.5], [1, 1, 1], yaw=math.pi / 4)
    inter = OCTAGON * 0.5
    assert box_iou(a, b) == pytest.approx(inter / (2 - inter), abs=1e-12)
    assert box_iou(a, Box3D([0, 0, 2], [1, 1, 1], yaw=0.3)) == 0.0
    assert box_iou(a, Box3D([3, 0, 0], [1, 1, 1], yaw=0.3)) == 0.0


def test_oriented_iou_is_invariant_to_rotating_the_whole_scene():
    rng = np.random.default_rng(1)
    for _ in range(20):
        ca, cb = rng.uniform(-0.5, 0.5, 3), rng.uniform(-0.5, 0.5, 3)
        sa, sb = rng.uniform(0.3, 1.5, 3), rng.uniform(0.3, 1.5, 3)
        expected = aabb_iou(np.r_[ca, sa], np.r_[cb, sb])
        th = rng.uniform(-math.pi, math.pi)
        R = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
        ra = Box3D(np.r_[R @ ca[:2], ca[2]], sa, yaw=th)
        rb = Box3D(np.r_[R @ cb[:2], cb[2]], sb, yaw=th)
        assert box_iou(ra, rb) == pytest.approx(expected, abs=1e-9)
        assert box_iou(rb, ra) == pytest.approx(expected, abs=1e-9)


def test_clip_polygon_contained_and_disjoint():
    square = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], float)
    small = square * 0.5 + 0.25
    assert polygon_area(square) == 1.0
    assert polygon_area(clip_convex_polygon(small, square)) == pytest.approx(0.25)
    assert polygon_area(clip_convex_polygon(square, small)) == pytest.approx(0.25)
    assert clip_convex_polygon(square + 5, square).shape == (0, 2)
