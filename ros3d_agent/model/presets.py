"""Named model sizes: ``tiny`` (CPU tests), ``small`` (the bundled demo model) and ``llava-video-7b``.

A preset is only a :class:`~.configuration.Ros3DModelConfig`; building it gives random weights.
Pretrained weights are loaded separately (our checkpoints, or a LLaVA-Video checkpoint mapped onto the
module names documented in :mod:`.modeling`).

Sizes (parameters without the training-only heads; see ``benchmarks/model_forward.py``):

- ``tiny``: SigLIP 32-wide × 2 layers at 64 px / patch 8 (8×8 patches → 4×4 tokens + 4 newlines =
  20 tokens per view), Qwen2 48-wide × 2 layers, vocabulary 4096. A forward pass takes milliseconds.
- ``small``: SigLIP 192-wide × 4 layers at 224 px / patch 16 (14×14 → 7×7 → 56 tokens per view),
  Qwen2 384-wide × 6 layers (6 heads, 2 KV heads), vocabulary 4096 with tied embeddings: ~13M
  parameters, ~26 MB as fp16 safetensors, trainable from scratch on one GPU in minutes.
- ``llava-video-7b``: SigLIP-so400m-patch14-384 (select layer −2) + mlp2x_gelu 1152→3584→3584 +
  Qwen2-7B; 27×27 patches → 14×14 tokens + 14 newlines = 210 tokens per view.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .alignment3drs import Alignment3DRSConfig
from .configuration import (
    ConfigError,
    LanguageConfig,
    ProjectorConfig,
    Ros3DModelConfig,
    SpecialTokenIds,
    VisionConfig,
)
from .ross3d.configuration import Ross3DConfig

__all__ = ["PRESETS", "available_presets", "get_preset", "QWEN2_TOKEN_IDS"]

#: ids of the special tokens in Qwen2's tokenizer once :func:`~.tokenizer.load_tokenizer` has appended
#: ``<image>``, ``<ground>`` and ``<coord>`` (Qwen2-7B-Instruct has 151643 base tokens + 3 specials)
QWEN2_TOKEN_IDS = SpecialTokenIds(pad=151643, endoftext=151643, im_start=151644, im_end=151645, image=151646, ground=151647, coord=151648)


def _tiny() -> Ros3DModelConfig:
    return Ros3DModelConfig(
        vision=VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
                            image_size=64, patch_size=8, select_layer=-2),
        projector=ProjectorConfig(),
        language=LanguageConfig(vocab_size=4096, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                                rope_theta=10000.0, tie_word_embeddings=True),
        tokens=SpecialTokenIds(),
        ross3d=Ross3DConfig.tiny(view_latent_hw=(4, 4)),
        alignment3drs=Alignment3DRSConfig(teacher_dim=32),
        preset="tiny",
    )


def _small() -> Ros3DModelConfig:
    return Ros3DModelConfig(
        vision=VisionConfig(hidden_size=192, intermediate_size=768, num_hidden_layers=4, num_attention_heads=3,
                            image_size=224, patch_size=16, select_layer=-1),
        projector=ProjectorConfig(),
        language=LanguageConfig(vocab_size=4096, hidden_size=384, intermediate_size=1024, num_hidden_layers=6,
                                num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=8192,
                                rope_theta=10000.0, tie_word_embeddings=True),
        tokens=SpecialTokenIds(),
        # 7×7 pooled tokens per view → 7×7 grouped latents of a 112-px frame (8× VAE, 2×2 grouping)
        ross3d=Ross3DConfig(denoiser_depth=2, denoiser_width=256, denoiser_heads=4, view_latent_hw=(7, 7),
                            view_image_size=112, bev_latent_hw=(14, 14), bev_image_size=224),
        alignment3drs=Alignment3DRSConfig(teacher_dim=1024),  # e.g. a DINOv2-L teacher
        preset="small",
    )


def _llava_video_7b() -> Ros3DModelConfig:
    return Ros3DModelConfig(
        vision=VisionConfig(),  # SigLIP-so400m-patch14-384, select layer -2
        projector=ProjectorConfig(projector_type="mlp2x_gelu", pool_stride=2, pool_mode="bilinear"),
        language=LanguageConfig(),  # Qwen2-7B
        tokens=QWEN2_TOKEN_IDS,
        ross3d=Ross3DConfig.for_7b(),
        alignment3drs=Alignment3DRSConfig(teacher_dim=2048),  # VGGT-1B last aggregator layer
        preset="llava-video-7b",
    )


PRESETS: dict[str, Callable[[], Ros3DModelConfig]] = {
    "tiny": _tiny,
    "small": _small,
    "llava-video-7b": _llava_video_7b,
}


def available_presets() -> list[str]:
    return list(PRESETS)


def get_preset(name: str, **overrides: Any) -> Ros3DModelConfig:
    """The config of preset ``name``, with top-level fields optionally replaced (e.g. ``ross3d=None``).

    Raises:
        ConfigError: unknown preset name (the message lists the known ones) or an override that
            makes the config inconsistent.
    """
    try:
        factory = PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown model preset {name!r}; available: {available_presets()}") from None
    cfg = factory()
    return cfg.replace(**overrides) if overrides else cfg
