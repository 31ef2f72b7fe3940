"""Frame sampling: uniform indices and greedy maximum coverage on hand-built voxel sets and frames."""

from __future__ import annotations

import numpy as np
import pytest

from ros3d_agent.scene import Frame, SceneDir
from ros3d_agent.scene.fusion import decode_voxel_keys, encode_voxel_indices
from ros3d_agent.scene.sampling import (
    NoCoverageError,
    coverage_of,
    frame_voxel_keys,
    max_coverage_sample,
    scene_voxel_sets,
    uniform_sample,
)

K = np.array([[40.0, 0, 19.5], [0, 40.0, 14.5], [0, 0, 1]])


def down_frame(x: float, y: float, height: float, fid: str = "0", depth_value: float | None = None) -> Frame:
    """A 40×30 camera looking straight down at the floor (z = 0) from ``height``."""
    T = np.eye(4)
    T[:3, :3] = np.diag([1.0, -1.0, -1.0])  # optical z → world −z
    T[:3, 3] = (x, y, height)
    d = np.full((30, 40), height if depth_value is None else depth_value, np.float32)
    rgb = np.zeros((30, 40, 3), np.uint8)
    return Frame(rgb=rgb, depth=d, K=K, T_world_cam=T, frame_id=fid)


def keys(*ranges: range) -> np.ndarray:
    return np.concatenate([np.arange(r.start, r.stop, dtype=np.int64) for r in ranges])


# -- uniform -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "n, k, expected",
    [(10, 4, [0, 3, 6, 9]), (5, 5, [0, 1, 2, 3, 4]), (3, 8, [0, 1, 2]), (7, 1, [0]), (0, 4, []), (100, 2, [0, 99])],
)
def test_uniform_indices(n, k, expected):
    assert uniform_sample(n, k) == expected


def test_uniform_is_distinct_sorted_and_spans():
    for n in range(2, 60):
        for k in range(1, n + 1):
            idx = uniform_sample(n, k)
            assert idx == sorted(set(idx)) and len(idx) == k
            if k > 1:
                assert idx[0] == 0 and idx[-1] == n - 1


@pytest.mark.parametrize("n, k", [(5, 0), (5, -1), (-1, 3), (5, 2.5), (5, True)])
def test_uniform_rejects_bad_arguments(n, k):
    with pytest.raises(ValueError):
        uniform_sample(n, k)


# -- coverage on voxel sets --------------------------------------------------------------------------
def test_picks_the_frame_with_most_new_voxels_first():
    sets = [
        keys(range(0, 9), range(20, 21)),  # 10 voxels, overlaps the biggest
        keys(range(0, 12)),  # the biggest: picked first
        keys(range(12, 17)),  # 5 voxels, all new after the first pick
        keys(range(30, 33)),  # 3 new
    ]
    res = max_coverage_sample(sets, k=3, coverage_stop=None)
    assert res.order == [1, 2, 3]  # set 0 adds only 1 voxel once set 1 is in
    assert res.gains == [12, 5, 3]
    assert res.indices == [1, 2, 3]
    assert res.total_voxels == 21
    assert res.coverage == pytest.approx(20 / 21)


def test_stops_at_the_coverage_ratio():
    sets = [keys(range(0, 90)), keys(range(90, 98)), keys(range(98, 100)), keys(range(0, 50))]
    res = max_coverage_sample(sets, k=3, coverage_stop=0.95)
    assert res.order == [0, 1]  # 90 % after one pick, 98 % after two: stop
    assert res.coverage == pytest.approx(0.98)
    full = max_coverage_sample(sets, k=3, coverage_stop=None)
    assert full.order == [0, 1, 2] and full.coverage == 1.0


def test_ties_break_towards_the_earlier_frame_and_indices_are_temporal():
    sets = [keys(range(0, 5)), keys(range(10, 20)), keys(range(20, 30)), keys(range(0, 5))]
    res = max_coverage_sample(sets, k=3, coverage_stop=None)
    assert res.order == [1, 2, 0]
    assert res.indices == [0, 1, 2]


def test_empty_frames_are_never_picked():
    sets = [np.empty(0, np.int64), keys(range(0, 4)), np.empty(0, np.int64), keys(range(0, 4))]
    res = max_coverage_sample(sets, k=3, coverage_stop=None)
    assert res.order == [1]  # frame 3 adds nothing, the empty ones nothing at all: stop early
    assert res.empty_frames == [0, 2]


def test_fewer_frames_than_k_returns_all():
    sets = [keys(range(0, 4)), np.empty(0, np.int64)]
    res = max_coverage_sample(sets, k=5)
    assert res.indices == [0, 1] and res.coverage == 1.0


def test_degenerate_inputs_raise_clearly():
    with pytest.raises(ValueError, match="no frames"):
        max_coverage_sample([], k=4)
    with pytest.raises(NoCoverageError, match="valid depth"):
        max_coverage_sample([np.empty(0, np.int64)] * 5, k=2)
    with pytest.raises(ValueError, match="k must"):
        max_coverage_sample([keys(range(3))], k=0)
    with pytest.raises(ValueError, match="coverage_stop"):
        max_coverage_sample([keys(range(3))], k=1, coverage_stop=1.5)
    with pytest.raises(TypeError, match="integer"):
        max_coverage_sample([np.zeros(3, np.float32), keys(range(3))], k=1)


def test_lazy_greedy_matches_plain_greedy():
    rng = np.random.default_rng(0)
    sets = [np.unique(rng.integers(0, 400, size=rng.integers(0, 120))) for _ in range(40)]
    res = max_coverage_sample(sets, k=12, coverage_stop=None)
    covered: set[int] = set()
    order = []
    for _ in range(12):
        gains = [len(set(s.tolist()) - covered) if i not in order else -1 for i, s in enumerate(sets)]
        best = int(np.argmax(gains))  # argmax: first of equal gains
        if gains[best] <= 0:
            break
        order.append(best)
        covered |= set(sets[best].tolist())
    assert res.order == order


def test_index_arrays_sets_and_restriction():
    idx = np.array([[0, 0, 0], [1, 0, 0], [-3, 2, 5]])
    k = encode_voxel_indices(idx)
    np.testing.assert_array_equal(decode_voxel_keys(k), idx)
    a = max_coverage_sample([idx, set(k[:1].tolist()), k[1:]], k=1, coverage_stop=None)
    assert a.order == [0] and a.total_voxels == 3
    restricted = max_coverage_sample([k[:1], k[1:]], k=1, coverage_stop=None, restrict_to=k[:1])
    assert restricted.order == [0] and restricted.total_voxels == 1
    assert coverage_of([k[:1], k[1:]], [1]) == pytest.approx(2 / 3)


# -- coverage on frames ------------------------------------------------------------------------------
def test_frames_higher_view_covers_more_and_dead_depth_is_skipped():
    frames = [
        down_frame(0.0, 0.0, 1.0, "0"),
        down_frame(0.0, 0.0, 0.0, "1", depth_value=0.0),  # no valid depth
        down_frame(0.0, 0.0, 3.0, "2"),  # sees 9× the floor area
        down_frame(5.0, 0.0, 1.0, "3"),  # somewhere else entirely
    ]
    assert frame_voxel_keys(frames[1]).shape == (0,)
    n2 = frame_voxel_keys(frames[2], stride=1).shape[0]
    assert n2 > 4 * frame_voxel_keys(frames[0], stride=1).shape[0]
    res = max_coverage_sample(frames, k=2, coverage_stop=None, stride=1)
    assert res.order == [2, 3]
    assert res.gains[0] == n2
    assert 1 in res.empty_frames


def test_scene_voxel_sets_skips_broken_frames(tmp_path):
    sd = SceneDir.create(tmp_path / "s", K)
    for i, h in enumerate([1.0, 2.0, 1.5]):
        sd.write_frame(i, down_frame(0.0, 0.0, h))
    (tmp_path / "s" / "00001.txt").write_text("nan nan nan nan\n" * 4)
    ids, sets = scene_voxel_sets(sd, stride=1)
    assert ids == ["00000", "00002"] and len(sets) == 2
    assert sd.skipped["nonfinite_pose"] == 1


def test_sample_cli(tmp_path, capsys):
    import json

    from ros3d_agent.cli import main as cli_main

    sd = SceneDir.create(tmp_path / "s", K)
    for i, (x, h) in enumerate([(0.0, 1.0), (0.1, 1.0), (3.0, 2.0), (6.0, 1.0), (6.1, 1.0)]):
        sd.write_frame(i, down_frame(x, 0.0, h))
    assert cli_main(["scenes", "sample", str(sd.path), "--k", "2", "--method", "coverage", "--coverage-stop", "none",
                     "--stride", "1", "--json", "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["pick_order"][0] == "00002" and len(out["frame_ids"]) == 2 and 0 < out["coverage"] < 1
    assert cli_main(["scenes", "sample", str(sd.path), "--k", "3", "--method", "uniform", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "00000 00002 00004" in text and "coverage" in text
    assert cli_main(["scenes", "sample", str(tmp_path / "missing"), "--no-progress"]) == 1
