"""Train / val / test splits by scene.

Splitting by *scene*, never by question, is what makes test numbers mean something: questions about
one room share its layout, so a model that saw the room in training would be tested on memory.

Scenes are ordered by a keyed hash of ``(seed, scene_id)`` and cut at exact counts. The hash (not
Python's ``hash``, which is salted per process) makes the split reproducible across runs and
machines; ordering by it, rather than shuffling a list, means adding scenes later moves few old ones.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence

__all__ = ["SPLITS", "parse_fractions", "split_scenes"]

SPLITS: tuple[str, ...] = ("train", "val", "test")


def parse_fractions(values: Sequence[float]) -> tuple[float, float, float]:
    """Validate ``(train, val, test)`` fractions: three non-negative numbers summing to 1 (±1e-6)."""
    if len(values) != 3:
        raise ValueError(f"split fractions: expected 3 numbers (train val test), got {len(values)}")
    vals = tuple(float(v) for v in values)
    if any(not math.isfinite(v) or v < 0 for v in vals):
        raise ValueError(f"split fractions must be finite and >= 0, got {list(vals)}")
    if abs(sum(vals) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must sum to 1, got {list(vals)} (sum {sum(vals):.6g})")
    return vals  # type: ignore[return-value]


def _rank_key(seed: int, scene_id: str) -> bytes:
    return hashlib.sha256(f"{seed}:{scene_id}".encode()).digest()


def _counts(n: int, fractions: Sequence[float]) -> list[int]:
    """Exact integer sizes by largest remainder; every split with a positive fraction gets at least
    one scene when there are enough scenes (a val or test split of zero scenes silently hides bugs)."""
    raw = [f * n for f in fractions]
    counts = [math.floor(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: (counts[i] - raw[i], i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    wanted = [i for i, f in enumerate(fractions) if f > 0]
    if n >= len(wanted):
        for i in wanted:
            if counts[i] == 0:
                donor = max(range(len(counts)), key=lambda j: counts[j])
                counts[donor] -= 1
                counts[i] += 1
    return counts


def split_scenes(scene_ids: Iterable[str], fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0) -> dict[str, list[str]]:
    """Assign every scene to exactly one of train/val/test; deterministic in ``(scene_ids, fractions, seed)``.

    Returns ``{"train": [...], "val": [...], "test": [...]}`` with each list sorted by scene id.
    """
    fr = parse_fractions(fractions)
    ids = sorted(set(scene_ids))
    ranked = sorted(ids, key=lambda s: _rank_key(seed, s))
    counts = _counts(len(ranked), fr)
    out: dict[str, list[str]] = {}
    start = 0
    for name, c in zip(SPLITS, counts):
        out[name] = sorted(ranked[start : start + c])
        start += c
    return out
