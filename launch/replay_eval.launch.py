"""Rosbag replay evaluation on a real ROS 2 install.

    ros2 launch ros3d_agent replay_eval.launch.py bag:=/data/run1 questions:=/data/run1.jsonl \\
        out:=/tmp/eval/run1 checkpoint:=/models/ros3d-small
    ros2 launch ros3d_agent replay_eval.launch.py bag:=/data/run1 questions:=/data/run1.jsonl out:=/tmp/eval/run1 \\
        checkpoint:=/models/ros3d-small color_topic:=/head_camera/color/image_raw rate:=0.5 config:=jetson_orin
    ros2 launch ros3d_agent replay_eval.launch.py mode:=offline bag:=... questions:=... out:=... checkpoint:=...

``mode:=realtime`` (default) starts the node through ``agent.launch.py`` with ``use_sim_time:=true``
and its camera topics remapped to the bag's, then runs ``ros3d-agent replay --mode realtime
--node <that node>``: the bag player with ``/clock`` and the questions through the ``AskScene``
action. ``mode:=offline`` runs only ``ros3d-agent replay --mode offline`` (no node, no DDS). The
launch shuts down when the replay ends; results.jsonl, summary.json and the BEV picture are in ``out``.

The node's fixed frame is its params file's ``fixed_frame``; pass the same frame as
``fixed_frame:=`` here (it is the frame of the questions' ground-truth boxes).

ROS 2 ``launch`` is not installable beside the PyPI wheels; there, ``ros3d-agent replay`` does the
same (it starts the node itself with ``ros3d-agent run``).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, ExecuteProcess, IncludeLaunchDescription, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration

PACKAGE = "ros3d_agent"
REPLAY_COMMAND = ["ros3d-agent", "replay"]

#: launch argument -> the replay option naming that topic in the bag (and the node's topic it is remapped from)
TOPIC_OPTIONS = {
    "color_topic": ("--rgb-topic", "/camera/color/image_raw"),
    "depth_topic": ("--depth-topic", "/camera/aligned_depth_to_color/image_raw"),
    "color_info_topic": ("--camera-info-topic", "/camera/color/camera_info"),
    "depth_info_topic": ("--depth-info-topic", "/camera/aligned_depth_to_color/camera_info"),
}
#: launch arguments handed to agent.launch.py unchanged
NODE_ARGUMENTS = ("namespace", "node_name", "config", "checkpoint", "preset", "allow_random_weights", "device", "log_level")


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def _setup(context, *_args, **_kwargs):
    arg = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    mode = arg("mode")
    if mode not in ("realtime", "offline"):
        raise RuntimeError(f"replay_eval: mode must be realtime or offline, got {mode!r}")
    for required in ("bag", "questions", "out"):
        if not arg(required):
            raise RuntimeError(f"replay_eval: set {required}:=...")
    cmd = [*REPLAY_COMMAND, "--mode", mode, "--bag", arg("bag"), "--questions", arg("questions"), "--out", arg("out"),
           "--config", arg("config"), "--fixed-frame", arg("fixed_frame"), "--rate", arg("rate")]
    if arg("checkpoint"):
        cmd += ["--checkpoint", arg("checkpoint")]
    elif arg("preset"):
        cmd += ["--preset", arg("preset")] + (["--allow-random-weights"] if _truthy(arg("allow_random_weights")) else [])
    if arg("device"):
        cmd += ["--device", arg("device")]
    for name, (option, _default) in TOPIC_OPTIONS.items():
        cmd += [option, arg(name)]
    if arg("scenario"):
        cmd += ["--scenario", arg("scenario")]
    actions = []
    if mode == "realtime":
        agent = os.path.join(get_package_share_directory(PACKAGE), "launch", "agent.launch.py")
        node_args = {name: arg(name) for name in NODE_ARGUMENTS}
        node_args.update({name: arg(name) for name in TOPIC_OPTIONS})
        node_args.update({"use_sim_time": "true", "autostart": "true"})
        actions.append(IncludeLaunchDescription(PythonLaunchDescriptionSource(agent), launch_arguments=node_args.items()))
        ns = arg("namespace").strip("/")
        cmd += ["--node", "/" + "/".join(p for p in (ns, arg("node_name")) if p)]
    replay = ExecuteProcess(cmd=cmd, output="screen", name="ros3d_replay")
    actions.append(replay)
    actions.append(RegisterEventHandler(OnProcessExit(target_action=replay,
                                                      on_exit=[EmitEvent(event=Shutdown(reason="replay evaluation finished"))])))
    return actions


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        DeclareLaunchArgument("mode", default_value="realtime", description="realtime (node + player + action) or offline (deterministic)"),
        DeclareLaunchArgument("bag", default_value="", description="rosbag2 directory to replay"),
        DeclareLaunchArgument("questions", default_value="", description="annotation JSONL: questions + ground truth (+ ask_at)"),
        DeclareLaunchArgument("out", default_value="", description="output directory (results.jsonl, summary.json, BEV)"),
        DeclareLaunchArgument("scenario", default_value="", description="optional scenario YAML (launch arguments win)"),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback speed"),
        DeclareLaunchArgument("fixed_frame", default_value="map", description="frame of the ground-truth boxes (= the node's fixed_frame)"),
        DeclareLaunchArgument("namespace", default_value="", description="ROS namespace of the node"),
        DeclareLaunchArgument("node_name", default_value="ros3d_agent", description="ROS node name"),
        DeclareLaunchArgument("config", default_value="workstation",
                              description="node params file: a name in share/ros3d_agent/config or a path"),
        DeclareLaunchArgument("checkpoint", default_value="", description="local checkpoint directory"),
        DeclareLaunchArgument("preset", default_value="", description="random-init preset for plumbing runs, e.g. tiny"),
        DeclareLaunchArgument("allow_random_weights", default_value="false", description="required with preset"),
        DeclareLaunchArgument("device", default_value="", description="torch device override: cpu, cuda, cuda:N"),
        DeclareLaunchArgument("log_level", default_value="info", description="ROS log level of the node"),
        *[DeclareLaunchArgument(name, default_value=default, description=f"topic in the bag for {default}")
          for name, (_option, default) in TOPIC_OPTIONS.items()],
        OpaqueFunction(function=_setup),
    ])
