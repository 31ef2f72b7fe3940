"""What the node tells ``/diagnostics``: counters, latency percentiles, memory, and a health level.

Users' most common reports about perception nodes are "no output" with no hint why (QoS mismatch,
missing TF, wrong encoding). So every drop has a named counter, and the statuses published here say
in words what is wrong: no frames arriving, frames arriving but dropped (by reason), TF missing,
queries refused. Pure Python except :func:`to_diagnostic_array`, which builds the message.
"""

from __future__ import annotations

import math
import sys
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "Counters",
    "percentile",
    "gpu_memory",
    "process_rss_mb",
    "StatusEntry",
    "NodeSnapshot",
    "node_statuses",
    "to_diagnostic_array",
    "OK",
    "WARN",
    "ERROR",
    "STALE",
]

OK: Final = 0
WARN: Final = 1
ERROR: Final = 2
STALE: Final = 3


class Counters:
    """Thread-safe named counters (callbacks and workers increment, the timer reads)."""

    def __init__(self) -> None:
        self._c: Counter[str] = Counter()
        self._lock = threading.Lock()

    def inc(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._c[key] += n

    def update(self, items: Mapping[str, int]) -> None:
        with self._lock:
            self._c.update(items)

    def get(self, key: str) -> int:
        with self._lock:
            return self._c.get(key, 0)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._c)

    def clear(self) -> None:
        with self._lock:
            self._c.clear()


def percentile(values: Iterable[float], q: float) -> float:
    """The ``q``-th percentile (0–100, nearest rank) of ``values``; NaN when empty."""
    data = sorted(v for v in values if math.isfinite(v))
    if not data:
        return math.nan
    rank = max(1, math.ceil(q / 100.0 * len(data)))
    return data[min(rank, len(data)) - 1]


def gpu_memory() -> dict[str, float]:
    """CUDA memory in MB if torch is already loaded and a GPU is used (never imports torch)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return {}
    try:
        if not torch.cuda.is_available() or not torch.cuda.is_initialized():
            return {}
        dev = torch.cuda.current_device()
        return {
            "gpu_allocated_mb": torch.cuda.memory_allocated(dev) / 2**20,
            "gpu_reserved_mb": torch.cuda.memory_reserved(dev) / 2**20,
            "gpu_peak_mb": torch.cuda.max_memory_allocated(dev) / 2**20,
        }
    except Exception:  # diagnostics must never fail the node
        return {}


def process_rss_mb() -> float:
    """Resident memory of this process (Linux /proc), NaN elsewhere."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        import os

        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return math.nan


@dataclass
class StatusEntry:
    """One ``DiagnosticStatus``: name, level, message and key/value pairs."""

    name: str
    level: int
    message: str
    values: dict[str, Any] = field(default_factory=dict)


@dataclass
class NodeSnapshot:
    """Everything the statuses are computed from, collected by the node once per period."""

    node_name: str
    state: str
    counters: dict[str, int]
    frames_in_recent: int = 0
    seconds_since_frame: float = math.inf
    keyframes: int = 0
    keyframe_bytes: int = 0
    keyframes_pending: int = 0
    admission_queue: int = 0
    cloud: dict[str, float] = field(default_factory=dict)
    query_queue: int = 0
    query_busy: bool = False
    query_counts: dict[str, int] = field(default_factory=dict)
    latencies_s: list[float] = field(default_factory=list)
    encode_s: list[float] = field(default_factory=list)
    model: dict[str, Any] = field(default_factory=dict)
    tf_frames: int = 0
    tf_chain: str = ""


def _drops(counters: Mapping[str, int], prefix: str) -> dict[str, int]:
    return {k[len(prefix):]: v for k, v in counters.items() if k.startswith(prefix) and v}


def node_statuses(s: NodeSnapshot) -> list[StatusEntry]:
    """Ingest, TF, keyframes, queries and model statuses with their health levels."""
    c = s.counters
    active = s.state == "active"
    base = s.node_name
    out: list[StatusEntry] = []

    # -- ingest --------------------------------------------------------------------------------
    drops = _drops(c, "drop.")
    frames_in = c.get("frames.synced", 0)
    values: dict[str, Any] = {
        "color_in": c.get("in.color", 0), "depth_in": c.get("in.depth", 0), "info_in": c.get("in.color_info", 0),
        "frames_synced": frames_in, "frames_posed": c.get("frames.posed", 0),
        "candidates": c.get("frames.candidates", 0), "keyframes_admitted": c.get("keyframes.admitted", 0),
        "frames_dropped": sum(drops.values()), "qos_incompatible": c.get("qos.incompatible", 0),
        "time_jumps": c.get("time_jumps", 0),
    }
    values.update({f"dropped.{k}": v for k, v in sorted(drops.items())})
    values.update({f"sync_dropped.{k}": v for k, v in sorted(_drops(c, "sync.").items())})
    if not active:
        level, msg = OK, f"node is {s.state}: not subscribed"
    elif c.get("qos.incompatible", 0):
        level, msg = ERROR, "a publisher has incompatible QoS (see qos.images / qos.camera_info)"
    elif s.seconds_since_frame > 5.0:
        level, msg = WARN, ("no synchronised frames yet: check topics, QoS and sync.slop_sec" if frames_in == 0
                            else f"no synchronised frame for {s.seconds_since_frame:.0f} s")
    elif drops and s.frames_in_recent == 0:
        level, msg = WARN, "frames arrive but all are dropped: " + ", ".join(f"{k} {v}" for k, v in sorted(drops.items()))
    else:
        level, msg = OK, f"{frames_in} frames synchronised"
    out.append(StatusEntry(f"{base}: ingest", level, msg, values))

    # -- TF ------------------------------------------------------------------------------------
    tf_miss = {k: v for k, v in drops.items() if k.startswith("tf_")}
    tf_values = {"frames_known": s.tf_frames, "chain": s.tf_chain or "(not resolved yet)",
                 "tf_rejected": c.get("tf.rejected", 0), "tf_messages": c.get("in.tf", 0) + c.get("in.tf_static", 0)}
    tf_values.update({f"miss.{k}": v for k, v in tf_miss.items()})
    if active and frames_in and not c.get("frames.posed", 0) and tf_miss:
        tf_level, tf_msg = ERROR, "no frame could be placed in the fixed frame: TF is missing (see miss.*)"
    elif active and tf_miss:
        tf_level, tf_msg = WARN, f"{sum(tf_miss.values())} frame(s) dropped for TF"
    else:
        tf_level, tf_msg = OK, "TF ok" if s.tf_chain else "waiting for TF"
    out.append(StatusEntry(f"{base}: tf", tf_level, tf_msg, tf_values))

    # -- keyframes -----------------------------------------------------------------------------
    kf_values = {"keyframes": s.keyframes, "keyframe_mb": round(s.keyframe_bytes / 2**20, 3),
                 "reserved": s.keyframes_pending, "admission_queue": s.admission_queue,
                 "evicted": c.get("keyframes.evicted", 0), "memory_resets": c.get("memory_resets", 0),
                 "encode_ms_p50": round(percentile(s.encode_s, 50) * 1e3, 2) if s.encode_s else "n/a"}
    kf_values.update({f"cloud.{k}": v for k, v in s.cloud.items()})
    out.append(StatusEntry(f"{base}: keyframes", OK if s.keyframes or not active else WARN,
                           f"{s.keyframes} keyframes" if s.keyframes else "memory is empty: queries will fail until frames are admitted",
                           kf_values))

    # -- queries -------------------------------------------------------------------------------
    q = dict(s.query_counts)
    lat = s.latencies_s
    q_values: dict[str, Any] = {"queue_depth": s.query_queue, "running": s.query_busy,
                                "latency_p50_s": round(percentile(lat, 50), 4) if lat else "n/a",
                                "latency_p95_s": round(percentile(lat, 95), 4) if lat else "n/a",
                                "answered": len(lat)}
    q_values.update({f"count.{k}": v for k, v in sorted(q.items())})
    refused = q.get("rejected_queue_full", 0)
    out.append(StatusEntry(f"{base}: queries", WARN if refused else OK,
                           f"{refused} quer{'y' if refused == 1 else 'ies'} refused (queue full)" if refused else "ok", q_values))

    # -- model ---------------------------------------------------------------------------------
    m_values = {str(k): v for k, v in s.model.items()}
    m_values.update(gpu_memory())
    m_values["process_rss_mb"] = round(process_rss_mb(), 1)
    loaded = bool(s.model.get("loaded"))
    out.append(StatusEntry(f"{base}: model", ERROR if active and not loaded else OK,
                           "loaded" if loaded else ("not loaded (node inactive)" if not active else "not loaded"), m_values))
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def to_diagnostic_array(entries: Iterable[StatusEntry], stamp: Any, hardware_id: str) -> Any:
    """``diagnostic_msgs/DiagnosticArray`` of the statuses."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    arr = DiagnosticArray()
    arr.header.stamp = stamp
    statuses = []
    for e in entries:
        st = DiagnosticStatus()
        st.level = bytes([int(e.level)])
        st.name = e.name
        st.message = e.message
        st.hardware_id = hardware_id
        st.values = [KeyValue(key=str(k), value=_fmt(v)) for k, v in e.values.items()]
        statuses.append(st)
    arr.status = statuses
    return arr
