"""The model and tokenizer a run starts from: a preset (random init) or a checkpoint, plus overrides.

The model config stays the one source of architecture and loss weights; a training config only
deep-merges ``model.overrides`` into it, so a run's final checkpoint records the exact config it
was trained with.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import torch

from ros3d_agent.model.configuration import Ros3DModelConfig
from ros3d_agent.model.modeling import Ros3DForConditionalGeneration
from ros3d_agent.model.presets import get_preset

from .config import TrainConfig, TrainConfigError

__all__ = ["deep_merge", "resolve_model_config", "build_tokenizer", "build_model"]

log = logging.getLogger(__name__)
_TRAINING_PREFIX = "training_heads."


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` merged in: nested mappings merge, anything else (None included) replaces."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve_model_config(cfg: TrainConfig) -> Ros3DModelConfig:
    """The model config of the run: the init checkpoint's (or the preset's), with ``model.overrides``."""
    from ros3d_agent.model.checkpoint import read_checkpoint_config

    if cfg.model.init_checkpoint:
        base, _ = read_checkpoint_config(cfg.model.init_checkpoint)
    else:
        base = get_preset(cfg.model.preset)
    if not cfg.model.overrides:
        return base
    try:
        return Ros3DModelConfig.from_dict(deep_merge(base.to_dict(), cfg.model.overrides))
    except ValueError as exc:
        raise TrainConfigError(f"model.overrides: {exc}") from exc


def build_tokenizer(cfg: TrainConfig, model_cfg: Ros3DModelConfig, run_dir: Path) -> Any:
    """The run's tokenizer: ``model.tokenizer``, else the init checkpoint's, else the offline BPE
    (built once into ``<run_dir>/tokenizer`` so a resumed run reuses the very same one)."""
    from ros3d_agent.model.checkpoint import TOKENIZER_DIR
    from ros3d_agent.model.tokenizer import build_offline_tokenizer, load_tokenizer

    source: Path | None = None
    if cfg.model.tokenizer:
        source = Path(cfg.model.tokenizer)
    elif cfg.model.init_checkpoint and (Path(cfg.model.init_checkpoint) / TOKENIZER_DIR).is_dir():
        source = Path(cfg.model.init_checkpoint) / TOKENIZER_DIR
    if source is None:
        own = run_dir / "tokenizer"
        if (own / "tokenizer.json").is_file():
            source = own
        else:
            build_offline_tokenizer(own, vocab_size=model_cfg.language.vocab_size)
            source = own
    loaded = load_tokenizer(source, embedding_rows=model_cfg.language.vocab_size)
    if loaded.token_ids != model_cfg.tokens:
        raise TrainConfigError(f"tokenizer {source}: special-token ids {loaded.token_ids} differ from the model config's "
                               f"{model_cfg.tokens}")
    if loaded.needs_resize:
        raise TrainConfigError(f"tokenizer {source} has {len(loaded.tokenizer)} tokens, more than the model's "
                               f"{model_cfg.language.vocab_size} embedding rows")
    return loaded.tokenizer


def _tied_aliases(model: torch.nn.Module) -> set[str]:
    seen: set[int] = set()
    aliases: set[str] = set()
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            aliases.add(name)
        seen.add(id(p))
    return aliases


def build_model(cfg: TrainConfig, model_cfg: Ros3DModelConfig) -> Ros3DForConditionalGeneration:
    """A training model (training heads built): random init under ``run.seed``, or the init
    checkpoint's weights (its training heads too when they fit; missing ones start fresh)."""
    torch.manual_seed(cfg.run.seed)
    model = Ros3DForConditionalGeneration(model_cfg, training_heads=True)
    if cfg.model.init_checkpoint:
        from safetensors.torch import load_file

        from ros3d_agent.model.checkpoint import WEIGHTS_FILE

        state = load_file(str(Path(cfg.model.init_checkpoint) / WEIGHTS_FILE))
        own = model.state_dict()
        dropped = [k for k in state if k.startswith(_TRAINING_PREFIX) and (k not in own or own[k].shape != state[k].shape)]
        for k in dropped:
            del state[k]
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected:
            raise TrainConfigError(f"init checkpoint {cfg.model.init_checkpoint}: {len(unexpected)} tensor(s) do not belong to the "
                                   f"model, e.g. {unexpected[:5]}")
        absent = [k for k in missing if not k.startswith(_TRAINING_PREFIX) and k not in _tied_aliases(model)]
        if absent:
            raise TrainConfigError(f"init checkpoint {cfg.model.init_checkpoint}: missing {len(absent)} tensor(s), e.g. {absent[:5]}")
        fresh = [k for k in missing if k.startswith(_TRAINING_PREFIX)]
        if dropped or fresh:
            log.info("init checkpoint: %d training-head tensors start fresh (%d dropped for not fitting)", len(fresh), len(dropped))
    return model
