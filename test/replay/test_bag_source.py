"""Reading bags for replay: order, topics, hashes, and damaged bags (truncated, corrupt, unfinished)."""

from __future__ import annotations

import os

import pytest
from replay_support import ROBOT_TOPICS, copy_bag, mcap_file

from ros3d_agent.replay.bag_source import BagOpenError, BagReadError, BagSource
from ros3d_agent.replay.scenario import TopicMap


def _read_all(source: BagSource, topics: TopicMap = TopicMap()) -> list:
    return list(source.messages(source.check_topics(dict(topics.items(False)))))


def test_messages_come_in_log_time_order_with_roles_and_deserialise(replay_data):
    src = BagSource(replay_data.bag)
    msgs = _read_all(src)
    assert [m.log_time_ns for m in msgs] == sorted(m.log_time_ns for m in msgs)
    counts = {r: sum(m.role == r for m in msgs) for r in ("color", "depth", "color_info", "tf", "tf_static")}
    assert counts == {"color": 24, "depth": 24, "color_info": 24, "tf": 72, "tf_static": 1}
    assert msgs[0].role == "tf_static" and msgs[0].log_time_ns == src.start_ns
    img = src.deserialize(next(m for m in msgs if m.role == "color"))
    assert (img.width, img.height, img.encoding) == (160, 120, "rgb8")
    # TF of an instant follows its images, as a recorder sees them
    first_color = next(m for m in msgs if m.role == "color")
    first_tf = next(m for m in msgs if m.role == "tf")
    assert first_tf.log_time_ns > first_color.log_time_ns
    assert 2.3 < src.duration_s < 2.4
    assert len(src.sha256()) == 64 and src.sha256() == BagSource(replay_data.bag).sha256()


def test_missing_topic_names_the_candidates_and_the_option(replay_data):
    src = BagSource(replay_data.robot_bag)
    with pytest.raises(BagOpenError) as err:
        src.check_topics(dict(TopicMap().items(False)))
    text = str(err.value)
    assert "color topic /camera/color/image_raw is not in the bag" in text
    assert ROBOT_TOPICS["color"] in text and "--rgb-topic" in text and "--camera-info-topic" in text
    ok = src.check_topics(dict(TopicMap(**ROBOT_TOPICS).items(False)))
    assert ok[ROBOT_TOPICS["color"]] == "color" and ok["/tf"] == "tf"
    with pytest.raises(BagOpenError, match="carries sensor_msgs/msg/CameraInfo"):
        src.check_topics({"color": ROBOT_TOPICS["color_info"], "tf": "/tf"})


def test_truncated_bag_delivers_what_precedes_the_cut_then_says_why(replay_data, tmp_path):
    bag = copy_bag(replay_data.bag, tmp_path / "cut")
    f = mcap_file(bag)
    os.truncate(f, int(f.stat().st_size * 0.6))
    src = BagSource(bag)  # metadata.yaml is intact: opening works
    got = []
    with pytest.raises(BagReadError) as err:
        for m in src.messages(src.check_topics(dict(TopicMap().items(False)))):
            got.append(m)
    e = err.value
    assert "truncated or corrupt" in str(e) and "ends in the middle of a record" in str(e)
    assert 10 < len(got) == e.messages_read < 145 and e.last_time_ns == got[-1].log_time_ns
    assert f"{(got[-1].log_time_ns - src.start_ns) / 1e9:.3f} s into the bag" in str(e)


def test_unfinished_recording_without_metadata_is_read_up_to_the_damage(replay_data, tmp_path):
    bag = copy_bag(replay_data.bag, tmp_path / "crashed")
    (bag / "metadata.yaml").unlink()
    f = mcap_file(bag)
    os.truncate(f, int(f.stat().st_size * 0.5))
    src = BagSource(bag)
    assert any("no metadata.yaml" in n for n in src.notes)
    assert {"/camera/color/image_raw", "/tf"} <= set(src.topics)
    got = []
    with pytest.raises(BagReadError):
        for m in src.messages(src.check_topics(dict(TopicMap().items(False)))):
            got.append(m)
    assert got and got[0].log_time_ns == src.start_ns


def test_corrupt_record_is_an_error_not_garbage(replay_data, tmp_path):
    bag = copy_bag(replay_data.bag, tmp_path / "corrupt")
    f = mcap_file(bag)
    data = bytearray(f.read_bytes())
    mid = len(data) // 2
    data[mid: mid + 65536] = b"\xff" * 65536
    f.write_bytes(bytes(data))
    src = BagSource(bag)
    got = []
    with pytest.raises(BagReadError) as err:
        for m in src.messages(src.check_topics(dict(TopicMap().items(False)))):
            got.append(m)
    assert "truncated or corrupt" in str(err.value) and got


def test_sqlite3_bags_read_the_same_messages(replay_data, tmp_path):
    from ros3d_agent.scene.bag_export import BagExportConfig, export_scene_to_bag

    export_scene_to_bag(replay_data.scene, tmp_path / "db", BagExportConfig(rate_hz=10.0, storage="sqlite3"), progress=False)
    a = [(m.topic, m.log_time_ns, m.raw) for m in _read_all(BagSource(tmp_path / "db"))]
    b = [(m.topic, m.log_time_ns, m.raw) for m in _read_all(BagSource(replay_data.bag))]
    assert a == b


def test_not_a_bag(tmp_path):
    with pytest.raises(BagOpenError, match="does not exist"):
        BagSource(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BagOpenError, match="not a rosbag2"):
        BagSource(tmp_path / "empty")
