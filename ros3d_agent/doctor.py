"""`ros3d-agent doctor`: is this machine able to run the package, and if not, what to do.

Each check exercises the component for real (a DDS round trip, a message serialised through
our interface package, a tiny model forward, a point-cloud operation, a bag written and
read back) rather than only importing it: an import that succeeds says little about a
missing shared library that is loaded lazily, or an RMW that cannot talk.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass
class CheckResult:
    name: str
    status: str
    detail: str
    fix: str = ""
    seconds: float = 0.0


class CheckFailed(Exception):
    """Raised inside a check to report a failure with its fix."""

    def __init__(self, detail: str, fix: str):
        super().__init__(detail)
        self.detail, self.fix = detail, fix


class CheckWarning(Exception):
    def __init__(self, detail: str, fix: str):
        super().__init__(detail)
        self.detail, self.fix = detail, fix


SETUP_FIX = "run 'make setup' (scripts/setup.sh), then 'source env.sh'"


def _dist_version(*dists: str) -> str:
    """Installed version of the first distribution found (ROS installs name rclpy differently)."""
    from importlib.metadata import PackageNotFoundError, version

    for dist in dists:
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return "(version unknown)"


# --------------------------------------------------------------------------- checks
def check_python() -> str:
    v = sys.version_info
    if (v.major, v.minor) not in ((3, 10), (3, 12), (3, 13)):
        raise CheckFailed(f"Python {platform.python_version()}: ROS 2 wheels exist for 3.10/3.12/3.13 only",
                          "recreate the venv with CPython 3.12 (scripts/setup.sh picks it)")
    in_venv = sys.prefix != sys.base_prefix
    return f"{platform.python_version()} on {platform.machine()}{' (venv ' + sys.prefix + ')' if in_venv else ''}"


def check_dds_environment() -> str:
    from ros3d_agent.ros.dds_env import DdsEnvironmentError

    rng = os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE")
    rmw = os.environ.get("RMW_IMPLEMENTATION")
    if rmw and rmw != "rmw_fastrtps_cpp" and not os.environ.get("ROS_DISTRO"):
        raise CheckFailed(f"RMW_IMPLEMENTATION={rmw}: the PyPI wheels carry Fast DDS only (rclpy exits with 102)",
                          "unset RMW_IMPLEMENTATION (env.sh does this)")
    try:
        from ros3d_agent.ros.dds_env import prepare_dds_environment

        env = prepare_dds_environment()
    except DdsEnvironmentError as exc:
        raise CheckFailed(str(exc), "source env.sh") from None
    detail = (f"discovery {env.discovery_range}, domain {env.domain_id}, rmw {env.rmw or 'default (Fast DDS)'}, "
              f"profile {Path(env.profiles_file).name if env.profiles_file else 'Fast DDS defaults'}")
    if rng is None:
        raise CheckWarning(detail + " (LOCALHOST set by doctor itself: your shell has no discovery range)",
                           "source env.sh: without ROS_AUTOMATIC_DISCOVERY_RANGE Fast DDS multicasts on every interface")
    if rng != "LOCALHOST":
        raise CheckWarning(detail, "DDS discovery reaches your network; export ROS3D_DISCOVERY_RANGE=LOCALHOST "
                                   "and source env.sh unless nodes span hosts")
    return detail


def check_rclpy() -> str:
    try:
        import rclpy
    except ImportError as exc:
        raise CheckFailed(f"import rclpy failed: {exc}", SETUP_FIX + " (rclpy needs the ros-rclpy[fastrtps] wheel "
                          "or a sourced ROS 2 install)") from None
    from ros3d_agent.ros.spinning import spinning_node

    with spinning_node("ros3d_doctor_probe"):
        ident = rclpy.get_rmw_implementation_identifier()
    distro = os.environ.get("ROS_DISTRO") or "kilted (PyPI wheels)"
    return f"rclpy {_dist_version('ros-rclpy', 'rclpy')} on {ident}, ROS 2 {distro}"


def check_dds_roundtrip() -> str:
    """Publisher and subscriber on two nodes: a 640x480 image and our answer message over DDS."""
    import threading
    import zlib

    import numpy as np
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from ros3d_agent_interfaces.msg import SceneAnswer
    from sensor_msgs.msg import Image

    from ros3d_agent.ros.image_codec import image_to_rgb, numpy_to_image
    from ros3d_agent.ros.spinning import spinning_node

    rgb = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    crc = zlib.crc32(rgb.tobytes())
    got_image, got_answer = threading.Event(), threading.Event()
    result: dict[str, object] = {}
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    topic = f"ros3d_doctor/image_{os.getpid()}"
    with spinning_node("ros3d_doctor_tx") as tx, spinning_node("ros3d_doctor_rx") as rx:
        def on_image(msg: Image) -> None:
            result["image_crc_ok"] = zlib.crc32(image_to_rgb(msg).tobytes()) == crc
            got_image.set()

        def on_answer(msg: SceneAnswer) -> None:
            result["answer_text"] = msg.text
            got_answer.set()

        rx.create_subscription(Image, topic, on_image, qos)
        rx.create_subscription(SceneAnswer, topic + "_answer", on_answer, qos)
        img_pub = tx.create_publisher(Image, topic, qos)
        ans_pub = tx.create_publisher(SceneAnswer, topic + "_answer", qos)
        t0 = time.monotonic()
        while img_pub.get_subscription_count() == 0 or ans_pub.get_subscription_count() == 0:
            if time.monotonic() - t0 > 15:
                raise CheckFailed("publisher and subscriber did not discover each other in 15 s",
                                  "check ROS_DOMAIN_ID / FASTDDS_DEFAULT_PROFILES_FILE; /dev/shm must be writable")
            time.sleep(0.02)
        discovery = time.monotonic() - t0
        t1 = time.monotonic()
        img_pub.publish(numpy_to_image(rgb, "rgb8", frame_id="doctor"))
        ans_pub.publish(SceneAnswer(text="doctor", success=True))
        if not (got_image.wait(10) and got_answer.wait(10)):
            raise CheckFailed("messages were published but never arrived", "see 'ros3d-agent roundtrip' for details")
        latency = (time.monotonic() - t1) * 1000
    if not result.get("image_crc_ok") or result.get("answer_text") != "doctor":
        raise CheckFailed("messages arrived corrupted", "report a bug with the output of 'ros3d-agent roundtrip'")
    return f"640x480 rgb8 + SceneAnswer delivered intact (discovery {discovery:.2f} s, delivery {latency:.1f} ms)"


def check_interfaces() -> str:
    try:
        from builtin_interfaces.msg import Time
        from rclpy.serialization import deserialize_message, serialize_message
        from ros3d_agent_interfaces.action import AskScene as AskSceneAction
        from ros3d_agent_interfaces.msg import GroundedObject, SceneAnswer, StageTiming
        from ros3d_agent_interfaces.srv import AskScene
    except ImportError as exc:
        raise CheckFailed(f"ros3d_agent_interfaces not importable: {exc}", SETUP_FIX + " (it builds msg/ srv/ action/)") from None
    msg = SceneAnswer(query_id="q", question="where is the mug?", task=SceneAnswer.TASK_GROUND, success=True,
                      objects=[GroundedObject(id="3", label="mug", score=0.5)],
                      keyframe_stamps=[Time(sec=1, nanosec=2)], timings=[StageTiming(stage="llm", seconds=0.5)])
    back = deserialize_message(serialize_message(msg), SceneAnswer)
    if back != msg:
        raise CheckFailed("SceneAnswer does not survive serialisation", "rebuild: rm -rf .venv/.ros3d-stamps/interfaces; make setup")
    AskScene.Request(question="q")
    AskSceneAction.Goal(question="q")
    return "msg GroundedObject/GroundedObjectArray/SceneAnswer/StageTiming, srv AskScene, action AskScene"


def check_torch() -> str:
    try:
        import torch
    except ImportError as exc:
        raise CheckFailed(f"import torch failed: {exc}", SETUP_FIX) from None
    a = torch.randn(64, 64)
    if not torch.allclose(a @ torch.eye(64), a):
        raise CheckFailed("CPU matmul gives wrong results", "reinstall torch")
    return f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"


def check_cuda() -> str:
    import torch

    if not torch.cuda.is_available():
        built = torch.version.cuda or "none"
        return f"no CUDA device (torch built for CUDA {built}): models run on the CPU, fine for 'tiny' and tests"
    name = torch.cuda.get_device_name(0)
    free, total = torch.cuda.mem_get_info(0)
    x = torch.randn(1024, 1024, device="cuda", dtype=torch.bfloat16)
    torch.cuda.synchronize()
    y = (x @ x).float().sum().item()
    if y != y:  # NaN
        raise CheckFailed(f"{name}: bf16 matmul returned NaN", "check the NVIDIA driver / CUDA install")
    cap = ".".join(map(str, torch.cuda.get_device_capability(0)))
    return (f"{torch.cuda.device_count()} x {name} (sm {cap}), {free / 2**30:.1f}/{total / 2**30:.1f} GiB free, "
            f"CUDA {torch.version.cuda}, bf16 matmul ok")


def check_open3d() -> str:
    try:
        import open3d as o3d
    except ImportError as exc:
        fix = SETUP_FIX
        if "libusb" in str(exc):
            fix = "open3d needs libusb-1.0: apt-get install libusb-1.0-0 (scripts/setup.sh does it, or copies it into .venv/lib)"
        raise CheckFailed(f"import open3d failed: {exc}", fix) from None
    import numpy as np

    pts = np.random.default_rng(0).uniform(0, 1, (20000, 3))
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts)).voxel_down_sample(0.1)
    if not 0 < len(pc.points) <= 1331:
        raise CheckFailed(f"voxel_down_sample gave {len(pc.points)} points", "reinstall open3d")
    return f"open3d {o3d.__version__}, voxel downsample 20k -> {len(pc.points)} points"


def check_transformers() -> str:
    import torch
    import transformers
    from transformers import Qwen2Config, Qwen2ForCausalLM, SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(0)
    llm = Qwen2ForCausalLM(Qwen2Config(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                       num_attention_heads=2, num_key_value_heads=1))
    vit = SiglipVisionModel(SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                               num_attention_heads=2, image_size=32, patch_size=8))
    with torch.no_grad():
        logits = llm(torch.arange(8)[None]).logits
        feats = vit(pixel_values=torch.randn(1, 3, 32, 32)).last_hidden_state
    if logits.shape != (1, 8, 256) or feats.shape != (1, 16, 32):
        raise CheckFailed("tiny Qwen2/SigLIP forward gave wrong shapes", "reinstall transformers")
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    detail = f"transformers {transformers.__version__}: tiny Qwen2 + SigLIP forward ok"
    if not offline:
        raise CheckWarning(detail + "; HF_HUB_OFFLINE is not set",
                           "source env.sh: without HF_HUB_OFFLINE=1 a missing local file turns into a hub download attempt")
    return detail + ", hub offline"


def check_diffusers() -> str:
    import diffusers
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler

    vae = AutoencoderKL(block_out_channels=(8,), layers_per_block=1, latent_channels=4, norm_num_groups=4)
    with torch.no_grad():
        latents = vae.encode(torch.randn(1, 3, 16, 16)).latent_dist.sample()
    noisy = DDPMScheduler(num_train_timesteps=100).add_noise(latents, torch.randn_like(latents), torch.tensor([10]))
    if noisy.shape != (1, 4, 16, 16):
        raise CheckFailed(f"tiny AutoencoderKL gave {tuple(noisy.shape)}", "reinstall diffusers")
    import accelerate
    import peft

    return f"diffusers {diffusers.__version__} (tiny VAE + DDPM ok), accelerate {accelerate.__version__}, peft {peft.__version__}"


def check_opencv() -> str:
    import cv2
    import numpy as np

    img = np.zeros((48, 64, 3), np.uint8)
    img[10:20, 10:30] = (255, 0, 0)
    ok, buf = cv2.imencode(".png", img)
    back = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if not ok or back is None or not (back == img).all():
        raise CheckFailed("PNG encode/decode round trip failed", "reinstall opencv-python-headless")
    return f"opencv {cv2.__version__}, PNG round trip ok"


def check_rosbags() -> str:
    import numpy as np
    from rosbags.rosbag2 import Reader, StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    Image, Header, Time = (store.types[t] for t in ("sensor_msgs/msg/Image", "std_msgs/msg/Header",
                                                    "builtin_interfaces/msg/Time"))
    data = np.arange(12, dtype=np.uint8)
    msg = Image(header=Header(stamp=Time(sec=1, nanosec=0), frame_id="cam"), height=2, width=2, encoding="rgb8",
                is_bigendian=0, step=6, data=data)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bag"
        with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
            conn = writer.add_connection("/image", Image.__msgtype__, typestore=store)
            writer.write(conn, 1_000_000_000, store.serialize_cdr(msg, Image.__msgtype__))
        with Reader(path) as reader:
            raw = [r for _, _, r in reader.messages()]
        back = store.deserialize_cdr(raw[0], Image.__msgtype__)
    if len(raw) != 1 or not np.array_equal(back.data, data):
        raise CheckFailed("MCAP bag write/read round trip failed", "reinstall rosbags")
    return f"rosbags {_dist_version('rosbags')}: MCAP rosbag2 write + read ok"


def check_java() -> str:
    java = shutil.which("java")
    if not java:
        raise CheckWarning("no java on PATH: METEOR and the PTB tokenizer of the caption metrics need it",
                           "apt-get install default-jre-headless (only for caption evaluation)")
    return f"java at {java} (caption metrics: PTB tokenizer, METEOR)"


CHECKS: list[tuple[str, Callable[[], str], tuple[str, ...]]] = [
    ("python", check_python, ()),
    ("dds environment", check_dds_environment, ()),
    ("rclpy", check_rclpy, ("dds environment",)),
    ("ros3d interfaces", check_interfaces, ("rclpy",)),
    ("dds round trip", check_dds_roundtrip, ("rclpy", "ros3d interfaces")),
    ("torch", check_torch, ()),
    ("cuda", check_cuda, ("torch",)),
    ("open3d", check_open3d, ()),
    ("transformers", check_transformers, ("torch",)),
    ("diffusers", check_diffusers, ("torch",)),
    ("opencv", check_opencv, ()),
    ("rosbags", check_rosbags, ()),
    ("java", check_java, ()),
]


def run_checks(only: list[str] | None = None) -> list[CheckResult]:
    results: dict[str, CheckResult] = {}
    for name, fn, needs in CHECKS:
        if only and name not in only:
            continue
        blocked = [n for n in needs if n in results and results[n].status == FAIL]
        if blocked:
            results[name] = CheckResult(name, FAIL, f"skipped: needs {', '.join(blocked)}", f"fix '{blocked[0]}' first")
            continue
        t0 = time.perf_counter()
        try:
            res = CheckResult(name, OK, fn())
        except CheckFailed as exc:
            res = CheckResult(name, FAIL, exc.detail, exc.fix)
        except CheckWarning as exc:
            res = CheckResult(name, WARN, exc.detail, exc.fix)
        except Exception as exc:  # an unexpected error is a failed check, not a crashed doctor
            last = traceback.extract_tb(exc.__traceback__)[-1]
            res = CheckResult(name, FAIL, f"{type(exc).__name__}: {exc} ({Path(last.filename).name}:{last.lineno})",
                              SETUP_FIX)
        res.seconds = time.perf_counter() - t0
        results[name] = res
    return list(results.values())


def format_table(results: list[CheckResult], color: bool) -> str:
    marks = {OK: ("OK", "32"), WARN: ("WARN", "33"), FAIL: ("FAIL", "31")}
    width = max(len(r.name) for r in results)
    lines = [f"{'status':6}  {'check':{width}}  {'time':>6}  detail", "-" * (width + 60)]
    for r in results:
        label, code = marks[r.status]
        shown = f"\033[1;{code}m{label:6}\033[0m" if color else f"{label:6}"
        lines.append(f"{shown}  {r.name:{width}}  {r.seconds:5.2f}s  {r.detail}")
    fixes = [r for r in results if r.status != OK]
    if fixes:
        lines += ["", "How to fix:"]
        lines += [f"  - {r.name}: {r.fix}" for r in fixes]
    n_fail = sum(r.status == FAIL for r in results)
    n_warn = sum(r.status == WARN for r in results)
    lines += ["", f"{len(results) - n_fail - n_warn} ok, {n_warn} warnings, {n_fail} failures"]
    return "\n".join(lines)


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    parser.add_argument("--only", nargs="+", metavar="CHECK", choices=[c[0] for c in CHECKS],
                        help="run only these checks")


def main(args) -> int:
    results = run_checks(args.only)
    if args.json:
        print(json.dumps({"results": [asdict(r) for r in results],
                          "ok": all(r.status != FAIL for r in results)}, indent=2))
    else:
        print(format_table(results, color=sys.stdout.isatty()))
    return 1 if any(r.status == FAIL for r in results) else 0
