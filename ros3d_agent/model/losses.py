"""Combine the model's loss terms into one training loss, and keep every term for logging.

The model produces several objectives whose presence varies per batch (the LM loss on text batches,
InfoNCE on grounding batches, Ross3D view reconstruction every Δt steps, BEV reconstruction on
non-grounding batches, 3DRS alignment everywhere). Weighting them in one place means a schedule or an
ablation changes a dict of weights, never the forward pass.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

__all__ = ["compose_losses"]


def compose_losses(terms: Mapping[str, torch.Tensor], weights: Mapping[str, float]) -> tuple[torch.Tensor | None, dict[str, float]]:
    """Weighted sum of the loss terms that are both present and switched on.

    Args:
        terms: name -> scalar loss tensor produced by this batch.
        weights: name -> weight. A term whose weight is 0 or missing is skipped: it neither enters
            the total nor the log (an absent weight means "this run does not train that objective").

    Returns:
        ``(total, log)``: ``total`` is the weighted sum (``None`` when no term contributes, so a
        caller can tell "nothing to optimise" apart from a loss that happens to be 0); ``log`` maps
        each contributing term to its unweighted float value, plus ``"loss"`` for the total.

    Raises:
        ValueError: a term is not a scalar, a weight is negative or not finite, or a contributing
            term is not finite (a NaN loss must stop the run where it appears, not a few steps later).
    """
    total: torch.Tensor | None = None
    log: dict[str, float] = {}
    for name, value in terms.items():
        weight = float(weights.get(name, 0.0))
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"loss weight {name!r} must be finite and >= 0, got {weight}")
        if weight == 0.0:
            continue
        if not isinstance(value, torch.Tensor) or value.ndim != 0:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"loss term {name!r} must be a scalar tensor, got {shape}")
        scalar = float(value.detach())
        if not math.isfinite(scalar):
            raise ValueError(f"loss term {name!r} is not finite ({scalar})")
        log[name] = scalar
        weighted = value * weight if weight != 1.0 else value
        total = weighted if total is None else total + weighted
    if total is not None:
        log["loss"] = float(total.detach())
    return total, log
