"""Two real processes exchange sensor_msgs/Image and our SceneAnswer over DDS on loopback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ros3d_agent.ros.roundtrip import run_roundtrip

pytestmark = pytest.mark.ros


def test_images_out_answers_back_intact():
    report = run_roundtrip(count=15, rate_hz=20.0, timeout_s=60.0)
    assert report.sent == 15
    assert report.received == 15, report.to_dict()
    assert report.crc_ok == 15 and report.crc_bad == 0
    assert report.nested_fields_ok == 15
    assert report.peer_exit_code == 0  # the echo shut down cleanly on SIGTERM


def test_roundtrip_cli_in_its_own_process():
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    out = subprocess.run([sys.executable, "-m", "ros3d_agent.cli", "roundtrip", "--count", "5", "--json"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert '"ok": true' in out.stdout
