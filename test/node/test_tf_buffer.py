"""TfBuffer: chains, interpolation, extrapolation reasons, time jumps, bad input. No DDS."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation, Slerp

from ros3d_agent.ros.tf_buffer import TfBuffer, TfLookupError
from ros3d_agent.scene.bag_export import BagMessageFactory, decompose_camera_pose
from ros3d_agent.scene.robot_frames import R_LINK_OPTICAL, T_LINK_OPTICAL, RobotFrames

S = 1_000_000_000


def _T(yaw: float, xyz) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = Rotation.from_euler("z", yaw).as_matrix()
    T[:3, 3] = xyz
    return T


def _put(buf: TfBuffer, parent: str, child: str, stamp: int, T: np.ndarray, static: bool = False):
    q = Rotation.from_matrix(T[:3, :3]).as_quat()
    return buf.set_transform(parent, child, stamp, T[:3, 3], q, static=static)


def test_multi_hop_chain_with_static_leaf_composes_exactly():
    buf = TfBuffer()
    a, b, c = _T(0.3, (1, 2, 0)), _T(-0.5, (0.5, 0, 0)), _T(0.1, (0.1, 0, 1.2))
    _put(buf, "map", "odom", 10 * S, a)
    _put(buf, "odom", "base_link", 10 * S, b)
    _put(buf, "base_link", "camera_link", 10 * S, c)
    _put(buf, "camera_link", "optical", 0, T_LINK_OPTICAL, static=True)
    got = buf.lookup("map", "optical", 10 * S)
    np.testing.assert_allclose(got, a @ b @ c @ T_LINK_OPTICAL, atol=1e-12)
    # the inverse direction and a lookup between two leaves through their common ancestor
    np.testing.assert_allclose(buf.lookup("optical", "map", 10 * S), np.linalg.inv(got), atol=1e-12)
    np.testing.assert_allclose(buf.lookup("base_link", "optical", 10 * S), c @ T_LINK_OPTICAL, atol=1e-12)
    assert buf.chain("map", "optical") == ["map", "odom", "base_link", "camera_link", "optical"]
    assert buf.lookup("/map", "/optical", 10 * S).shape == (4, 4)  # tf2 strips a leading slash


def test_interpolation_is_lerp_plus_slerp():
    buf = TfBuffer()
    T0, T1 = _T(0.0, (0, 0, 0)), _T(1.2, (2.0, -1.0, 0.5))
    _put(buf, "map", "cam", 1 * S, T0)
    _put(buf, "map", "cam", 2 * S, T1)
    got = buf.lookup("map", "cam", 1 * S + S // 4)
    slerp = Slerp([0.0, 1.0], Rotation.from_matrix([T0[:3, :3], T1[:3, :3]]))
    np.testing.assert_allclose(got[:3, :3], slerp([0.25]).as_matrix()[0], atol=1e-9)
    np.testing.assert_allclose(got[:3, 3], 0.75 * T0[:3, 3] + 0.25 * T1[:3, 3], atol=1e-12)
    # samples inserted out of order are sorted in
    _put(buf, "map", "cam", S + S // 2, _T(0.6, (1.0, -0.5, 0.25)))
    np.testing.assert_allclose(buf.lookup("map", "cam", S + S // 2)[:3, 3], (1.0, -0.5, 0.25))


def test_extrapolation_reasons_say_whether_to_wait():
    buf = TfBuffer(cache_ns=5 * S)
    for t in range(10, 21):
        _put(buf, "map", "cam", t * S, _T(0.0, (t, 0, 0)))
    with pytest.raises(TfLookupError) as future:
        buf.lookup("map", "cam", 21 * S)
    assert future.value.reason == "extrapolation_future" and future.value.may_heal
    with pytest.raises(TfLookupError) as past:  # pruned: only ~5 s kept
        buf.lookup("map", "cam", 12 * S)
    assert past.value.reason == "extrapolation_past" and not past.value.may_heal
    assert buf.lookup("map", "cam", 16 * S)[0, 3] == pytest.approx(16.0)


def test_unknown_and_disconnected_frames():
    buf = TfBuffer()
    _put(buf, "map", "odom", S, np.eye(4))
    _put(buf, "base_link", "camera", S, np.eye(4))
    with pytest.raises(TfLookupError) as unknown:
        buf.lookup("map", "nowhere", S)
    assert unknown.value.reason == "unknown_frame" and "known frames" in str(unknown.value)
    with pytest.raises(TfLookupError) as apart:
        buf.lookup("map", "camera", S)
    assert apart.value.reason == "not_connected"
    assert not buf.can_transform("map", "camera", S)
    assert buf.lookup("map", "map", S).tolist() == np.eye(4).tolist()


def test_bad_transforms_are_rejected_not_stored():
    buf = TfBuffer()
    assert buf.set_transform("map", "a", S, (math.nan, 0, 0), (0, 0, 0, 1)).reasons == {"nonfinite": 1}
    assert buf.set_transform("map", "a", S, (0, 0, 0), (0, 0, 0, 0)).reasons == {"zero_quaternion": 1}
    assert buf.set_transform("", "a", S, (0, 0, 0), (0, 0, 0, 1)).reasons == {"empty_frame_id": 1}
    assert buf.set_transform("a", "a", S, (0, 0, 0), (0, 0, 0, 1)).reasons == {"self_loop": 1}
    buf.set_transform("map", "a", S, (0, 0, 0), (0, 0, 0, 2))  # non-unit quaternions are normalised
    buf.set_transform("a", "b", S, (0, 0, 0), (0, 0, 0, 1))
    assert buf.set_transform("b", "map", S, (0, 0, 0), (0, 0, 0, 1)).reasons == {"cycle": 1}
    np.testing.assert_allclose(buf.lookup("map", "b", S), np.eye(4))
    upd = buf.add_transforms([object()])  # not a TransformStamped
    assert upd.reasons == {"malformed": 1}


def test_backward_time_jump_clears_dynamic_history_keeps_static():
    buf = TfBuffer(time_jump_ns=2 * S)
    _put(buf, "camera_link", "optical", 0, T_LINK_OPTICAL, static=True)
    for t in range(100, 110):
        assert not _put(buf, "map", "camera_link", t * S, np.eye(4)).time_jump
    stale = _put(buf, "map", "camera_link", 50 * S, np.eye(4))  # one stale sample: rejected, history kept
    assert stale.reasons == {"stale": 1} and not stale.time_jump
    assert buf.can_transform("map", "optical", 105 * S)
    _put(buf, "map", "camera_link", 109 * S, np.eye(4))  # back in the current timeline
    ups = [_put(buf, "map", "camera_link", (5 * S) - k, _T(0.2, (1, 0, 0))) for k in (2, 1, 0)]  # the bag started over
    assert [u.time_jump for u in ups] == [False, False, True] and buf.time_jumps == 1
    with pytest.raises(TfLookupError):
        buf.lookup("map", "optical", 105 * S)  # the old timeline is gone
    np.testing.assert_allclose(buf.lookup("map", "optical", 5 * S), _T(0.2, (1, 0, 0)) @ T_LINK_OPTICAL, atol=1e-12)
    assert buf.frames()["optical"] == ("camera_link", True)


def test_reproduces_bag_export_poses_from_its_own_tf_messages():
    """The robot chain written by bag export, fed as TFMessages, gives back the camera poses."""
    frames, fac, buf = RobotFrames(), BagMessageFactory(), TfBuffer()
    static = fac.tf_message([(frames.camera_link, frames.color_optical, T_LINK_OPTICAL, 0)])
    buf.add_transforms(static.transforms, static=True)
    poses = []
    for i in range(5):
        T = np.eye(4)
        T[:3, :3] = Rotation.from_euler("z", 0.4 * i).as_matrix() @ R_LINK_OPTICAL
        T[:3, 3] = (0.3 * i, -0.1 * i, 1.4)
        poses.append(T)
        stamp = 1_700_000_000 * S + i * S // 30
        chain = decompose_camera_pose(T, i / 30.0)
        for parent, child, M in ((frames.map, frames.odom, chain.map_odom), (frames.odom, frames.base, chain.odom_base),
                                 (frames.base, frames.camera_link, chain.base_camera_link)):
            assert buf.add_transforms(fac.tf_message([(parent, child, M, stamp)]).transforms).accepted == 1
    for i, T in enumerate(poses):
        got = buf.lookup(frames.map, frames.color_optical, 1_700_000_000 * S + i * S // 30)
        np.testing.assert_allclose(got, T, atol=1e-9)
    assert "map -> odom (dynamic)" in buf.describe()
