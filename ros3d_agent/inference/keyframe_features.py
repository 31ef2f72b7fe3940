"""Per-keyframe visual features, cached once and reused by every query, and the choice of views.

Why a cache: the vision tower + projector are the expensive part of a query that does not depend on
the question. The ROS node encodes a keyframe once, when it admits it, and keeps the result; a query
then only joins the cached features of the views it uses (:meth:`VisualFeatures.concat_views`) and
pays for the LLM alone.

A :class:`KeyframeFeatures` holds everything the model needs from one view: the pooled tokens the
LLM sees (3D code already added), the pre-pool features and per-patch world positions grounding
pools proposals from, and (optionally) the 0.1 m voxels the view sees, so a query given more
keyframes than its view budget can keep the ones that cover the most of the scene
(:func:`select_keyframes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch
from numpy.typing import NDArray

from ros3d_agent.model.modeling import VisualFeatures
from ros3d_agent.scene.fusion import voxel_keys
from ros3d_agent.scene.sampling import NoCoverageError, max_coverage_sample, uniform_sample

__all__ = ["KeyframeFeatures", "ViewSelection", "COVERAGE_VOXEL_SIZE", "coverage_voxels", "select_keyframes"]

#: edge of the voxels whose coverage ranks views (Video-3D-LLM's maximum-coverage sampling uses 0.1 m)
COVERAGE_VOXEL_SIZE = 0.1
# Every 4th pixel of the resampled coordinate map still hits each 0.1 m voxel in view at indoor range.
_COVERAGE_STRIDE = 4


@dataclass(frozen=True, eq=False)
class KeyframeFeatures:
    """The model's encoding of one keyframe (what ``SceneEngine.encode_keyframe`` returns).

    Attributes:
        stamp: acquisition time of the frame (ns), copied from ``Frame.stamp``.
        frame_id: the frame's identifier (informational).
        visual: ``VisualFeatures`` of this single view (batch 1, one view) on the engine's device.
        voxels: sorted int64 keys of the :data:`COVERAGE_VOXEL_SIZE` voxels the view sees (the part
            of the frame the model looks at), or None; used for maximum-coverage view selection.
        encode_seconds: how long encoding took (tower + projector + 3D code).
    """

    stamp: int
    frame_id: str
    visual: VisualFeatures
    voxels: NDArray[np.int64] | None = None
    encode_seconds: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.visual, VisualFeatures):
            raise TypeError(f"visual: expected VisualFeatures, got {type(self.visual).__name__}")
        if self.visual.tokens.shape[:2] != (1, 1):
            raise ValueError(f"visual: expected the features of one view (batch 1, 1 view), got shape {tuple(self.visual.tokens.shape)}")
        if self.visual.view_mask is not None:
            raise ValueError("visual: masked (training) features cannot be cached")

    @property
    def nbytes(self) -> int:
        """Memory held (device tensors + voxel keys), for the keyframe memory's byte budget."""
        total = sum(t.numel() * t.element_size() for t in self._tensors())
        return int(total + (0 if self.voxels is None else self.voxels.nbytes))

    @property
    def device(self) -> torch.device:
        return self.visual.tokens.device

    @property
    def hidden_size(self) -> int:
        return int(self.visual.tokens.shape[-1])

    def _tensors(self) -> list[torch.Tensor]:
        return [getattr(self.visual, f.name) for f in fields(VisualFeatures) if isinstance(getattr(self.visual, f.name), torch.Tensor)]


def coverage_voxels(world_xyz: torch.Tensor, world_valid: torch.Tensor, voxel_size: float = COVERAGE_VOXEL_SIZE) -> NDArray[np.int64]:
    """Sorted unique voxel keys seen by one view, from its resampled ``(S, S, 3)`` coordinate map.

    The map is the one the model encodes (centre crop included), so coverage measures what the model
    would see, at no extra back-projection cost.
    """
    xyz = world_xyz[::_COVERAGE_STRIDE, ::_COVERAGE_STRIDE]
    valid = world_valid[::_COVERAGE_STRIDE, ::_COVERAGE_STRIDE].to(torch.bool)
    pts = xyz[valid].detach().to("cpu", torch.float64).numpy()
    if pts.shape[0] == 0:
        return np.empty(0, np.int64)
    return np.unique(voxel_keys(pts, voxel_size))


@dataclass(frozen=True)
class ViewSelection:
    """Which keyframes a query uses: ``indices`` into the given sequence, in stamp order, and how."""

    indices: list[int]
    method: str  # "all" | "uniform" | "coverage"


def select_keyframes(keyframes: Sequence[KeyframeFeatures], max_views: int) -> ViewSelection:
    """Pick at most ``max_views`` keyframes, returned in stamp (temporal) order.

    All of them when there are few enough; otherwise the greedy maximum-coverage choice when every
    keyframe carries its voxel set (fewer views may come back when the rest add nothing new), else a
    uniform subset in stamp order (Video-3D-LLM's default, what the published models were trained with).
    """
    if max_views < 1:
        raise ValueError(f"max_views must be >= 1, got {max_views}")
    order = sorted(range(len(keyframes)), key=lambda i: (keyframes[i].stamp, i))
    if len(order) <= max_views:
        return ViewSelection(order, "all")
    if all(keyframes[i].voxels is not None for i in order):
        try:
            picked = max_coverage_sample([keyframes[i].voxels for i in order], max_views, COVERAGE_VOXEL_SIZE, coverage_stop=None)
        except NoCoverageError:
            pass  # no view has depth: nothing to rank by, fall back to time
        else:
            return ViewSelection([order[j] for j in picked.indices], "coverage")
    return ViewSelection([order[j] for j in uniform_sample(len(order), max_views)], "uniform")
