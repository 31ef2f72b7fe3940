"""Configuration of the Ross3D reconstruction objectives (training only).

One dataclass holds what decides the shape of the head (denoiser width/depth/heads, latent channels,
latent grids) and how it is trained (masking schedule, diffusion schedule, loss weights), so a
checkpoint's JSON config rebuilds exactly the same head. Presets: :meth:`Ross3DConfig.for_7b` (the
reference: DiT 3×1024×16 on FLUX-VAE latents, 14×14 view grid, 27×27 BEV grid) and
:meth:`Ross3DConfig.tiny` (tests).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["Ross3DConfig", "PREDICTION_TYPES"]

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def _hw(value: Any, name: str) -> tuple[int, int]:
    if isinstance(value, int):
        value = (value, value)
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be an int or an (h, w) pair, got {value!r}") from exc
    if h < 1 or w < 1:
        raise ValueError(f"{name} must be positive, got {(h, w)}")
    return h, w


@dataclass
class Ross3DConfig:
    """Ross3D: reconstruct masked views and a bird's-eye view from the LLM's visual outputs.

    Attributes:
        cross_view: enable the masked-view reconstruction term ``ross3d_view``.
        bev: enable the BEV reconstruction term ``ross3d_bev``.
        mask_ratio: fraction of views masked on a masking step (rounded; at least one view masked
            and at least one kept when there are >= 2 views).
        mask_interval: mask on every ``mask_interval``-th optimizer step (``step % interval == 0``);
            the other steps see all views, which keeps training close to inference (no masks there).
        denoiser_depth / denoiser_width / denoiser_heads: the DiT (3 / 1024 / 16 in the reference).
        mlp_ratio: DiT feed-forward expansion.
        timestep_channels: sinusoidal timestep features before the timestep MLP (DiT's 256).
        vae_latent_channels: channels of the VAE latent (16 for the FLUX VAE).
        latent_group: side of the space-to-channel grouping of latents (2: 16 → 64 channels, and the
            latent grid halves so one denoiser position matches one LLM visual token).
        view_latent_hw: grouped latent grid of a view target (14×14 for 216-px frames).
        bev_latent_hw: grouped latent grid of the BEV target (27×27 for a 432-px BEV).
        view_image_size / bev_image_size: the side the data pipeline resizes frames / BEV images to
            before :func:`~ros3d_agent.model.ross3d.targets.encode_images`; with an 8× VAE these give
            the two grids above.
        num_train_timesteps / beta_schedule / prediction_type: the diffusion the default scheduler
            (diffusers ``DDPMScheduler``) is built with; a different scheduler can be passed to the
            head instead.

    Loss weights are not here: the head returns raw (unweighted) terms so the logged value is the real
    MSE, and ``Ros3DModelConfig.loss_weights`` ("ross3d_view", "ross3d_bev") weights them once.
    """

    cross_view: bool = True
    bev: bool = True
    mask_ratio: float = 0.25
    mask_interval: int = 4
    denoiser_depth: int = 3
    denoiser_width: int = 1024
    denoiser_heads: int = 16
    mlp_ratio: float = 4.0
    timestep_channels: int = 256
    vae_latent_channels: int = 16
    latent_group: int = 2
    view_latent_hw: tuple[int, int] = (14, 14)
    bev_latent_hw: tuple[int, int] = (27, 27)
    view_image_size: int = 216
    bev_image_size: int = 432
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    prediction_type: str = "epsilon"

    def __post_init__(self) -> None:
        self.view_latent_hw = _hw(self.view_latent_hw, "view_latent_hw")
        self.bev_latent_hw = _hw(self.bev_latent_hw, "bev_latent_hw")
        if not 0 <= self.mask_ratio < 1:
            raise ValueError(f"mask_ratio must be in [0, 1), got {self.mask_ratio}")
        if int(self.mask_interval) < 1:
            raise ValueError(f"mask_interval must be >= 1, got {self.mask_interval}")
        for name in ("denoiser_depth", "denoiser_width", "denoiser_heads", "timestep_channels", "vae_latent_channels", "latent_group", "num_train_timesteps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.denoiser_width % self.denoiser_heads:
            raise ValueError(f"denoiser_width {self.denoiser_width} must be divisible by denoiser_heads {self.denoiser_heads}")
        if self.denoiser_width % 4:
            # the 2D sin-cos position embedding splits the width in 4 (sin/cos × 2 axes)
            raise ValueError(f"denoiser_width must be divisible by 4, got {self.denoiser_width}")
        if self.timestep_channels % 2:
            raise ValueError(f"timestep_channels must be even, got {self.timestep_channels}")
        if not self.mlp_ratio > 0:
            raise ValueError(f"mlp_ratio must be > 0, got {self.mlp_ratio}")
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {self.prediction_type!r}")

    @property
    def latent_channels(self) -> int:
        """Channels per denoiser position after grouping (``vae_latent_channels * latent_group**2``)."""
        return self.vae_latent_channels * self.latent_group**2

    @property
    def enabled(self) -> bool:
        return self.cross_view or self.bev

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["view_latent_hw"] = list(self.view_latent_hw)
        d["bev_latent_hw"] = list(self.bev_latent_hw)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Ross3DConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"Ross3DConfig: unknown keys {unknown}")
        return cls(**d)

    @classmethod
    def for_7b(cls, **overrides: Any) -> Ross3DConfig:
        """The reference setting (LLaVA-Video-7B + FLUX VAE)."""
        return cls(**overrides)

    @classmethod
    def tiny(cls, **overrides: Any) -> Ross3DConfig:
        """A ~40k-parameter head for tests (FLUX-like 16-channel latents); the 7B preset's code paths."""
        base: dict[str, Any] = dict(
            denoiser_depth=1,
            denoiser_width=32,
            denoiser_heads=2,
            mlp_ratio=2.0,
            timestep_channels=16,
            view_latent_hw=(4, 4),
            bev_latent_hw=(6, 6),
            view_image_size=64,
            bev_image_size=96,
        )
        base.update(overrides)
        return cls(**base)
