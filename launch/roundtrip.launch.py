"""Start the round-trip echo peer on a real ROS 2 install (`ros2 launch ros3d_agent roundtrip.launch.py`).

Then, from a sourced shell: `ros3d-agent roundtrip` is the client side. ROS 2's `launch` is
not installable from PyPI, so this file is for robots and workstations with ROS 2 from apt;
in the project's venv the same processes are started by `ros3d-agent roundtrip` itself.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the echo node"),
        Node(
            package="ros3d_agent",
            executable="ros3d_agent_roundtrip_echo",
            name="ros3d_roundtrip_echo",
            namespace=LaunchConfiguration("namespace"),
            output="screen",
        ),
    ])
