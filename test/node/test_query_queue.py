"""Query validation, the bounded queue, cancellation, deadlines and the watchdog.

Pure unit tests of the queueing logic: the "model" here is a scripted runner
(``FakeEngineForQueueTests``), never the node's engine. The node's own tests use the real engine.
"""

from __future__ import annotations

import threading
import time

import pytest

from ros3d_agent.inference.answer import Answer
from ros3d_agent.ros.query_queue import QueryLimits, QueryQueue, QueryRejected, QueryTicket, validate_request

LIMITS = QueryLimits(default_views=4, max_views=8, default_deadline_s=5.0, max_deadline_s=20.0, max_question_bytes=200)


def _req(q="what is on the table?", **kw):
    return validate_request(q, kw.pop("task", "qa"), kw.pop("views", 0), kw.pop("deadline", 0.0), LIMITS, source="test", **kw)


class FakeEngineForQueueTests:
    """A scripted stand-in for the model worker: optionally blocks, honours should_stop or not."""

    def __init__(self, seconds: float = 0.0, honour_cancel: bool = True) -> None:
        self.seconds = seconds
        self.honour_cancel = honour_cancel
        self.started = threading.Event()
        self.calls: list[str] = []

    def __call__(self, ticket: QueryTicket) -> Answer:
        self.calls.append(ticket.request.question)
        self.started.set()
        ticket.report("generating", 0.5)
        end = time.monotonic() + self.seconds
        while time.monotonic() < end:
            if self.honour_cancel and ticket.should_stop():
                return Answer.failure(ticket.request.question, ticket.request.task, "cancelled")
            time.sleep(0.005)
        return Answer(question=ticket.request.question, task=ticket.request.task, text="a mug")


@pytest.mark.parametrize("question, fragment", [
    ("", "empty"),
    ("   \n\t ", "empty"),
    ("x" * 201, "201 bytes"),
    ("é" * 101, "202 bytes"),
    ("\x00\x01\x02\x03\x04 ab", "not readable"),
    ("\ufffd\ufffd\ufffd\ufffdok", "not readable"),
    ("bad \ud800 surrogate", "UTF-8"),
])
def test_bad_questions_are_refused_with_reasons(question, fragment):
    with pytest.raises(QueryRejected) as err:
        _req(question)
    assert err.value.code == "invalid_question" and fragment in str(err.value)


def test_requests_are_normalised_and_clamped():
    r = _req("  where\x07 is   the\nmug? ", views=50, deadline=100.0)
    assert r.question == "where is the mug?" and r.max_views == 8 and r.deadline_s == 20.0 and len(r.notes) == 2
    d = _req()
    assert d.max_views == 4 and d.deadline_s == 5.0 and d.task == "qa" and d.query_id.startswith("test-")
    assert _req(task=" GROUND ").task == "ground"
    for bad in ({"task": "dance"}, {"deadline": float("nan")}, {"deadline": -1.0}, {"views": -2}):
        with pytest.raises(QueryRejected):
            _req(**bad)


def test_situation_and_object_fields_are_optional_and_checked():
    plain = _req()
    assert plain.situation is None and plain.object_id is None
    r = _req(task="situated_qa", situation="  I stand at the\tdoor,  facing the sofa ", object_id=-1)
    assert r.situation == "I stand at the door, facing the sofa" and r.object_id is None
    assert _req(task="caption", object_id=7).object_id == 7
    assert _req(situation="   ").situation is None  # blank = not given: the question text may carry it
    with pytest.raises(QueryRejected, match="situation is 201 bytes"):
        _req(situation="s" * 201)
    with pytest.raises(QueryRejected, match="object_id must be an integer"):
        _req(object_id="seven")


def test_answers_flow_and_queue_full_is_refused_at_once():
    engine = FakeEngineForQueueTests(seconds=0.3)
    seen: list[Answer] = []
    q = QueryQueue(engine, max_pending=2, on_answer=lambda t, a: seen.append(a))
    q.start()
    try:
        first = q.submit(_req("one"))
        assert engine.started.wait(5)
        waiting = [q.submit(_req("two")), q.submit(_req("three"))]
        with pytest.raises(QueryRejected) as err:
            q.submit(_req("four"))
        assert err.value.code == "queue_full"
        for t in [first, *waiting]:
            a = t.wait(10)
            assert a is not None and a.success and a.text == "a mug" and a.query_id == t.request.query_id
        assert q.stats.counts["succeeded"] == 3 and q.stats.counts["rejected_queue_full"] == 1
        assert len(seen) == 3 and len(q.stats.latencies) == 3
    finally:
        q.stop()


def test_cancel_waiting_and_running_queries():
    engine = FakeEngineForQueueTests(seconds=5.0)
    q = QueryQueue(engine, max_pending=4)
    q.start()
    try:
        running = q.submit(_req("long"))
        assert engine.started.wait(5)
        waiting = q.submit(_req("next"))
        q.cancel(waiting)
        assert waiting.wait(1).error == "cancelled"  # answered at once, never reached the model
        q.cancel(running)
        assert running.wait(2).error == "cancelled"
        assert engine.calls == ["long"]
    finally:
        q.stop()


def test_deadlines_in_the_queue_while_running_and_by_the_watchdog():
    engine = FakeEngineForQueueTests(seconds=1.0)
    q = QueryQueue(engine, max_pending=4, grace_s=0.3)
    q.start()
    try:
        blocker = q.submit(_req("blocker", deadline=10.0))
        short = q.submit(_req("short", deadline=0.2))  # expires while the blocker runs
        assert short.wait(5).error.startswith("deadline_exceeded") and "waited in the queue" in short.answer.error
        assert blocker.wait(5).success
        stopped = q.submit(_req("stops itself", deadline=0.2))
        assert stopped.wait(5).error.startswith("deadline_exceeded: stopped after")
    finally:
        q.stop()
    stubborn = FakeEngineForQueueTests(seconds=1.2, honour_cancel=False)
    q = QueryQueue(stubborn, max_pending=1, grace_s=0.2)
    q.start()
    try:
        t0 = time.monotonic()
        t = q.submit(_req("ignores cancel", deadline=0.3))
        a = t.wait(5)
        assert a.error.startswith("deadline_exceeded") and "did not stop" in a.error and time.monotonic() - t0 < 2.0
        assert q.stats.counts["watchdog"] == 1
    finally:
        q.stop()


def test_stop_answers_everything_and_refuses_new_work():
    engine = FakeEngineForQueueTests(seconds=5.0)
    q = QueryQueue(engine, max_pending=4)
    q.start()
    running = q.submit(_req("a"))
    assert engine.started.wait(5)
    waiting = q.submit(_req("b"))
    q.stop("node_inactive: deactivating")
    assert waiting.answer.error == "node_inactive: deactivating"
    assert running.wait(1) is not None and not running.answer.success
    with pytest.raises(QueryRejected) as err:
        q.submit(_req("c"))
    assert err.value.code == "node_inactive"


def test_runner_exceptions_become_internal_errors():
    def broken(ticket):
        raise ValueError("boom")

    q = QueryQueue(broken)
    q.start()
    try:
        assert q.submit(_req()).wait(5).error == "internal_error: ValueError: boom"
    finally:
        q.stop()
