"""The Ross3D denoiser: a small DiT that denoises VAE latents conditioned on the LLM's visual outputs.

Why a denoiser and not a regressor: the reconstruction target (a masked view, a bird's-eye view) is
ambiguous given the other views, and an MSE regressor would be pushed to the blurry mean; denoising
at a random noise level gives a well-posed per-sample target (the noise) while still requiring the
condition to carry the scene content.

Layout (patch size 1 over the 2×2-grouped latent grid, so one position ↔ one LLM visual token):

* per branch ("view", "bev"): a 1×1 input embedder with a frozen 2D sin-cos position embedding, and an
  attention pooler whose learned queries (one per target position) cross-attend over *all* tokens of
  *all* conditioning views (LayerNorm without affine + Linear D→width on those tokens first);
* shared: the timestep embedding (diffusers ``Timesteps`` + ``TimestepEmbedding``), ``depth`` DiT blocks
  with adaLN-Zero modulation and the adaLN output layer. The per-position condition is added to the
  timestep embedding and modulates every block, position by position.

The diffusers adaLN modules modulate one vector per sample; per-position modulation is obtained by
folding positions into the batch dimension around those calls (LayerNorm is per token, so this is
exact). Nothing here knows about the noise schedule: that lives in the scheduler the head owns.
"""

from __future__ import annotations

import torch
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import TimestepEmbedding, Timesteps, get_2d_sincos_pos_embed_from_grid
from diffusers.models.normalization import AdaLayerNormContinuous, AdaLayerNormZero
from torch import nn
from torch.nn import functional as F

from .configuration import Ross3DConfig

__all__ = ["Ross3DDenoiser", "BRANCHES", "sincos_2d_pos_embed"]

BRANCHES = ("view", "bev")


def sincos_2d_pos_embed(width: int, grid_hw: tuple[int, int], reference_hw: tuple[int, int]) -> torch.Tensor:
    """Frozen 2D sin-cos embedding ``(h*w, width)`` of a grid that spans ``reference_hw`` positions.

    At the reference grid the positions are the integers; another grid covering the same field of view
    (a lower- or higher-resolution target) gets fractional positions, so the embedding interpolates
    instead of shifting. Built with diffusers' 2D sin-cos helper.
    """
    h, w = grid_hw
    rh, rw = reference_hw
    gh = torch.arange(h, dtype=torch.float64) * (rh / h)
    gw = torch.arange(w, dtype=torch.float64) * (rw / w)
    grid = torch.stack(torch.meshgrid(gw, gh, indexing="xy"), dim=0).reshape(2, 1, h, w)
    return get_2d_sincos_pos_embed_from_grid(width, grid, output_type="pt").float()


class LatentEmbedder(nn.Module):
    """Grouped latents ``(N, C, h, w)`` → tokens ``(N, h*w, width)``: 1×1 projection + 2D position."""

    pos_embed: torch.Tensor

    def __init__(self, in_channels: int, width: int, grid_hw: tuple[int, int]) -> None:
        super().__init__()
        self.grid_hw = tuple(grid_hw)
        self.proj = nn.Conv2d(in_channels, width, kernel_size=1)
        self.register_buffer("pos_embed", sincos_2d_pos_embed(width, self.grid_hw, self.grid_hw), persistent=False)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        hw = tuple(latents.shape[-2:])
        x = self.proj(latents).flatten(2).transpose(1, 2)
        pos = self.pos_embed if hw == self.grid_hw else sincos_2d_pos_embed(x.shape[-1], hw, self.grid_hw).to(x.device)
        return x + pos.to(x.dtype)


class AttentionPooler(nn.Module):
    """Learned per-position queries cross-attending over the conditioning tokens.

    ``forward(tokens (B, L, D), token_mask (B, L) bool | None, grid_hw) -> (B, h*w, width)``. The
    queries are stored on the configured grid and bilinearly resized for another target grid.
    """

    def __init__(self, cond_dim: int, width: int, heads: int, grid_hw: tuple[int, int]) -> None:
        super().__init__()
        self.grid_hw = tuple(grid_hw)
        self.norm = nn.LayerNorm(cond_dim, elementwise_affine=False, eps=1e-6)
        self.proj = nn.Linear(cond_dim, width)
        self.queries = nn.Parameter(torch.randn(1, width, *self.grid_hw) * 0.02)
        self.attn = Attention(query_dim=width, heads=heads, dim_head=width // heads, bias=True, out_bias=True)

    def forward(self, tokens: torch.Tensor, token_mask: torch.Tensor | None, grid_hw: tuple[int, int]) -> torch.Tensor:
        kv = self.proj(self.norm(tokens))
        q = self.queries
        if tuple(grid_hw) != self.grid_hw:
            q = F.interpolate(q, size=tuple(grid_hw), mode="bilinear", align_corners=False)
        q = q.flatten(2).transpose(1, 2).expand(tokens.shape[0], -1, -1).to(kv.dtype)
        mask = None if token_mask is None else token_mask.to(device=kv.device, dtype=torch.bool)[:, None, :]
        return self.attn(q, encoder_hidden_states=kv, attention_mask=mask)


class DiTBlock(nn.Module):
    """Self-attention + MLP with per-position adaLN-Zero modulation (gates start at zero)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = AdaLayerNormZero(width)
        self.attn = Attention(query_dim=width, heads=heads, dim_head=width // heads, bias=True, out_bias=True)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.ff = FeedForward(width, mult=mlp_ratio, activation_fn="gelu-approximate")
        nn.init.zeros_(self.norm1.linear.weight)
        nn.init.zeros_(self.norm1.linear.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        N, T, W = x.shape
        # Fold positions into the batch so the per-sample adaLN becomes per-position.
        h, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.norm1(x.reshape(N * T, 1, W), emb=cond.reshape(N * T, W))
        h = h.reshape(N, T, W)
        gate_msa, shift_mlp, scale_mlp, gate_mlp = (m.reshape(N, T, W) for m in (gate_msa, shift_mlp, scale_mlp, gate_mlp))
        x = x + gate_msa * self.attn(h)
        h = self.norm2(x) * (1 + scale_mlp) + shift_mlp
        return x + gate_mlp * self.ff(h)


class Ross3DDenoiser(nn.Module):
    """DiT over grouped VAE latents, conditioned on LLM visual hidden states.

    Use in two steps: :meth:`encode_condition` pools a batch's conditioning tokens once per sample,
    and :meth:`forward` denoises any number of targets, each paired with its sample's condition (a
    sample with several masked views reuses one pooled condition).

    Only the branches enabled in ``cfg`` (``cross_view`` → "view", ``bev`` → "bev") are built, so a
    view-only run carries no BEV parameters.
    """

    def __init__(self, hidden_size: int, cfg: Ross3DConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or Ross3DConfig()
        if hidden_size < 1:
            raise ValueError(f"hidden_size must be >= 1, got {hidden_size}")
        if not cfg.enabled:
            raise ValueError("Ross3DConfig enables neither cross_view nor bev: there is nothing to denoise")
        self.cfg = cfg
        self.hidden_size = int(hidden_size)
        width, heads, C = cfg.denoiser_width, cfg.denoiser_heads, cfg.latent_channels
        grids = {"view": cfg.view_latent_hw, "bev": cfg.bev_latent_hw}
        self.branches = tuple(b for b, on in zip(BRANCHES, (cfg.cross_view, cfg.bev)) if on)
        self.embedders = nn.ModuleDict({b: LatentEmbedder(C, width, grids[b]) for b in self.branches})
        self.poolers = nn.ModuleDict({b: AttentionPooler(self.hidden_size, width, heads, grids[b]) for b in self.branches})
        self.time_proj = Timesteps(cfg.timestep_channels, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embed = TimestepEmbedding(cfg.timestep_channels, width)
        self.blocks = nn.ModuleList(DiTBlock(width, heads, cfg.mlp_ratio) for _ in range(cfg.denoiser_depth))
        self.norm_out = AdaLayerNormContinuous(width, width, elementwise_affine=False, eps=1e-6)
        self.proj_out = nn.Linear(width, C)
        for layer in (self.norm_out.linear, self.proj_out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _check_branch(self, branch: str) -> None:
        if branch not in self.branches:
            raise ValueError(f"branch {branch!r} is not built (enabled branches: {self.branches})")

    def encode_condition(
        self, tokens: torch.Tensor, token_mask: torch.Tensor | None, branch: str, grid_hw: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """Per-position condition ``(B, h*w, width)`` from conditioning tokens ``(B, L, D)``.

        ``token_mask (B, L)`` bool marks the tokens that may be attended (e.g. those of unmasked
        views); every row needs at least one. ``grid_hw`` is the target latent grid (the branch's
        configured grid by default).
        """
        self._check_branch(branch)
        if tokens.ndim != 3 or tokens.shape[-1] != self.hidden_size:
            raise ValueError(f"tokens: expected shape (B, L, {self.hidden_size}), got {tuple(tokens.shape)}")
        if token_mask is not None and token_mask.shape != tokens.shape[:2]:
            raise ValueError(f"token_mask: expected shape {tuple(tokens.shape[:2])}, got {tuple(token_mask.shape)}")
        pooler = self.poolers[branch]
        grid_hw = tuple(grid_hw) if grid_hw is not None else pooler.grid_hw
        param_dtype = pooler.proj.weight.dtype
        return pooler(tokens.to(param_dtype), token_mask, grid_hw)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, condition: torch.Tensor, branch: str) -> torch.Tensor:
        """Model output ``(N, C, h, w)`` (ε, v or x0 depending on the scheduler's prediction type).

        Args:
            sample: noisy grouped latents ``(N, C, h, w)``.
            timestep: ``(N,)`` integer timesteps (a scalar is broadcast).
            condition: ``(N, h*w, width)`` from :meth:`encode_condition`, one row per target.
            branch: "view" or "bev".
        """
        self._check_branch(branch)
        if sample.ndim != 4 or sample.shape[1] != self.cfg.latent_channels:
            raise ValueError(f"sample: expected shape (N, {self.cfg.latent_channels}, h, w), got {tuple(sample.shape)}")
        N, C, h, w = sample.shape
        width = self.cfg.denoiser_width
        if condition.shape != (N, h * w, width):
            raise ValueError(f"condition: expected shape {(N, h * w, width)}, got {tuple(condition.shape)}")
        timestep = torch.as_tensor(timestep, device=sample.device)
        if timestep.ndim == 0:
            timestep = timestep.expand(N)
        if timestep.shape != (N,):
            raise ValueError(f"timestep: expected shape ({N},) or a scalar, got {tuple(timestep.shape)}")
        dtype = self.proj_out.weight.dtype
        x = self.embedders[branch](sample.to(dtype))
        t_emb = self.time_embed(self.time_proj(timestep).to(dtype))
        cond = condition.to(dtype) + t_emb[:, None, :]
        for block in self.blocks:
            x = block(x, cond)
        x = self.norm_out(x.reshape(N * h * w, 1, width), cond.reshape(N * h * w, width)).reshape(N, h * w, width)
        out = self.proj_out(x)
        return out.transpose(1, 2).reshape(N, C, h, w)
