"""Scene-directory IO on real files in a temporary directory: round trips, ScanNet quirks, bad input."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from ros3d_agent.scene import Box3D, Frame, FrameLoadError, InvalidFrameError, SceneDir, SceneDirError, SceneObject
from ros3d_agent.scene.scene_dir import SCANNET_FRAME_PERIOD_NS

H, W = 24, 32
K = np.array([[30.5, 0.0, 15.5], [0.0, 31.25, 11.5], [0.0, 0.0, 1.0]])


def smooth_rgb(seed: int = 0) -> np.ndarray:
    """A smooth image, so JPEG error stays small and a tolerance check is meaningful."""
    v, u = np.mgrid[0:H, 0:W]
    r = (u * 255 / (W - 1)).astype(np.uint8)
    g = (v * 255 / (H - 1)).astype(np.uint8)
    b = np.full((H, W), 40 + 50 * seed, np.uint8)
    return np.dstack([r, g, b])


def make_frame(seed: int = 0, fid: str = "00000") -> Frame:
    rng = np.random.default_rng(seed)
    depth = (rng.integers(300, 8000, size=(H, W)) / 1000.0).astype(np.float32)
    depth[rng.random((H, W)) < 0.1] = 0.0
    th = 0.3 + seed
    T = np.eye(4)
    T[:3, :3] = [[math.cos(th), -math.sin(th), 0], [math.sin(th), math.cos(th), 0], [0, 0, 1]]
    T[:3, 3] = [1.0 + seed, -2.0, 0.123456789]
    return Frame(rgb=smooth_rgb(seed), depth=depth, K=K, T_world_cam=T, stamp=0, frame_id=fid)


@pytest.fixture
def scene(tmp_path):
    sd = SceneDir.create(tmp_path / "scene0000_00", K)
    for i in (0, 20, 40):
        sd.write_frame(i, make_frame(i // 20))
    return sd


# --------------------------------------------------------------------------------------------------
# Opening
# --------------------------------------------------------------------------------------------------
def test_missing_directory(tmp_path):
    with pytest.raises(SceneDirError, match="does not exist"):
        SceneDir(tmp_path / "nope")


def test_missing_intrinsics_names_the_file(tmp_path):
    with pytest.raises(SceneDirError, match="intrinsic.txt"):
        SceneDir(tmp_path)


@pytest.mark.parametrize("text", ["0 0 0\n0 500 0\n0 0 1\n", "-500 0 1\n0 500 1\n0 0 1\n", "not numbers\n", "1 2\n3 4\n"])
def test_bad_intrinsics_rejected(tmp_path, text):
    (tmp_path / "intrinsic.txt").write_text(text)
    with pytest.raises(SceneDirError, match="intrinsic.txt"):
        SceneDir(tmp_path)


def test_3x3_and_4x4_intrinsics_accepted(tmp_path):
    (tmp_path / "intrinsic.txt").write_text("500 0 320\n0 501 240\n0 0 1\n")
    np.testing.assert_array_equal(SceneDir(tmp_path).K_color, [[500, 0, 320], [0, 501, 240], [0, 0, 1]])
    (tmp_path / "intrinsic.txt").write_text("500 0 320 0\n0 501 240 0\n0 0 1 0\n0 0 0 1\n")
    np.testing.assert_array_equal(SceneDir(tmp_path).K_color, [[500, 0, 320], [0, 501, 240], [0, 0, 1]])


def test_scene_id_is_directory_name(scene):
    assert scene.scene_id == "scene0000_00"


# --------------------------------------------------------------------------------------------------
# Round trip
# --------------------------------------------------------------------------------------------------
def test_frame_ids_sorted_numerically_and_only_frames(scene):
    scene.write_frame("7", make_frame(3))
    (scene.path / "notes.jpg").write_bytes(b"x")
    (scene.path / "preview.png").write_bytes(b"x")
    assert scene.frame_ids() == ["00000", "7", "00020", "00040"]
    assert len(scene) == 4


def test_write_read_round_trip(scene):
    original = make_frame(1)
    got = scene.load_frame("00020")
    assert got.frame_id == "00020"
    assert got.stamp == 20 * SCANNET_FRAME_PERIOD_NS
    np.testing.assert_array_equal(got.K, K)
    np.testing.assert_array_equal(got.T_world_cam, original.T_world_cam)  # %.17g text is exact
    # depth: exact to the millimetre
    assert got.depth.dtype == np.float32 and got.depth.shape == (H, W)
    np.testing.assert_array_equal(np.rint(got.depth * 1000), np.rint(original.depth * 1000))
    np.testing.assert_array_equal(got.depth == 0, original.depth == 0)
    # colour: JPEG is lossy, but channel order and content must survive
    assert got.rgb.dtype == np.uint8 and got.rgb.shape == (H, W, 3)
    err = np.abs(got.rgb.astype(int) - original.rgb.astype(int))
    assert err.mean() < 3 and err.max() < 40
    assert got.rgb[0, -1, 0] > 200 and got.rgb[-1, 0, 1] > 200  # red grows with u, green with v


def test_int_frame_id_is_zero_padded(scene):
    assert scene.load_frame(40).frame_id == "00040"
    with pytest.raises(SceneDirError):
        scene.load_frame("../00040")
    with pytest.raises(SceneDirError):
        scene.load_frame(-1)


def test_iter_frames_yields_all_in_order(scene):
    frames = list(scene.iter_frames())
    assert [f.frame_id for f in frames] == ["00000", "00020", "00040"]
    assert scene.skipped == {}


def test_depth_beyond_uint16_range_written_as_invalid(tmp_path):
    sd = SceneDir.create(tmp_path / "s", K)
    f = make_frame(0)
    depth = f.depth.copy()
    depth[0, 0] = 70.0  # 70 000 mm does not fit in uint16
    depth[0, 1] = 65.0
    sd.write_frame(1, Frame(f.rgb, depth, K, f.T_world_cam))
    got = sd.load_frame(1)
    assert got.depth[0, 0] == 0.0
    assert got.depth[0, 1] == pytest.approx(65.0)


def test_custom_depth_scale(tmp_path):
    sd = SceneDir.create(tmp_path / "s", K, depth_scale=5000.0)
    f = make_frame(0)
    sd.write_frame(0, f)
    raw = cv2.imread(str(sd.path / "00000.png"), cv2.IMREAD_UNCHANGED)
    assert raw[f.depth > 0].min() >= 1500  # 0.3 m * 5000
    np.testing.assert_allclose(sd.load_frame(0).depth, f.depth, atol=1e-4)


# --------------------------------------------------------------------------------------------------
# Broken frames: skipped and counted
# --------------------------------------------------------------------------------------------------
def test_nonfinite_pose_skipped_and_counted(scene):
    (scene.path / "00020.txt").write_text("-inf -inf -inf -inf\n" * 4)  # ScanNet's lost-tracking marker
    with pytest.raises(FrameLoadError) as info:
        scene.load_frame("00020")
    assert info.value.reason == "nonfinite_pose" and "00020.txt" in str(info.value)
    ids = [f.frame_id for f in scene.iter_frames()]
    assert ids == ["00000", "00040"]
    assert scene.skipped == {"nonfinite_pose": 1}
    assert scene.skipped_frames == {"00020": "nonfinite_pose"}
    list(scene.iter_frames())
    assert scene.skipped == {"nonfinite_pose": 1}, "a second pass must not double count"


def test_nan_pose_counted(scene):
    T = np.eye(4)
    T[0, 3] = np.nan
    np.savetxt(scene.path / "00000.txt", T)
    assert len(list(scene.iter_frames())) == 2
    assert scene.skipped["nonfinite_pose"] == 1


def test_unreadable_images_skipped_with_reasons(scene):
    (scene.path / "00000.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    (scene.path / "00040.png").write_bytes(b"garbage")
    with pytest.raises(FrameLoadError, match="unreadable colour"):
        scene.load_frame(0)
    with pytest.raises(FrameLoadError, match="unreadable depth"):
        scene.load_frame(40)
    assert [f.frame_id for f in scene.iter_frames()] == ["00020"]
    assert scene.skipped == {"unreadable_color": 1, "unreadable_depth": 1}


def test_missing_and_malformed_files_counted(scene):
    scene.write_frame(60, make_frame(0))
    scene.write_frame(80, make_frame(0))
    (scene.path / "00000.png").unlink()
    (scene.path / "00020.txt").unlink()
    (scene.path / "00040.txt").write_text("1 0 0\n0 1 0\n")
    cv2.imwrite(str(scene.path / "00060.png"), np.zeros((H, W), np.uint8))  # 8-bit depth
    np.savetxt(scene.path / "00080.txt", np.diag([2.0, 2.0, 2.0, 1.0]))  # not a rigid transform
    with pytest.raises(InvalidFrameError, match="orthonormal"):
        scene.load_frame(80)
    assert list(scene.iter_frames()) == []
    assert scene.skipped == {
        "missing_depth": 1,
        "missing_pose": 1,
        "unreadable_pose": 1,
        "bad_depth_format": 1,
        "invalid_frame": 1,
    }


# --------------------------------------------------------------------------------------------------
# Depth with its own intrinsics / resolution
# --------------------------------------------------------------------------------------------------
def _write_scannet_style(path, depth_mm: np.ndarray, K_color, K_depth=None):
    path.mkdir()
    np.savetxt(path / "intrinsic.txt", np.block([[K_color, np.zeros((3, 1))], [np.zeros((1, 3)), np.ones((1, 1))]]))
    if K_depth is not None:
        np.savetxt(path / "depth_intrinsic.txt", K_depth)
    cv2.imwrite(str(path / "00000.jpg"), np.zeros((4, 4, 3), np.uint8))
    cv2.imwrite(str(path / "00000.png"), depth_mm)
    np.savetxt(path / "00000.txt", np.eye(4))


def test_depth_intrinsic_file_drives_alignment(tmp_path):
    depth_mm = np.array([[1000, 2000], [0, 4000]], np.uint16)
    Kd = np.array([[2.0, 0, 0.5], [0, 2.0, 0.5], [0, 0, 1]])
    Kc = np.array([[4.0, 0, 1.5], [0, 4.0, 1.5], [0, 0, 1]])
    _write_scannet_style(tmp_path / "s", depth_mm, Kc, Kd)
    f = SceneDir(tmp_path / "s").load_frame("00000")
    np.testing.assert_array_equal(f.depth, np.kron(depth_mm / 1000.0, np.ones((2, 2))).astype(np.float32))
    np.testing.assert_array_equal(f.K, Kc)


def test_lower_resolution_depth_without_depth_intrinsic_uses_scaled_colour_intrinsics(tmp_path):
    depth_mm = np.array([[1000, 2000], [0, 4000]], np.uint16)
    Kc = np.array([[4.0, 0, 1.5], [0, 4.0, 1.5], [0, 0, 1]])
    _write_scannet_style(tmp_path / "s", depth_mm, Kc)
    sd = SceneDir(tmp_path / "s")
    np.testing.assert_allclose(sd.depth_intrinsics_for((2, 2), (4, 4)), [[2, 0, 0.5], [0, 2, 0.5], [0, 0, 1]])
    f = sd.load_frame(0)
    np.testing.assert_array_equal(f.depth, np.kron(depth_mm / 1000.0, np.ones((2, 2))).astype(np.float32))


def test_write_frame_refuses_inconsistent_intrinsics(tmp_path):
    sd = SceneDir.create(tmp_path / "s", K)
    f = make_frame(0)
    with pytest.raises(SceneDirError, match="has K"):
        sd.write_frame(0, Frame(f.rgb, f.depth, K * [[2], [2], [1]], f.T_world_cam))
    sd.write_intrinsics(K, K_depth=K * [[0.5], [0.5], [1]])
    assert (sd.path / "depth_intrinsic.txt").is_file()
    with pytest.raises(SceneDirError, match="depth_intrinsic.txt"):
        sd.write_frame(0, f)
    sd.write_intrinsics(K)  # drops the stale depth intrinsics
    assert not (sd.path / "depth_intrinsic.txt").exists()
    sd.write_frame(0, f)
    assert SceneDir(sd.path).K_depth is None


# --------------------------------------------------------------------------------------------------
# Objects and points
# --------------------------------------------------------------------------------------------------
def test_objects_round_trip(scene):
    assert scene.load_objects() == [] and not scene.has_objects
    objs = [
        SceneObject(1, "chair", Box3D.from_list([1, 2, 0.5, 0.6, 0.6, 1.0])),
        SceneObject(7, "table", Box3D([0, 0, 0.4], [1.2, 0.8, 0.8], yaw=0.5)),
    ]
    scene.write_objects(objs)
    assert scene.has_objects
    assert scene.load_objects() == objs
    raw = json.loads((scene.path / "objects.json").read_text())
    assert raw[0] == {"id": 1, "label": "chair", "box": [1.0, 2.0, 0.5, 0.6, 0.6, 1.0]}


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("{not json", "cannot parse"),
        ('{"id": 1}', "JSON list"),
        ('[{"id": 1, "label": "a", "box": [0, 0, 0, 1, 1, 1]}, {"id": 2, "label": "b"}]', "entry 1"),
        ('[{"id": 1, "label": "a", "box": [0, 0, 0, 1, 1, -1]}]', "entry 0"),
    ],
)
def test_bad_objects_file(scene, content, fragment):
    (scene.path / "objects.json").write_text(content)
    with pytest.raises(SceneDirError, match=fragment) as info:
        scene.load_objects()
    assert "objects.json" in str(info.value)


def test_points_round_trip(scene):
    assert scene.points_path is None
    with pytest.raises(SceneDirError, match="points.ply"):
        scene.load_points()
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(100, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, size=(100, 3)).astype(np.uint8)
    scene.write_points(xyz, rgb)
    got_xyz, got_rgb = scene.load_points()
    np.testing.assert_array_equal(got_xyz, xyz)
    np.testing.assert_array_equal(got_rgb, rgb)
    scene.write_points(xyz)
    assert scene.load_points()[1] is None


def test_ascii_ply_and_scannet_style_mesh(scene):
    (scene.path / "points.ply").write_text(
        "ply\nformat ascii 1.0\ncomment hand written\nelement vertex 2\nproperty float x\nproperty float y\n"
        "property float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\n"
        "element face 1\nproperty list uchar int vertex_indices\nend_header\n"
        "1 2 3 255 0 0\n4 5 6 0 255 0\n3 0 1 1\n"
    )
    xyz, rgb = scene.load_points()
    np.testing.assert_array_equal(xyz, [[1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(rgb, [[255, 0, 0], [0, 255, 0]])
    # ScanNet *_vh_clean_2.ply: binary vertices with alpha, followed by faces
    verts = np.array([(1.5, 2.5, 3.5, 10, 20, 30, 255)], dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1"), ("alpha", "u1")])
    header = (
        "ply\nformat binary_little_endian 1.0\nelement vertex 1\nproperty float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nproperty uchar alpha\n"
        "element face 1\nproperty list uchar int vertex_indices\nend_header\n"
    )
    (scene.path / "points.ply").write_bytes(header.encode() + verts.tobytes() + b"\x03" + np.array([0, 0, 0], "<i4").tobytes())
    xyz, rgb = scene.load_points()
    np.testing.assert_array_equal(xyz, [[1.5, 2.5, 3.5]])
    np.testing.assert_array_equal(rgb, [[10, 20, 30]])
    (scene.path / "points.ply").write_bytes(b"not a ply")
    with pytest.raises(SceneDirError, match="not a PLY"):
        scene.load_points()
