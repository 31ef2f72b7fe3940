"""Answer ↔ SceneAnswer / GroundedObjectArray / MarkerArray, CameraInfo → K. Real message classes, no DDS."""

from __future__ import annotations

import math

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from ros3d_agent_interfaces.msg import SceneAnswer
from sensor_msgs.msg import CameraInfo
from visualization_msgs.msg import Marker

from ros3d_agent.inference.answer import Answer, GroundedBox
from ros3d_agent.ros.conversions import (
    ConversionError,
    answer_markers,
    answer_to_msg,
    camera_info_to_K,
    msg_to_answer,
    ns_to_time,
    objects_to_msg,
    stamp_to_ns,
)
from ros3d_agent.scene.types import Box3D

STAMP = 1_700_000_123_456_789_012


def _answer() -> Answer:
    return Answer(question="where is the mug?", task="ground", text="", query_id="q1",
                  objects=[GroundedBox(Box3D((1, 2, 0.5), (0.2, 0.2, 0.3)), 0.8, 3, "mug"),
                           GroundedBox(Box3D((0, 1, 0.4), (0.5, 0.4, 0.8), yaw=0.5), 0.1, 0, "")],
                  keyframe_stamps=[STAMP - 10, STAMP], timings={"generating": 0.25})


def test_stamps_round_trip():
    assert stamp_to_ns(ns_to_time(STAMP)) == STAMP
    assert stamp_to_ns(ns_to_time(-5)) == 0


def test_answer_round_trips_through_the_wire_with_stable_ids():
    a = _answer()
    msg = answer_to_msg(a, frame_id="map", stamp_ns=STAMP, id_map={3: 17, 0: 4})
    wire = deserialize_message(serialize_message(msg), SceneAnswer)
    assert wire.header.frame_id == "map" and stamp_to_ns(wire.header.stamp) == STAMP
    assert [o.id for o in wire.objects] == ["17", "4"] and wire.objects[0].header.frame_id == "map"
    assert wire.objects[0].phrase == a.question and wire.task == wire.TASK_GROUND
    back = msg_to_answer(wire)
    assert back.objects[0].box == a.objects[0].box and back.objects[0].proposal_id == 17
    assert back.objects[1].box.yaw == pytest.approx(0.5)
    assert back.keyframe_stamps == a.keyframe_stamps and back.timings == {"generating": 0.25}
    arr = objects_to_msg(a, frame_id="map", stamp_ns=STAMP)
    assert len(arr.objects) == 2 and arr.header.frame_id == "map" and arr.objects[0].id == "3"


def test_failure_answer_message():
    msg = answer_to_msg(Answer.failure("q", "qa", "empty_memory: nothing yet"), frame_id="map", stamp_ns=1)
    assert not msg.success and msg.error.startswith("empty_memory") and not msg.objects


def test_markers_clear_first_then_box_and_label_per_object():
    arr = answer_markers(_answer(), frame_id="map", stamp_ns=STAMP)
    kinds = [(m.action, m.type) for m in arr.markers]
    assert kinds[0][0] == Marker.DELETEALL
    assert kinds[1:] == [(Marker.ADD, Marker.CUBE), (Marker.ADD, Marker.TEXT_VIEW_FACING)] * 2
    box = arr.markers[1]
    assert box.header.frame_id == "map" and (box.scale.x, box.scale.y, box.scale.z) == pytest.approx((0.2, 0.2, 0.3))
    assert arr.markers[2].text.startswith("mug 0.80")
    assert arr.markers[3].pose.orientation.z == pytest.approx(math.sin(0.25))
    assert len(answer_markers(Answer("q", "ground"), frame_id="map", stamp_ns=1).markers) == 1  # clears old boxes


def _info(k, w=64, h=48):
    info = CameraInfo()
    info.k = [float(v) for v in k]
    info.width, info.height = w, h
    return info


def test_camera_info_validation():
    K = camera_info_to_K(_info([50, 0, 32, 0, 50, 24, 0, 0, 1]), (48, 64))
    np.testing.assert_allclose(K, [[50, 0, 32], [0, 50, 24], [0, 0, 1]])
    with pytest.raises(ConversionError, match="not calibrated"):
        camera_info_to_K(_info([0] * 9))
    with pytest.raises(ConversionError, match="NaN"):
        camera_info_to_K(_info([math.nan, 0, 32, 0, 50, 24, 0, 0, 1]))
    with pytest.raises(ConversionError, match="but the image is"):
        camera_info_to_K(_info([50, 0, 32, 0, 50, 24, 0, 0, 1], w=640, h=480), (48, 64))
    with pytest.raises(ConversionError, match="pinhole"):
        camera_info_to_K(_info([50, 0, 32, 0, 50, 24, 0, 0, 0]))
