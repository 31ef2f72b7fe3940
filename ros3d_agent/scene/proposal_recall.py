"""How many annotated objects the class-agnostic proposals cover: recall at 3D IoU 0.25 / 0.5.

Grounding by proposal selection can only be right when some proposal overlaps the target, so this
recall is the ceiling of Acc@0.25 / Acc@0.5 for anything grounded on :mod:`.proposals`. A GT box counts
as recalled at threshold t when any proposal has axis-aligned IoU ≥ t with it (the usual proposal
recall; no one-to-one matching), over all GT boxes of all scenes (micro average).

A GT object the cloud holds no points of cannot be proposed from geometry, whatever the method, so
the report also gives recall over the *observed* GT boxes (at least ``min_observed_points`` cloud
points inside the box, grown by 2 cm), which separates the proposal method from scene coverage.
"""

from __future__ import annotations

import math
import os
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import SceneDirError
from .fusion import FusionConfig, scene_cloud
from .iou import pairwise_aabb_iou
from .proposals import ProposalConfig, propose_boxes
from .scene_dir import INTRINSIC_FILE, SceneDir

__all__ = ["SceneRecall", "RecallReport", "find_scene_dirs", "scene_recall", "evaluate_recall"]

DEFAULT_THRESHOLDS: tuple[float, ...] = (0.25, 0.5)


@dataclass
class SceneRecall:
    """One scene: best IoU of each GT box with any proposal, the proposal count and time."""

    scene_id: str
    labels: list[str]
    best_iou: NDArray[np.float64]
    n_proposals: int
    seconds: float
    source: str
    points_in_box: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))

    def recalled(self, threshold: float, observed_only: int | None = None) -> int:
        hit = self.best_iou >= threshold
        if observed_only is not None:
            hit &= self.points_in_box >= observed_only
        return int(np.count_nonzero(hit))

    def n_observed(self, min_points: int) -> int:
        return int(np.count_nonzero(self.points_in_box >= min_points))


@dataclass
class RecallReport:
    """Recall over many scenes; ``failed`` maps a scene path to why it could not be evaluated."""

    scenes: list[SceneRecall] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
    min_observed_points: int = 10

    @property
    def n_gt(self) -> int:
        return sum(len(s.labels) for s in self.scenes)

    @property
    def n_observed(self) -> int:
        return sum(s.n_observed(self.min_observed_points) for s in self.scenes)

    def recall(self, threshold: float) -> float:
        """Share of all GT boxes covered at ``threshold`` (NaN when there are no GT boxes)."""
        n = self.n_gt
        return float("nan") if n == 0 else sum(s.recalled(threshold) for s in self.scenes) / n

    def recall_observed(self, threshold: float) -> float:
        """Share of the GT boxes the cloud has points of that are covered at ``threshold``."""
        n = self.n_observed
        return float("nan") if n == 0 else sum(s.recalled(threshold, self.min_observed_points) for s in self.scenes) / n

    @property
    def mean_proposals(self) -> float:
        return float(np.mean([s.n_proposals for s in self.scenes])) if self.scenes else float("nan")

    @property
    def mean_seconds(self) -> float:
        return float(np.mean([s.seconds for s in self.scenes])) if self.scenes else float("nan")

    def per_label(self, threshold: float) -> dict[str, tuple[float, int]]:
        """label → (recall, GT count): where the proposals fall short."""
        hit: dict[str, int] = defaultdict(int)
        tot: dict[str, int] = defaultdict(int)
        for s in self.scenes:
            for lab, iou in zip(s.labels, s.best_iou):
                tot[lab] += 1
                hit[lab] += int(iou >= threshold)
        return {lab: (hit[lab] / tot[lab], tot[lab]) for lab in sorted(tot)}

    def to_dict(self, per_scene: bool = True) -> dict[str, Any]:
        """JSON-ready summary; undefined figures (no scenes / no GT) are None, never NaN."""

        def num(v: float) -> float | None:
            return None if math.isnan(v) else v

        out: dict[str, Any] = {
            "n_scenes": len(self.scenes),
            "n_gt": self.n_gt,
            "recall": {f"{t:g}": num(self.recall(t)) for t in self.thresholds},
            "n_observed": self.n_observed,
            "recall_observed": {f"{t:g}": num(self.recall_observed(t)) for t in self.thresholds},
            "min_observed_points": self.min_observed_points,
            "mean_proposals": num(self.mean_proposals),
            "mean_seconds": num(self.mean_seconds),
            "per_label": {f"{t:g}": {k: {"recall": r, "n": n} for k, (r, n) in self.per_label(t).items()} for t in self.thresholds},
            "failed": dict(self.failed),
        }
        if per_scene:
            out["scenes"] = [
                {
                    "scene_id": s.scene_id,
                    "n_gt": len(s.labels),
                    "n_proposals": s.n_proposals,
                    "seconds": s.seconds,
                    "source": s.source,
                    "n_observed": s.n_observed(self.min_observed_points),
                    "recall": {f"{t:g}": (s.recalled(t) / len(s.labels) if s.labels else None) for t in self.thresholds},
                }
                for s in self.scenes
            ]
        return out


def find_scene_dirs(root: str | os.PathLike[str], limit: int | None = None) -> list[Path]:
    """Scene directories under ``root`` (sorted by name, hidden ones skipped), or ``root`` itself when it is one.

    Raises:
        SceneDirError: ``root`` is not a directory or holds no scene directory.
    """
    r = Path(root)
    if not r.is_dir():
        raise SceneDirError(f"{r}: not a directory")
    if (r / INTRINSIC_FILE).is_file():
        dirs = [r]
    else:
        # Hidden folders are skipped: generators build scenes in ".name.partial" siblings.
        dirs = sorted(p for p in r.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / INTRINSIC_FILE).is_file())
    if not dirs:
        raise SceneDirError(f"{r}: no scene directories (folders with {INTRINSIC_FILE}) found")
    return dirs[:limit] if limit is not None else dirs


def scene_recall(
    scene: SceneDir | str | os.PathLike[str],
    config: ProposalConfig | None = None,
    *,
    fusion: FusionConfig | None = None,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    source: str = "auto",
) -> SceneRecall:
    """Propose on one scene and match against ``objects.json``.

    ``source``: ``"auto"`` uses ``points.ply`` when present, else fuses the frames (``fusion``);
    ``"points"`` / ``"frames"`` force one.
    """
    if source not in ("auto", "points", "frames"):
        raise ValueError(f"source must be 'auto', 'points' or 'frames', got {source!r}")
    sd = scene if isinstance(scene, SceneDir) else SceneDir(scene)
    use_points = source in ("auto", "points") and sd.points_path is not None
    if source == "points" and not use_points:
        raise SceneDirError(f"{sd.path}: no points.ply (use source='frames' or 'auto')")
    cloud = scene_cloud(sd, fusion, prefer_points=use_points)
    source = "points" if use_points else "frames"
    t0 = time.perf_counter()
    res = propose_boxes(cloud.xyz, config, rgb=cloud.rgb)
    seconds = time.perf_counter() - t0
    objects = sd.load_objects()
    labels = [o.label for o in objects]
    gt = np.array([o.box.to_list()[:6] for o in objects], dtype=np.float64).reshape(-1, 6)
    if objects and len(res):
        best = pairwise_aabb_iou(gt, res.as_array()).max(axis=1)
    else:
        best = np.zeros(len(objects), np.float64)
    return SceneRecall(sd.scene_id, labels, best, len(res), seconds, source, _points_in_boxes(cloud.xyz, gt))


def _points_in_boxes(xyz: NDArray[np.floating], boxes: NDArray[np.float64], grow: float = 0.02) -> NDArray[np.int64]:
    """How many cloud points lie in each (N, 6) box grown by ``grow`` on every side."""
    out = np.zeros(boxes.shape[0], np.int64)
    for i, b in enumerate(boxes):
        lo, hi = b[:3] - b[3:] / 2 - grow, b[:3] + b[3:] / 2 + grow
        sel = (xyz[:, 0] >= lo[0]) & (xyz[:, 0] <= hi[0]) & (xyz[:, 1] >= lo[1]) & (xyz[:, 1] <= hi[1])
        out[i] = int(np.count_nonzero((xyz[sel, 2] >= lo[2]) & (xyz[sel, 2] <= hi[2])))
    return out


def evaluate_recall(
    scene_dirs: Sequence[str | os.PathLike[str]],
    config: ProposalConfig | None = None,
    *,
    fusion: FusionConfig | None = None,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    source: str = "auto",
    min_observed_points: int = 10,
    progress: bool = False,
) -> RecallReport:
    """Recall over many scenes; a scene that cannot be read is recorded in ``failed``, not fatal."""
    report = RecallReport(thresholds=tuple(thresholds), min_observed_points=min_observed_points)
    it: Sequence[str | os.PathLike[str]] = scene_dirs
    if progress:
        from tqdm import tqdm

        it = tqdm(scene_dirs, desc="proposals", unit="scene")
    for d in it:
        try:
            report.scenes.append(scene_recall(d, config, fusion=fusion, thresholds=thresholds, source=source))
        except (SceneDirError, ValueError) as exc:
            report.failed[str(d)] = str(exc)
    return report
