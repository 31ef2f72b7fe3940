"""Real-time replay: the bag played into live topics, the real node, questions through the action.

Three processes over DDS (loopback, the caller's ``ROS_DOMAIN_ID``):

1. the node, started as ``ros3d-agent run`` starts it (``ros3d_agent.ros.run_command``: the params
   file, the model, ``use_sim_time``, remaps from the node's default topics to the bag's, parameter
   overrides), output in ``node.log``; or an already running node (``node=``, e.g. from
   ``launch/replay_eval.launch.py``);
2. the player (:mod:`.player`), output in ``player.log``: raw CDR at ``rate`` with ``/clock``, the
   clock held running after the bag ends;
3. this process: an ``AskScene`` action client that sends each question when the bag clock reaches
   its ``ask_at`` (questions without one once the bag has ended and the node has finished admitting
   the keyframes it queued), at most ``max_in_flight`` at a time, and records what came back,
   how long it took (goal sent → result received, wall time) and the node's ``/diagnostics``.

Captions: the action carries no box, and the node describes an object named by its proposal id
(sent as ``#<id>`` in the question text, the form offline replay builds too). The client therefore describes the object it knows from earlier grounding answers
that overlaps the ground-truth box most (Scan2Cap's pairing); when no grounding answer has named
an object yet, one ``multi_ground`` probe asks for "all objects" first (counted in the summary).

Everything the node and player print is kept in the run directory; every process is reaped
(``ManagedProcess``: terminate → wait → kill).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from ros3d_agent.inference.answer import Answer
from ros3d_agent.replay.bag_source import BagSource
from ros3d_agent.replay.results import QuestionOutcome, ReplayRun, best_object_for_box, box6, node_counts
from ros3d_agent.replay.scenario import ModelChoice, ReplayQuestion, TopicMap, format_param_value
from ros3d_agent.utils.jsonl import read_json_object
from ros3d_agent.utils.processes import ManagedProcess, child_env

__all__ = ["RealtimeOptions", "RealtimeError", "run_realtime", "node_argv", "PROBE_QUESTION"]

log = logging.getLogger(__name__)

PROBE_QUESTION: Final = "all objects in the room."
_POLL_S: Final = 0.01
#: node parameters replay sets unless the caller overrides them (faster diagnostics for settling)
REPLAY_NODE_DEFAULTS: Final = {"diagnostics.period_sec": 0.5}


class RealtimeError(RuntimeError):
    """The real-time set-up failed (node did not start, player could not play); the message says why."""


@dataclass(frozen=True)
class RealtimeOptions:
    """How the real-time run is set up (see the module doc)."""

    model: ModelChoice
    topics: TopicMap = field(default_factory=TopicMap)
    config: str = "workstation"
    params: Mapping[str, Any] = field(default_factory=dict)
    fixed_frame: str = "map"
    use_depth_info: bool = False
    rate: float = 1.0
    node: str = ""
    node_name: str = "ros3d_agent"
    max_in_flight: int = 1
    startup_timeout_s: float = 180.0
    settle_timeout_s: float = 20.0
    question_timeout_s: float = 120.0


def node_argv(opts: RealtimeOptions, ready_file: Path) -> list[str]:
    """``ros3d-agent run`` (its module, with this interpreter) for the replay."""
    m = opts.model
    argv = [sys.executable, "-m", "ros3d_agent.ros.run_command", "--config", opts.config, "--node-name", opts.node_name,
            "--use-sim-time", "--ready-file", str(ready_file)]
    if m.checkpoint:
        argv += ["--checkpoint", m.checkpoint]
    else:
        argv += ["--preset", m.preset] + (["--allow-random-weights"] if m.allow_random_weights else [])
    if m.device:
        argv += ["--device", m.device]
    if m.dtype:
        argv += ["--dtype", m.dtype]
    for remap in opts.topics.node_remaps(opts.use_depth_info):
        argv += ["--remap", remap]
    params = {**REPLAY_NODE_DEFAULTS, "fixed_frame": opts.fixed_frame, **dict(opts.params)}
    for name, value in params.items():
        argv += ["-p", f"{name}:={format_param_value(value)}"]
    return argv


def _tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


class _Client:
    """The action client, /clock and /diagnostics of the replay (runs in a spinning rclpy node)."""

    def __init__(self, node: Any, node_fqn: str) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.action import ActionClient
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from ros3d_agent_interfaces.action import AskScene
        from rosgraph_msgs.msg import Clock

        self.node = node
        self.fqn = node_fqn
        self.AskScene = AskScene
        qos = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
        self.action = ActionClient(node, AskScene, f"{node_fqn}/ask", goal_service_qos_profile=qos,
                                   result_service_qos_profile=qos, cancel_service_qos_profile=qos)
        self.clock_ns = 0
        self.status: dict[str, dict[str, str]] = {}
        self.status_mono = 0.0
        node.create_subscription(Clock, "/clock", self._on_clock, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)

    def _on_clock(self, msg: Any) -> None:
        self.clock_ns = max(self.clock_ns, int(msg.clock.sec) * 1_000_000_000 + int(msg.clock.nanosec))

    def _on_diag(self, msg: Any) -> None:
        ours = [s for s in msg.status if s.name.startswith(self.fqn + ":")]
        if ours:
            self.status = {s.name.split(": ", 1)[1]: {**{kv.key: kv.value for kv in s.values}, "_message": s.message} for s in ours}
            self.status_mono = time.monotonic()

    def value(self, status: str, key: str, default: float = 0.0) -> float:
        try:
            return float(self.status.get(status, {}).get(key, default))
        except (TypeError, ValueError):
            return default

    def counters(self) -> dict[str, int]:
        """Node-style counters rebuilt from the last diagnostics (see ``ros/diagnostics.py``)."""
        ing, tf = self.status.get("ingest", {}), self.status.get("tf", {})
        names = {"color_in": "in.color", "depth_in": "in.depth", "info_in": "in.color_info", "frames_synced": "frames.synced",
                 "frames_posed": "frames.posed", "candidates": "frames.candidates", "keyframes_admitted": "keyframes.admitted",
                 "time_jumps": "time_jumps"}
        out: dict[str, int] = {}
        for key, value in ing.items():
            target = names.get(key) or ("drop." + key[8:] if key.startswith("dropped.") else
                                        "sync." + key[13:] if key.startswith("sync_dropped.") else None)
            if target:
                try:
                    out[target] = int(float(value))
                except ValueError:
                    pass
        try:
            out["in.tf"] = int(float(tf.get("tf_messages", 0)))
        except ValueError:
            pass
        return out

    def send(self, text: str, task: str) -> Any:
        goal = self.AskScene.Goal(question=text, task=task, max_views=0, deadline_sec=0.0)
        return self.action.send_goal_async(goal)


@dataclass
class _InFlight:
    question: ReplayQuestion | None  # None: a caption probe
    text: str
    sent_mono: float
    asked_at_s: float
    goal_future: Any
    caption_object: dict[str, Any] | None = None
    result_future: Any = None


def _wait(predicate: Callable[[], Any], timeout: float, what: str, procs: Sequence[tuple[str, ManagedProcess, Path]] = ()) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        for name, proc, logfile in procs:
            if proc.poll() is not None:
                raise RealtimeError(f"the {name} exited (code {proc.poll()}) while waiting for {what}; its log "
                                    f"({logfile}) ends:\n{_tail(logfile)}")
        time.sleep(0.02)
    raise RealtimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def run_realtime(
    source: BagSource,
    questions: Sequence[ReplayQuestion],
    opts: RealtimeOptions,
    out: Path,
    *,
    on_answer: Callable[[QuestionOutcome], None] | None = None,
    on_status: Callable[[str], None] | None = None,
) -> ReplayRun:
    """Play ``source`` in real time into the node and ask ``questions`` (see the module doc).

    Raises:
        RealtimeError: the node or the player could not be started.
    """
    from ros3d_agent.ros.spinning import spinning_node

    say = on_status or (lambda _s: None)
    t_start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    wanted = source.check_topics(dict(opts.topics.items(opts.use_depth_info)))
    node_fqn = opts.node or f"/{opts.node_name}"
    start_ns = source.start_ns
    node_log, player_log = out / "node.log", out / "player.log"
    ready, player_ready, player_summary = out / ".node.ready", out / ".player.ready", out / "player_summary.json"
    for f in (ready, player_ready, player_summary):
        f.unlink(missing_ok=True)
    node_proc: ManagedProcess | None = None
    procs: list[tuple[str, ManagedProcess, Path]] = []
    env = child_env()
    node_fh = player_fh = None
    outcomes: dict[str, QuestionOutcome] = {}
    notes: list[str] = []
    extra: dict[str, Any] = {"rate": opts.rate}
    try:
        if not opts.node:
            node_fh = node_log.open("w")
            node_proc = ManagedProcess(node_argv(opts, ready), env=env, stdout=node_fh, stderr=node_fh, terminate_timeout_s=20.0)
            say(f"starting the node ({'checkpoint ' + opts.model.checkpoint if opts.model.checkpoint else 'preset ' + opts.model.preset}); "
                f"log: {node_log}")
            t0 = time.monotonic()
            node_proc.start()
            procs.append(("node", node_proc, node_log))
            text = _wait(lambda: ready.exists() and ready.read_text().strip(), opts.startup_timeout_s, "the node to become active", procs)
            if not text.startswith("active"):
                raise RealtimeError(f"the node did not start ({text}); its log ({node_log}) ends:\n{_tail(node_log)}")
            extra["node_startup_s"] = round(time.monotonic() - t0, 3)
        with spinning_node("ros3d_replay_client") as rosnode:
            client = _Client(rosnode, node_fqn)
            if not client.action.wait_for_server(timeout_sec=opts.startup_timeout_s if opts.node else 60.0):
                raise RealtimeError(f"no AskScene action server at {node_fqn}/ask (is the node active? is --node right?)")
            player_fh = player_log.open("w")
            argv = [sys.executable, "-m", "ros3d_agent.replay.player", "--bag", str(source.path), "--rate", str(opts.rate),
                    "--hold-clock", "--ready-file", str(player_ready), "--summary-file", str(player_summary),
                    "--latched", opts.topics.tf_static]
            for topic in wanted:
                argv += ["--topic", topic]
            for role in ("color", "depth", "color_info", "tf"):
                if getattr(opts.topics, role) in wanted:
                    argv += ["--wait-for", getattr(opts.topics, role)]
            argv += ["--wait-for", "/clock"]
            player = ManagedProcess(argv, env=env, stdout=player_fh, stderr=player_fh)
            say(f"playing {source.path} at x{opts.rate:g} ({source.duration_s:.1f} s of bag time); log: {player_log}")
            player.start()
            procs.append(("player", player, player_log))
            try:
                _wait(player_ready.exists, 90.0, "the player to start (subscribers on the camera topics)", procs)
                run_questions(client, questions, opts, start_ns, player_summary, procs, outcomes, notes, extra, on_answer, say)
                # a final diagnostics snapshot taken after the last answer
                t_last = time.monotonic()
                try:
                    _wait(lambda: client.status_mono > t_last, 10.0, "a final /diagnostics from the node", procs[:1] if node_proc else ())
                except RealtimeError as exc:
                    notes.append(f"{exc}: the node's counts may be stale or missing")
            finally:
                player.stop()
            summary = read_json_object(player_summary)
            extra["player"] = summary
            counters = client.counters()
            keyframes = int(client.value("keyframes", "keyframes"))
            engine_info = {k: v for k, v in client.status.get("model", {}).items() if not k.startswith("_")}
        bag_error = extra.pop("_bag_error", None) or summary.get("error") or (None if summary else "the player wrote no summary")
    finally:
        code = node_proc.stop() if node_proc is not None else None
        for fh in (node_fh, player_fh):
            if fh is not None:
                fh.close()
    if node_proc is not None and code not in (0, None):
        notes.append(f"the node exited with code {code} (see {node_log})")
    counts = node_counts(counters, keyframes=keyframes)
    published = (summary or {}).get("published", {}).get(opts.topics.color, 0)
    extra["transport_lost_color"] = max(0, published - counts["color_in"])
    ordered = [outcomes[q.id] for q in questions if q.id in outcomes]
    return ReplayRun("realtime", ordered, counts, {"node": node_fqn, **engine_info},
                     time.perf_counter() - t_start, bag_error, None, notes + list(source.notes), extra)


def run_questions(client: _Client, questions: Sequence[ReplayQuestion], opts: RealtimeOptions, start_ns: int, player_summary: Path,
                  procs: Sequence[tuple[str, ManagedProcess, Path]], outcomes: dict[str, QuestionOutcome], notes: list[str],
                  extra: dict[str, Any], on_answer: Callable[[QuestionOutcome], None] | None, say: Callable[[str], None]) -> None:
    """The scheduling loop: due questions out (≤ max_in_flight), results in, until all are answered."""
    from ros3d_agent.ros.conversions import msg_to_answer

    timed = sorted((q for q in questions if q.ask_at is not None), key=lambda q: q.ask_at)
    at_end = [q for q in questions if q.ask_at is None]
    due: list[ReplayQuestion] = []
    inflight: list[_InFlight] = []
    known: dict[int, Any] = {}  # stable proposal id -> Box3D, from grounding answers
    probes = 0
    bag_done = settled = False
    bag_done_mono = 0.0
    last_progress = (-1.0, -1.0)
    stable_since = 0.0
    node_proc = next((p for n, p, _ in procs if n == "node"), None)
    player_proc = next((p for n, p, _ in procs if n == "player"), None)

    def bag_s() -> float:
        return max(0.0, (client.clock_ns - start_ns) / 1e9)

    def finish(f: _InFlight, answer: Answer) -> None:
        latency = time.monotonic() - f.sent_mono
        if f.question is None:
            return
        answer.query_id = answer.query_id or f.question.id
        o = QuestionOutcome(f.question, answer, f.text, f.asked_at_s, latency, None, f.caption_object,
                            bag_complete=not extra.get("_bag_error"))
        outcomes[f.question.id] = o
        if on_answer is not None:
            on_answer(o)

    def send(q: ReplayQuestion | None, text: str, task: str, caption: dict[str, Any] | None = None) -> None:
        inflight.append(_InFlight(q, text, time.monotonic(), bag_s(), client.send(text, task), caption))

    while len(outcomes) < len(questions):
        if node_proc is not None and node_proc.poll() is not None:
            notes.append(f"the node exited (code {node_proc.poll()}) before every question was answered")
            for q in [*due, *timed, *at_end, *(f.question for f in inflight if f.question)]:
                if q.id not in outcomes:
                    outcomes[q.id] = QuestionOutcome(q, Answer.failure(q.record.question, q.task, "node_exited: the node process ended"),
                                                     q.record.question, bag_s(), 0.0)
            return
        if not bag_done:
            summary = read_json_object(player_summary)
            if not summary.get("finished") and player_proc is not None and player_proc.poll() is not None:
                summary = {"finished": True, "error": summary.get("error") or f"the player exited with code {player_proc.poll()}"}
            if summary.get("finished"):
                bag_done, bag_done_mono = True, time.monotonic()
                if summary.get("error"):
                    extra["_bag_error"] = summary["error"]
                    say(f"bag error: {summary['error']}")
                say(f"bag played: {summary.get('messages', 0)} messages in {summary.get('wall_seconds', 0):.2f} s "
                    f"(max lateness {summary.get('lateness_ms', {}).get('max', 0):.1f} ms)")
        clock_stopped = player_proc is not None and player_proc.poll() is not None
        while timed and (client.clock_ns >= start_ns + round(timed[0].ask_at * 1e9) or clock_stopped):
            due.append(timed.pop(0))
        if bag_done and not settled:
            # settled: nothing reserved or queued for encoding, and ingestion stopped moving
            progress = (client.value("ingest", "frames_posed") + client.value("ingest", "frames_dropped"),
                        client.value("keyframes", "reserved") + client.value("keyframes", "admission_queue"))
            now = time.monotonic()
            if progress != last_progress or client.status_mono < bag_done_mono:
                last_progress, stable_since = progress, now
            if (progress[1] == 0 and now - stable_since > 1.0) or now - bag_done_mono > opts.settle_timeout_s:
                settled = True
                extra["settle_s"] = round(now - bag_done_mono, 3)
                due.extend(at_end)
                at_end = []
        # send what is due
        while due and len(inflight) < opts.max_in_flight:
            q = due[0]
            if q.task == "caption":
                if q.record.box is None:
                    due.pop(0)
                    outcomes[q.id] = QuestionOutcome(q, Answer.failure(q.record.question, q.task, "invalid_question: no box"),
                                                     q.record.question, bag_s(), 0.0)
                    continue
                pick = best_object_for_box(list(known.items()), q.record.box)
                if pick is None:
                    if any(f.question is None for f in inflight):
                        break  # the probe is running
                    if probes:  # it ran and named nothing: nothing to describe
                        due.pop(0)
                        outcomes[q.id] = QuestionOutcome(q, Answer.failure(q.record.question, q.task, "no_proposals: no grounded "
                                                                           "object to describe"), q.record.question, bag_s(), 0.0)
                        continue
                    probes += 1
                    send(None, PROBE_QUESTION, "multi_ground")
                    break
                pid, box, iou = pick
                due.pop(0)
                send(q, q.ask_text(pid), q.task, {"id": int(pid), "box": box6(box), "iou_to_gt": iou,
                                                  "source": "objects of earlier grounding answers"})
            else:
                due.pop(0)
                send(q, q.ask_text(), q.task)
        # collect what came back
        for f in list(inflight):
            if f.result_future is None:
                if not f.goal_future.done():
                    if time.monotonic() - f.sent_mono > 30.0:
                        inflight.remove(f)
                        finish(f, Answer.failure(f.text, f.question.task if f.question else "multi_ground",
                                                 "no_response: the goal was not acknowledged within 30 s"))
                    continue
                handle = f.goal_future.result()
                if not handle.accepted:
                    inflight.remove(f)
                    finish(f, Answer.failure(f.text, f.question.task if f.question else "multi_ground", "rejected: the node refused the goal"))
                    continue
                f.result_future = handle.get_result_async()
            if f.result_future.done():
                inflight.remove(f)
                res = f.result_future.result().result
                answer = msg_to_answer(res.answer)
                if not answer.success and not answer.error:
                    answer.error = res.message
                if answer.success and answer.task in ("ground", "multi_ground"):
                    known.update({o.proposal_id: o.box for o in answer.objects if o.proposal_id >= 0})
                if f.question is None and not answer.objects:
                    notes.append("a caption probe named no object; captions are described without one")
                finish(f, answer)
            elif time.monotonic() - f.sent_mono > opts.question_timeout_s:
                inflight.remove(f)
                finish(f, Answer.failure(f.text, f.question.task if f.question else "multi_ground",
                                         f"timeout: no result within {opts.question_timeout_s:.0f} s"))
        time.sleep(_POLL_S)
    extra["caption_probes"] = probes
