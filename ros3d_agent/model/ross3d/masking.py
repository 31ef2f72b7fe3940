"""Masked views for cross-view reconstruction.

On a masking step, a fraction of the views has *all* its pooled visual tokens replaced by one
learnable mask token before they enter the LLM. The caller then adds the 3D position code as for any
view, so a masked view still says *where* it looks but not *what* is there; the Ross3D head asks the
LLM's outputs of the other views to reconstruct it, which only works if the model relates views
through 3D. Masking only every few steps keeps most training steps identical to inference.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .configuration import Ross3DConfig

__all__ = ["ViewMasker", "num_masked_views"]


def num_masked_views(num_views: int, ratio: float) -> int:
    """How many of ``num_views`` views a masking step hides.

    ``round(ratio * V)`` (halves round up), at least 1 when ``ratio > 0`` and ``V > 1``, and at most
    ``V - 1`` so at least one view always conditions the reconstruction; 0 for a single view.
    """
    if num_views < 1:
        raise ValueError(f"num_views must be >= 1, got {num_views}")
    if num_views == 1 or ratio <= 0:
        return 0
    n = int(math.floor(ratio * num_views + 0.5))
    return min(max(n, 1), num_views - 1)


class ViewMasker(nn.Module):
    """Holds the learnable mask token and decides which views to mask.

    Args:
        hidden_size: the LLM width ``D`` of the pooled visual tokens.
        cfg: ``mask_ratio``, ``mask_interval`` and ``cross_view`` are read from it.
    """

    def __init__(self, hidden_size: int, cfg: Ross3DConfig | None = None) -> None:
        super().__init__()
        if hidden_size < 1:
            raise ValueError(f"hidden_size must be >= 1, got {hidden_size}")
        self.hidden_size = int(hidden_size)
        self.cfg = cfg or Ross3DConfig()
        self.mask_token = nn.Parameter(torch.randn(self.hidden_size) * 0.02)

    def should_mask(self, global_step: int) -> bool:
        """True on every ``mask_interval``-th step (0, 4, 8, ... by default) when cross-view is on."""
        if global_step < 0:
            raise ValueError(f"global_step must be >= 0, got {global_step}")
        return self.cfg.cross_view and self.cfg.mask_ratio > 0 and global_step % self.cfg.mask_interval == 0

    def sample_view_mask(
        self, batch_size: int, num_views: int, device: torch.device | str | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``(B, V)`` bool with exactly :func:`num_masked_views` True per row, chosen uniformly."""
        n = num_masked_views(num_views, self.cfg.mask_ratio)
        rand_device = generator.device if generator is not None else torch.device("cpu")
        scores = torch.rand((batch_size, num_views), generator=generator, device=rand_device)
        ranks = scores.argsort(dim=1).argsort(dim=1)  # rank of each view in its row
        return (ranks < n).to(device or rand_device)

    def apply(self, tokens: torch.Tensor, view_mask: torch.Tensor) -> torch.Tensor:
        """Replace every token of the masked views of ``tokens (B, V, h, w, D)`` by the mask token."""
        if tokens.ndim != 5 or tokens.shape[-1] != self.hidden_size:
            raise ValueError(f"tokens: expected shape (B, V, h, w, {self.hidden_size}), got {tuple(tokens.shape)}")
        if view_mask.shape != tokens.shape[:2]:
            raise ValueError(f"view_mask: expected shape {tuple(tokens.shape[:2])}, got {tuple(view_mask.shape)}")
        sel = view_mask.to(device=tokens.device, dtype=torch.bool)[:, :, None, None, None]
        return torch.where(sel, self.mask_token.to(tokens.dtype), tokens)

    def mask_views(self, tokens: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask a random ``round(ratio·V)`` views per sample.

        Returns ``(masked_tokens (B, V, h, w, D), view_mask (B, V) bool)``. Add the 3D position code
        *after* this call so masked views keep their position.
        """
        if tokens.ndim != 5:
            raise ValueError(f"tokens: expected shape (B, V, h, w, D), got {tuple(tokens.shape)}")
        view_mask = self.sample_view_mask(tokens.shape[0], tokens.shape[1], device=tokens.device, generator=generator)
        return self.apply(tokens, view_mask), view_mask
