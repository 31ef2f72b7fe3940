"""The 3D-aware multimodal LLM: configuration, modules, checkpoint IO. Never imports rclpy.

A LLaVA-Video-style model (SigLIP → mlp2x_gelu → 2×2-pooled tokens per view → Qwen2) whose visual
tokens carry Video-3D-LLM's sin-cos code of their world position, answers in text, selects 3D box
proposals through a ``<ground>`` token, and captions a located object given as a ``<coord>`` token.
Ross3D reconstruction and 3DRS alignment are training-only objectives.

Typical use::

    from ros3d_agent.model import get_preset, Ros3DForConditionalGeneration, frames_to_tensors
    cfg = get_preset("small")
    model = Ros3DForConditionalGeneration(cfg)                  # inference: no training heads
    views = frames_to_tensors(frames, cfg.vision)                # pixels + per-pixel world xyz
    visual = model.encode_frames(views.pixel_values[None], views.world_xyz[None], views.world_valid[None])
    answer_ids = model.generate(prompt_ids, visual=visual)       # visual features reusable per query

    ckpt = load_checkpoint("path/to/checkpoint")                 # safetensors + JSON, never pickle
"""

from .checkpoint import CheckpointError, LoadedCheckpoint, load_checkpoint, read_checkpoint_config, save_checkpoint
from .configuration import (
    DEFAULT_LOSS_WEIGHTS,
    LOSS_TERMS,
    ConfigError,
    LanguageConfig,
    ProjectorConfig,
    Ros3DModelConfig,
    SpecialTokenIds,
    VisionConfig,
)
from .coord import coord_embedding
from .geometry_inputs import ViewTensors, frames_to_tensors, resample_window, stack_views
from .grounding import GroundingConfig, GroundingHead, infonce_loss, pool_proposal_features, select_multi, select_single
from .losses import compose_losses
from .modeling import Ros3DForConditionalGeneration, Ros3DOutput, SplicedInputs, VisualFeatures
from .position_encoding import PositionEncodingConfig, SinCos3DPositionEncoding, discretize_xyz, patch_xyz_from_world
from .presets import PRESETS, available_presets, get_preset
from .tokenizer import (
    COORD_TOKEN,
    GROUND_TOKEN,
    IGNORE_INDEX,
    IMAGE_TOKEN,
    SPATIAL_INSTRUCTION,
    LoadedTokenizer,
    PromptTokens,
    build_offline_tokenizer,
    build_prompt,
    collate_prompts,
    load_tokenizer,
    special_token_ids,
)

__all__ = [
    # configuration
    "Ros3DModelConfig",
    "VisionConfig",
    "ProjectorConfig",
    "LanguageConfig",
    "SpecialTokenIds",
    "ConfigError",
    "LOSS_TERMS",
    "DEFAULT_LOSS_WEIGHTS",
    "PRESETS",
    "available_presets",
    "get_preset",
    # inputs
    "ViewTensors",
    "frames_to_tensors",
    "stack_views",
    "resample_window",
    # model
    "Ros3DForConditionalGeneration",
    "Ros3DOutput",
    "VisualFeatures",
    "SplicedInputs",
    "compose_losses",
    # 3D position code, grounding, <coord> (heads)
    "PositionEncodingConfig",
    "SinCos3DPositionEncoding",
    "discretize_xyz",
    "patch_xyz_from_world",
    "GroundingConfig",
    "GroundingHead",
    "pool_proposal_features",
    "infonce_loss",
    "select_single",
    "select_multi",
    "coord_embedding",
    # tokenizer and prompts
    "build_offline_tokenizer",
    "load_tokenizer",
    "LoadedTokenizer",
    "special_token_ids",
    "build_prompt",
    "collate_prompts",
    "PromptTokens",
    "IGNORE_INDEX",
    "IMAGE_TOKEN",
    "GROUND_TOKEN",
    "COORD_TOKEN",
    "SPATIAL_INSTRUCTION",
    # checkpoints
    "save_checkpoint",
    "load_checkpoint",
    "read_checkpoint_config",
    "LoadedCheckpoint",
    "CheckpointError",
]
