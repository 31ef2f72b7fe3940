"""Procedural scenes: layouts, meshes, camera path, ray-cast RGB-D and scene directories, on real files.

Everything renders at low resolution (160×120 or less, a handful of frames) to stay fast; the
geometry checks compare the rendered depth with the layout it came from, so a wrong camera
convention, a misplaced mesh or a z-depth/ray-length mix-up fails here.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ros3d_agent.scene import Box3D, SceneDir, backproject_depth, make_transform
from ros3d_agent.scene.iou import clip_convex_polygon, polygon_area
from ros3d_agent.scene.synthetic import CATALOG, PALETTE, SIZE_CLASSES, LayoutConfig, TrajectoryConfig, generate_layout
from ros3d_agent.scene.synthetic.catalog import category, sample_size
from ros3d_agent.scene.synthetic.layout import PlacedObject, Room, SceneLayout, Walkway
from ros3d_agent.scene.synthetic.trajectory import camera_intrinsics, look_rotation, orbit_trajectory

o3d = pytest.importorskip("open3d")

from ros3d_agent.scene.synthetic.generate import (  # noqa: E402
    SCENE_GRAPH_FILE,
    GenerateConfig,
    generate_scene,
    generate_scenes,
    scene_is_complete,
)
from ros3d_agent.scene.synthetic.meshes import object_box, object_parts, scene_parts  # noqa: E402
from ros3d_agent.scene.synthetic.render import RenderConfig, SceneRenderer, SensorNoise  # noqa: E402

SMALL = dict(width=160, height=120)
LAYOUT_SEEDS = range(40)


@pytest.fixture(scope="module")
def layouts() -> list[SceneLayout]:
    return [generate_layout(s) for s in LAYOUT_SEEDS]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    """Two small scenes written once for the read-back tests (in-process, one worker)."""
    out = tmp_path_factory.mktemp("synth")
    generate_scenes(out, 2, seed=3, config=GenerateConfig(frames=6, **SMALL), workers=1, progress=False)
    return out


# --------------------------------------------------------------------------------------------------
# Catalog
# --------------------------------------------------------------------------------------------------
def test_catalog_vocabulary():
    assert len(CATALOG) >= 12
    for cat in CATALOG.values():
        assert set(cat.colors) <= set(PALETTE)
        for v in cat.variants:
            assert all(lo <= hi for lo, hi in zip(v.size_min, v.size_max))
    # Colours must be tellable apart after shading: no two palette entries close in RGB.
    rgb = np.array(list(PALETTE.values()))
    d = np.linalg.norm(rgb[:, None] - rgb[None], axis=-1) + np.eye(len(rgb)) * 9
    assert d.min() > 0.2
    with pytest.raises(KeyError, match="unknown category"):
        category("spaceship")


def test_size_classes_are_ordered_thirds():
    v = category("mug").variants[0]
    rng = np.random.default_rng(0)
    vols = {c: [np.prod(sample_size(v, c, rng)) for _ in range(50)] for c in SIZE_CLASSES}
    assert max(vols["small"]) < min(vols["medium"]) and max(vols["medium"]) < min(vols["large"])
    with pytest.raises(ValueError, match="size_class"):
        sample_size(v, "huge", rng)


# --------------------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------------------
def test_layout_is_deterministic_per_seed():
    a, b = generate_layout(11), generate_layout(11)
    assert a == b
    assert a.scene_graph() == b.scene_graph()
    assert generate_layout(12).objects != a.objects
    assert a.scene_id == "synth_00011"


def test_layout_counts_categories_and_distractors(layouts):
    counts = [len(L.objects) for L in layouts]
    assert min(counts) >= 5 and max(counts) <= 25
    seen = Counter(o.label for L in layouts for o in L.objects)
    assert len(seen) >= 12, seen
    with_repeats = 0
    for L in layouts:
        per_cat = Counter(o.label for o in L.objects)
        with_repeats += sum(n >= 2 for n in per_cat.values()) >= 2
        for label, n in per_cat.items():
            looks = [(o.color, o.size_class) for o in L.objects if o.label == label]
            assert len(set(looks)) == n, f"{L.scene_id}: {label} instances are indistinguishable: {looks}"
        for o in L.objects:
            assert o.color in category(o.label).colors and o.size_class in SIZE_CLASSES
    assert with_repeats >= 0.7 * len(layouts), with_repeats


def _footprints_intersect(a: PlacedObject, b: PlacedObject) -> float:
    inter = clip_convex_polygon(a.footprint(), b.footprint())
    return polygon_area(inter) if inter.shape[0] >= 3 else 0.0


def test_no_interpenetration_and_inside_room(layouts):
    for L in layouts:
        W, D, H = L.room.size
        path = L.walkway.samples(256)
        for o in L.objects:
            fp = o.footprint()
            assert fp.min() >= -1e-6 and fp[:, 0].max() <= W + 1e-6 and fp[:, 1].max() <= D + 1e-6
            assert o.top_z < H
            if o.support is None:  # nothing stands on (or next to) the camera's path
                c, s = math.cos(o.yaw), math.sin(o.yaw)
                d = path - o.position[:2]
                u, v = np.abs(c * d[:, 0] + s * d[:, 1]) - o.size[0] / 2, np.abs(-s * d[:, 0] + c * d[:, 1]) - o.size[1] / 2
                gap = np.hypot(np.maximum(u, 0), np.maximum(v, 0)).min()
                assert gap > 0.4, f"{L.scene_id}: object {o.id} ({o.label}) is {gap:.2f} m from the walkway"
        for i, a in enumerate(L.objects):
            for b in L.objects[i + 1 :]:
                z_overlap = min(a.top_z, b.top_z) - max(a.bottom_z, b.bottom_z)
                area = _footprints_intersect(a, b)
                assert area <= 1e-9 or z_overlap <= 1e-6, (
                    f"{L.scene_id}: {a.label} {a.id} and {b.label} {b.id} interpenetrate (area {area:.4f} m^2, dz {z_overlap:.3f} m)"
                )


def test_stacked_objects_rest_on_their_support(layouts):
    stacked = 0
    for L in layouts:
        for o in L.objects:
            if o.support is None:
                assert o.bottom_z == 0.0
                continue
            stacked += 1
            sup = L.object(o.support)
            assert CATALOG[sup.label].supports
            assert abs(o.bottom_z - sup.top_z) < 1e-6
            # The geometry agrees: the support's mesh top is where the object's mesh bottom is.
            ob, sb = object_box(o), object_box(sup)
            assert abs((ob[2] - ob[5] / 2) - (sb[2] + sb[5] / 2)) < 1e-5
            # ... and the object stands within the support's top.
            area = _footprints_intersect(o, sup)
            own = polygon_area(o.footprint())
            assert area == pytest.approx(own, rel=1e-6)
    assert stacked >= len(layouts)  # on average at least one stacked object per scene


def test_meshes_fill_their_oriented_boxes():
    room = Room(6, 5, 2.8, "beige", "white", "tiles", 0.5)
    rng = np.random.default_rng(1)
    for label, cat in CATALOG.items():
        for v in cat.variants:
            size = sample_size(v, "large", rng)
            obj = PlacedObject(0, label, v.shape, cat.colors[0], "large", size, (3.0, 2.5, 0.2), 0.7, None, v.round)
            parts = object_parts(obj)
            verts = np.concatenate([p.vertices for p in parts])
            assert obj.oriented_box.contains(verts).all(), f"{label}/{v.shape} sticks out of its box"
            assert verts[:, 2].min() == pytest.approx(0.2, abs=1e-9) and verts[:, 2].max() == pytest.approx(0.2 + size[2], abs=1e-9)
            assert any(np.allclose(p.albedo, PALETTE[cat.colors[0]]) for p in parts), f"{label}: no part wears its colour"
            box = object_box(obj)  # the exact AABB is inside the conservative one
            lo, hi = np.array(obj.aabb()[:3]) - np.array(obj.aabb()[3:]) / 2, np.array(obj.aabb()[:3]) + np.array(obj.aabb()[3:]) / 2
            assert np.all(np.array(box[:3]) - np.array(box[3:]) / 2 >= lo - 1e-6) and np.all(np.array(box[:3]) + np.array(box[3:]) / 2 <= hi + 1e-6)
    assert len(scene_parts(SceneLayout("t", 0, room, Walkway((3, 2.5), (1, 1))))) == 6  # floor, ceiling, 4 walls


# --------------------------------------------------------------------------------------------------
# Camera
# --------------------------------------------------------------------------------------------------
def test_look_rotation_is_opencv_optical():
    R = look_rotation(0.0, 0.0)  # looking along world +x
    np.testing.assert_allclose(R[:, 2], [1, 0, 0], atol=1e-12)  # z forward
    np.testing.assert_allclose(R[:, 0], [0, -1, 0], atol=1e-12)  # x right = -y world
    np.testing.assert_allclose(R[:, 1], [0, 0, -1], atol=1e-12)  # y down
    R = look_rotation(1.0, -0.3, 0.05)
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)
    assert R[2, 2] == pytest.approx(math.sin(-0.3))


def test_intrinsics_like_a_consumer_rgbd_camera():
    for s in range(10):
        K = camera_intrinsics(640, 480, np.random.default_rng(s))
        assert 525 <= K[0, 0] <= 580 and abs(K[0, 0] - K[1, 1]) < 0.01 * K[0, 0]
        assert abs(K[0, 2] - 319.5) < 8 and abs(K[1, 2] - 239.5) < 8
    assert camera_intrinsics(160, 120, np.random.default_rng(0))[0, 0] == pytest.approx(camera_intrinsics(640, 480, np.random.default_rng(0))[0, 0] / 4, rel=1e-3)


def test_trajectory_is_smooth_and_inside_the_room(layouts):
    cfg = TrajectoryConfig(num_frames=40)
    for L in layouts[:10]:
        poses = orbit_trajectory(L.walkway, cfg, np.random.default_rng([L.seed, 2]))
        assert poses.shape == (40, 4, 4)
        W, D, _ = L.room.size
        t = poses[:, :3, 3]
        assert np.all((t[:, 0] > 0.5) & (t[:, 0] < W - 0.5) & (t[:, 1] > 0.5) & (t[:, 1] < D - 0.5))
        assert np.all((t[:, 2] > 1.2 - 0.07) & (t[:, 2] < 1.7 + 0.07))
        assert np.linalg.norm(np.diff(t, axis=0), axis=1).max() < 0.6
        for a, b in zip(poses[:-1], poses[1:]):
            cos = (np.trace(a[:3, :3].T @ b[:3, :3]) - 1) / 2
            assert math.degrees(math.acos(min(1.0, cos))) < 25
        assert np.all(poses[:, 2, 2] < 0)  # optical axis tilted down, toward the room contents
    with pytest.raises(ValueError, match="num_frames"):
        TrajectoryConfig(num_frames=0)


# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------
def _probe_layout() -> SceneLayout:
    """A red ball and a blue box floating in front of a camera at a known place."""
    room = Room(6.0, 5.0, 3.0, "beige", "white", "planks", 0.15)
    box = PlacedObject(0, "box", "box", "blue", "large", (0.5, 0.5, 0.5), (3.0, 2.5, 1.25), 0.0, None)
    ball = PlacedObject(1, "ball", "sphere", "red", "large", (0.4, 0.4, 0.4), (3.0, 1.6, 1.3), 0.0, None, True)
    return SceneLayout("probe", 0, room, Walkway((3.0, 2.5), (1.0, 1.0)), (box, ball))


def _probe_camera(width=160, height=120):
    K = np.array([[width * 0.85, 0, (width - 1) / 2], [0, width * 0.85, (height - 1) / 2], [0, 0, 1.0]])
    T = make_transform(look_rotation(0.0, 0.0), (1.0, 2.5, 1.5))  # looks along +x at the box's front face
    return K, T


def test_pixel_hits_known_object_at_its_z_depth():
    L = _probe_layout()
    r = SceneRenderer(L, RenderConfig(noise=SensorNoise(enabled=False), **SMALL))
    K, T = _probe_camera()
    res = r.render(T, K)
    v, u = 60, 80  # near the principal point: the box face at x = 2.75 is 1.75 m ahead
    assert res.object_ids[v, u] == 0
    assert res.depth_clean[v, u] == pytest.approx(1.75, abs=1e-4)  # z-depth, not ray length
    assert res.depth_clean[10, 5] > 0 and res.object_ids[10, 5] == -1  # the far wall / ceiling
    assert res.depth_clean[v, 40] == pytest.approx(6.0 - 1.0, abs=1e-3)  # the wall x = 6 faces the camera
    side = 2.5 / ((K[0, 2] - 5) / K[0, 0])  # the wall y = 5, 2.5 m to the left, seen obliquely
    assert res.depth_clean[v, 5] == pytest.approx(side, rel=1e-4)
    # Back-projecting through the shared geometry code lands each object's pixels in its box.
    for oid, obj in enumerate(L.objects):
        mask = res.object_ids == oid
        pts, _ = backproject_depth(np.where(mask, res.depth_clean, 0), K, T)
        assert mask.sum() > 100
        assert obj.oriented_box.contains(pts).mean() > 0.99 or Box3D.from_list(object_box(obj)).contains(pts).mean() > 0.99


def test_colours_are_shaded_and_keep_their_hue():
    L = _probe_layout()
    r = SceneRenderer(L, RenderConfig(noise=SensorNoise(enabled=False), **SMALL))
    K, T = _probe_camera()
    res = r.render(T, K)
    for oid, channel in ((0, 2), (1, 0)):  # blue box, red ball
        px = res.rgb[res.object_ids == oid].astype(float)
        assert np.argmax(px.mean(axis=0)) == channel
        assert len(np.unique(px[:, channel])) > 5 and px[:, channel].std() > 2.0  # shaded, not a flat id colour
    floor = res.rgb[(res.surface_ids == 1)]
    assert floor.std(axis=0).max() > 3.0  # the plank texture varies


def test_noise_holes_and_determinism():
    L = generate_layout(5)
    cfg = RenderConfig(**SMALL)
    r = SceneRenderer(L, cfg)
    K = camera_intrinsics(160, 120, np.random.default_rng(0))
    T = orbit_trajectory(L.walkway, TrajectoryConfig(num_frames=4), np.random.default_rng(1))[0]
    a = r.render(T, K, np.random.default_rng([5, 1, 0]))
    b = SceneRenderer(L, cfg).render(T, K, np.random.default_rng([5, 1, 0]))
    c = r.render(T, K, np.random.default_rng([5, 1, 1]))
    assert np.array_equal(a.depth, b.depth) and np.array_equal(a.rgb, b.rgb)
    assert not np.array_equal(a.depth, c.depth)
    holes = (a.depth == 0) & (a.depth_clean > 0) & (a.depth_clean < cfg.max_range)
    assert 0.0005 < holes.mean() < 0.15
    both = (a.depth > 0) & (a.depth_clean > 0)
    err = (a.depth - a.depth_clean)[both]
    assert 0.0005 < np.abs(err).mean() < 0.05 and abs(err.mean()) < 0.005
    assert not np.any(a.depth > cfg.max_range)
    with pytest.raises(ValueError, match="Generator"):
        r.render(T, K)


def test_render_depth_agrees_with_layout(layouts):
    """Noise-free depth of a real scene: object pixels inside their boxes, room pixels on its planes."""
    L = layouts[0]
    r = SceneRenderer(L, RenderConfig(noise=SensorNoise(enabled=False), **SMALL))
    K = camera_intrinsics(160, 120, np.random.default_rng(0))
    boxes = {o.id: Box3D.from_list(object_box(o)) for o in L.objects}
    W, D, H = L.room.size
    seen = set()
    for T in orbit_trajectory(L.walkway, TrajectoryConfig(num_frames=6), np.random.default_rng(0)):
        res = r.render(T, K)
        pts, mask = backproject_depth(res.depth, K, T)
        ids = res.object_ids[mask]
        for oid in np.unique(ids[ids >= 0]):
            seen.add(int(oid))
            sel = pts[ids == oid]
            grown = Box3D(boxes[oid].center, boxes[oid].size + 0.01)
            assert grown.contains(sel).mean() > 0.995, L.object(int(oid)).label
        room = pts[ids < 0].astype(np.float64)
        dist = np.min(np.abs(np.column_stack([room[:, 0], W - room[:, 0], room[:, 1], D - room[:, 1], room[:, 2], H - room[:, 2]])), axis=1)
        assert np.quantile(dist, 0.999) < 0.01
    assert len(seen) >= 3


# --------------------------------------------------------------------------------------------------
# Scene directories
# --------------------------------------------------------------------------------------------------
CONTRACT_OBJECT_KEYS = {"id", "label", "color", "color_rgb", "shape", "size_class", "box", "yaw", "support", "visible_frames", "visible_pixels"}


def test_scene_directory_reads_back(scenes):
    for sid in ("synth_00003", "synth_00004"):
        path = scenes / sid
        assert scene_is_complete(path)
        graph = json.loads((path / SCENE_GRAPH_FILE).read_text())
        assert set(graph) == {"scene_id", "seed", "generator_version", "room", "objects", "trajectory"}
        assert graph["scene_id"] == sid and graph["seed"] == int(sid[-5:]) and graph["generator_version"] == 1
        assert graph["trajectory"] == {"type": "orbit", "num_frames": 6, "fps": 30.0}
        assert set(graph["room"]) == {"size", "floor_color", "wall_color"}
        sd = SceneDir(path)
        frames = list(sd.iter_frames())
        assert len(frames) == 6 and not sd.skipped
        assert frames[0].rgb.shape == (120, 160, 3) and frames[0].depth.dtype == np.float32
        assert 0.5 < (frames[0].depth > 0).mean() <= 1.0
        objs = {o.id: o for o in sd.load_objects()}
        assert len(objs) == len(graph["objects"])
        ids = {o["id"] for o in graph["objects"]}
        for o in graph["objects"]:
            assert set(o) == CONTRACT_OBJECT_KEYS
            assert objs[o["id"]].label == o["label"] and objs[o["id"]].box.to_list() == o["box"]
            assert o["support"] is None or o["support"] in ids
            assert 0 <= o["visible_frames"] <= 6 and o["visible_pixels"] >= 0
            assert o["color_rgb"] == list(PALETTE[o["color"]])
        assert sum(o["visible_frames"] > 0 for o in graph["objects"]) >= 2
        xyz, rgb = sd.load_points()
        assert xyz.shape[0] > 1000 and rgb is not None and rgb.shape == xyz.shape
        room = np.array(graph["room"]["size"])
        assert np.all(xyz.min(0) > -0.1) and np.all(xyz.max(0) < room + 0.1)
        # Voxel-downsampled: no two points share a 2 cm voxel.
        assert len(np.unique(np.floor(xyz / 0.02).astype(np.int64), axis=0)) >= 0.95 * len(xyz)


def test_written_depth_matches_the_rendered_geometry(tmp_path):
    cfg = GenerateConfig(frames=3, noise=False, **SMALL)
    s = generate_scene(8, tmp_path, cfg)
    sd = SceneDir(s.path)
    L = generate_layout(8)
    r = SceneRenderer(L, cfg.render)
    for frame in sd.iter_frames():
        res = r.render(frame.T_world_cam, frame.K)
        in_range = (res.depth_clean < cfg.render.max_range) & (res.depth_clean > cfg.render.min_range)
        assert np.abs(frame.depth - np.where(in_range, res.depth_clean, 0))[in_range].max() < 0.0006  # mm PNG
        assert np.array_equal(frame.depth > 0, in_range)  # no holes without noise


def test_generation_is_deterministic_and_resumable(tmp_path):
    cfg = GenerateConfig(frames=3, **SMALL)
    a = generate_scene(21, tmp_path / "a", cfg)
    b = generate_scene(21, tmp_path / "b", cfg)
    pa, pb = Path(a.path), Path(b.path)
    for name in ["00000.png", "00001.png", "00002.png", SCENE_GRAPH_FILE, "objects.json", "points.ply", "00002.jpg"]:
        assert (pa / name).read_bytes() == (pb / name).read_bytes(), name
    # Resume: a complete scene is skipped; --overwrite regenerates it; partial leftovers are cleaned.
    mtime = os.stat(pa / SCENE_GRAPH_FILE).st_mtime_ns
    assert generate_scene(21, tmp_path / "a", cfg).skipped
    assert os.stat(pa / SCENE_GRAPH_FILE).st_mtime_ns == mtime
    stale = tmp_path / "a" / ".synth_00021.partial-999999"
    stale.mkdir()
    (pa / SCENE_GRAPH_FILE).unlink()  # an incomplete scene directory
    out = generate_scenes(tmp_path / "a", 1, seed=21, config=cfg, workers=1, progress=False)
    assert not out[0].skipped and not stale.exists() and scene_is_complete(pa)
    assert (pa / "00001.png").read_bytes() == (pb / "00001.png").read_bytes()
    again = generate_scene(21, tmp_path / "a", cfg, overwrite=True)
    assert not again.skipped
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["synth_00021"]


def test_two_workers_match_one(tmp_path, scenes):
    out = generate_scenes(tmp_path, 2, seed=3, config=GenerateConfig(frames=6, **SMALL), workers=2, progress=False)
    assert [s.scene_id for s in out] == ["synth_00003", "synth_00004"] and not any(s.skipped for s in out)
    for s in out:
        for name in ("00005.png", SCENE_GRAPH_FILE):
            assert (Path(s.path) / name).read_bytes() == (scenes / s.scene_id / name).read_bytes()


def test_invalid_arguments_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="frames"):
        GenerateConfig(frames=0)
    with pytest.raises(ValueError, match="width"):
        GenerateConfig(width=4)
    with pytest.raises(ValueError, match="seed"):
        generate_layout(-1)
    with pytest.raises(ValueError, match="num_objects"):
        LayoutConfig(num_objects=(5, 2))
    with pytest.raises(ValueError, match="walkway"):
        LayoutConfig(room_width=(3.0, 4.0))
    with pytest.raises(ValueError, match="max_range"):
        RenderConfig(max_range=100.0)
    with pytest.raises(ValueError, match="num"):
        generate_scenes(tmp_path, 0, progress=False)
    with pytest.raises(ValueError, match="workers"):
        generate_scenes(tmp_path, 1, workers=0, progress=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        generate_scene(0, tmp_path / "file")


def test_cli(tmp_path, capsys):
    from ros3d_agent.cli import main

    argv = ["scenes", "generate", "--out", str(tmp_path), "--num", "1", "--seed", "2", "--frames", "2", "--width", "64", "--height", "48", "--workers", "1", "--quiet", "--no-noise"]
    assert main(argv) == 0
    assert "1 scenes generated" in capsys.readouterr().out
    assert scene_is_complete(tmp_path / "synth_00002")
    assert main(argv) == 0 and "0 scenes generated, 1 already complete" in capsys.readouterr().out
    assert main(["scenes", "generate", "--out", str(tmp_path), "--frames", "0", "--quiet"]) == 2
    assert "frames must be a positive integer" in capsys.readouterr().err
