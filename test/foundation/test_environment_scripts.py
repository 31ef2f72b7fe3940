"""env.sh sets the environment every ROS process must run in; setup.sh is idempotent."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _env_after_sourcing(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID",
                                                            "VIRTUAL_ENV", "AMENT_PREFIX_PATH")}
    env.update(extra)
    out = subprocess.run(["bash", "-c", f"source '{ROOT}/env.sh' && env -0"], capture_output=True, env=env,
                         timeout=60, check=True)
    return dict(item.split("=", 1) for item in out.stdout.decode().split("\0") if "=" in item)


def test_env_sh_keeps_dds_on_this_machine_and_offline():
    env = _env_after_sourcing({"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"})
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert 0 <= int(env["ROS_DOMAIN_ID"]) <= 101
    assert "RMW_IMPLEMENTATION" not in env
    assert env["HF_HUB_OFFLINE"] == "1"
    assert Path(env["FASTDDS_DEFAULT_PROFILES_FILE"]).is_file()
    assert env["AMENT_PREFIX_PATH"].split(":")[0] == env["VIRTUAL_ENV"]


def test_env_sh_discovery_override_and_default_profile_opt_out():
    env = _env_after_sourcing({"ROS3D_DISCOVERY_RANGE": "SUBNET", "ROS3D_DDS_PROFILE": "default",
                               "ROS_AUTOMATIC_DISCOVERY_RANGE": "OFF"})
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "SUBNET"
    assert "FASTDDS_DEFAULT_PROFILES_FILE" not in env


def test_setup_is_idempotent_and_says_what_it_skips():
    out = subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh")], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Python dependencies unchanged: skipped" in out.stdout
    assert "ROS interfaces ros3d_agent_interfaces unchanged: skipped" in out.stdout
    assert "ROS interfaces tf2_msgs unchanged: skipped" in out.stdout
    assert "ros3d_agent (editable install): unchanged" in out.stdout
