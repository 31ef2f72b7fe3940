"""Shared helpers of the node tests: synthetic posed frames and the messages a camera driver sends."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ros3d_agent.scene.robot_frames import R_LINK_OPTICAL
from ros3d_agent.scene.types import Frame

H, W = 48, 64
K = np.array([[40.0, 0.0, 31.5], [0.0, 40.0, 23.5], [0.0, 0.0, 1.0]])
S = 1_000_000_000
START = 1_700_000_000 * S


def camera_pose(yaw: float = 0.0, xyz=(0.0, 0.0, 1.2)) -> np.ndarray:
    """Optical camera-to-map pose of a level camera looking along map +x rotated by ``yaw``."""
    c, s = math.cos(yaw), math.sin(yaw)
    T = np.eye(4)
    T[:3, :3] = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ R_LINK_OPTICAL
    T[:3, 3] = xyz
    return T


def synthetic_frame(T: np.ndarray, stamp: int = START, depth_m: float = 2.0, seed: int = 0) -> Frame:
    """A textured fronto-parallel wall ``depth_m`` ahead, with a box-shaped bump in the middle."""
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)
    depth = np.full((H, W), depth_m, np.float32)
    depth[16:32, 24:40] = depth_m - 0.5
    return Frame(rgb=rgb, depth=depth, K=K, T_world_cam=T, stamp=stamp, frame_id=str(stamp))


def image_msgs(frame: Frame, *, color_encoding: str = "rgb8", depth_format: str = "16UC1",
               frame_id: str = "camera_color_optical_frame") -> tuple[Any, Any, Any]:
    """(colour Image, depth Image, CameraInfo) rclpy messages for a frame."""
    from sensor_msgs.msg import CameraInfo

    from ros3d_agent.ros.image_codec import numpy_to_image

    rgb = frame.rgb if color_encoding == "rgb8" else np.ascontiguousarray(frame.rgb[:, :, ::-1])
    color = numpy_to_image(rgb, color_encoding, frame_id=frame_id, stamp_ns=frame.stamp)
    if depth_format == "16UC1":
        depth = numpy_to_image(np.rint(frame.depth * 1000).astype(np.uint16), "16UC1", frame_id=frame_id, stamp_ns=frame.stamp)
    else:
        d = frame.depth.copy()
        d[d == 0] = np.nan
        depth = numpy_to_image(d, "32FC1", frame_id=frame_id, stamp_ns=frame.stamp)
    info = CameraInfo()
    info.header = color.header
    info.width, info.height = frame.width, frame.height
    info.k = [float(v) for v in frame.K.reshape(-1)]
    info.distortion_model = "plumb_bob"
    info.d = [0.0] * 5
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [float(frame.K[0, 0]), 0.0, float(frame.K[0, 2]), 0.0, 0.0, float(frame.K[1, 1]), float(frame.K[1, 2]), 0.0, 0.0, 0.0, 1.0, 0.0]
    return color, depth, info


class FeaturesStub:
    """Stands in for the engine's KeyframeFeatures in pure keyframe-memory tests (stamp + nbytes)."""

    def __init__(self, stamp: int, nbytes: int = 1000) -> None:
        self.stamp = stamp
        self.nbytes = nbytes


# ---------------------------------------------------------------------------------------------------
# Processes and a client for the multi-process tests
# ---------------------------------------------------------------------------------------------------
import importlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
NODE = "/ros3d_agent"


def engine_missing_reason() -> str | None:
    """Why the real inference engine cannot be used here (None when it can)."""
    try:
        importlib.import_module("ros3d_agent.inference.engine")
    except ImportError as exc:
        return f"ros3d_agent.inference.engine is not available yet ({exc}); the node tests run the real tiny model"
    return None


def node_argv(ready_file: Path, *extra: str) -> list[str]:
    """``ros3d-agent run`` (through its module) with the tiny model on CPU."""
    return [sys.executable, "-m", "ros3d_agent.ros.run_command", "--config", "workstation", "--preset", "tiny",
            "--allow-random-weights", "--device", "cpu", "--dtype", "float32", "--ready-file", str(ready_file),
            "-p", "fusion.stride:=2", "-p", "keyframes.min_interval_sec:=0.0", "-p", "proposals.min_interval_sec:=0.5",
            "-p", "qos.images:=RELIABLE", "-p", "diagnostics.period_sec:=0.5", *extra]


def streamer_argv(scene: Path, ready_file: Path, *extra: str) -> list[str]:
    return [sys.executable, str(HERE / "stream_scene.py"), "--scene", str(scene), "--ready-file", str(ready_file), *extra]


def wait_for(predicate, timeout: float, what: str, proc=None, interval: float = 0.05):
    """Poll ``predicate`` until truthy (returned) or fail after ``timeout`` seconds, naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.poll()} while waiting for {what}:\n{proc.output()[-4000:]}")
        time.sleep(interval)
    tail = ""
    if proc is not None:
        proc.stop()
        tail = "\n" + proc.output()[-4000:]
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{tail}")


def wait_ready_file(path: Path, proc, timeout: float = 90.0) -> str:
    text = wait_for(lambda: path.exists() and path.read_text().strip(), timeout, f"{path.name}", proc)
    if not text.startswith(("active", "streaming")):
        proc.stop()
        raise AssertionError(f"start-up failed ({text}):\n{proc.output()[-4000:]}")
    return text


class AgentClient:
    """A test-side ROS client of the node: action, service, topics, diagnostics, lifecycle."""

    def __init__(self, node, node_ns: str = NODE) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from lifecycle_msgs.srv import ChangeState, GetState
        from rclpy.action import ActionClient
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from ros3d_agent_interfaces.action import AskScene as AskAction
        from ros3d_agent_interfaces.msg import GroundedObjectArray, SceneAnswer
        from ros3d_agent_interfaces.srv import AskScene as AskSrv
        from std_msgs.msg import String
        from visualization_msgs.msg import MarkerArray

        self.node = node
        self.ns = node_ns
        qos = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
        self.action = ActionClient(node, AskAction, f"{node_ns}/ask", goal_service_qos_profile=qos,
                                   result_service_qos_profile=qos, cancel_service_qos_profile=qos)
        self.service = node.create_client(AskSrv, f"{node_ns}/query", qos_profile=qos)
        from std_srvs.srv import Trigger

        self.reset_client = node.create_client(Trigger, f"{node_ns}/reset_memory")
        self.Trigger = Trigger
        self.change_state = node.create_client(ChangeState, f"{node_ns}/change_state")
        self.get_state = node.create_client(GetState, f"{node_ns}/get_state")
        self.question_pub = node.create_publisher(String, f"{node_ns}/question", qos)
        self.lock = threading.Lock()
        self.answers: list = []
        self.answer_json: list = []
        self.objects: list = []
        self.markers: list = []
        self.diagnostics: list = []
        node.create_subscription(SceneAnswer, f"{node_ns}/answer", lambda m: self._keep(self.answers, m), qos)
        node.create_subscription(String, f"{node_ns}/answer_json", lambda m: self._keep(self.answer_json, json.loads(m.data)), qos)
        node.create_subscription(GroundedObjectArray, f"{node_ns}/objects", lambda m: self._keep(self.objects, m), qos)
        node.create_subscription(MarkerArray, f"{node_ns}/markers", lambda m: self._keep(self.markers, m), qos)
        node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: self._keep(self.diagnostics, m), 10)
        self.AskAction, self.AskSrv = AskAction, AskSrv

    def _keep(self, store: list, msg) -> None:
        with self.lock:
            store.append(msg)
            if len(store) > 500:
                del store[:100]

    # -- diagnostics ------------------------------------------------------------------------------
    def latest_status(self) -> dict[str, dict[str, str]]:
        """``{status name suffix: {key: value, "_level": .., "_message": ..}}`` of our node's latest DiagnosticArray."""
        with self.lock:
            arrays = list(self.diagnostics)
        for arr in reversed(arrays):
            ours = [s for s in arr.status if s.name.startswith(self.ns)]
            if ours:
                out = {}
                for s in ours:
                    d = {kv.key: kv.value for kv in s.values}
                    d["_level"], d["_message"] = s.level[0], s.message
                    out[s.name.split(": ", 1)[1]] = d
                return out
        return {}

    def value(self, status: str, key: str, default: float = 0.0) -> float:
        v = self.latest_status().get(status, {}).get(key)
        try:
            return float(v)
        except (TypeError, ValueError):
            return default

    # -- calls ------------------------------------------------------------------------------------
    @staticmethod
    def _wait_future(fut, timeout: float):
        deadline = time.monotonic() + timeout
        while not fut.done():
            if time.monotonic() > deadline:
                raise AssertionError(f"no response within {timeout} s")
            time.sleep(0.005)
        return fut.result()

    def ask_service(self, question: str, task: str = "qa", max_views: int = 0, deadline: float = 0.0, timeout: float = 60.0,
                    situation: str = "", object_id: int = -1):
        assert self.service.wait_for_service(timeout_sec=30.0), "the ~/query service did not appear"
        req = self.AskSrv.Request(question=question, task=task, max_views=max_views, deadline_sec=deadline,
                                  situation=situation, object_id=object_id)
        return self._wait_future(self.service.call_async(req), timeout)

    def reset_memory(self, timeout: float = 30.0):
        assert self.reset_client.wait_for_service(timeout_sec=30.0), "the ~/reset_memory service did not appear"
        return self._wait_future(self.reset_client.call_async(self.Trigger.Request()), timeout)

    def send_goal(self, question: str, task: str = "qa", max_views: int = 0, deadline: float = 0.0, feedback: list | None = None,
                  situation: str = "", object_id: int = -1):
        """Returns the goal handle (accepted or not)."""
        assert self.action.wait_for_server(timeout_sec=30.0), "the ~/ask action server did not appear"
        goal = self.AskAction.Goal(question=question, task=task, max_views=max_views, deadline_sec=deadline,
                                   situation=situation, object_id=object_id)
        cb = (lambda fb: feedback.append(fb.feedback)) if feedback is not None else None
        return self._wait_future(self.action.send_goal_async(goal, feedback_callback=cb), 30.0)

    def result(self, handle, timeout: float = 60.0):
        """(status, result) of an accepted goal."""
        res = self._wait_future(handle.get_result_async(), timeout)
        return res.status, res.result

    def lifecycle(self, transition: str) -> bool:
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        assert self.change_state.wait_for_service(timeout_sec=30.0)
        ids = {"configure": Transition.TRANSITION_CONFIGURE, "activate": Transition.TRANSITION_ACTIVATE,
               "deactivate": Transition.TRANSITION_DEACTIVATE, "cleanup": Transition.TRANSITION_CLEANUP}
        req = ChangeState.Request()
        req.transition.id = ids[transition]
        return bool(self._wait_future(self.change_state.call_async(req), 120.0).success)

    def state(self) -> str:
        from lifecycle_msgs.srv import GetState

        assert self.get_state.wait_for_service(timeout_sec=30.0)
        return self._wait_future(self.get_state.call_async(GetState.Request()), 30.0).current_state.label
