"""A camera + robot in a process: streams a scene directory as live ROS 2 topics with TF, for node tests.

Publishes what a RealSense on a mobile robot would: colour (rgb8/bgr8), aligned depth (16UC1 mm or
32FC1 m), both CameraInfos, the dynamic TF chain map → odom → base_link → camera_link (one
TFMessage per publisher, sent *after* the images of the same instant, as on a real robot) and the
latched camera_link → camera_color_optical_frame on /tf_static. Frames loop; stamps are wall time.

``--hostile`` interleaves broken input (each kind ``--hostile-count`` times, one kind per second):
wrong encodings, size mismatch, all-invalid depth, zero intrinsics, a camera frame with no TF,
stale stamps and truncated data. Broken frames get a pose far from the scene, so that the node's
keyframe gate treats them as novel and really decodes them. At exit it prints one JSON line with
what it sent (the test compares it with the node's counters).

Process rules: own SIGTERM handler, rclpy signal handlers off, a spin-free publish loop.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

from ros3d_agent.ros.dds_env import prepare_dds_environment

HOSTILE_KINDS = ("bad_encoding", "size_mismatch", "invalid_depth", "zero_intrinsics", "no_tf", "stale_stamp", "truncated")


def _transform_msg(parent: str, child: str, T: np.ndarray, stamp_ns: int):
    from geometry_msgs.msg import TransformStamped

    from ros3d_agent.scene.geometry import matrix_to_quaternion

    tr = TransformStamped()
    tr.header.frame_id = parent
    tr.header.stamp.sec, tr.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    tr.child_frame_id = child
    tr.transform.translation.x, tr.transform.translation.y, tr.transform.translation.z = (float(v) for v in T[:3, 3])
    q = matrix_to_quaternion(T)
    tr.transform.rotation.x, tr.transform.rotation.y, tr.transform.rotation.z, tr.transform.rotation.w = (float(v) for v in q)
    return tr


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scene", required=True)
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--color-encoding", default="rgb8", choices=("rgb8", "bgr8"))
    ap.add_argument("--depth-format", default="16UC1", choices=("16UC1", "32FC1"))
    ap.add_argument("--prefix", default="/camera")
    ap.add_argument("--hostile", action="store_true")
    ap.add_argument("--hostile-count", type=int, default=3)
    ap.add_argument("--time-offset", type=float, default=0.0, help="seconds added to every stamp (negative: a replay of the past)")
    ap.add_argument("--ready-file", default="")
    args = ap.parse_args(argv)

    prepare_dds_environment()
    import rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from rclpy.signals import SignalHandlerOptions
    from sensor_msgs.msg import CameraInfo, Image
    from tf2_msgs.msg import TFMessage

    from ros3d_agent.ros.image_codec import numpy_to_image
    from ros3d_agent.scene import SceneDir
    from ros3d_agent.scene.bag_export import color_payload, decompose_camera_pose, depth_payload
    from ros3d_agent.scene.robot_frames import T_LINK_OPTICAL, CameraTopics, RobotFrames

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    sd = SceneDir(args.scene)
    frames = list(sd.iter_frames())
    names, topics = RobotFrames(), CameraTopics(prefix=args.prefix)

    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("ros3d_test_camera")
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    pub_c = node.create_publisher(Image, topics.color_image, reliable)
    pub_d = node.create_publisher(Image, topics.depth_image, reliable)
    pub_ci = node.create_publisher(CameraInfo, topics.color_info, reliable)
    pub_di = node.create_publisher(CameraInfo, topics.depth_info, reliable)
    pub_tf = node.create_publisher(TFMessage, topics.tf, QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    pub_static = node.create_publisher(TFMessage, topics.tf_static, QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    pub_static.publish(TFMessage(transforms=[_transform_msg(names.camera_link, names.color_optical, T_LINK_OPTICAL, time.time_ns())]))

    # Wait (bounded) for the node under test to subscribe, so the first frames are not lost to discovery.
    t_wait = time.monotonic()
    while pub_c.get_subscription_count() == 0 and not stop.is_set() and time.monotonic() - t_wait < 60:
        time.sleep(0.02)
    if args.ready_file:
        Path(args.ready_file).write_text("streaming")

    sent: Counter[str] = Counter()
    t0 = time.monotonic()
    period = 1.0 / args.rate
    i = 0
    hostile_plan = [k for k in HOSTILE_KINDS for _ in range(args.hostile_count)] if args.hostile else []
    next_hostile = t0 + 1.0
    try:
        while not stop.is_set() and time.monotonic() - t0 < args.seconds:
            frame = frames[i % len(frames)]
            stamp = time.time_ns() + int(args.time_offset * 1e9)
            kind = None
            if hostile_plan and time.monotonic() >= next_hostile:
                kind = hostile_plan.pop(0)
                next_hostile = time.monotonic() + 1.0 / max(1, args.hostile_count)
            T = frame.T_world_cam.copy()
            if kind is not None:
                T[:3, 3] += (20.0 + 3.0 * len(hostile_plan), 0.0, 0.0)  # far away: novel to the keyframe gate
            optical = names.color_optical if kind != "no_tf" else "camera_without_tf"
            img_stamp = stamp - 100 * 1_000_000_000 if kind == "stale_stamp" else stamp
            rgb = color_payload(frame.rgb, args.color_encoding)
            color = numpy_to_image(rgb, args.color_encoding, frame_id=optical, stamp_ns=img_stamp)
            depth_arr = depth_payload(frame.depth, args.depth_format)
            if kind == "invalid_depth":
                bad = np.full(frame.depth.shape, np.nan, np.float32)
                bad[: bad.shape[0] // 3] = np.inf
                bad[bad.shape[0] // 3: 2 * bad.shape[0] // 3] = -1.0
                depth = numpy_to_image(bad, "32FC1", frame_id=optical, stamp_ns=img_stamp)
            elif kind == "size_mismatch":
                depth = numpy_to_image(np.ascontiguousarray(depth_arr[::2, ::2]), args.depth_format, frame_id=optical, stamp_ns=img_stamp)
            else:
                depth = numpy_to_image(depth_arr, args.depth_format, frame_id=optical, stamp_ns=img_stamp)
            if kind == "bad_encoding":
                color.encoding = "yuv422"
            if kind == "truncated":
                color.data = bytes(color.data)[: len(color.data) // 2]
            info = CameraInfo()
            info.header = color.header
            info.width, info.height = frame.width, frame.height
            info.distortion_model = "plumb_bob"
            info.d = [0.0] * 5
            info.k = [0.0] * 9 if kind == "zero_intrinsics" else [float(v) for v in frame.K.reshape(-1)]
            info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
            pub_c.publish(color)
            pub_d.publish(depth)
            pub_ci.publish(info)
            pub_di.publish(info)
            chain = decompose_camera_pose(T, time.monotonic() - t0)
            for parent, child, M in ((names.map, names.odom, chain.map_odom), (names.odom, names.base, chain.odom_base),
                                     (names.base, names.camera_link, chain.base_camera_link)):
                pub_tf.publish(TFMessage(transforms=[_transform_msg(parent, child, M, stamp)]))
            sent["frames"] += 1
            if kind is not None:
                sent[kind] += 1
            i += 1
            # keep the rate from the start time (no drift), and never busy-wait
            delay = t0 + i * period - time.monotonic()
            if delay > 0:
                stop.wait(delay)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    print(json.dumps({"sent": dict(sent), "seconds": round(time.monotonic() - t0, 3)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
