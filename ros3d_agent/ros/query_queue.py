"""Queries: validation, a bounded queue, one model worker, cancellation and deadlines.

The model answers one question at a time on one worker thread (it owns the GPU); requests from
the action, the service and the question topic all go through this queue, so they share one
bound and one policy:

* a request is validated first (empty, oversized, unreadable text, unknown task, bad deadline:
  refused with a reason; more views or a longer deadline than allowed: clamped, and said so);
* at most ``max_pending`` requests wait; more are refused at once with ``queue_full`` (a flood of
  goals costs nothing but the refusal);
* a request that is cancelled or whose deadline passes while it waits never reaches the model;
  one that is running is asked to stop through the engine's ``should_cancel`` hook, and a
  watchdog completes it with ``deadline_exceeded`` if the engine overruns the deadline by more
  than ``grace_s`` (the late result is discarded);
* every request ends with exactly one :class:`Answer` (``success`` or a failure whose ``error``
  starts with a code: ``queue_full``, ``invalid_question``, ``deadline_exceeded``, ``empty_memory``,
  ``internal_error``, ``node_inactive``, or is exactly ``cancelled``).

No rclpy here: the node adapts ROS requests to :class:`QueryRequest` and results back.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
import unicodedata
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from ros3d_agent.inference.answer import TASKS, Answer
from ros3d_agent.scene.types import Box3D, Frame

__all__ = [
    "EngineLike",
    "QueryLimits",
    "QueryRequest",
    "QueryRejected",
    "QueryTicket",
    "QueryQueue",
    "validate_request",
    "ERROR_CODES",
]

log = logging.getLogger(__name__)

#: Codes a failed answer's ``error`` starts with: the queue's own, then those the engine reports.
ERROR_CODES: Final = ("queue_full", "invalid_question", "deadline_exceeded", "empty_memory", "internal_error",
                      "node_inactive", "cancelled", "invalid_keyframes", "no_proposals", "context_overflow")


class EngineLike(Protocol):
    """The part of ``ros3d_agent.inference.engine.SceneEngine`` the node uses (see its contract)."""

    def warmup(self) -> float: ...

    def encode_keyframe(self, frame: Frame) -> Any: ...

    def answer(
        self,
        question: str,
        task: str,
        keyframes: Sequence[Any],
        proposals: Sequence[Box3D] = (),
        *,
        situation: str | None = None,
        box: Box3D | None = None,
        progress: Callable[[str, float], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> Answer: ...

    def release(self) -> None: ...

    @property
    def info(self) -> dict: ...


@dataclass(frozen=True)
class QueryLimits:
    """Defaults and bounds applied to every request."""

    default_views: int = 8
    max_views: int = 16
    default_deadline_s: float = 30.0
    max_deadline_s: float = 300.0
    max_question_bytes: int = 2000
    default_task: str = "qa"

    @classmethod
    def from_params(cls, q: Any) -> "QueryLimits":
        """From :class:`~ros3d_agent.ros.params.QueryParams`."""
        return cls(q.default_views, q.max_views, q.default_deadline_sec, q.max_deadline_sec, q.max_question_bytes, q.default_task)


class QueryRejected(Exception):
    """A request refused before it was queued; ``code`` is one of :data:`ERROR_CODES`."""

    def __init__(self, code: str, detail: str) -> None:
        self.code = code
        self.detail = detail
        super().__init__(f"{code}: {detail}")


@dataclass(frozen=True)
class QueryRequest:
    """A validated request: text normalised, task known, views and deadline resolved."""

    question: str
    task: str
    max_views: int
    deadline_s: float
    source: str
    query_id: str
    notes: tuple[str, ...] = ()
    #: situated_qa: where the asker stands and faces (None: the question text carries it)
    situation: str | None = None
    #: caption: the proposal id to describe (None: the question text names it as ``#<id>``)
    object_id: int | None = None


_ids = itertools.count(1)


def _clean_text(raw: str, max_bytes: int, what: str = "question") -> str:
    """Normalised text of a request field (``what``: question, situation), or :class:`QueryRejected`
    saying what is wrong with it."""
    if not isinstance(raw, str):
        raise QueryRejected("invalid_question", f"{what} must be text, got {type(raw).__name__}")
    try:
        size = len(raw.encode("utf-8"))
    except UnicodeEncodeError:
        raise QueryRejected("invalid_question", f"{what} is not valid UTF-8 text (it contains unpaired surrogates)") from None
    if size > max_bytes:
        raise QueryRejected("invalid_question", f"{what} is {size} bytes; the limit is {max_bytes} (query.max_question_bytes)")
    text = unicodedata.normalize("NFC", raw)
    bad = sum(1 for ch in text if ch == "\ufffd" or (unicodedata.category(ch).startswith("C") and ch not in "\t\n\r"))
    visible = sum(1 for ch in text if not ch.isspace())
    if visible and bad / visible > 0.3:
        raise QueryRejected("invalid_question", f"{what} is not readable text ({bad} of {visible} characters are control or undecodable bytes)")
    text = "".join(" " if unicodedata.category(ch).startswith("C") or ch == "\ufffd" else ch for ch in text)
    text = " ".join(text.split())
    if not text:
        raise QueryRejected("invalid_question", f"{what} is empty")
    return text


def validate_request(
    question: str,
    task: str,
    max_views: int,
    deadline_s: float,
    limits: QueryLimits,
    *,
    source: str,
    query_id: str | None = None,
    situation: str | None = None,
    object_id: int | None = None,
) -> QueryRequest:
    """Check and normalise a request (0 views / 0 deadline mean the configured defaults).

    ``situation`` ("" or None: not given) and ``object_id`` (negative or None: not given) are the
    AskScene fields; when absent, the node reads them from the question text instead.

    Raises:
        QueryRejected: with code ``invalid_question`` and the reason.
    """
    text = _clean_text(question, limits.max_question_bytes)
    task_key = (task or "").strip().lower() or limits.default_task
    if task_key not in TASKS:
        raise QueryRejected("invalid_question", f"unknown task {task!r}; use one of {', '.join(TASKS)}")
    notes: list[str] = []
    try:
        views = int(max_views)
    except (TypeError, ValueError):
        raise QueryRejected("invalid_question", f"max_views must be an integer, got {max_views!r}") from None
    if views < 0:
        raise QueryRejected("invalid_question", f"max_views must be >= 0, got {views}")
    if views == 0:
        views = limits.default_views
    elif views > limits.max_views:
        notes.append(f"max_views {views} clamped to {limits.max_views}")
        views = limits.max_views
    try:
        deadline = float(deadline_s)
    except (TypeError, ValueError):
        raise QueryRejected("invalid_question", f"deadline_sec must be a number, got {deadline_s!r}") from None
    if not math.isfinite(deadline) or deadline < 0:
        raise QueryRejected("invalid_question", f"deadline_sec must be a finite number >= 0, got {deadline_s!r}")
    if deadline == 0:
        deadline = limits.default_deadline_s
    elif deadline > limits.max_deadline_s:
        notes.append(f"deadline {deadline:g} s clamped to {limits.max_deadline_s:g} s")
        deadline = limits.max_deadline_s
    blank = isinstance(situation, str) and not situation.strip()
    situation_text = None if situation is None or blank else _clean_text(situation, limits.max_question_bytes, "situation")
    ident = None
    if object_id is not None:
        try:
            ident = int(object_id)
        except (TypeError, ValueError):
            raise QueryRejected("invalid_question", f"object_id must be an integer, got {object_id!r}") from None
        if ident < 0:
            ident = None
    qid = query_id or f"{source}-{next(_ids)}"
    return QueryRequest(text, task_key, views, deadline, source, qid, tuple(notes), situation_text, ident)


class QueryTicket:
    """One queued request: its progress, cancellation and (exactly one) final answer."""

    def __init__(
        self,
        request: QueryRequest,
        on_done: Callable[["QueryTicket", Answer], None] | Sequence[Callable[["QueryTicket", Answer], None]] | None = None,
        on_progress: Callable[["QueryTicket", str, float], None] | None = None,
    ) -> None:
        self.request = request
        #: free-form data the runner leaves for the listeners (e.g. the proposal id map)
        self.context: dict[str, Any] = {}
        self.submitted_mono = time.monotonic()
        self.deadline_mono = self.submitted_mono + request.deadline_s
        self.started_mono: float | None = None
        self.cancel_mono: float | None = None
        self.stage = "queued"
        self.progress = 0.0
        self._on_done = [] if on_done is None else ([on_done] if callable(on_done) else list(on_done))
        self._on_progress = on_progress
        self._cancel = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._answer: Answer | None = None

    # -- cancellation / deadline -----------------------------------------------------------------
    def cancel(self) -> None:
        if not self._cancel.is_set():
            self.cancel_mono = time.monotonic()
        self._cancel.set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def expired(self, now: float | None = None) -> bool:
        return (time.monotonic() if now is None else now) > self.deadline_mono

    def should_stop(self) -> bool:
        """The engine's ``should_cancel`` hook: cancelled, past the deadline, or already answered."""
        return self._cancel.is_set() or self.expired() or self._done.is_set()

    def elapsed(self) -> float:
        return time.monotonic() - self.submitted_mono

    # -- progress / completion -------------------------------------------------------------------
    def report(self, stage: str, fraction: float) -> None:
        """Progress from the engine (any thread); forwarded to the listener, errors swallowed."""
        self.stage = str(stage)
        self.progress = float(min(1.0, max(0.0, fraction))) if math.isfinite(fraction) else 0.0
        if self._on_progress is not None:
            try:
                self._on_progress(self, self.stage, self.progress)
            except Exception:  # a dead client must not break the model worker
                log.debug("progress listener failed", exc_info=True)

    def finish(self, answer: Answer) -> bool:
        """Set the final answer; only the first call counts (returns False for later ones)."""
        with self._lock:
            if self._answer is not None:
                return False
            answer.query_id = self.request.query_id
            self._answer = answer
            self.stage = "done"
            self.progress = 1.0
        for listener in self._on_done:
            try:
                listener(self, answer)
            except Exception:
                log.exception("answer listener failed for %s", self.request.query_id)
        self._done.set()
        return True

    def fail(self, code: str, detail: str = "") -> bool:
        error = code if not detail else f"{code}: {detail}"
        return self.finish(Answer.failure(self.request.question, self.request.task, error))

    def done(self) -> bool:
        return self._done.is_set()

    @property
    def answer(self) -> Answer | None:
        return self._answer

    def wait(self, timeout: float | None = None) -> Answer | None:
        self._done.wait(timeout)
        return self._answer


@dataclass
class QueueStats:
    """Counters and recent latencies (seconds from submission to answer) of the queue."""

    counts: Counter[str] = field(default_factory=Counter)
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=500))


class QueryQueue:
    """Bounded FIFO of tickets served by one worker thread, plus a deadline watchdog.

    Args:
        runner: answers one ticket (called on the worker thread); it should honour
            ``ticket.should_stop`` and may raise (the ticket then fails with ``internal_error``).
        max_pending: waiting tickets at most (the running one not included).
        grace_s: how long past its deadline a running query may take before the watchdog fails it.
    """

    def __init__(self, runner: Callable[[QueryTicket], Answer], max_pending: int = 4, *, grace_s: float = 2.0,
                 on_answer: Callable[[QueryTicket, Answer], None] | None = None, name: str = "query-worker") -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be >= 1")
        self.runner = runner
        self.on_answer = on_answer
        self.max_pending = int(max_pending)
        self.grace_s = float(grace_s)
        self._name = name
        self._pending: deque[QueryTicket] = deque()
        self._cond = threading.Condition()
        self._running: QueryTicket | None = None
        self._accepting = False
        self._threads: list[threading.Thread] = []
        self.stats = QueueStats()

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        with self._cond:
            if self._accepting:
                return
            self._accepting = True
        self._threads = [threading.Thread(target=self._work, name=self._name, daemon=True),
                         threading.Thread(target=self._watch, name=f"{self._name}-watchdog", daemon=True)]
        for t in self._threads:
            t.start()

    def stop(self, reason: str = "node_inactive: the node is being deactivated", timeout: float = 10.0) -> None:
        """Refuse new requests, fail waiting ones with ``reason``, stop the running one, join."""
        with self._cond:
            self._accepting = False
            waiting = list(self._pending)
            self._pending.clear()
            running = self._running
            self._cond.notify_all()
        code, _, detail = reason.partition(": ")
        for t in waiting:
            t.cancel()
            if t.fail(code, detail):
                self.stats.counts["failed_on_stop"] += 1
        if running is not None:
            running.cancel()
        deadline = time.monotonic() + timeout
        for th in self._threads:
            th.join(max(0.0, deadline - time.monotonic()))
        if running is not None and running.fail(code, detail):
            self.stats.counts["failed_on_stop"] += 1
        self._threads = []

    # -- submission ------------------------------------------------------------------------------
    def submit(
        self,
        request: QueryRequest,
        on_done: Callable[[QueryTicket, Answer], None] | None = None,
        on_progress: Callable[[QueryTicket, str, float], None] | None = None,
    ) -> QueryTicket:
        """Queue a request.

        Raises:
            QueryRejected: ``queue_full`` or ``node_inactive``.
        """
        with self._cond:
            if not self._accepting:
                self.stats.counts["rejected_inactive"] += 1
                raise QueryRejected("node_inactive", "the node is not active (activate it with the lifecycle manager)")
            if len(self._pending) >= self.max_pending:
                self.stats.counts["rejected_queue_full"] += 1
                raise QueryRejected("queue_full", f"{len(self._pending)} queries are waiting (query.queue_size={self.max_pending}); retry later")
            listeners = [cb for cb in (self.on_answer, on_done) if cb is not None]
            ticket = QueryTicket(request, listeners, on_progress)
            self._pending.append(ticket)
            self.stats.counts["submitted"] += 1
            self._cond.notify_all()
            return ticket

    def cancel(self, ticket: QueryTicket) -> None:
        """Cancel a ticket: a waiting one is answered ``cancelled`` at once, a running one is asked to stop."""
        ticket.cancel()
        with self._cond:
            waiting = ticket in self._pending
            if waiting:
                self._pending.remove(ticket)
        if waiting and ticket.fail("cancelled"):
            self.stats.counts["cancelled"] += 1

    def depth(self) -> int:
        """Waiting tickets (not counting the running one)."""
        with self._cond:
            return len(self._pending)

    def busy(self) -> bool:
        with self._cond:
            return self._running is not None

    # -- worker ----------------------------------------------------------------------------------
    def _next(self) -> QueryTicket | None:
        with self._cond:
            while self._accepting and not self._pending:
                self._cond.wait(0.5)
            if not self._accepting:
                return None
            ticket = self._pending.popleft()
            self._running = ticket
            return ticket

    def _work(self) -> None:
        while True:
            ticket = self._next()
            if ticket is None:
                return
            try:
                self._serve(ticket)
            except Exception:  # defensive: _serve already catches the runner's errors
                log.exception("query worker error")
            finally:
                with self._cond:
                    self._running = None

    def _serve(self, ticket: QueryTicket) -> None:
        counts = self.stats.counts
        if ticket.cancel_requested:
            ticket.fail("cancelled")
            counts["cancelled"] += 1
            return
        if ticket.expired():
            ticket.fail("deadline_exceeded", f"the {ticket.request.deadline_s:g} s deadline passed while the query waited in the queue")
            counts["deadline_exceeded"] += 1
            return
        ticket.started_mono = time.monotonic()
        try:
            answer = self.runner(ticket)
        except Exception as exc:
            log.exception("query %s failed", ticket.request.query_id)
            answer = Answer.failure(ticket.request.question, ticket.request.task, f"internal_error: {type(exc).__name__}: {exc}")
        if not answer.success and answer.error == "cancelled" and not ticket.cancel_requested and ticket.expired():
            answer = Answer.failure(ticket.request.question, ticket.request.task,
                                    f"deadline_exceeded: stopped after {ticket.elapsed():.2f} s (deadline {ticket.request.deadline_s:g} s)")
        if ticket.finish(answer):
            self.stats.latencies.append(ticket.elapsed())
            if answer.success:
                counts["succeeded"] += 1
            else:
                counts[answer.error.split(":", 1)[0] or "failed"] += 1
        else:
            counts["late_result_discarded"] += 1

    def _watch(self) -> None:
        """Fail a running query that overran its deadline by more than the grace period."""
        while True:
            with self._cond:
                if not self._accepting:
                    return
                running = self._running
                self._cond.wait(0.05)
            if running is None or running.done():
                continue
            now = time.monotonic()
            if now > running.deadline_mono + self.grace_s:
                if running.fail("deadline_exceeded", f"the model did not stop within {self.grace_s:g} s of the "
                                f"{running.request.deadline_s:g} s deadline; its result will be discarded"):
                    self.stats.counts["deadline_exceeded"] += 1
                    self.stats.counts["watchdog"] += 1
            elif running.cancel_mono is not None and now > running.cancel_mono + self.grace_s:
                if running.fail("cancelled"):
                    self.stats.counts["cancelled"] += 1
                    self.stats.counts["watchdog"] += 1
