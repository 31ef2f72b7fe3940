"""Loading LLaVA-Video-7B-Qwen2 and Video-3D-LLM checkpoints (local Hugging Face directories) into our model.

An upstream directory holds ``config.json`` (a Qwen2 config plus LLaVA's ``mm_*`` fields; Video-3D-LLM
adds ``ground_head_*`` and ``world_position_embedding_type``/``voxel_size``/``min|max_xyz_range``),
``model-0000X-of-0000Y.safetensors`` shards with ``model.safetensors.index.json`` (or one
``model.safetensors``) and the tokenizer files. Nothing is downloaded and nothing pickled is read: a
directory that only has ``pytorch_model*.bin`` is refused.

Key mapping (upstream → ours, see the layout in :mod:`.modeling`)::

    model.vision_tower.vision_tower.vision_model.{embeddings,encoder.layers.i}.*  → vision_tower.*
        (post_layernorm, head, position_ids and layers after the selected one are dropped)
    model.mm_projector.{0,2}.*            → mm_projector.{0,2}.*
    model.image_newline                   → image_newline
    model.{embed_tokens,layers.i,norm}.*  → language_model.model.*
    lm_head.weight                        → language_model.lm_head.weight
    ground_head_query.{0,2,3}.*           → grounding_head.query_head.*       (Video-3D-LLM)
    ground_head_obj.{0,2,3}.*             → grounding_head.object_head.*
    ground_head_zero_target               → grounding_head.no_object = object_head(zero_target)

The last line is not a rename: Video-3D-LLM appends its "no object" vector to the object features
*before* the object head, while our head keeps it in the projected space, so the loader stores the
projected vector (cosine scores are then identical).

Vision tower: LLaVA's SigLIP tower deletes the last encoder layer and feeds the projector with the
output of the last remaining one, i.e. layer −2 of the original tower, before the post-layernorm. The
tower's sizes are not in ``config.json`` (only its hub name, ``mm_vision_tower``); they come from, in
order: the ``vision_config`` argument, a local directory named by ``mm_vision_tower`` (absolute or
relative to the checkpoint) holding a SigLIP ``config.json``, a ``vision_config`` entry of
``config.json``, or the table of known towers (:data:`KNOWN_VISION_TOWERS`); every size is then
checked against the weights.

Tokenizer: loaded from the same directory with :func:`~.tokenizer.load_tokenizer`, which appends
``<image>``/``<ground>``/``<coord>`` when missing (LLaVA-Video has none of them; Video-3D-LLM has
``<ground>`` and ``<coord>``). When the tokenizer then outgrows the embedding table the table grows,
new rows starting at the mean of the trained ones (LLaVA's rule for added tokens).

Strict by default: an upstream tensor that is neither mapped nor known to be unused raises, and so does
a model tensor the checkpoint does not provide, except the grounding head of a plain LLaVA-Video
checkpoint (it has none): those are reported as ``initialised`` and the model cannot ground until it is
fine-tuned.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .checkpoint import CheckpointError, save_checkpoint
from .configuration import (
    LanguageConfig,
    ProjectorConfig,
    Ros3DModelConfig,
    SpecialTokenIds,
    VisionConfig,
)
from .grounding import GroundingConfig
from .modeling import Ros3DForConditionalGeneration
from .position_encoding import PositionEncodingConfig
from .tokenizer import COORD_TOKEN, GROUND_TOKEN, load_tokenizer

__all__ = [
    "UpstreamCheckpointError",
    "KNOWN_VISION_TOWERS",
    "VISION_PREFIX",
    "KeyMapping",
    "map_upstream_key",
    "map_upstream_keys",
    "is_upstream_checkpoint",
    "read_upstream_config",
    "upstream_tensor_shapes",
    "config_from_upstream",
    "UpstreamLoadReport",
    "LoadedUpstream",
    "load_upstream_checkpoint",
    "convert_upstream_checkpoint",
]

log = logging.getLogger(__name__)

VISION_PREFIX = "model.vision_tower.vision_tower.vision_model."
INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"

#: public SigLIP tower configs by hub name (what ``mm_vision_tower`` says in LLaVA-Video's config.json)
KNOWN_VISION_TOWERS: dict[str, dict[str, Any]] = {
    "google/siglip-so400m-patch14-384": dict(
        hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16, image_size=384,
        patch_size=14, layer_norm_eps=1e-6, hidden_act="gelu_pytorch_tanh",
    ),
}
_VISION_FIELDS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "image_size", "patch_size",
                  "layer_norm_eps", "hidden_act")
_VISION_LAYER = re.compile(r"^encoder\.layers\.(\d+)\.(.+)$")
_GROUNDING_PREFIX = "grounding_head."
NO_OBJECT = "grounding_head.no_object"


class UpstreamCheckpointError(CheckpointError):
    """An upstream directory that is incomplete, unsupported, or does not fit the model it describes."""


# --------------------------------------------------------------------------------------------------
# Key mapping
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KeyMapping:
    """Where each upstream tensor goes.

    Attributes:
        mapped: upstream key → our state-dict key (plain copies; embeddings may gain rows).
        ignored: upstream key → why it is not needed.
        unknown: upstream keys that are neither (an error when loading strictly).
        zero_target: the Video-3D-LLM no-object key, if present (converted, not copied).
    """

    mapped: dict[str, str]
    ignored: dict[str, str]
    unknown: list[str]
    zero_target: str | None = None


def map_upstream_key(key: str, vision_layers_used: int, tied_embeddings: bool = False) -> tuple[str | None, str | None]:
    """``(our_key, None)`` for a tensor we load, ``(None, reason)`` for one we drop, ``(None, None)`` if unknown.

    ``ground_head_zero_target`` maps to ``grounding_head.no_object`` (converted by the loader).
    """
    if key.startswith(VISION_PREFIX):
        rest = key[len(VISION_PREFIX):]
        if rest.startswith("post_layernorm."):
            return None, "SigLIP post-layernorm: LLaVA feeds the projector the pre-norm hidden state"
        if rest.startswith("head."):
            return None, "SigLIP pooling head: not used by LLaVA"
        if rest == "embeddings.position_ids":
            return None, "position-id buffer (recomputed)"
        match = _VISION_LAYER.match(rest)
        if match:
            i = int(match.group(1))
            if i >= vision_layers_used:
                return None, f"vision layer {i}: after the selected layer (-2), never run"
            return "vision_tower." + rest, None
        if rest.startswith("embeddings."):
            return "vision_tower." + rest, None
        return None, None
    if key.startswith("model.mm_projector."):
        return key[len("model."):], None
    if key == "model.image_newline":
        return "image_newline", None
    if key.endswith("rotary_emb.inv_freq"):
        return None, "rotary frequency buffer (recomputed)"
    if key == "model.faster_token":
        return None, "LLaVA-Video's faster-video token (add_faster_video) is not used by our token layout"
    if key.startswith(("model.embed_tokens.", "model.layers.", "model.norm.")):
        return "language_model." + key, None
    if key == "lm_head.weight":
        if tied_embeddings:
            return None, "tied to embed_tokens (tie_word_embeddings)"
        return "language_model.lm_head.weight", None
    if key.startswith("ground_head_query."):
        return "grounding_head.query_head." + key[len("ground_head_query."):], None
    if key.startswith("ground_head_obj."):
        return "grounding_head.object_head." + key[len("ground_head_obj."):], None
    if key == "ground_head_zero_target":
        return NO_OBJECT, None
    return None, None


def map_upstream_keys(keys: Iterable[str], vision_layers_used: int, tied_embeddings: bool = False) -> KeyMapping:
    """Apply :func:`map_upstream_key` to every key of a checkpoint."""
    mapped: dict[str, str] = {}
    ignored: dict[str, str] = {}
    unknown: list[str] = []
    zero_target = None
    for key in sorted(keys):
        ours, reason = map_upstream_key(key, vision_layers_used, tied_embeddings)
        if ours == NO_OBJECT:
            zero_target = key
        elif ours is not None:
            mapped[key] = ours
        elif reason is not None:
            ignored[key] = reason
        else:
            unknown.append(key)
    return KeyMapping(mapped, ignored, unknown, zero_target)


# --------------------------------------------------------------------------------------------------
# Reading the directory
# --------------------------------------------------------------------------------------------------
def read_upstream_config(ckpt_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The upstream ``config.json`` as a dict (raises :class:`UpstreamCheckpointError` if unusable)."""
    path = Path(ckpt_dir)
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise UpstreamCheckpointError(f"{path}: no config.json (not a Hugging Face model directory)")
    try:
        cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UpstreamCheckpointError(f"{cfg_file}: not valid JSON ({exc})") from None
    if not isinstance(cfg, dict):
        raise UpstreamCheckpointError(f"{cfg_file}: expected a JSON object")
    return cfg


def is_upstream_checkpoint(ckpt_dir: str | os.PathLike[str]) -> bool:
    """True for a directory whose config.json has LLaVA's multimodal fields (and is not our format)."""
    try:
        cfg = read_upstream_config(ckpt_dir)
    except UpstreamCheckpointError:
        return False
    return "format" not in cfg and ("mm_projector_type" in cfg or "mm_vision_tower" in cfg)


def _shard_files(path: Path) -> tuple[list[Path], dict[str, str] | None]:
    """The safetensors files and (if sharded) the index's weight map."""
    index = path / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UpstreamCheckpointError(f"{index}: not a safetensors index with a weight_map ({exc})") from None
        names = sorted(set(weight_map.values()))
        missing = [n for n in names if not (path / n).is_file()]
        if missing:
            raise UpstreamCheckpointError(f"{path}: shard(s) listed in {INDEX_FILE} are missing: {missing}")
        return [path / n for n in names], dict(weight_map)
    if (path / SINGLE_FILE).is_file():
        return [path / SINGLE_FILE], None
    if any(path.glob("pytorch_model*.bin")) or any(path.glob("*.pt")):
        raise UpstreamCheckpointError(f"{path}: only pickled weights (pytorch_model*.bin) found; they are never loaded here "
                                      "(unpickling can run code). Convert them to safetensors first.")
    raise UpstreamCheckpointError(f"{path}: no {INDEX_FILE} and no {SINGLE_FILE}")


def upstream_tensor_shapes(ckpt_dir: str | os.PathLike[str]) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape, read from the safetensors headers only (no weights are loaded)."""
    from safetensors import safe_open

    path = Path(ckpt_dir)
    files, weight_map = _shard_files(path)
    shapes: dict[str, tuple[int, ...]] = {}
    where: dict[str, str] = {}
    for file in files:
        with safe_open(str(file), framework="pt", device="cpu") as f:
            for key in f.keys():
                if key in shapes:
                    raise UpstreamCheckpointError(f"{path}: tensor {key!r} is stored in both {where[key]} and {file.name}")
                shapes[key] = tuple(f.get_slice(key).get_shape())
                where[key] = file.name
    if weight_map is not None:
        absent = sorted(k for k in weight_map if k not in shapes)
        wrong = sorted(k for k, n in weight_map.items() if k in where and where[k] != n)
        if absent or wrong:
            raise UpstreamCheckpointError(f"{path}: {INDEX_FILE} disagrees with the shards: missing {absent[:5]}, misplaced {wrong[:5]}")
    return shapes


# --------------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------------
def _vision_spec(hf: dict[str, Any], path: Path, override: VisionConfig | dict[str, Any] | None) -> tuple[dict[str, Any], str]:
    """SigLIP sizes and where they came from (see the module doc for the order)."""
    if isinstance(override, VisionConfig):
        return {k: getattr(override, k) for k in _VISION_FIELDS}, "vision_config argument"
    if isinstance(override, dict):
        return dict(override), "vision_config argument"
    name = hf.get("mm_vision_tower") or hf.get("vision_tower")
    if isinstance(name, str) and name:
        candidate = Path(name) if Path(name).is_absolute() else path / name  # never relative to the cwd
        cfg_file = candidate / "config.json"
        if cfg_file.is_file():
            try:
                data = json.loads(cfg_file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise UpstreamCheckpointError(f"{cfg_file}: not valid JSON ({exc})") from None
            if isinstance(data.get("vision_config"), dict):  # a full SiglipConfig (text + vision)
                data = data["vision_config"]
            return data, str(cfg_file)
    if isinstance(hf.get("vision_config"), dict):
        return dict(hf["vision_config"]), "config.json vision_config"
    if isinstance(name, str) and name in KNOWN_VISION_TOWERS:
        return dict(KNOWN_VISION_TOWERS[name]), f"known tower {name}"
    raise UpstreamCheckpointError(
        f"cannot tell the vision tower's sizes: mm_vision_tower={name!r} is neither a local SigLIP directory nor one of "
        f"{sorted(KNOWN_VISION_TOWERS)}; pass vision_config=VisionConfig(...) or point mm_vision_tower at a local directory"
    )


def _vision_config(hf: dict[str, Any], path: Path, shapes: dict[str, tuple[int, ...]],
                   override: VisionConfig | dict[str, Any] | None, notes: list[str]) -> VisionConfig:
    name = str(hf.get("mm_vision_tower") or "")
    if name and "siglip" not in name.lower() and override is None:
        raise UpstreamCheckpointError(f"mm_vision_tower {name!r}: only SigLIP vision towers are supported")
    spec, source = _vision_spec(hf, path, override)
    missing = [k for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "image_size", "patch_size")
               if k not in spec]
    if missing:
        raise UpstreamCheckpointError(f"vision tower sizes from {source} lack {missing}")
    patch = shapes.get(VISION_PREFIX + "embeddings.patch_embedding.weight")
    pos = shapes.get(VISION_PREFIX + "embeddings.position_embedding.weight")
    fc1 = shapes.get(VISION_PREFIX + "encoder.layers.0.mlp.fc1.weight")
    if patch is None or pos is None or fc1 is None:
        raise UpstreamCheckpointError(f"the checkpoint holds no SigLIP vision tower under {VISION_PREFIX!r} "
                                      "(patch_embedding / position_embedding / layer 0 missing)")
    layers = sorted({int(m.group(1)) for k in shapes if k.startswith(VISION_PREFIX)
                     and (m := _VISION_LAYER.match(k[len(VISION_PREFIX):]))})
    if layers != list(range(len(layers))):
        raise UpstreamCheckpointError(f"vision encoder layers are not numbered 0..N-1: {layers}")
    grid = math.isqrt(pos[0])
    found = {"hidden_size": patch[0], "patch_size": patch[-1], "intermediate_size": fc1[0], "image_size": grid * patch[-1]}
    if grid * grid != pos[0]:
        raise UpstreamCheckpointError(f"vision position_embedding has {pos[0]} rows, not a square patch grid")
    wrong = {k: (spec[k], v) for k, v in found.items() if int(spec[k]) != int(v)}
    if wrong:
        raise UpstreamCheckpointError(f"vision tower sizes from {source} do not match the weights (config, weights): {wrong}")
    n_orig = int(spec["num_hidden_layers"])
    if len(layers) == n_orig - 1:
        pass  # LLaVA deleted the last layer; the last stored one is layer -2
    elif len(layers) == n_orig:
        notes.append(f"vision layer {n_orig - 1} is stored but after the selected layer -2: dropped")
    else:
        raise UpstreamCheckpointError(f"the checkpoint holds {len(layers)} vision layers; a {n_orig}-layer tower selected at -2 needs {n_orig - 1}")
    select = hf.get("mm_vision_select_layer", -2)
    if select != -2:
        notes.append(f"mm_vision_select_layer={select} is ignored: LLaVA's SigLIP tower always uses layer -2")
    return VisionConfig(
        hidden_size=int(spec["hidden_size"]), intermediate_size=int(spec["intermediate_size"]), num_hidden_layers=n_orig,
        num_attention_heads=int(spec["num_attention_heads"]), image_size=int(spec["image_size"]), patch_size=int(spec["patch_size"]),
        select_layer=-2, layer_norm_eps=float(spec.get("layer_norm_eps", 1e-6)), hidden_act=str(spec.get("hidden_act", "gelu_pytorch_tanh")),
    )


def _projector_config(hf: dict[str, Any], vision_hidden: int, notes: list[str]) -> ProjectorConfig:
    ptype = hf.get("mm_projector_type", "linear")
    if not re.fullmatch(r"mlp\d+x_gelu", str(ptype)):
        raise UpstreamCheckpointError(f"mm_projector_type {ptype!r} is not supported (only mlpNx_gelu, e.g. mlp2x_gelu)")
    if "mm_hidden_size" in hf and int(hf["mm_hidden_size"]) != vision_hidden:
        raise UpstreamCheckpointError(f"mm_hidden_size {hf['mm_hidden_size']} differs from the vision tower width {vision_hidden}")
    mode = hf.get("mm_spatial_pool_mode")
    if mode is None:
        mode = "bilinear"
        notes.append("mm_spatial_pool_mode not set: assuming bilinear (LLaVA-Video / Video-3D-LLM)")
    if mode != "bilinear":
        raise UpstreamCheckpointError(f"mm_spatial_pool_mode {mode!r}: LLaVA's {mode} pooling rounds the grid down (27 -> 13) "
                                      "while ours rounds up; only 'bilinear' loads faithfully")
    newline = hf.get("mm_newline_position", "grid")
    if newline != "grid":
        raise UpstreamCheckpointError(f"mm_newline_position {newline!r}: our token layout is 'grid' (a newline token after each row)")
    if hf.get("add_faster_video"):
        notes.append("add_faster_video is set upstream; faster-video tokens are not used")
    stride = int(hf.get("mm_spatial_pool_stride", 2))
    return ProjectorConfig(projector_type=str(ptype), pool_stride=stride, pool_mode="bilinear")


def _language_config(hf: dict[str, Any], shapes: dict[str, tuple[int, ...]], notes: list[str]) -> LanguageConfig:
    model_type = str(hf.get("model_type", ""))
    archs = [str(a) for a in hf.get("architectures") or []]
    if model_type not in ("qwen2", "llava_qwen") and not any("Qwen" in a for a in archs):
        raise UpstreamCheckpointError(f"model_type {model_type!r} / architectures {archs}: only Qwen2 language models are supported")
    if hf.get("hidden_act", "silu") != "silu":
        raise UpstreamCheckpointError(f"hidden_act {hf.get('hidden_act')!r}: Qwen2 uses silu")
    if hf.get("rope_scaling"):
        raise UpstreamCheckpointError(f"rope_scaling {hf['rope_scaling']!r} is not supported (LLaVA-Video sets none)")
    if hf.get("use_sliding_window"):
        notes.append("use_sliding_window is set upstream; attention here is always full")
    required = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
    missing = [k for k in required if k not in hf]
    if missing:
        raise UpstreamCheckpointError(f"config.json lacks {missing}")
    rope = hf.get("rope_theta")
    if rope is None and isinstance(hf.get("rope_parameters"), dict):
        rope = hf["rope_parameters"].get("rope_theta")
    embed = shapes.get("model.embed_tokens.weight")
    if embed is None:
        raise UpstreamCheckpointError("the checkpoint has no model.embed_tokens.weight")
    if embed != (int(hf["vocab_size"]), int(hf["hidden_size"])):
        raise UpstreamCheckpointError(f"model.embed_tokens.weight is {embed}, config.json says ({hf['vocab_size']}, {hf['hidden_size']})")
    return LanguageConfig(
        vocab_size=int(hf["vocab_size"]), hidden_size=int(hf["hidden_size"]), intermediate_size=int(hf["intermediate_size"]),
        num_hidden_layers=int(hf["num_hidden_layers"]), num_attention_heads=int(hf["num_attention_heads"]),
        num_key_value_heads=int(hf.get("num_key_value_heads", hf["num_attention_heads"])),
        max_position_embeddings=int(hf.get("max_position_embeddings", 32768)), rope_theta=float(rope if rope is not None else 1e6),
        rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)), tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
    )


def _position_and_grounding(hf: dict[str, Any], notes: list[str]) -> tuple[PositionEncodingConfig, GroundingConfig, str]:
    """3D code and grounding settings, and the checkpoint kind (``llava-video`` or ``video-3d-llm``)."""
    pe_type = hf.get("world_position_embedding_type")
    head = hf.get("ground_head_type")
    kind = "video-3d-llm" if (pe_type or head) else "llava-video"
    if pe_type is None:
        pe = PositionEncodingConfig()
        notes.append("no world_position_embedding_type: a LLaVA-Video checkpoint was not trained with the 3D position code; "
                     "fine-tune before trusting answers")
    else:
        if "sin3d" not in pe_type or any(s in pe_type for s in ("mlp", "minmax", "sample")):
            raise UpstreamCheckpointError(f"world_position_embedding_type {pe_type!r}: only the averaged sin-cos code (avg-discrete-sin3d) is supported")
        pe = PositionEncodingConfig(
            voxel_size=float(hf.get("voxel_size", 0.1)),
            min_xyz=tuple(hf.get("min_xyz_range", (-15.0, -15.0, -5.0))),  # type: ignore[arg-type]
            max_xyz=tuple(hf.get("max_xyz_range", (15.0, 15.0, 5.0))),  # type: ignore[arg-type]
        )
    if head is not None and head != "infonce":
        raise UpstreamCheckpointError(f"ground_head_type {head!r}: only the InfoNCE head ('infonce') is supported")
    grounding = GroundingConfig(temperature=float(hf.get("ground_head_temperature") or 0.07))
    return pe, grounding, kind


def config_from_upstream(
    hf: dict[str, Any],
    shapes: dict[str, tuple[int, ...]],
    ckpt_dir: str | os.PathLike[str],
    tokens: SpecialTokenIds,
    vocab_size: int,
    *,
    vision_config: VisionConfig | dict[str, Any] | None = None,
) -> tuple[Ros3DModelConfig, str, list[str]]:
    """Our model config for an upstream ``config.json`` (+ tensor shapes), the kind, and notes.

    ``tokens`` / ``vocab_size`` come from the tokenizer (after our special tokens were added).
    """
    notes: list[str] = []
    vision = _vision_config(hf, Path(ckpt_dir), shapes, vision_config, notes)
    projector = _projector_config(hf, vision.hidden_size, notes)
    language = _language_config(hf, shapes, notes)
    language.vocab_size = int(vocab_size)
    pe, grounding, kind = _position_and_grounding(hf, notes)
    config = Ros3DModelConfig(vision=vision, projector=projector, language=language, tokens=tokens, position_encoding=pe,
                              grounding=grounding, ross3d=None, alignment3drs=None, preset=None)
    return config, kind, notes


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------
@dataclass
class UpstreamLoadReport:
    """What loading did with every tensor.

    Attributes:
        kind: ``llava-video`` or ``video-3d-llm``.
        loaded: number of upstream tensors copied (or converted) into the model.
        ignored: upstream key → why it was not needed (includes unknown keys when ``strict=False``).
        initialised: our tensors the checkpoint did not provide (fresh initialisation).
        added_tokens: special tokens appended to the upstream tokenizer.
        resized_vocab: ``(upstream rows, rows now)`` when the embedding table grew.
        notes: config differences worth knowing (ignored upstream settings, untrained parts).
    """

    kind: str
    loaded: int = 0
    ignored: dict[str, str] = field(default_factory=dict)
    initialised: list[str] = field(default_factory=list)
    added_tokens: tuple[str, ...] = ()
    resized_vocab: tuple[int, int] | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{self.kind}: loaded {self.loaded} tensors, ignored {len(self.ignored)}"]
        if self.initialised:
            heads = sorted({k.split(".")[0] for k in self.initialised})
            parts.append(f"{len(self.initialised)} not in the checkpoint and freshly initialised ({', '.join(heads)})")
        if self.added_tokens:
            parts.append(f"added tokens {list(self.added_tokens)}")
        if self.resized_vocab:
            parts.append(f"embeddings {self.resized_vocab[0]} -> {self.resized_vocab[1]} rows")
        return "; ".join(parts + self.notes)


@dataclass
class LoadedUpstream:
    """Result of :func:`load_upstream_checkpoint`: the model (eval mode), its tokenizer, config and report."""

    model: Ros3DForConditionalGeneration
    tokenizer: Any
    config: Ros3DModelConfig
    report: UpstreamLoadReport


def _tied_aliases(model: torch.nn.Module) -> set[str]:
    seen: set[int] = set()
    aliases: set[str] = set()
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in seen:
            aliases.add(name)
        seen.add(id(param))
    return aliases


def _check_token_ids(hf: dict[str, Any], tokens: SpecialTokenIds) -> None:
    """Video-3D-LLM records the ids its <ground>/<coord> embeddings were trained at; they must agree."""
    for cfg_key, token, ours in (("ground_token_ids", GROUND_TOKEN, tokens.ground), ("coord_token_ids", COORD_TOKEN, tokens.coord)):
        ids = hf.get(cfg_key)
        if ids and list(ids) != [ours]:
            raise UpstreamCheckpointError(f"config.json {cfg_key}={ids} but the tokenizer has {token} at {ours}: "
                                          "the trained embeddings would be read from the wrong rows")


def load_upstream_checkpoint(
    ckpt_dir: str | os.PathLike[str],
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    strict: bool = True,
    vision_config: VisionConfig | dict[str, Any] | None = None,
    tokenizer_dir: str | os.PathLike[str] | None = None,
) -> LoadedUpstream:
    """Build our model from a local LLaVA-Video-7B-Qwen2 / Video-3D-LLM directory and load its weights.

    Args:
        ckpt_dir: the Hugging Face directory (config.json, safetensors shards + index, tokenizer files).
        device / dtype: where and in which dtype the model is built (``torch.float16``/``bfloat16`` for
            a 7B model; ``None`` keeps float32). Shards are copied in tensor by tensor, so peak memory
            is the model plus one tensor.
        strict: unknown upstream tensors and missing model tensors (other than a LLaVA-Video
            checkpoint's grounding head) raise; ``False`` reports them instead.
        vision_config: the SigLIP tower's sizes when the directory does not say them (see module doc).
        tokenizer_dir: tokenizer directory if not ``ckpt_dir`` itself.

    Raises:
        UpstreamCheckpointError: with a message naming the file, key or config field at fault.
    """
    from safetensors import safe_open

    path = Path(ckpt_dir)
    if not path.is_dir():
        raise UpstreamCheckpointError(f"checkpoint directory not found: {path} (only local directories are supported)")
    hf = read_upstream_config(path)
    shapes = upstream_tensor_shapes(path)
    try:
        tok = load_tokenizer(tokenizer_dir or path, embedding_rows=int(hf.get("vocab_size", 0)) or None)
    except (FileNotFoundError, ValueError) as exc:
        raise UpstreamCheckpointError(f"tokenizer: {exc}") from None
    _check_token_ids(hf, tok.token_ids)
    vocab_up = int(hf.get("vocab_size", 0))
    vocab = max(vocab_up, len(tok.tokenizer))
    config, kind, notes = config_from_upstream(hf, shapes, path, tok.token_ids, vocab, vision_config=vision_config)
    mapping = map_upstream_keys(shapes, config.vision.layers_used, config.language.tie_word_embeddings)
    report = UpstreamLoadReport(kind=kind, ignored=dict(mapping.ignored), added_tokens=tuple(tok.added_tokens),
                                resized_vocab=(vocab_up, vocab) if vocab != vocab_up else None, notes=notes)
    if mapping.unknown:
        if strict:
            raise UpstreamCheckpointError(
                f"{path}: {len(mapping.unknown)} tensor(s) have no place in the model, e.g. {mapping.unknown[:8]} "
                "(a newer/other architecture?); pass strict=False to drop them"
            )
        report.ignored.update({k: "unknown (dropped with strict=False)" for k in mapping.unknown})

    default_dtype = torch.get_default_dtype()
    try:
        if dtype is not None:
            torch.set_default_dtype(dtype)
        with torch.device(device):
            model = Ros3DForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(default_dtype)
    state = model.state_dict(keep_vars=True)
    expected = set(state) - _tied_aliases(model)
    filled: set[str] = set()
    zero_target: torch.Tensor | None = None
    files, _ = _shard_files(path)
    with torch.no_grad():
        for file in files:
            with safe_open(str(file), framework="pt", device=str(device)) as f:
                for key in f.keys():
                    if key == mapping.zero_target:
                        zero_target = f.get_tensor(key)
                        continue
                    ours = mapping.mapped.get(key)
                    if ours is None:
                        continue
                    if ours not in state:
                        raise UpstreamCheckpointError(f"{file.name}: {key} maps to {ours}, which this model config does not have")
                    _copy_into(state[ours], f.get_tensor(key), key, ours, vocab_up)
                    filled.add(ours)
                    report.loaded += 1
        if zero_target is not None:
            _set_no_object(model, zero_target, filled)
            filled.add(NO_OBJECT)
            report.loaded += 1

    missing = sorted(expected - filled)
    untrained = [k for k in missing if k.startswith(_GROUNDING_PREFIX) and kind == "llava-video"]
    absent = [k for k in missing if k not in untrained]
    if absent and strict:
        raise UpstreamCheckpointError(f"{path}: the checkpoint lacks {len(absent)} tensor(s) of the model, e.g. {absent[:8]}")
    report.initialised = untrained + absent
    if untrained:
        report.notes.append("no grounding head upstream (LLaVA-Video): <ground> scores are untrained until fine-tuning")
    model.eval()
    log.info("%s: %s", path, report.summary())
    return LoadedUpstream(model=model, tokenizer=tok.tokenizer, config=config, report=report)


def _copy_into(param: torch.Tensor, value: torch.Tensor, key: str, ours: str, vocab_up: int) -> None:
    """Copy an upstream tensor into our parameter; vocabulary tables may have grown (mean-initialised rows)."""
    if tuple(param.shape) == tuple(value.shape):
        param.copy_(value)
        return
    vocab_table = ours in ("language_model.model.embed_tokens.weight", "language_model.lm_head.weight")
    if vocab_table and value.shape[0] == vocab_up and param.shape[0] > vocab_up and param.shape[1:] == value.shape[1:]:
        param[:vocab_up].copy_(value)
        param[vocab_up:].copy_(value.float().mean(dim=0, keepdim=True).expand(param.shape[0] - vocab_up, -1))
        return
    raise UpstreamCheckpointError(f"{key}: shape {tuple(value.shape)} does not fit {ours} {tuple(param.shape)} (config and weights disagree)")


def _set_no_object(model: Ros3DForConditionalGeneration, zero_target: torch.Tensor, filled: set[str]) -> None:
    """Video-3D-LLM's no-object vector lives before the object head; ours after it: project it once."""
    head = model.grounding_head
    needed = [k for k in (f"grounding_head.object_head.{n}" for n in ("0.weight", "0.bias", "2.weight", "2.bias", "3.weight", "3.bias"))
              if k not in filled]
    if needed:
        raise UpstreamCheckpointError(f"ground_head_zero_target is present but the object head is incomplete (missing {needed})")
    if zero_target.shape != head.no_object.shape:
        raise UpstreamCheckpointError(f"ground_head_zero_target has shape {tuple(zero_target.shape)}, expected {tuple(head.no_object.shape)}")
    projected = head.object_head(zero_target.to(device=head.no_object.device, dtype=head.no_object.dtype)[None])[0]
    head.no_object.copy_(projected)


def convert_upstream_checkpoint(
    ckpt_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    dtype: torch.dtype | None = None,
    strict: bool = True,
    vision_config: VisionConfig | dict[str, Any] | None = None,
) -> tuple[Path, UpstreamLoadReport]:
    """Load an upstream directory and write it in our format (safetensors + JSON + tokenizer)."""
    loaded = load_upstream_checkpoint(ckpt_dir, dtype=dtype, strict=strict, vision_config=vision_config)
    out = save_checkpoint(loaded.model, loaded.tokenizer, out_dir)
    return out, loaded.report
