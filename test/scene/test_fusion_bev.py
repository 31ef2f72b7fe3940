"""Fusion of frames into a cloud, and BEV rendering: pixel placement, z-buffer, holes, boxes, ceiling cut."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ros3d_agent.scene import Box3D, Frame, SceneDir, SceneObject
from ros3d_agent.scene.bev import (
    GT_COLOR,
    BevConfig,
    BevMapping,
    auto_stride,
    draw_boxes,
    estimate_ceiling_height,
    render_bev,
    render_bev_from_frames,
    render_scene_bev,
)
from ros3d_agent.scene.fusion import FusionConfig, PointCloudFuser, decode_voxel_keys, fuse_frames, scene_cloud, voxel_keys

K = np.array([[40.0, 0, 19.5], [0, 40.0, 14.5], [0, 0, 1]])


def down_frame(x: float, y: float, height: float, fid: str = "0", depth_value: float | None = None) -> Frame:
    """A 40×30 camera looking straight down at the floor (z = 0); left half red, right half blue."""
    T = np.eye(4)
    T[:3, :3] = np.diag([1.0, -1.0, -1.0])
    T[:3, 3] = (x, y, height)
    d = np.full((30, 40), height if depth_value is None else depth_value, np.float32)
    rgb = np.zeros((30, 40, 3), np.uint8)
    rgb[:, :20] = (255, 0, 0)
    rgb[:, 20:] = (0, 0, 255)
    return Frame(rgb=rgb, depth=d, K=K, T_world_cam=T, frame_id=fid)


# -- fusion ------------------------------------------------------------------------------------------
def test_voxel_keys_round_trip_and_order():
    pts = np.array([[0.05, 0.05, 0.05], [-0.25, 1.0, 2.0], [0.05, 0.06, 0.04]])
    k = voxel_keys(pts, 0.1)
    np.testing.assert_array_equal(decode_voxel_keys(k), [[0, 0, 0], [-3, 10, 20], [0, 0, 0]])
    assert k[0] == k[2]
    idx = np.array([[-1, 5, 5], [0, -5, 0], [0, 0, -1], [0, 0, 0]])
    from ros3d_agent.scene.fusion import encode_voxel_indices

    assert np.all(np.diff(encode_voxel_indices(idx)) > 0)  # keys sort like (x, y, z)
    with pytest.raises(ValueError, match="NaN"):
        voxel_keys(np.array([[np.nan, 0, 0]]), 0.1)


def test_fuser_counts_skips_and_places_points_on_the_floor():
    fuser = PointCloudFuser(FusionConfig(voxel_size=0.05, stride=1))
    assert fuser.add(down_frame(0, 0, 1.0, "a"))
    assert not fuser.add(down_frame(0, 0, 1.0, "b", depth_value=0.0))
    assert fuser.add(down_frame(0.2, 0, 1.0, "c"))
    assert fuser.n_frames == 2 and fuser.skipped == {"no_valid_depth": 1}
    xyz, rgb = fuser.cloud()
    assert xyz.dtype == np.float32 and rgb.dtype == np.uint8 and xyz.shape == rgb.shape
    np.testing.assert_allclose(xyz[:, 2], 0.0, atol=1e-6)
    # One point per occupied 5 cm voxel: the union of two 1 m × 0.75 m footprints, shifted 0.2 m.
    assert len(np.unique(voxel_keys(xyz, 0.05))) == xyz.shape[0]
    assert 0.9 * (1.2 * 0.75 / 0.05**2) < xyz.shape[0] < 1.3 * (1.2 * 0.75 / 0.05**2)
    left = xyz[:, 0] < -0.1
    assert (rgb[left] == (255, 0, 0)).all()
    with pytest.raises(TypeError):
        fuser.add(np.zeros((30, 40)))


def test_fuser_is_incremental_and_bounded():
    frames = [down_frame(0.3 * i, 0, 1.0, str(i)) for i in range(6)]
    one_go = fuse_frames(frames, FusionConfig(voxel_size=0.05, stride=1))
    inc = PointCloudFuser(FusionConfig(voxel_size=0.05, stride=1, flush_points=50))  # flushes between frames
    for f in frames:
        inc.add(f)
    a, b = inc.cloud()[0], one_go.xyz
    np.testing.assert_allclose(a[np.lexsort(a.T)], b[np.lexsort(b.T)], atol=1e-5)
    small = PointCloudFuser(FusionConfig(voxel_size=0.02, stride=1, max_voxels=500))
    for f in frames:
        small.add(f)
    assert len(small) <= 500 and small.n_coarsened >= 1 and small.voxel_size > 0.02


def test_add_points_counts_non_finite():
    fuser = PointCloudFuser()
    fuser.add_points(np.array([[0, 0, 0], [np.nan, 0, 0], [1, 1, 1]], np.float32))
    assert len(fuser) == 2 and fuser.skipped["nonfinite_points"] == 1


def test_scene_cloud_prefers_points_and_fails_clearly(tmp_path):
    sd = SceneDir.create(tmp_path / "s", K)
    with pytest.raises(ValueError, match="no frames and no points"):
        scene_cloud(sd)
    sd.write_frame(0, down_frame(0, 0, 1.0, depth_value=0.0))
    with pytest.raises(ValueError, match="valid depth"):
        scene_cloud(sd)
    sd.write_frame(1, down_frame(0, 0, 1.0))
    assert len(scene_cloud(sd)) > 0
    sd.write_points(np.array([[1, 2, 3]], np.float32))
    assert scene_cloud(sd).xyz.tolist() == [[1.0, 2.0, 3.0]]


# -- BEV mapping -------------------------------------------------------------------------------------
def test_mapping_is_square_centred_and_invertible():
    m = BevMapping.from_bounds([0, 0], [4, 2], 100, 100, pad=0.0)
    assert m.mpp == pytest.approx(0.04)
    assert m.pixel_to_world([[0, 0]])[0] == pytest.approx([0.02, 3.0 - 0.02])  # y centred: 1 ± 2
    xy = np.array([[0.5, 0.7], [3.9, 1.1]])
    np.testing.assert_allclose(m.pixel_to_world(m.world_to_pixel(xy)), xy)
    assert BevMapping.from_dict(json.loads(json.dumps(m.to_dict()))) == m


def test_known_point_lands_at_its_pixel_with_its_colour():
    m = BevMapping(x0=0.0, y1=1.0, mpp=0.1, width=10, height=10)
    xyz = np.array([[0.35, 0.72, 0.5]])
    img = render_bev(xyz, np.array([[10, 20, 30]], np.uint8), BevConfig(ceiling=None), mapping=m)
    # column floor(0.35 / 0.1) = 3, row floor((1.0 - 0.72) / 0.1) = 2
    assert img.rgb[2, 3].tolist() == [10, 20, 30]
    assert img.height_map[2, 3] == pytest.approx(0.5, abs=1e-3)
    assert img.holes.sum() == 99 and not img.holes[2, 3]


def test_highest_point_wins_and_holes_are_exactly_the_empty_pixels():
    m = BevMapping(x0=0.0, y1=1.0, mpp=0.1, width=10, height=10)
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 1, size=(300, 2))
    z = rng.uniform(0, 2, size=300)
    rgb = rng.integers(0, 256, size=(300, 3)).astype(np.uint8)
    img = render_bev(np.column_stack([xy, z]), rgb, BevConfig(ceiling=None, background=(7, 7, 7)), mapping=m)
    col, row = np.floor(xy[:, 0] / 0.1).astype(int), np.floor((1.0 - xy[:, 1]) / 0.1).astype(int)
    expected_holes = np.ones((10, 10), bool)
    expected_holes[row, col] = False
    np.testing.assert_array_equal(img.holes, expected_holes)
    for r, c in zip(*np.nonzero(~expected_holes)):
        here = (row == r) & (col == c)
        top = np.flatnonzero(here)[np.argmax(z[here])]
        assert img.rgb[r, c].tolist() == rgb[top].tolist()
    assert (img.rgb[img.holes] == 7).all()
    assert np.isnan(img.height_map[img.holes]).all()


def test_box_pixels_and_mask_match_pixel_centres():
    m = BevMapping(x0=0.0, y1=2.0, mpp=0.1, width=20, height=20)
    box = Box3D([0.5, 1.5, 0.5], [0.4, 0.2, 1.0])  # x 0.3..0.7, y 1.4..1.6
    assert m.box_pixel_rect(box) == (3, 4, 6, 5)  # centres x 0.35..0.65, y 1.55..1.45
    mask = m.box_mask(box)
    assert mask.sum() == 8 and mask[4:6, 3:7].all()
    tiny = Box3D([1.01, 0.51, 0], [0.01, 0.01, 0.01])
    assert m.box_pixel_rect(tiny) == (10, 14, 10, 14) and m.box_mask(tiny).sum() == 1
    assert m.box_pixel_rect(Box3D([50, 50, 0], [1, 1, 1])) is None
    yawed = Box3D([1.02, 1.0, 0], [0.8, 0.1, 1.0], yaw=np.pi / 2)  # x 0.97..1.07, y 0.6..1.4 after rotation
    rows, cols = np.nonzero(m.box_mask(yawed))
    assert set(cols.tolist()) == {10} and rows.min() == 6 and rows.max() == 13
    sliver = Box3D([1.02, 1.0, 0], [0.02, 0.8, 1.0])  # no pixel centre inside: the column holding it
    rows, cols = np.nonzero(m.box_mask(sliver))
    assert set(cols.tolist()) == {10} and rows.min() == 6 and rows.max() == 13


def test_draw_boxes_paints_the_outline():
    m = BevMapping(x0=0.0, y1=2.0, mpp=0.05, width=40, height=40)
    img = np.zeros((40, 40, 3), np.uint8)
    box = Box3D([1.0, 1.0, 0.5], [1.0, 1.0, 1.0])
    out = draw_boxes(img, m, [box], color=GT_COLOR, labels=["crate"])
    assert (img == 0).all()  # a copy
    assert out[10, 20].tolist() == list(GT_COLOR)  # top edge (y = 1.5) at the box's middle column
    assert out[20, 20].tolist() == [0, 0, 0]  # inside stays untouched
    big = draw_boxes(img, m, [box], scale=3)
    assert big.shape == (120, 120, 3)


# -- BEV rendering -----------------------------------------------------------------------------------
def _room_with_ceiling(ceiling: bool) -> tuple[np.ndarray, np.ndarray]:
    g = np.stack(np.meshgrid(np.arange(0, 4, 0.05), np.arange(0, 3, 0.05)), -1).reshape(-1, 2)
    floor = np.column_stack([g, np.zeros(len(g))])
    parts, cols = [floor], [np.tile([200, 0, 0], (len(g), 1))]
    if ceiling:
        parts.append(np.column_stack([g, np.full(len(g), 2.5)]))
        cols.append(np.tile([0, 200, 0], (len(g), 1)))
    parts.append(np.array([[2.0, 1.5, z] for z in np.arange(0, 1.0, 0.05)]))  # a pole
    cols.append(np.tile([0, 0, 200], (20, 1)))
    return np.concatenate(parts), np.concatenate(cols).astype(np.uint8)


def test_ceiling_is_cut_automatically():
    xyz, rgb = _room_with_ceiling(True)
    assert estimate_ceiling_height(xyz) == pytest.approx(2.5)
    img = render_bev(xyz, rgb, BevConfig(width=64, height=64))
    assert img.ceiling_cut == pytest.approx(2.35)
    colours = {tuple(c) for c in img.rgb[~img.holes].tolist()}
    assert (0, 200, 0) not in colours and (200, 0, 0) in colours and (0, 0, 200) in colours
    kept = render_bev(xyz, rgb, BevConfig(width=64, height=64, ceiling=None))
    assert {tuple(c) for c in kept.rgb[~kept.holes].tolist()} == {(0, 200, 0)}
    no_ceiling, rgb2 = _room_with_ceiling(False)
    assert estimate_ceiling_height(no_ceiling) is None
    assert render_bev(no_ceiling, rgb2).ceiling_cut is None


def test_render_from_frames_puts_colours_where_the_camera_saw_them():
    frames = [down_frame(0.0, 0.0, 1.0, "0"), down_frame(0.0, 0.0, 1.0, "1", depth_value=0.0)]
    # 20 px over ~1 m: coarser than the 2.5 cm ground spacing of the samples, so no holes inside.
    img = render_bev_from_frames(frames, BevConfig(width=20, height=20, pad=0.0, ceiling=None), stride=1)
    m = img.mapping
    left = m.pixel_index(np.array([[-0.3, 0.0]]))
    right = m.pixel_index(np.array([[0.3, 0.0]]))
    assert img.rgb[left[1][0], left[0][0]].tolist() == [255, 0, 0]
    assert img.rgb[right[1][0], right[0][0]].tolist() == [0, 0, 255]
    assert img.coverage > 0.7


def test_auto_stride_keeps_the_sample_budget():
    assert auto_stride(300, 480, 640) == 4  # the 300-frame target
    assert auto_stride(40, 480, 640) == 2
    assert auto_stride(1, 30, 40) == 1
    for n in (1, 10, 100, 1000):
        s = auto_stride(n, 480, 640, max_points=2_000_000)
        assert n * (480 // s) * (640 // s) <= 2_000_000 * 1.05
        assert s == 1 or n * (480 // (s - 1)) * (640 // (s - 1)) > 2_000_000
    with pytest.raises(ValueError):
        auto_stride(1, 10, 10, max_points=0)


def test_render_errors_are_clear():
    with pytest.raises(ValueError, match="no \\(finite\\) points"):
        render_bev(np.empty((0, 3)))
    with pytest.raises(ValueError, match="no \\(finite\\) points"):
        render_bev(np.full((4, 3), np.nan))
    with pytest.raises(ValueError, match="valid depth"):
        render_bev_from_frames([down_frame(0, 0, 1.0, depth_value=0.0)])
    with pytest.raises(ValueError, match="no frames"):
        render_bev_from_frames([])
    with pytest.raises(ValueError, match="above the ceiling"):
        render_bev(np.array([[0, 0, 3.0]]), config=BevConfig(ceiling=1.0))


def test_bev_cli_writes_picture_mask_and_mapping(tmp_path):
    import cv2

    from ros3d_agent.cli import main as cli_main

    sd = SceneDir.create(tmp_path / "s", K)
    for i, x in enumerate([0.0, 0.5, 1.0]):
        sd.write_frame(i, down_frame(x, 0.0, 1.0))
    sd.write_objects([SceneObject(0, "rug", Box3D([0.5, 0.0, 0.0], [0.6, 0.4, 0.02]))])
    out = tmp_path / "pics" / "bev.png"
    assert cli_main(["scenes", "bev", str(sd.path), "--out", str(out), "--size", "64", "--stride", "1", "--boxes", "--no-progress"]) == 0
    pic = cv2.imread(str(out))
    mask = cv2.imread(str(tmp_path / "pics" / "bev_mask.png"), cv2.IMREAD_UNCHANGED)
    mapping = json.loads((tmp_path / "pics" / "bev_mapping.json").read_text())
    assert pic.shape == (64, 64, 3) and mask.shape == (64, 64) and set(np.unique(mask)) <= {0, 255}
    assert mapping["width"] == 64 and 0 < mapping["coverage"] <= 1
    assert (pic[..., ::-1] == GT_COLOR).all(axis=-1).any()  # the box outline is there
    bev = render_scene_bev(sd, BevConfig(width=64, height=64), stride=1)
    np.testing.assert_array_equal(mask > 0, bev.holes)
    assert cli_main(["scenes", "bev", str(sd.path), "--out", str(tmp_path / "x.jpg"), "--no-progress"]) == 2
