"""Grounding by proposal selection: the ``<ground>`` token scores candidate 3D boxes.

The model never regresses a box. Each candidate box (a proposal from ``scene/proposals``, or a GT box
at train time) becomes one feature vector: the mean of the pre-pooling visual features whose 3D
position falls inside the box, over all views, plus the 3D position code of the box centre
(:func:`pool_proposal_features`). The LLM's last hidden state at the ``<ground>`` token and those
object features go through two small heads, and their cosine similarities divided by a temperature are
the logits (:class:`GroundingHead`). A learnable "no object" candidate is always appended, so "there is
no such object" is an answer the model can give. Training uses a multi-positive InfoNCE loss
(:func:`infonce_loss`); inference takes the best candidate (:func:`select_single`, ScanRefer) or the
most probable candidates up to a cumulative probability (:func:`select_multi`, Multi3DRefer).

Boxes are ``[cx, cy, cz, sx, sy, sz]`` (centre and full size, axis-aligned, world frame, metres).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .position_encoding import cell_assignment

__all__ = [
    "GroundingConfig",
    "boxes_contain",
    "patch_box_fraction",
    "pool_proposal_features",
    "GroundingHead",
    "infonce_loss",
    "select_single",
    "select_multi",
]


@dataclass(frozen=True)
class GroundingConfig:
    """Settings of the grounding head and its decoding.

    Attributes:
        temperature: cosine similarities are divided by this before softmax/InfoNCE (0.07).
        multi_cum_prob_threshold: :func:`select_multi` adds candidates until their cumulative
            probability reaches this. 0.4 is the reference *code* default; the paper appendix says
            0.25, so report which one a number was measured with.
        min_pixel_fraction: a pre-pool patch counts as inside a box when at least this fraction of its
            valid pixels lies inside (:func:`patch_box_fraction`, the reference's 50% rule). Only
            used when the caller builds the inside mask from pixels; the default path tests the
            patch's averaged position.
    """

    temperature: float = 0.07
    multi_cum_prob_threshold: float = 0.4
    min_pixel_fraction: float = 0.5

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0 < self.multi_cum_prob_threshold <= 1:
            raise ValueError(f"multi_cum_prob_threshold must be in (0, 1], got {self.multi_cum_prob_threshold}")
        if not 0 < self.min_pixel_fraction <= 1:
            raise ValueError(f"min_pixel_fraction must be in (0, 1], got {self.min_pixel_fraction}")


def _check_boxes(boxes: torch.Tensor, box_valid: torch.Tensor | None = None) -> None:
    if boxes.ndim != 3 or boxes.shape[-1] != 6:
        raise ValueError(f"boxes: expected shape (B, P, 6) [cx,cy,cz,sx,sy,sz], got {tuple(boxes.shape)}")
    if box_valid is not None and box_valid.shape != boxes.shape[:2]:
        raise ValueError(f"box_valid: expected shape {tuple(boxes.shape[:2])}, got {tuple(box_valid.shape)}")


def boxes_contain(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """``(B, P, N)`` bool: point ``n`` lies inside box ``p`` (faces included). ``points (B, N, 3)``."""
    _check_boxes(boxes)
    if points.ndim != 3 or points.shape[-1] != 3 or points.shape[0] != boxes.shape[0]:
        raise ValueError(f"points: expected shape ({boxes.shape[0]}, N, 3), got {tuple(points.shape)}")
    centre, half = boxes[..., None, :3], boxes[..., None, 3:] / 2  # (B, P, 1, 3)
    return ((points[:, None] - centre).abs() <= half).all(dim=-1)


def patch_box_fraction(
    world_xyz: torch.Tensor, valid: torch.Tensor, boxes: torch.Tensor, grid_hw: tuple[int, int]
) -> torch.Tensor:
    """Fraction of each patch cell's valid pixels that lie inside each box, ``(B, P, V, h, w)``.

    The pixel-level membership test of the reference (a patch belongs to a box when >= 50% of its
    pixels do); ``fraction >= cfg.min_pixel_fraction`` gives the ``inside`` mask that
    :func:`pool_proposal_features` accepts. Cells use the same split as
    :func:`~ros3d_agent.model.position_encoding.patch_xyz_from_world`. Boxes are processed one at a
    time so memory stays at one ``(B, V, H, W)`` mask; cells without valid pixels get 0.
    """
    if world_xyz.ndim != 5 or world_xyz.shape[-1] != 3:
        raise ValueError(f"world_xyz: expected shape (B, V, H, W, 3), got {tuple(world_xyz.shape)}")
    if valid.shape != world_xyz.shape[:-1]:
        raise ValueError(f"valid: expected shape {tuple(world_xyz.shape[:-1])}, got {tuple(valid.shape)}")
    _check_boxes(boxes)
    B, V, H, W, _ = world_xyz.shape
    h, w = (int(v) for v in grid_hw)
    if not (1 <= h <= H and 1 <= w <= W):
        raise ValueError(f"grid_hw {grid_hw} must satisfy 1 <= h <= H={H} and 1 <= w <= W={W}")
    R = cell_assignment(H, h, world_xyz.device, torch.float32)
    C = cell_assignment(W, w, world_xyz.device, torch.float32)
    valid = valid.to(torch.bool)
    counts = torch.einsum("iy,bvyx,jx->bvij", R, valid.float(), C).clamp(min=1)
    out = []
    for p in range(boxes.shape[1]):
        centre = boxes[:, p, None, None, None, :3]
        half = boxes[:, p, None, None, None, 3:] / 2
        inside = ((world_xyz - centre).abs() <= half).all(dim=-1) & valid
        out.append(torch.einsum("iy,bvyx,jx->bvij", R, inside.float(), C) / counts)
    if not out:
        return world_xyz.new_zeros((B, 0, V, h, w), dtype=torch.float32)
    return torch.stack(out, dim=1)


def pool_proposal_features(
    prepool_feats: torch.Tensor,
    prepool_xyz: torch.Tensor,
    prepool_valid: torch.Tensor,
    boxes: torch.Tensor,
    box_valid: torch.Tensor,
    pe_module: Callable[[torch.Tensor], torch.Tensor],
    inside: torch.Tensor | None = None,
) -> torch.Tensor:
    """One feature per candidate box, ``(B, P, D)``.

    The mean of the pre-pooling features ``(B, V, Hp, Wp, D)`` of the valid patches whose averaged
    position ``(B, V, Hp, Wp, 3)`` lies inside the box, taken over all views, plus the 3D position
    code of the box centre. A box that no patch falls into keeps only its centre code (the position
    alone still lets the model pick it); padded boxes (``box_valid`` False) are all zeros.
    Pre-pool features (finer than the LLM's 2×2-pooled tokens) are used because small objects cover
    only a few patches.

    Args:
        inside: optional ``(B, P, V, Hp, Wp)`` bool membership to use instead of the patch-centre
            test, e.g. ``patch_box_fraction(...) >= cfg.min_pixel_fraction``.
    """
    if prepool_feats.ndim != 5:
        raise ValueError(f"prepool_feats: expected shape (B, V, Hp, Wp, D), got {tuple(prepool_feats.shape)}")
    B, V, Hp, Wp, D = prepool_feats.shape
    if prepool_xyz.shape != (B, V, Hp, Wp, 3):
        raise ValueError(f"prepool_xyz: expected shape {(B, V, Hp, Wp, 3)}, got {tuple(prepool_xyz.shape)}")
    if prepool_valid.shape != (B, V, Hp, Wp):
        raise ValueError(f"prepool_valid: expected shape {(B, V, Hp, Wp)}, got {tuple(prepool_valid.shape)}")
    _check_boxes(boxes, box_valid)
    if boxes.shape[0] != B:
        raise ValueError(f"boxes: batch {boxes.shape[0]} does not match features batch {B}")
    P = boxes.shape[1]
    feats = prepool_feats.reshape(B, V * Hp * Wp, D)
    valid = prepool_valid.reshape(B, 1, V * Hp * Wp).to(torch.bool)
    if inside is None:
        member = boxes_contain(prepool_xyz.reshape(B, V * Hp * Wp, 3).to(boxes.dtype), boxes)
    else:
        if inside.shape != (B, P, V, Hp, Wp):
            raise ValueError(f"inside: expected shape {(B, P, V, Hp, Wp)}, got {tuple(inside.shape)}")
        member = inside.reshape(B, P, V * Hp * Wp).to(torch.bool)
    member = member & valid & box_valid.to(torch.bool)[..., None]
    weights = member.to(feats.dtype)
    counts = weights.sum(dim=-1, keepdim=True).clamp(min=1)
    pooled = torch.einsum("bpn,bnd->bpd", weights, feats) / counts
    centre_code = pe_module(boxes[..., :3].float()).to(pooled.dtype)
    if centre_code.shape != (B, P, D):
        raise ValueError(f"pe_module returned shape {tuple(centre_code.shape)}, expected {(B, P, D)}")
    return (pooled + centre_code) * box_valid.to(pooled.dtype)[..., None]


def _projection_head(hidden_size: int) -> nn.Sequential:
    """Linear-ReLU-LayerNorm-Linear at the LLM width (the reference's grounding head shape)."""
    return nn.Sequential(
        nn.Linear(hidden_size, hidden_size),
        nn.ReLU(),
        nn.LayerNorm(hidden_size),
        nn.Linear(hidden_size, hidden_size),
    )


class GroundingHead(nn.Module):
    """Scores ``P`` candidate objects plus a "no object" target against a ``<ground>`` hidden state.

    ``forward(query (B, D), object_feats (B, P, D), object_valid (B, P) bool | None) -> (B, P + 1)``
    logits: cosine similarity of the projected query and projected objects, divided by the
    temperature; the last column is the learnable no-object vector; invalid (padded) candidates are
    ``-inf``. Cosine scores bound the logits to ``±1/τ`` so one confident token cannot blow up the
    softmax, which is why the temperature is small.
    """

    def __init__(self, hidden_size: int, cfg: GroundingConfig | None = None) -> None:
        super().__init__()
        if hidden_size < 1:
            raise ValueError(f"hidden_size must be >= 1, got {hidden_size}")
        self.hidden_size = int(hidden_size)
        self.cfg = cfg or GroundingConfig()
        self.query_head = _projection_head(self.hidden_size)
        self.object_head = _projection_head(self.hidden_size)
        # Lives in the projected space; a small random start keeps its cosine well defined.
        self.no_object = nn.Parameter(torch.randn(self.hidden_size) * 0.02)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(
        self, query: torch.Tensor, object_feats: torch.Tensor, object_valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        if query.ndim != 2 or query.shape[-1] != self.hidden_size:
            raise ValueError(f"query: expected shape (B, {self.hidden_size}), got {tuple(query.shape)}")
        if object_feats.ndim != 3 or object_feats.shape[0] != query.shape[0] or object_feats.shape[-1] != self.hidden_size:
            raise ValueError(
                f"object_feats: expected shape ({query.shape[0]}, P, {self.hidden_size}), got {tuple(object_feats.shape)}"
            )
        B, P, _ = object_feats.shape
        if object_valid is not None and object_valid.shape != (B, P):
            raise ValueError(f"object_valid: expected shape {(B, P)}, got {tuple(object_valid.shape)}")
        q = F.normalize(self.query_head(query).float(), dim=-1)
        objs = self.object_head(object_feats).float()
        no_obj = self.no_object.float().expand(B, 1, self.hidden_size)
        cands = F.normalize(torch.cat([objs, no_obj], dim=1), dim=-1)
        logits = torch.einsum("bd,bpd->bp", q, cands) / self.cfg.temperature
        if object_valid is not None:
            keep = torch.cat([object_valid.to(torch.bool), object_valid.new_ones((B, 1), dtype=torch.bool)], dim=1)
            logits = logits.masked_fill(~keep, float("-inf"))
        return logits


def infonce_loss(logits: torch.Tensor, positive_mask: torch.Tensor) -> torch.Tensor:
    """Multi-positive InfoNCE, mean over the batch: ``-log(Σ_pos exp(l) / Σ_all exp(l))``.

    ``logits (B, P + 1)`` from :class:`GroundingHead` (last column = no object);
    ``positive_mask (B, P + 1)`` bool (a ``(B, P)`` mask over the real candidates is accepted too).
    A row without any positive means "no such object": its positive becomes the no-object column.
    A positive on a masked (``-inf``) candidate is a data error and raises.
    """
    if logits.ndim != 2 or logits.shape[1] < 1:
        raise ValueError(f"logits: expected shape (B, P + 1), got {tuple(logits.shape)}")
    B, P1 = logits.shape
    pos = positive_mask.to(torch.bool)
    if pos.shape == (B, P1 - 1):
        pos = torch.cat([pos, pos.new_zeros((B, 1))], dim=1)
    if pos.shape != (B, P1):
        raise ValueError(f"positive_mask: expected shape {(B, P1)} (or {(B, P1 - 1)}), got {tuple(positive_mask.shape)}")
    empty = ~pos.any(dim=1)
    pos = pos.clone()
    pos[:, -1] |= empty
    logits = logits.float()
    pos_lse = torch.logsumexp(logits.masked_fill(~pos, float("-inf")), dim=1)
    if not torch.compiler.is_compiling() and bool(torch.isneginf(pos_lse).any()):
        rows = torch.nonzero(torch.isneginf(pos_lse)).flatten().tolist()
        raise ValueError(f"infonce_loss: rows {rows} have positives only on masked (-inf) candidates")
    return (torch.logsumexp(logits, dim=1) - pos_lse).mean()


def select_single(logits: torch.Tensor, allow_no_object: bool = False) -> torch.Tensor:
    """Index ``(B,)`` of the best candidate.

    With ``allow_no_object=False`` (the ScanRefer protocol: every query has a target) the no-object
    column is ignored and the best real proposal is returned; the no-object index ``P`` is returned
    only when no real proposal is valid. With ``allow_no_object=True`` the plain argmax is returned.
    """
    if logits.ndim != 2 or logits.shape[1] < 1:
        raise ValueError(f"logits: expected shape (B, P + 1), got {tuple(logits.shape)}")
    P = logits.shape[1] - 1
    if allow_no_object or P == 0:
        return logits.argmax(dim=1)
    real = logits[:, :P]
    best = real.argmax(dim=1)
    none_valid = torch.isneginf(real).all(dim=1)
    return torch.where(none_valid, torch.full_like(best, P), best)


def select_multi(logits: torch.Tensor, cum_prob_threshold: float) -> list[list[int]]:
    """Candidates per query for multi-object grounding, most probable first.

    Softmax over all candidates; walk them by decreasing probability, adding each real proposal until
    the cumulative probability reaches ``cum_prob_threshold``. Meeting the no-object candidate ends
    the list, so a query whose top candidate is "no object" gets ``[]``. Masked candidates are never
    returned.
    """
    if logits.ndim != 2 or logits.shape[1] < 1:
        raise ValueError(f"logits: expected shape (B, P + 1), got {tuple(logits.shape)}")
    if not 0 < cum_prob_threshold <= 1:
        raise ValueError(f"cum_prob_threshold must be in (0, 1], got {cum_prob_threshold}")
    no_object = logits.shape[1] - 1
    probs = torch.softmax(logits.detach().float(), dim=1).cpu()
    order = torch.argsort(probs, dim=1, descending=True, stable=True)
    masked = torch.isneginf(logits.detach()).cpu()
    out: list[list[int]] = []
    for b in range(probs.shape[0]):
        chosen: list[int] = []
        cum = 0.0
        for idx in order[b].tolist():
            if idx == no_object or masked[b, idx]:
                break
            chosen.append(idx)
            cum += float(probs[b, idx])
            if cum >= cum_prob_threshold:
                break
        out.append(chosen)
    return out
