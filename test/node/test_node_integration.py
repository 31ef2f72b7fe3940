"""The node end to end, in real processes over real DDS (loopback, own domain), with the tiny model.

Three processes: the node (started the way ``ros3d-agent run`` starts it: workstation config,
preset tiny on CPU, params overrides), a camera process streaming a synthetic room at 30 Hz with
the robot's TF chain, and this test as the client (action goals, service calls, topic questions,
lifecycle transitions, /diagnostics).
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from node_support import AgentClient, engine_missing_reason, node_argv, streamer_argv, wait_for, wait_ready_file

from ros3d_agent.ros.conversions import stamp_to_ns
from ros3d_agent.utils.processes import ManagedProcess, child_env

pytestmark = [pytest.mark.ros, pytest.mark.slow]

_MISSING = engine_missing_reason()
if _MISSING:
    pytestmark.append(pytest.mark.skip(reason=_MISSING))


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    from ros3d_agent.scene.synthetic.generate import GenerateConfig, generate_scene

    out = tmp_path_factory.mktemp("node_scene")
    summary = generate_scene(3, out, GenerateConfig(frames=24, width=96, height=72, noise=False))
    return summary.path


@pytest.fixture(scope="module")
def system(scene, tmp_path_factory):
    """(node process, client, start_streamer) with the node active and no camera yet."""
    from ros3d_agent.ros.spinning import spinning_node

    tmp = tmp_path_factory.mktemp("node_run")
    node = ManagedProcess(node_argv(tmp / "node.ready"), env=child_env())
    streamers: list[ManagedProcess] = []

    def start_streamer(*extra: str) -> ManagedProcess:
        ready = tmp / f"stream{len(streamers)}.ready"
        proc = ManagedProcess(streamer_argv(scene, ready, *extra), env=child_env())
        proc.start()
        streamers.append(proc)
        wait_ready_file(ready, proc, timeout=60)
        return proc

    with node, spinning_node("ros3d_test_client") as client_node:
        wait_ready_file(tmp / "node.ready", node)
        client = AgentClient(client_node)
        client.streamers = streamers
        try:
            yield node, client, start_streamer
        finally:
            for proc in streamers:
                proc.stop()
    assert node.popen.returncode == 0, f"the node did not exit cleanly:\n{node.output()[-3000:]}"


def test_query_before_any_frame_reports_empty_memory(system):
    node, client, _ = system
    resp = client.ask_service("what is in the room?")
    assert not resp.success and resp.message.startswith("empty_memory") and "frames synchronised 0" in resp.message
    assert resp.answer.error == resp.message
    wait_for(lambda: client.latest_status().get("keyframes", {}).get("_level") == 1, 10, "the keyframes WARN status", node)


def test_streams_become_keyframes_with_tf_chain(system):
    node, client, start_streamer = system
    start_streamer()
    wait_for(lambda: client.value("keyframes", "keyframes") >= 4 and client.value("ingest", "frames_synced") >= 30, 60,
             "4 keyframes and 30 frames", node)
    wait_for(lambda: client.value("keyframes", "cloud.proposals") >= 1, 60, "proposals", node)
    st = client.latest_status()
    assert st["tf"]["chain"] == "map -> odom -> base_link -> camera_link -> camera_color_optical_frame"
    synced, posed = float(st["ingest"]["frames_synced"]), float(st["ingest"]["frames_posed"])
    assert synced >= 30 and posed >= 0.8 * synced, st["ingest"]
    assert st["model"]["loaded"] == "True" and st["model"]["_level"] == 0


def test_action_goal_reports_stages_and_answers_in_the_fixed_frame(system):
    node, client, _ = system
    feedback: list = []
    handle = client.send_goal("what is on the table?", "qa", max_views=4, feedback=feedback)
    assert handle.accepted
    status, result = client.result(handle)
    assert status == 4 and result.success, result.message  # SUCCEEDED
    a = result.answer
    assert a.header.frame_id == "map" and a.question == "what is on the table?" and a.task == "qa"
    stamps = [stamp_to_ns(s) for s in a.keyframe_stamps]
    assert 1 <= len(stamps) <= 4 and stamp_to_ns(a.header.stamp) == max(stamps)
    assert {t.stage for t in a.timings} >= {"queue_wait", "select_views"}
    stages = [f.stage for f in feedback]
    assert stages and stages[0] == "queued" and len(set(stages)) >= 2, stages


def test_grounding_returns_boxes_objects_and_markers_in_the_map_frame(system, scene):
    node, client, _ = system
    from ros3d_agent.scene import SceneDir

    n_objects, n_markers = len(client.objects), len(client.markers)
    resp = client.ask_service("the chair next to the table", "ground")
    assert resp.success, resp.message
    a = resp.answer
    assert a.objects, "grounding chooses among the node's proposals"
    pts = SceneDir(scene).load_points()[0]
    lo, hi = pts.min(axis=0) - 0.5, pts.max(axis=0) + 0.5
    for o in a.objects:
        c = np.array([o.center.position.x, o.center.position.y, o.center.position.z])
        assert o.header.frame_id == "map" and np.all(c >= lo) and np.all(c <= hi), (c, lo, hi)
        assert min(o.size.x, o.size.y, o.size.z) > 0 and 0.0 <= o.score <= 1.0 and o.id.isdigit()
    wait_for(lambda: len(client.objects) > n_objects and len(client.markers) > n_markers, 10, "objects and markers")
    arr = client.objects[-1]
    assert arr.header.frame_id == "map" and stamp_to_ns(arr.header.stamp) == stamp_to_ns(a.header.stamp)
    assert [o.id for o in arr.objects] == [o.id for o in a.objects]
    markers = client.markers[-1].markers
    assert markers[0].action == 3 and len(markers) == 1 + 2 * len(a.objects)  # DELETEALL, then box + label each
    js = client.answer_json[-1]
    assert js["frame_id"] == "map" and js["task"] == "ground" and len(js["objects"]) == len(a.objects)


def _caption_after_grounding(client, ask) -> tuple:
    """Ground, then caption the grounded object with ``ask(ident)``. The stream keeps refining the
    proposals (every 0.5 s here), so an id can vanish between the two calls, as it can for a robot:
    a client grounds again then. Returns (last result, attempts)."""
    result = None
    for attempt in range(1, 6):
        grounded = client.ask_service("the table", "ground")
        assert grounded.success and grounded.answer.objects, grounded.message
        result = ask(int(grounded.answer.objects[0].id))
        if result[0]:
            return result, attempt
        assert "is not in the scene memory" in result[1], result[1]  # the only acceptable failure
    return result, attempt


def test_caption_of_a_grounded_object_and_situated_question(system):
    node, client, _ = system

    def by_text(ident: int):
        cap = client.ask_service(f"describe object #{ident}", "caption")
        return cap.success, cap.message

    def by_field(ident: int):  # the AskScene field, through the action
        status, res = client.result(client.send_goal("describe this object", "caption", object_id=ident))
        return status == 4 and res.success and res.answer.task == "caption", res.message  # random tiny weights: any text

    for ask in (by_text, by_field):
        (ok, message), attempts = _caption_after_grounding(client, ask)
        assert ok, f"{ask.__name__}: {message} (after {attempts} groundings)"
    missing = client.ask_service("describe the thing", "caption")
    assert not missing.success and "caption #<id>" in missing.message and "object_id" in missing.message
    unknown = client.ask_service("describe this object", "caption", object_id=987654)
    assert not unknown.success and "object 987654 is not in the scene memory" in unknown.message
    sit = client.ask_service("situation: I stand at the door facing the table. question: what is on my left?", "situated_qa")
    assert sit.success, sit.message
    by_field = client.ask_service("what is on my left?", "situated_qa", situation="I stand at the door facing the table.")
    assert by_field.success and by_field.answer.question == "what is on my left?", by_field.message
    bare = client.ask_service("what is on my left?", "situated_qa")
    assert not bare.success and bare.message.startswith("invalid_question") and "situation:" in bare.message
    blank = client.ask_service("what is on my left?", "situated_qa", situation="   ")
    assert not blank.success and "situation" in blank.message  # a blank field counts as not given


def test_topic_question_answer_pair(system):
    node, client, _ = system
    from std_msgs.msg import String

    before = len(client.answers)
    client.question_pub.publish(String(data="  how many chairs are there?  "))
    got = wait_for(lambda: [m for m in client.answers[before:] if m.question == "how many chairs are there?"], 30, "the topic answer", node)
    assert got[0].success and got[0].query_id.startswith("topic-") and got[0].header.frame_id == "map"


def test_cancel_and_deadline(system):
    node, client, _ = system
    handles = [client.send_goal(f"question {i}", "qa", max_views=16) for i in range(4)]
    last = handles[-1]
    cancel = client._wait_future(last.cancel_goal_async(), 10)
    status, result = client.result(last)
    if len(cancel.goals_canceling) == 1:
        assert status == 5 and result.message == "cancelled"  # CANCELED
    else:  # it had already finished: then the cancel must have been refused, not half-done
        assert status == 4 and result.success
    for h in handles[:-1]:
        assert client.result(h)[0] == 4
    handle = client.send_goal("too slow", "qa", deadline=1e-6)
    status, result = client.result(handle)
    assert status == 6 and result.message.startswith("deadline_exceeded")  # ABORTED with the reason


def test_diagnostics_latency_and_counters(system):
    node, client, _ = system
    wait_for(lambda: client.value("queries", "answered") >= 4, 10, "query latencies in /diagnostics", node)
    q = client.latest_status()["queries"]
    p50, p95 = float(q["latency_p50_s"]), float(q["latency_p95_s"])
    assert 0 < p50 <= p95 < 30
    assert int(q["count.succeeded"]) >= 4
    assert client.value("model", "process_rss_mb") > 0


def test_lifecycle_deactivate_frees_and_reactivate_works(system):
    node, client, _ = system
    assert client.lifecycle("deactivate")
    assert client.state() == "inactive"
    wait_for(lambda: client.latest_status().get("model", {}).get("loaded") == "False", 10, "model released", node)
    assert client.value("keyframes", "keyframes", -1) == 0
    assert not client.action.wait_for_server(timeout_sec=0.5) or client.state() == "inactive"
    t0 = time.monotonic()
    assert client.lifecycle("activate")
    assert client.state() == "active"
    wait_for(lambda: client.value("keyframes", "keyframes") >= 2, 60, "keyframes after re-activation", node)
    resp = client.ask_service("is the door open?")
    assert resp.success, resp.message
    assert time.monotonic() - t0 < 60
    wait_for(lambda: math.isfinite(client.value("queries", "latency_p50_s", math.nan)), 10, "latency after re-activation", node)


def test_reset_memory_service_forgets_and_relearns(system):
    """~/reset_memory: the keyframes go; the live stream refills the memory with frames after the reset."""
    node, client, _ = system
    wait_for(lambda: client.value("keyframes", "keyframes") >= 2, 60, "keyframes before the reset", node)
    resets = client.value("keyframes", "memory_resets")
    t_reset = time.time_ns()
    resp = client.reset_memory()
    assert resp.success and resp.message.startswith("forgot ") and "keyframe(s)" in resp.message, resp.message
    assert int(resp.message.split()[1]) >= 2
    # the same /diagnostics message carries the reset counter and the post-reset keyframe count
    wait_for(lambda: client.value("keyframes", "memory_resets") > resets and client.value("keyframes", "keyframes") >= 2,
             60, "keyframes after the reset", node)
    answer = client.ask_service("what is on the table?")
    assert answer.success, answer.message
    oldest = min(stamp_to_ns(s) for s in answer.answer.keyframe_stamps)
    assert oldest > t_reset - 10**9, "only frames from (about) the reset onwards are remembered"


def test_backward_time_jump_resets_memory_and_relearns(system):
    """A bag that starts over (or a simulator reset): stamps jump back; buffers and memory restart."""
    node, client, start_streamer = system
    for proc in client.streamers:
        proc.stop()
    jumps_before = client.value("ingest", "time_jumps")
    start_streamer("--time-offset", "-120")
    wait_for(lambda: client.value("ingest", "time_jumps") > jumps_before, 30, "a time jump in /diagnostics", node)
    wait_for(lambda: client.value("keyframes", "keyframes") >= 2, 60, "keyframes of the new timeline", node)
    resp = client.ask_service("what is near the window?")
    assert resp.success, resp.message
    newest = max(stamp_to_ns(s) for s in resp.answer.keyframe_stamps)
    assert newest < time.time_ns() - 100 * 10**9, "only keyframes of the new (older) timeline remain"
