"""ament_python package definition for ros3d_agent.

The same file serves a colcon build against a system ROS 2 install (launch/config/interfaces
land in share/ros3d_agent, executables in lib/ros3d_agent) and a pip install into the
project's venv (console scripts in the venv's bin/).
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "ros3d_agent"


def _files(pattern: str) -> list[str]:
    return sorted(p for p in glob(pattern) if not p.endswith("__pycache__"))


setup(
    name=PACKAGE,
    version="0.1.0",
    description="Grounded 3D question answering for ROS 2 robots with a 3D-aware multimodal LLM",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*", "training", "training.*"]),
    include_package_data=True,
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", _files("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", _files("config/*.yaml") + _files("config/*.xml") + _files("config/*.rviz")),
        (f"share/{PACKAGE}/msg", _files("msg/*.msg")),
        (f"share/{PACKAGE}/srv", _files("srv/*.srv")),
        (f"share/{PACKAGE}/action", _files("action/*.action")),
    ],
    # ROS (rclpy, message packages) comes from the ROS install or the ros-* wheels and is
    # deliberately not listed: a training machine needs none of it.
    install_requires=[
        "numpy>=1.24",
        "scipy>=1.10",
        "opencv-python-headless>=4.8",
        "Pillow>=10",
        "PyYAML>=6",
        "tqdm>=4.60",
        "safetensors>=0.4",
        "tokenizers>=0.19",
        "torch>=2.4",
        "transformers>=4.45",
        "diffusers>=0.30",
        "accelerate>=1.0",
        "peft>=0.12",
        "rosbags>=0.10",
        "mcap>=1.1",
    ],
    extras_require={"test": ["pytest>=8", "pytest-timeout"]},
    entry_points={
        "console_scripts": [
            "ros3d-agent = ros3d_agent.cli:main",
            "ros3d_agent_roundtrip_echo = ros3d_agent.ros.roundtrip:echo_main",
            "ros3d_agent_node = ros3d_agent.ros.node_main:main",
        ],
    },
    zip_safe=False,
)
