"""Which parameters train, at what learning rate: per-part freezing, LoRA adapters, AdamW groups.

The model has four parts, named by parameter prefix (:data:`PART_PREFIXES`): the SigLIP
``vision_tower``, the ``projector`` (mm_projector + image_newline), the ``llm`` (Qwen2, embeddings
included) and the ``heads`` (grounding head + training-only Ross3D/3DRS heads). Every parameter
must belong to exactly one part, so a module added later cannot silently stay untrained.

LoRA (peft) is injected in place into the LLM and/or vision tower (``inject_adapter_in_model``),
not wrapped in a ``PeftModel``: the model keeps calling ``language_model.model`` and
``language_model.lm_head`` as before. A LoRA'd part trains its adapters only (base weights frozen)
at the part's learning rate. :func:`merge_lora` folds the adapters into the base weights before the
final model is saved, so the saved checkpoint is a plain model the node loads.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import torch
from torch import nn

from .config import PARTS, LoraConfig, OptimConfig

__all__ = ["PART_PREFIXES", "part_of", "apply_lora", "configure_trainable", "build_optimizer", "merge_lora", "trainable_summary"]

log = logging.getLogger(__name__)

#: parameter-name prefixes of each part (names as in the model's state dict)
PART_PREFIXES: dict[str, tuple[str, ...]] = {
    "vision_tower": ("vision_tower.",),
    "projector": ("mm_projector.", "image_newline"),
    "llm": ("language_model.",),
    "heads": ("grounding_head.", "training_heads."),
}
_LORA_ROOTS = {"llm": "language_model", "vision_tower": "vision_tower"}


def part_of(name: str) -> str:
    """The part a parameter name belongs to.

    Raises:
        ValueError: the name fits no part (a new module that needs a part assigned here).
    """
    for part, prefixes in PART_PREFIXES.items():
        if any(name == p or name.startswith(p) for p in prefixes):
            return part
    raise ValueError(f"parameter {name!r} belongs to no model part {list(PART_PREFIXES)}; add its prefix to PART_PREFIXES")


def _is_lora(name: str) -> bool:
    return ".lora_" in name


def apply_lora(model: nn.Module, cfg: LoraConfig) -> list[str]:
    """Inject LoRA adapters into the parts of ``cfg.apply_to``; returns the adapted module names.

    Raises:
        ValueError: a part has none of ``cfg.target_modules``.
    """
    from peft import LoraConfig as PeftLoraConfig
    from peft import inject_adapter_in_model

    adapted: list[str] = []
    for part in cfg.apply_to:
        root_name = _LORA_ROOTS[part]
        root = getattr(model, root_name)
        present = {n.rsplit(".", 1)[-1] for n, m in root.named_modules() if isinstance(m, nn.Linear)}
        if not present & set(cfg.target_modules):
            raise ValueError(f"lora.target_modules {cfg.target_modules} match no Linear layer of {part} "
                             f"(its Linear names: {sorted(present)})")
        peft_cfg = PeftLoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                                  target_modules=[t for t in cfg.target_modules if t in present], bias="none")
        inject_adapter_in_model(peft_cfg, root)
        adapted += [f"{root_name}.{n}" for n, m in root.named_modules() if hasattr(m, "lora_A") and hasattr(m, "base_layer")]
    log.info("LoRA r=%d on %s: %d modules", cfg.r, cfg.apply_to, len(adapted))
    return adapted


def configure_trainable(model: nn.Module, optim: OptimConfig, lora: LoraConfig) -> dict[str, list[str]]:
    """Set ``requires_grad`` per part (and LoRA); returns part → trainable parameter names."""
    lora_parts = set(lora.apply_to) if lora.enabled else set()
    trainable: dict[str, list[str]] = {p: [] for p in PARTS}
    for name, param in model.named_parameters():
        part = part_of(name)
        train = _is_lora(name) if part in lora_parts else optim.parts[part].train
        param.requires_grad_(train)
        if train:
            trainable[part].append(name)
    if not any(trainable.values()):
        raise ValueError("no parameter is trainable with this freezing / LoRA setting")
    return trainable


def _no_decay(name: str, param: nn.Parameter) -> bool:
    return param.ndim < 2 or name.endswith(".bias") or "norm" in name.lower() or name == "image_newline" or "mask_token" in name


def build_optimizer(model: nn.Module, optim: OptimConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, one group per (part, decay / no decay) with the part's lr.

    Group names (``group["name"]``) are ``<part>`` and ``<part>/no_decay``; the trainer logs their lr.
    """
    buckets: dict[tuple[str, bool], list[nn.Parameter]] = defaultdict(list)
    for name, param in model.named_parameters():
        if param.requires_grad:
            buckets[(part_of(name), _no_decay(name, param))].append(param)
    groups = []
    for (part, nd), params in sorted(buckets.items()):
        groups.append({"params": params, "lr": optim.part_lr(part), "weight_decay": 0.0 if nd else optim.weight_decay,
                       "name": f"{part}/no_decay" if nd else part})
    if not groups:
        raise ValueError("no trainable parameter for the optimizer")
    return torch.optim.AdamW(groups, lr=optim.lr, betas=optim.betas, eps=optim.eps, weight_decay=optim.weight_decay)


def merge_lora(model: nn.Module) -> int:
    """Fold every LoRA adapter into its base layer and put the base layer back in its place.

    Afterwards the model has exactly the plain module tree (and state-dict keys) it had before
    :func:`apply_lora`. Returns the number of merged layers.
    """
    from peft.tuners.lora import LoraLayer

    merged = 0
    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer) and name:
            module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, module.get_base_layer())
            merged += 1
    return merged


def trainable_summary(model: nn.Module) -> dict[str, dict[str, int]]:
    """Per part: trainable and total parameter counts (what the run log prints)."""
    out: dict[str, dict[str, int]] = {p: {"trainable": 0, "total": 0} for p in PARTS}
    for name, param in model.named_parameters():
        part = part_of(name)
        out[part]["total"] += param.numel()
        if param.requires_grad:
            out[part]["trainable"] += param.numel()
    return out
