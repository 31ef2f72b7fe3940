"""Reconstruction targets: a frozen VAE's latents of the masked views and of the BEV image.

Ross3D reconstructs in the latent space of a pretrained image VAE (the FLUX.1 VAE, 16 channels,
8× downsampling) rather than in pixels: the latents keep layout and appearance while dropping
high-frequency detail the LLM cannot and need not predict. Latents are normalised with the VAE's own
``shift_factor``/``scaling_factor`` (``(z - shift) * scale``, roughly unit variance, as diffusion
expects) and grouped 2×2 into channels, so that a 216-px view becomes a 14×14 grid matching the
14×14 visual tokens of a frame.

The BEV image rendered from a sparse reconstruction has holes; :func:`bev_latent_mask` says which
latent cells have any real pixels so the loss ignores the rest.

Weights load only from a local diffusers-format directory: nothing downloads at run time.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from torch.nn import functional as F

__all__ = [
    "load_vae",
    "tiny_random_vae",
    "encode_images",
    "group_latents",
    "bev_latent_mask",
    "FLUX_VAE_SCALING_FACTOR",
    "FLUX_VAE_SHIFT_FACTOR",
]

log = logging.getLogger(__name__)

# The FLUX.1 VAE's latent normalisation (its config.json); used by the tiny test VAE so the
# normalisation path is exercised with realistic numbers.
FLUX_VAE_SCALING_FACTOR = 0.3611
FLUX_VAE_SHIFT_FACTOR = 0.1159

_CONFIG = "config.json"
_WEIGHTS = "diffusion_pytorch_model.safetensors"
_WEIGHTS_INDEX = "diffusion_pytorch_model.safetensors.index.json"


def _resolve_vae_dir(local_dir: str | os.PathLike[str]) -> Path:
    p = Path(local_dir).expanduser()
    if not p.is_dir():
        raise FileNotFoundError(
            f"VAE directory {p} does not exist. Pass a local diffusers-format AutoencoderKL directory "
            f"(config.json + {_WEIGHTS}) or a pipeline root with a vae/ subfolder (e.g. FLUX.1-dev); "
            "hub names are not accepted (nothing downloads at run time)."
        )
    if not (p / _CONFIG).is_file() and (p / "vae" / _CONFIG).is_file():
        p = p / "vae"  # a pipeline root such as FLUX.1-dev/
    if not (p / _CONFIG).is_file():
        raise FileNotFoundError(f"VAE directory {p} has no {_CONFIG} (contents: {sorted(os.listdir(p))[:20]})")
    if not (p / _WEIGHTS).is_file() and not (p / _WEIGHTS_INDEX).is_file():
        raise FileNotFoundError(
            f"VAE directory {p} has no {_WEIGHTS} (or its sharded index); only safetensors weights are "
            f"loaded (contents: {sorted(os.listdir(p))[:20]})"
        )
    return p


def load_vae(
    local_dir: str | os.PathLike[str], *, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
) -> AutoencoderKL:
    """A frozen ``AutoencoderKL`` (eval mode, no grads) from a local diffusers-format directory.

    Accepts the VAE folder itself or a pipeline root holding ``vae/`` (the FLUX.1-dev layout). The
    reference keeps the VAE in fp32, which is the default here.

    Raises:
        FileNotFoundError: the directory, its ``config.json`` or its safetensors weights are missing.
        ValueError: the config describes another model class.
    """
    p = _resolve_vae_dir(local_dir)
    try:
        cfg = json.loads((p / _CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{p / _CONFIG}: cannot parse ({exc})") from exc
    cls_name = cfg.get("_class_name", "AutoencoderKL")
    if cls_name != "AutoencoderKL":
        raise ValueError(f"{p / _CONFIG}: describes a {cls_name!r}, expected an 'AutoencoderKL'")
    vae = AutoencoderKL.from_pretrained(p, local_files_only=True, use_safetensors=True, torch_dtype=dtype)
    vae.requires_grad_(False).eval().to(device)
    log.info(
        "loaded VAE from %s: %d latent channels, scaling %.4f, shift %s",
        p, vae.config.latent_channels, vae.config.scaling_factor, vae.config.shift_factor,
    )
    return vae


def tiny_random_vae(latent_channels: int = 16, seed: int = 0) -> AutoencoderKL:
    """A frozen, randomly initialised FLUX-shaped ``AutoencoderKL`` built from config (tests, demos).

    Same structure as the real one where it matters (8× downsampling, no quant convs, FLUX latent
    normalisation), with 8-channel blocks so it runs in milliseconds on a CPU. Initialised under
    ``seed`` without touching the global RNG.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(8, 8, 8, 8),
            layers_per_block=1,
            latent_channels=latent_channels,
            norm_num_groups=4,
            sample_size=64,
            scaling_factor=FLUX_VAE_SCALING_FACTOR,
            shift_factor=FLUX_VAE_SHIFT_FACTOR,
            use_quant_conv=False,
            use_post_quant_conv=False,
        )
    return vae.requires_grad_(False).eval()


def group_latents(latents: torch.Tensor, group: int = 2) -> torch.Tensor:
    """``(N, C, h, w)`` → ``(N, C·g², ⌈h/g⌉, ⌈w/g⌉)``: space-to-channel grouping of ``g×g`` cells.

    A side that is not a multiple of ``g`` is first bilinearly resized up to the next multiple
    (27 → 28 for a 216-px view), as the reference does, rather than padded with values the VAE never
    produces.
    """
    if latents.ndim != 4:
        raise ValueError(f"latents: expected shape (N, C, h, w), got {tuple(latents.shape)}")
    if group < 1:
        raise ValueError(f"group must be >= 1, got {group}")
    h, w = latents.shape[-2:]
    H, W = -(-h // group) * group, -(-w // group) * group
    if (H, W) != (h, w):
        latents = F.interpolate(latents, size=(H, W), mode="bilinear", align_corners=False)
    return F.pixel_unshuffle(latents, group) if group > 1 else latents


@torch.no_grad()
def encode_images(
    vae: AutoencoderKL,
    images: torch.Tensor,
    *,
    group: int = 2,
    sample_posterior: bool = False,
    generator: torch.Generator | None = None,
    batch_size: int = 16,
) -> torch.Tensor:
    """Normalised, grouped latents ``(N, 4·C, h/2, w/2)`` float32 of images ``(N, 3, H, W)`` in [-1, 1].

    ``(z - shift_factor) * scaling_factor`` with the VAE config's factors (no shift when the config
    has none), then :func:`group_latents`. ``z`` is the posterior mode by default: the targets are
    then a deterministic function of the image (cacheable, and the VAE posterior of a good VAE is
    nearly deterministic anyway); ``sample_posterior=True`` draws from it instead.
    Images are fed in chunks of ``batch_size`` to bound memory.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images: expected shape (N, 3, H, W), got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"images: expected floats in [-1, 1], got dtype {images.dtype} (convert uint8 with x/127.5-1)")
    if images.numel() and (images.min() < -1.001 or images.max() > 1.001):
        raise ValueError(
            f"images: values must lie in [-1, 1], got [{images.min().item():.3f}, {images.max().item():.3f}]"
        )
    param = next(vae.parameters())
    shift = vae.config.shift_factor or 0.0
    scale = vae.config.scaling_factor
    out = []
    for chunk in images.split(max(1, int(batch_size))):
        dist = vae.encode(chunk.to(device=param.device, dtype=param.dtype)).latent_dist
        z = dist.sample(generator=generator) if sample_posterior else dist.mode()
        out.append((z.float() - shift) * scale)
    if not out:
        raise ValueError("images: empty batch")
    return group_latents(torch.cat(out), group)


def bev_latent_mask(valid: torch.Tensor, latent_hw: tuple[int, int]) -> torch.Tensor:
    """Float ``(B, 1, h, w)`` loss mask of a BEV target: 1 where the cell's area has any valid pixel.

    Args:
        valid: ``(B, 1, H, W)`` or ``(B, H, W)`` validity of the BEV pixels, True / > 0 = a real
            rendered pixel, False / 0 = a hole. (A BEV image's channel mean works too: the reference
            treats black pixels as holes.)
        latent_hw: the target's grouped latent grid ``(h, w)``.

    Each cell covers an as-even-as-possible block of pixels (adaptive average pooling of the
    validity); the cell counts when that average is > 0.
    """
    if valid.ndim == 3:
        valid = valid[:, None]
    if valid.ndim != 4 or valid.shape[1] != 1:
        raise ValueError(f"valid: expected shape (B, 1, H, W) or (B, H, W), got {tuple(valid.shape)}")
    h, w = (int(v) for v in latent_hw)
    if h < 1 or w < 1:
        raise ValueError(f"latent_hw must be positive, got {latent_hw}")
    v = (valid > 0).float() if valid.dtype != torch.bool else valid.float()
    return (F.adaptive_avg_pool2d(v, (h, w)) > 0).float()
