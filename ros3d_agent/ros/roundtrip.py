"""A live round trip between two ROS 2 processes: camera images out, scene answers back.

It proves, on a given machine, what every later part relies on: DDS works between real
processes on loopback, large ``sensor_msgs/Image`` messages arrive intact (checked by CRC),
and our own interface package (``SceneAnswer`` with nested objects, stamps and timings)
serialises across the wire. The echo side decodes each image with the project's own codec
and answers with a ``SceneAnswer`` describing it.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import threading
import time
import zlib
from dataclasses import asdict, dataclass, field

import numpy as np

from ros3d_agent.ros.dds_env import prepare_dds_environment
from ros3d_agent.utils.processes import ManagedProcess, child_env, python_module_argv

IMAGE_TOPIC = "ros3d_roundtrip/image"
ANSWER_TOPIC = "ros3d_roundtrip/answer"
FIXED_FRAME = "map"


def synthetic_image(index: int, height: int, width: int) -> np.ndarray:
    """A deterministic, index-dependent RGB pattern (so a swapped or stale frame fails the CRC)."""
    yy, xx = np.mgrid[0:height, 0:width]
    rgb = np.empty((height, width, 3), dtype=np.uint8)
    rgb[..., 0] = (xx + 7 * index) % 256
    rgb[..., 1] = (yy + 13 * index) % 256
    rgb[..., 2] = (xx + yy + index) % 256
    return rgb


def _stamp_to_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def answer_for_image(msg) -> "ros3d_agent_interfaces.msg.SceneAnswer":  # noqa: F821
    """The echo's reply: what it saw in the image, as a fully populated SceneAnswer."""
    from builtin_interfaces.msg import Time
    from ros3d_agent_interfaces.msg import GroundedObject, SceneAnswer, StageTiming

    from ros3d_agent.ros.image_codec import image_to_rgb

    t0 = time.perf_counter()
    rgb = image_to_rgb(msg)
    crc = zlib.crc32(rgb.tobytes()) & 0xFFFFFFFF
    mean = rgb.reshape(-1, 3).mean(axis=0)
    decode_s = time.perf_counter() - t0

    answer = SceneAnswer()
    answer.header.stamp = msg.header.stamp
    answer.header.frame_id = FIXED_FRAME
    answer.query_id = msg.header.frame_id
    answer.question = "what did you receive?"
    answer.task = SceneAnswer.TASK_QA
    answer.success = True
    answer.text = f"{msg.width}x{msg.height} {msg.encoding} crc32={crc:08x}"
    obj = GroundedObject()
    obj.header = answer.header
    obj.id = "0"
    obj.label = "mean_colour"
    obj.phrase = "the average colour of the frame"
    obj.score = 1.0
    obj.center.position.x, obj.center.position.y, obj.center.position.z = (float(v) / 255.0 for v in mean)
    obj.center.orientation.w = 1.0
    obj.size.x = obj.size.y = obj.size.z = 0.1
    answer.objects = [obj]
    answer.keyframe_stamps = [Time(sec=msg.header.stamp.sec, nanosec=msg.header.stamp.nanosec)]
    answer.timings = [StageTiming(stage="decode", seconds=decode_s)]
    return answer


def echo_main(argv: list[str] | None = None) -> int:
    """The echo process: answer every image on IMAGE_TOPIC until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description="ros3d_agent round-trip echo peer")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="exit after this long regardless")
    args = parser.parse_args(argv)

    prepare_dds_environment()
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rclpy.signals import SignalHandlerOptions
    from ros3d_agent_interfaces.msg import SceneAnswer
    from sensor_msgs.msg import Image

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("ros3d_roundtrip_echo")
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    pub = node.create_publisher(SceneAnswer, ANSWER_TOPIC, qos)
    errors = 0

    def on_image(msg: Image) -> None:
        nonlocal errors
        try:
            pub.publish(answer_for_image(msg))
        except Exception as exc:  # a bad frame must not end the peer
            errors += 1
            node.get_logger().error(f"could not answer frame {msg.header.frame_id!r}: {exc}")

    node.create_subscription(Image, IMAGE_TOPIC, on_image, qos)
    print("echo ready", flush=True)
    deadline = time.monotonic() + args.max_seconds
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 1 if errors else 0


@dataclass
class RoundTripReport:
    sent: int = 0
    received: int = 0
    crc_ok: int = 0
    crc_bad: int = 0
    nested_fields_ok: int = 0
    latency_ms: list[float] = field(default_factory=list)
    discovery_s: float = 0.0
    peer_pid: int = 0
    peer_exit_code: int | None = None
    samples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.sent > 0 and self.crc_ok == self.sent and self.nested_fields_ok == self.sent

    def latency_summary(self) -> dict[str, float]:
        if not self.latency_ms:
            return {}
        lat = sorted(self.latency_ms)
        return {"p50": statistics.median(lat), "p95": lat[min(len(lat) - 1, int(0.95 * len(lat)))], "max": lat[-1]}

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("latency_ms")
        d["latency_ms"] = self.latency_summary()
        d["ok"] = self.ok
        return d


def run_roundtrip(count: int = 30, rate_hz: float = 15.0, height: int = 480, width: int = 640,
                  timeout_s: float = 60.0, on_answer=None) -> RoundTripReport:
    """Start the echo process, stream ``count`` images to it, and check every answer."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from ros3d_agent_interfaces.msg import SceneAnswer
    from sensor_msgs.msg import Image

    from ros3d_agent.ros.image_codec import numpy_to_image
    from ros3d_agent.ros.spinning import spinning_node

    prepare_dds_environment()
    report = RoundTripReport()
    expected: dict[str, tuple[int, float]] = {}  # query id -> (crc, send time)
    done = threading.Event()
    lock = threading.Lock()

    def on_answer_msg(msg: SceneAnswer) -> None:
        with lock:
            entry = expected.pop(msg.query_id, None)
            if entry is None:
                return
            crc, sent_at = entry
            report.received += 1
            report.latency_ms.append((time.monotonic() - sent_at) * 1000.0)
            if msg.text.endswith(f"crc32={crc:08x}"):
                report.crc_ok += 1
            else:
                report.crc_bad += 1
            nested = (msg.header.frame_id == FIXED_FRAME and len(msg.objects) == 1 and msg.objects[0].score == 1.0
                      and len(msg.keyframe_stamps) == 1 and len(msg.timings) == 1 and msg.timings[0].stage == "decode")
            report.nested_fields_ok += int(nested)
            if len(report.samples) < 3:
                report.samples.append(f"{msg.query_id}: {msg.text}")
            if on_answer is not None:
                on_answer(msg)
            if report.received == count:
                done.set()

    peer = ManagedProcess(python_module_argv("ros3d_agent.ros.roundtrip", "--echo"), env=child_env())
    with peer, spinning_node("ros3d_roundtrip_client") as node:
        report.peer_pid = peer.pid
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        pub = node.create_publisher(Image, IMAGE_TOPIC, qos)
        node.create_subscription(SceneAnswer, ANSWER_TOPIC, on_answer_msg, qos)

        t0 = time.monotonic()
        while pub.get_subscription_count() == 0 or node.count_publishers(ANSWER_TOPIC) == 0:
            if peer.poll() is not None:
                raise RuntimeError(f"the echo process exited early with code {peer.poll()}:\n{peer.output()}")
            if time.monotonic() - t0 > timeout_s:
                raise TimeoutError(f"the echo process was not discovered within {timeout_s:.0f} s")
            time.sleep(0.05)
        report.discovery_s = time.monotonic() - t0

        period = 1.0 / rate_hz
        for i in range(count):
            rgb = synthetic_image(i, height, width)
            msg = numpy_to_image(rgb, "rgb8", frame_id=f"frame-{i:04d}", stamp_ns=time.time_ns())
            with lock:
                expected[msg.header.frame_id] = (zlib.crc32(rgb.tobytes()) & 0xFFFFFFFF, time.monotonic())
            pub.publish(msg)
            report.sent += 1
            time.sleep(period)
        done.wait(timeout=max(5.0, timeout_s - (time.monotonic() - t0)))
    report.peer_exit_code = peer.popen.returncode if peer.popen else None
    return report


if __name__ == "__main__":
    if "--echo" in sys.argv[1:]:
        sys.exit(echo_main([a for a in sys.argv[1:] if a != "--echo"]))
    sys.exit("usage: python -m ros3d_agent.ros.roundtrip --echo   (the client side is 'ros3d-agent roundtrip')")
