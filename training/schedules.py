"""Schedules over optimizer steps: the learning rate, and which Ross3D targets a batch carries.

* :class:`WarmupCosine`: linear warmup, then cosine decay to ``min_ratio`` (or constant),
  the recipe of Video-3D-LLM / Ross3D / 3DRS (warmup 0.03, cosine). A plain callable class, so a
  ``LambdaLR`` built on it checkpoints and resumes exactly.
* :class:`Ross3DSchedule`: cross-view masking every Δt optimizer steps (``step % Δt == 0``), BEV
  reconstruction every step, and neither on grounding batches (Ross3D's ``ross3d_qwen`` forward).
  The model makes the same masking decision from the same config
  (:meth:`~ros3d_agent.model.ross3d.masking.ViewMasker.should_mask`); the trainer uses this
  schedule to hand it view latents only on masking steps, which is what switches masking on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ros3d_agent.model.ross3d.configuration import Ross3DConfig

__all__ = ["WarmupCosine", "warmup_steps_for", "make_lr_scheduler", "Ross3DPlan", "Ross3DSchedule"]


@dataclass(frozen=True)
class WarmupCosine:
    """LR factor at step ``s``: ``(s + 1) / (warmup + 1)`` during warmup (never a wasted 0-lr step), then ``min_ratio + (1 - min_ratio)·½(1 + cos(π·p))``
    with ``p`` the progress through the remaining steps (``kind="constant"``: 1 after warmup)."""

    warmup: int
    total: int
    min_ratio: float = 0.0
    kind: str = "cosine"

    def __post_init__(self) -> None:
        if self.total < 1 or not 0 <= self.warmup <= self.total:
            raise ValueError(f"need 0 <= warmup <= total and total >= 1, got warmup={self.warmup}, total={self.total}")
        if self.kind not in ("cosine", "constant"):
            raise ValueError(f"kind must be 'cosine' or 'constant', got {self.kind!r}")

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        if self.kind == "constant":
            return 1.0
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_steps_for(total: int, warmup_ratio: float, warmup_steps: int | None) -> int:
    """Explicit ``warmup_steps`` win; else ``ceil(ratio · total)`` (HF Trainer's rule)."""
    n = warmup_steps if warmup_steps is not None else math.ceil(warmup_ratio * total)
    return min(int(n), total)


def make_lr_scheduler(optimizer: torch.optim.Optimizer, schedule: WarmupCosine) -> torch.optim.lr_scheduler.LambdaLR:
    """``LambdaLR`` scaling every group's own lr (per-part learning rates keep their ratios)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


@dataclass(frozen=True)
class Ross3DPlan:
    """The Ross3D targets one batch carries: masked-view latents and/or the BEV."""

    view: bool
    bev: bool


class Ross3DSchedule:
    """When Ross3D's two reconstructions run.

    Args:
        cfg: the model's Ross3D config (``None``: Ross3D off), the source of Δt (``mask_interval``).
        loss_weights: the model's loss weights; a term with weight 0 never runs.
    """

    def __init__(self, cfg: Ross3DConfig | None, loss_weights: dict[str, float]) -> None:
        self.cfg = cfg
        on = cfg is not None and cfg.enabled
        self.view_on = bool(on and cfg.cross_view and cfg.mask_ratio > 0 and loss_weights.get("ross3d_view", 0) > 0)
        self.bev_on = bool(on and cfg.bev and loss_weights.get("ross3d_bev", 0) > 0)

    def mask_step(self, step: int) -> bool:
        """Is optimizer step ``step`` a masking step (every ``mask_interval``-th: 0, Δt, 2Δt, ...)?"""
        return self.view_on and self.cfg is not None and step % self.cfg.mask_interval == 0

    def plan(self, step: int, group: str) -> Ross3DPlan:
        """Targets of a batch of task ``group`` at optimizer step ``step`` (none on grounding batches)."""
        if group == "grounding":
            return Ross3DPlan(False, False)
        return Ross3DPlan(view=self.mask_step(step), bev=self.bev_on)
