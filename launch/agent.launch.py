"""Start the ros3d_agent lifecycle node and bring it to ACTIVE (a real ROS 2 install).

    ros2 launch ros3d_agent agent.launch.py checkpoint:=/models/ros3d-small
    ros2 launch ros3d_agent agent.launch.py config:=jetson_orin namespace:=robot1 \\
        color_topic:=/head_camera/color/image_raw use_sim_time:=true

The node loads its model on *activate*; this file emits CONFIGURE at start and ACTIVATE once the
node reports INACTIVE (set autostart:=false to leave the transitions to a lifecycle manager).
Nothing is downloaded at launch: ``checkpoint`` must be a local directory.

ROS 2 ``launch`` is not installable beside the PyPI wheels; there, ``ros3d-agent run`` performs the
same start-up (same config names, remaps and overrides: ros3d_agent/ros/run_command.py).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition

PACKAGE = "ros3d_agent"
EXECUTABLE = "ros3d_agent_node"

#: launch argument -> the topic the node subscribes to by default (remapped to the argument's value)
TOPIC_ARGUMENTS = {
    "color_topic": "/camera/color/image_raw",
    "depth_topic": "/camera/aligned_depth_to_color/image_raw",
    "color_info_topic": "/camera/color/camera_info",
    "depth_info_topic": "/camera/aligned_depth_to_color/camera_info",
}


def _config_path(config: str) -> str:
    """A bare name is share/ros3d_agent/config/<name>.yaml; anything with a separator is a path."""
    if os.sep in config:
        path = config
    else:
        name = config if config.endswith(".yaml") else f"{config}.yaml"
        path = os.path.join(get_package_share_directory(PACKAGE), "config", name)
    if not os.path.isfile(path):
        raise RuntimeError(f"ros3d_agent: config {config!r} not found ({path})")
    return path


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def _node_and_transitions(context, *_args, **_kwargs):
    arg = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    overrides = {"use_sim_time": _truthy(arg("use_sim_time"))}
    if arg("checkpoint"):
        overrides["model.checkpoint"] = arg("checkpoint")
        overrides["model.preset"] = ""
    elif arg("preset"):
        overrides["model.preset"] = arg("preset")
        overrides["model.allow_random_weights"] = _truthy(arg("allow_random_weights"))
    if arg("device"):
        overrides["model.device"] = arg("device")
    node = LifecycleNode(
        package=PACKAGE,
        executable=EXECUTABLE,
        name=arg("node_name"),
        namespace=arg("namespace"),
        output="screen",
        emulate_tty=True,
        parameters=[_config_path(arg("config")), overrides],
        remappings=[(default, arg(name)) for name, default in TOPIC_ARGUMENTS.items() if arg(name) != default],
        ros_arguments=["--log-level", arg("log_level")],
    )
    if not _truthy(arg("autostart")):
        return [node]
    activate_when_inactive = RegisterEventHandler(
        OnStateTransition(
            target_lifecycle_node=node,
            start_state="configuring",
            goal_state="inactive",
            entities=[EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                                  transition_id=Transition.TRANSITION_ACTIVATE))],
        )
    )
    configure = EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                            transition_id=Transition.TRANSITION_CONFIGURE))
    return [node, activate_when_inactive, configure]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        DeclareLaunchArgument("namespace", default_value="", description="ROS namespace of the node"),
        DeclareLaunchArgument("node_name", default_value="ros3d_agent", description="ROS node name"),
        DeclareLaunchArgument("config", default_value="workstation",
                              description="params file: a name in share/ros3d_agent/config (workstation, jetson_orin) or a path"),
        DeclareLaunchArgument("checkpoint", default_value="", description="local checkpoint directory (model.checkpoint)"),
        DeclareLaunchArgument("preset", default_value="", description="random-init preset for plumbing tests (model.preset), e.g. tiny"),
        DeclareLaunchArgument("allow_random_weights", default_value="false", description="required with preset"),
        DeclareLaunchArgument("device", default_value="", description="torch device override (model.device): cpu, cuda, cuda:N"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock (bag replay with --clock)"),
        DeclareLaunchArgument("autostart", default_value="true", description="configure and activate the node at launch"),
        *[DeclareLaunchArgument(name, default_value=default, description=f"remap of {default}") for name, default in TOPIC_ARGUMENTS.items()],
        DeclareLaunchArgument("log_level", default_value="info", description="ROS log level"),
        OpaqueFunction(function=_node_and_transitions),
    ])
