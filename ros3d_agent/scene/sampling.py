"""Choose which views of a scene the model sees: uniform in time, or greedy maximum coverage.

The model takes a fixed budget of views per query (Video-3D-LLM: 32). Uniform sampling is what the
published models were trained with; maximum-coverage sampling (Video-3D-LLM's "MC") picks, one at a
time, the view that adds the most not-yet-seen 0.1 m voxels, and can stop early once the chosen views
cover a given share (e.g. 95 %) of everything the scene's views see, which roughly halves the views
(and visual tokens) at almost no accuracy cost.

Coverage works on per-frame voxel sets (sorted int64 keys from :func:`frame_voxel_keys`), so the ROS
node can compute each keyframe's set once when it arrives and re-run the selection for every query.
Ties break towards the earlier frame (Video-3D-LLM breaks them at random), so results are
reproducible.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from .errors import SceneError
from .fusion import encode_voxel_indices, frame_points, voxel_keys
from .scene_dir import SceneDir
from .types import Frame

__all__ = [
    "NoCoverageError",
    "CoverageSample",
    "uniform_sample",
    "frame_voxel_keys",
    "max_coverage_sample",
    "coverage_of",
    "scene_voxel_sets",
]


class NoCoverageError(SceneError, ValueError):
    """No frame sees anything (every depth image is empty), so coverage cannot rank them."""


def uniform_sample(n_frames: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n_frames)``, first and last included; all when ``n_frames <= k``.

    Same rule as Video-3D-LLM (``linspace(0, n - 1, k)``), rounded to the nearest index.
    """
    if isinstance(n_frames, bool) or int(n_frames) != n_frames or n_frames < 0:
        raise ValueError(f"n_frames must be a non-negative integer, got {n_frames!r}")
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    n_frames, k = int(n_frames), int(k)
    if n_frames <= k:
        return list(range(n_frames))
    if k == 1:
        return [0]
    # Distinct: consecutive linspace values differ by (n-1)/(k-1) >= 1 when n > k.
    return [int(i) for i in np.floor(np.linspace(0, n_frames - 1, k) + 0.5).astype(np.int64)]


def frame_voxel_keys(frame: Frame, voxel_size: float = 0.1, stride: int = 4, max_depth: float | None = None) -> NDArray[np.int64]:
    """Sorted unique keys of the ``voxel_size`` world voxels a frame's depth sees.

    Stride 4 on 640×480 still samples every 0.1 m voxel in view several times at indoor range, for
    a sixteenth of the back-projection. An empty array means the frame has no valid depth.
    """
    pts, _ = frame_points(frame, stride=stride, max_depth=max_depth)
    if pts.shape[0] == 0:
        return np.empty(0, np.int64)
    return np.unique(voxel_keys(pts, voxel_size))


def _as_keys(item: object, voxel_size: float, stride: int, max_depth: float | None) -> NDArray[np.int64]:
    if isinstance(item, Frame):
        return frame_voxel_keys(item, voxel_size, stride, max_depth)
    if isinstance(item, (set, frozenset)):
        item = np.fromiter(item, dtype=np.int64, count=len(item))
    arr = np.asarray(item)
    if arr.size == 0:
        return np.empty(0, np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"voxel set: expected integer keys (M,) or voxel indices (M, 3), got dtype {arr.dtype}")
    if arr.ndim == 2 and arr.shape[1] == 3:
        return np.unique(encode_voxel_indices(arr))
    if arr.ndim == 1:
        return np.unique(arr.astype(np.int64))
    raise TypeError(f"voxel set: expected shape (M,) keys or (M, 3) indices, got {arr.shape}")


@dataclass(frozen=True)
class CoverageSample:
    """Result of :func:`max_coverage_sample`.

    Attributes:
        indices: chosen positions in the input sequence, ascending (temporal order, as the model wants them).
        order: the same positions in the order the greedy picked them (most informative first).
        gains: new voxels each pick added, aligned with ``order`` (non-increasing).
        coverage: covered voxels / all voxels the candidate frames see (1.0 when every frame was taken).
        total_voxels: size of that union.
        empty_frames: positions of frames that see nothing (no valid depth or no voxel in ``restrict_to``).
    """

    indices: list[int]
    order: list[int]
    gains: list[int]
    coverage: float
    total_voxels: int
    empty_frames: list[int] = field(default_factory=list)


def max_coverage_sample(
    frames: Sequence[Frame | NDArray[np.integer] | set[int]],
    k: int,
    voxel_size: float = 0.1,
    coverage_stop: float | None = 0.95,
    *,
    stride: int = 4,
    max_depth: float | None = None,
    restrict_to: NDArray[np.integer] | None = None,
) -> CoverageSample:
    """Greedy maximum-coverage choice of at most ``k`` frames.

    Args:
        frames: :class:`Frame` objects, or precomputed voxel sets (sorted or not: int64 keys from
            :func:`frame_voxel_keys`, (M, 3) integer voxel indices, or Python sets of keys). Sets
            must use the same ``voxel_size`` grid; they may be mixed with frames.
        k: the view budget.
        voxel_size: voxel edge (m) for frames given as :class:`Frame`.
        coverage_stop: stop once the chosen frames cover this share of the union (Video-3D-LLM's
            ``mc-ratio95`` is 0.95); ``None`` always picks ``k`` frames while any frame adds voxels.
        stride, max_depth: back-projection settings for :class:`Frame` inputs.
        restrict_to: optional voxel keys (e.g. of the fused scene cloud) outside which voxels do not
            count, so that flying pixels and far outliers buy no coverage.

    When there are no more than ``k`` frames, all of them are returned (there is nothing to choose).
    Frames that see nothing are never picked; the greedy also stops when no frame adds anything,
    which can return fewer than ``k`` frames.

    Raises:
        ValueError: empty ``frames``, bad ``k`` or ``coverage_stop``.
        NoCoverageError: more than ``k`` frames but none of them sees anything.
    """
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if coverage_stop is not None and not (0.0 < coverage_stop <= 1.0):
        raise ValueError(f"coverage_stop must be in (0, 1] or None, got {coverage_stop}")
    n = len(frames)
    if n == 0:
        raise ValueError("max_coverage_sample: no frames to choose from")
    sets = [_as_keys(f, voxel_size, stride, max_depth) for f in frames]
    if restrict_to is not None:
        allowed = np.unique(np.asarray(restrict_to, dtype=np.int64).reshape(-1))
        sets = [s[np.isin(s, allowed, assume_unique=True)] for s in sets]
    empty = [i for i, s in enumerate(sets) if s.shape[0] == 0]
    union = np.unique(np.concatenate(sets))
    total = int(union.shape[0])

    if n <= k:
        return CoverageSample(list(range(n)), list(range(n)), [], 1.0 if total else 0.0, total, empty)
    if total == 0:
        raise NoCoverageError(f"none of the {n} frames has valid depth (in range); coverage sampling cannot rank them (use uniform_sample)")

    # Positions of each frame's voxels in the union: the greedy then works on one boolean array.
    ids = [np.searchsorted(union, s) for s in sets]
    covered = np.zeros(total, dtype=np.bool_)
    n_covered = 0
    # Lazy greedy: a frame's gain can only shrink as more is covered (submodularity), so a stale
    # gain is an upper bound and only the top of the heap needs re-evaluating. With ties broken by
    # the lower index this returns exactly what the plain greedy would.
    heap = [(-int(s.shape[0]), i) for i, s in enumerate(sets) if s.shape[0] > 0]
    heapq.heapify(heap)
    order: list[int] = []
    gains: list[int] = []
    while heap and len(order) < k:
        if coverage_stop is not None and n_covered >= coverage_stop * total:
            break
        _, i = heapq.heappop(heap)
        fresh = ids[i][~covered[ids[i]]]
        gain = int(fresh.shape[0])
        if gain == 0:
            continue  # adds nothing now, and never will
        if heap and (-gain, i) > heap[0]:
            heapq.heappush(heap, (-gain, i))  # another frame may now be better: re-rank
            continue
        covered[fresh] = True
        n_covered += gain
        order.append(i)
        gains.append(gain)
    return CoverageSample(sorted(order), order, gains, n_covered / total, total, empty)


def coverage_of(sets: Sequence[NDArray[np.int64]], indices: Sequence[int]) -> float:
    """Share of the union of all ``sets`` that the chosen ``indices`` cover (0.0 when the union is empty)."""
    if not sets:
        return 0.0
    union = np.unique(np.concatenate([np.asarray(s, dtype=np.int64) for s in sets]))
    if union.shape[0] == 0:
        return 0.0
    chosen = [np.asarray(sets[i], dtype=np.int64) for i in indices]
    covered = np.unique(np.concatenate(chosen)) if chosen else np.empty(0, np.int64)
    return float(np.isin(covered, union, assume_unique=True).sum() / union.shape[0])


def scene_voxel_sets(
    scene: SceneDir, voxel_size: float = 0.1, stride: int = 4, *, max_depth: float | None = None, progress: bool = False
) -> tuple[list[str], list[NDArray[np.int64]]]:
    """Frame ids and voxel sets of every loadable frame of a scene directory (broken frames skipped,
    counted in ``scene.skipped``). Frames are dropped after use, so memory holds only the sets.
    """
    ids = scene.frame_ids()
    it = scene.iter_frames()
    if progress:
        from tqdm import tqdm

        it = tqdm(it, total=len(ids), desc="voxelising frames", unit="frame")
    out_ids: list[str] = []
    sets: list[NDArray[np.int64]] = []
    for frame in it:
        out_ids.append(frame.frame_id)
        sets.append(frame_voxel_keys(frame, voxel_size, stride, max_depth))
    return out_ids, sets
