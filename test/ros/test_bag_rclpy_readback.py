"""An exported bag as real ROS 2 sees it: raw CDR from the bag deserialised by rclpy into the
sensor_msgs classes of the ROS wheels, decoded with ros3d_agent.ros.image_codec, and compared with
the scene directory's own files; the bag's type hashes compared with the ones the wheels ship.

This is the check that the rosbags-side serialisation (scene/, no rclpy) matches what a ROS 2 node
(or ``ros2 bag play``, which republishes the same bytes) will decode. No DDS participant is created.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from rclpy.serialization import deserialize_message
from rosbags.highlevel import AnyReader
from sensor_msgs.msg import CameraInfo, Image

from ros3d_agent.ros.image_codec import image_to_depth_m, image_to_numpy, image_to_rgb
from ros3d_agent.scene import Frame, SceneDir
from ros3d_agent.scene.bag_export import BagExportConfig, export_scene_to_bag
from ros3d_agent.scene.robot_frames import R_LINK_OPTICAL, CameraTopics

H, W = 48, 64
K = np.array([[50.0, 0.0, 31.5], [0.0, 50.5, 23.5], [0.0, 0.0, 1.0]])
N_FRAMES = 3


def _pose(i: int) -> np.ndarray:
    c, s = math.cos(0.5 * i), math.sin(0.5 * i)
    T = np.eye(4)
    T[:3, :3] = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ R_LINK_OPTICAL
    T[:3, 3] = [0.4 * i, -0.2 * i, 1.3]
    return T


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> SceneDir:
    sd = SceneDir.create(tmp_path_factory.mktemp("rclpy_scene") / "scene0007_00", K)
    rng = np.random.default_rng(3)
    for i in range(N_FRAMES):
        rgb = rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)
        depth = (rng.integers(1, 12000, size=(H, W)) / 1000.0).astype(np.float32)
        depth[rng.random((H, W)) < 0.15] = 0.0
        sd.write_frame(i, Frame(rgb=rgb, depth=depth, K=K, T_world_cam=_pose(i)))
    return sd


def _raw_messages(bag: Path, topic: str) -> list[bytes]:
    with AnyReader([bag]) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        return [bytes(raw) for _, _, raw in reader.messages(connections=conns)]


def _jpeg_rgb(scene: SceneDir, i: int) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(scene.path / f"{i:05d}.jpg"), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _png_mm(scene: SceneDir, i: int) -> np.ndarray:
    return cv2.imread(str(scene.path / f"{i:05d}.png"), cv2.IMREAD_UNCHANGED)


@pytest.mark.parametrize("color_encoding, depth_format", [("rgb8", "16UC1"), ("bgr8", "32FC1")])
def test_rclpy_decodes_exported_images(scene, tmp_path, color_encoding, depth_format):
    bag = tmp_path / "bag"
    export_scene_to_bag(scene, bag, BagExportConfig(color_encoding=color_encoding, depth_format=depth_format), progress=False)
    topics = CameraTopics()

    colors = [deserialize_message(raw, Image) for raw in _raw_messages(bag, topics.color_image)]
    depths = [deserialize_message(raw, Image) for raw in _raw_messages(bag, topics.depth_image)]
    assert len(colors) == len(depths) == N_FRAMES
    for i, (c, d) in enumerate(zip(colors, depths, strict=True)):
        assert type(c) is Image and c.encoding == color_encoding and (c.height, c.width) == (H, W)
        assert c.header.frame_id == d.header.frame_id == "camera_color_optical_frame"
        assert (c.header.stamp.sec, c.header.stamp.nanosec) == (d.header.stamp.sec, d.header.stamp.nanosec)
        np.testing.assert_array_equal(image_to_rgb(c), _jpeg_rgb(scene, i))

        mm = _png_mm(scene, i)
        assert d.encoding == depth_format
        if depth_format == "16UC1":
            raw = image_to_numpy(d)
            assert raw.dtype == np.uint16
            np.testing.assert_array_equal(raw, mm)  # pixel-exact millimetres
        else:
            assert np.isnan(image_to_numpy(d)[mm == 0]).all()
        np.testing.assert_array_equal(image_to_depth_m(d), mm.astype(np.float32) / np.float32(1000.0))


def test_rclpy_decodes_camera_info(scene, tmp_path):
    bag = tmp_path / "bag"
    export_scene_to_bag(scene, bag, progress=False)
    topics = CameraTopics()
    for topic in (topics.color_info, topics.depth_info):
        infos = [deserialize_message(raw, CameraInfo) for raw in _raw_messages(bag, topic)]
        assert len(infos) == N_FRAMES
        for ci in infos:
            assert (ci.height, ci.width, ci.distortion_model) == (H, W, "plumb_bob")
            assert ci.header.frame_id == "camera_color_optical_frame"
            np.testing.assert_array_equal(np.asarray(ci.k).reshape(3, 3), K)
            np.testing.assert_array_equal(np.asarray(ci.p).reshape(3, 4)[:, :3], K)
            np.testing.assert_array_equal(np.asarray(ci.r).reshape(3, 3), np.eye(3))
            assert list(ci.d) == [0.0] * 5


def test_bag_type_hashes_equal_the_ros_wheels(scene, tmp_path):
    """ros2 bag checks ``type_description_hash``; ours must equal the hashes the installed interfaces declare."""
    bag = tmp_path / "bag"
    export_scene_to_bag(scene, bag, progress=False)
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    share = Path(sys.prefix) / "share"  # where the ROS wheels install their interface descriptions
    checked = 0
    for entry in meta["topics_with_message_count"]:
        tm = entry["topic_metadata"]
        pkg, _, name = tm["type"].split("/")
        desc = share / pkg / "msg" / f"{name}.json"
        if not desc.is_file():
            continue
        hashes = {h["type_name"]: h["hash_string"] for h in json.loads(desc.read_text())["type_hashes"]}
        assert tm["type_description_hash"] == hashes[tm["type"]], tm["name"]
        checked += 1
    # two Image and two CameraInfo topics, plus /tf and /tf_static where tf2_msgs is built (scripts/setup.sh)
    assert checked == (6 if (share / "tf2_msgs" / "msg" / "TFMessage.json").is_file() else 4)
