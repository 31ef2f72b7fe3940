"""The command line and the doctor work for real on this machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ros3d_agent.doctor import FAIL, OK, WARN, run_checks


def _cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    return subprocess.run([sys.executable, "-m", "ros3d_agent.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_help_lists_the_subcommands():
    out = _cli("--help")
    assert out.returncode == 0
    for name in ("doctor", "roundtrip", "demo"):
        assert name in out.stdout


def test_no_subcommand_prints_help_and_fails():
    assert _cli().returncode == 2


@pytest.mark.ros
def test_doctor_json_is_all_ok_here():
    out = _cli("doctor", "--json")
    report = json.loads(out.stdout)
    failed = [r for r in report["results"] if r["status"] == FAIL]
    assert out.returncode == 0 and not failed, failed
    names = {r["name"] for r in report["results"]}
    assert {"rclpy", "dds round trip", "ros3d interfaces", "torch", "cuda", "open3d"} <= names


def test_doctor_reports_a_foreign_rmw_with_its_fix(monkeypatch):
    monkeypatch.delenv("ROS_DISTRO", raising=False)
    monkeypatch.setenv("RMW_IMPLEMENTATION", "rmw_zenoh_cpp")
    results = {r.name: r for r in run_checks(["dds environment", "rclpy"])}
    assert results["dds environment"].status == FAIL
    assert "unset RMW_IMPLEMENTATION" in results["dds environment"].fix
    assert results["rclpy"].status == FAIL and "skipped" in results["rclpy"].detail


def test_doctor_warns_when_discovery_range_is_not_local(monkeypatch):
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "SUBNET")
    (res,) = run_checks(["dds environment"])
    assert res.status == WARN and "network" in res.fix


def test_doctor_check_crash_becomes_a_failed_row(monkeypatch):
    import ros3d_agent.doctor as doctor

    def boom() -> str:
        raise ZeroDivisionError("bad")

    monkeypatch.setattr(doctor, "CHECKS", [("boom", boom, ()), ("python", doctor.check_python, ())])
    results = doctor.run_checks()
    assert [r.status for r in results] == [FAIL, OK]
    assert "ZeroDivisionError" in results[0].detail
