"""Configuration of the 3D-aware multimodal LLM (LLaVA-Video layout + Video-3D-LLM position code).

One dataclass tree describes a whole model: the SigLIP vision tower, the projector and token pooling,
the Qwen2 language model, the ids of our special tokens, the 3D position code, the grounding head and
the training-only objectives (Ross3D, 3DRS) with their loss weights. A checkpoint stores it as JSON
(:meth:`Ros3DModelConfig.to_dict`) and rebuilds exactly the same modules from it, so nothing about the
architecture lives in code paths or command-line flags.

Sizes are checked on construction (:meth:`Ros3DModelConfig.validate`), so an inconsistent config fails
here with a message naming the fields, not deep inside a matmul.
"""

from __future__ import annotations

from ros3d_agent.utils.jsonable import jsonable

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from .alignment3drs import Alignment3DRSConfig
from .grounding import GroundingConfig
from .position_encoding import PositionEncodingConfig
from .ross3d.configuration import Ross3DConfig

__all__ = [
    "ConfigError",
    "VisionConfig",
    "ProjectorConfig",
    "LanguageConfig",
    "SpecialTokenIds",
    "Ros3DModelConfig",
    "LOSS_TERMS",
    "DEFAULT_LOSS_WEIGHTS",
    "CONFIG_FORMAT_VERSION",
]

#: bump when a field changes meaning; checkpoints record it and loading refuses newer versions
CONFIG_FORMAT_VERSION = 1

#: every loss term the model can produce (keys of ``output.losses``)
LOSS_TERMS: tuple[str, ...] = ("lm", "ground", "ross3d_view", "ross3d_bev", "align3drs")
DEFAULT_LOSS_WEIGHTS: dict[str, float] = {name: 1.0 for name in LOSS_TERMS}


class ConfigError(ValueError):
    """An inconsistent or unknown model configuration."""


def _positive(obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{type(obj).__name__}.{name} must be a positive integer, got {value!r}")


@dataclass
class VisionConfig:
    """SigLIP vision tower (defaults: ``google/siglip-so400m-patch14-384``).

    Attributes:
        select_layer: which hidden state feeds the projector, LLaVA style: ``-2`` is the output of
            the second-to-last layer, a positive ``k`` the output of layer ``k``. Layers after it
            would never be used, so the tower is built without them (LLaVA-Video does the same: it
            deletes the last SigLIP layer), and without SigLIP's post-layernorm and pooling head.
        image_size / patch_size: the tower's native input; frames are resized/cropped to
            ``image_size`` (other sizes still run: position embeddings are then interpolated).
        image_mean / image_std: pixel normalisation (SigLIP: 0.5 / 0.5, i.e. to [-1, 1]).
        crop_strategy: ``center_crop`` (Video-3D-LLM: shorter side to ``image_size``, then a
            centre crop) or ``resize`` (3DRS: squash to a square).
    """

    hidden_size: int = 1152
    intermediate_size: int = 4304
    num_hidden_layers: int = 27
    num_attention_heads: int = 16
    image_size: int = 384
    patch_size: int = 14
    select_layer: int = -2
    layer_norm_eps: float = 1e-6
    hidden_act: str = "gelu_pytorch_tanh"
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    crop_strategy: Literal["center_crop", "resize"] = "center_crop"

    def __post_init__(self) -> None:
        self.image_mean = tuple(float(v) for v in self.image_mean)  # type: ignore[assignment]
        self.image_std = tuple(float(v) for v in self.image_std)  # type: ignore[assignment]

    @property
    def layers_used(self) -> int:
        """How many encoder layers run (and are built) to reach ``select_layer``."""
        k = self.select_layer
        return k if k > 0 else self.num_hidden_layers + 1 + k

    @property
    def grid_size(self) -> int:
        """Patches per side at ``image_size`` (27 for 384 px / patch 14: the last 6 px are dropped)."""
        return self.image_size // self.patch_size

    def validate(self) -> None:
        _positive(self, "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "image_size", "patch_size")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(f"vision.hidden_size {self.hidden_size} is not divisible by vision.num_attention_heads {self.num_attention_heads}")
        if self.select_layer == 0 or not 1 <= self.layers_used <= self.num_hidden_layers:
            raise ConfigError(
                f"vision.select_layer {self.select_layer} is outside the tower: use -1..-{self.num_hidden_layers} "
                f"or 1..{self.num_hidden_layers}"
            )
        if self.patch_size > self.image_size:
            raise ConfigError(f"vision.patch_size {self.patch_size} exceeds vision.image_size {self.image_size}")
        if len(self.image_mean) != 3 or len(self.image_std) != 3 or min(self.image_std) <= 0:
            raise ConfigError(f"vision.image_mean/std need 3 values each with std > 0, got {self.image_mean} / {self.image_std}")
        if self.crop_strategy not in ("center_crop", "resize"):
            raise ConfigError(f"vision.crop_strategy must be 'center_crop' or 'resize', got {self.crop_strategy!r}")

    def siglip_config(self) -> Any:
        """The ``SiglipVisionConfig`` of the tower as built: only ``layers_used`` layers, no head."""
        from transformers import SiglipVisionConfig

        return SiglipVisionConfig(
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.layers_used,
            num_attention_heads=self.num_attention_heads,
            image_size=self.image_size,
            patch_size=self.patch_size,
            layer_norm_eps=self.layer_norm_eps,
            hidden_act=self.hidden_act,
            vision_use_head=False,
        )


_MLP_PROJECTOR = re.compile(r"^mlp(\d+)x_gelu$")


@dataclass
class ProjectorConfig:
    """Vision → LLM projector and the spatial pooling of its output.

    Attributes:
        projector_type: ``mlp{N}x_gelu`` (LLaVA naming): N linear layers with GELU between them;
            LLaVA-Video uses ``mlp2x_gelu``.
        pool_stride: the patch grid is pooled by this factor per side, rounding up (27 → 14).
        pool_mode: ``bilinear`` (LLaVA-Video's ``get_2dPool`` default, used by Video-3D-LLM and
            Ross3D), ``average`` or ``max`` (ceil-mode pooling).
    """

    projector_type: str = "mlp2x_gelu"
    pool_stride: int = 2
    pool_mode: Literal["bilinear", "average", "max"] = "bilinear"

    @property
    def depth(self) -> int:
        match = _MLP_PROJECTOR.match(self.projector_type)
        if not match:
            raise ConfigError(f"projector.projector_type must look like 'mlp2x_gelu', got {self.projector_type!r}")
        return int(match.group(1))

    def validate(self) -> None:
        if self.depth < 1:
            raise ConfigError(f"projector.projector_type needs at least one layer, got {self.projector_type!r}")
        _positive(self, "pool_stride")
        if self.pool_mode not in ("bilinear", "average", "max"):
            raise ConfigError(f"projector.pool_mode must be 'bilinear', 'average' or 'max', got {self.pool_mode!r}")


@dataclass
class LanguageConfig:
    """Qwen2 decoder (defaults: Qwen2-7B, as in LLaVA-Video-7B-Qwen2)."""

    vocab_size: int = 152064
    hidden_size: int = 3584
    intermediate_size: int = 18944
    num_hidden_layers: int = 28
    num_attention_heads: int = 28
    num_key_value_heads: int = 4
    max_position_embeddings: int = 32768
    rope_theta: float = 1_000_000.0
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    attn_implementation: Literal["sdpa", "eager"] = "sdpa"

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def validate(self) -> None:
        _positive(self, "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                  "num_key_value_heads", "max_position_embeddings")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(f"language.hidden_size {self.hidden_size} is not divisible by language.num_attention_heads {self.num_attention_heads}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(
                f"language.num_attention_heads {self.num_attention_heads} is not a multiple of "
                f"language.num_key_value_heads {self.num_key_value_heads}"
            )
        if self.head_dim % 2:
            raise ConfigError(f"language head_dim {self.head_dim} must be even (rotary embedding)")
        if self.hidden_size < 6:
            raise ConfigError(f"language.hidden_size {self.hidden_size} is too small for a 3D position code (needs >= 6)")
        if self.attn_implementation not in ("sdpa", "eager"):
            raise ConfigError(f"language.attn_implementation must be 'sdpa' or 'eager', got {self.attn_implementation!r}")

    def qwen2_config(self, tokens: SpecialTokenIds) -> Any:
        """The ``Qwen2Config`` of the decoder, with our pad/eos ids."""
        from transformers import Qwen2Config

        cfg = Qwen2Config(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads,
            max_position_embeddings=self.max_position_embeddings,
            rope_parameters={"rope_type": "default", "rope_theta": float(self.rope_theta)},
            rms_norm_eps=self.rms_norm_eps,
            tie_word_embeddings=self.tie_word_embeddings,
            pad_token_id=tokens.pad,
            eos_token_id=[tokens.im_end, tokens.endoftext],
            bos_token_id=None,
        )
        cfg._attn_implementation = self.attn_implementation
        return cfg


@dataclass
class SpecialTokenIds:
    """Ids of the tokens the model treats specially (see :mod:`.tokenizer`).

    The defaults are those of the offline tokenizer (:func:`~.tokenizer.build_offline_tokenizer`);
    a pretrained tokenizer has others (:func:`~.tokenizer.load_tokenizer` reports them).
    """

    pad: int = 0
    endoftext: int = 0
    im_start: int = 1
    im_end: int = 2
    image: int = 3
    ground: int = 4
    coord: int = 5

    def validate(self, vocab_size: int) -> None:
        for name, value in dataclasses.asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < vocab_size:
                raise ConfigError(f"tokens.{name} = {value!r} is not an id in the vocabulary (0..{vocab_size - 1})")
        distinct = {self.image, self.ground, self.coord, self.im_end}
        if len(distinct) != 4:
            raise ConfigError(f"tokens.image/ground/coord/im_end must be four different ids, got {self}")


def _config_from_dict(cls: type, data: Any, where: str) -> Any:
    """Rebuild a (possibly foreign) config dataclass from JSON, rejecting unknown keys."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected an object, got {type(data).__name__}")
    from_dict = getattr(cls, "from_dict", None)
    if callable(from_dict):
        try:
            return from_dict(data)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}") from exc
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown} (known: {sorted(known)})")
    try:
        return cls(**data)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _config_to_dict(obj: Any) -> dict[str, Any]:
    to_dict = getattr(obj, "to_dict", None)
    data = to_dict() if callable(to_dict) else dataclasses.asdict(obj)
    return jsonable(data)


@dataclass
class Ros3DModelConfig:
    """The whole model.

    Attributes:
        vision / projector / language / tokens: the LLaVA-Video backbone and our token ids.
        position_encoding: voxel grid and frequencies of the sin-cos 3D code added to visual tokens,
            box centres (grounding) and ``<coord>``.
        grounding: the ``<ground>`` head (temperature, multi-object threshold).
        ross3d: Ross3D reconstruction objectives; ``None`` disables them. Built only for training.
        alignment3drs: 3DRS alignment to a 3D teacher; ``None`` disables it. Built only for training.
        loss_weights: weight per loss term (:data:`LOSS_TERMS`); a term with weight 0 is skipped.
        visual_input: False gives the text-only ablation: frames still flow through the model (same
            token count and compute) but their pixels are blanked and their depth marked invalid, so
            neither appearance nor 3D position reaches the LLM; grounding then sees only the
            proposals' box-centre codes. Stored in checkpoints so evaluation blinds the same way.
        preset: the preset this config came from (informational).
    """

    vision: VisionConfig = field(default_factory=VisionConfig)
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)
    language: LanguageConfig = field(default_factory=LanguageConfig)
    tokens: SpecialTokenIds = field(default_factory=SpecialTokenIds)
    position_encoding: PositionEncodingConfig = field(default_factory=PositionEncodingConfig)
    grounding: GroundingConfig = field(default_factory=GroundingConfig)
    ross3d: Ross3DConfig | None = None
    alignment3drs: Alignment3DRSConfig | None = None
    loss_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_LOSS_WEIGHTS))
    visual_input: bool = True
    preset: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    # -- derived sizes ------------------------------------------------------------------------------
    @property
    def pooled_grid(self) -> tuple[int, int]:
        """Pooled token grid ``(h, w)`` per view at the native image size (14×14 for the 7B preset)."""
        g = self.vision.grid_size
        s = self.projector.pool_stride
        return (-(-g // s), -(-g // s))

    @property
    def tokens_per_view(self) -> int:
        """Visual tokens spliced per view at the native size, newlines included (210 for the 7B preset)."""
        h, w = self.pooled_grid
        return h * (w + 1)

    # -- checks -------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise :class:`ConfigError` on any inconsistency between the parts."""
        for name, cls in (("vision", VisionConfig), ("projector", ProjectorConfig), ("language", LanguageConfig),
                          ("tokens", SpecialTokenIds), ("position_encoding", PositionEncodingConfig),
                          ("grounding", GroundingConfig)):
            if not isinstance(getattr(self, name), cls):
                raise ConfigError(f"{name}: expected {cls.__name__}, got {type(getattr(self, name)).__name__}")
        if self.ross3d is not None and not isinstance(self.ross3d, Ross3DConfig):
            raise ConfigError(f"ross3d: expected Ross3DConfig or None, got {type(self.ross3d).__name__}")
        if self.alignment3drs is not None and not isinstance(self.alignment3drs, Alignment3DRSConfig):
            raise ConfigError(f"alignment3drs: expected Alignment3DRSConfig or None, got {type(self.alignment3drs).__name__}")
        self.vision.validate()
        self.projector.validate()
        self.language.validate()
        self.tokens.validate(self.language.vocab_size)
        unknown = sorted(set(self.loss_weights) - set(LOSS_TERMS))
        if unknown:
            raise ConfigError(f"loss_weights: unknown terms {unknown} (known: {list(LOSS_TERMS)})")
        for name, weight in self.loss_weights.items():
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
                raise ConfigError(f"loss_weights[{name!r}] must be a number >= 0, got {weight!r}")
        if self.ross3d is not None and self.ross3d.enabled and self.ross3d.cross_view:
            if tuple(self.ross3d.view_latent_hw) != self.pooled_grid:
                raise ConfigError(
                    f"ross3d.view_latent_hw {tuple(self.ross3d.view_latent_hw)} must equal the pooled token grid "
                    f"{self.pooled_grid} (one reconstructed latent per visual token)"
                )

    # -- (de)serialisation ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field (nested configs included)."""
        return {
            "vision": _config_to_dict(self.vision),
            "projector": _config_to_dict(self.projector),
            "language": _config_to_dict(self.language),
            "tokens": _config_to_dict(self.tokens),
            "position_encoding": _config_to_dict(self.position_encoding),
            "grounding": _config_to_dict(self.grounding),
            "ross3d": None if self.ross3d is None else _config_to_dict(self.ross3d),
            "alignment3drs": None if self.alignment3drs is None else _config_to_dict(self.alignment3drs),
            "loss_weights": dict(self.loss_weights),
            "visual_input": self.visual_input,
            "preset": self.preset,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Ros3DModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise (a typo must not silently become a default)."""
        if not isinstance(data, dict):
            raise ConfigError(f"model config: expected an object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"model config: unknown keys {unknown} (known: {sorted(known)})")
        kwargs: dict[str, Any] = {}
        parts = {"vision": VisionConfig, "projector": ProjectorConfig, "language": LanguageConfig, "tokens": SpecialTokenIds,
                 "position_encoding": PositionEncodingConfig, "grounding": GroundingConfig}
        for name, part_cls in parts.items():
            if name in data:
                kwargs[name] = _config_from_dict(part_cls, data[name], name)
        if data.get("ross3d") is not None:
            kwargs["ross3d"] = _config_from_dict(Ross3DConfig, data["ross3d"], "ross3d")
        if data.get("alignment3drs") is not None:
            kwargs["alignment3drs"] = _config_from_dict(Alignment3DRSConfig, data["alignment3drs"], "alignment3drs")
        if "loss_weights" in data:
            kwargs["loss_weights"] = dict(data["loss_weights"])
        if "visual_input" in data:
            if not isinstance(data["visual_input"], bool):
                raise ConfigError(f"visual_input must be true or false, got {data['visual_input']!r}")
            kwargs["visual_input"] = data["visual_input"]
        if "preset" in data:
            kwargs["preset"] = data["preset"]
        return cls(**kwargs)

    def replace(self, **changes: Any) -> Ros3DModelConfig:
        """A validated copy with some top-level fields replaced."""
        return dataclasses.replace(self, **changes)
