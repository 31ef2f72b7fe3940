"""Look at what the Ross3D head has learned: sample reconstructions and decode them through the VAE.

Training only ever measures the denoiser's one-step noise-prediction error; whether the LLM's visual
outputs really carry the scene shows when the denoiser *generates* from them. For a few fixed
samples this runs the model with some views masked, pools the condition exactly as the head does,
runs a diffusers DDIM sampling loop from pure noise (``recon_steps`` steps; the scheduler is built
from the head's own noise-scheduler config, so it is the same diffusion), un-groups the latents and
decodes them with the frozen VAE. The figure shows, per sample, the masked input view / its VAE
reconstruction (the target) / the generated view, and the same for the bird's-eye view.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

__all__ = ["ReconPanel", "sample_latents", "decode_latents", "reconstruct", "save_reconstruction_figure"]


@dataclass
class ReconPanel:
    """One row of the figure: ``images`` (title → H×W×3 float in [0, 1]) and the latent MSE of the
    generated vs the target latents."""

    label: str
    images: dict[str, np.ndarray]
    latent_mse: float


@torch.no_grad()
def sample_latents(head: Any, condition: torch.Tensor, grid_hw: tuple[int, int], branch: str, steps: int,
                   generator: torch.Generator) -> torch.Tensor:
    """DDIM sampling of ``(N, C, h, w)`` grouped latents given the pooled ``condition (N, h·w, width)``."""
    from diffusers import DDIMScheduler

    # x0 estimates are clipped to ±3: targets are normalised latents (about unit variance), and
    # near t = T (ᾱ → 0 under the cosine schedule) an imperfect ε estimate would otherwise blow up
    sched = DDIMScheduler.from_config(head.noise_scheduler.config, clip_sample=True, clip_sample_range=3.0)
    sched.set_timesteps(steps)
    N = condition.shape[0]
    C = head.cfg.latent_channels
    x = torch.randn((N, C, *grid_hw), generator=generator, device=generator.device).to(condition.device)
    x = x * sched.init_noise_sigma
    for t in sched.timesteps:
        out = head.denoiser(x, t.to(condition.device).expand(N), condition, branch).float()
        x = sched.step(out, t, x).prev_sample
    return x


@torch.no_grad()
def decode_latents(vae: Any, latents: torch.Tensor, group: int) -> np.ndarray:
    """Grouped normalised latents ``(N, C·g², h, w)`` → images ``(N, H, W, 3)`` in [0, 1] (inverse of
    :func:`~ros3d_agent.model.ross3d.targets.encode_images`)."""
    z = F.pixel_shuffle(latents.float(), group) if group > 1 else latents.float()
    z = z / vae.config.scaling_factor + (vae.config.shift_factor or 0.0)
    param = next(vae.parameters())
    img = vae.decode(z.to(device=param.device, dtype=param.dtype)).sample.float()
    return ((img.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).cpu().numpy()


def _unnormalise(pixels: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    m = torch.tensor(mean, device=pixels.device)[:, None, None]
    s = torch.tensor(std, device=pixels.device)[:, None, None]
    return (pixels.float() * s + m).clamp(0, 1).permute(1, 2, 0).cpu().numpy()


@torch.no_grad()
def reconstruct(model: Any, batch: dict[str, Any], vae: Any, *, steps: int, seed: int,
                bev_images: list[np.ndarray | None] | None = None) -> list[ReconPanel]:
    """Reconstruction panels of a collated non-grounding ``batch`` (tensors on the model's device).

    ``bev_images`` are the rendered BEVs (H×W×3 uint8) to show beside the BEV reconstructions.
    Does not touch any global random state (the caller's training RNG stays exactly as it was).
    """
    head = model.training_heads["ross3d"]
    ross = head.cfg
    device = batch["pixel_values"].device
    gen = torch.Generator(device=device).manual_seed(seed)
    masked = "view_masker" in model.training_heads and batch["pixel_values"].shape[1] > 1 and "view_latents" in batch
    visual = model.encode_frames(batch["pixel_values"], batch["world_xyz"], batch["world_valid"], mask_views=masked, generator=gen)
    out = model(batch["input_ids"], batch["attention_mask"], visual=visual, coord_centres=batch.get("coord_centres"))
    hidden = out.visual_hidden
    B, V, h, w, D = hidden.shape
    tokens = hidden.reshape(B, V * h * w, D)
    view_mask = out.view_mask
    token_mask = None if view_mask is None else (~view_mask)[:, :, None].expand(B, V, h * w).reshape(B, V * h * w)
    vcfg = model.config.vision
    panels: list[ReconPanel] = []
    for b in range(B):
        if masked and view_mask is not None and ross.cross_view:
            v = int(view_mask[b].nonzero()[0])
            target = batch["view_latents"][b, v][None].to(device)
            cond = head.denoiser.encode_condition(tokens[b: b + 1], None if token_mask is None else token_mask[b: b + 1],
                                                  "view", tuple(target.shape[-2:]))
            pred = sample_latents(head, cond, tuple(target.shape[-2:]), "view", steps, gen)
            dec = decode_latents(vae, torch.cat([target, pred]), ross.latent_group)
            panels.append(ReconPanel(f"{batch['ids'][b]} view {batch['frame_ids'][b][v]} (masked)", {
                "input view": _unnormalise(batch["pixel_values"][b, v], vcfg.image_mean, vcfg.image_std),
                "VAE(target)": dec[0], "generated": dec[1]},
                float(F.mse_loss(pred.float(), target.float()))))
        if ross.bev and "bev_latents" in batch:
            target = batch["bev_latents"][b][None].to(device)
            cond = head.denoiser.encode_condition(tokens[b: b + 1], None if token_mask is None else token_mask[b: b + 1],
                                                  "bev", tuple(target.shape[-2:]))
            pred = sample_latents(head, cond, tuple(target.shape[-2:]), "bev", steps, gen)
            dec = decode_latents(vae, torch.cat([target, pred]), ross.latent_group)
            images = {}
            if bev_images is not None and bev_images[b] is not None:
                images["BEV render"] = bev_images[b].astype(np.float32) / 255.0
            images.update({"VAE(target)": dec[0], "generated": dec[1]})
            mask = batch["bev_valid"][b].to(device) if "bev_valid" in batch else torch.ones_like(target[:, :1])
            mse = float((((pred - target) ** 2).mean(dim=1, keepdim=True) * mask).sum() / mask.sum().clamp(min=1))
            panels.append(ReconPanel(f"{batch['scene_ids'][b]} BEV", images, mse))
    return panels


def save_reconstruction_figure(panels: list[ReconPanel], path: Path, title: str) -> Path:
    """One row per panel, one column per image; the latent MSE in each row's label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not panels:
        raise ValueError("no reconstruction to plot")
    cols = max(len(p.images) for p in panels)
    fig, axes = plt.subplots(len(panels), cols, figsize=(3.0 * cols, 3.1 * len(panels)), squeeze=False)
    for r, panel in enumerate(panels):
        for c in range(cols):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(panel.images):
                name, img = list(panel.images.items())[c]
                ax.imshow(np.clip(img, 0, 1), interpolation="nearest")
                ax.set_title(name if c else f"{panel.label}\n{name}", fontsize=8)
        axes[r][cols - 1].text(1.02, 0.5, f"latent MSE\n{panel.latent_mse:.3f}", transform=axes[r][cols - 1].transAxes,
                               fontsize=8, va="center")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
