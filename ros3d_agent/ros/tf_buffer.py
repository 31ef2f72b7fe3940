"""A pure-Python TF buffer: static and dynamic edges, interpolation in time, multi-hop lookups.

tf2_ros (and its C++ core) is not installable beside the PyPI ROS wheels, and the node needs only
a small part of it: "where was the camera's optical frame in the fixed frame at this image's stamp".
This buffer answers exactly that, the way tf2 does:

* edges are ``parent → child`` transforms; static ones hold for all time, dynamic ones are a
  history of stamped samples, pruned to ``cache_ns``;
* a lookup at time ``t`` interpolates every dynamic edge of the chain between the samples around
  ``t`` (linear for translation, slerp for rotation) and never extrapolates: a stamp newer than an
  edge's newest sample is "not yet" (the caller waits, TF usually arrives after the images), one
  older than its oldest sample is "too old" (the caller drops the frame);
* the chain goes up from both frames to their common ancestor, so ``map → odom → base_link →
  camera_link → camera_color_optical_frame`` resolves however many hops it has;
* samples far behind the newest one seen (a bag restarted, a simulator reset) clear the dynamic
  history instead of mixing two timelines (a single stale sample is only rejected); the static
  tree is kept.

It takes transforms from anything shaped like ``geometry_msgs/TransformStamped`` (rclpy or rosbags
messages, or test doubles), so it is tested without DDS. Thread-safe: TF callbacks write while the
ingest worker looks up.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

__all__ = ["TfBuffer", "TfLookupError", "TfUpdate", "LOOKUP_REASONS"]

NS_PER_S: Final = 1_000_000_000
#: Why a lookup failed. ``extrapolation_future`` and ``unknown_frame``/``not_connected`` may heal
#: when more TF arrives (wait); ``extrapolation_past`` never will (drop).
LOOKUP_REASONS: Final = ("unknown_frame", "not_connected", "extrapolation_future", "extrapolation_past")


class TfLookupError(LookupError):
    """A transform is not available; ``reason`` is one of :data:`LOOKUP_REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        assert reason in LOOKUP_REASONS
        self.reason = reason
        super().__init__(message)

    @property
    def may_heal(self) -> bool:
        """True when waiting for more TF can make the same lookup succeed."""
        return self.reason != "extrapolation_past"


@dataclass
class TfUpdate:
    """What one batch of transforms did to the buffer."""

    accepted: int = 0
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    time_jump: bool = False

    def reject(self, reason: str) -> None:
        self.rejected += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1


def _normalize_frame(name: str) -> str:
    """tf2 strips one leading slash: ``/map`` and ``map`` are the same frame."""
    return name[1:] if name.startswith("/") else name


def _quat_normalize(q: NDArray[np.float64]) -> NDArray[np.float64]:
    n = float(np.linalg.norm(q))
    return q / n


def _slerp(q0: NDArray[np.float64], q1: NDArray[np.float64], u: float) -> NDArray[np.float64]:
    """Spherical interpolation of unit quaternions (x, y, z, w), shortest arc."""
    dot = float(np.dot(q0, q1))
    if dot < 0.0:
        q1, dot = -q1, -dot
    if dot > 0.9995:  # nearly parallel: lerp is exact enough and avoids dividing by ~0
        return _quat_normalize(q0 + u * (q1 - q0))
    theta = math.acos(min(1.0, dot))
    s = math.sin(theta)
    return (math.sin((1.0 - u) * theta) / s) * q0 + (math.sin(u * theta) / s) * q1


def _matrix(t: NDArray[np.float64], q: NDArray[np.float64]) -> NDArray[np.float64]:
    """4×4 from translation and unit quaternion (x, y, z, w)."""
    x, y, z, w = q
    T = np.eye(4)
    T[0, 0] = 1 - 2 * (y * y + z * z)
    T[0, 1] = 2 * (x * y - z * w)
    T[0, 2] = 2 * (x * z + y * w)
    T[1, 0] = 2 * (x * y + z * w)
    T[1, 1] = 1 - 2 * (x * x + z * z)
    T[1, 2] = 2 * (y * z - x * w)
    T[2, 0] = 2 * (x * z - y * w)
    T[2, 1] = 2 * (y * z + x * w)
    T[2, 2] = 1 - 2 * (x * x + y * y)
    T[:3, 3] = t
    return T


def _inverse(T: NDArray[np.float64]) -> NDArray[np.float64]:
    out = np.eye(4)
    R = T[:3, :3]
    out[:3, :3] = R.T
    out[:3, 3] = -R.T @ T[:3, 3]
    return out


class _Edge:
    """The transform of one child frame in its parent: static, or a time-sorted history."""

    __slots__ = ("parent", "static", "stamps", "trans", "quats")

    def __init__(self, parent: str, static: bool) -> None:
        self.parent = parent
        self.static = static
        self.stamps: list[int] = []
        self.trans: list[NDArray[np.float64]] = []
        self.quats: list[NDArray[np.float64]] = []

    def insert(self, stamp: int, t: NDArray[np.float64], q: NDArray[np.float64]) -> None:
        if self.static:
            self.stamps, self.trans, self.quats = [stamp], [t], [q]
            return
        if not self.stamps or stamp > self.stamps[-1]:  # the usual case: in order
            self.stamps.append(stamp)
            self.trans.append(t)
            self.quats.append(q)
            return
        i = bisect.bisect_left(self.stamps, stamp)
        if i < len(self.stamps) and self.stamps[i] == stamp:  # a republished sample replaces the old one
            self.trans[i], self.quats[i] = t, q
            return
        self.stamps.insert(i, stamp)
        self.trans.insert(i, t)
        self.quats.insert(i, q)

    def prune(self, oldest: int) -> None:
        """Drop samples older than ``oldest`` but keep one at or before it, so ``oldest`` stays interpolable."""
        i = bisect.bisect_right(self.stamps, oldest) - 1
        if i > 0:
            del self.stamps[:i], self.trans[:i], self.quats[:i]

    def at(self, stamp: int | None, child: str) -> NDArray[np.float64]:
        """``T_parent_child`` at ``stamp`` (None: the newest sample)."""
        if self.static or stamp is None:
            return _matrix(self.trans[-1], self.quats[-1])
        stamps = self.stamps
        if stamp > stamps[-1]:
            raise TfLookupError(
                "extrapolation_future",
                f"{self.parent} -> {child}: requested {stamp / NS_PER_S:.6f} s is {(stamp - stamps[-1]) / 1e6:.1f} ms newer "
                f"than the newest transform ({stamps[-1] / NS_PER_S:.6f} s)",
            )
        if stamp < stamps[0]:
            raise TfLookupError(
                "extrapolation_past",
                f"{self.parent} -> {child}: requested {stamp / NS_PER_S:.6f} s is {(stamps[0] - stamp) / 1e6:.1f} ms older "
                f"than the oldest transform kept ({stamps[0] / NS_PER_S:.6f} s)",
            )
        i = bisect.bisect_left(stamps, stamp)
        if stamps[i] == stamp:
            return _matrix(self.trans[i], self.quats[i])
        t0, t1 = stamps[i - 1], stamps[i]
        u = (stamp - t0) / (t1 - t0)
        trans = self.trans[i - 1] + u * (self.trans[i] - self.trans[i - 1])
        quat = _slerp(self.quats[i - 1], self.quats[i], u)
        return _matrix(trans, quat)


class TfBuffer:
    """Static + dynamic transforms with time interpolation and chain lookups (see module doc).

    A dynamic sample more than ``time_jump_ns`` behind the newest is rejected as ``stale``;
    :attr:`JUMP_EVIDENCE` such samples in a row are a backward time jump (history cleared).

    Args:
        cache_ns: dynamic history kept, measured back from the newest sample of each edge.
        time_jump_ns: a dynamic sample this much older than the newest seen on any edge means time
            went backwards; the dynamic history is cleared (``TfUpdate.time_jump`` is set).
    """

    JUMP_EVIDENCE = 3

    def __init__(self, cache_ns: int = 30 * NS_PER_S, time_jump_ns: int = 2 * NS_PER_S) -> None:
        if cache_ns <= 0 or time_jump_ns <= 0:
            raise ValueError("cache_ns and time_jump_ns must be > 0")
        self.cache_ns = int(cache_ns)
        self.time_jump_ns = int(time_jump_ns)
        self._edges: dict[str, _Edge] = {}
        self._lock = threading.Lock()
        self._newest = -1
        self._jump_evidence = 0
        #: backward time jumps seen (each cleared the dynamic history)
        self.time_jumps = 0
        #: re-parented frames (a child whose parent changed: its history restarted)
        self.reparented = 0

    # ------------------------------------------------------------------------------------------
    # Writing
    # ------------------------------------------------------------------------------------------
    def set_transform(
        self,
        parent: str,
        child: str,
        stamp_ns: int,
        translation: Iterable[float],
        rotation_xyzw: Iterable[float],
        *,
        static: bool = False,
    ) -> TfUpdate:
        """Add one transform ``T_parent_child``; invalid ones are rejected (see ``TfUpdate.reasons``)."""
        upd = TfUpdate()
        with self._lock:
            self._insert(upd, parent, child, int(stamp_ns), translation, rotation_xyzw, static)
        return upd

    def add_transforms(self, transforms: Iterable[Any], *, static: bool = False) -> TfUpdate:
        """Add ``geometry_msgs/TransformStamped``-shaped messages (e.g. ``TFMessage.transforms``)."""
        upd = TfUpdate()
        with self._lock:
            for tr in transforms:
                try:
                    stamp = int(tr.header.stamp.sec) * NS_PER_S + int(tr.header.stamp.nanosec)
                    t, q = tr.transform.translation, tr.transform.rotation
                    self._insert(upd, str(tr.header.frame_id), str(tr.child_frame_id), stamp,
                                 (t.x, t.y, t.z), (q.x, q.y, q.z, q.w), static)
                except (AttributeError, TypeError, ValueError):
                    upd.reject("malformed")
        return upd

    def _insert(self, upd: TfUpdate, parent: str, child: str, stamp: int, translation: Iterable[float],
                rotation: Iterable[float], static: bool) -> None:
        parent, child = _normalize_frame(parent), _normalize_frame(child)
        if not parent or not child:
            upd.reject("empty_frame_id")
            return
        if parent == child:
            upd.reject("self_loop")
            return
        t = np.asarray(tuple(translation), dtype=np.float64)
        q = np.asarray(tuple(rotation), dtype=np.float64)
        if t.shape != (3,) or q.shape != (4,) or not (np.all(np.isfinite(t)) and np.all(np.isfinite(q))):
            upd.reject("nonfinite")
            return
        norm = float(np.linalg.norm(q))
        if norm < 1e-6:
            upd.reject("zero_quaternion")
            return
        q = q / norm
        if self._creates_cycle(parent, child):
            upd.reject("cycle")
            return
        if not static:
            if self._newest >= 0 and stamp < self._newest - self.time_jump_ns:
                # A lone stale transform is rejected; JUMP_EVIDENCE in a row mean time went back.
                self._jump_evidence += 1
                if self._jump_evidence < self.JUMP_EVIDENCE:
                    upd.reject("stale")
                    return
                self._clear_dynamic()
                self.time_jumps += 1
                upd.time_jump = True
            self._jump_evidence = 0
            self._newest = max(self._newest, stamp)
        edge = self._edges.get(child)
        if edge is None or edge.parent != parent or edge.static != static:
            if edge is not None and edge.parent != parent:
                self.reparented += 1
            edge = self._edges[child] = _Edge(parent, static)
        edge.insert(stamp, t, q)
        if not static:
            edge.prune(edge.stamps[-1] - self.cache_ns)
        upd.accepted += 1

    def _creates_cycle(self, parent: str, child: str) -> bool:
        """Would ``parent → child`` make ``child`` its own ancestor?"""
        node, hops = parent, 0
        while node in self._edges and hops <= len(self._edges):
            node = self._edges[node].parent
            if node == child:
                return True
            hops += 1
        return parent == child

    def _clear_dynamic(self) -> None:
        for child in [c for c, e in self._edges.items() if not e.static]:
            del self._edges[child]
        self._newest = -1
        self._jump_evidence = 0

    def clear(self, *, keep_static: bool = True) -> None:
        """Forget the dynamic history (and the static tree too unless ``keep_static``)."""
        with self._lock:
            if keep_static:
                self._clear_dynamic()
            else:
                self._edges.clear()
                self._newest = -1

    # ------------------------------------------------------------------------------------------
    # Reading
    # ------------------------------------------------------------------------------------------
    def _path_to_root(self, frame: str) -> list[str]:
        path = [frame]
        while path[-1] in self._edges:
            path.append(self._edges[path[-1]].parent)
            if len(path) > len(self._edges) + 1:  # defensive: inserts refuse cycles
                break
        return path

    def chain(self, target: str, source: str) -> list[str]:
        """Frames from ``target`` down to ``source`` through their common ancestor (for logs)."""
        target, source = _normalize_frame(target), _normalize_frame(source)
        with self._lock:
            up_t, up_s = self._path_to_root(target), self._path_to_root(source)
        common = next((f for f in up_s if f in set(up_t)), None)
        if common is None:
            return []
        return up_t[: up_t.index(common) + 1] + list(reversed(up_s[: up_s.index(common)]))

    def lookup(self, target: str, source: str, stamp_ns: int | None = None) -> NDArray[np.float64]:
        """``T_target_source`` (maps points in ``source`` to ``target``) at ``stamp_ns``.

        ``stamp_ns=None`` uses the newest sample of each edge (tf2's "latest"; fine for static
        chains, wrong for a moving camera, so the ingest path always passes the image stamp).

        Raises:
            TfLookupError: with ``reason`` saying whether waiting can help.
        """
        target, source = _normalize_frame(target), _normalize_frame(source)
        with self._lock:
            if target == source:
                return np.eye(4)
            for name in (target, source):
                if name not in self._edges and not any(e.parent == name for e in self._edges.values()):
                    known = ", ".join(sorted(set(self._edges) | {e.parent for e in self._edges.values()})) or "none"
                    raise TfLookupError("unknown_frame", f"frame {name!r} does not exist in the TF tree (known frames: {known})")
            up_s = self._path_to_root(source)
            up_t = self._path_to_root(target)
            on_t = set(up_t)
            common = next((f for f in up_s if f in on_t), None)
            if common is None:
                raise TfLookupError(
                    "not_connected",
                    f"{target!r} and {source!r} are not connected (their roots are {up_t[-1]!r} and {up_s[-1]!r}); "
                    "a TF publisher is missing between them",
                )
            T_common_source = np.eye(4)
            for child in up_s[: up_s.index(common)]:
                T_common_source = self._edges[child].at(stamp_ns, child) @ T_common_source
            T_common_target = np.eye(4)
            for child in up_t[: up_t.index(common)]:
                T_common_target = self._edges[child].at(stamp_ns, child) @ T_common_target
        return _inverse(T_common_target) @ T_common_source

    def can_transform(self, target: str, source: str, stamp_ns: int | None = None) -> bool:
        try:
            self.lookup(target, source, stamp_ns)
            return True
        except TfLookupError:
            return False

    def newest_stamp(self) -> int | None:
        """Newest dynamic stamp seen (ns), None before the first."""
        with self._lock:
            return self._newest if self._newest >= 0 else None

    def frames(self) -> dict[str, tuple[str, bool]]:
        """``{child: (parent, static)}`` of every edge."""
        with self._lock:
            return {c: (e.parent, e.static) for c, e in self._edges.items()}

    def describe(self) -> str:
        """The tree as text, one edge per line (what a user checks when a lookup fails)."""
        frames = self.frames()
        if not frames:
            return "(no transforms received)"
        return "\n".join(f"{p} -> {c} ({'static' if s else 'dynamic'})" for c, (p, s) in sorted(frames.items()))
