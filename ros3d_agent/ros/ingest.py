"""From synchronised RGB-D messages to posed keyframe candidates, off the callback path.

The subscription callbacks only hand message references to the synchroniser, which hands
matched sets to :meth:`IngestPipeline.submit` (append to a bounded deque, notify: microseconds).
Everything else runs on the ingest worker thread:

1. **Header checks** (O(1), every set): encodings, sizes, data length, intrinsics, stamp. A bad
   message is dropped and counted by reason; it never reaches numpy.
2. **TF at the image stamp**, non-blocking: a set whose camera pose is not resolvable *yet* stays
   pending (TF for time *t* arrives after the images of *t*) until ``tf_timeout``; then it is dropped
   as ``tf_timeout`` (TF stopped) or ``tf_missing`` (the frame is not connected to the fixed frame).
   A stamp older than the TF history is ``tf_too_old``; one older than ``max_stamp_age`` against the
   node clock is ``stale_stamp``. The pending deque is bounded (``tf_pending_overflow``).
3. **Keyframe gate** (pose only): most frames stop here, undecoded.
4. **Decode + decide** (candidates only): images → a validated :class:`Frame` (depth resampled
   onto the colour grid once, if it has its own intrinsics), its coverage voxels, the memory's
   decision; an admitted frame is reserved and handed to the admission worker (bounded queue:
   ``admission_backlog``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ros3d_agent.ros.conversions import ConversionError, camera_info_to_K
from ros3d_agent.ros.diagnostics import Counters
from ros3d_agent.ros.image_codec import (
    SUPPORTED_ENCODINGS,
    ImageCodecError,
    compressed_to_depth_m,
    compressed_to_numpy,
    image_to_depth_m,
    image_to_rgb,
)
from ros3d_agent.ros.keyframes import AdmissionWorker, KeyframeMemory, frame_coverage_keys
from ros3d_agent.ros.tf_buffer import TfBuffer, TfLookupError
from ros3d_agent.scene.errors import InvalidFrameError
from ros3d_agent.scene.geometry import align_depth_to_color
from ros3d_agent.scene.types import Frame

__all__ = ["FrameDrop", "DecoderConfig", "FrameDecoder", "MessageSet", "PosedSet", "IngestPipeline", "CandidateFilter"]

log = logging.getLogger(__name__)

_COLOR_RAW = frozenset({"rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC1", "mono16"})
_DEPTH_RAW = frozenset({"16UC1", "mono16", "32FC1", "64FC1"})


class FrameDrop(Exception):
    """A message set that cannot become a frame; ``reason`` is the counter name."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


@dataclass(frozen=True)
class MessageSet:
    """One synchronised set: colour, depth, colour CameraInfo and (optionally) depth CameraInfo."""

    stamp_ns: int
    color: Any
    depth: Any
    info: Any
    depth_info: Any | None
    received_mono: float


@dataclass(frozen=True)
class PosedSet:
    """A message set with its camera pose in the fixed frame (optical convention)."""

    msgs: MessageSet
    T_world_cam: NDArray[np.float64]
    camera_frame: str


@dataclass(frozen=True)
class DecoderConfig:
    """How messages become a :class:`Frame`."""

    color_compressed: bool = False
    depth_compressed: bool = False
    use_depth_info: bool = False
    depth_unit_m: float = 0.001
    min_depth_m: float = 0.1
    max_depth_m: float = 6.0

    @classmethod
    def from_params(cls, p: Any) -> "DecoderConfig":
        """From :class:`~ros3d_agent.ros.params.NodeParams`."""
        i = p.input
        return cls(i.color_transport == "compressed", i.depth_transport == "compressedDepth", i.use_depth_info,
                   i.depth_unit_m, i.min_depth_m, i.max_depth_m)


def _image_size_check(msg: Any, what: str, allowed: frozenset[str]) -> None:
    enc = str(msg.encoding)
    if enc not in allowed:
        raise FrameDrop(f"bad_{what}", f"{what} encoding {enc!r} is not supported here (use one of {', '.join(sorted(allowed))})")
    dtype, ch = SUPPORTED_ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise FrameDrop(f"bad_{what}", f"{what} image has size {w}x{h}")
    if step < w * ch * dtype.itemsize or len(msg.data) < step * h:
        raise FrameDrop(f"bad_{what}", f"{what} {enc} {w}x{h} step {step}: {len(msg.data)} bytes of data do not fit")


class FrameDecoder:
    """Header checks (cheap, every set) and full decoding (candidates only) of a message set."""

    def __init__(self, config: DecoderConfig | None = None) -> None:
        self.config = config or DecoderConfig()

    def precheck(self, m: MessageSet) -> None:
        """O(1) checks of a set; raises :class:`FrameDrop`."""
        cfg = self.config
        if m.stamp_ns <= 0:
            raise FrameDrop("bad_stamp", "the colour image has a zero stamp (the driver does not stamp its images)")
        if not cfg.color_compressed:
            _image_size_check(m.color, "color", _COLOR_RAW)
        elif len(m.color.data) == 0:
            raise FrameDrop("bad_color", "compressed colour image has an empty payload")
        if not cfg.depth_compressed:
            _image_size_check(m.depth, "depth", _DEPTH_RAW)
        elif len(m.depth.data) == 0:
            raise FrameDrop("bad_depth", "compressed depth image has an empty payload")
        color_hw = None if cfg.color_compressed else (int(m.color.height), int(m.color.width))
        try:
            camera_info_to_K(m.info, color_hw)
            if cfg.use_depth_info and m.depth_info is not None:
                depth_hw = None if cfg.depth_compressed else (int(m.depth.height), int(m.depth.width))
                camera_info_to_K(m.depth_info, depth_hw)
        except ConversionError as exc:
            reason = "size_mismatch" if "but the image is" in str(exc) else "bad_intrinsics"
            raise FrameDrop(reason, str(exc)) from None
        if not cfg.use_depth_info and not (cfg.color_compressed or cfg.depth_compressed):
            if (m.color.height, m.color.width) != (m.depth.height, m.depth.width):
                raise FrameDrop("size_mismatch", f"depth {m.depth.width}x{m.depth.height} differs from colour "
                                f"{m.color.width}x{m.color.height}; align depth to colour or set input.use_depth_info")

    def decode(self, posed: PosedSet) -> Frame:
        """Images → a validated :class:`Frame` (raises :class:`FrameDrop`)."""
        cfg, m = self.config, posed.msgs
        try:
            rgb = compressed_to_numpy(m.color) if cfg.color_compressed else image_to_rgb(m.color)
            if rgb.ndim == 2:
                rgb = np.repeat(rgb[:, :, None], 3, axis=2)
            if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
                raise FrameDrop("bad_color", f"colour decoded to {rgb.dtype} {rgb.shape}, not RGB")
        except ImageCodecError as exc:
            raise FrameDrop("bad_color", str(exc)) from None
        try:
            if cfg.depth_compressed:
                depth = compressed_to_depth_m(m.depth)
            else:
                depth = image_to_depth_m(m.depth)
                if str(m.depth.encoding) in ("16UC1", "mono16") and cfg.depth_unit_m != 0.001:
                    depth *= np.float32(cfg.depth_unit_m / 0.001)
        except ImageCodecError as exc:
            raise FrameDrop("bad_depth", str(exc)) from None
        try:
            K = camera_info_to_K(m.info, rgb.shape[:2])
            if depth.shape != rgb.shape[:2]:
                if not cfg.use_depth_info or m.depth_info is None:
                    raise FrameDrop("size_mismatch", f"depth {depth.shape[1]}x{depth.shape[0]} differs from colour {rgb.shape[1]}x{rgb.shape[0]}")
            if cfg.use_depth_info and m.depth_info is not None:
                K_depth = camera_info_to_K(m.depth_info, depth.shape)
                depth = align_depth_to_color(depth, K_depth, K, rgb.shape[:2])
        except ConversionError as exc:
            reason = "size_mismatch" if "but the image is" in str(exc) else "bad_intrinsics"
            raise FrameDrop(reason, str(exc)) from None
        depth[(depth < cfg.min_depth_m) | (depth > cfg.max_depth_m)] = 0.0
        if not np.any(depth > 0):
            raise FrameDrop("no_valid_depth", f"no depth reading in [{cfg.min_depth_m}, {cfg.max_depth_m}] m")
        try:
            return Frame(rgb=rgb, depth=depth, K=K, T_world_cam=posed.T_world_cam, stamp=m.stamp_ns, frame_id=str(m.stamp_ns))
        except InvalidFrameError as exc:
            raise FrameDrop("bad_frame", str(exc)) from None


class IngestPipeline:
    """Pending-TF queue and the ingest worker (see module doc).

    Args:
        tf: the TF buffer the TF callbacks fill.
        fixed_frame: frame the camera pose is expressed in.
        camera_frame: optical frame override ("" = the colour image's header.frame_id).
        decoder: header checks.
        sink: receives every :class:`PosedSet` (on the worker thread).
        counters: where drops and progress are counted (``drop.<reason>``, ``frames.posed``).
        tf_timeout_s: wall time a set may wait for TF.
        pending_max: sets waiting for TF at most.
        max_stamp_age_ns: 0 = no staleness check; else sets older than this against ``now_ns()`` are dropped.
        now_ns: the node clock (sim time aware).
    """

    def __init__(
        self,
        tf: TfBuffer,
        fixed_frame: str,
        camera_frame: str,
        decoder: FrameDecoder,
        sink: Callable[[PosedSet], None],
        counters: Counters,
        *,
        tf_timeout_s: float = 0.5,
        pending_max: int = 60,
        max_stamp_age_ns: int = 0,
        now_ns: Callable[[], int] = time.time_ns,
        name: str = "ingest",
    ) -> None:
        self.tf = tf
        self.fixed_frame = fixed_frame
        self.camera_frame = camera_frame
        self.decoder = decoder
        self.sink = sink
        self.counters = counters
        self.tf_timeout_s = float(tf_timeout_s)
        self.pending_max = int(pending_max)
        self.max_stamp_age_ns = int(max_stamp_age_ns)
        self.now_ns = now_ns
        self._pending: deque[MessageSet] = deque()
        self._cond = threading.Condition()
        self._running = False
        self._thread: threading.Thread | None = None
        self._name = name
        self._last_tf_log = -1e9
        self._chain_logged = False
        #: the resolved TF chain (for diagnostics), e.g. "map -> odom -> base_link -> ..."
        self.chain = ""
        #: last frame-drop message per reason (diagnostics, logs)
        self.last_error: dict[str, str] = {}
        self._last_log: dict[str, float] = {}

    # -- callback side -----------------------------------------------------------------------------
    def submit(self, msgs: MessageSet) -> None:
        """Queue a synchronised set (callback path: append + notify)."""
        with self._cond:
            self._pending.append(msgs)
            if len(self._pending) > self.pending_max:
                self._pending.popleft()
                self.counters.inc("drop.tf_pending_overflow")
            self._cond.notify()

    def tf_arrived(self) -> None:
        """New TF may unblock pending sets (callback path)."""
        with self._cond:
            if self._pending:
                self._cond.notify()

    def reset(self, reason: str = "time_jump") -> None:
        """Drop every pending set (counted under ``reason``)."""
        with self._cond:
            n = len(self._pending)
            self._pending.clear()
        if n:
            self.counters.inc(f"drop.{reason}", n)

    def pending(self) -> int:
        with self._cond:
            return len(self._pending)

    # -- worker ------------------------------------------------------------------------------------
    def start(self) -> None:
        with self._cond:
            if self._running:
                return
            self._running = True
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._running = False
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.reset("stopped")

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._running:
                    return
                self._cond.wait(0.05)
                if not self._running:
                    return
            try:
                self.process_pending()
            except Exception:  # never let a bug end ingestion silently
                log.exception("ingest worker error")
                self.counters.inc("drop.internal_error")

    def _drop(self, reason: str, detail: str) -> None:
        self.counters.inc(f"drop.{reason}")
        self.last_error[reason] = detail
        now = time.monotonic()
        if now - self._last_log.get(reason, -1e9) > 10.0:  # one line per reason per 10 s
            self._last_log[reason] = now
            log.warning("dropping frame (%s): %s", reason, detail)

    def process_pending(self) -> int:
        """Resolve what can be resolved now; returns how many sets left the queue.

        Sets are tried oldest first. One that must wait for TF blocks only the later sets of the
        *same* camera frame (their stamps are newer still), so a camera without TF cannot stall
        another one, and a stalled stream costs one lookup per wake-up, not one per pending set.
        """
        with self._cond:
            snapshot = list(self._pending)
        blocked: set[str] = set()
        finished: list[MessageSet] = []
        for m in snapshot:
            camera = self._camera_of(m)
            if camera in blocked:
                continue
            if self._try(m, camera) == "wait":
                blocked.add(camera)
            else:
                finished.append(m)
        if finished:
            gone = {id(m) for m in finished}
            with self._cond:
                self._pending = deque(m for m in self._pending if id(m) not in gone)
        return len(finished)

    def _camera_of(self, m: MessageSet) -> str:
        if self.camera_frame:
            return self.camera_frame
        try:
            return str(m.color.header.frame_id).lstrip("/")
        except AttributeError:
            return ""

    def _try(self, m: MessageSet, camera: str) -> str:
        """``done`` (posed or dropped) or ``wait`` (TF may still come)."""
        try:
            self.decoder.precheck(m)
        except FrameDrop as exc:
            self._drop(exc.reason, exc.detail)
            return "done"
        if self.max_stamp_age_ns > 0:
            age = self.now_ns() - m.stamp_ns
            if age > self.max_stamp_age_ns:
                self._drop("stale_stamp", f"frame stamped {age / 1e9:.2f} s before the node clock "
                           f"(limit input.max_stamp_age_sec={self.max_stamp_age_ns / 1e9:g}; replaying a bag? use use_sim_time)")
                return "done"
        if not camera:
            self._drop("tf_missing", "the colour image has an empty header.frame_id and camera_frame is not set")
            return "done"
        try:
            T = self.tf.lookup(self.fixed_frame, camera, m.stamp_ns)
        except TfLookupError as exc:
            if not exc.may_heal:
                self._drop("tf_too_old", str(exc))
                return "done"
            waited = time.monotonic() - m.received_mono
            if waited > self.tf_timeout_s:
                reason = "tf_timeout" if exc.reason == "extrapolation_future" else "tf_missing"
                self._drop(reason, f"{exc} (waited {waited:.2f} s, tf.timeout_sec={self.tf_timeout_s:g}); TF tree:\n{self.tf.describe()}")
                return "done"
            return "wait"
        if not self._chain_logged:
            self._chain_logged = True
            self.chain = " -> ".join(self.tf.chain(self.fixed_frame, camera))
            log.info("camera pose resolved through TF chain %s", self.chain)
        self.counters.inc("frames.posed")
        self.sink(PosedSet(m, T, camera))
        return "done"


class CandidateFilter:
    """The ingest sink: keyframe gate → decode → coverage decision → reservation → admission queue."""

    def __init__(self, memory: KeyframeMemory, decoder: FrameDecoder, admission: AdmissionWorker, counters: Counters,
                 on_drop: Callable[[str, str], None] | None = None) -> None:
        self.memory = memory
        self.decoder = decoder
        self.admission = admission
        self.counters = counters
        self.on_drop = on_drop
        #: seconds spent deciding each candidate (decode + coverage), for diagnostics/benchmarks
        self.decide_s: deque[float] = deque(maxlen=500)

    def __call__(self, posed: PosedSet) -> None:
        reason = self.memory.gate(posed.T_world_cam, posed.msgs.stamp_ns)
        if reason is None:
            self.counters.inc("frames.redundant")
            return
        t0 = time.perf_counter()
        self.counters.inc("frames.candidates")
        try:
            frame = self.decoder.decode(posed)
        except FrameDrop as exc:
            self.counters.inc(f"drop.{exc.reason}")
            if self.on_drop:
                self.on_drop(exc.reason, exc.detail)
            return
        voxels = frame_coverage_keys(frame, self.memory.policy)
        admit, gain = self.memory.decide(reason, voxels)
        self.decide_s.append(time.perf_counter() - t0)
        if not admit:
            self.counters.inc("frames.no_new_coverage" if voxels.size else "drop.no_valid_depth")
            return
        res = self.memory.reserve(frame.stamp, frame.T_world_cam, voxels, reason)
        if not self.admission.submit(res, frame):
            self.counters.inc("drop.admission_backlog")


def message_stamp_ns(msg: Any) -> int:
    """Header stamp of any stamped message in ns."""
    st = msg.header.stamp
    return int(st.sec) * 1_000_000_000 + int(st.nanosec)
