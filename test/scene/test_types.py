"""Frame / Box3D / SceneObject validation and geometry against hand-computed values."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from ros3d_agent.scene import Box3D, Frame, InvalidBoxError, InvalidFrameError, SceneObject

H, W = 4, 6
K_GOOD = np.array([[500.0, 0.0, 2.5], [0.0, 500.0, 1.5], [0.0, 0.0, 1.0]])


def make_frame(**overrides):
    kwargs = dict(
        rgb=np.zeros((H, W, 3), np.uint8),
        depth=np.ones((H, W), np.float32),
        K=K_GOOD,
        T_world_cam=np.eye(4),
        stamp=123,
        frame_id="00001",
    )
    kwargs.update(overrides)
    return Frame(**kwargs)


# --------------------------------------------------------------------------------------------------
# Frame
# --------------------------------------------------------------------------------------------------
def test_valid_frame_keeps_data_and_casts_matrices():
    f = make_frame(K=[[500, 0, 2], [0, 500, 1], [0, 0, 1]], T_world_cam=np.eye(4, dtype=np.float32))
    assert f.K.dtype == np.float64 and f.K[0, 2] == 2.0
    assert f.T_world_cam.dtype == np.float64
    assert (f.height, f.width) == (H, W)
    assert f.stamp == 123 and isinstance(f.stamp, int)


def test_frame_is_frozen():
    f = make_frame()
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.stamp = 5  # type: ignore[misc]


def test_nonfinite_and_negative_depth_sanitised_without_mutating_input():
    depth = np.array([[1.0, np.nan, np.inf, -np.inf, -0.5, 2.0]] * H, dtype=np.float32)
    f = make_frame(depth=depth)
    assert f.depth.dtype == np.float32
    np.testing.assert_array_equal(f.depth[0], [1.0, 0.0, 0.0, 0.0, 0.0, 2.0])
    assert np.isnan(depth[0, 1]), "caller's array must not be modified"


def test_invalid_frame_error_is_value_error():
    with pytest.raises(ValueError):
        make_frame(rgb=np.zeros((H, W, 3), np.float32))


@pytest.mark.parametrize(
    "override, field, fragment",
    [
        (dict(rgb=np.zeros((H, W, 3), np.float32)), "rgb", "uint8"),
        (dict(rgb=np.zeros((H, W), np.uint8)), "rgb", "shape"),
        (dict(rgb=np.zeros((H, W, 4), np.uint8)), "rgb", "shape"),
        (dict(rgb=[[0]]), "rgb", "numpy"),
        (dict(depth=np.ones((H, W), np.uint16)), "depth", "millimetres"),
        (dict(depth=np.ones((H, W), np.float64)), "depth", "float32"),
        (dict(depth=np.ones((H, W + 1), np.float32)), "depth", "match rgb"),
        (dict(K=np.zeros((3, 3))), "K", "focal"),
        (dict(K=np.diag([0.0, 500.0, 1.0])), "K", "fx=0"),
        (dict(K=np.diag([500.0, -500.0, 1.0])), "K", "fy=-500"),
        (dict(K=np.eye(4)), "K", "shape"),
        (dict(K=np.full((3, 3), np.nan)), "K", "NaN"),
        (dict(K=np.array([[500.0, 0, 1], [0, 500, 1], [0, 0, 2]])), "K", "pinhole"),
        (dict(K=np.array([["a", "b", "c"]] * 3)), "K", "dtype"),
        (dict(T_world_cam=np.full((4, 4), np.nan)), "T_world_cam", "NaN"),
        (dict(T_world_cam=np.eye(3)), "T_world_cam", "shape"),
        (dict(T_world_cam=np.diag([2.0, 2.0, 2.0, 1.0])), "T_world_cam", "orthonormal"),
        (dict(T_world_cam=np.diag([1.0, 1.0, -1.0, 1.0])), "T_world_cam", "det"),
        (dict(T_world_cam=np.array([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 1]])), "T_world_cam", "last row"),
        (dict(stamp=1.5), "stamp", "integer"),
        (dict(stamp=True), "stamp", "integer"),
        (dict(stamp=-1), "stamp", ">= 0"),
        (dict(frame_id=7), "frame_id", "str"),
    ],
)
def test_bad_frames_raise_naming_the_field(override, field, fragment):
    with pytest.raises(InvalidFrameError) as info:
        make_frame(**override)
    msg = str(info.value)
    assert msg.startswith(field + ":"), msg
    assert fragment in msg, msg


def test_slightly_non_orthonormal_pose_from_text_is_accepted():
    c, s = math.cos(0.3), math.sin(0.3)
    T = np.array([[c, -s, 0, 1], [s, c, 0, 2], [0, 0, 1, 3], [0, 0, 0, 1]])
    T[:3, :3] += 1e-6  # what 6-decimal text poses look like
    f = make_frame(T_world_cam=T)
    assert f.T_world_cam[0, 3] == 1.0


def test_numpy_integer_stamp_becomes_int():
    f = make_frame(stamp=np.int64(1_700_000_000_000_000_000))
    assert type(f.stamp) is int and f.stamp == 1_700_000_000_000_000_000


# --------------------------------------------------------------------------------------------------
# Box3D
# --------------------------------------------------------------------------------------------------
def test_box_list_round_trip_and_volume():
    b = Box3D.from_list([1, 2, 3, 0.5, 2, 4])
    assert b.to_list() == [1.0, 2.0, 3.0, 0.5, 2.0, 4.0]
    assert b.yaw is None
    assert b.volume == 4.0
    assert b.center.dtype == np.float64 and b.size.dtype == np.float64


def test_box_with_yaw_round_trips_seven_values():
    b = Box3D.from_list([0, 0, 0, 1, 2, 3, 0.25])
    assert b.yaw == 0.25
    assert Box3D.from_list(b.to_list()) == b


@pytest.mark.parametrize(
    "values, fragment",
    [
        ([0, 0, 0, 1, 1], "6 values"),
        ([0, 0, 0, 1, 0, 1], "size"),
        ([0, 0, 0, 1, -1, 1], "size"),
        ([np.nan, 0, 0, 1, 1, 1], "center"),
        ([0, 0, 0, 1, 1, 1, np.inf], "yaw"),
    ],
)
def test_bad_boxes_raise(values, fragment):
    with pytest.raises(InvalidBoxError, match=fragment):
        Box3D.from_list(values)


def test_box_arrays_are_read_only_copies():
    c = np.array([0.0, 0.0, 0.0])
    b = Box3D(c, [1, 1, 1])
    c[0] = 5
    assert b.center[0] == 0.0
    with pytest.raises(ValueError):
        b.center[0] = 1.0


def test_box_equality_and_hash():
    a = Box3D.from_list([0, 0, 0, 1, 1, 1])
    assert a == Box3D([0, 0, 0], [1, 1, 1])
    assert a != Box3D([0, 0, 0], [1, 1, 1], yaw=0.0)
    assert len({a, Box3D([0, 0, 0], [1, 1, 1])}) == 1


def test_axis_aligned_corners():
    b = Box3D([1, 2, 3], [2, 4, 6])
    expected = np.array(
        [[0, 0, 0], [2, 0, 0], [2, 4, 0], [0, 4, 0], [0, 0, 6], [2, 0, 6], [2, 4, 6], [0, 4, 6]], dtype=float
    ) + [0, 0, 0]
    np.testing.assert_array_equal(b.corners(), expected)


def test_corners_with_90_degree_yaw():
    b = Box3D([0, 0, 0], [2, 1, 1], yaw=math.pi / 2)
    # x extent (2) now lies along y: first corner (-1, -0.5) rotates to (0.5, -1).
    expected_xy = np.array([[0.5, -1], [0.5, 1], [-0.5, 1], [-0.5, -1]])
    np.testing.assert_allclose(b.corners()[:4, :2], expected_xy, atol=1e-12)
    np.testing.assert_allclose(b.corners()[:4, 2], -0.5)
    np.testing.assert_allclose(b.corners()[4:, 2], 0.5)


def test_contains_honours_yaw_and_includes_surface():
    pts = np.array([[0.9, 0.0, 0.0], [0.0, 0.9, 0.0], [1.0, 0.0, 0.5], [0.0, 0.0, 0.51]])
    aligned = Box3D([0, 0, 0], [2, 0.5, 1])
    rotated = Box3D([0, 0, 0], [2, 0.5, 1], yaw=math.pi / 2)
    np.testing.assert_array_equal(aligned.contains(pts), [True, False, True, False])
    np.testing.assert_array_equal(rotated.contains(pts), [False, True, False, False])


def test_contains_rejects_bad_shape():
    with pytest.raises(ValueError):
        Box3D([0, 0, 0], [1, 1, 1]).contains(np.zeros((3,)))


def test_bounds_of_rotated_square():
    lo, hi = Box3D([1, 1, 1], [1, 1, 2], yaw=math.pi / 4).bounds()
    r = math.sqrt(2) / 2
    np.testing.assert_allclose(lo, [1 - r, 1 - r, 0])
    np.testing.assert_allclose(hi, [1 + r, 1 + r, 2])


def test_scene_object_dict_round_trip():
    o = SceneObject(id=3, label="chair", box=Box3D.from_list([1, 2, 3, 1, 1, 1]))
    d = o.to_dict()
    assert d == {"id": 3, "label": "chair", "box": [1.0, 2.0, 3.0, 1.0, 1.0, 1.0]}
    assert SceneObject.from_dict(d) == o
    with pytest.raises(ValueError):
        SceneObject(id="3", label="chair", box=o.box)  # type: ignore[arg-type]


def test_contains_rotation_direction_and_agrees_with_corners():
    th = math.radians(30)
    b = Box3D([1, 1, 0], [2, 0.2, 1], yaw=th)
    along = np.array([1 + 0.9 * math.cos(th), 1 + 0.9 * math.sin(th), 0])  # along the rotated long axis
    mirrored = np.array([1 + 0.9 * math.cos(th), 1 - 0.9 * math.sin(th), 0])  # along the axis rotated by -yaw
    np.testing.assert_array_equal(b.contains(np.stack([along, mirrored])), [True, False])
    assert b.contains(b.corners()).all()
    assert not b.contains((b.corners() - b.center) * 1.01 + b.center).any()
