"""Class-agnostic proposals on hand-built clouds: a room (floor, four walls, ceiling) with furniture,
a table carrying two objects, and degenerate clouds; plus recall over a scene directory and the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ros3d_agent.scene import Box3D, SceneDir, SceneObject
from ros3d_agent.scene.iou import pairwise_aabb_iou
from ros3d_agent.scene.proposal_recall import evaluate_recall, find_scene_dirs, scene_recall
from ros3d_agent.scene.proposals import IncrementalProposer, ProposalConfig, nms_aabb, propose_boxes, scene_structure, structure_mask

W, D, H = 5.0, 4.0, 2.6
STEP = 0.015


def _grid(a0: float, a1: float, b0: float, b1: float, step: float) -> tuple[np.ndarray, np.ndarray]:
    g0, g1 = np.meshgrid(np.arange(a0, a1 + 1e-9, step), np.arange(b0, b1 + 1e-9, step))
    return g0.ravel(), g1.ravel()


def _plane(axis: int, value: float, r0: tuple[float, float], r1: tuple[float, float], step: float) -> np.ndarray:
    a, b = _grid(r0[0], r1[0], r0[1], r1[1], step)
    p = np.empty((a.shape[0], 3))
    others = [i for i in range(3) if i != axis]
    p[:, axis], p[:, others[0]], p[:, others[1]] = value, a, b
    return p


def _box_surface(lo, hi, step: float = STEP, bottom: bool = False) -> np.ndarray:
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    faces = []
    for axis in range(3):
        o = [i for i in range(3) if i != axis]
        for side, v in ((0, lo[axis]), (1, hi[axis])):
            if axis == 2 and side == 0 and not bottom:
                continue  # resting on something: the bottom face is never seen
            faces.append(_plane(axis, v, (lo[o[0]], lo[o[1]]), (hi[o[0]], hi[o[1]]), step))
    return np.concatenate(faces)


def _cylinder(cx: float, cy: float, r: float, z0: float, h: float, step: float = STEP) -> np.ndarray:
    n = max(12, int(2 * math.pi * r / step))
    a, z = np.meshgrid(np.linspace(0, 2 * math.pi, n, endpoint=False), np.arange(z0, z0 + h + 1e-9, step))
    side = np.stack([cx + r * np.cos(a.ravel()), cy + r * np.sin(a.ravel()), z.ravel()], axis=1)
    rr, aa = np.meshgrid(np.arange(0, r + 1e-9, step), np.linspace(0, 2 * math.pi, n, endpoint=False))
    top = np.stack([cx + rr.ravel() * np.cos(aa.ravel()), cy + rr.ravel() * np.sin(aa.ravel()), np.full(rr.size, z0 + h)], axis=1)
    return np.concatenate([side, top])


def _aabb(lo, hi) -> list[float]:
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    return [*((lo + hi) / 2), *(hi - lo)]


def structure_points(ceiling: bool = True) -> np.ndarray:
    s = 2 * STEP
    parts = [
        _plane(2, 0.0, (0, 0), (W, D), s),
        _plane(0, 0.0, (0, 0), (D, H), s),
        _plane(0, W, (0, 0), (D, H), s),
        _plane(1, 0.0, (0, 0), (W, H), s),
        _plane(1, D, (0, 0), (W, H), s),
    ]
    if ceiling:
        parts.append(_plane(2, H, (0, 0), (W, D), s))
    return np.concatenate(parts)


def room_cloud(seed: int = 0) -> tuple[np.ndarray, dict[str, list[float]]]:
    """A 5×4×2.6 m room with a crate, a bookshelf against a wall, a bin and a table holding a box and a bottle."""
    parts = [structure_points()]
    gt: dict[str, list[float]] = {}
    parts.append(_box_surface((0.5, 0.5, 0), (1.0, 1.0, 0.45)))
    gt["crate"] = _aabb((0.5, 0.5, 0), (1.0, 1.0, 0.45))
    parts.append(_box_surface((4.45, 0.3, 0), (4.97, 1.2, 1.8)))
    gt["bookshelf"] = _aabb((4.45, 0.3, 0), (4.97, 1.2, 1.8))
    parts.append(_box_surface((2.0, 2.0, 0.72), (3.2, 2.8, 0.75), bottom=True))
    for lx, ly in ((2.0, 2.0), (3.15, 2.0), (2.0, 2.75), (3.15, 2.75)):
        parts.append(_box_surface((lx, ly, 0), (lx + 0.05, ly + 0.05, 0.72)))
    gt["table"] = _aabb((2.0, 2.0, 0), (3.2, 2.8, 0.75))
    parts.append(_box_surface((2.2, 2.2, 0.75), (2.5, 2.45, 1.0)))
    gt["box_on_table"] = _aabb((2.2, 2.2, 0.75), (2.5, 2.45, 1.0))
    parts.append(_cylinder(2.9, 2.5, 0.05, 0.75, 0.25))
    gt["bottle_on_table"] = _aabb((2.85, 2.45, 0.75), (2.95, 2.55, 1.0))
    parts.append(_cylinder(1.0, 3.2, 0.2, 0.0, 0.6))
    gt["bin"] = _aabb((0.8, 3.0, 0), (1.2, 3.4, 0.6))
    pts = np.concatenate(parts)
    pts += np.random.default_rng(seed).normal(0, 0.002, pts.shape)
    return pts.astype(np.float32), gt


@pytest.fixture(scope="module")
def room():
    pts, gt = room_cloud()
    return pts, gt, propose_boxes(pts)


def _best_iou(gt: dict[str, list[float]], res) -> dict[str, float]:
    iou = pairwise_aabb_iou(np.array(list(gt.values())), res.as_array())
    return dict(zip(gt, iou.max(axis=1)))


def test_recovers_every_box_of_the_room(room):
    pts, gt, res = room
    best = _best_iou(gt, res)
    assert all(v > 0.5 for v in best.values()), best
    assert len(res) <= 12  # a handful of candidates, not one per noise blob
    assert list(res.scores) == sorted(res.scores, reverse=True)
    assert all(isinstance(b, Box3D) for b in res.boxes)


def test_supporting_planes_are_removed(room):
    pts, gt, res = room
    st = res.structure
    assert st.floor_z == pytest.approx(0.0, abs=0.01)
    assert st.ceiling_z == pytest.approx(H, abs=0.02)
    assert st.yaw == 0.0
    offsets = sorted((w.axis, round(w.offset, 2)) for w in st.walls)
    assert offsets == [(0, 0.0), (0, W), (1, 0.0), (1, D)]
    sizes = res.as_array()[:, 3:]
    assert sizes[:, :2].max() < 1.5 and sizes[:, 2].max() < 2.0  # nothing floor-, wall- or ceiling-sized
    structure_only = structure_points()
    assert scene_structure(structure_only).floor_z == pytest.approx(0.0, abs=0.01)
    assert not structure_mask(structure_only, st).any()  # every floor / wall / ceiling point goes
    crate = Box3D.from_list(gt["crate"]).contains(pts) & (pts[:, 2] > 0.1)
    assert structure_mask(pts, st)[crate].all()  # objects stay


def test_objects_on_a_table_are_separated_from_it(room):
    _, gt, res = room
    iou = pairwise_aabb_iou(np.array([gt["table"], gt["box_on_table"], gt["bottle_on_table"]]), res.as_array())
    # Each of the three is best matched by a different proposal, and the table box stops at its top.
    assert (iou.max(axis=1) > 0.5).all()
    assert len(set(iou.argmax(axis=1).tolist())) == 3
    table = res.boxes[int(iou[0].argmax())]
    assert table.center[2] + table.size[2] / 2 <= 0.80


def test_boxes_snap_to_floor_and_wall(room):
    _, gt, res = room
    iou = pairwise_aabb_iou(np.array([gt["bookshelf"]]), res.as_array())[0]
    shelf = res.boxes[int(iou.argmax())]
    lo, hi = shelf.bounds()
    assert lo[2] == pytest.approx(0.0, abs=0.01)  # floor points under it were removed, the box still reaches the floor
    assert hi[0] == pytest.approx(W, abs=0.01)  # likewise the wall behind it


def test_deterministic_and_order_independent(room):
    pts, _, res = room
    again = propose_boxes(pts)
    np.testing.assert_array_equal(res.as_array(), again.as_array())
    perm = np.random.default_rng(1).permutation(pts.shape[0])
    shuffled = propose_boxes(pts[perm])
    np.testing.assert_allclose(np.sort(res.as_array(), axis=0), np.sort(shuffled.as_array(), axis=0), atol=1e-4)


def test_rotated_room_finds_yaw_and_objects():
    pts, gt = room_cloud()
    th = math.radians(30)
    R = np.array([[math.cos(th), -math.sin(th), 0], [math.sin(th), math.cos(th), 0], [0, 0, 1]])
    res = propose_boxes(pts @ R.T)
    assert math.degrees(res.structure.yaw) == pytest.approx(30.0, abs=0.5)
    assert len(res.structure.walls) == 4
    rotated = {}
    for name, b in gt.items():
        corners = Box3D(R @ np.asarray(b[:3]), b[3:], yaw=th).bounds()
        rotated[name] = _aabb(*corners)
    best = _best_iou(rotated, res)
    assert all(v > 0.5 for v in best.values()), best


def test_lamp_shade_and_pole_become_one_box():
    """The pole enters the shade out of sight, so pole and shade are separate clusters; the lamp is their union."""
    parts = [structure_points(), _cylinder(2.5, 2.0, 0.015, 0.0, 1.3), _cylinder(2.5, 2.0, 0.2, 1.3, 0.3)]
    pts = np.concatenate(parts).astype(np.float32)
    res = propose_boxes(pts)
    lamp = _aabb((2.3, 1.8, 0.0), (2.7, 2.2, 1.6))
    iou = pairwise_aabb_iou(np.array([lamp]), res.as_array())[0]
    assert iou.max() > 0.7, iou
    assert res.kinds[int(iou.argmax())] in ("stacked", "grounded", "object")


def test_colour_separates_touching_objects_and_flat_things_on_a_table():
    rng = np.random.default_rng(0)
    red, blue, brown = (200, 30, 30), (30, 40, 200), (120, 80, 40)
    parts = [
        (structure_points(), (180, 180, 180)),
        (_box_surface((1.0, 1.0, 0), (1.4, 1.4, 0.4)), red),  # two crates pushed together
        (_box_surface((1.4, 1.0, 0), (1.8, 1.4, 0.4)), blue),
        (_box_surface((3.0, 2.0, 0.72), (4.0, 2.8, 0.75), bottom=True), brown),  # a table top on legs
        *[(_box_surface((x, y, 0), (x + 0.05, y + 0.05, 0.72)), brown) for x in (3.0, 3.95) for y in (2.0, 2.75)],
        (_box_surface((3.3, 2.2, 0.75), (3.55, 2.5, 0.78)), red),  # a book lying on it
    ]
    pts = np.concatenate([p for p, _ in parts])
    rgb = np.concatenate([np.tile(np.array(c, np.uint8), (len(p), 1)) for p, c in parts])
    pts = (pts + rng.normal(0, 0.002, pts.shape)).astype(np.float32)
    crates = np.array([_aabb((1.0, 1.0, 0), (1.4, 1.4, 0.4)), _aabb((1.4, 1.0, 0), (1.8, 1.4, 0.4))])
    book = np.array([_aabb((3.3, 2.2, 0.75), (3.55, 2.5, 0.78))])
    plain = propose_boxes(pts)
    assert pairwise_aabb_iou(crates, plain.as_array()).max(axis=1).max() < 0.6  # geometry alone sees one block
    coloured = propose_boxes(pts, rgb=rgb)
    assert (pairwise_aabb_iou(crates, coloured.as_array()).max(axis=1) > 0.7).all()
    # 3 cm thin and lying flat: found from geometry alone, just above the clean table surface.
    for res in (plain, coloured):
        assert pairwise_aabb_iou(book, res.as_array()).max() > 0.5
    with pytest.raises(ValueError, match="rgb"):
        propose_boxes(pts, rgb=rgb[:10])


def test_noisy_far_walls_are_found_and_their_thickness_measured():
    """Depth noise grows with range: walls 3-5 m from the camera are layers several cm thick."""
    pts, gt = room_cloud()
    rng = np.random.default_rng(3)
    wall = (pts[:, 0] < 0.01) | (pts[:, 0] > W - 0.01) | (pts[:, 1] < 0.01) | (pts[:, 1] > D - 0.01)
    noisy = pts.copy()
    noisy[wall, :2] += rng.normal(0, 0.025, (int(wall.sum()), 2)).astype(np.float32)
    res = propose_boxes(noisy)
    assert len(res.structure.walls) == 4
    assert all(0.04 < w.margin <= 0.15 for w in res.structure.walls)
    best = _best_iou(gt, res)
    assert all(v > 0.5 for v in best.values()), best


@pytest.mark.parametrize(
    "cloud",
    [
        np.empty((0, 3), np.float32),
        np.full((5, 3), np.nan, np.float32),
        _plane(2, 0.0, (0, 0), (3, 3), 0.02),  # floor only
        structure_points(ceiling=True),  # an empty room
        structure_points(ceiling=False),
    ],
    ids=["empty", "nan", "floor", "empty-room", "no-ceiling"],
)
def test_degenerate_clouds_give_no_proposals(cloud):
    res = propose_boxes(cloud)
    assert len(res) == 0
    assert res.as_array().shape == (0, 6)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="shape"):
        propose_boxes(np.zeros((10, 2)))
    with pytest.raises(ValueError, match="voxel_size"):
        ProposalConfig(voxel_size=0)


def test_nms_keeps_best_and_distinct():
    boxes = np.array([[0, 0, 0, 1, 1, 1], [0.05, 0, 0, 1, 1, 1], [3, 0, 0, 1, 1, 1]], float)
    keep = nms_aabb(boxes, np.array([0.5, 0.9, 0.1]), 0.5)
    assert keep.tolist() == [1, 2]
    assert nms_aabb(boxes, np.array([0.5, 0.9, 0.1]), 0.5, max_keep=1).tolist() == [1]


def test_incremental_recomputes_on_growth_and_keeps_ids():
    pts, gt = room_cloud()
    inc = IncrementalProposer(min_growth=0.05)
    first = inc.update(pts[::2])
    assert inc.n_computed == 1
    same = inc.update(pts[::2][:-10])  # a tiny change: cached
    assert same is first and inc.n_computed == 1
    second = inc.update(pts)  # twice the points: recomputed
    assert inc.n_computed == 2
    iou = pairwise_aabb_iou(second.as_array(), first.as_array())
    for i, row in enumerate(iou):
        j = int(row.argmax())
        if row[j] >= 0.8:
            assert second.ids[i] == first.ids[j]
    assert len(set(second.ids)) == len(second.ids)


def _write_scene(root, name: str, pts: np.ndarray, gt: dict[str, list[float]]) -> SceneDir:
    sd = SceneDir.create(root / name, np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]]))
    sd.write_points(pts)
    sd.write_objects([SceneObject(i, name_, Box3D.from_list(b)) for i, (name_, b) in enumerate(gt.items())])
    return sd


def test_recall_over_scene_dirs_and_cli(tmp_path, capsys):
    from ros3d_agent.cli import main as cli_main

    pts, gt = room_cloud()
    _write_scene(tmp_path, "scene0000", pts, gt)
    missing = dict(gt, ghost=[4.0, 3.5, 1.5, 0.2, 0.2, 0.2])  # an annotated object with no points
    _write_scene(tmp_path, "scene0001", pts, missing)
    (tmp_path / "not_a_scene").mkdir()
    dirs = find_scene_dirs(tmp_path)
    assert [d.name for d in dirs] == ["scene0000", "scene0001"]
    one = scene_recall(dirs[0])
    assert one.source == "points" and one.recalled(0.5) == len(gt)
    report = evaluate_recall(dirs)
    n = 2 * len(gt) + 1
    assert report.n_gt == n
    assert report.recall(0.25) == pytest.approx((n - 1) / n)
    assert report.per_label(0.25)["ghost"] == (0.0, 1)

    assert cli_main(["scenes", "proposals", "--scenes", str(tmp_path), "--cloud", "points", "--json",
                     "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_scenes"] == 2 and out["recall"]["0.25"] == pytest.approx((n - 1) / n)
    assert cli_main(["scenes", "proposals", "--scenes", str(tmp_path / "not_a_scene"), "--no-progress"]) == 1
