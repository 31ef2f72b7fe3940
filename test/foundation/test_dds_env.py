"""The DDS guard refuses environments that would crash rclpy or leak discovery."""

from __future__ import annotations

import pytest

from ros3d_agent.ros.dds_env import DdsEnvironmentError, prepare_dds_environment


def test_defaults_discovery_to_localhost(monkeypatch):
    monkeypatch.delenv("ROS_AUTOMATIC_DISCOVERY_RANGE", raising=False)
    env = prepare_dds_environment()
    assert env.discovery_range == "LOCALHOST"


def test_keeps_an_explicit_discovery_range(monkeypatch):
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "SUBNET")
    assert prepare_dds_environment().discovery_range == "SUBNET"


def test_foreign_rmw_is_a_clear_error_with_the_wheels(monkeypatch):
    monkeypatch.delenv("ROS_DISTRO", raising=False)
    monkeypatch.setenv("RMW_IMPLEMENTATION", "rmw_cyclonedds_cpp")
    with pytest.raises(DdsEnvironmentError, match="unset RMW_IMPLEMENTATION"):
        prepare_dds_environment()


@pytest.mark.parametrize("value", ["abc", "300", "-1"])
def test_bad_domain_id(monkeypatch, value):
    monkeypatch.setenv("ROS_DOMAIN_ID", value)
    with pytest.raises(DdsEnvironmentError, match="ROS_DOMAIN_ID"):
        prepare_dds_environment()


def test_missing_profile_file(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTDDS_DEFAULT_PROFILES_FILE", str(tmp_path / "nope.xml"))
    with pytest.raises(DdsEnvironmentError, match="does not exist"):
        prepare_dds_environment()
