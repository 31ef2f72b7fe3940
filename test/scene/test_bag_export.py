"""Bag export on a tiny scene directory written here: read the bag back with rosbags and mcap and
check every promise (topics, types, counts, pixels, depth, CameraInfo, TF chain, timing, QoS,
determinism, options and errors). No rclpy: the rclpy read-back lives in test/ros/.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from rosbags.highlevel import AnyReader
from rosbags.interfaces import QosDurability, QosReliability
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore
from scipy.spatial.transform import Rotation

from ros3d_agent.cli import main as cli_main
from ros3d_agent.scene import Frame, SceneDir, SceneDirError
from ros3d_agent.scene.bag_export import (
    DEFAULT_START_TIME_NS,
    BagExportConfig,
    BagExportError,
    compose_tf,
    decompose_camera_pose,
    export_scene_to_bag,
    tf_edges_from_message,
)
from ros3d_agent.scene.robot_frames import Q_LINK_OPTICAL, R_LINK_OPTICAL, CameraTopics, RobotFrames, SimulatedRobot

H, W = 48, 64
K = np.array([[52.0, 0.0, 31.5], [0.0, 53.0, 23.5], [0.0, 0.0, 1.0]])
TOPICS = CameraTopics()
NAMES = RobotFrames()
TS = get_typestore(Stores.ROS2_KILTED)


def camera_pose(yaw: float, tilt: float, roll: float, xyz) -> np.ndarray:
    """Camera-to-world (optical) pose of a head at ``xyz`` looking along ``yaw``, pitched down by ``tilt``."""
    R_body = Rotation.from_euler("ZYX", [yaw, tilt, roll]).as_matrix()  # x forward, y left, z up
    T = np.eye(4)
    T[:3, :3] = R_body @ R_LINK_OPTICAL
    T[:3, 3] = xyz
    return T


POSES = [
    camera_pose(0.3, 0.2, 0.0, [1.0, -2.0, 1.35]),
    camera_pose(2.9, -0.1, 0.05, [1.4, -1.7, 1.10]),
    camera_pose(-3.0, 0.6, -0.1, [-0.5, 0.8, 0.95]),  # yaw wraps past ±pi
    camera_pose(1.0, math.pi / 2, 0.0, [0.2, 0.3, 1.50]),  # straight down: no horizontal optical axis
]


def make_frame(i: int) -> Frame:
    rng = np.random.default_rng(i)
    v, u = np.mgrid[0:H, 0:W]
    rgb = np.dstack([u * 4, v * 5, np.full((H, W), 30 * i)]).astype(np.uint8)
    rgb[rng.random((H, W)) < 0.05] = 255  # some texture, so a JPEG is not trivially flat
    depth = (rng.integers(250, 9000, size=(H, W)) / 1000.0).astype(np.float32)
    depth[rng.random((H, W)) < 0.1] = 0.0
    return Frame(rgb=rgb, depth=depth, K=K, T_world_cam=POSES[i], frame_id=f"{i:05d}")


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> SceneDir:
    sd = SceneDir.create(tmp_path_factory.mktemp("scenes") / "scene0042_00", K)
    for i in range(len(POSES)):
        sd.write_frame(i, make_frame(i))
    return sd


@pytest.fixture(scope="module")
def bag(scene, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bags") / "default_bag"
    export_scene_to_bag(scene, out, progress=False)
    return out


def read_all(path: Path):
    """[(topic, log_ns, raw bytes, msg)] in file order, plus the connections."""
    with AnyReader([path], default_typestore=TS) as r:
        msgs = [(c.topic, t, bytes(raw), r.deserialize(raw, c.msgtype)) for c, t, raw in r.messages()]
        return msgs, list(r.connections)


def bag_metadata(path: Path) -> dict:
    return yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]


def stamp_ns(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def scene_rgb(scene: SceneDir, i: int) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(scene.path / f"{i:05d}.jpg"), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def scene_depth_mm(scene: SceneDir, i: int) -> np.ndarray:
    return cv2.imread(str(scene.path / f"{i:05d}.png"), cv2.IMREAD_UNCHANGED)


# --------------------------------------------------------------------------------------------------
# Contents
# --------------------------------------------------------------------------------------------------
def test_topics_types_counts_and_metadata(bag):
    msgs, conns = read_all(bag)
    types = {c.topic: c.msgtype for c in conns}
    assert types == {
        "/tf_static": "tf2_msgs/msg/TFMessage",
        "/tf": "tf2_msgs/msg/TFMessage",
        "/camera/color/image_raw": "sensor_msgs/msg/Image",
        "/camera/color/camera_info": "sensor_msgs/msg/CameraInfo",
        "/camera/aligned_depth_to_color/image_raw": "sensor_msgs/msg/Image",
        "/camera/aligned_depth_to_color/camera_info": "sensor_msgs/msg/CameraInfo",
    }
    counts = {t: sum(1 for m in msgs if m[0] == t) for t in types}
    n = len(POSES)
    assert counts == {"/tf_static": 1, "/tf": 3 * n, TOPICS.color_image: n, TOPICS.color_info: n,
                      TOPICS.depth_image: n, TOPICS.depth_info: n}
    assert all(c.ext.serialization_format == "cdr" for c in conns)
    meta = bag_metadata(bag)
    assert meta["version"] == 9 and meta["storage_identifier"] == "mcap"
    hashes = {tm["topic_metadata"]["name"]: tm["topic_metadata"]["type_description_hash"]
              for tm in meta["topics_with_message_count"]}
    custom = meta["custom_data"]
    assert all(hashes[c.topic] == TS.hash_rihs01(c.msgtype) for c in conns)
    assert hashes["/tf"].startswith("RIHS01_e369d0f0")  # the real tf2_msgs/TFMessage hash
    assert custom["ros3d_agent.scene_id"] == "scene0042_00"
    assert json.loads(custom["ros3d_agent.export_config"])["depth_format"] == "16UC1"


def test_tf_static_is_latched_and_holds_the_optical_rotation(bag):
    msgs, conns = read_all(bag)
    qos = {c.topic: c.ext.offered_qos_profiles for c in conns}
    assert [q.durability for q in qos["/tf_static"]] == [QosDurability.TRANSIENT_LOCAL]
    for topic in qos:
        assert [q.reliability for q in qos[topic]] == [QosReliability.RELIABLE]
        if topic != "/tf_static":
            assert [q.durability for q in qos[topic]] == [QosDurability.VOLATILE]
    # written once, before anything else, stamped at the start
    assert msgs[0][0] == "/tf_static" and sum(m[0] == "/tf_static" for m in msgs) == 1
    (tr,) = msgs[0][3].transforms
    assert (tr.header.frame_id, tr.child_frame_id) == ("camera_link", "camera_color_optical_frame")
    assert stamp_ns(tr.header) == DEFAULT_START_TIME_NS == msgs[0][1]
    r = tr.transform.rotation
    assert (r.x, r.y, r.z, r.w) == Q_LINK_OPTICAL
    t = tr.transform.translation
    assert (t.x, t.y, t.z) == (0.0, 0.0, 0.0)
    # the rotation maps optical z (forward) to link x, optical x (right) to link -y, optical y (down) to link -z
    R = Rotation.from_quat(Q_LINK_OPTICAL).as_matrix()
    np.testing.assert_allclose(R @ [0, 0, 1], [1, 0, 0], atol=1e-15)
    np.testing.assert_allclose(R @ [1, 0, 0], [0, -1, 0], atol=1e-15)
    np.testing.assert_allclose(R @ [0, 1, 0], [0, 0, -1], atol=1e-15)


def test_images_and_depth_are_exact(bag, scene):
    msgs, _ = read_all(bag)
    colors = [m[3] for m in msgs if m[0] == TOPICS.color_image]
    depths = [m[3] for m in msgs if m[0] == TOPICS.depth_image]
    for i, (c, d) in enumerate(zip(colors, depths, strict=True)):
        assert (c.encoding, c.height, c.width, c.step, c.is_bigendian) == ("rgb8", H, W, 3 * W, 0)
        np.testing.assert_array_equal(c.data.reshape(H, W, 3), scene_rgb(scene, i))
        assert (d.encoding, d.height, d.width, d.step, d.is_bigendian) == ("16UC1", H, W, 2 * W, 0)
        mm = d.data.view("<u2").reshape(H, W)
        np.testing.assert_array_equal(mm, scene_depth_mm(scene, i))
        assert (mm == 0).any() and mm.max() > 1000
        assert c.header.frame_id == d.header.frame_id == "camera_color_optical_frame"


def test_camera_info(bag):
    msgs, _ = read_all(bag)
    for topic in (TOPICS.color_info, TOPICS.depth_info):
        infos = [m[3] for m in msgs if m[0] == topic]
        assert len(infos) == len(POSES)
        for ci in infos:
            assert (ci.height, ci.width, ci.distortion_model) == (H, W, "plumb_bob")
            assert ci.header.frame_id == "camera_color_optical_frame"
            np.testing.assert_array_equal(ci.k.reshape(3, 3), K)
            np.testing.assert_array_equal(ci.p.reshape(3, 4), np.hstack([K, np.zeros((3, 1))]))
            np.testing.assert_array_equal(ci.r.reshape(3, 3), np.eye(3))
            np.testing.assert_array_equal(ci.d, np.zeros(5))


def test_stamps_and_log_order(bag):
    msgs, _ = read_all(bag)
    logs = [m[1] for m in msgs]
    assert logs == sorted(logs), "messages must be written in log-time order"
    image_stamps = [stamp_ns(m[3].header) for m in msgs if m[0] == TOPICS.color_image]
    period = 1e9 / 30.0
    assert image_stamps == [DEFAULT_START_TIME_NS + round(i * period) for i in range(len(POSES))]
    for topic in (TOPICS.color_info, TOPICS.depth_image, TOPICS.depth_info):
        assert [stamp_ns(m[3].header) for m in msgs if m[0] == topic] == image_stamps
    # each image is logged after its stamp; TF for a stamp is logged after every camera message of that stamp
    cam_topics = {TOPICS.color_image, TOPICS.color_info, TOPICS.depth_image, TOPICS.depth_info}
    for stamp in image_stamps:
        cam_logs = [m[1] for m in msgs if m[0] in cam_topics and stamp_ns(m[3].header) == stamp]
        tf_logs = [m[1] for m in msgs if m[0] == "/tf" and stamp_ns(m[3].transforms[0].header) == stamp]
        assert len(cam_logs) == 4 and len(tf_logs) == 3
        assert min(cam_logs) > stamp
        assert min(tf_logs) > max(cam_logs)


def test_tf_chain_reproduces_every_pose(bag):
    msgs, _ = read_all(bag)
    static = tf_edges_from_message(msgs[0][3])
    dynamic: dict[int, dict] = {}
    for topic, _, _, msg in msgs:
        if topic == "/tf":
            for child, (parent, stamp, T) in tf_edges_from_message(msg).items():
                dynamic.setdefault(stamp, {})[child] = (parent, T)
    image_stamps = [stamp_ns(m[3].header) for m in msgs if m[0] == TOPICS.color_image]
    assert sorted(dynamic) == image_stamps
    for i, stamp in enumerate(image_stamps):
        edges = {child: (parent, T) for child, (parent, _, T) in static.items()}
        edges.update(dynamic[stamp])
        assert {c: p for c, (p, _) in edges.items()} == {
            "odom": "map", "base_link": "odom", "camera_link": "base_link", "camera_color_optical_frame": "camera_link"}
        T = compose_tf(edges, "map", "camera_color_optical_frame")
        np.testing.assert_allclose(T, POSES[i], atol=1e-6)
        assert np.abs(T - POSES[i]).max() < 1e-12
        # odometry is planar, map->odom is a small drift, the head sits above the base
        odom_base = edges["base_link"][1]
        assert odom_base[2, 3] == 0.0 and np.allclose(odom_base[2, :3], [0, 0, 1]) and np.allclose(odom_base[:3, 2], [0, 0, 1])
        map_odom = edges["odom"][1]
        assert np.linalg.norm(map_odom[:3, 3]) < 0.01 and np.allclose(map_odom[2, :3], [0, 0, 1])
        head = edges["camera_link"][1]
        np.testing.assert_allclose(head[2, 3], POSES[i][2, 3], atol=1e-12)
    # drift changes with time (otherwise a wrong-time lookup would go unnoticed)
    first, last = dynamic[image_stamps[0]]["odom"][1], dynamic[image_stamps[-1]]["odom"][1]
    assert not np.allclose(first, last, atol=1e-6)


def test_mcap_reader_sees_ros2_profile_channels_and_schemas(bag):
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    (mcap_file,) = bag.glob("*.mcap")
    with open(mcap_file, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        assert reader.get_header().profile == "ros2"
        summary = reader.get_summary()
        schemas = {s.id: s for s in summary.schemas.values()}
        chans = {c.topic: c for c in summary.channels.values()}
        assert set(chans) == {"/tf", "/tf_static", TOPICS.color_image, TOPICS.color_info, TOPICS.depth_image, TOPICS.depth_info}
        for c in chans.values():
            assert c.message_encoding == "cdr"
            assert schemas[c.schema_id].encoding == "ros2msg"
        assert schemas[chans["/tf"].schema_id].name == "tf2_msgs/msg/TFMessage"
        assert "durability: transient_local" in chans["/tf_static"].metadata["offered_qos_profiles"]
        assert "durability: volatile" in chans["/tf"].metadata["offered_qos_profiles"]
        assert summary.statistics.channel_message_counts[chans["/tf"].id] == 3 * len(POSES)
        infos = [m for _, ch, _, m in reader.iter_decoded_messages(topics=[TOPICS.color_info])]
    assert len(infos) == len(POSES)
    assert list(infos[0].k) == K.reshape(-1).tolist()


def test_payloads_are_deterministic(scene, bag, tmp_path):
    again = tmp_path / "again"
    export_scene_to_bag(scene, again, progress=False)
    a, _ = read_all(bag)
    b, _ = read_all(again)
    assert [(t, log, raw) for t, log, raw, _ in a] == [(t, log, raw) for t, log, raw, _ in b]


# --------------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------------
def test_32fc1_bgr8_prefix_rate_and_start(scene, tmp_path):
    cfg = BagExportConfig(depth_format="32FC1", color_encoding="bgr8", topic_prefix="/head_cam",
                          rate_hz=10.0, start_time_ns=5_000_000_000)
    export_scene_to_bag(scene, tmp_path / "b", cfg, progress=False)
    msgs, conns = read_all(tmp_path / "b")
    assert {c.topic for c in conns} >= {"/head_cam/color/image_raw", "/head_cam/aligned_depth_to_color/image_raw",
                                        "/head_cam/color/camera_info", "/head_cam/aligned_depth_to_color/camera_info"}
    colors = [m[3] for m in msgs if m[0] == "/head_cam/color/image_raw"]
    depths = [m[3] for m in msgs if m[0] == "/head_cam/aligned_depth_to_color/image_raw"]
    assert [stamp_ns(c.header) for c in colors] == [5_000_000_000 + 100_000_000 * i for i in range(len(POSES))]
    for i, (c, d) in enumerate(zip(colors, depths, strict=True)):
        assert c.encoding == "bgr8"
        np.testing.assert_array_equal(c.data.reshape(H, W, 3)[:, :, ::-1], scene_rgb(scene, i))
        assert (d.encoding, d.step) == ("32FC1", 4 * W)
        m = d.data.view("<f4").reshape(H, W)
        mm = scene_depth_mm(scene, i)
        assert np.array_equal(np.isnan(m), mm == 0), "REP 118: invalid float depth is NaN"
        np.testing.assert_array_equal(m[mm > 0], (mm[mm > 0].astype(np.float32) / np.float32(1000.0)))


def test_sqlite3_storage(scene, tmp_path):
    export_scene_to_bag(scene, tmp_path / "db", BagExportConfig(storage="sqlite3"), progress=False)
    assert list((tmp_path / "db").glob("*.db3"))
    assert bag_metadata(tmp_path / "db")["storage_identifier"] == "sqlite3"
    with Reader(tmp_path / "db") as r:
        assert r.message_count == 1 + 7 * len(POSES)
        static = [c for c in r.connections if c.topic == "/tf_static"][0]
        assert static.ext.offered_qos_profiles[0].durability == QosDurability.TRANSIENT_LOCAL


def test_long_tf_delay_still_interleaves_in_log_order(scene, tmp_path):
    """TF later than one frame period lands after the next frame's images, not out of order."""
    cfg = BagExportConfig(rate_hz=100.0, image_delay_ns=1_000_000, tf_delay_ns=25_000_000)
    export_scene_to_bag(scene, tmp_path / "late", cfg, progress=False)
    msgs, _ = read_all(tmp_path / "late")
    logs = [m[1] for m in msgs]
    assert logs == sorted(logs)
    second_image = [m[1] for m in msgs if m[0] == TOPICS.color_image][1]
    first_tf = next(m[1] for m in msgs if m[0] == "/tf")
    assert first_tf > second_image


# --------------------------------------------------------------------------------------------------
# Decomposition
# --------------------------------------------------------------------------------------------------
def test_decompose_random_poses_compose_back():
    rng = np.random.default_rng(7)
    robot = SimulatedRobot()
    for k in range(200):
        T = np.eye(4)
        T[:3, :3] = Rotation.random(random_state=k).as_matrix()
        T[:3, 3] = rng.uniform(-20, 20, 3)
        chain = decompose_camera_pose(T, float(rng.uniform(0, 600)), robot)
        assert np.abs(chain.compose() - T).max() < 1e-9
        assert chain.odom_base[2, 3] == 0.0
        np.testing.assert_allclose(chain.odom_base[:3, 2], [0, 0, 1], atol=1e-15)


def test_decompose_puts_the_base_under_a_level_camera():
    T = camera_pose(0.7, 0.0, 0.0, [3.0, 4.0, 1.2])
    chain = decompose_camera_pose(T, 0.0)  # no drift at t = 0
    np.testing.assert_allclose(chain.map_odom, np.eye(4), atol=1e-15)
    # head 0.10 m ahead of the base centre, no pan, no tilt
    np.testing.assert_allclose(chain.base_camera_link, [[1, 0, 0, 0.10], [0, 1, 0, 0], [0, 0, 1, 1.2], [0, 0, 0, 1]], atol=1e-12)
    yaw = math.atan2(chain.odom_base[1, 0], chain.odom_base[0, 0])
    assert yaw == pytest.approx(0.7)


def test_decompose_rejects_bad_pose():
    with pytest.raises(BagExportError, match="finite 4x4"):
        decompose_camera_pose(np.full((4, 4), np.nan), 0.0)


def test_compose_tf_errors():
    edges = {"b": ("a", np.eye(4)), "d": ("c", np.eye(4))}
    with pytest.raises(BagExportError, match="not connected"):
        compose_tf(edges, "a", "d")


# --------------------------------------------------------------------------------------------------
# Errors and skipped frames
# --------------------------------------------------------------------------------------------------
def test_missing_scene_dir(tmp_path):
    with pytest.raises(SceneDirError, match="does not exist"):
        export_scene_to_bag(tmp_path / "nope", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_refuses_existing_output_unless_overwrite(scene, tmp_path):
    out = tmp_path / "bag"
    export_scene_to_bag(scene, out, progress=False)
    with pytest.raises(BagExportError, match="already exists"):
        export_scene_to_bag(scene, out, progress=False)
    res = export_scene_to_bag(scene, out, BagExportConfig(overwrite=True, depth_format="32FC1"), progress=False)
    assert res.frames_written == len(POSES)
    msgs, _ = read_all(out)
    assert next(m[3].encoding for m in msgs if m[0] == TOPICS.depth_image) == "32FC1"
    assert [p.name for p in tmp_path.iterdir()] == ["bag"], "no staging leftovers"


def test_overwrite_never_deletes_a_non_bag(scene, tmp_path):
    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "thesis.tex").write_text("x")
    with pytest.raises(BagExportError, match="does not look like a rosbag2"):
        export_scene_to_bag(scene, precious, BagExportConfig(overwrite=True), progress=False)
    assert (precious / "thesis.tex").read_text() == "x"


def test_nan_pose_frames_are_skipped_and_counted(tmp_path):
    sd = SceneDir.create(tmp_path / "scene_lost", K)
    for i in range(len(POSES)):
        sd.write_frame(i, make_frame(i))
    (sd.path / "00001.txt").write_text("nan nan nan nan\n" * 4)
    res = export_scene_to_bag(sd, tmp_path / "bag", progress=False)
    assert (res.frames_written, res.frames_total) == (len(POSES) - 1, len(POSES))
    assert res.skipped == {"nonfinite_pose": 1} and res.skipped_frames == {"00001": "nonfinite_pose"}
    msgs, _ = read_all(tmp_path / "bag")
    stamps = [stamp_ns(m[3].header) for m in msgs if m[0] == TOPICS.color_image]
    period = 1e9 / 30
    # the lost frame leaves a gap in time, as a dropped frame would
    assert stamps == [DEFAULT_START_TIME_NS + round(i * period) for i in (0, 2, 3)]
    assert sum(m[0] == "/tf" for m in msgs) == 3 * (len(POSES) - 1)
    custom = bag_metadata(tmp_path / "bag")["custom_data"]
    assert json.loads(custom["ros3d_agent.skipped_frames"]) == {"00001": "nonfinite_pose"}


def test_no_usable_frame_is_an_error_and_leaves_nothing(tmp_path):
    sd = SceneDir.create(tmp_path / "scene_bad", K)
    sd.write_frame(0, make_frame(0))
    (sd.path / "00000.txt").write_text("-inf -inf -inf -inf\n" * 4)
    with pytest.raises(BagExportError, match="none of the 1 frames is usable.*nonfinite_pose"):
        export_scene_to_bag(sd, tmp_path / "bag", progress=False)
    empty = SceneDir.create(tmp_path / "scene_empty", K)
    with pytest.raises(BagExportError, match="no frames"):
        export_scene_to_bag(empty, tmp_path / "bag", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene_bad", "scene_empty"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"rate_hz": 0.0}, "rate_hz"),
        ({"rate_hz": float("nan")}, "rate_hz"),
        ({"depth_format": "16SC1"}, "depth_format"),
        ({"color_encoding": "rgba8"}, "color_encoding"),
        ({"storage": "bag"}, "storage"),
        ({"topic_prefix": "camera"}, "topic_prefix"),
        ({"topic_prefix": "/camera/"}, "topic_prefix"),
        ({"tf_delay_ns": 1_000, "image_delay_ns": 2_000}, "tf_delay_ns"),
        ({"start_time_ns": -1}, "start_time_ns"),
        ({"start_time_ns": 2**31 * 10**9}, "builtin_interfaces"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(BagExportError, match=match):
        BagExportConfig(**kwargs)


def test_export_does_not_import_rclpy(scene, tmp_path):
    """scene/ must work on a training box without ROS: the whole export runs with rclpy unimported."""
    code = (
        "import sys\n"
        "from ros3d_agent.scene.bag_export import export_scene_to_bag\n"
        f"export_scene_to_bag({str(scene.path)!r}, {str(tmp_path / 'b')!r}, progress=False)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('rclpy', 'sensor_msgs', 'rosidl_runtime_py'))\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "b" / "metadata.yaml").is_file()


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------
def test_cli_to_bag(scene, tmp_path, capsys):
    out = tmp_path / "cli_bag"
    rc = cli_main(["scenes", "to-bag", str(scene.path), "--out", str(out), "--depth-format", "32FC1",
                   "--color-encoding", "bgr8", "--rate", "15", "--start-time", "12.5", "--no-progress", "--json"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert result["frames_written"] == len(POSES) and result["topic_counts"]["/tf"] == 3 * len(POSES)
    msgs, _ = read_all(out)
    img = next(m[3] for m in msgs if m[0] == TOPICS.color_image)
    assert img.encoding == "bgr8" and stamp_ns(img.header) == 12_500_000_000
    # existing output: clear error, non-zero exit, bag untouched
    before = sorted((p.name, p.stat().st_size) for p in out.iterdir())
    rc = cli_main(["scenes", "to-bag", str(scene.path), "--out", str(out), "--no-progress"])
    assert rc == 1
    assert "already exists" in capsys.readouterr().err
    assert sorted((p.name, p.stat().st_size) for p in out.iterdir()) == before
    rc = cli_main(["scenes", "to-bag", str(tmp_path / "missing"), "--out", str(tmp_path / "x"), "--no-progress"])
    assert rc == 1 and "does not exist" in capsys.readouterr().err
