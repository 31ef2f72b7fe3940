"""Back-projection, transforms, quaternions, voxels and depth alignment against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ros3d_agent.scene import (
    align_depth_to_color,
    backproject_depth,
    backproject_depth_torch,
    invert_transform,
    make_transform,
    matrix_to_quaternion,
    occupied_voxels,
    quaternion_to_matrix,
    transform_from_translation_quaternion,
    transform_points,
    transform_points_torch,
    voxelize,
)

K2 = np.array([[2.0, 0.0, 0.5], [0.0, 2.0, 0.5], [0.0, 0.0, 1.0]])
RZ90 = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


def random_pose(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    return transform_from_translation_quaternion(rng.normal(size=3), q)


# --------------------------------------------------------------------------------------------------
# Back-projection
# --------------------------------------------------------------------------------------------------
def test_backproject_2x2_camera_frame_exact():
    depth = np.array([[1.0, 2.0], [0.0, 4.0]], np.float32)
    pts, mask = backproject_depth(depth, K2)
    np.testing.assert_array_equal(mask, [[True, True], [False, True]])
    # (u, v) = (0,0) z=1: x = (0-0.5)/2 = -0.25; (1,0) z=2: x = 0.5, y = -0.5; (1,1) z=4: x = y = 1.
    np.testing.assert_array_equal(pts, [[-0.25, -0.25, 1.0], [0.5, -0.5, 2.0], [1.0, 1.0, 4.0]])
    assert pts.dtype == np.float32


def test_backproject_2x2_world_frame_with_90_degree_yaw_pose():
    depth = np.array([[1.0, 2.0], [0.0, 4.0]], np.float32)
    T = make_transform(RZ90, [1.0, 2.0, 3.0])
    pts, _ = backproject_depth(depth, K2, T)
    # world = Rz(90) p + t, with Rz(90)(x, y, z) = (-y, x, z)
    np.testing.assert_array_equal(pts, [[1.25, 1.75, 4.0], [1.5, 2.5, 5.0], [0.0, 3.0, 7.0]])


def test_backproject_invalid_values_and_max_depth():
    depth = np.array([[np.nan, np.inf, -1.0], [0.0, 3.0, 10.0]], np.float32)
    pts, mask = backproject_depth(depth, K2, max_depth=5.0)
    np.testing.assert_array_equal(mask, [[False, False, False], [False, True, False]])
    assert pts.shape == (1, 3) and pts[0, 2] == 3.0


def test_backproject_stride_uses_full_resolution_pixel_coordinates():
    depth = np.ones((4, 4), np.float32)
    pts, mask = backproject_depth(depth, K2, stride=2)
    assert mask.shape == (2, 2)
    # Pixels (0,0), (2,0), (0,2), (2,2): x = (u - 0.5) / 2.
    np.testing.assert_array_equal(pts[:, 0], [-0.25, 0.75, -0.25, 0.75])
    np.testing.assert_array_equal(pts[:, 1], [-0.25, -0.25, 0.75, 0.75])
    with pytest.raises(ValueError):
        backproject_depth(depth, K2, stride=0)


def test_backproject_then_project_returns_pixel_grid_even_with_skew():
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 5.0, size=(7, 9)).astype(np.float32)
    K = np.array([[300.0, 3.0, 4.2], [0.0, 310.0, 3.1], [0.0, 0.0, 1.0]])
    pts, mask = backproject_depth(depth, K, dtype=np.float64)
    uvw = pts @ K.T
    uv = uvw[:, :2] / uvw[:, 2:]
    vv, uu = np.nonzero(mask)
    np.testing.assert_allclose(uv[:, 0], uu, atol=1e-9)
    np.testing.assert_allclose(uv[:, 1], vv, atol=1e-9)
    np.testing.assert_allclose(pts[:, 2], depth[mask], rtol=1e-7)


def test_backproject_rejects_bad_inputs():
    with pytest.raises(ValueError, match="focal"):
        backproject_depth(np.ones((2, 2), np.float32), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="shape"):
        backproject_depth(np.ones((2, 2, 1), np.float32), K2)


def test_torch_and_numpy_backprojection_agree():
    rng = np.random.default_rng(1)
    B, H, W = 3, 12, 16
    depth = rng.uniform(0.3, 6.0, size=(B, H, W)).astype(np.float32)
    depth[rng.random(size=depth.shape) < 0.2] = 0.0
    depth[0, 0, 0] = np.nan
    Ks = np.stack([np.array([[20.0 + b, 0.5 * b, 7.5], [0, 21.0, 5.5], [0, 0, 1]]) for b in range(B)])
    Ts = np.stack([random_pose(rng) for _ in range(B)])
    pts_t, mask_t = backproject_depth_torch(torch.from_numpy(depth), torch.from_numpy(Ks), torch.from_numpy(Ts))
    assert pts_t.shape == (B, H, W, 3) and mask_t.shape == (B, H, W) and pts_t.dtype == torch.float32
    for b in range(B):
        pts_n, mask_n = backproject_depth(depth[b], Ks[b], Ts[b], dtype=np.float64)
        np.testing.assert_array_equal(mask_t[b].numpy(), mask_n)
        np.testing.assert_allclose(pts_t[b][mask_t[b]].numpy(), pts_n, rtol=1e-5, atol=1e-5)
        assert torch.all(pts_t[b][~mask_t[b]] == 0), "invalid pixels must be exactly 0"


def test_torch_backprojection_broadcasts_single_K_and_camera_frame():
    depth = torch.tensor([[[1.0, 2.0], [0.0, 4.0]]] * 2)
    pts, mask = backproject_depth_torch(depth, torch.from_numpy(K2))
    expected = torch.tensor([[-0.25, -0.25, 1.0], [0.5, -0.5, 2.0], [1.0, 1.0, 4.0]])
    assert torch.equal(pts[1][mask[1]], expected)
    with pytest.raises(ValueError):
        backproject_depth_torch(depth[0], torch.from_numpy(K2))
    with pytest.raises(ValueError):
        backproject_depth_torch(depth, torch.eye(3).expand(3, 3, 3))


# --------------------------------------------------------------------------------------------------
# Transforms and quaternions
# --------------------------------------------------------------------------------------------------
def test_transform_points_90_degree_yaw_and_dtype():
    T = make_transform(RZ90, [1, 0, 0])
    p = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 5.0]], np.float32)
    out = transform_points(T, p)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[1.0, 1.0, 0.0], [-1.0, 0.0, 5.0]])
    assert transform_points(T, np.array([1, 0, 0])).dtype == np.float64
    assert transform_points(T, np.zeros((2, 5, 3))).shape == (2, 5, 3)
    with pytest.raises(ValueError):
        transform_points(T, np.zeros((4, 2)))


def test_invert_transform_is_exact_inverse():
    rng = np.random.default_rng(2)
    T = random_pose(rng)
    np.testing.assert_allclose(invert_transform(T) @ T, np.eye(4), atol=1e-12)
    p = rng.normal(size=(10, 3))
    np.testing.assert_allclose(transform_points(invert_transform(T), transform_points(T, p)), p, atol=1e-12)


def test_transform_points_torch_matches_numpy():
    rng = np.random.default_rng(3)
    Ts = np.stack([random_pose(rng) for _ in range(2)])
    p = rng.normal(size=(2, 4, 5, 3))
    out = transform_points_torch(torch.from_numpy(Ts), torch.from_numpy(p))
    for b in range(2):
        np.testing.assert_allclose(out[b].numpy(), transform_points(Ts[b], p[b]), atol=1e-12)
    single = transform_points_torch(torch.from_numpy(Ts[0]), torch.from_numpy(p[0]))
    np.testing.assert_allclose(single.numpy(), transform_points(Ts[0], p[0]), atol=1e-12)


def test_make_transform_rejects_bad_shapes():
    with pytest.raises(ValueError):
        make_transform(np.eye(4), [0, 0, 0])


def test_quaternion_order_is_ros_xyzw():
    np.testing.assert_array_equal(quaternion_to_matrix([0, 0, 0, 1]), np.eye(3))
    s = math.sin(math.pi / 4)
    np.testing.assert_allclose(quaternion_to_matrix([0, 0, s, s]), RZ90, atol=1e-15)
    # unnormalised input describes the same rotation
    np.testing.assert_allclose(quaternion_to_matrix([0, 0, 2, 2]), RZ90, atol=1e-15)


def test_matrix_to_quaternion_is_canonical_and_round_trips():
    s = math.sin(math.pi / 4)
    np.testing.assert_allclose(matrix_to_quaternion(RZ90), [0, 0, s, s], atol=1e-15)
    R270 = RZ90.T
    q = matrix_to_quaternion(R270)
    assert q[3] >= 0
    np.testing.assert_allclose(q, [0, 0, -s, s], atol=1e-15)
    rng = np.random.default_rng(4)
    for _ in range(5):
        T = random_pose(rng)
        np.testing.assert_allclose(quaternion_to_matrix(matrix_to_quaternion(T)), T[:3, :3], atol=1e-12)


def test_transform_from_translation_quaternion():
    s = math.sin(math.pi / 4)
    T = transform_from_translation_quaternion([1, 2, 3], [0, 0, s, s])
    np.testing.assert_allclose(T, make_transform(RZ90, [1, 2, 3]), atol=1e-15)
    with pytest.raises(ValueError):
        quaternion_to_matrix([0, 0, 0, 0])
    with pytest.raises(ValueError):
        quaternion_to_matrix([0, 0, 1])


# --------------------------------------------------------------------------------------------------
# Voxels
# --------------------------------------------------------------------------------------------------
def test_voxelize_world_grid():
    pts = np.array([[0.05, 0.05, 0.05], [0.15, 0.05, 0.05], [-0.05, 0.0, 0.25], [0.06, 0.01, 0.09]])
    idx, occ = voxelize(pts, 0.1, return_unique=True)
    np.testing.assert_array_equal(idx, [[0, 0, 0], [1, 0, 0], [-1, 0, 2], [0, 0, 0]])
    np.testing.assert_array_equal(occ, [[-1, 0, 2], [0, 0, 0], [1, 0, 0]])
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(voxelize(pts, 0.1), idx)


def test_voxelize_bounds_clamp():
    pts = np.array([[2.0, -1.0, 0.55], [0.35, 0.45, 0.999]])
    idx, occ = voxelize(pts, 0.1, bounds=[[0, 0, 0], [1, 1, 1]], return_unique=True)
    np.testing.assert_array_equal(idx, [[9, 0, 5], [3, 4, 9]])
    np.testing.assert_array_equal(occ, [[3, 4, 9], [9, 0, 5]])
    shifted = voxelize(np.array([[1.05, 2.05, 3.05]]), 0.1, bounds=[[1, 2, 3], [2, 3, 4]])
    np.testing.assert_array_equal(shifted, [[0, 0, 0]])
    with pytest.raises(ValueError):
        voxelize(pts, 0.1, bounds=[[0, 0, 0], [0, 1, 1]])
    with pytest.raises(ValueError):
        voxelize(pts, 0.0)


@pytest.mark.parametrize("spread", [3.0, 200.0, 1e6])  # dense bitmap, 1-D sort, int64-overflow fallback
def test_voxelize_unique_matches_numpy_unique(spread):
    rng = np.random.default_rng(5)
    pts = rng.uniform(-spread, spread, size=(5000, 3)).astype(np.float32)
    pts = np.vstack([pts, pts[:100]])
    idx, occ = voxelize(pts, 0.1, return_unique=True)
    np.testing.assert_array_equal(occ, np.unique(idx, axis=0))
    np.testing.assert_array_equal(occupied_voxels(pts, 0.1), occ)
    bounds = [[-spread / 2] * 3, [spread / 2] * 3]
    idx_b, occ_b = voxelize(pts, 0.1, bounds=bounds, return_unique=True)
    np.testing.assert_array_equal(occ_b, np.unique(idx_b, axis=0))
    np.testing.assert_array_equal(occupied_voxels(pts, 0.1, bounds=bounds), occ_b)


def test_voxelize_far_from_origin_keeps_exact_keys():
    # floor indices near 2e9 fit int32 but a careless (x * ny + y) partial sum would overflow it.
    rng = np.random.default_rng(6)
    pts = np.array([1.9e8, 1.9e8, 1.9e8]) + rng.uniform(0, 2.0, size=(2000, 3))
    idx, occ = voxelize(pts, 0.1, return_unique=True)
    assert idx.min() > 1.8e9
    np.testing.assert_array_equal(occ, np.unique(idx, axis=0))


def test_voxelize_rejects_nonfinite_points():
    for bounds in (None, [[0, 0, 0], [1, 1, 1]]):
        with pytest.raises(ValueError, match="NaN"):
            voxelize(np.array([[0.0, 0.0, 0.0], [np.nan, 0.0, 0.0]]), 0.1, bounds=bounds)
        with pytest.raises(ValueError, match="NaN"):
            voxelize(np.array([[0.0, 0.0, np.inf]]), 0.1, bounds=bounds)


def test_voxelize_empty():
    idx, occ = voxelize(np.empty((0, 3)), 0.1, return_unique=True)
    assert idx.shape == (0, 3) and occ.shape == (0, 3)
    assert occupied_voxels(np.empty((0, 3)), 0.1, bounds=[[0, 0, 0], [1, 1, 1]]).shape == (0, 3)


# --------------------------------------------------------------------------------------------------
# Depth alignment
# --------------------------------------------------------------------------------------------------
def test_align_identity_returns_copy():
    d = np.array([[1.0, 2.0], [3.0, 0.0]], np.float32)
    out = align_depth_to_color(d, K2, K2, (2, 2))
    np.testing.assert_array_equal(out, d)
    assert out is not d


def test_align_upsample_is_nearest_neighbour_and_keeps_holes():
    d = np.array([[1.0, 2.0], [0.0, 4.0]], np.float32)
    # Same camera at twice the resolution: f' = 2f, c' = 2(c + 0.5) - 0.5.
    Kc = np.array([[4.0, 0.0, 1.5], [0.0, 4.0, 1.5], [0.0, 0.0, 1.0]])
    out = align_depth_to_color(d, K2, Kc, (4, 4))
    np.testing.assert_array_equal(out, np.kron(d, np.ones((2, 2), np.float32)))
    assert out.dtype == np.float32


def test_align_wider_colour_field_of_view_pads_with_zero():
    d = np.array([[1.0, 2.0], [3.0, np.nan]], np.float32)
    Kc = np.array([[2.0, 0.0, 1.5], [0.0, 2.0, 1.5], [0.0, 0.0, 1.0]])
    out = align_depth_to_color(d, K2, Kc, (4, 4))
    expected = np.zeros((4, 4), np.float32)
    expected[1:3, 1:3] = [[1.0, 2.0], [3.0, 0.0]]
    np.testing.assert_array_equal(out, expected)


def test_align_downsample_picks_nearest_pixels():
    d = np.arange(16, dtype=np.float32).reshape(4, 4) + 1
    Kd = np.array([[4.0, 0.0, 1.5], [0.0, 4.0, 1.5], [0.0, 0.0, 1.0]])
    out = align_depth_to_color(d, Kd, K2, (2, 2))
    # colour u=0 -> x=-0.25 -> ud = 0.5 -> rounds to 1; u=1 -> ud = 2.5 -> 3 (round half up).
    np.testing.assert_array_equal(out, d[np.ix_([1, 3], [1, 3])])
