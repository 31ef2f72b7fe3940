"""Approximate-time matching of colour, depth and CameraInfo messages (message_filters is not on PyPI).

The colour stream is the *pivot*: each colour message looks for the message nearest in stamp on
every other stream, and the set is emitted when all of them lie within ``slop``. A pivot is decided
as soon as every other stream holds a message at or after its stamp (later ones can only be
farther away); until then it waits, bounded by ``queue_size``. A partner that lies nearer to the
next pivot is left to that one (its own partner was lost). This is simpler than
message_filters' general algorithm and deterministic, which is what an RGB-D camera needs: its
streams share stamps (or nearly), and the question is only which arrived.

Everything consumed or skipped is accounted for in :attr:`ApproximateTimeSync.drops` by reason:

* ``unmatched``: a pivot whose nearest partner on some stream was farther than ``slop``, or that
  waited too long (its queue overflowed);
* ``overflow``: a non-pivot message pushed out of its full queue;
* ``superseded``: a non-pivot message older than a match (nothing can use it any more);
* ``late``: a message older than the last match on its stream (arrived out of order);
* ``time_jump``: messages discarded because time jumped back (a bag loop); the queues restart.
  A single message far in the past is ``late``; three pivots in a row from an older timeline are a jump.

No rclpy: the node calls :meth:`add` from its subscription callbacks, tests call it directly.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["ApproximateTimeSync"]


class ApproximateTimeSync:
    """Match one message per stream within ``slop_ns`` of a pivot stream (index 0).

    A backward time jump needs :attr:`JUMP_EVIDENCE` consecutive pivot messages from the older
    timeline; a single stale message is only dropped as ``late``.

    Args:
        streams: names of the inputs, pivot first (used in counters and messages).
        slop_ns: largest allowed |stamp - pivot stamp|.
        queue_size: messages kept per stream while waiting.
        on_match: called (synchronously, under no lock) with ``(pivot_stamp_ns, [msg per stream])``.
        on_time_jump: called with ``(old_ns, new_ns)`` when a stamp jumps back by more than
            ``time_jump_ns`` (the caller resets its other buffers).
        time_jump_ns: backward jump threshold.
    """

    def __init__(
        self,
        streams: Sequence[str],
        slop_ns: int,
        queue_size: int,
        on_match: Callable[[int, list[Any]], None],
        *,
        on_time_jump: Callable[[int, int], None] | None = None,
        time_jump_ns: int = 2_000_000_000,
    ) -> None:
        if len(streams) < 1:
            raise ValueError("need at least one stream")
        if slop_ns < 0 or queue_size < 1:
            raise ValueError("slop_ns must be >= 0 and queue_size >= 1")
        self.streams = list(streams)
        self.slop_ns = int(slop_ns)
        self.queue_size = int(queue_size)
        self.on_match = on_match
        self.on_time_jump = on_time_jump
        self.time_jump_ns = int(time_jump_ns)
        self._stamps: list[list[int]] = [[] for _ in streams]
        self._msgs: list[list[Any]] = [[] for _ in streams]
        self._last_matched = [-1] * len(streams)
        self._newest = -1
        self._jump_evidence = 0
        self._lock = threading.Lock()
        #: drops by ``"<stream>:<reason>"``
        self.drops: Counter[str] = Counter()
        #: sets emitted
        self.matched = 0
        #: backward time jumps seen
        self.time_jumps = 0

    JUMP_EVIDENCE = 3

    def reset(self) -> None:
        """Forget everything queued (counted as ``time_jump`` drops) and the last-match stamps."""
        with self._lock:
            self._reset_locked("reset")

    def _reset_locked(self, reason: str) -> None:
        for i, q in enumerate(self._stamps):
            if q:
                self.drops[f"{self.streams[i]}:{reason}"] += len(q)
            q.clear()
            self._msgs[i].clear()
        self._last_matched = [-1] * len(self.streams)
        self._newest = -1
        self._jump_evidence = 0

    def pending(self) -> list[int]:
        """Messages waiting per stream."""
        with self._lock:
            return [len(q) for q in self._stamps]

    def add(self, index: int, stamp_ns: int, msg: Any) -> None:
        """Offer message ``msg`` (stamp ``stamp_ns``) on stream ``index``; may emit matches."""
        jump: tuple[int, int] | None = None
        out: list[tuple[int, list[Any]]] = []
        with self._lock:
            name = self.streams[index]
            if self._newest >= 0 and stamp_ns < self._newest - self.time_jump_ns:
                # One old message is an outlier (a stale frame); a jump is confirmed only when
                # JUMP_EVIDENCE pivot messages in a row come from the older timeline.
                if index == 0:
                    self._jump_evidence += 1
                if self._jump_evidence < self.JUMP_EVIDENCE:
                    self.drops[f"{name}:late"] += 1
                    return
                jump = (self._newest, stamp_ns)
                self.time_jumps += 1
                self._reset_locked("time_jump")
            elif index == 0:
                self._jump_evidence = 0
            self._newest = max(self._newest, stamp_ns)
            if stamp_ns <= self._last_matched[index]:
                self.drops[f"{name}:late"] += 1
            else:
                stamps, msgs = self._stamps[index], self._msgs[index]
                i = bisect.bisect_right(stamps, stamp_ns)
                stamps.insert(i, stamp_ns)
                msgs.insert(i, msg)
                if len(stamps) > self.queue_size:
                    del stamps[0], msgs[0]
                    self.drops[f"{name}:{'unmatched' if index == 0 else 'overflow'}"] += 1
                self._match_locked(out)
        if jump is not None and self.on_time_jump is not None:
            self.on_time_jump(*jump)
        for stamp, msgs_out in out:
            self.on_match(stamp, msgs_out)

    def _match_locked(self, out: list[tuple[int, list[Any]]]) -> None:
        pivot_stamps, pivot_msgs = self._stamps[0], self._msgs[0]
        while pivot_stamps:
            t = pivot_stamps[0]
            chosen: list[int] = []
            for j in range(1, len(self.streams)):
                stamps = self._stamps[j]
                k = bisect.bisect_left(stamps, t)
                if k == len(stamps):
                    return  # no message at/after t yet: a closer one may still come
                if k > 0 and t - stamps[k - 1] <= stamps[k] - t:
                    k -= 1
                chosen.append(k)
            # A partner nearer to the next pivot belongs to that one (its own partner was lost).
            nxt = pivot_stamps[1] if len(pivot_stamps) > 1 else None
            if any(abs(self._stamps[j][k] - t) > self.slop_ns or (nxt is not None and abs(nxt - self._stamps[j][k]) < abs(self._stamps[j][k] - t))
                   for j, k in zip(range(1, len(self.streams)), chosen)):
                del pivot_stamps[0], pivot_msgs[0]
                self.drops[f"{self.streams[0]}:unmatched"] += 1
                continue
            msgs = [pivot_msgs[0]]
            del pivot_stamps[0], pivot_msgs[0]
            self._last_matched[0] = t
            for j, k in zip(range(1, len(self.streams)), chosen):
                msgs.append(self._msgs[j][k])
                self._last_matched[j] = self._stamps[j][k]
                if k:
                    self.drops[f"{self.streams[j]}:superseded"] += k
                del self._stamps[j][: k + 1], self._msgs[j][: k + 1]
            self.matched += 1
            out.append((t, msgs))
