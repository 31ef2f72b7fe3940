"""Ross3D: 3D-aware reconstructive supervision of the LLM's visual outputs (training only).

Masked-view and bird's-eye-view reconstruction by a small DiT denoiser on frozen-VAE latents,
conditioned on the LLM's last-layer visual hidden states. Nothing here runs at inference: the
model builds :class:`ViewMasker` and :class:`Ross3DHead` (and loads the VAE) only for training.

* :mod:`.configuration` — :class:`Ross3DConfig`
* :mod:`.masking` — :class:`ViewMasker` (mask token, schedule, which views)
* :mod:`.denoiser` — :class:`Ross3DDenoiser` (DiT from diffusers blocks)
* :mod:`.targets` — VAE loading, latent targets, BEV hole mask
* :mod:`.head` — :class:`Ross3DHead` (the two losses)
"""

from __future__ import annotations

import importlib

from .configuration import Ross3DConfig

# The head, denoiser and targets import diffusers (seconds at start-up); an inference process
# only needs the config, so everything else is resolved on first attribute access.
_LAZY = {
    "ViewMasker": ".masking", "num_masked_views": ".masking",
    "Ross3DDenoiser": ".denoiser",
    "Ross3DHead": ".head", "make_noise_scheduler": ".head",
    "load_vae": ".targets", "tiny_random_vae": ".targets", "encode_images": ".targets",
    "group_latents": ".targets", "bev_latent_mask": ".targets",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "Ross3DConfig",
    "ViewMasker",
    "num_masked_views",
    "Ross3DDenoiser",
    "Ross3DHead",
    "make_noise_scheduler",
    "load_vae",
    "tiny_random_vae",
    "encode_images",
    "group_latents",
    "bev_latent_mask",
]
