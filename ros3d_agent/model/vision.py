"""Visual tokens per frame: SigLIP patches → projector → 2×2 pooling → rows with a newline token.

The pieces LLaVA-Video composes, each a small function so the model's ``encode_frames`` reads top
to bottom and the ROS node can cache its result per keyframe:

- :func:`build_vision_tower`: a ``SiglipVisionModel`` cut at the selected layer (LLaVA uses the
  hidden state of layer −2 *without* SigLIP's post-layernorm, so neither the later layer nor that
  norm is built) — :func:`encode_patches` returns its patch grid ``(N, Hp, Wp, C)``.
- :func:`build_projector`: ``mlp2x_gelu`` (Linear–GELU–Linear), as an ``nn.Sequential`` so its keys
  are LLaVA's ``mm_projector.0`` / ``mm_projector.2``.
- :func:`pool_grid`: 2×2 bilinear down-sampling with ceil (27 → 14), LLaVA-Video's ``get_2dPool``.
- :func:`add_row_newlines` / :func:`visual_token_offsets`: the spliced layout, views one after the
  other, each ``h`` rows of ``w`` tokens followed by the learnable ``image_newline`` token
  (``h·(w+1)`` tokens per view: 210 for the 7B preset).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .configuration import ProjectorConfig, VisionConfig

__all__ = [
    "build_vision_tower",
    "encode_patches",
    "build_projector",
    "pooled_grid_size",
    "pool_grid",
    "add_row_newlines",
    "visual_token_offsets",
    "tokens_per_view",
]


def build_vision_tower(cfg: VisionConfig) -> nn.Module:
    """A randomly initialised ``SiglipVisionModel`` with ``cfg.layers_used`` layers and no head/post-norm."""
    from transformers import SiglipVisionModel

    tower = SiglipVisionModel(cfg.siglip_config())
    # LLaVA feeds the projector with hidden_states[select_layer], which never passes the final norm.
    tower.post_layernorm = nn.Identity()
    return tower


def encode_patches(tower: nn.Module, pixel_values: torch.Tensor, patch_size: int, native_size: int) -> torch.Tensor:
    """Patch features ``(N, Hp, Wp, C)`` of images ``(N, 3, H, W)``; ``Hp = H // patch_size``.

    Inputs other than ``native_size`` squared run with interpolated position embeddings (SigLIP's
    ``interpolate_pos_encoding``), so any resolution and aspect ratio works.
    """
    if pixel_values.ndim != 4 or pixel_values.shape[1] != 3:
        raise ValueError(f"pixel_values: expected shape (N, 3, H, W), got {tuple(pixel_values.shape)}")
    n, _, height, width = pixel_values.shape
    hp, wp = height // patch_size, width // patch_size
    if hp < 1 or wp < 1:
        raise ValueError(f"images of {height}x{width} px are smaller than one {patch_size}-px patch")
    interpolate = (height, width) != (native_size, native_size)
    out = tower(pixel_values=pixel_values, interpolate_pos_encoding=interpolate)
    return out.last_hidden_state.reshape(n, hp, wp, -1)


def build_projector(cfg: ProjectorConfig, vision_hidden: int, llm_hidden: int) -> nn.Sequential:
    """``mlp{N}x_gelu``: Linear(vision→llm), then (GELU, Linear(llm→llm)) × (N−1)."""
    layers: list[nn.Module] = [nn.Linear(vision_hidden, llm_hidden)]
    for _ in range(cfg.depth - 1):
        layers += [nn.GELU(), nn.Linear(llm_hidden, llm_hidden)]
    return nn.Sequential(*layers)


def pooled_grid_size(hp: int, wp: int, stride: int) -> tuple[int, int]:
    """Token grid after pooling a ``hp × wp`` patch grid by ``stride``, rounding up (27 → 14)."""
    return math.ceil(hp / stride), math.ceil(wp / stride)


def pool_grid(features: torch.Tensor, stride: int, mode: str = "bilinear") -> torch.Tensor:
    """Down-sample ``(N, Hp, Wp, D)`` patch features to ``(N, ceil(Hp/s), ceil(Wp/s), D)``.

    ``bilinear`` resizes the feature map (``align_corners=False``), as LLaVA-Video's ``get_2dPool``;
    ``average``/``max`` pool ``s × s`` windows with ceil mode (partial windows at the border).
    """
    if features.ndim != 4:
        raise ValueError(f"features: expected shape (N, Hp, Wp, D), got {tuple(features.shape)}")
    if stride == 1:
        return features
    hp, wp = features.shape[1:3]
    size = pooled_grid_size(hp, wp, stride)
    x = features.permute(0, 3, 1, 2)
    if mode == "bilinear":
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    elif mode == "average":
        x = F.avg_pool2d(x, stride, stride, ceil_mode=True, count_include_pad=False)
    elif mode == "max":
        x = F.max_pool2d(x, stride, stride, ceil_mode=True)
    else:
        raise ValueError(f"pool mode must be 'bilinear', 'average' or 'max', got {mode!r}")
    return x.permute(0, 2, 3, 1)


def add_row_newlines(tokens: torch.Tensor, newline: torch.Tensor) -> torch.Tensor:
    """Lay out ``(B, V, h, w, D)`` tokens as a sequence ``(B, V·h·(w+1), D)`` with a newline after each row."""
    if tokens.ndim != 5:
        raise ValueError(f"tokens: expected shape (B, V, h, w, D), got {tuple(tokens.shape)}")
    B, V, h, w, D = tokens.shape
    if newline.shape != (D,):
        raise ValueError(f"newline: expected shape ({D},), got {tuple(newline.shape)}")
    nl = newline.to(tokens.dtype).expand(B, V, h, 1, D)
    return torch.cat([tokens, nl], dim=3).reshape(B, V * h * (w + 1), D)


def visual_token_offsets(num_views: int, h: int, w: int, device: torch.device | None = None) -> torch.Tensor:
    """Offsets ``(V·h·w,)`` of the real (non-newline) tokens inside the laid-out visual sequence,
    in ``(view, row, column)`` order, so ``sequence[offsets]`` reshapes to ``(V, h, w)``."""
    v = torch.arange(num_views, device=device)[:, None, None]
    r = torch.arange(h, device=device)[None, :, None]
    c = torch.arange(w, device=device)[None, None, :]
    return (v * h * (w + 1) + r * (w + 1) + c).reshape(-1)


def tokens_per_view(h: int, w: int) -> int:
    return h * (w + 1)
