"""Keyframe memory: gating, coverage decisions, reservations, eviction by redundancy, view selection,
the admission worker, and the fused cloud + proposals it maintains. No DDS, no model."""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest
from node_support import START, FeaturesStub, S, camera_pose, synthetic_frame

from ros3d_agent.ros.keyframes import AdmissionWorker, KeyframeMemory, KeyframePolicy, frame_coverage_keys
from ros3d_agent.ros.memory_cloud import CloudConfig, SceneCloud

POLICY = KeyframePolicy(min_translation_m=0.3, min_rotation_deg=20.0, min_interval_ns=0, coverage_check_ns=S // 2,
                        min_new_coverage=0.2, max_count=4, max_bytes=10**9, voxel_size=0.1, coverage_stride=2)


def _admit(mem: KeyframeMemory, T, stamp, nbytes=1000):
    frame = synthetic_frame(T, stamp)
    reason = mem.gate(T, stamp)
    if reason is None:
        return None
    voxels = frame_coverage_keys(frame, mem.policy)
    ok, _ = mem.decide(reason, voxels)
    if not ok:
        return None
    res = mem.reserve(stamp, T, voxels, reason)
    kf, evicted = mem.commit(res, FeaturesStub(stamp, nbytes))
    return kf, evicted


def test_gate_admits_first_moved_turned_and_rejects_redundant():
    mem = KeyframeMemory(POLICY)
    assert mem.gate(camera_pose(), START) == "first"
    _admit(mem, camera_pose(), START)
    assert mem.gate(camera_pose(0.05, (0.05, 0, 1.2)), START + S // 10) is None  # barely moved: not even a coverage check yet
    assert mem.gate(camera_pose(0.0, (0.5, 0, 1.2)), START + S // 5) == "moved"
    assert mem.gate(camera_pose(math.radians(30)), START + S // 5) == "turned"
    # a nearby frame is tested for coverage at most every coverage_check_ns
    assert mem.gate(camera_pose(0.05), START + S) == "coverage"
    assert mem.gate(camera_pose(0.05), START + S + S // 10) is None
    assert mem.gate(camera_pose(0.05), START + 2 * S) == "coverage"


def test_min_interval_and_time_going_backwards():
    mem = KeyframeMemory(KeyframePolicy(min_interval_ns=S))
    _admit(mem, camera_pose(), START)
    assert mem.gate(camera_pose(0, (5, 0, 1.2)), START + S // 2) is None
    assert mem.gate(camera_pose(0, (5, 0, 1.2)), START + 2 * S) == "moved"
    assert mem.gate(camera_pose(0, (5, 0, 1.2)), START - 10 * S) == "moved"  # a reset clock never blocks admission


def test_coverage_decision_and_reservations_prevent_duplicates():
    mem = KeyframeMemory(POLICY)
    T = camera_pose()
    same = frame_coverage_keys(synthetic_frame(T), POLICY)
    assert mem.decide("coverage", same) == (True, 1.0)
    res = mem.reserve(START, T, same, "first")
    assert mem.decide("coverage", same)[0] is False  # the reserved (not yet encoded) keyframe already covers it
    assert mem.gate(T, START + S // 10) is None
    assert mem.coverage_gain(np.empty(0, np.int64)) == 0.0
    mem.cancel(res)
    assert mem.pending() == 0 and mem.coverage_gain(same) == 1.0
    assert mem.commit(res, FeaturesStub(START)) == (None, [])  # a cancelled reservation cannot be committed


def test_eviction_prefers_redundant_keyframes_and_respects_bytes():
    mem = KeyframeMemory(POLICY)
    # four views: two nearly identical (redundant), two of distinct walls
    poses = [camera_pose(0.0), camera_pose(math.radians(90)), camera_pose(math.radians(180)), camera_pose(0.0, (0.31, 0, 1.2))]
    for i, T in enumerate(poses):
        assert _admit(mem, T, START + i * S) is not None
    _, evicted = _admit(mem, camera_pose(math.radians(270)), START + 10 * S)
    assert [e.stamp_ns for e in evicted] == [START]  # the older of the redundant pair, never the newest
    assert len(mem) == 4 and mem.evicted["count"] == 1
    small = KeyframeMemory(KeyframePolicy(max_bytes=3000, min_interval_ns=0))
    for i in range(4):
        _admit(small, camera_pose(math.radians(60 * i)), START + i * S, nbytes=1000)
    assert 0 < small.nbytes <= 3000 and small.evicted["bytes"] >= 1


def test_select_strategies_return_time_order():
    mem = KeyframeMemory(KeyframePolicy(max_count=100, min_interval_ns=0))
    for i in range(10):
        _admit(mem, camera_pose(math.radians(36 * i)), START + i * S)
    assert len(mem) == 10
    for strategy in ("coverage", "uniform", "latest"):
        sel = mem.select(4, strategy)
        assert len(sel) == 4 and [k.stamp_ns for k in sel] == sorted(k.stamp_ns for k in sel)
    assert [k.stamp_ns for k in mem.select(3, "latest")] == [START + 7 * S, START + 8 * S, START + 9 * S]
    assert len(mem.select(50)) == 10 and mem.newest_stamp() == START + 9 * S
    with pytest.raises(ValueError):
        mem.select(0)


def test_admission_worker_encodes_commits_fuses_and_proposes():
    mem = KeyframeMemory(KeyframePolicy(min_interval_ns=0))
    cloud = SceneCloud(CloudConfig(stride=2, min_interval_ns=0, min_growth=0.0))
    encoded: list[int] = []

    def encode(frame):
        if frame.stamp == START + 2 * S:
            raise RuntimeError("GPU fell off")
        encoded.append(frame.stamp)
        return FeaturesStub(frame.stamp, 4096)

    def admitted(frame, kf, evicted):
        cloud.add_frame(frame)
        cloud.update_proposals()

    worker = AdmissionWorker(mem, encode, admitted, queue_size=8)
    worker.start()
    try:
        for i in range(4):
            T = camera_pose(math.radians(90 * i))
            frame = synthetic_frame(T, START + i * S)
            res = mem.reserve(frame.stamp, T, frame_coverage_keys(frame, mem.policy), "moved")
            assert worker.submit(res, frame)
        assert worker.wait_idle(30.0)
    finally:
        worker.stop()
    assert worker.counts["admitted"] == 3 and worker.counts["encode_failed"] == 1
    assert len(mem) == 3 and mem.pending() == 0 and mem.nbytes > 3 * 4096
    stats = cloud.stats()
    assert stats["frames_fused"] == 3 and stats["points"] > 100 and stats["proposal_runs"] >= 1
    snap = cloud.proposals()
    assert len(snap.boxes) == len(snap.ids) and snap.id_map() == dict(enumerate(snap.ids))


def test_full_admission_queue_refuses_and_releases_the_reservation():
    mem = KeyframeMemory()
    gate = threading.Event()
    worker = AdmissionWorker(mem, lambda f: gate.wait(10) and FeaturesStub(f.stamp), queue_size=1)
    worker.start()
    try:
        results = []
        for i in range(3):
            T = camera_pose(math.radians(120 * i))
            f = synthetic_frame(T, START + i * S)
            results.append(worker.submit(mem.reserve(f.stamp, T, frame_coverage_keys(f, mem.policy), "moved"), f))
        assert results.count(False) >= 1
        gate.set()
        assert worker.wait_idle(10.0)
    finally:
        worker.stop()
    assert mem.pending() == 0 and len(mem) == results.count(True)


def test_wait_idle_holds_when_the_worker_finishes_a_job_before_submit_returns():
    """The worker can take and finish a job before submit() returns (the submitting thread is
    preempted right after the put): idle must follow the jobs really outstanding. The put is made
    to wait for the job's completion, which forces that interleaving every time."""
    mem = KeyframeMemory(KeyframePolicy(min_interval_ns=0))
    worker = AdmissionWorker(mem, lambda f: FeaturesStub(f.stamp), queue_size=8)
    real_put = worker._queue.put_nowait

    def put_then_lose_the_cpu(job):
        done_before = sum(worker.counts.values())
        real_put(job)
        deadline = time.monotonic() + 5.0
        while sum(worker.counts.values()) == done_before and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(0.01)  # let the worker run its bookkeeping after the job

    worker._queue.put_nowait = put_then_lose_the_cpu
    worker.start()
    try:
        for i in range(5):
            T = camera_pose(math.radians(60 * i))
            f = synthetic_frame(T, START + i * S)
            assert worker.submit(mem.reserve(f.stamp, T, frame_coverage_keys(f, mem.policy), "moved"), f)
            assert worker.wait_idle(2.0), f"idle never set after job {i}"
    finally:
        worker.stop()
    assert mem.pending() == 0 and worker.counts["admitted"] == 5
