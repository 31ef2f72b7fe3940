"""Task-grouped, resumable batch order.

Every batch holds samples of one bucket (task group × view count): QA, caption and grounding
batches never mix (Video-3D-LLM's ``group_by_task_length``), because grounding batches train a
different loss and skip Ross3D, and samples with different view counts cannot be stacked.
Unlabeled-scene batches (3D losses only) are interleaved at ``unlabeled_fraction`` of all batches.

The order of epoch ``e`` is a pure function of ``(seed, e)``: a run resumed at (epoch, batch)
rebuilds exactly the batches the interrupted run would have seen, with no sampler state to save.
With several processes, process ``r`` takes batches ``r, r + W, r + 2W, ...`` of the epoch's order
(trimmed to a multiple of ``W`` so every process runs the same number of steps).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

__all__ = ["BatchPlan", "EpochBatches"]


class BatchPlan:
    """The per-epoch batch order of a run.

    Args:
        labeled_buckets: bucket key of each labeled sample (indices ``0..n-1`` of the dataset).
        unlabeled_buckets: bucket key of each unlabeled sample (dataset indices follow the labeled).
        batch_size: samples per batch (a bucket's last batch may be smaller).
        seed: order seed.
        unlabeled_fraction: share of all batches drawn from unlabeled samples, which are cycled
            (a scene may come back within an epoch) so the share holds with few unlabeled scenes.
        world_size / rank: this process's shard.
    """

    def __init__(
        self,
        labeled_buckets: Sequence[Hashable],
        unlabeled_buckets: Sequence[Hashable] = (),
        *,
        batch_size: int,
        seed: int,
        unlabeled_fraction: float = 0.0,
        world_size: int = 1,
        rank: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= unlabeled_fraction < 1:
            raise ValueError(f"unlabeled_fraction must be in [0, 1), got {unlabeled_fraction}")
        if unlabeled_fraction > 0 and not unlabeled_buckets:
            raise ValueError("unlabeled_fraction > 0 but there are no unlabeled samples")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world size {world_size}")
        if not labeled_buckets:
            raise ValueError("no labeled samples")
        self.labeled = list(labeled_buckets)
        self.unlabeled = list(unlabeled_buckets)
        self.batch_size = batch_size
        self.seed = seed
        self.unlabeled_fraction = unlabeled_fraction
        self.world_size = world_size
        self.rank = rank
        n_lab = sum(math.ceil(len(ix) / batch_size) for ix in self._by_bucket(self.labeled, 0).values())
        self.num_unlabeled_batches = int(round(n_lab * unlabeled_fraction / (1 - unlabeled_fraction))) if unlabeled_fraction else 0
        total = n_lab + self.num_unlabeled_batches
        if total < world_size:
            raise ValueError(f"an epoch has {total} batch(es), fewer than the {world_size} processes")
        self.batches_per_epoch = total // world_size  # per process

    @staticmethod
    def _by_bucket(keys: Sequence[Hashable], offset: int) -> dict[Hashable, list[int]]:
        out: dict[Hashable, list[int]] = defaultdict(list)
        for i, k in enumerate(keys):
            out[k].append(offset + i)
        return dict(sorted(out.items(), key=lambda kv: repr(kv[0])))

    def _global_order(self, epoch: int) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, epoch])
        batches: list[list[int]] = []
        for idx in self._by_bucket(self.labeled, 0).values():
            perm = [idx[i] for i in rng.permutation(len(idx))]
            batches += [perm[i: i + self.batch_size] for i in range(0, len(perm), self.batch_size)]
        if self.num_unlabeled_batches:
            buckets = list(self._by_bucket(self.unlabeled, len(self.labeled)).values())
            # draw unlabeled batches bucket by bucket in proportion to their size, cycling each bucket
            weights = np.array([len(b) for b in buckets], dtype=np.float64)
            choice = rng.choice(len(buckets), size=self.num_unlabeled_batches, p=weights / weights.sum())
            cursors = [0] * len(buckets)
            perms = [[b[i] for i in rng.permutation(len(b))] for b in buckets]
            for j in choice:
                perm = perms[j]
                batch = [perm[(cursors[j] + i) % len(perm)] for i in range(min(self.batch_size, len(perm)))]
                cursors[j] = (cursors[j] + len(batch)) % len(perm)
                batches.append(batch)
        order = rng.permutation(len(batches))
        return [batches[i] for i in order]

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """This process's batches of ``epoch`` (dataset indices), in order."""
        order = self._global_order(epoch)
        usable = self.batches_per_epoch * self.world_size
        return order[self.rank: usable: self.world_size]


class EpochBatches(Sampler[list[int]]):
    """A DataLoader ``batch_sampler`` over one epoch of a :class:`BatchPlan`, from batch ``start`` on."""

    def __init__(self, plan: BatchPlan, epoch: int, start: int = 0) -> None:
        self.batches = plan.epoch_batches(epoch)
        if not 0 <= start <= len(self.batches):
            raise ValueError(f"start {start} outside the epoch's {len(self.batches)} batches")
        self.start = start

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches[self.start:])

    def __len__(self) -> int:
        return len(self.batches) - self.start
