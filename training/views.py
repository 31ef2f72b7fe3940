"""Which views of a scene a training sample sees.

The views of a scene are chosen once per scene (not per question), with the same rules the model is
evaluated with: ``uniform`` (Video-3D-LLM's ``linspace`` over the frames with a usable pose, the
rule the 3DRS teacher cache uses too, so teacher features line up with the training views) or
``max_coverage`` (greedy 0.1 m voxel coverage). The choice is deterministic, which is what lets the
VAE latents of exactly those views be cached, and lets a resumed run see the very same inputs.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ros3d_agent.model.teacher_features import select_teacher_frames
from ros3d_agent.scene.sampling import max_coverage_sample, scene_voxel_sets
from ros3d_agent.scene.scene_dir import SceneDir

__all__ = ["ViewSpec", "select_views", "cached_views"]

log = logging.getLogger(__name__)

VIEWS_FILE = "views.json"


@dataclass(frozen=True)
class ViewSpec:
    """How views are sampled: ``sampling`` rule, budget ``k``, optional coverage stop."""

    sampling: str
    k: int
    coverage_stop: float | None = None

    @property
    def key(self) -> str:
        """Name of this rule in ``views.json``."""
        stop = "" if self.coverage_stop is None else f"_stop{self.coverage_stop:g}"
        return f"{self.sampling}_k{self.k}{stop}"


def select_views(scene: SceneDir, spec: ViewSpec) -> list[str]:
    """Frame ids of the views, in temporal order.

    Raises:
        ValueError: unknown rule, or the scene has no usable frame.
    """
    if spec.sampling == "uniform":
        ids = select_teacher_frames(scene, spec.k)  # uniform over frames with a usable pose
    elif spec.sampling == "max_coverage":
        frame_ids, sets = scene_voxel_sets(scene)
        if not frame_ids:
            ids = []
        else:
            chosen = max_coverage_sample(sets, spec.k, coverage_stop=spec.coverage_stop)
            ids = [frame_ids[i] for i in chosen.indices]
    else:
        raise ValueError(f"unknown view sampling {spec.sampling!r} (uniform or max_coverage)")
    if not ids:
        raise ValueError(f"scene {scene.path}: no frame with a usable pose and image to sample views from")
    return ids


def cached_views(scene: SceneDir, spec: ViewSpec, cache_scene_dir: Path | None) -> list[str]:
    """:func:`select_views`, remembered in ``<cache_scene_dir>/views.json`` (coverage needs every frame's
    depth; reading it once per scene instead of once per run matters on real scans)."""
    if cache_scene_dir is None:
        return select_views(scene, spec)
    path = cache_scene_dir / VIEWS_FILE
    table: dict[str, list[str]] = {}
    if path.is_file():
        try:
            table = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            log.warning("%s is corrupt; recomputing the view selection", path)
            table = {}
        if spec.key in table:
            return [str(f) for f in table[spec.key]]
    ids = select_views(scene, spec)
    table[spec.key] = ids
    cache_scene_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return ids
