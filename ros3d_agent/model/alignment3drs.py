"""3DRS: align the LLM's visual outputs with a 3D-aware teacher's features (training only).

A frozen 3D foundation model (VGGT in the reference; DINOv2 or SigLIP when only ``transformers``
models are at hand) sees the same frames; its per-patch features, cached offline
(:mod:`ros3d_agent.model.teacher_features`), are adaptive-average-pooled to the LLM's token grid.
An MLP maps each last-layer visual hidden state to the teacher width, and the loss pulls the two
directions together: ``2 − 2·cos`` (= the squared distance of the L2-normalised vectors). Only the
student learns; the teacher is detached. Multi-view consistent teacher features push the LLM to give
the same scene point similar representations across views.

Unlike the reference (hard-coded to 32 frames of 14×14 tokens), any ``V`` and any grid work, and
views without teacher features can be excluded with ``valid``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["Alignment3DRSConfig", "Alignment3DRSHead"]


@dataclass
class Alignment3DRSConfig:
    """Size of the 3DRS projector. Its loss weight is ``Ros3DModelConfig.loss_weights["align3drs"]``.

    Attributes:
        teacher_dim: channels of the teacher's feature map (VGGT-1B last aggregator layer: 2048;
            DINOv2-L: 1024).
        hidden_multiplier: the projector's hidden width is ``hidden_multiplier × D``.
    """

    teacher_dim: int = 2048
    hidden_multiplier: int = 2

    def __post_init__(self) -> None:
        if int(self.teacher_dim) < 1:
            raise ValueError(f"teacher_dim must be >= 1, got {self.teacher_dim}")
        if int(self.hidden_multiplier) < 1:
            raise ValueError(f"hidden_multiplier must be >= 1, got {self.hidden_multiplier}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Alignment3DRSConfig:
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"Alignment3DRSConfig: unknown keys {unknown}")
        return cls(**d)


class Alignment3DRSHead(nn.Module):
    """``forward(visual_hidden (B,V,h,w,D), teacher_feats (B,V,Dt,Ht,Wt), valid (B,V) | None) -> loss``.

    The loss is the mean over the tokens of valid views of ``2 − 2·cos(MLP(x), pool(teacher))``,
    computed in float32, unweighted (``cfg.weight`` is applied by the loss composer); 0 (with a
    graph) when no view is valid.
    """

    def __init__(self, hidden_size: int, cfg: Alignment3DRSConfig | None = None) -> None:
        super().__init__()
        if hidden_size < 1:
            raise ValueError(f"hidden_size must be >= 1, got {hidden_size}")
        self.cfg = cfg or Alignment3DRSConfig()
        self.hidden_size = int(hidden_size)
        inner = self.cfg.hidden_multiplier * self.hidden_size
        self.proj = nn.Sequential(nn.Linear(self.hidden_size, inner), nn.GELU(), nn.Linear(inner, self.cfg.teacher_dim))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, visual_hidden: torch.Tensor, teacher_feats: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        if visual_hidden.ndim != 5 or visual_hidden.shape[-1] != self.hidden_size:
            raise ValueError(f"visual_hidden: expected shape (B, V, h, w, {self.hidden_size}), got {tuple(visual_hidden.shape)}")
        B, V, h, w, _ = visual_hidden.shape
        Dt = self.cfg.teacher_dim
        if teacher_feats.ndim != 5 or teacher_feats.shape[:3] != (B, V, Dt):
            raise ValueError(f"teacher_feats: expected shape ({B}, {V}, {Dt}, Ht, Wt), got {tuple(teacher_feats.shape)}")
        if valid is not None and valid.shape != (B, V):
            raise ValueError(f"valid: expected shape {(B, V)}, got {tuple(valid.shape)}")
        student = self.proj(visual_hidden.to(self.proj[0].weight.dtype)).float()  # (B, V, h, w, Dt)
        teacher = teacher_feats.detach().to(device=student.device, dtype=torch.float32).reshape(B * V, Dt, *teacher_feats.shape[-2:])
        teacher = F.adaptive_avg_pool2d(teacher, (h, w)).reshape(B, V, Dt, h, w).permute(0, 1, 3, 4, 2)
        cos = (F.normalize(student, dim=-1) * F.normalize(teacher, dim=-1)).sum(dim=-1)  # (B, V, h, w)
        per_token = 2.0 - 2.0 * cos
        if valid is None:
            loss = per_token.mean()
        else:
            m = valid.to(device=per_token.device, dtype=per_token.dtype)[:, :, None, None].expand_as(per_token)
            denom = m.sum()
            loss = torch.where(denom > 0, (per_token * m).sum() / denom.clamp(min=1), (per_token * m).sum())
        return loss
