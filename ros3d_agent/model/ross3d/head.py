"""The Ross3D training head: two denoising losses computed from the LLM's visual outputs.

* ``ross3d_view`` (cross-view): on a masking step, the LLM's outputs at the tokens of the *unmasked*
  views condition the denoising of the VAE latents of the *masked* views. Each masked view is one
  target; all targets of a sample share that sample's pooled condition.
* ``ross3d_bev`` (global view): the outputs of all unmasked views (all views on a non-masking step)
  condition the denoising of the scene's bird's-eye-view latents; latent cells that cover only holes
  of the BEV render are zeroed in the input and excluded from the loss.

Both are DDPM-style training losses: a timestep drawn uniformly per target, Gaussian noise added by
the noise scheduler, MSE between the denoiser output and the scheduler's prediction target (the noise
for the reference's ε-prediction). The scheduler is an ordinary diffusers scheduler held beside the
model, so it can be swapped (another beta schedule, v-prediction) without touching the denoiser.

The head is training-only: build it next to the model when training, never for inference.
"""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler
from diffusers.utils.torch_utils import randn_tensor
from torch import nn

from .configuration import PREDICTION_TYPES, Ross3DConfig
from .denoiser import Ross3DDenoiser

__all__ = ["Ross3DHead", "make_noise_scheduler"]


def make_noise_scheduler(cfg: Ross3DConfig) -> DDPMScheduler:
    """The default training scheduler of a config (1000 steps, cosine ``squaredcos_cap_v2``, ε)."""
    return DDPMScheduler(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_schedule=cfg.beta_schedule,
        prediction_type=cfg.prediction_type,
    )


class Ross3DHead(nn.Module):
    """Cross-view and BEV reconstruction losses.

    Args:
        hidden_size: LLM width ``D`` of ``visual_hidden``.
        cfg: the Ross3D config (which terms are on, denoiser size, grids, weights).
        noise_scheduler: any diffusers scheduler with ``add_noise`` (and ``get_velocity`` for
            v-prediction); built from ``cfg`` when omitted. Its ``config.prediction_type`` must agree
            with ``cfg.prediction_type`` so a checkpoint's config says what the denoiser learned.
    """

    def __init__(self, hidden_size: int, cfg: Ross3DConfig | None = None, noise_scheduler: object | None = None) -> None:
        super().__init__()
        self.cfg = cfg or Ross3DConfig()
        self.hidden_size = int(hidden_size)
        self.denoiser = Ross3DDenoiser(self.hidden_size, self.cfg)
        sched = noise_scheduler if noise_scheduler is not None else make_noise_scheduler(self.cfg)
        if not callable(getattr(sched, "add_noise", None)) or not hasattr(getattr(sched, "config", None), "num_train_timesteps"):
            raise TypeError(f"noise_scheduler {type(sched).__name__} lacks add_noise/config.num_train_timesteps (a DDPM-style scheduler is needed)")
        pred = getattr(sched.config, "prediction_type", "epsilon")
        if pred not in PREDICTION_TYPES:
            raise ValueError(f"noise_scheduler predicts {pred!r}; supported: {PREDICTION_TYPES}")
        if pred != self.cfg.prediction_type:
            raise ValueError(f"noise_scheduler predicts {pred!r} but Ross3DConfig.prediction_type is {self.cfg.prediction_type!r}")
        self.noise_scheduler = sched

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # -- one diffusion loss ----------------------------------------------------------------------
    def _diffusion_loss(
        self,
        latents: torch.Tensor,
        condition: torch.Tensor,
        branch: str,
        generator: torch.Generator | None,
        cell_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """MSE of the denoiser on ``latents (N, C, h, w)``; masked mean over cells when ``cell_mask (N, 1, h, w)``."""
        N = latents.shape[0]
        x0 = latents.float()
        if cell_mask is not None:
            # Hole cells carry no information about the scene: zero them so they cannot leak into the
            # other positions through self-attention, then drop them from the loss.
            x0 = x0 * cell_mask
        num_t = int(self.noise_scheduler.config.num_train_timesteps)
        rand_device = generator.device if generator is not None else torch.device("cpu")
        t = torch.randint(0, num_t, (N,), generator=generator, device=rand_device).to(x0.device)
        noise = randn_tensor(x0.shape, generator=generator, device=x0.device, dtype=torch.float32)
        noisy = self.noise_scheduler.add_noise(x0, noise, t)
        pred = self.denoiser(noisy, t, condition, branch).float()
        ptype = self.noise_scheduler.config.prediction_type
        if ptype == "epsilon":
            target = noise
        elif ptype == "v_prediction":
            target = self.noise_scheduler.get_velocity(x0, noise, t)
        else:
            target = x0
        se = (pred - target) ** 2
        if cell_mask is None:
            return se.mean()
        per_cell = se.mean(dim=1, keepdim=True) * cell_mask
        denom = cell_mask.sum()
        # An all-hole batch contributes exactly zero (and still keeps the graph for DDP).
        return torch.where(denom > 0, per_cell.sum() / denom.clamp(min=1), per_cell.sum() * 0.0)

    # -- forward ---------------------------------------------------------------------------------
    def forward(
        self,
        visual_hidden: torch.Tensor,
        view_mask: torch.Tensor | None = None,
        view_latents: torch.Tensor | None = None,
        bev_latents: torch.Tensor | None = None,
        bev_valid: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """The enabled Ross3D terms whose targets are given, unweighted (see ``cfg.loss_weights()``).

        Args:
            visual_hidden: ``(B, V, h, w, D)`` LLM last-layer states at the visual tokens.
            view_mask: ``(B, V)`` bool, True for views that were masked at the input; None (or no
                True) on a non-masking step, which yields no ``ross3d_view`` term.
            view_latents: ``(B, V, C', h', w')`` grouped latents of every view (only the masked ones
                are used, so unmasked entries may hold anything).
            bev_latents: ``(B, C', hb, wb)`` grouped BEV latents.
            bev_valid: ``(B, 1, hb, wb)`` cell mask (:func:`~.targets.bev_latent_mask`); all valid
                when omitted.
            generator: drives timesteps and noise (reproducible losses in tests/evaluation).

        Returns:
            ``{"ross3d_view": ..., "ross3d_bev": ...}``, each key present only when computed.
        """
        cfg = self.cfg
        if visual_hidden.ndim != 5 or visual_hidden.shape[-1] != self.hidden_size:
            raise ValueError(f"visual_hidden: expected shape (B, V, h, w, {self.hidden_size}), got {tuple(visual_hidden.shape)}")
        B, V, h, w, D = visual_hidden.shape
        C = cfg.latent_channels
        if view_mask is not None:
            if view_mask.shape != (B, V):
                raise ValueError(f"view_mask: expected shape {(B, V)}, got {tuple(view_mask.shape)}")
            view_mask = view_mask.to(device=visual_hidden.device, dtype=torch.bool)
            if not bool((~view_mask).any(dim=1).all()):
                raise ValueError("view_mask masks every view of some sample; at least one view must condition the reconstruction")
        tokens = visual_hidden.reshape(B, V * h * w, D)
        token_mask = None if view_mask is None else (~view_mask)[:, :, None].expand(B, V, h * w).reshape(B, V * h * w)

        losses: dict[str, torch.Tensor] = {}
        if cfg.cross_view and view_mask is not None and view_latents is not None and bool(view_mask.any()):
            if view_latents.ndim != 5 or view_latents.shape[:3] != (B, V, C):
                raise ValueError(f"view_latents: expected shape ({B}, {V}, {C}, h', w'), got {tuple(view_latents.shape)}")
            sample_idx, view_idx = torch.nonzero(view_mask, as_tuple=True)
            targets = view_latents.to(visual_hidden.device)[sample_idx, view_idx]  # (N, C, h', w')
            cond = self.denoiser.encode_condition(tokens, token_mask, "view", tuple(targets.shape[-2:]))
            loss = self._diffusion_loss(targets, cond[sample_idx], "view", generator)
            losses["ross3d_view"] = loss
        if cfg.bev and bev_latents is not None:
            if bev_latents.ndim != 4 or bev_latents.shape[:2] != (B, C):
                raise ValueError(f"bev_latents: expected shape ({B}, {C}, hb, wb), got {tuple(bev_latents.shape)}")
            hb, wb = bev_latents.shape[-2:]
            mask = None
            if bev_valid is not None:
                if bev_valid.shape != (B, 1, hb, wb):
                    raise ValueError(f"bev_valid: expected shape {(B, 1, hb, wb)}, got {tuple(bev_valid.shape)}")
                mask = bev_valid.to(device=visual_hidden.device, dtype=torch.float32)
            cond = self.denoiser.encode_condition(tokens, token_mask, "bev", (hb, wb))
            loss = self._diffusion_loss(bev_latents.to(visual_hidden.device), cond, "bev", generator, mask)
            losses["ross3d_bev"] = loss
        return losses
