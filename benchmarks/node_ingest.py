#!/usr/bin/env python3
"""The node's ingest path under a 640×480 RGB-D stream at 30 Hz with TF, against a bare subscriber.

Why: a perception node that blocks in its callbacks drops frames (the most common complaint about
ROS vision nodes). The node's callbacks only move message references into the synchroniser; TF,
decoding, keyframe decisions, encoding and fusion run on workers. This measures it:

* **baseline** (same run, same stream, same machine): a bare rclpy subscriber that only counts the
  colour, depth, CameraInfo and TF messages (nothing can receive them cheaper);
* **node**: the real lifecycle node with the tiny model (or ``--preset``/``--checkpoint``), in this
  process so its callbacks can be timed, spun like ``ros3d_agent_node`` spins it.

Reported: frames sent / received / synchronised / placed by TF / dropped (by reason), per-message
cost on the callback path (p50/p95/max), keyframe admission cost (decode + coverage on the ingest
worker; encode; fusion + proposals), RSS growth over the run, and query latency of the model over
the built memory. Goals: 0 drops, < 5 ms per frame on the callback path.

    python benchmarks/node_ingest.py [--seconds 60] [--rate 30] [--queries 20] [--json out.json]
    python benchmarks/node_ingest.py --role pipeline --scene DIR --device cuda --dtype float16   # no ROS needed

The publisher is a separate process (``--role publisher``): a synthetic room rendered once at
640×480, looped, stamped with wall time, with the robot's TF chain after the images.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from ros3d_agent.ros.dds_env import prepare_dds_environment  # noqa: E402

GOAL_CALLBACK_MS = 5.0


# ---------------------------------------------------------------------------------------------------
# Publisher process
# ---------------------------------------------------------------------------------------------------
def run_publisher(args: argparse.Namespace) -> int:
    """Stream the scene for ``--seconds`` once a subscriber is matched; print what was sent (JSON)."""
    import signal

    import rclpy
    from geometry_msgs.msg import TransformStamped
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from rclpy.signals import SignalHandlerOptions
    from sensor_msgs.msg import CameraInfo
    from tf2_msgs.msg import TFMessage

    from ros3d_agent.ros.image_codec import numpy_to_image
    from ros3d_agent.scene import SceneDir
    from ros3d_agent.scene.bag_export import decompose_camera_pose, depth_payload
    from ros3d_agent.scene.geometry import matrix_to_quaternion
    from ros3d_agent.scene.robot_frames import T_LINK_OPTICAL, CameraTopics, RobotFrames

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    names, topics = RobotFrames(), CameraTopics()
    frames = list(SceneDir(args.scene).iter_frames())
    # Build the big messages once; per frame only the stamps change (the publisher must not be the bottleneck).
    prepared = []
    for f in frames:
        color = numpy_to_image(f.rgb, "rgb8", frame_id=names.color_optical, stamp_ns=0)
        depth = numpy_to_image(depth_payload(f.depth, "16UC1"), "16UC1", frame_id=names.color_optical, stamp_ns=0)
        info = CameraInfo()
        info.header.frame_id = names.color_optical
        info.width, info.height = f.width, f.height
        info.k = [float(v) for v in f.K.reshape(-1)]
        info.d = [0.0] * 5
        info.distortion_model = "plumb_bob"
        prepared.append((f.T_world_cam, color, depth, info))

    def tf(parent, child, T, stamp):
        tr = TransformStamped()
        tr.header.frame_id, tr.child_frame_id = parent, child
        tr.header.stamp.sec, tr.header.stamp.nanosec = divmod(int(stamp), 1_000_000_000)
        tr.transform.translation.x, tr.transform.translation.y, tr.transform.translation.z = (float(v) for v in T[:3, 3])
        q = matrix_to_quaternion(T)
        tr.transform.rotation.x, tr.transform.rotation.y, tr.transform.rotation.z, tr.transform.rotation.w = (float(v) for v in q)
        return tr

    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("bench_camera")
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    pubs = {k: node.create_publisher(t, n, qos) for k, t, n in (
        ("color", type(prepared[0][1]), topics.color_image), ("depth", type(prepared[0][2]), topics.depth_image),
        ("info", CameraInfo, topics.color_info))}
    pub_tf = node.create_publisher(TFMessage, topics.tf, QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    pub_static = node.create_publisher(TFMessage, topics.tf_static, QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    pub_static.publish(TFMessage(transforms=[tf(names.camera_link, names.color_optical, T_LINK_OPTICAL, time.time_ns())]))
    t_wait = time.monotonic()
    while not stop.is_set() and (pubs["color"].get_subscription_count() == 0 or pubs["depth"].get_subscription_count() == 0):
        if time.monotonic() - t_wait > 60:
            print(json.dumps({"error": "no subscriber"}), flush=True)
            return 1
        time.sleep(0.02)
    time.sleep(0.5)  # let the remaining endpoints match too
    sent: Counter[str] = Counter()
    lateness: list[float] = []
    t0 = time.monotonic()
    period = 1.0 / args.rate
    i = 0
    first_stamp = stamp = 0
    while not stop.is_set() and time.monotonic() - t0 < args.seconds:
        T, color, depth, info = prepared[i % len(prepared)]
        stamp = time.time_ns()
        first_stamp = first_stamp or stamp
        sec, nsec = divmod(stamp, 1_000_000_000)
        for m in (color, depth, info):
            m.header.stamp.sec, m.header.stamp.nanosec = sec, nsec
        pubs["color"].publish(color)
        pubs["depth"].publish(depth)
        pubs["info"].publish(info)
        chain = decompose_camera_pose(T, time.monotonic() - t0)
        for parent, child, M in ((names.map, names.odom, chain.map_odom), (names.odom, names.base, chain.odom_base),
                                 (names.base, names.camera_link, chain.base_camera_link)):
            pub_tf.publish(TFMessage(transforms=[tf(parent, child, M, stamp)]))
        sent["frames"] += 1
        i += 1
        delay = t0 + i * period - time.monotonic()
        lateness.append(max(0.0, -delay))
        if delay > 0:
            stop.wait(delay)
    node.destroy_node()
    rclpy.try_shutdown()
    print(json.dumps({"sent": sent["frames"], "seconds": time.monotonic() - t0, "first_stamp": first_stamp, "last_stamp": stamp,
                      "max_lateness_ms": 1e3 * max(lateness or [0.0])}), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------------
# Measurement side
# ---------------------------------------------------------------------------------------------------
def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(round(q / 100 * (len(v) - 1)))))]


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _start_publisher(scene: str, args: argparse.Namespace):
    from ros3d_agent.utils.processes import ManagedProcess, child_env

    argv = [sys.executable, os.path.abspath(__file__), "--role", "publisher", "--scene", scene,
            "--seconds", str(args.seconds), "--rate", str(args.rate)]
    return ManagedProcess(argv, env=child_env(), terminate_timeout_s=10.0).start()


def run_baseline(scene: str, args: argparse.Namespace) -> dict:
    """The same stream into a subscriber that only counts (and times its own trivial callback)."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image
    from tf2_msgs.msg import TFMessage

    from ros3d_agent.ros.spinning import spinning_node
    from ros3d_agent.scene.robot_frames import CameraTopics

    topics = CameraTopics()
    counts: Counter[str] = Counter()
    cost: list[float] = []

    def counter(key):
        def cb(_msg):
            t = time.perf_counter()
            counts[key] += 1
            cost.append(time.perf_counter() - t)
        return cb

    from ros3d_agent.ros.params import PARAMETERS
    from ros3d_agent.ros.qos import qos_from_name

    depth = next(s.default for s in PARAMETERS if s.name == "qos.image_depth")
    qos = qos_from_name("SENSOR_DATA", depth)  # exactly what the node subscribes with
    rss0 = _rss_mb()
    with spinning_node("bench_bare_subscriber") as node:
        node.create_subscription(Image, topics.color_image, counter("color"), qos)
        node.create_subscription(Image, topics.depth_image, counter("depth"), qos)
        node.create_subscription(CameraInfo, topics.color_info, counter("info"), qos)
        node.create_subscription(TFMessage, topics.tf, counter("tf"), QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        pub = _start_publisher(scene, args)
        report = _publisher_report_wait(pub, args)
    return {"sent": report.get("sent"), "received": dict(counts), "rss_growth_mb": _rss_mb() - rss0,
            "callback_ms_p50": 1e3 * _pct(cost, 50), "publisher": report}


def _publisher_report_wait(pub, args) -> dict:
    deadline = time.monotonic() + args.seconds + 60
    while pub.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)  # the last messages in flight
    pub.stop()
    lines = [ln for ln in pub.output().splitlines() if ln.startswith("{")]
    return json.loads(lines[-1]) if lines else {"error": "publisher printed nothing", "output": pub.output()[-2000:]}


def run_node(scene: str, args: argparse.Namespace) -> dict:
    """The real node in this process, its sensor/TF callbacks timed, fed by the same stream."""
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter
    from rclpy.signals import SignalHandlerOptions

    from ros3d_agent.ros.node import SceneAgentNode
    from ros3d_agent.ros.node_main import EXECUTOR_THREADS
    from ros3d_agent.ros.spinning import spinning_node

    callback_s: dict[str, list[float]] = {}
    first_last: dict[str, int] = {}
    arrivals: list[float] = []

    class TimedNode(SceneAgentNode):
        """The node with its callback-path entry points wrapped in timers (nothing else changes)."""

        def _sensor_callback(self, index, name):
            inner = super()._sensor_callback(index, name)
            times = callback_s.setdefault(name, [])

            def timed(msg):
                t = time.perf_counter()
                inner(msg)
                times.append(time.perf_counter() - t)
                if name == "color":
                    arrivals.append(time.monotonic())
                    first_last.setdefault("first_color_stamp", msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)
                    first_last["last_color_stamp"] = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
            return timed

        def _on_tf(self, msg, static):
            t = time.perf_counter()
            super()._on_tf(msg, static)
            callback_s.setdefault("tf_static" if static else "tf", []).append(time.perf_counter() - t)

    model = [("model.checkpoint", args.checkpoint)] if args.checkpoint else [("model.preset", args.preset), ("model.allow_random_weights", True)]
    overrides = [*model, ("model.device", args.device), ("model.dtype", args.dtype), ("qos.images", "SENSOR_DATA"),
                 ("qos.camera_info", "SENSOR_DATA")]
    context = rclpy.Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    node = TimedNode("ros3d_agent", context=context, parameter_overrides=[Parameter(k, value=v) for k, v in overrides])
    executor = MultiThreadedExecutor(num_threads=EXECUTOR_THREADS, context=context)
    executor.add_node(node)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    out: dict = {}
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS, "configure failed"
        t0 = time.perf_counter()
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS, "activate failed"
        out["activate_s"] = time.perf_counter() - t0
        rss0 = _rss_mb()
        samples: list[tuple[float, float]] = []
        sampling = threading.Event()

        def sample_rss() -> None:
            t_start = time.monotonic()
            while not sampling.wait(5.0):
                samples.append((round(time.monotonic() - t_start, 1), round(_rss_mb() - rss0, 1)))

        sampler = threading.Thread(target=sample_rss, daemon=True)
        sampler.start()
        pub = _start_publisher(scene, args)
        out["publisher"] = _publisher_report_wait(pub, args)
        sampling.set()
        sampler.join(10)
        out["rss_growth_mb_over_time"] = samples
        rt = node._rt
        rt.admission.wait_idle(30.0)
        out["rss_growth_mb"] = _rss_mb() - rss0
        snap = node.snapshot()
        c = snap.counters
        out["sent"] = out["publisher"].get("sent")
        out["received"] = {k[3:]: v for k, v in c.items() if k.startswith("in.")}
        out["synced"] = c.get("frames.synced", 0)
        gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
        out["color_arrival_gap_ms"] = {"p50": 1e3 * _pct(gaps, 50), "p99": 1e3 * _pct(gaps, 99), "max": 1e3 * max(gaps or [0])}
        out["color_stamps_span_s"] = (first_last.get("last_color_stamp", 0) - first_last.get("first_color_stamp", 0)) / 1e9
        out["posed"] = c.get("frames.posed", 0)
        out["dropped"] = {k[5:]: v for k, v in c.items() if k.startswith("drop.")}
        out["sync_dropped"] = {k[5:]: v for k, v in c.items() if k.startswith("sync.")}
        out["keyframes"] = snap.keyframes
        out["candidates"] = c.get("frames.candidates", 0)
        out["keyframes_admitted"] = c.get("keyframes.admitted", 0)
        per_frame = [sum(v) for v in zip(*(callback_s.get(k, []) for k in ("color", "depth", "color_info")))]
        out["callback_ms"] = {k: {"p50": 1e3 * _pct(v, 50), "p95": 1e3 * _pct(v, 95), "max": 1e3 * max(v or [0])}
                              for k, v in callback_s.items()}
        out["callback_ms_per_frame"] = {"p50": 1e3 * _pct(per_frame, 50), "p95": 1e3 * _pct(per_frame, 95),
                                        "max": 1e3 * max(per_frame or [0])}
        sink = rt.ingest.sink
        out["admission_ms"] = {
            "decide_p50 (decode+coverage, ingest worker)": 1e3 * _pct(list(sink.decide_s), 50),
            "encode_p50 (engine.encode_keyframe)": 1e3 * _pct(rt.admission.encode_s, 50),
            "post_p50 (fusion+proposals)": 1e3 * _pct(rt.admission.post_s, 50),
            "post_max": 1e3 * max(rt.admission.post_s or [0]),
        }
        out["cloud"] = snap.cloud
        # Queries over the memory just built, through the real service.
        lat = []
        with spinning_node("bench_client") as cnode:
            from ros3d_agent_interfaces.srv import AskScene

            cli = cnode.create_client(AskScene, "/ros3d_agent/query")
            assert cli.wait_for_service(timeout_sec=30)
            for k in range(args.queries):
                task = "ground" if k % 2 else "qa"
                t = time.perf_counter()
                fut = cli.call_async(AskScene.Request(question="where is the chair?", task=task, max_views=8))
                while not fut.done():
                    time.sleep(0.001)
                lat.append(time.perf_counter() - t)
                if not fut.result().success:
                    out.setdefault("query_failures", []).append(fut.result().message)
        out["query_ms"] = {"p50": 1e3 * _pct(lat, 50), "p95": 1e3 * _pct(lat, 95), "n": len(lat)}
    finally:
        if node.state == "active":
            node.trigger_deactivate()
        executor.shutdown(timeout_sec=5.0)
        spin.join(5.0)
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    return out


def run_pipeline(args: argparse.Namespace) -> int:
    """The node's memory pipeline without ROS (for accelerator machines that have no ROS 2):
    keyframe gate → coverage decision → engine.encode_keyframe → fusion + proposals, then queries over
    the memory, and the GPU memory before loading, when full, and after deactivate-style release."""
    import math

    import torch

    from ros3d_agent.inference.engine import EngineConfig, SceneEngine
    from ros3d_agent.ros.diagnostics import gpu_memory
    from ros3d_agent.ros.keyframes import AdmissionWorker, KeyframeMemory, KeyframePolicy, frame_coverage_keys
    from ros3d_agent.ros.memory_cloud import CloudConfig, SceneCloud
    from ros3d_agent.scene import SceneDir

    def mem() -> float:
        if not torch.cuda.is_available():
            return float("nan")
        torch.cuda.synchronize()
        return torch.cuda.memory_allocated() / 2**20

    frames = list(SceneDir(args.scene).iter_frames())
    report: dict = {"device": args.device, "dtype": args.dtype, "preset": args.preset or None,
                    "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                    "frames": len(frames), "gpu_mb_before_load": mem()}
    cfg = EngineConfig(checkpoint=args.checkpoint or None, preset=None if args.checkpoint else args.preset,
                       allow_random_weights=not args.checkpoint, device=args.device, dtype=args.dtype)
    t0 = time.perf_counter()
    engine = SceneEngine(cfg)
    report["load_s"] = time.perf_counter() - t0
    report["warmup_s"] = engine.warmup()
    report["gpu_mb_loaded"] = mem()
    memory = KeyframeMemory(KeyframePolicy())
    cloud = SceneCloud(CloudConfig())

    def admitted(frame, kf, evicted):
        cloud.add_frame(frame)
        cloud.update_proposals()

    admission = AdmissionWorker(memory, engine.encode_keyframe, admitted, queue_size=64)
    admission.start()
    gate_s, decide_s = [], []
    period = 1_000_000_000 // 30
    for i in range(args.loops * len(frames)):
        f = frames[i % len(frames)]
        stamp = 1_700_000_000 * 10**9 + i * period
        t = time.perf_counter()
        reason = memory.gate(f.T_world_cam, stamp)
        gate_s.append(time.perf_counter() - t)
        if reason is None:
            continue
        t = time.perf_counter()
        voxels = frame_coverage_keys(f, memory.policy)
        ok, _ = memory.decide(reason, voxels)
        decide_s.append(time.perf_counter() - t)
        if ok:
            admission.submit(memory.reserve(stamp, f.T_world_cam, voxels, reason), f)
        admission.wait_idle(60.0)  # keep the order of a live stream: one frame's admission at a time
    admission.stop()
    report["keyframes"] = len(memory)
    report["keyframe_mb"] = memory.nbytes / 2**20
    report["gpu_mb_with_memory"] = mem()
    report["gate_us_p50"] = 1e6 * _pct(gate_s, 50)
    report["decide_ms_p50"] = 1e3 * _pct(decide_s, 50)
    report["encode_ms"] = {"p50": 1e3 * _pct(admission.encode_s, 50), "p95": 1e3 * _pct(admission.encode_s, 95)}
    report["fusion_proposals_ms"] = {"p50": 1e3 * _pct(admission.post_s, 50), "max": 1e3 * max(admission.post_s or [0])}
    cloud.update_proposals(force=True)
    snap = cloud.proposals()
    report["proposals"] = len(snap.boxes)
    lat: dict[str, list[float]] = {"qa": [], "ground": []}
    failures = []
    for k in range(args.queries):
        task = "ground" if k % 2 else "qa"
        kfs = memory.select(8)
        t = time.perf_counter()
        ans = engine.answer("where is the chair?", task, [kf.features for kf in kfs], list(snap.boxes))
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        lat[task].append(time.perf_counter() - t)
        if not ans.success:
            failures.append(ans.error)
    report["query_ms"] = {t: {"p50": 1e3 * _pct(v, 50), "p95": 1e3 * _pct(v, 95), "n": len(v)} for t, v in lat.items()}
    report["query_failures"] = failures[:5]
    report["diagnostics_gpu"] = gpu_memory()
    # What on_deactivate does: stop the worker, forget keyframes (their features live on the
    # device), release the model, and drop the whole runtime.
    import gc
    import weakref

    model_ref = weakref.ref(engine.model)
    admission.stop()
    memory.clear()
    cloud.clear()
    engine.release()
    del engine, snap, admission, memory, cloud, kfs, ans
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    report["model_alive_after_release"] = model_ref() is not None
    if model_ref() is not None:
        report["model_referrers"] = [type(r).__name__ + ":" + (",".join(list(r)[:8]) if isinstance(r, dict) else str(r)[:80])
                                     for r in gc.get_referrers(model_ref())]
    report["gpu_mb_after_release"] = mem()
    # What remains are cuBLAS workspaces (one per thread that ran a matmul: the admission worker's
    # and the query thread's), which torch keeps until told otherwise.
    if torch.cuda.is_available() and hasattr(torch._C, "_cuda_clearCublasWorkspaces"):
        torch._C._cuda_clearCublasWorkspaces()
        torch.cuda.empty_cache()
    report["gpu_mb_after_release_and_cublas_clear"] = mem()
    before = report["gpu_mb_before_load"]
    report["released_to_baseline"] = (not math.isnan(before)) and report["gpu_mb_after_release_and_cublas_clear"] - before < 1.0
    print(json.dumps(report, indent=2, default=float))
    return 0


def make_scene(args: argparse.Namespace) -> str:
    from ros3d_agent.scene.synthetic.generate import GenerateConfig, generate_scene

    out = Path(args.scene_dir or Path(tempfile.gettempdir()) / "ros3d_bench_scenes")
    s = generate_scene(11, out, GenerateConfig(frames=args.frames, width=args.width, height=args.height, noise=True))
    return s.path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--role", default="bench", choices=("bench", "publisher", "pipeline"),
                    help="bench: the ROS comparison; pipeline: the memory pipeline without ROS (--scene, any device)")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--frames", type=int, default=60, help="frames of the synthetic scene (looped)")
    ap.add_argument("--scene", default="", help="(publisher) scene directory")
    ap.add_argument("--scene-dir", default="", help="where the synthetic scene is cached")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--checkpoint", default="")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--loops", type=int, default=2, help="(pipeline) passes over the scene's frames")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--json", default="", help="also write the report here")
    ap.add_argument("--domain-id", type=int, default=0, help="ROS_DOMAIN_ID (default: a random one in 1..100)")
    args = ap.parse_args(argv)
    if args.role == "pipeline":
        if not args.scene:
            ap.error("--role pipeline needs --scene DIR")
        return run_pipeline(args)
    prepare_dds_environment()
    if args.role == "publisher":
        return run_publisher(args)

    # A domain of its own (DDS stays on loopback through prepare_dds_environment): the benchmark's
    # /camera topics must not meet anyone else's processes on this machine.
    os.environ["ROS_DOMAIN_ID"] = str(args.domain_id or random.SystemRandom().randint(1, 100))
    scene = make_scene(args)
    report: dict = {"config": {k: getattr(args, k) for k in ("seconds", "rate", "width", "height", "preset", "checkpoint", "device", "dtype")},
                    "cpu_count": os.cpu_count()}
    if not args.skip_baseline:
        report["baseline"] = run_baseline(scene, args)
    report["node"] = run_node(scene, args)
    n = report["node"]
    per_frame_p95 = n["callback_ms_per_frame"]["p95"]
    lost = (n["sent"] or 0) - n["received"].get("color", 0)
    dropped = sum(n["dropped"].values()) + sum(v for k, v in n["sync_dropped"].items())
    report["verdict"] = {
        "frames_lost_before_node": lost,
        "frames_dropped_by_node": dropped,
        "callback_ms_per_frame_p95": per_frame_p95,
        "goal_callback_ms": GOAL_CALLBACK_MS,
        "callback_goal_met": per_frame_p95 < GOAL_CALLBACK_MS,
        "zero_drops": lost == 0 and dropped == 0,
    }
    if "baseline" in report:
        b = report["baseline"]
        report["verdict"]["baseline_frames_lost"] = (b["sent"] or 0) - b["received"].get("color", 0)
    text = json.dumps(report, indent=2, default=float)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
