"""Ingest path without DDS: header checks and decoding of hostile messages, the pending-TF queue,
timeouts, staleness, and the keyframe candidate filter. Real sensor_msgs classes, no executor."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from node_support import START, FeaturesStub, K, S, camera_pose, image_msgs, synthetic_frame

from ros3d_agent.ros.diagnostics import Counters
from ros3d_agent.ros.image_codec import numpy_to_compressed, numpy_to_image
from ros3d_agent.ros.ingest import (
    CandidateFilter,
    DecoderConfig,
    FrameDecoder,
    FrameDrop,
    IngestPipeline,
    MessageSet,
    PosedSet,
)
from ros3d_agent.ros.keyframes import AdmissionWorker, KeyframeMemory
from ros3d_agent.ros.tf_buffer import TfBuffer
from ros3d_agent.scene.robot_frames import T_LINK_OPTICAL


def _set(color, depth, info, stamp=START, depth_info=None, received=None):
    return MessageSet(stamp, color, depth, info, depth_info, time.monotonic() if received is None else received)


def _posed(m: MessageSet, T=None) -> PosedSet:
    return PosedSet(m, camera_pose() if T is None else T, "camera_color_optical_frame")


def _drop_reason(decoder: FrameDecoder, m: MessageSet, full: bool = False) -> str:
    with pytest.raises(FrameDrop) as err:
        decoder.precheck(m)
        if full:
            decoder.decode(_posed(m))
    return err.value.reason


def test_good_frames_decode_in_every_supported_form():
    frame = synthetic_frame(camera_pose())
    dec = FrameDecoder()
    for enc, fmt in (("rgb8", "16UC1"), ("bgr8", "32FC1")):
        m = _set(*image_msgs(frame, color_encoding=enc, depth_format=fmt))
        dec.precheck(m)
        out = dec.decode(_posed(m))
        np.testing.assert_array_equal(out.rgb, frame.rgb)
        np.testing.assert_allclose(out.depth, frame.depth, atol=1e-3)
        np.testing.assert_allclose(out.K, K)
    # compressed colour (jpeg) + compressedDepth
    c, d, info = image_msgs(frame)
    cc = numpy_to_compressed(frame.rgb, "png", stamp_ns=frame.stamp)
    cd = numpy_to_compressed(np.rint(frame.depth * 1000).astype(np.uint16), "compressedDepth", stamp_ns=frame.stamp)
    comp = FrameDecoder(DecoderConfig(color_compressed=True, depth_compressed=True))
    m = _set(cc, cd, info)
    comp.precheck(m)
    out = comp.decode(_posed(m))
    np.testing.assert_array_equal(out.rgb, frame.rgb)
    np.testing.assert_allclose(out.depth, frame.depth, atol=1e-3)


def test_depth_with_its_own_intrinsics_is_resampled_onto_colour():
    frame = synthetic_frame(camera_pose())
    c, _, info = image_msgs(frame)
    half = np.rint(frame.depth[::2, ::2] * 1000).astype(np.uint16)
    depth = numpy_to_image(half, "16UC1", stamp_ns=frame.stamp)
    dinfo = type(info)()
    dinfo.width, dinfo.height = 32, 24
    Kd = K.copy()
    Kd[:2] /= 2.0
    Kd[0, 2], Kd[1, 2] = 15.75, 11.75
    dinfo.k = [float(v) for v in Kd.reshape(-1)]
    dec = FrameDecoder(DecoderConfig(use_depth_info=True))
    m = _set(c, depth, info, depth_info=dinfo)
    dec.precheck(m)
    out = dec.decode(_posed(m))
    assert out.depth.shape == (48, 64) and np.count_nonzero(out.depth) > 0.9 * out.depth.size
    assert _drop_reason(FrameDecoder(), m) == "size_mismatch"  # without use_depth_info it is refused


def test_hostile_messages_are_dropped_with_reasons():
    frame = synthetic_frame(camera_pose())
    dec = FrameDecoder()
    c, d, info = image_msgs(frame)
    bayer = numpy_to_image(frame.rgb[:, :, 0], "mono8", stamp_ns=frame.stamp)
    bayer.encoding = "bayer_rggb8"
    assert _drop_reason(dec, _set(bayer, d, info)) == "bad_color"
    assert _drop_reason(dec, _set(c, c, info)) == "bad_depth"  # colour published on the depth topic
    truncated = image_msgs(frame)[0]
    truncated.data = bytes(truncated.data)[:100]
    assert _drop_reason(dec, _set(truncated, d, info)) == "bad_color"
    small = numpy_to_image(np.zeros((24, 32), np.uint16), "16UC1", stamp_ns=frame.stamp)
    assert _drop_reason(dec, _set(c, small, info)) == "size_mismatch"
    zero_k = type(info)()
    zero_k.width, zero_k.height = 64, 48
    assert _drop_reason(dec, _set(c, d, zero_k)) == "bad_intrinsics"
    wrong_size = image_msgs(frame)[2]
    wrong_size.width, wrong_size.height = 640, 480
    assert _drop_reason(dec, _set(c, d, wrong_size)) == "size_mismatch"
    assert _drop_reason(dec, _set(c, d, info, stamp=0)) == "bad_stamp"
    # depth that is all NaN / inf / negative: passes the header check, fails decoding
    junk = np.full((48, 64), np.nan, np.float32)
    junk[:10] = np.inf
    junk[10:20] = -1.0
    assert _drop_reason(dec, _set(c, numpy_to_image(junk, "32FC1", stamp_ns=frame.stamp), info), full=True) == "no_valid_depth"
    # partly bad depth is cleaned, not dropped
    part = frame.depth.copy()
    part[:5] = np.nan
    part[5:10] = -3.0
    out = dec.decode(_posed(_set(c, numpy_to_image(part, "32FC1", stamp_ns=frame.stamp), info)))
    assert np.all(np.isfinite(out.depth)) and out.depth.min() == 0.0 and np.count_nonzero(out.depth) == 38 * 64
    corrupt = numpy_to_compressed(frame.rgb, "jpeg", stamp_ns=frame.stamp)
    corrupt.data = bytes(corrupt.data)[:50]
    comp = FrameDecoder(DecoderConfig(color_compressed=True))
    assert _drop_reason(comp, _set(corrupt, d, info), full=True) == "bad_color"


def _tf_chain(buf: TfBuffer, stamp: int, T_map_link: np.ndarray | None = None) -> None:
    T = np.eye(4) if T_map_link is None else T_map_link
    buf.set_transform("map", "camera_link", stamp, T[:3, 3], (0, 0, 0, 1))


def _pipeline(buf, posed, counters, **kw):
    return IngestPipeline(buf, "map", "", FrameDecoder(), posed.append, counters, **kw)


def test_pending_frames_wait_for_tf_then_resolve_in_order():
    buf, posed, counters = TfBuffer(), [], Counters()
    buf.set_transform("camera_link", "camera_color_optical_frame", 0, (0, 0, 0), (-0.5, 0.5, -0.5, 0.5), static=True)
    pipe = _pipeline(buf, posed, counters, tf_timeout_s=5.0)
    for i in range(3):
        c, d, info = image_msgs(synthetic_frame(camera_pose(), START + i * S // 30))
        pipe.submit(_set(c, d, info, stamp=START + i * S // 30))
    assert pipe.process_pending() == 0 and pipe.pending() == 3  # TF for these stamps has not arrived yet
    _tf_chain(buf, START)
    _tf_chain(buf, START + S // 30)
    assert pipe.process_pending() == 2 and pipe.pending() == 1
    _tf_chain(buf, START + 2 * S // 30)
    assert pipe.process_pending() == 1
    assert [p.msgs.stamp_ns for p in posed] == [START + i * S // 30 for i in range(3)]
    np.testing.assert_allclose(posed[0].T_world_cam, T_LINK_OPTICAL, atol=1e-12)
    assert counters.get("frames.posed") == 3 and pipe.chain == "map -> camera_link -> camera_color_optical_frame"


def test_tf_timeouts_missing_frames_stale_stamps_and_overflow_are_counted():
    buf, posed, counters = TfBuffer(), [], Counters()
    pipe = _pipeline(buf, posed, counters, tf_timeout_s=0.05, pending_max=2, max_stamp_age_ns=10 * S,
                     now_ns=lambda: START + 100 * S)
    c, d, info = image_msgs(synthetic_frame(camera_pose()))
    pipe.submit(_set(c, d, info, stamp=START + 95 * S, received=time.monotonic() - 1.0))
    assert pipe.process_pending() == 1 and counters.get("drop.tf_missing") == 1  # no TF at all: not connected
    buf.set_transform("map", "camera_color_optical_frame", START + 95 * S, (0, 0, 0), (0, 0, 0, 1))
    pipe.submit(_set(c, d, info, stamp=START + 96 * S, received=time.monotonic() - 1.0))
    assert pipe.process_pending() == 1 and counters.get("drop.tf_timeout") == 1  # TF stopped before this stamp
    pipe.submit(_set(c, d, info, stamp=START + 50 * S))
    pipe.process_pending()
    assert counters.get("drop.stale_stamp") == 1
    buf.set_transform("map", "camera_color_optical_frame", START + 99 * S, (0, 0, 0), (0, 0, 0, 1))
    pipe.submit(_set(c, d, info, stamp=START + 94 * S))  # older than any TF kept
    pipe.process_pending()
    assert counters.get("drop.tf_too_old") == 1
    for i in range(4):
        pipe.submit(_set(c, d, info, stamp=START + 99 * S + i))
    assert counters.get("drop.tf_pending_overflow") == 2
    pipe.reset()
    assert pipe.pending() == 0 and counters.get("drop.time_jump") == 2
    assert "tf_timeout" in pipe.last_error and not posed


def test_worker_thread_and_candidate_filter_end_to_end():
    """Posed frames → gate → decode → coverage → reservation → admission (a stub encoder)."""
    buf, counters = TfBuffer(), Counters()
    mem = KeyframeMemory()
    admission = AdmissionWorker(mem, lambda f: FeaturesStub(f.stamp), queue_size=4)
    sink = CandidateFilter(mem, FrameDecoder(), admission, counters)
    pipe = IngestPipeline(buf, "map", "", FrameDecoder(), sink, counters, tf_timeout_s=2.0)
    admission.start()
    pipe.start()
    try:
        for i in range(30):  # 1 s of a camera turning 90 degrees
            stamp = START + i * S // 30
            T = camera_pose(math.radians(3 * i))
            buf.set_transform("map", "camera_color_optical_frame", stamp, T[:3, 3], Rotation.from_matrix(T[:3, :3]).as_quat())
            pipe.submit(_set(*image_msgs(synthetic_frame(T, stamp)), stamp=stamp))
            pipe.tf_arrived()
        deadline = time.monotonic() + 10
        while pipe.pending() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert admission.wait_idle(10)
    finally:
        pipe.stop()
        admission.stop()
    assert counters.get("frames.posed") == 30
    assert 3 <= len(mem) <= 8, "turning 90 degrees at 20 degrees per keyframe"
    assert counters.get("frames.redundant") + counters.get("frames.candidates") == 30


def test_a_camera_without_tf_does_not_stall_frames_of_another():
    buf, posed, counters = TfBuffer(), [], Counters()
    pipe = _pipeline(buf, posed, counters, tf_timeout_s=5.0)
    buf.set_transform("map", "camera_color_optical_frame", START + S, (0, 0, 0), (0, 0, 0, 1))
    lost = image_msgs(synthetic_frame(camera_pose(), START), frame_id="camera_without_tf")
    good = image_msgs(synthetic_frame(camera_pose(), START + S))
    pipe.submit(_set(*lost, stamp=START))
    pipe.submit(_set(*good, stamp=START + S))
    assert pipe.process_pending() == 1 and [p.msgs.stamp_ns for p in posed] == [START + S]
    assert pipe.pending() == 1  # the lost one still waits for its TF until tf_timeout
