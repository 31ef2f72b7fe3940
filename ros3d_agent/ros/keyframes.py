"""Keyframe memory: which posed views the node keeps, and the worker that admits them.

A robot camera produces 30 frames a second, mostly of what it saw a moment ago. The model gets a
budget of views per query, and encoding a view costs GPU time, so the node keeps a bounded set of
*keyframes* and computes each one's visual features once, when it is admitted:

* **gate** (pose only, microseconds, every posed frame): a frame is a candidate when no keyframe
  is close to it in both position and viewing direction ("moved or turned enough"), or, at most
  every ``coverage_check_ns``, to test whether it sees something new;
* **decide** (after decoding depth, a few ms, candidates only): its coarse voxel set is compared
  with the union of the keyframes' sets; a coverage candidate is admitted only if at least
  ``min_new_coverage`` of its voxels are new. A decided frame is *reserved* at once, so frames that
  arrive while it is being encoded are compared against it too (no duplicate keyframes);
* **commit** (after the engine encoded it): the keyframe joins the memory; beyond ``max_count`` or
  ``max_bytes`` the most *redundant* keyframe (largest share of its voxels also seen by another
  keyframe; the oldest on ties; never the newest) is evicted;
* **select** (per query): up to ``k`` keyframes by greedy maximum coverage of the cached voxel sets
  (``scene.sampling``), uniformly in time, or the latest ones; returned in time order.

Pure numpy + threads, no rclpy, so policy and eviction are unit-tested directly.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from ros3d_agent.scene.sampling import frame_voxel_keys, max_coverage_sample, uniform_sample
from ros3d_agent.scene.types import Frame

__all__ = [
    "KeyframePolicy",
    "Keyframe",
    "Reservation",
    "KeyframeMemory",
    "AdmissionWorker",
    "FeaturesLike",
    "frame_coverage_keys",
]

log = logging.getLogger(__name__)


class FeaturesLike(Protocol):
    """What the engine's ``encode_keyframe`` returns (the memory only needs these two)."""

    stamp: int
    nbytes: int


@dataclass(frozen=True)
class KeyframePolicy:
    """Admission, eviction and budget settings (see the module doc)."""

    min_translation_m: float = 0.3
    min_rotation_deg: float = 20.0
    min_interval_ns: int = 200_000_000
    coverage_check_ns: int = 500_000_000
    min_new_coverage: float = 0.2
    max_count: int = 64
    max_bytes: int = 512 * 1024 * 1024
    voxel_size: float = 0.1
    coverage_stride: int = 4
    max_depth: float | None = None

    def __post_init__(self) -> None:
        if self.max_count < 1 or self.max_bytes < 1:
            raise ValueError("max_count and max_bytes must be >= 1")
        if not 0.0 <= self.min_new_coverage <= 1.0:
            raise ValueError(f"min_new_coverage must be in [0, 1], got {self.min_new_coverage}")
        if self.voxel_size <= 0 or self.coverage_stride < 1:
            raise ValueError("voxel_size must be > 0 and coverage_stride >= 1")

    @classmethod
    def from_params(cls, kp: Any, max_depth: float | None = None) -> "KeyframePolicy":
        """From :class:`~ros3d_agent.ros.params.KeyframeParams`."""
        return cls(
            min_translation_m=kp.min_translation_m,
            min_rotation_deg=kp.min_rotation_deg,
            min_interval_ns=int(kp.min_interval_sec * 1e9),
            coverage_check_ns=int(kp.coverage_check_sec * 1e9),
            min_new_coverage=kp.min_new_coverage,
            max_count=kp.max_count,
            max_bytes=int(kp.max_megabytes * 1024 * 1024),
            voxel_size=kp.voxel_size,
            coverage_stride=kp.coverage_stride,
            max_depth=max_depth,
        )


def frame_coverage_keys(frame: Frame, policy: KeyframePolicy) -> NDArray[np.int64]:
    """The coarse voxel set of a frame (what admission, eviction and view selection compare)."""
    return frame_voxel_keys(frame, policy.voxel_size, policy.coverage_stride, policy.max_depth)


@dataclass
class Keyframe:
    """One admitted view: pose, stamp, coverage voxels and its cached visual features."""

    seq: int
    stamp_ns: int
    T_world_cam: NDArray[np.float64]
    voxels: NDArray[np.int64]
    reason: str
    features: Any = None
    nbytes: int = 0
    admitted_mono: float = field(default_factory=time.monotonic)


@dataclass
class Reservation:
    """A decided, not yet encoded keyframe; gating and coverage already count it."""

    keyframe: Keyframe
    active: bool = True


def _rotation_angles_deg(R: NDArray[np.float64], Rs: NDArray[np.float64]) -> NDArray[np.float64]:
    """Angles (deg) between rotation ``R`` (3×3) and each of ``Rs`` (N×3×3)."""
    tr = np.einsum("ij,nij->n", R, Rs)
    return np.degrees(np.arccos(np.clip((tr - 1.0) / 2.0, -1.0, 1.0)))


class KeyframeMemory:
    """Bounded, thread-safe keyframe set with gating, coverage bookkeeping, eviction and selection."""

    def __init__(self, policy: KeyframePolicy | None = None) -> None:
        self.policy = policy or KeyframePolicy()
        self._lock = threading.Lock()
        self._seq = 0
        self.clear()

    def clear(self) -> None:
        """Forget every keyframe and reservation (time jump, deactivation)."""
        with self._lock:
            self._committed: list[Keyframe] = []
            self._reserved: list[Reservation] = []
            self._union_keys = np.empty(0, np.int64)
            self._union_counts = np.empty(0, np.int64)
            self._last_admit_stamp: int | None = None
            self._last_coverage_check: int | None = None
            #: evictions by reason
            self.evicted: Counter[str] = Counter()

    def set_policy(self, policy: KeyframePolicy) -> None:
        """Apply new thresholds (live parameter update); bounds apply at the next commit."""
        with self._lock:
            self.policy = policy

    # ------------------------------------------------------------------------------------------
    # Coverage union (multiset of voxels over committed + reserved keyframes)
    # ------------------------------------------------------------------------------------------
    def _union_update(self, voxels: NDArray[np.int64], delta: int) -> None:
        if voxels.size == 0:
            return
        keys = np.concatenate([self._union_keys, voxels])
        counts = np.concatenate([self._union_counts, np.full(voxels.shape[0], delta, np.int64)])
        ukeys, inv = np.unique(keys, return_inverse=True)
        ucounts = np.bincount(inv, weights=counts, minlength=ukeys.shape[0]).astype(np.int64)
        keep = ucounts > 0
        self._union_keys, self._union_counts = ukeys[keep], ucounts[keep]

    def coverage_gain(self, voxels: NDArray[np.int64]) -> float:
        """Share of ``voxels`` (sorted unique keys) that no keyframe sees yet (1.0 for an empty memory)."""
        if voxels.size == 0:
            return 0.0
        with self._lock:
            if self._union_keys.size == 0:
                return 1.0
            seen = np.isin(voxels, self._union_keys, assume_unique=True)
        return float(1.0 - seen.mean())

    # ------------------------------------------------------------------------------------------
    # Gate / decide / commit
    # ------------------------------------------------------------------------------------------
    def gate(self, T_world_cam: NDArray[np.float64], stamp_ns: int) -> str | None:
        """Pose-only pre-check of a posed frame: ``first``/``moved``/``turned``/``coverage`` or None.

        ``coverage`` means "not novel by pose, but due for a coverage test" and must pass
        :meth:`decide`; the others are admitted unless the frame has no valid depth.
        """
        p = self.policy
        with self._lock:
            last = self._last_admit_stamp
            if last is not None and 0 <= stamp_ns - last < p.min_interval_ns:
                return None
            kfs = [*self._committed, *(r.keyframe for r in self._reserved)]
            if not kfs:
                return "first"
            poses = np.stack([k.T_world_cam for k in kfs])
            dist = np.linalg.norm(poses[:, :3, 3] - T_world_cam[:3, 3], axis=1)
            ang = _rotation_angles_deg(T_world_cam[:3, :3], poses[:, :3, :3])
            close = (dist < p.min_translation_m) & (ang < p.min_rotation_deg)
            if not close.any():
                return "moved" if dist.min() >= p.min_translation_m else "turned"
            lc = self._last_coverage_check
            if lc is None or not 0 <= stamp_ns - lc < p.coverage_check_ns:
                self._last_coverage_check = stamp_ns
                return "coverage"
            return None

    def decide(self, reason: str, voxels: NDArray[np.int64]) -> tuple[bool, float]:
        """Whether a gated candidate with these voxels is admitted, and its coverage gain."""
        if voxels.size == 0:
            return False, 0.0
        gain = self.coverage_gain(voxels)
        if reason == "coverage":
            return gain >= self.policy.min_new_coverage, gain
        return True, gain

    def reserve(self, stamp_ns: int, T_world_cam: NDArray[np.float64], voxels: NDArray[np.int64], reason: str) -> Reservation:
        """Hold a decided keyframe's place while it is encoded."""
        with self._lock:
            self._seq += 1
            kf = Keyframe(self._seq, int(stamp_ns), np.array(T_world_cam, dtype=np.float64), voxels, reason)
            res = Reservation(kf)
            self._reserved.append(res)
            self._union_update(voxels, +1)
            self._last_admit_stamp = int(stamp_ns)
            self._last_coverage_check = int(stamp_ns)  # an admission is as good as a coverage check
            return res

    def cancel(self, res: Reservation) -> None:
        """Give up a reservation (encoding failed, memory reset)."""
        with self._lock:
            if res.active and res in self._reserved:
                self._reserved.remove(res)
                self._union_update(res.keyframe.voxels, -1)
            res.active = False

    def commit(self, res: Reservation, features: Any) -> tuple[Keyframe | None, list[Keyframe]]:
        """Turn a reservation into a keyframe with its features; returns (keyframe, evicted).

        Returns ``(None, [])`` when the reservation was cancelled meanwhile (e.g. the memory was reset).
        """
        with self._lock:
            if not res.active or res not in self._reserved:
                return None, []
            self._reserved.remove(res)
            res.active = False
            kf = res.keyframe
            kf.features = features
            kf.nbytes = int(getattr(features, "nbytes", 0)) + int(kf.voxels.nbytes)
            kf.admitted_mono = time.monotonic()
            self._committed.append(kf)
            self._committed.sort(key=lambda k: (k.stamp_ns, k.seq))
            evicted = self._evict_locked(newest=kf)
            return kf, evicted

    def _redundancy(self, kf: Keyframe) -> float:
        if kf.voxels.size == 0:
            return 1.0
        idx = np.searchsorted(self._union_keys, kf.voxels)
        idx = np.clip(idx, 0, max(0, self._union_keys.shape[0] - 1))
        return float((self._union_counts[idx] >= 2).mean()) if self._union_keys.size else 1.0

    def _evict_locked(self, newest: Keyframe) -> list[Keyframe]:
        p = self.policy
        out: list[Keyframe] = []
        while len(self._committed) > 1 and (len(self._committed) > p.max_count or self._bytes_locked() > p.max_bytes):
            reason = "count" if len(self._committed) > p.max_count else "bytes"
            candidates = [k for k in self._committed if k is not newest]
            scores = [(self._redundancy(k), -k.stamp_ns) for k in candidates]
            victim = candidates[max(range(len(candidates)), key=lambda i: scores[i])]
            self._committed.remove(victim)
            self._union_update(victim.voxels, -1)
            self.evicted[reason] += 1
            out.append(victim)
        return out

    def _bytes_locked(self) -> int:
        return sum(k.nbytes for k in self._committed)

    # ------------------------------------------------------------------------------------------
    # Reading
    # ------------------------------------------------------------------------------------------
    def keyframes(self) -> list[Keyframe]:
        """Committed keyframes in time order (a copy of the list; keyframes are not copied)."""
        with self._lock:
            return list(self._committed)

    def __len__(self) -> int:
        with self._lock:
            return len(self._committed)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return self._bytes_locked()

    def pending(self) -> int:
        with self._lock:
            return len(self._reserved)

    def covered_voxels(self) -> int:
        with self._lock:
            return int(self._union_keys.shape[0])

    def select(self, k: int, strategy: str = "coverage") -> list[Keyframe]:
        """Up to ``k`` keyframes for a query, in time order (see module doc)."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        kfs = self.keyframes()
        if len(kfs) <= k:
            return kfs
        if strategy == "latest":
            return kfs[-k:]
        if strategy == "coverage":
            try:
                pick = max_coverage_sample([kf.voxels for kf in kfs], k, coverage_stop=None).indices
                if pick:
                    return [kfs[i] for i in sorted(pick)]
            except ValueError:
                pass  # nothing sees anything: fall back to uniform
        return [kfs[i] for i in uniform_sample(len(kfs), k)]

    def newest_stamp(self) -> int | None:
        with self._lock:
            return self._committed[-1].stamp_ns if self._committed else None


@dataclass
class _Job:
    reservation: Reservation
    frame: Frame
    queued_mono: float


class AdmissionWorker:
    """Encodes reserved keyframes on a worker thread and commits them; the queue is bounded.

    Args:
        memory: where keyframes are committed.
        encode: ``Frame -> features`` (the engine's ``encode_keyframe``, under the model lock).
        on_admitted: called with ``(frame, keyframe, evicted)`` after a commit (fusion, proposals).
        queue_size: waiting jobs at most; :meth:`submit` refuses beyond it (the caller counts the drop).
    """

    def __init__(
        self,
        memory: KeyframeMemory,
        encode: Callable[[Frame], Any],
        on_admitted: Callable[[Frame, Keyframe, list[Keyframe]], None] | None = None,
        *,
        queue_size: int = 4,
        name: str = "keyframe-admission",
    ) -> None:
        self.memory = memory
        self.encode = encode
        self.on_admitted = on_admitted
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._name = name
        self._stop = threading.Event()
        #: outcomes by name (admitted, encode_failed, ...)
        self.counts: Counter[str] = Counter()
        #: seconds spent per admitted keyframe: encode / post-processing (fusion, proposals)
        self.encode_s: list[float] = []
        self.post_s: list[float] = []
        # jobs submitted and not yet finished; idle <=> zero. Counted under a lock because a job can
        # be taken and finished by the worker before submit() returns.
        self._unfinished = 0
        self._count_lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()

    def _job_started(self) -> None:
        with self._count_lock:
            self._unfinished += 1
            self._idle.clear()

    def _job_finished(self) -> None:
        with self._count_lock:
            self._unfinished = max(0, self._unfinished - 1)
            if self._unfinished == 0:
                self._idle.set()

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the job in progress, drop the queued ones (their reservations are cancelled)."""
        self._stop.set()
        self._drain()
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._drain()

    def _drain(self) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                self.memory.cancel(job.reservation)
                self.counts["dropped_on_stop"] += 1
                self._job_finished()

    def submit(self, reservation: Reservation, frame: Frame) -> bool:
        """Queue a reserved keyframe for encoding; False (reservation cancelled) when the queue is full."""
        if self._stop.is_set():
            self.memory.cancel(reservation)
            return False
        self._job_started()
        try:
            self._queue.put_nowait(_Job(reservation, frame, time.monotonic()))
            return True
        except queue.Full:
            self._job_finished()
            self.memory.cancel(reservation)
            return False

    def depth(self) -> int:
        return self._queue.qsize()

    def wait_idle(self, timeout: float) -> bool:
        """Block until the queue is empty and nothing is being encoded (tests, benchmarks)."""
        return self._idle.wait(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            job = self._queue.get()
            if job is None:
                break
            try:
                self._process(job)
            except Exception:  # a failing admission must not end the worker
                log.exception("keyframe admission failed")
                self.counts["error"] += 1
                self.memory.cancel(job.reservation)
            finally:
                self._job_finished()

    def _process(self, job: _Job) -> None:
        t0 = time.perf_counter()
        try:
            features = self.encode(job.frame)
        except Exception as exc:
            self.memory.cancel(job.reservation)
            self.counts["encode_failed"] += 1
            log.warning("could not encode keyframe at %.3f s: %s", job.frame.stamp / 1e9, exc)
            return
        t1 = time.perf_counter()
        kf, evicted = self.memory.commit(job.reservation, features)
        if kf is None:
            self.counts["cancelled"] += 1
            return
        self.counts["admitted"] += 1
        self.counts["evicted"] += len(evicted)
        self.encode_s.append(t1 - t0)
        if self.on_admitted is not None:
            self.on_admitted(job.frame, kf, evicted)
        self.post_s.append(time.perf_counter() - t1)
        if len(self.encode_s) > 1000:
            del self.encode_s[:500], self.post_s[:500]
