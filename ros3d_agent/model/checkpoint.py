"""Our checkpoint format: safetensors weights + a JSON config + the tokenizer, nothing executable.

Layout of a checkpoint directory::

    config.json          {"format": "ros3d_agent.model", "format_version": 1, "config": {...full
                          Ros3DModelConfig...}, "dtype": "float32", "tied": {alias: source},
                          "training_heads": [...], "num_tensors": N}
    model.safetensors    every parameter and persistent buffer, keys as in :mod:`.modeling`
    tokenizer/           a Hugging Face tokenizer directory (tokenizer.json, tokenizer_config.json,
                         chat_template.jinja)

Why this shape: weights load without unpickling (``torch.load`` is never called, so a checkpoint
cannot execute code), the config is readable and diffable, and the model is rebuilt from the config
alone, never from code shipped with the checkpoint. Tied weights (``lm_head`` = ``embed_tokens``)
are stored once and re-tied by construction. Training-only heads (``training_heads.*``) may be
present or not: an inference model drops them on load, a training model initialises missing ones.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .configuration import CONFIG_FORMAT_VERSION, Ros3DModelConfig
from .modeling import Ros3DForConditionalGeneration
from .tokenizer import load_tokenizer, special_token_ids

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "TOKENIZER_DIR",
    "CheckpointError",
    "LoadedCheckpoint",
    "save_checkpoint",
    "load_checkpoint",
    "read_checkpoint_config",
]

log = logging.getLogger(__name__)

FORMAT_NAME = "ros3d_agent.model"
FORMAT_VERSION = CONFIG_FORMAT_VERSION
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_DIR = "tokenizer"
_TRAINING_PREFIX = "training_heads."


class CheckpointError(ValueError):
    """A checkpoint directory that is missing files, of another format, or does not fit the model."""


def _tied_aliases(model: torch.nn.Module) -> dict[str, str]:
    """``{alias: source}`` for parameters registered under several names (tied embeddings)."""
    first: dict[int, str] = {}
    aliases: dict[str, str] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in first:
            aliases[name] = first[id(param)]
        else:
            first[id(param)] = name
    return aliases


def save_checkpoint(
    model: Ros3DForConditionalGeneration,
    tokenizer: Any | None,
    out_dir: str | os.PathLike[str],
    *,
    dtype: torch.dtype | None = None,
    include_training_heads: bool = True,
) -> Path:
    """Write ``model`` (and ``tokenizer``) to ``out_dir`` in our format.

    Args:
        model: the model; its config is stored in full.
        tokenizer: saved under ``tokenizer/``; its special-token ids must match the config. ``None``
            saves weights only (the loader then returns no tokenizer).
        dtype: cast floating tensors (e.g. ``torch.float16`` for a small download); ``None`` keeps
            them as they are, which makes a save/load round trip bit-exact.
        include_training_heads: also store ``training_heads.*`` (to resume training).

    Returns:
        The checkpoint directory.
    """
    from safetensors.torch import save_file

    if not isinstance(model, Ros3DForConditionalGeneration):
        raise TypeError(f"model: expected Ros3DForConditionalGeneration, got {type(model).__name__}")
    if tokenizer is not None:
        ids = special_token_ids(tokenizer)
        if ids != model.config.tokens:
            raise CheckpointError(f"tokenizer special-token ids {ids} differ from the model config's {model.config.tokens}")
        if len(tokenizer) > model.config.language.vocab_size:
            raise CheckpointError(f"tokenizer has {len(tokenizer)} tokens but the model only {model.config.language.vocab_size} embeddings")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    aliases = _tied_aliases(model)
    tensors: dict[str, torch.Tensor] = {}
    for name, value in model.state_dict().items():
        if name in aliases or (not include_training_heads and name.startswith(_TRAINING_PREFIX)):
            continue
        t = value.detach()
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        tensors[name] = t.to("cpu").contiguous()
    stored_dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in tensors.values() if t.is_floating_point()})

    tmp = out / (WEIGHTS_FILE + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt", "ros3d_format": FORMAT_NAME, "ros3d_format_version": str(FORMAT_VERSION)})
    os.replace(tmp, out / WEIGHTS_FILE)
    heads = sorted({n[len(_TRAINING_PREFIX):].split(".")[0] for n in tensors if n.startswith(_TRAINING_PREFIX)})
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "dtype": stored_dtypes[0] if len(stored_dtypes) == 1 else stored_dtypes,
        "tied": aliases,
        "training_heads": heads,
        "num_tensors": len(tensors),
    }
    (out / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out / TOKENIZER_DIR))
    return out


def read_checkpoint_config(ckpt_dir: str | os.PathLike[str]) -> tuple[Ros3DModelConfig, dict[str, Any]]:
    """The model config and the raw ``config.json`` of a checkpoint, after format checks."""
    path = Path(ckpt_dir)
    cfg_file = path / CONFIG_FILE
    if not cfg_file.is_file():
        raise CheckpointError(f"{path} is not a checkpoint directory (no {CONFIG_FILE})")
    try:
        meta = json.loads(cfg_file.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise CheckpointError(f"{cfg_file}: not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{cfg_file}: not a {FORMAT_NAME} checkpoint (format={meta.get('format') if isinstance(meta, dict) else None!r})")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{cfg_file}: format_version {version!r} is newer than this code supports ({FORMAT_VERSION})")
    return Ros3DModelConfig.from_dict(meta["config"]), meta


@dataclass
class LoadedCheckpoint:
    """Result of :func:`load_checkpoint`.

    Attributes:
        model: the model (eval mode), on the requested device/dtype.
        tokenizer: the checkpoint's tokenizer, or None when it was saved without one.
        config: the model config.
        dropped: tensors in the file that the model does not have (training heads of a checkpoint
            loaded for inference).
        initialised: parameters the file lacks and that were freshly initialised (training heads
            of an inference checkpoint loaded for training).
    """

    model: Ros3DForConditionalGeneration
    tokenizer: Any | None
    config: Ros3DModelConfig
    dropped: tuple[str, ...] = ()
    initialised: tuple[str, ...] = ()


def load_checkpoint(
    ckpt_dir: str | os.PathLike[str],
    training_heads: bool = False,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
) -> LoadedCheckpoint:
    """Rebuild the model from ``config.json`` and load ``model.safetensors`` (never unpickles).

    Args:
        ckpt_dir: a directory written by :func:`save_checkpoint`.
        training_heads: build the training-only heads too (missing ones are initialised fresh).
        device: where the model is built and the weights are loaded.
        dtype: cast the model (floating parameters) to this dtype; ``None`` keeps the float32 it
            is built in, so an fp16 file is upcast.

    Raises:
        CheckpointError: missing files, another format, a newer format version, tensors that do
            not belong to the model, missing non-training tensors, or a tokenizer whose ids
            disagree with the config.
    """
    from safetensors.torch import load_file

    path = Path(ckpt_dir)
    config, meta = read_checkpoint_config(path)
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{path}: no {WEIGHTS_FILE}")

    # Build directly on the device and in the target dtype: a 7B model never exists in fp32 there.
    default_dtype = torch.get_default_dtype()
    try:
        if dtype is not None:
            torch.set_default_dtype(dtype)
        with torch.device(device):
            model = Ros3DForConditionalGeneration(config, training_heads=training_heads)
    finally:
        torch.set_default_dtype(default_dtype)
    state = load_file(str(weights), device=str(device))

    aliases = _tied_aliases(model)
    expected = {k for k in model.state_dict() if k not in aliases}
    unexpected = sorted(set(state) - expected)
    dropped = tuple(k for k in unexpected if k.startswith(_TRAINING_PREFIX))
    foreign = [k for k in unexpected if not k.startswith(_TRAINING_PREFIX)]
    if foreign:
        raise CheckpointError(f"{weights}: {len(foreign)} tensor(s) do not belong to this model, e.g. {foreign[:5]}")
    for k in dropped:
        del state[k]
    missing = sorted(expected - set(state))
    initialised = tuple(k for k in missing if k.startswith(_TRAINING_PREFIX))
    absent = [k for k in missing if not k.startswith(_TRAINING_PREFIX)]
    if absent:
        raise CheckpointError(f"{weights}: missing {len(absent)} tensor(s) of the model, e.g. {absent[:5]}")
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise CheckpointError(f"{weights}: does not fit the config ({exc})") from exc
    if dropped:
        log.info("%s: dropped %d training-head tensors (inference model)", path, len(dropped))
    if initialised:
        log.info("%s: initialised %d training-head tensors that the checkpoint lacks", path, len(initialised))
    model.eval()

    tokenizer = None
    tok_dir = path / TOKENIZER_DIR
    if tok_dir.is_dir():
        loaded = load_tokenizer(tok_dir, embedding_rows=config.language.vocab_size)
        if loaded.added_tokens or loaded.token_ids != config.tokens:
            raise CheckpointError(
                f"{tok_dir}: tokenizer ids {loaded.token_ids} (added {loaded.added_tokens}) disagree with the config's {config.tokens}"
            )
        if loaded.needs_resize:
            raise CheckpointError(f"{tok_dir}: tokenizer has {len(loaded.tokenizer)} tokens, more than the model's {config.language.vocab_size} embeddings")
        tokenizer = loaded.tokenizer
    return LoadedCheckpoint(model=model, tokenizer=tokenizer, config=config, dropped=dropped, initialised=initialised)
