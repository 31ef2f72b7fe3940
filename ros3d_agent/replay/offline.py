"""Deterministic replay: the bag read directly and driven through the node's own code, without DDS.

Every message of the bag, in log-time order, goes where the node's callbacks would put it: images
and CameraInfo into :class:`~ros3d_agent.ros.time_sync.ApproximateTimeSync`, TF into
:class:`~ros3d_agent.ros.tf_buffer.TfBuffer`, synchronised sets into
:class:`~ros3d_agent.ros.ingest.IngestPipeline` → :class:`~ros3d_agent.ros.ingest.CandidateFilter`
→ :class:`~ros3d_agent.ros.keyframes.KeyframeMemory` / :class:`~ros3d_agent.ros.keyframes.AdmissionWorker`
(the engine's ``encode_keyframe``) → :class:`~ros3d_agent.ros.memory_cloud.SceneCloud`, all built
from the same :class:`~ros3d_agent.ros.params.NodeParams` (the same params file and overrides as
the live node). Questions are answered when the bag clock reaches their ``ask_at``.

What is done differently from the live node, and why (each one removes a dependence on wall time,
so two runs give identical answers, boxes, scores and counters):

* the ingest worker does not run on its own thread: :meth:`IngestPipeline.process_pending` is
  called after each message, and the keyframe admission queue is drained before the next message;
* a set waiting for TF waits until the TF arrives or the bag ends (no ``tf.timeout_sec`` drops,
  which the live node measures in wall time); sets still unresolved at the end count as ``tf_missing``;
* the node's staleness check compares stamps with the *bag* clock;
* proposals are recomputed at each grounding/caption question instead of on a wall-clock rate limit.

The query itself follows the node's ``_run_query``: views from the keyframe memory
(``query.default_views`` by ``query.view_selection``), the scene cloud's proposals, the situation or
caption object taken from the same question text the real-time client sends.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from ros3d_agent.inference.answer import Answer, GroundedBox
from ros3d_agent.replay.bag_source import BagReadError, BagSource
from ros3d_agent.replay.results import QuestionOutcome, ReplayRun, best_object_for_box, box6, node_counts
from ros3d_agent.replay.scenario import ReplayQuestion, TopicMap
from ros3d_agent.ros.diagnostics import Counters
from ros3d_agent.ros.ingest import CandidateFilter, DecoderConfig, FrameDecoder, IngestPipeline, MessageSet, message_stamp_ns
from ros3d_agent.ros.keyframes import AdmissionWorker, Keyframe, KeyframeMemory, KeyframePolicy
from ros3d_agent.ros.memory_cloud import CloudConfig, SceneCloud
from ros3d_agent.ros.params import NodeParams
from ros3d_agent.ros.tf_buffer import TfBuffer
from ros3d_agent.ros.time_sync import ApproximateTimeSync

__all__ = ["engine_config_from_params", "OfflineReplay", "run_offline", "fused_cloud_at_stamps"]

log = logging.getLogger(__name__)

_GROUNDING = ("ground", "multi_ground")
#: admission queue bound offline: large, so no candidate is ever refused for lack of room
_ADMISSION_QUEUE = 10_000
_SETTLE_TIMEOUT_S = 600.0


def engine_config_from_params(params: NodeParams) -> Any:
    """The engine the node's ``load_engine`` builds from the ``model.*`` and ``query.*`` parameters."""
    from ros3d_agent.inference.engine import EngineConfig

    m = params.model
    return EngineConfig(checkpoint=m.checkpoint or None, preset=m.preset or None, allow_random_weights=m.allow_random_weights,
                        device=m.device, dtype=m.dtype, max_views=params.query.max_views, max_new_tokens=m.max_new_tokens,
                        multi_threshold=m.multi_threshold, seed=m.seed)


class OfflineReplay:
    """The node's ingestion and query path, driven message by message (see the module doc).

    Args:
        params: the node's parameters (fixed frame, sync, TF, keyframes, fusion, proposals, query).
        engine: a loaded :class:`~ros3d_agent.inference.engine.SceneEngine` (or anything with its contract).
    """

    def __init__(self, params: NodeParams, engine: Any) -> None:
        p = self.params = params
        self.engine = engine
        self.counters = Counters()
        self.bag_now_ns = 0
        self.tf = TfBuffer(int(p.tf.cache_sec * 1e9), int(p.tf.time_jump_sec * 1e9))
        self.memory = KeyframeMemory(KeyframePolicy.from_params(p.keyframes, p.input.max_depth_m))
        self.cloud = SceneCloud(CloudConfig.from_params(p))
        self.admission = AdmissionWorker(self.memory, engine.encode_keyframe, self._on_admitted, queue_size=_ADMISSION_QUEUE,
                                         name="replay-admission")
        decoder = FrameDecoder(DecoderConfig.from_params(p))
        sink = CandidateFilter(self.memory, decoder, self.admission, self.counters)
        self.ingest = IngestPipeline(self.tf, p.fixed_frame, p.camera_frame, decoder, sink, self.counters,
                                     tf_timeout_s=p.tf.timeout_sec, pending_max=p.tf.pending_max,
                                     max_stamp_age_ns=int(p.input.max_stamp_age_sec * 1e9), now_ns=lambda: self.bag_now_ns,
                                     name="replay-ingest")
        self.streams = ["color", "depth", "color_info"] + (["depth_info"] if p.input.use_depth_info else [])
        self.sync = ApproximateTimeSync(self.streams, int(p.sync.slop_sec * 1e9), p.sync.queue_size, self._on_synced,
                                        on_time_jump=lambda old, new: self._on_time_jump("images"),
                                        time_jump_ns=int(p.tf.time_jump_sec * 1e9))
        self.admission.start()

    # -- the node's callbacks ------------------------------------------------------------------------
    def _on_synced(self, stamp_ns: int, msgs: list[Any]) -> None:
        self.counters.inc("frames.synced")
        # received "infinitely late": a set never times out waiting for TF (see the module doc)
        self.ingest.submit(MessageSet(stamp_ns, msgs[0], msgs[1], msgs[2], msgs[3] if len(msgs) > 3 else None, math.inf))

    def _on_admitted(self, frame: Any, kf: Keyframe, evicted: list[Keyframe]) -> None:
        self.counters.inc("keyframes.admitted")
        if evicted:
            self.counters.inc("keyframes.evicted", len(evicted))
        self.cloud.add_frame(frame)

    def _on_time_jump(self, source: str) -> None:
        """As the node: a stamp went backwards (a bag with two recordings): restart the time-ordered buffers."""
        self.counters.inc("time_jumps")
        if source == "images":
            self.tf.clear(keep_static=True)
        else:
            self.sync.reset()
        self.ingest.reset("time_jump")
        if self.params.ingest.reset_memory_on_time_jump:
            self._settle()
            self.memory.clear()
            self.cloud.clear()

    # -- feeding ---------------------------------------------------------------------------------------
    def feed(self, role: str, msg: Any, log_time_ns: int) -> None:
        """One deserialised message of input ``role`` (color, depth, color_info, depth_info, tf, tf_static)."""
        self.bag_now_ns = max(self.bag_now_ns, int(log_time_ns))
        if role in ("tf", "tf_static"):
            static = role == "tf_static"
            self.counters.inc("in.tf_static" if static else "in.tf")
            upd = self.tf.add_transforms(msg.transforms, static=static)
            if upd.rejected:
                self.counters.inc("tf.rejected", upd.rejected)
            if upd.time_jump:
                self._on_time_jump("tf")
        else:
            self.counters.inc(f"in.{role}")
            self.sync.add(self.streams.index(role), message_stamp_ns(msg), msg)
        if self.ingest.pending():
            self.ingest.process_pending()
        self._settle()

    def _settle(self) -> None:
        """Wait until every reserved keyframe is encoded and committed (keeps the order of effects fixed)."""
        deadline = time.monotonic() + _SETTLE_TIMEOUT_S
        while self.memory.pending() > 0:
            self.admission.wait_idle(0.05)
            if time.monotonic() > deadline:
                raise RuntimeError(f"keyframe admission did not finish within {_SETTLE_TIMEOUT_S:.0f} s")

    def finish(self) -> None:
        """End of the bag: resolve what TF allows, count the rest as ``tf_missing``, drain admission."""
        if self.ingest.pending():
            self.ingest.process_pending()
        self.ingest.reset("tf_missing")
        self._settle()

    def close(self) -> None:
        self.admission.stop()

    # -- questions -------------------------------------------------------------------------------------
    def counts(self) -> dict[str, Any]:
        c = self.counters.snapshot()
        c.update({f"sync.{k}": v for k, v in self.sync.drops.items()})
        return node_counts(c, keyframes=len(self.memory))

    def ask(self, q: ReplayQuestion, asked_at_s: float, *, bag_complete: bool = True) -> QuestionOutcome:
        """Answer ``q`` over the memory as it is now, the way the node's query worker does."""
        self._settle()
        p, r = self.params, q.record
        t0 = time.perf_counter()
        caption: dict[str, Any] | None = None
        views = min(p.query.default_views, p.query.max_views)
        kfs = self.memory.select(views, p.query.view_selection)
        text = r.question if r.task == "caption" else q.ask_text()  # a caption's text names its object once chosen
        if not kfs:
            answer = Answer.failure(text, r.task, f"empty_memory: no keyframes yet (counts: {self.counts()['dropped'] or 'no drops'})")
        else:
            snap = self.cloud.proposals()
            if r.task in _GROUNDING + ("caption",):
                self.cloud.update_proposals(force=True)
                snap = self.cloud.proposals()
            situation, box = None, None
            if r.task == "situated_qa" and r.situation is not None:
                situation = r.situation.text
            if r.task == "caption":
                pick = best_object_for_box(list(zip(snap.ids, snap.boxes)), r.box) if r.box is not None else None
                if pick is not None:
                    pid, box, iou = pick
                    text = q.ask_text(pid)
                    caption = {"id": int(pid), "box": box6(box), "iou_to_gt": iou, "source": "scene memory proposals"}
            if r.task == "caption" and box is None:
                answer = Answer.failure(text, r.task, "no_proposals: the scene memory has no proposal to caption")
            else:
                question = r.question if r.task == "situated_qa" else text
                answer = self.engine.answer(question, r.task, [k.features for k in kfs], list(snap.boxes), situation=situation, box=box)
                id_map = snap.id_map()
                answer.objects = [GroundedBox(o.box, o.score, id_map.get(o.proposal_id, o.proposal_id), o.label) for o in answer.objects]
                if not answer.keyframe_stamps and answer.success:
                    answer.keyframe_stamps = [k.stamp_ns for k in kfs]
        answer.question = text
        answer.query_id = r.id
        return QuestionOutcome(q, answer, text, asked_at_s, time.perf_counter() - t0, len(self.memory), caption, bag_complete)


def run_offline(
    source: BagSource,
    topics: TopicMap,
    questions: Sequence[ReplayQuestion],
    params: NodeParams,
    *,
    engine: Any = None,
    on_answer: Callable[[QuestionOutcome], None] | None = None,
) -> ReplayRun:
    """Replay ``source`` deterministically and answer ``questions`` (see the module doc).

    A truncated or corrupt bag does not raise: reading stops there, the questions still pending are
    answered over what was read (``bag_complete`` False on each), and ``ReplayRun.bag_error`` says why.
    """
    from ros3d_agent.inference.engine import SceneEngine

    t_start = time.perf_counter()
    wanted = source.check_topics(dict(topics.items(params.input.use_depth_info)))
    own_engine = engine is None
    if own_engine:
        engine = SceneEngine(engine_config_from_params(params))
        if params.model.warmup:
            engine.warmup()
    replay = OfflineReplay(params, engine)
    start = source.start_ns
    timed = sorted((q for q in questions if q.ask_at is not None), key=lambda q: q.ask_at)
    at_end = [q for q in questions if q.ask_at is None]
    outcomes: dict[str, QuestionOutcome] = {}
    bag_error: str | None = None
    last_ns = start

    def answer(q: ReplayQuestion, at_s: float, complete: bool = True) -> None:
        o = replay.ask(q, at_s, bag_complete=complete)
        outcomes[q.id] = o
        if on_answer is not None:
            on_answer(o)

    try:
        try:
            for m in source.messages(wanted):
                while timed and start + round(timed[0].ask_at * 1e9) <= m.log_time_ns:
                    q = timed.pop(0)
                    answer(q, q.ask_at)
                replay.feed(m.role, source.deserialize(m), m.log_time_ns)
                last_ns = m.log_time_ns
        except BagReadError as exc:  # reported by the caller with the results; the questions still get answers
            bag_error = str(exc)
            log.debug("%s", exc)
        replay.finish()
        end_s = (last_ns - start) / 1e9
        for q in timed:  # due after the last message read
            answer(q, q.ask_at if bag_error is None else end_s, complete=bag_error is None)
        for q in at_end:
            answer(q, end_s, complete=bag_error is None)
        counts = replay.counts()
        cloud = replay.cloud.cloud()
        if counts["frames_synced"] and not counts["frames_posed"]:
            source.notes.append(f"no frame could be placed in the fixed frame {params.fixed_frame!r} (camera frame "
                                f"{params.camera_frame or 'from the images'}); the bag's TF tree:\n{replay.tf.describe()}\n"
                                "choose the fixed frame with --fixed-frame")
    finally:
        replay.close()
        info = dict(getattr(engine, "info", {}) or {})
        if own_engine:
            engine.release()
    ordered = [outcomes[q.id] for q in questions if q.id in outcomes]
    return ReplayRun("offline", ordered, counts, info, time.perf_counter() - t_start, bag_error, cloud,
                     notes=list(source.notes))


def fused_cloud_at_stamps(source: BagSource, topics: TopicMap, params: NodeParams, stamps: set[int]) -> tuple[Any, Any] | None:
    """The fused cloud of the frames stamped ``stamps`` (the keyframes a node's answers name).

    Real-time replay cannot see inside the node; its answers list the keyframe stamps they used, so
    the BEV picture is drawn from those frames, found in the bag through the same sync and TF code.
    None when no such frame could be placed.
    """
    from ros3d_agent.ros.ingest import FrameDrop

    if not stamps:
        return None
    p = params
    counters = Counters()
    tf = TfBuffer(int(p.tf.cache_sec * 1e9), int(p.tf.time_jump_sec * 1e9))
    decoder = FrameDecoder(DecoderConfig.from_params(p))
    cfg = CloudConfig.from_params(p)
    cloud = SceneCloud(CloudConfig(cfg.voxel_size, cfg.stride, cfg.max_depth, cfg.max_voxels, proposals=False))

    def sink(posed: Any) -> None:
        if posed.msgs.stamp_ns in stamps:
            try:
                cloud.add_frame(decoder.decode(posed))
            except FrameDrop:
                pass

    ingest = IngestPipeline(tf, p.fixed_frame, p.camera_frame, decoder, sink, counters, tf_timeout_s=p.tf.timeout_sec,
                            pending_max=max(p.tf.pending_max, 1000), name="replay-bev")
    streams = ["color", "depth", "color_info"] + (["depth_info"] if p.input.use_depth_info else [])
    sync = ApproximateTimeSync(streams, int(p.sync.slop_sec * 1e9), max(p.sync.queue_size, 30),
                               lambda st, ms: ingest.submit(MessageSet(st, ms[0], ms[1], ms[2], ms[3] if len(ms) > 3 else None, math.inf)))
    wanted = source.check_topics(dict(topics.items(p.input.use_depth_info)))
    try:
        for m in source.messages(wanted):
            msg = source.deserialize(m)
            if m.role in ("tf", "tf_static"):
                tf.add_transforms(msg.transforms, static=m.role == "tf_static")
            else:
                sync.add(streams.index(m.role), message_stamp_ns(msg), msg)
            if ingest.pending():
                ingest.process_pending()
    except BagReadError as exc:
        log.warning("BEV cloud: %s", exc)
    ingest.process_pending()
    xyz, rgb = cloud.cloud()
    return (xyz, rgb) if xyz.shape[0] else None
