"""Batch samples of one bucket (task group × view count) into the model's keyword tensors.

Text is padded on the right (training); proposals are padded to the batch's largest set with
``proposal_valid`` False and the padded target columns False, the "no object" column kept last;
teacher features of samples whose scene has none become zeros with ``teacher_valid`` False.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ros3d_agent.model.tokenizer import IGNORE_INDEX

__all__ = ["Batch", "collate_samples", "TENSOR_KEYS"]

#: keys of a batch that are tensors the trainer moves to the device
TENSOR_KEYS: tuple[str, ...] = (
    "input_ids", "attention_mask", "labels", "pixel_values", "world_xyz", "world_valid", "proposals",
    "proposal_valid", "ground_targets", "coord_centres", "view_latents", "bev_latents", "bev_valid",
    "teacher_feats", "teacher_valid",
)

Batch = dict[str, Any]


def _pad_1d(seqs: Sequence[torch.Tensor], value: int) -> torch.Tensor:
    out = torch.full((len(seqs), max(len(s) for s in seqs)), value, dtype=seqs[0].dtype)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out


def collate_samples(samples: Sequence[dict[str, Any]], pad_id: int) -> Batch:
    """Stack :class:`~.data.TrainDataset` items of one bucket.

    Raises:
        ValueError: an empty batch, or samples of different task groups / view counts (the batch
            sampler never makes those; a custom sampler that does gets a clear error here).
    """
    if not samples:
        raise ValueError("collate_samples: empty batch")
    groups = {s["group"] for s in samples}
    if len(groups) != 1:
        raise ValueError(f"a batch must hold one task group, got {sorted(groups)}")
    views = {s["pixel_values"].shape for s in samples}
    if len(views) != 1:
        raise ValueError(f"a batch must hold one view count and image size, got {sorted(map(tuple, views))}")
    ids = [s["input_ids"] for s in samples]
    batch: Batch = {
        "ids": [s["id"] for s in samples],
        "scene_ids": [s["scene_id"] for s in samples],
        "tasks": [s["task"] for s in samples],
        "group": groups.pop(),
        "frame_ids": [s["frame_ids"] for s in samples],
        "input_ids": _pad_1d(ids, pad_id),
        "labels": _pad_1d([s["labels"] for s in samples], IGNORE_INDEX),
        "attention_mask": _pad_1d([torch.ones_like(t) for t in ids], 0),
        "pixel_values": torch.stack([s["pixel_values"] for s in samples]),
        "world_xyz": torch.stack([s["world_xyz"] for s in samples]),
        "world_valid": torch.stack([s["world_valid"] for s in samples]),
    }
    if "proposals" in samples[0]:
        if not all("proposals" in s for s in samples):
            raise ValueError("a grounding batch mixes samples with and without proposals")
        P = max(s["proposals"].shape[0] for s in samples)
        B = len(samples)
        proposals = torch.zeros(B, P, 6, dtype=torch.float32)
        # padded slots hold a unit box at the origin: proposal_valid masks them, and a positive
        # size keeps the feature pooling free of zero-size edge cases
        proposals[..., 3:] = 1.0
        valid = torch.zeros(B, P, dtype=torch.bool)
        targets = torch.zeros(B, P + 1, dtype=torch.bool)
        for i, s in enumerate(samples):
            n = s["proposals"].shape[0]
            proposals[i, :n] = s["proposals"]
            valid[i, :n] = True
            targets[i, :n] = s["ground_targets"][:n]
            targets[i, P] = s["ground_targets"][n]
        batch.update(proposals=proposals, proposal_valid=valid, ground_targets=targets)
    if "coord_centre" in samples[0]:
        batch["coord_centres"] = torch.stack([s["coord_centre"] for s in samples])
    if all("view_latents" in s for s in samples):
        batch["view_latents"] = torch.stack([s["view_latents"] for s in samples])
    if all("bev_latents" in s for s in samples):
        batch["bev_latents"] = torch.stack([s["bev_latents"] for s in samples])
        batch["bev_valid"] = torch.stack([s["bev_valid"] for s in samples])
    with_teacher = [s for s in samples if "teacher_feats" in s]
    if with_teacher:
        ref = with_teacher[0]["teacher_feats"]
        if any(s["teacher_feats"].shape != ref.shape for s in with_teacher):
            raise ValueError(f"teacher feature maps differ in shape within a batch: {sorted({tuple(s['teacher_feats'].shape) for s in with_teacher})}")
        V = samples[0]["pixel_values"].shape[0]
        batch["teacher_feats"] = torch.stack([s.get("teacher_feats", torch.zeros_like(ref)) for s in samples])
        batch["teacher_valid"] = torch.stack([s.get("teacher_valid", torch.zeros(V, dtype=torch.bool)) for s in samples])
    return batch
