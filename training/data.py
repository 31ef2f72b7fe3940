"""Training samples over scene directories + annotation JSONL, and over unlabeled scenes.

A sample is fixed before training starts (:class:`SampleSpec`): which scene, which views (one
deterministic selection per scene, :mod:`.views`), the prompt's task, and for grounding the
candidate boxes and which of them are targets. :class:`TrainDataset` turns a spec into tensors:

* the prompt (``build_prompt``): labels cover the answer only (QA, situated QA, caption); grounding
  samples carry no LM labels (their answer is the ``<ground>`` token already in the prompt, and the
  reference trains those batches on InfoNCE only);
* the views: normalised pixels + per-pixel world xyz (``frames_to_tensors``);
* grounding: proposals = the scene's ``objects.json`` boxes (train-time GT proposals, as
  Video-3D-LLM) or cached predicted proposals, ``ground_targets`` marking the record's objects
  (+ a last "no object" column, True only when the record has no target);
* caption: the located box's centre (for the ``<coord>`` token);
* cached 3D targets: VAE latents of the views, BEV latents + loss mask, teacher features.

Unlabeled scenes (no annotations) give samples with a fixed prompt and no labels: they only feed
the Ross3D / 3DRS losses (Ross3D's semi-supervised setting). Samples are grouped by task group
(QA / caption / grounding / unlabeled) so that every batch holds one group (:mod:`.batching`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ros3d_agent.model.configuration import Ros3DModelConfig
from ros3d_agent.model.geometry_inputs import frames_to_tensors
from ros3d_agent.model.tokenizer import IGNORE_INDEX, PromptTokens, build_prompt
from ros3d_agent.scene.annotations.records import AnnotationRecord, read_annotations
from ros3d_agent.scene.iou import pairwise_aabb_iou
from ros3d_agent.scene.scene_dir import INTRINSIC_FILE, SceneDir

from . import cache as cache_io
from .config import TrainConfig
from .views import ViewSpec, cached_views

__all__ = [
    "TASK_GROUPS",
    "RECON_GROUP",
    "UNLABELED_QUESTION",
    "DataError",
    "TargetNeeds",
    "SampleSpec",
    "discover_scene_dirs",
    "load_records",
    "discover_run_scenes",
    "grounding_candidates",
    "build_sample_specs",
    "TrainDataset",
]

log = logging.getLogger(__name__)

#: task → task group; a batch never mixes groups (Video-3D-LLM's group_by_task_length: QA, caption, grounding)
TASK_GROUPS: dict[str, str] = {"qa": "qa", "situated_qa": "qa", "caption": "caption", "ground": "grounding", "multi_ground": "grounding"}
#: the group of unlabeled-scene samples (3D losses only)
RECON_GROUP = "recon"
#: the prompt of unlabeled samples: it only gives the LLM a text context; nothing is labelled
UNLABELED_QUESTION = "Describe the scene."


class DataError(ValueError):
    """Annotations and scenes that do not fit together (missing scene, unknown object id, ...)."""


@dataclass(frozen=True)
class TargetNeeds:
    """Which cached 3D targets the model trains on (decided by the model config and the sources)."""

    view_latents: bool = False
    bev: bool = False
    teacher: bool = False

    @classmethod
    def for_run(cls, cfg: TrainConfig, model_cfg: Ros3DModelConfig) -> TargetNeeds:
        w = model_cfg.loss_weights
        ross = model_cfg.ross3d
        vae = cfg.data.vae.configured and ross is not None and ross.enabled
        return cls(
            view_latents=bool(vae and ross.cross_view and w.get("ross3d_view", 0) > 0),
            bev=bool(vae and ross.bev and w.get("ross3d_bev", 0) > 0),
            teacher=bool(cfg.data.teacher.configured and model_cfg.alignment3drs is not None and w.get("align3drs", 0) > 0),
        )


@dataclass(frozen=True)
class SampleSpec:
    """Everything that decides one sample's tensors.

    ``record`` is None for an unlabeled-scene sample. ``proposals (P, 6)`` and ``targets (P + 1,)``
    are set for grounding samples only.
    """

    sample_id: str
    scene_id: str
    group: str
    frame_ids: tuple[str, ...]
    record: AnnotationRecord | None = None
    proposals: np.ndarray | None = field(default=None, compare=False)
    targets: np.ndarray | None = field(default=None, compare=False)

    @property
    def task(self) -> str | None:
        return None if self.record is None else self.record.task

    @property
    def num_views(self) -> int:
        return len(self.frame_ids)

    @property
    def labeled(self) -> bool:
        return self.record is not None

    @property
    def bucket(self) -> tuple[str, int]:
        """Samples may share a batch only within one bucket: same task group, same view count."""
        return self.group, self.num_views


# ------------------------------------------------------------------------------------------------
# scenes and records
# ------------------------------------------------------------------------------------------------
def discover_scene_dirs(root: str | Path) -> dict[str, Path]:
    """``scene_id → path`` of the scene directories under ``root`` (or ``root`` itself), by ``intrinsic.txt``."""
    p = Path(root)
    if not p.is_dir():
        raise DataError(f"scene root {p} is not a directory")
    if (p / INTRINSIC_FILE).is_file():
        return {p.name: p}
    return {d.name: d for d in sorted(p.iterdir()) if d.is_dir() and not d.name.startswith(".") and (d / INTRINSIC_FILE).is_file()}


def load_records(cfg: TrainConfig) -> list[AnnotationRecord]:
    """The annotation records the run trains on (task filter, then ``max_samples``)."""
    records = [r for r in read_annotations(cfg.data.annotation_file()) if r.task in cfg.data.tasks]
    if cfg.data.max_samples is not None:
        records = records[: cfg.data.max_samples]
    if not records:
        raise DataError(f"{cfg.data.annotation_file()}: no record of the tasks {cfg.data.tasks}")
    return records


def discover_run_scenes(cfg: TrainConfig, model_cfg: Ros3DModelConfig, records: Sequence[AnnotationRecord] | None = None
                        ) -> tuple[dict[str, Path], dict[str, list[str]]]:
    """Scenes the run reads (labeled: those the records name; plus unlabeled ones) and their views.

    Raises:
        DataError: a record names a scene that is not under ``data.scenes``.
    """
    records = load_records(cfg) if records is None else records
    available = discover_scene_dirs(cfg.data.scenes)
    labeled_ids = sorted({r.scene_id for r in records})
    missing = [s for s in labeled_ids if s not in available]
    if missing:
        raise DataError(f"{len(missing)} scene(s) named by {cfg.data.annotation_file()} are not under {cfg.data.scenes}: {missing[:5]}")
    scenes = {s: available[s] for s in labeled_ids}
    if cfg.data.unlabeled_scenes and cfg.data.unlabeled_fraction > 0:
        extra = discover_scene_dirs(cfg.data.unlabeled_scenes)
        overlap = sorted(set(extra) & set(scenes))
        if overlap:
            log.info("%d unlabeled-scene candidate(s) have annotations and stay labeled: %s", len(overlap), overlap[:5])
        for sid, path in extra.items():
            scenes.setdefault(sid, path)
        if not set(extra) - set(overlap):
            raise DataError(f"data.unlabeled_scenes {cfg.data.unlabeled_scenes}: no scene without annotations")
    spec = ViewSpec(cfg.data.sampling, cfg.data.num_views, cfg.data.coverage_stop)
    root = cfg.data.resolved_cache_dir()
    views = {sid: cached_views(SceneDir(path), spec, root / sid) for sid, path in scenes.items()}
    return scenes, views


def _objects(scene_path: Path) -> tuple[list[int], np.ndarray]:
    objs = SceneDir(scene_path).load_objects()
    ids = [o.id for o in objs]
    boxes = np.array([o.box.to_list()[:6] for o in objs], dtype=np.float64).reshape(-1, 6)
    return ids, boxes


def grounding_candidates(
    record: AnnotationRecord,
    object_ids: Sequence[int],
    object_boxes: np.ndarray,
    predicted: np.ndarray | None,
    *,
    match_iou: float,
    max_proposals: int,
) -> tuple[np.ndarray, np.ndarray] | None:
    """``(proposals (P, 6), targets (P + 1,) bool)`` of a grounding record; None (skip the sample) when
    predicted proposals are empty or none matches a target (it would teach "no object").

    GT proposals: the record's ``object_ids`` (or, without ids, the GT boxes best overlapping the
    record's boxes) are the targets. Predicted proposals: every proposal with IoU >= ``match_iou``
    to a target box. The last column is "no object", True only for a record without targets.
    """
    where = f"record {record.id!r} (scene {record.scene_id})"
    if predicted is None:
        if record.object_ids:
            index = {oid: i for i, oid in enumerate(object_ids)}
            unknown = [o for o in record.object_ids if o not in index]
            if unknown:
                raise DataError(f"{where}: object id(s) {unknown} are not in the scene's objects.json")
            positive = sorted({index[o] for o in record.object_ids})
        elif record.boxes:
            if object_boxes.shape[0] == 0:
                raise DataError(f"{where}: the scene has no objects.json boxes to ground against")
            iou = pairwise_aabb_iou(np.asarray(record.boxes), object_boxes)
            best = iou.argmax(axis=1)
            if (iou[np.arange(len(best)), best] < 0.25).any():
                raise DataError(f"{where}: a target box matches no objects.json box (IoU < 0.25) and the record has no object_ids")
            positive = sorted(set(best.tolist()))
        else:
            positive = []
        keep = list(range(object_boxes.shape[0]))
        if len(keep) > max_proposals:
            others = [i for i in keep if i not in positive][: max(0, max_proposals - len(positive))]
            keep = sorted(set(positive) | set(others))
        proposals = object_boxes[keep]
        targets = np.zeros(len(keep) + 1, dtype=bool)
        targets[[keep.index(i) for i in positive]] = True
    else:
        proposals = predicted[:max_proposals]
        if proposals.shape[0] == 0:
            return None  # the proposer found nothing in this scene: nothing to select from
        targets = np.zeros(proposals.shape[0] + 1, dtype=bool)
        if record.boxes:
            iou = pairwise_aabb_iou(proposals, np.asarray(record.boxes))  # (P, T)
            targets[:-1] = (iou >= match_iou).any(axis=1)
            if not targets.any():
                return None
    if not targets[:-1].any():
        targets[-1] = True  # "there is no such object"
    if proposals.shape[0] == 0:
        raise DataError(f"{where}: no proposal to ground against")
    return proposals.astype(np.float32), targets


def build_sample_specs(
    cfg: TrainConfig,
    records: Sequence[AnnotationRecord],
    scenes: Mapping[str, Path],
    views: Mapping[str, Sequence[str]],
    layout: cache_io.CacheLayout | None = None,
) -> tuple[list[SampleSpec], list[SampleSpec], dict[str, int]]:
    """``(labeled, unlabeled, stats)`` specs of a run.

    Raises:
        DataError: a grounding record that does not fit its scene's objects.
    """
    stats: Counter[str] = Counter()
    objects: dict[str, tuple[list[int], np.ndarray]] = {}
    predicted: dict[str, np.ndarray] = {}
    labeled: list[SampleSpec] = []
    for rec in records:
        group = TASK_GROUPS[rec.task]
        proposals = targets = None
        if group == "grounding":
            if rec.scene_id not in objects:
                objects[rec.scene_id] = _objects(scenes[rec.scene_id])
            pred = None
            if cfg.data.proposals == "predicted":
                if layout is None:
                    raise DataError("predicted proposals need the target cache (data.proposals: predicted)")
                if rec.scene_id not in predicted:
                    loaded = cache_io.load_proposals(layout, rec.scene_id)
                    if loaded is None:
                        raise DataError(f"scene {rec.scene_id}: no cached proposals (build the cache first)")
                    predicted[rec.scene_id] = loaded
                pred = predicted[rec.scene_id]
            cand = grounding_candidates(rec, *objects[rec.scene_id], pred,
                                        match_iou=cfg.data.proposal_match_iou, max_proposals=cfg.data.max_proposals)
            if cand is None:
                stats["skipped_no_matching_proposal"] += 1
                continue
            proposals, targets = cand
        labeled.append(SampleSpec(rec.id, rec.scene_id, group, tuple(views[rec.scene_id]), rec, proposals, targets))
        stats[f"task_{rec.task}"] += 1
    labeled_scenes = {r.scene_id for r in records}
    unlabeled = [SampleSpec(f"unlabeled:{sid}", sid, RECON_GROUP, tuple(views[sid]))
                 for sid in sorted(scenes) if sid not in labeled_scenes]
    stats["unlabeled_scenes"] = len(unlabeled)
    if not labeled:
        raise DataError("no labeled sample left to train on")
    return labeled, unlabeled, dict(stats)


# ------------------------------------------------------------------------------------------------
# the dataset
# ------------------------------------------------------------------------------------------------
class TrainDataset(Dataset):
    """Tensors of :class:`SampleSpec` samples (one dict per sample; :func:`.collate.collate_samples` batches them).

    Deterministic: the same index gives the same tensors in any process, which is what makes a
    resumed run see exactly the batches an uninterrupted one would.
    """

    def __init__(
        self,
        specs: Sequence[SampleSpec],
        scenes: Mapping[str, Path],
        tokenizer: Any,
        model_cfg: Ros3DModelConfig,
        layout: cache_io.CacheLayout | None,
        needs: TargetNeeds,
    ) -> None:
        if (needs.view_latents or needs.bev or needs.teacher) and layout is None:
            raise ValueError("cached 3D targets are needed but no cache layout was given")
        self.specs = list(specs)
        self.scenes = dict(scenes)
        self.tokenizer = tokenizer
        self.model_cfg = model_cfg
        self.layout = layout
        self.needs = needs
        # one scene's cached targets serve all its samples; keep a few scenes per worker
        self._view_latents = lru_cache(maxsize=16)(self._load_view_latents)
        self._bev = lru_cache(maxsize=16)(self._load_bev)
        self._teacher = lru_cache(maxsize=16)(self._load_teacher)

    def __len__(self) -> int:
        return len(self.specs)

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers: lru caches do not pickle
        state = dict(self.__dict__)
        for k in ("_view_latents", "_bev", "_teacher"):
            state.pop(k)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._view_latents = lru_cache(maxsize=16)(self._load_view_latents)
        self._bev = lru_cache(maxsize=16)(self._load_bev)
        self._teacher = lru_cache(maxsize=16)(self._load_teacher)

    def _load_view_latents(self, scene_id: str) -> dict[str, torch.Tensor]:
        assert self.layout is not None
        return cache_io.load_view_latents(self.layout, scene_id)

    def _load_bev(self, scene_id: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        assert self.layout is not None
        return cache_io.load_bev(self.layout, scene_id)

    def _load_teacher(self, scene_id: str) -> dict[str, torch.Tensor]:
        assert self.layout is not None
        return cache_io.load_teacher_features(self.layout, scene_id)

    def prompt(self, spec: SampleSpec) -> PromptTokens:
        """The tokenised conversation of a sample (labels = the answer only)."""
        rec = spec.record
        if rec is None:
            return build_prompt(self.tokenizer, task="qa", question=UNLABELED_QUESTION)
        situation = rec.situation.text if rec.situation is not None else None
        if spec.group == "grounding":
            p = build_prompt(self.tokenizer, task=rec.task, question=rec.question)  # type: ignore[arg-type]
            return PromptTokens(p.input_ids, [IGNORE_INDEX] * len(p.input_ids), p.text)
        return build_prompt(self.tokenizer, task=rec.task, question=rec.question, answer=rec.answers[0],  # type: ignore[arg-type]
                            situation=situation)

    def __getitem__(self, index: int) -> dict[str, Any]:
        spec = self.specs[index]
        scene = SceneDir(self.scenes[spec.scene_id])
        frames = [scene.load_frame(fid) for fid in spec.frame_ids]
        views = frames_to_tensors(frames, self.model_cfg.vision)
        prompt = self.prompt(spec)
        item: dict[str, Any] = {
            "id": spec.sample_id,
            "scene_id": spec.scene_id,
            "task": spec.task,
            "group": spec.group,
            "frame_ids": spec.frame_ids,
            "input_ids": torch.tensor(prompt.input_ids, dtype=torch.long),
            "labels": torch.tensor(prompt.labels, dtype=torch.long),
            "pixel_values": views.pixel_values,
            "world_xyz": views.world_xyz,
            "world_valid": views.world_valid,
        }
        if spec.proposals is not None and spec.targets is not None:
            item["proposals"] = torch.from_numpy(spec.proposals)
            item["ground_targets"] = torch.from_numpy(spec.targets)
        if spec.record is not None and spec.record.task == "caption":
            assert spec.record.box is not None
            item["coord_centre"] = torch.tensor(spec.record.box[:3], dtype=torch.float32)
        grounding = spec.group == "grounding"
        if self.needs.view_latents and not grounding:
            have = self._view_latents(spec.scene_id)
            missing = [f for f in spec.frame_ids if f not in have]
            if missing:
                raise DataError(f"scene {spec.scene_id}: the target cache has no view latents for frame(s) {missing[:5]} "
                                "(built for other views? rebuild it with the run's data.num_views / data.sampling)")
            item["view_latents"] = torch.stack([have[f] for f in spec.frame_ids])
        if self.needs.bev and not grounding:
            bev = self._bev(spec.scene_id)
            if bev is None:
                raise DataError(f"scene {spec.scene_id}: the target cache has no BEV latents (build the cache first)")
            item["bev_latents"], item["bev_valid"] = bev
        if self.needs.teacher:
            feats = self._teacher(spec.scene_id)
            if feats:
                ref = next(iter(feats.values()))
                item["teacher_feats"] = torch.stack([feats.get(f, torch.zeros_like(ref)) for f in spec.frame_ids]).float()
                item["teacher_valid"] = torch.tensor([f in feats for f in spec.frame_ids], dtype=torch.bool)
        return item
