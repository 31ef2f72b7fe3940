"""Shared data of the replay tests: one tiny synthetic room, its questions, and real bags of it.

Everything is made by the project's own tools (synthetic generator, annotator, ``scenes to-bag``
export), once per test session: a standard bag (RealSense topic names, rgb8, 16UC1, map frame)
and a "robot" bag with other topic names, bgr8 colour, 32FC1 depth and its own TF frame names.
The room is 160×120 with 24 frames (2.3 s at 10 Hz; about 2.3 MB, so an MCAP file has several
chunks and a truncated one still holds complete ones): a whole replay costs seconds on two cores.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from replay_support import ROBOT_FIXED_FRAME, ReplayData, write_questions  # noqa: E402


@pytest.fixture(scope="session")
def replay_data(tmp_path_factory) -> ReplayData:
    from ros3d_agent.scene.bag_export import BagExportConfig, export_scene_to_bag
    from ros3d_agent.scene.robot_frames import RobotFrames, SimulatedRobot
    from ros3d_agent.scene.synthetic.generate import GenerateConfig, generate_scene

    root = tmp_path_factory.mktemp("replay_data")
    summary = generate_scene(3, root / "scenes", GenerateConfig(frames=24, width=160, height=120, noise=False))
    scene = Path(summary.path)
    questions = root / "questions.jsonl"
    n = write_questions(scene, questions)
    export_scene_to_bag(scene, root / "bag", BagExportConfig(rate_hz=10.0), progress=False)
    robot = SimulatedRobot(frames=RobotFrames(map=ROBOT_FIXED_FRAME, odom="odom_wheels", base="base_footprint",
                                              camera_link="head_link", color_optical="head_rgb_optical"))
    export_scene_to_bag(scene, root / "robot_bag", BagExportConfig(rate_hz=10.0, topic_prefix="/head_cam", color_encoding="bgr8",
                                                                   depth_format="32FC1", robot=robot), progress=False)
    return ReplayData(scene, questions, root / "bag", root / "robot_bag", n)
