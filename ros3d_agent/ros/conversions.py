"""Messages ↔ the package's types: stamps, CameraInfo → K, Answer ↔ SceneAnswer, boxes, RViz markers.

Kept apart from the node so the mapping rules live in one place and are tested without DDS:
an answer is published in the fixed frame and stamped with the newest keyframe it used (not the
time it was computed), a grounded object carries the *stable* proposal id of the scene memory,
and markers always start with DELETEALL so boxes of an old answer never linger in RViz.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from ros3d_agent.inference.answer import Answer, GroundedBox
from ros3d_agent.scene.types import Box3D

__all__ = [
    "ConversionError",
    "NS_PER_S",
    "stamp_to_ns",
    "ns_to_time",
    "camera_info_to_K",
    "yaw_to_quaternion",
    "quaternion_to_yaw",
    "answer_to_msg",
    "msg_to_answer",
    "objects_to_msg",
    "answer_markers",
    "answer_summary",
    "MARKER_NS",
]

NS_PER_S: Final = 1_000_000_000
MARKER_NS: Final = "ros3d_agent"
_MAX_SEC: Final = 2**31 - 1


class ConversionError(ValueError):
    """A message cannot be converted; the text says which field is wrong."""


def stamp_to_ns(stamp: Any) -> int:
    """``builtin_interfaces/Time`` → integer nanoseconds."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def ns_to_time(ns: int) -> Any:
    """Integer nanoseconds → ``builtin_interfaces/Time`` (clamped to the message's range)."""
    from builtin_interfaces.msg import Time

    sec, nanosec = divmod(max(0, int(ns)), NS_PER_S)
    return Time(sec=min(sec, _MAX_SEC), nanosec=nanosec)


def camera_info_to_K(info: Any, image_hw: tuple[int, int] | None = None) -> NDArray[np.float64]:
    """The 3×3 intrinsics of a ``sensor_msgs/CameraInfo``, validated.

    An uncalibrated driver publishes K all zeros; a wrong one publishes NaN or a CameraInfo for
    another resolution. Each is refused with the reason, so the frame is dropped and counted rather
    than back-projected to nonsense.

    Raises:
        ConversionError: zero/NaN focal lengths, a malformed K, or a size that does not match ``image_hw``.
    """
    k = np.asarray(info.k, dtype=np.float64).reshape(-1)
    if k.shape != (9,):
        raise ConversionError(f"CameraInfo.k must have 9 values, got {k.shape[0]}")
    if not np.all(np.isfinite(k)):
        raise ConversionError(f"CameraInfo.k contains NaN or inf: {k.tolist()}")
    K = k.reshape(3, 3)
    if not (K[0, 0] > 0 and K[1, 1] > 0):
        raise ConversionError(
            f"CameraInfo.k has non-positive focal lengths (fx={K[0, 0]}, fy={K[1, 1]}): the camera is not calibrated"
        )
    if not np.allclose(K[2], (0.0, 0.0, 1.0)) or K[1, 0] != 0:
        raise ConversionError(f"CameraInfo.k is not a pinhole matrix [[fx,s,cx],[0,fy,cy],[0,0,1]]: {K.tolist()}")
    if image_hw is not None:
        w, h = int(info.width), int(info.height)
        if (w, h) != (0, 0) and (h, w) != tuple(image_hw):
            raise ConversionError(f"CameraInfo is for {w}x{h} but the image is {image_hw[1]}x{image_hw[0]}")
    return K.copy()


def yaw_to_quaternion(yaw: float | None) -> tuple[float, float, float, float]:
    """Rotation about z as a ROS quaternion (x, y, z, w); identity for None (axis-aligned)."""
    if yaw is None:
        return (0.0, 0.0, 0.0, 1.0)
    return (0.0, 0.0, math.sin(yaw / 2.0), math.cos(yaw / 2.0))


def quaternion_to_yaw(x: float, y: float, z: float, w: float) -> float | None:
    """Yaw of a rotation about z; None for the identity (the axis-aligned convention of Box3D)."""
    if abs(x) > 1e-9 or abs(y) > 1e-9:
        raise ConversionError(f"box orientation ({x}, {y}, {z}, {w}) is not a rotation about z")
    if abs(z) < 1e-12:
        return None
    return 2.0 * math.atan2(z, w)


def _object_msg(obj: GroundedBox, ident: str, phrase: str, header: Any) -> Any:
    from ros3d_agent_interfaces.msg import GroundedObject

    msg = GroundedObject()
    msg.header = header
    msg.id = ident
    msg.label = obj.label
    msg.phrase = phrase
    msg.score = float(min(1.0, max(0.0, obj.score))) if math.isfinite(obj.score) else 0.0
    c = obj.box.center
    msg.center.position.x, msg.center.position.y, msg.center.position.z = (float(v) for v in c)
    q = yaw_to_quaternion(obj.box.yaw)
    msg.center.orientation.x, msg.center.orientation.y, msg.center.orientation.z, msg.center.orientation.w = q
    msg.size.x, msg.size.y, msg.size.z = (float(v) for v in obj.box.size)
    return msg


def _header(frame_id: str, stamp_ns: int) -> Any:
    from std_msgs.msg import Header

    return Header(frame_id=frame_id, stamp=ns_to_time(stamp_ns))


def _object_id(obj: GroundedBox, id_map: Mapping[int, int] | None) -> str:
    if id_map is not None and obj.proposal_id in id_map:
        return str(id_map[obj.proposal_id])
    return str(obj.proposal_id)


def answer_to_msg(answer: Answer, *, frame_id: str, stamp_ns: int, id_map: Mapping[int, int] | None = None) -> Any:
    """``SceneAnswer`` for ``answer``: fixed frame, stamped with the newest keyframe used.

    ``id_map`` maps the engine's proposal index (its position in the proposals it was given) to the
    scene memory's stable proposal id, which is what ``GroundedObject.id`` carries.
    """
    from ros3d_agent_interfaces.msg import SceneAnswer, StageTiming

    header = _header(frame_id, stamp_ns)
    msg = SceneAnswer()
    msg.header = header
    msg.query_id = answer.query_id
    msg.question = answer.question
    msg.task = answer.task
    msg.success = bool(answer.success)
    msg.error = answer.error
    msg.text = answer.text
    msg.objects = [_object_msg(o, _object_id(o, id_map), answer.question, header) for o in answer.objects]
    msg.keyframe_stamps = [ns_to_time(s) for s in answer.keyframe_stamps]
    msg.timings = [StageTiming(stage=str(k), seconds=float(v)) for k, v in answer.timings.items()]
    return msg


def objects_to_msg(answer: Answer, *, frame_id: str, stamp_ns: int, id_map: Mapping[int, int] | None = None) -> Any:
    """``GroundedObjectArray`` of an answer's objects, best first."""
    from ros3d_agent_interfaces.msg import GroundedObjectArray

    header = _header(frame_id, stamp_ns)
    out = GroundedObjectArray()
    out.header = header
    out.objects = [_object_msg(o, _object_id(o, id_map), answer.question, header) for o in answer.objects]
    return out


def msg_to_answer(msg: Any) -> Answer:
    """The :class:`Answer` a ``SceneAnswer`` carries (clients, replay, tests). ``proposal_id`` = the
    object's id when numeric, else -1."""
    objects = []
    for o in msg.objects:
        q = o.center.orientation
        box = Box3D((o.center.position.x, o.center.position.y, o.center.position.z), (o.size.x, o.size.y, o.size.z),
                    quaternion_to_yaw(q.x, q.y, q.z, q.w))
        pid = int(o.id) if o.id.lstrip("-").isdigit() else -1
        objects.append(GroundedBox(box=box, score=float(o.score), proposal_id=pid, label=o.label))
    return Answer(
        question=msg.question, task=msg.task, text=msg.text, objects=objects,
        keyframe_stamps=[stamp_to_ns(s) for s in msg.keyframe_stamps],
        timings={t.stage: float(t.seconds) for t in msg.timings},
        success=bool(msg.success), error=msg.error, query_id=msg.query_id,
    )


def _rank_colour(rank: int) -> tuple[float, float, float]:
    palette = ((0.1, 0.8, 0.2), (1.0, 0.6, 0.0), (0.2, 0.5, 1.0), (0.9, 0.2, 0.7), (0.9, 0.9, 0.1))
    return palette[rank % len(palette)]


def answer_markers(
    answer: Answer,
    *,
    frame_id: str,
    stamp_ns: int,
    id_map: Mapping[int, int] | None = None,
    ns: str = MARKER_NS,
) -> Any:
    """RViz ``MarkerArray``: DELETEALL, then per object a translucent box and a label above it.

    DELETEALL first, so an answer with fewer (or no) objects never leaves the previous answer's
    boxes on screen (the "stale boxes" complaint of vision_msgs users).
    """
    from visualization_msgs.msg import Marker, MarkerArray

    header = _header(frame_id, stamp_ns)
    out = MarkerArray()
    clear = Marker()
    clear.header = header
    clear.ns = ns
    clear.action = Marker.DELETEALL
    markers = [clear]
    for rank, obj in enumerate(answer.objects):
        r, g, b = _rank_colour(rank)
        q = yaw_to_quaternion(obj.box.yaw)
        box = Marker()
        box.header = header
        box.ns = ns
        box.id = 2 * rank
        box.type = Marker.CUBE
        box.action = Marker.ADD
        box.pose.position.x, box.pose.position.y, box.pose.position.z = (float(v) for v in obj.box.center)
        box.pose.orientation.x, box.pose.orientation.y, box.pose.orientation.z, box.pose.orientation.w = q
        box.scale.x, box.scale.y, box.scale.z = (float(v) for v in obj.box.size)
        box.color.r, box.color.g, box.color.b, box.color.a = r, g, b, 0.35
        markers.append(box)
        text = Marker()
        text.header = header
        text.ns = ns
        text.id = 2 * rank + 1
        text.type = Marker.TEXT_VIEW_FACING
        text.action = Marker.ADD
        text.pose.position.x, text.pose.position.y = float(obj.box.center[0]), float(obj.box.center[1])
        text.pose.position.z = float(obj.box.center[2] + obj.box.size[2] / 2.0 + 0.1)
        text.pose.orientation.w = 1.0
        text.scale.z = 0.12
        text.color.r, text.color.g, text.color.b, text.color.a = r, g, b, 1.0
        label = obj.label or f"#{_object_id(obj, id_map)}"
        text.text = f"{label} {obj.score:.2f}"
        markers.append(text)
    out.markers = markers
    return out


def answer_summary(answer: Answer, limit: int = 120) -> str:
    """A one-line description for logs."""
    if not answer.success:
        return f"failed: {answer.error[:limit]}"
    objs = f", {len(answer.objects)} object(s)" if answer.objects else ""
    return f"{answer.text[:limit]!r}{objs}"
