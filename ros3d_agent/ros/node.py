"""The ``ros3d_agent`` lifecycle node: RGB-D + TF in, grounded answers out.

States (REP-2005 managed node), and what each transition does:

* **configure**: read and validate every parameter (one readable list of problems, or FAILURE),
  check the TF message package, create the output publishers and the diagnostics timer. Cheap.
* **activate**: load the model from a local checkpoint (nothing is downloaded) and warm it up,
  start the workers, then subscribe to the camera and TF and open the query interfaces (the
  ``~/ask`` action, the ``~/query`` service and the ``~/question`` topic). A model that fails to
  load makes the transition fail with the reason; the node stays inactive.
* **deactivate**: close the inputs and query interfaces, answer every waiting query with
  ``node_inactive``, stop the workers, release the model and its GPU memory, forget keyframes.
* **cleanup / shutdown**: drop publishers and timers as well.

Queries: ``~/ask`` (AskScene action: stage feedback, cancel, deadline), ``~/query`` (AskScene
service), ``~/question`` (std_msgs/String, default task); ``~/reset_memory`` (std_srvs/Trigger)
forgets the keyframes and the fused cloud. Every answer, whatever its source, is
published on ``~/answer`` (SceneAnswer) and ``~/answer_json``; grounded objects also on ``~/objects``
(GroundedObjectArray) and ``~/markers`` (MarkerArray), in the fixed frame, stamped with the newest
keyframe used. ``situated_qa`` takes AskScene's ``situation`` field, ``caption`` its ``object_id`` (a
proposal id from an earlier grounding answer, ``GroundedObject.id``); a client that leaves them empty
(and the plain ``~/question`` topic) may write "situation: <text> question: <text>" or "#<id>" in the
question text instead.

Threads: subscription callbacks (one mutually exclusive group) only move message references into
the synchroniser; the ingest worker resolves TF and decides keyframes; the admission worker
encodes keyframes, fuses them and refreshes proposals; the query worker runs the model. Action
and service handlers are coroutines that await the query's result, so a waiting request holds no
executor thread. See ``ros3d_agent/ros/*.py`` for each part.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.task import Future
from rcl_interfaces.msg import SetParametersResult

from ros3d_agent.inference.answer import Answer
from ros3d_agent.ros.conversions import answer_markers, answer_summary, answer_to_msg, objects_to_msg
from ros3d_agent.ros.diagnostics import Counters, NodeSnapshot, node_statuses, to_diagnostic_array
from ros3d_agent.ros.ingest import CandidateFilter, DecoderConfig, FrameDecoder, IngestPipeline, MessageSet, message_stamp_ns
from ros3d_agent.ros.keyframes import AdmissionWorker, Keyframe, KeyframeMemory, KeyframePolicy
from ros3d_agent.ros.memory_cloud import CloudConfig, SceneCloud
from ros3d_agent.ros.params import LIVE_PARAMETERS, NodeParams, ParamError, check_value, declare_parameters, read_parameter_values
from ros3d_agent.ros.qos import describe_qos, incompatible_qos_callbacks, qos_from_name, tf_qos, tf_static_qos
from ros3d_agent.ros.query_queue import EngineLike, QueryLimits, QueryQueue, QueryRejected, QueryTicket, validate_request
from ros3d_agent.ros.tf_buffer import TfBuffer
from ros3d_agent.ros.time_sync import ApproximateTimeSync

__all__ = ["SceneAgentNode", "load_engine", "DEFAULT_NODE_NAME"]

DEFAULT_NODE_NAME = "ros3d_agent"
_GROUNDING_TASKS = ("ground", "multi_ground")
_FEEDBACK_PERIOD_S = 0.1
_REQUEST_DEPTH = 200
# Clients that leave AskScene's situation / object_id fields empty may put them in the question text.
_SITUATED_RE = re.compile(r"^\s*situation\s*:\s*(.+?)\s*question\s*:\s*(.+)$", re.IGNORECASE | re.DOTALL)
_OBJECT_REF_RE = re.compile(r"(?:#|\bobject\s+|\bid\s*[:=]?\s*)(\d+)\b", re.IGNORECASE)


def load_engine(params: NodeParams) -> EngineLike:
    """Build the inference engine from the ``model.*`` parameters (imported here, not at module load)."""
    try:
        from ros3d_agent.inference.engine import EngineConfig, SceneEngine
    except ImportError as exc:
        raise RuntimeError(f"the inference engine (ros3d_agent.inference.engine) cannot be imported: {exc}") from exc
    m = params.model
    cfg = EngineConfig(
        checkpoint=m.checkpoint or None,
        preset=m.preset or None,
        allow_random_weights=m.allow_random_weights,
        device=m.device,
        dtype=m.dtype,
        max_views=params.query.max_views,
        max_new_tokens=m.max_new_tokens,
        multi_threshold=m.multi_threshold,
        seed=m.seed,
    )
    return SceneEngine(cfg)


class _Runtime:
    """Everything that exists only while the node is active (built in activate, torn down in deactivate)."""

    def __init__(self) -> None:
        self.engine: EngineLike | None = None
        self.memory: KeyframeMemory | None = None
        self.cloud: SceneCloud | None = None
        self.admission: AdmissionWorker | None = None
        self.ingest: IngestPipeline | None = None
        self.sync: ApproximateTimeSync | None = None
        self.queue: QueryQueue | None = None
        self.subscriptions: list[Any] = []
        self.action: ActionServer | None = None
        self.service: Any = None
        self.reset_service: Any = None
        self.engine_info: dict[str, Any] = {}


class SceneAgentNode(LifecycleNode):
    """The managed node (see module doc).

    Args:
        node_name: ROS node name (the private topics live under it).
        engine_factory: builds the engine from the validated parameters; defaults to
            :func:`load_engine` (the real engine). For embedding and tests of the state machine.
        **kwargs: passed to ``LifecycleNode`` (``namespace``, ``context``, ``parameter_overrides``...).
    """

    def __init__(self, node_name: str = DEFAULT_NODE_NAME, *, engine_factory: Callable[[NodeParams], EngineLike] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._param_problems = declare_parameters(self)
        self._engine_factory = engine_factory or load_engine
        self.counters = Counters()
        self.params: NodeParams | None = None
        self._state = "unconfigured"
        self._rt = _Runtime()
        self._model_lock = threading.Lock()
        self._sensor_group = MutuallyExclusiveCallbackGroup()
        self._query_group = ReentrantCallbackGroup()
        # Own group: /diagnostics keeps flowing while a transition (model loading) runs.
        self._diag_group = MutuallyExclusiveCallbackGroup()
        self._pubs: dict[str, Any] = {}
        self._diag_pub: Any = None
        self._diag_timer: Any = None
        self._tf = TfBuffer()
        self._last_frame_mono = -1e18
        self._frames_at_last_diag = 0
        self._last_jump_mono = -1e18
        self._goal_tickets: dict[bytes, QueryTicket] = {}
        self._inflight = 0
        self._inflight_lock = threading.Lock()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._after_set_parameters)
        for problem in self._param_problems:
            self.get_logger().error(f"parameter problem: {problem}")

    # ==========================================================================================
    # Lifecycle transitions
    # ==========================================================================================
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        log = self.get_logger()
        try:
            params = NodeParams.from_values(read_parameter_values(self))
        except ParamError as exc:
            for e in self._param_problems + exc.errors:
                log.error(f"configure refused: {e}")
            return TransitionCallbackReturn.FAILURE
        if self._param_problems:
            for e in self._param_problems:
                log.error(f"configure refused: {e}")
            return TransitionCallbackReturn.FAILURE
        try:
            import tf2_msgs.msg  # noqa: F401
        except ImportError:
            log.error("configure refused: the tf2_msgs Python package is missing (needed for /tf). With the PyPI "
                      "wheels it is built by scripts/setup.sh from interfaces/tf2_msgs; with apt ROS 2 install ros-$ROS_DISTRO-tf2-msgs")
            return TransitionCallbackReturn.FAILURE
        try:
            self.params = params
            self._create_outputs(params)
            self._tf = TfBuffer(int(params.tf.cache_sec * 1e9), int(params.tf.time_jump_sec * 1e9))
        except Exception as exc:  # e.g. an invalid remapped topic name
            log.error(f"configure failed: {type(exc).__name__}: {exc}")
            self._destroy_outputs()
            return TransitionCallbackReturn.FAILURE
        self._state = "inactive"
        log.info(f"configured: fixed frame {params.fixed_frame!r}, colour {self._resolved(params.topics.color)}, "
                 f"depth {self._resolved(params.topics.depth)}, info {self._resolved(params.topics.color_info)}, "
                 f"image QoS {params.qos.images} ({describe_qos(qos_from_name(params.qos.images, params.qos.image_depth))})")
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        log = self.get_logger()
        assert self.params is not None
        try:
            self._build_runtime(self.params)
        except Exception as exc:
            log.error(f"activate failed: {type(exc).__name__}: {exc}")
            self._teardown_runtime("node_inactive: activation failed")
            return TransitionCallbackReturn.FAILURE
        ret = super().on_activate(state)
        self._state = "active"
        return ret

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown_runtime("node_inactive: the node is being deactivated")
        self._state = "inactive"
        self.get_logger().info("deactivated: model released, keyframes forgotten")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._destroy_outputs()
        self.params = None
        self._state = "unconfigured"
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown_runtime("node_inactive: the node is shutting down")
        self._destroy_outputs()
        self._state = "finalized"
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f"error while in {state.label}: releasing everything")
        self._teardown_runtime("internal_error: the node hit an error")
        self._destroy_outputs()
        self._state = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    @property
    def state(self) -> str:
        """``unconfigured``, ``inactive``, ``active`` or ``finalized``."""
        return self._state

    def _resolved(self, topic: str) -> str:
        try:
            return self.resolve_topic_name(topic)
        except Exception:
            return topic

    # ==========================================================================================
    # Outputs (exist from configure to cleanup)
    # ==========================================================================================
    def _create_outputs(self, p: NodeParams) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from ros3d_agent_interfaces.msg import GroundedObjectArray, SceneAnswer
        from std_msgs.msg import String
        from visualization_msgs.msg import MarkerArray

        qos = qos_from_name(p.qos.outputs)
        self._pubs = {
            "answer": self.create_lifecycle_publisher(SceneAnswer, "~/answer", qos),
            "answer_json": self.create_lifecycle_publisher(String, "~/answer_json", qos),
            "objects": self.create_lifecycle_publisher(GroundedObjectArray, "~/objects", qos),
            "markers": self.create_lifecycle_publisher(MarkerArray, "~/markers", qos),
        }
        # Diagnostics run in every state: an inactive node should still say why it is inactive.
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self.create_timer(p.diagnostics.period_sec, self._publish_diagnostics, callback_group=self._diag_group)

    def _destroy_outputs(self) -> None:
        for pub in self._pubs.values():
            self.destroy_lifecycle_publisher(pub)
        self._pubs = {}
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        if self._diag_pub is not None:
            self.destroy_publisher(self._diag_pub)
            self._diag_pub = None

    # ==========================================================================================
    # Runtime (exists while active)
    # ==========================================================================================
    def _build_runtime(self, p: NodeParams) -> None:
        log = self.get_logger()
        rt = self._rt = _Runtime()
        t0 = time.perf_counter()
        rt.engine = self._engine_factory(p)
        load_s = time.perf_counter() - t0
        warm_s = rt.engine.warmup() if p.model.warmup else 0.0
        try:
            rt.engine_info = dict(rt.engine.info)
        except Exception:
            rt.engine_info = {}
        rt.engine_info.update({"loaded": True, "load_s": round(load_s, 3), "warmup_s": round(float(warm_s), 3)})
        log.info(f"model loaded in {load_s:.2f} s, warm-up {float(warm_s):.2f} s: "
                 f"{p.model.checkpoint or 'preset ' + p.model.preset} on {p.model.device} ({p.model.dtype})")

        self.counters.clear()
        self._tf.clear(keep_static=False)
        rt.memory = KeyframeMemory(KeyframePolicy.from_params(p.keyframes, p.input.max_depth_m))
        rt.cloud = SceneCloud(CloudConfig.from_params(p))
        rt.admission = AdmissionWorker(rt.memory, self._encode_keyframe, self._on_keyframe_admitted, queue_size=p.ingest.queue_size)
        decoder = FrameDecoder(DecoderConfig.from_params(p))
        sink = CandidateFilter(rt.memory, decoder, rt.admission, self.counters)
        rt.ingest = IngestPipeline(
            self._tf, p.fixed_frame, p.camera_frame, decoder, sink, self.counters,
            tf_timeout_s=p.tf.timeout_sec, pending_max=p.tf.pending_max,
            max_stamp_age_ns=int(p.input.max_stamp_age_sec * 1e9), now_ns=lambda: self.get_clock().now().nanoseconds,
        )
        streams = ["color", "depth", "color_info"] + (["depth_info"] if p.input.use_depth_info else [])
        rt.sync = ApproximateTimeSync(streams, int(p.sync.slop_sec * 1e9), p.sync.queue_size, self._on_synced,
                                      on_time_jump=lambda old, new: self._on_time_jump("images", old, new),
                                      time_jump_ns=int(p.tf.time_jump_sec * 1e9))
        rt.queue = QueryQueue(self._run_query, p.query.queue_size,
                              on_answer=lambda t, a: self._publish_answer(a, t.context.get("id_map")))
        rt.admission.start()
        rt.ingest.start()
        rt.queue.start()
        self._create_inputs(p, streams)
        self._create_query_interfaces(p)

    def _teardown_runtime(self, reason: str) -> None:
        """Stop inputs first, then answer/stop queries, then workers, then free the model."""
        rt = self._rt
        for sub in rt.subscriptions:
            self.destroy_subscription(sub)
        rt.subscriptions = []
        if rt.queue is not None:
            rt.queue.stop(reason)
        # Let in-flight action/service coroutines deliver their (failure) results before their
        # servers go away; they need another executor thread, so this wait is bounded.
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            with self._inflight_lock:
                if self._inflight == 0:
                    break
            time.sleep(0.01)
        if rt.action is not None:
            rt.action.destroy()
            rt.action = None
        if rt.service is not None:
            self.destroy_service(rt.service)
            rt.service = None
        if rt.reset_service is not None:
            self.destroy_service(rt.reset_service)
            rt.reset_service = None
        if rt.ingest is not None:
            rt.ingest.stop()
        if rt.admission is not None:
            rt.admission.stop()
        if rt.engine is not None:
            with self._model_lock:
                try:
                    rt.engine.release()
                except Exception as exc:
                    self.get_logger().warning(f"engine.release() failed: {exc}")
        if rt.memory is not None:
            rt.memory.clear()
        if rt.cloud is not None:
            rt.cloud.clear()
        self._goal_tickets.clear()
        self._rt = _Runtime()

    # ------------------------------------------------------------------------------------------
    # Inputs
    # ------------------------------------------------------------------------------------------
    def _create_inputs(self, p: NodeParams, streams: list[str]) -> None:
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image
        from tf2_msgs.msg import TFMessage

        img_qos = qos_from_name(p.qos.images, p.qos.image_depth)
        info_qos = qos_from_name(p.qos.camera_info, p.qos.image_depth)
        color_type = CompressedImage if p.input.color_transport == "compressed" else Image
        depth_type = CompressedImage if p.input.depth_transport == "compressedDepth" else Image
        specs = [("color", color_type, p.topics.color, img_qos), ("depth", depth_type, p.topics.depth, img_qos),
                 ("color_info", CameraInfo, p.topics.color_info, info_qos)]
        if "depth_info" in streams:
            specs.append(("depth_info", CameraInfo, p.topics.depth_info, info_qos))
        rt = self._rt
        for index, (name, msg_type, topic, qos) in enumerate(specs):
            rt.subscriptions.append(self.create_subscription(
                msg_type, topic, self._sensor_callback(index, name), qos, callback_group=self._sensor_group,
                event_callbacks=incompatible_qos_callbacks(topic, self._on_incompatible_qos)))
        rt.subscriptions.append(self.create_subscription(
            TFMessage, p.topics.tf, lambda m: self._on_tf(m, False), tf_qos(), callback_group=self._sensor_group))
        rt.subscriptions.append(self.create_subscription(
            TFMessage, p.topics.tf_static, lambda m: self._on_tf(m, True), tf_static_qos(), callback_group=self._sensor_group))

    def _sensor_callback(self, index: int, name: str) -> Callable[[Any], None]:
        counters, key = self.counters, f"in.{name}"

        def callback(msg: Any) -> None:
            counters.inc(key)
            sync = self._rt.sync
            if sync is not None:
                sync.add(index, message_stamp_ns(msg), msg)

        return callback

    def _on_synced(self, stamp_ns: int, msgs: list[Any]) -> None:
        self.counters.inc("frames.synced")
        self._last_frame_mono = time.monotonic()
        ingest = self._rt.ingest
        if ingest is not None:
            ingest.submit(MessageSet(stamp_ns, msgs[0], msgs[1], msgs[2], msgs[3] if len(msgs) > 3 else None, self._last_frame_mono))

    def _on_tf(self, msg: Any, static: bool) -> None:
        self.counters.inc("in.tf_static" if static else "in.tf")
        upd = self._tf.add_transforms(msg.transforms, static=static)
        if upd.rejected:
            self.counters.inc("tf.rejected", upd.rejected)
        if upd.time_jump:
            self._on_time_jump("tf", -1, -1)
        ingest = self._rt.ingest
        if ingest is not None:
            ingest.tf_arrived()

    def _on_time_jump(self, source: str, old_ns: int, new_ns: int) -> None:
        """A stamp went backwards (bag loop, simulator reset): restart the time-ordered buffers."""
        now = time.monotonic()
        if now - self._last_jump_mono > 1.0:
            self.counters.inc("time_jumps")
            self.get_logger().warning(f"time jumped back ({source}"
                                      + (f": {old_ns / 1e9:.3f} s -> {new_ns / 1e9:.3f} s" if old_ns >= 0 else "")
                                      + "): resetting sync, TF and pending frames"
                                      + (" and the keyframe memory" if self.params and self.params.ingest.reset_memory_on_time_jump else ""))
        self._last_jump_mono = now
        rt = self._rt
        if source == "images":
            self._tf.clear(keep_static=True)
        elif rt.sync is not None:
            rt.sync.reset()
        if rt.ingest is not None:
            rt.ingest.reset("time_jump")
        if self.params is not None and self.params.ingest.reset_memory_on_time_jump:
            if rt.memory is not None:
                rt.memory.clear()
            if rt.cloud is not None:
                rt.cloud.clear()

    def _on_incompatible_qos(self, topic: str, policy: str) -> None:
        self.counters.inc("qos.incompatible")
        self.get_logger().error(f"a publisher on {topic} has QoS incompatible with this subscription (policy {policy}); "
                                "set qos.images / qos.camera_info (e.g. SENSOR_DATA for best-effort drivers)")

    # ------------------------------------------------------------------------------------------
    # Keyframes
    # ------------------------------------------------------------------------------------------
    def _encode_keyframe(self, frame: Any) -> Any:
        engine = self._rt.engine
        if engine is None:
            raise RuntimeError("no engine")
        with self._model_lock:
            return engine.encode_keyframe(frame)

    def _on_keyframe_admitted(self, frame: Any, kf: Keyframe, evicted: list[Keyframe]) -> None:
        self.counters.inc("keyframes.admitted")
        if evicted:
            self.counters.inc("keyframes.evicted", len(evicted))
        cloud = self._rt.cloud
        if cloud is not None:
            cloud.add_frame(frame)
            cloud.update_proposals()

    # ==========================================================================================
    # Queries
    # ==========================================================================================
    def _limits(self) -> QueryLimits:
        assert self.params is not None
        return QueryLimits.from_params(self.params.query)

    def _create_query_interfaces(self, p: NodeParams) -> None:
        from ros3d_agent_interfaces.action import AskScene as AskSceneAction
        from ros3d_agent_interfaces.srv import AskScene as AskSceneSrv
        from std_msgs.msg import String

        rt = self._rt
        # Deep request queues: a burst of goals must reach goal_callback (and be answered with a
        # reason) rather than be dropped silently by a 10-deep DDS history.
        requests = QoSProfile(depth=_REQUEST_DEPTH, reliability=ReliabilityPolicy.RELIABLE)
        rt.action = ActionServer(self, AskSceneAction, "~/ask", execute_callback=self._execute_goal,
                                 goal_callback=self._on_goal, cancel_callback=self._on_cancel,
                                 callback_group=self._query_group, result_timeout=60,
                                 goal_service_qos_profile=requests, result_service_qos_profile=requests,
                                 cancel_service_qos_profile=requests)
        rt.service = self.create_service(AskSceneSrv, "~/query", self._on_service, callback_group=self._query_group,
                                         qos_profile=requests)
        from std_srvs.srv import Trigger

        rt.reset_service = self.create_service(Trigger, "~/reset_memory", self._on_reset_memory, callback_group=self._query_group)
        rt.subscriptions.append(self.create_subscription(String, "~/question", self._on_question_topic,
                                                         qos_from_name(p.qos.questions), callback_group=self._query_group))

    def _wait_future(self) -> Future:
        """A Future the query worker can complete from its thread and that wakes the executor."""
        fut: Future = Future(executor=self.executor)
        fut.add_done_callback(lambda _f: None)  # completion schedules a task: the executor wakes up
        return fut

    # -- action --------------------------------------------------------------------------------
    def _on_goal(self, goal: Any) -> GoalResponse:
        # Every goal is accepted so that each one gets a result with a reason: the action
        # protocol's REJECT carries no message. Refusals (queue full, bad question) are ABORTED
        # immediately in _execute_goal, which costs no more than a rejection.
        return GoalResponse.ACCEPT if self._state == "active" else GoalResponse.REJECT

    def _on_cancel(self, goal_handle: Any) -> CancelResponse:
        ticket = self._goal_tickets.get(bytes(goal_handle.goal_id.uuid))
        if ticket is None or ticket.done():
            return CancelResponse.REJECT
        queue = self._rt.queue
        if queue is not None:
            queue.cancel(ticket)
        else:
            ticket.cancel()
        return CancelResponse.ACCEPT

    async def _execute_goal(self, goal_handle: Any) -> Any:
        from ros3d_agent_interfaces.action import AskScene

        goal = goal_handle.request
        uuid = bytes(goal_handle.goal_id.uuid)
        qid = "goal-" + uuid.hex()[:12]
        result = AskScene.Result()
        with self._inflight_lock:
            self._inflight += 1
        try:
            answer, ticket = await self._ask(goal.question, goal.task, goal.max_views, goal.deadline_sec, "action", qid,
                                             feedback=self._feedback_publisher(goal_handle), register=uuid,
                                             situation=getattr(goal, "situation", None), object_id=getattr(goal, "object_id", None))
            if ticket is not None and ticket.cancel_requested and answer.error == "cancelled" and goal_handle.is_cancel_requested:
                goal_handle.canceled()
            elif answer.success:
                goal_handle.succeed()
            else:
                goal_handle.abort()
            self._fill_result(result, answer, ticket)
            return result
        finally:
            self._goal_tickets.pop(uuid, None)
            with self._inflight_lock:
                self._inflight -= 1

    def _feedback_publisher(self, goal_handle: Any) -> Callable[[QueryTicket, str, float], None]:
        from ros3d_agent_interfaces.action import AskScene

        last = {"stage": "", "t": 0.0}

        def publish(ticket: QueryTicket, stage: str, progress: float) -> None:
            now = time.monotonic()
            if stage == last["stage"] and now - last["t"] < _FEEDBACK_PERIOD_S:
                return
            last["stage"], last["t"] = stage, now
            if goal_handle.is_active:
                goal_handle.publish_feedback(AskScene.Feedback(stage=stage, progress=float(progress), elapsed_sec=float(ticket.elapsed())))

        return publish

    # -- service ---------------------------------------------------------------------------------
    async def _on_service(self, request: Any, response: Any) -> Any:
        with self._inflight_lock:
            self._inflight += 1
        try:
            answer, ticket = await self._ask(request.question, request.task, request.max_views, request.deadline_sec, "service", None,
                                             situation=getattr(request, "situation", None), object_id=getattr(request, "object_id", None))
            self._fill_result(response, answer, ticket)
            return response
        finally:
            with self._inflight_lock:
                self._inflight -= 1

    # -- memory reset ----------------------------------------------------------------------------
    def _on_reset_memory(self, request: Any, response: Any) -> Any:
        """``~/reset_memory`` (std_srvs/Trigger): forget the keyframes, the fused cloud and its
        proposals, e.g. when the robot has been carried to another place or the map was reset.
        Sync, TF and the ingest queue are kept: frames arriving from now on are admitted afresh."""
        rt = self._rt
        if rt.memory is None or rt.cloud is None:
            response.success, response.message = False, "node_inactive: the node is not active"
            return response
        forgotten = len(rt.memory)
        rt.memory.clear()
        rt.cloud.clear()
        self.counters.inc("memory_resets")
        response.success = True
        response.message = (f"forgot {forgotten} keyframe(s), the fused cloud and its proposals; "
                            "frames arriving from now on are admitted afresh")
        self.get_logger().info(f"reset_memory: {response.message}")
        return response

    # -- topic -----------------------------------------------------------------------------------
    def _on_question_topic(self, msg: Any) -> None:
        if self.params is None or self._rt.queue is None:
            return
        try:
            request = validate_request(msg.data, "", 0, 0.0, self._limits(), source="topic")
            self._rt.queue.submit(request)
        except QueryRejected as exc:
            self.counters.inc(f"query.refused.{exc.code}")
            text = msg.data if isinstance(msg.data, str) else ""
            self._publish_answer(Answer.failure(text[:200], self.params.query.default_task, str(exc)), None)

    # -- shared ----------------------------------------------------------------------------------
    async def _ask(self, question: str, task: str, max_views: int, deadline: float, source: str, qid: str | None,
                   *, feedback: Callable[[QueryTicket, str, float], None] | None = None,
                   register: bytes | None = None, situation: str | None = None,
                   object_id: int | None = None) -> tuple[Answer, QueryTicket | None]:
        """Validate, queue, and await the answer of one request (action and service)."""
        queue = self._rt.queue
        if queue is None or self.params is None:
            return Answer.failure(str(question)[:200], "qa", "node_inactive: the node is not active"), None
        try:
            request = validate_request(question, task, max_views, deadline, self._limits(), source=source, query_id=qid,
                                       situation=situation, object_id=object_id)
        except QueryRejected as exc:
            self.counters.inc(f"query.refused.{exc.code}")
            task_ok = task if task in ("qa", "situated_qa", "ground", "multi_ground", "caption") else "qa"
            answer = Answer.failure(question[:200] if isinstance(question, str) else "", task_ok, str(exc))
            answer.query_id = qid or ""
            self._publish_answer(answer, None)
            return answer, None
        fut = self._wait_future()
        try:
            ticket = queue.submit(request, on_done=lambda _t, a: fut.set_result(a), on_progress=feedback)
        except QueryRejected as exc:
            self.counters.inc(f"query.refused.{exc.code}")
            answer = Answer.failure(request.question, request.task, str(exc), request.query_id)
            self._publish_answer(answer, None)
            return answer, None
        if register is not None:
            self._goal_tickets[register] = ticket
        if feedback is not None:
            feedback(ticket, "queued", 0.0)
        answer = await fut
        return answer, ticket

    def _fill_result(self, out: Any, answer: Answer, ticket: QueryTicket | None) -> None:
        out.success = bool(answer.success)
        out.message = "ok" if answer.success else answer.error
        out.answer = self._answer_msg(answer, ticket.context.get("id_map") if ticket is not None else None)

    def _answer_msg(self, answer: Answer, id_map: dict[int, int] | None) -> Any:
        frame = self.params.fixed_frame if self.params else "map"
        stamp = max(answer.keyframe_stamps) if answer.keyframe_stamps else self.get_clock().now().nanoseconds
        return answer_to_msg(answer, frame_id=frame, stamp_ns=stamp, id_map=id_map)

    def _run_query(self, ticket: QueryTicket) -> Answer:
        """The query worker: pick views, read proposals, run the model (under the model lock)."""
        rt, req, p = self._rt, ticket.request, self.params
        engine, memory, cloud = rt.engine, rt.memory, rt.cloud
        if engine is None or memory is None or cloud is None or p is None:
            return Answer.failure(req.question, req.task, "node_inactive: the node is not active")
        t0 = time.perf_counter()
        wait_s = (ticket.started_mono or time.monotonic()) - ticket.submitted_mono
        ticket.report("selecting_views", 0.0)
        kfs = memory.select(req.max_views, p.query.view_selection)
        if not kfs:
            c = self.counters.snapshot()
            drops = ", ".join(f"{k[5:]} {v}" for k, v in sorted(c.items()) if k.startswith("drop.") and v) or "none"
            return Answer.failure(req.question, req.task,
                                  f"empty_memory: no keyframes yet (frames synchronised {c.get('frames.synced', 0)}, "
                                  f"placed by TF {c.get('frames.posed', 0)}, dropped: {drops})")
        if req.task in _GROUNDING_TASKS + ("caption",) and not cloud.proposals().boxes:
            cloud.update_proposals(force=True)
        snap = cloud.proposals()
        question, situation, box = req.question, None, None
        if req.task == "situated_qa":
            if req.situation is not None:
                situation = req.situation
            else:
                m = _SITUATED_RE.match(question)
                if m is None:
                    return Answer.failure(req.question, req.task, "invalid_question: situated_qa needs a situation: set the "
                                          "goal's situation field, or ask 'situation: <where you stand and face> question: <the question>'")
                situation, question = m.group(1).strip(), m.group(2).strip()
        elif req.task == "caption":
            ident = req.object_id
            if ident is None:
                m = _OBJECT_REF_RE.search(question)
                ident = int(m.group(1)) if m else None
            if ident is None or ident not in snap.ids:
                known = ", ".join(str(i) for i in snap.ids[:20]) or "none yet"
                what = f"object {ident} is not in the scene memory" if ident is not None else "caption needs an object"
                return Answer.failure(req.question, req.task, f"invalid_question: {what}: set object_id (or ask 'caption #<id>') "
                                      f"with an id from a grounding answer (GroundedObject.id); current ids: {known}")
            box = snap.boxes[snap.ids.index(ident)]
        select_s = time.perf_counter() - t0
        with self._model_lock:
            if ticket.should_stop():
                return Answer.failure(req.question, req.task, "cancelled")
            answer = engine.answer(question, req.task, [k.features for k in kfs], list(snap.boxes), situation=situation,
                                   box=box, progress=ticket.report, should_cancel=ticket.should_stop)
        answer.question = req.question
        if not answer.keyframe_stamps and answer.success:
            answer.keyframe_stamps = [k.stamp_ns for k in kfs]
        timings = {"queue_wait": max(0.0, wait_s), "select_views": select_s}
        timings.update(answer.timings)
        answer.timings = timings
        if req.notes:  # the message has no field for them; the log does
            self.get_logger().info(f"query {req.query_id}: " + "; ".join(req.notes))
        ticket.context["id_map"] = snap.id_map()
        return answer

    def _publish_answer(self, answer: Answer, id_map: dict[int, int] | None) -> None:
        """Answer topics + objects + markers (all sources; failures too, so the topic user sees why)."""
        if not self._pubs or self.params is None:
            return
        from std_msgs.msg import String

        p = self.params
        try:
            stamp = max(answer.keyframe_stamps) if answer.keyframe_stamps else self.get_clock().now().nanoseconds
            self._pubs["answer"].publish(answer_to_msg(answer, frame_id=p.fixed_frame, stamp_ns=stamp, id_map=id_map))
            if p.output.answer_json:
                d = answer.to_dict()
                d["frame_id"] = p.fixed_frame
                d["stamp_ns"] = int(stamp)
                if id_map is not None:
                    for o in d["objects"]:
                        o["id"] = id_map.get(o["proposal_id"], o["proposal_id"])
                self._pubs["answer_json"].publish(String(data=json.dumps(d)))
            if answer.success and (answer.objects or answer.task in _GROUNDING_TASKS):
                self._pubs["objects"].publish(objects_to_msg(answer, frame_id=p.fixed_frame, stamp_ns=stamp, id_map=id_map))
                if p.output.markers:
                    self._pubs["markers"].publish(answer_markers(answer, frame_id=p.fixed_frame, stamp_ns=stamp, id_map=id_map))
            self.get_logger().info(f"answer {answer.query_id or '-'} ({answer.task}): {answer_summary(answer)}")
        except Exception as exc:  # a publishing problem must not lose the result for the waiting client
            self.get_logger().error(f"could not publish answer {answer.query_id}: {type(exc).__name__}: {exc}")

    # ==========================================================================================
    # Parameters at runtime
    # ==========================================================================================
    def _on_set_parameters(self, changes: list[Any]) -> SetParametersResult:
        for prm in changes:
            if prm.name not in LIVE_PARAMETERS and self._state == "active" and check_value(prm.name, prm.value) is None:
                return SetParametersResult(successful=False, reason=f"{prm.name} takes effect at configure/activate: "
                                           "deactivate (and clean up) the node first")
            problem = check_value(prm.name, prm.value)
            if problem is not None and not problem.startswith("unknown parameter"):
                return SetParametersResult(successful=False, reason=problem)
        return SetParametersResult(successful=True)

    def _after_set_parameters(self, changes: list[Any]) -> None:
        if self._state != "active" or self.params is None:
            return
        names = {p.name for p in changes} & LIVE_PARAMETERS
        if not names:
            return
        try:
            new = NodeParams.from_values(read_parameter_values(self))
        except ParamError as exc:
            self.get_logger().warning(f"parameter change not applied: {exc}")
            return
        self.params = replace(self.params, keyframes=new.keyframes, output=new.output, query=new.query, input=new.input)
        rt = self._rt
        if rt.memory is not None:
            rt.memory.set_policy(KeyframePolicy.from_params(new.keyframes, new.input.max_depth_m))
        if rt.ingest is not None:
            rt.ingest.max_stamp_age_ns = int(new.input.max_stamp_age_sec * 1e9)
        self.get_logger().info(f"applied: {', '.join(sorted(names))}")

    # ==========================================================================================
    # Diagnostics
    # ==========================================================================================
    def snapshot(self) -> NodeSnapshot:
        """Counters and state for /diagnostics (also used by tests and benchmarks in-process)."""
        rt = self._rt
        c = self.counters.snapshot()
        if rt.sync is not None:
            c.update({f"sync.{k}": v for k, v in rt.sync.drops.items()})
        frames = c.get("frames.synced", 0)
        snap = NodeSnapshot(
            node_name=self.get_fully_qualified_name(), state=self._state, counters=c,
            frames_in_recent=frames - self._frames_at_last_diag,
            seconds_since_frame=time.monotonic() - self._last_frame_mono,
            tf_frames=len(self._tf.frames()), tf_chain=rt.ingest.chain if rt.ingest else "",
            model=dict(rt.engine_info) if rt.engine is not None else {"loaded": False},
        )
        self._frames_at_last_diag = frames
        if rt.memory is not None:
            snap.keyframes, snap.keyframe_bytes, snap.keyframes_pending = len(rt.memory), rt.memory.nbytes, rt.memory.pending()
        if rt.admission is not None:
            snap.admission_queue = rt.admission.depth()
            snap.encode_s = list(rt.admission.encode_s[-200:])
        if rt.cloud is not None:
            snap.cloud = rt.cloud.stats()
        if rt.queue is not None:
            snap.query_queue = rt.queue.depth()
            snap.query_busy = rt.queue.busy()
            snap.query_counts = dict(rt.queue.stats.counts)
            snap.query_counts.update({k[6:]: v for k, v in c.items() if k.startswith("query.")})
            snap.latencies_s = list(rt.queue.stats.latencies)
        return snap

    def _publish_diagnostics(self) -> None:
        if self._diag_pub is None:
            return
        try:
            entries = node_statuses(self.snapshot())
            self._diag_pub.publish(to_diagnostic_array(entries, self.get_clock().now().to_msg(), self.get_name()))
        except Exception as exc:
            self.get_logger().warning(f"diagnostics failed: {type(exc).__name__}: {exc}")
