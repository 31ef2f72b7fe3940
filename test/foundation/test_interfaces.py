"""Our ROS interfaces are built, complete and serialisable."""

from __future__ import annotations

import re
from pathlib import Path

from builtin_interfaces.msg import Time
from rclpy.serialization import deserialize_message, serialize_message

from ros3d_agent_interfaces.action import AskScene as AskSceneAction
from ros3d_agent_interfaces.msg import GroundedObject, GroundedObjectArray, SceneAnswer, StageTiming
from ros3d_agent_interfaces.srv import AskScene

ROOT = Path(__file__).resolve().parents[2]


def test_every_interface_file_is_listed_in_the_cmake_build():
    cmake = (ROOT / "interfaces/ros3d_agent_interfaces/CMakeLists.txt").read_text()
    listed = set(re.findall(r'"((?:msg|srv|action)/\w+\.(?:msg|srv|action))"', cmake))
    on_disk = {str(p.relative_to(ROOT)) for d in ("msg", "srv", "action") for p in (ROOT / d).glob("*.*")}
    assert listed == on_disk


def _answer() -> SceneAnswer:
    obj = GroundedObject(id="7", label="mug", phrase="the red mug", score=0.75)
    obj.header.frame_id = "map"
    obj.center.position.x, obj.center.position.y, obj.center.position.z = 1.0, -2.0, 0.5
    obj.center.orientation.w = 1.0
    obj.size.x, obj.size.y, obj.size.z = 0.1, 0.1, 0.12
    ans = SceneAnswer(query_id="q1", question="where is the red mug?", task=SceneAnswer.TASK_GROUND,
                      success=True, text="on the table", objects=[obj],
                      keyframe_stamps=[Time(sec=10, nanosec=5), Time(sec=11, nanosec=0)],
                      timings=[StageTiming(stage="encode", seconds=0.01), StageTiming(stage="llm", seconds=0.2)])
    ans.header.frame_id = "map"
    ans.header.stamp = Time(sec=11, nanosec=0)
    return ans


def test_scene_answer_round_trips_through_cdr():
    ans = _answer()
    back = deserialize_message(serialize_message(ans), SceneAnswer)
    assert back == ans
    assert back.objects[0].center.position.y == -2.0
    assert [t.stage for t in back.timings] == ["encode", "llm"]


def test_task_constants_match_the_annotation_tasks():
    tasks = {SceneAnswer.TASK_QA, SceneAnswer.TASK_SITUATED_QA, SceneAnswer.TASK_GROUND,
             SceneAnswer.TASK_MULTI_GROUND, SceneAnswer.TASK_CAPTION}
    assert tasks == {"qa", "situated_qa", "ground", "multi_ground", "caption"}


def test_array_message_holds_objects():
    arr = GroundedObjectArray(objects=[GroundedObject(id=str(i)) for i in range(3)])
    back = deserialize_message(serialize_message(arr), GroundedObjectArray)
    assert [o.id for o in back.objects] == ["0", "1", "2"]


def test_service_and_action_types_have_the_designed_fields():
    req = AskScene.Request(question="is the door open?")
    assert (req.task, req.max_views, req.deadline_sec) == ("qa", 0, 0.0)
    res = AskScene.Response(success=False, message="no keyframes yet")
    assert deserialize_message(serialize_message(res), AskScene.Response).message == "no keyframes yet"
    goal = AskSceneAction.Goal(question="q", task="ground", max_views=8, deadline_sec=2.5)
    assert deserialize_message(serialize_message(goal), AskSceneAction.Goal) == goal
    fb = AskSceneAction.Feedback(stage="encoding", progress=0.5, elapsed_sec=0.25)
    assert deserialize_message(serialize_message(fb), AskSceneAction.Feedback) == fb
    result = AskSceneAction.Result(success=True, answer=_answer())
    assert deserialize_message(serialize_message(result), AskSceneAction.Result).answer.text == "on the table"


def test_vendored_tf2_msgs_has_the_real_type_hash():
    """Our TFMessage must hash like upstream's, or /tf from a real robot would not match."""
    import json
    import sys

    from rosbags.typesys import Stores, get_typestore
    from tf2_msgs.msg import TFMessage  # noqa: F401  (built by scripts/setup.sh)

    description = json.loads((Path(sys.prefix) / "share/tf2_msgs/msg/TFMessage.json").read_text())
    ours = description["type_hashes"][0]["hash_string"]
    assert ours == get_typestore(Stores.ROS2_KILTED).hash_rihs01("tf2_msgs/msg/TFMessage")
