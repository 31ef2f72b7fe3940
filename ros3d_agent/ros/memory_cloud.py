"""The node's fused scene cloud and its box proposals, updated as keyframes are admitted.

Grounding chooses among class-agnostic proposals computed from the fused cloud
(``scene.proposals``). Recomputing them costs 0.1–0.5 s, so this keeps them *incrementally*: every
admitted keyframe is fused into a bounded voxel cloud (``scene.fusion.PointCloudFuser``: cost
proportional to the frame), and proposals are recomputed on the admission worker only when the
cloud grew by ``min_growth`` and at most every ``min_interval_ns`` (``IncrementalProposer`` keeps
proposal ids stable across recomputations, so "object 7" keeps meaning the same thing). A query
reads an immutable snapshot and never waits for a recomputation.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from ros3d_agent.scene.fusion import FusionConfig, PointCloudFuser
from ros3d_agent.scene.proposals import IncrementalProposer, ProposalConfig
from ros3d_agent.scene.types import Box3D, Frame

__all__ = ["CloudConfig", "ProposalSnapshot", "SceneCloud"]


@dataclass(frozen=True)
class CloudConfig:
    """Fusion and proposal settings of the node's scene memory."""

    voxel_size: float = 0.03
    stride: int = 4
    max_depth: float | None = 6.0
    max_voxels: int = 2_000_000
    proposals: bool = True
    min_growth: float = 0.05
    min_interval_ns: int = 2_000_000_000
    max_proposals: int = 50

    @classmethod
    def from_params(cls, params: object) -> "CloudConfig":
        """From :class:`~ros3d_agent.ros.params.NodeParams`."""
        f, p, i = params.fusion, params.proposals, params.input  # type: ignore[attr-defined]
        return cls(voxel_size=f.voxel_size, stride=f.stride, max_depth=i.max_depth_m, max_voxels=f.max_voxels,
                   proposals=p.enabled, min_growth=p.min_growth, min_interval_ns=int(p.min_interval_sec * 1e9),
                   max_proposals=p.max_proposals)


@dataclass(frozen=True)
class ProposalSnapshot:
    """Proposals at one moment: boxes (best first) with their stable ids and scores."""

    boxes: tuple[Box3D, ...] = ()
    ids: tuple[int, ...] = ()
    scores: tuple[float, ...] = ()
    version: int = 0
    n_points: int = 0
    computed_mono: float = field(default=0.0)

    def id_map(self) -> dict[int, int]:
        """Engine proposal index (position in ``boxes``) → stable id."""
        return dict(enumerate(self.ids))


class SceneCloud:
    """Thread-safe fused cloud + incrementally recomputed proposals."""

    def __init__(self, config: CloudConfig | None = None) -> None:
        self.config = config or CloudConfig()
        self._lock = threading.Lock()
        self._fuser = PointCloudFuser(FusionConfig(voxel_size=self.config.voxel_size, stride=self.config.stride,
                                                   max_depth=self.config.max_depth, max_voxels=self.config.max_voxels,
                                                   flush_points=200_000))
        self._proposer = IncrementalProposer(ProposalConfig(max_proposals=self.config.max_proposals),
                                             min_growth=self.config.min_growth)
        self._snapshot = ProposalSnapshot()
        self._last_proposal_mono = -1e18
        self._dirty = False
        #: seconds of the last fusion and proposal computations (diagnostics)
        self.last_fuse_s = 0.0
        self.last_proposal_s = 0.0
        self.proposal_runs = 0

    def clear(self) -> None:
        with self._lock:
            self._fuser.reset()
            self._proposer = IncrementalProposer(ProposalConfig(max_proposals=self.config.max_proposals),
                                                 min_growth=self.config.min_growth)
            self._snapshot = ProposalSnapshot()
            self._dirty = False

    def add_frame(self, frame: Frame) -> bool:
        """Fuse one keyframe; False when it has no valid depth."""
        t0 = time.perf_counter()
        with self._lock:
            ok = self._fuser.add(frame)
            self._dirty |= ok
        self.last_fuse_s = time.perf_counter() - t0
        return ok

    def update_proposals(self, *, force: bool = False) -> bool:
        """Recompute proposals if the cloud changed enough and the rate limit allows; True if recomputed.

        The cloud is copied under the lock and the (slow) proposal search runs outside it, so
        fusion of the next keyframe is not blocked.
        """
        if not self.config.proposals:
            return False
        now = time.monotonic()
        with self._lock:
            if not self._dirty and not force:
                return False
            if not force and (now - self._last_proposal_mono) * 1e9 < self.config.min_interval_ns:
                return False
            xyz, rgb = self._fuser.cloud()
            if xyz.shape[0] == 0 or (not force and not self._proposer.needs_update(int(xyz.shape[0]))):
                return False
            self._dirty = False
            self._last_proposal_mono = now
        t0 = time.perf_counter()
        res = self._proposer.update(xyz, rgb=rgb, force=True)
        self.last_proposal_s = time.perf_counter() - t0
        snap = ProposalSnapshot(tuple(res.boxes), tuple(int(i) for i in res.ids), tuple(float(s) for s in res.scores),
                                self._snapshot.version + 1, int(xyz.shape[0]), time.monotonic())
        with self._lock:
            self._snapshot = snap
            self.proposal_runs += 1
        return True

    def proposals(self) -> ProposalSnapshot:
        with self._lock:
            return self._snapshot

    def cloud(self) -> tuple[NDArray[np.float32], NDArray[np.uint8]]:
        with self._lock:
            return self._fuser.cloud()

    def stats(self) -> dict[str, float]:
        with self._lock:
            n = len(self._fuser)
            return {"points": float(n), "frames_fused": float(self._fuser.n_frames), "voxel_size": self._fuser.voxel_size,
                    "proposals": float(len(self._snapshot.boxes)), "proposal_runs": float(self.proposal_runs),
                    "last_fuse_s": self.last_fuse_s, "last_proposal_s": self.last_proposal_s}
