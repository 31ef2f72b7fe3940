"""The DDS environment every ROS process of this package runs in.

``env.sh`` is where the environment is set (discovery range, domain, RMW, Fast DDS profile).
This module is the guard for entry points started without it: it defaults discovery to
LOCALHOST before rclpy is imported, so a forgotten ``source env.sh`` never makes Fast DDS
multicast on an external interface, and it turns the PyPI wheels' silent exit 102 on a
foreign RMW_IMPLEMENTATION into a readable error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

SUPPORTED_RMW = ("rmw_fastrtps_cpp",)


class DdsEnvironmentError(RuntimeError):
    """The environment would make rclpy fail or leak DDS traffic."""


@dataclass(frozen=True)
class DdsEnvironment:
    discovery_range: str
    domain_id: int
    rmw: str | None
    profiles_file: str | None


def _uses_pypi_wheels() -> bool:
    """True when rclpy comes from the ros-* wheels (no sourced ROS install)."""
    return not os.environ.get("ROS_DISTRO") or os.environ.get("ROS3D_ROS_SOURCE") == "wheels"


def prepare_dds_environment() -> DdsEnvironment:
    """Validate and complete the DDS environment; call before importing rclpy."""
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    rmw = os.environ.get("RMW_IMPLEMENTATION") or None
    if rmw and rmw not in SUPPORTED_RMW and _uses_pypi_wheels():
        raise DdsEnvironmentError(
            f"RMW_IMPLEMENTATION={rmw} but the ROS 2 PyPI wheels carry only Fast DDS; rclpy would exit "
            "with code 102 at import. Run 'unset RMW_IMPLEMENTATION' (env.sh does this)."
        )
    raw_domain = os.environ.get("ROS_DOMAIN_ID", "0")
    try:
        domain = int(raw_domain)
    except ValueError:
        raise DdsEnvironmentError(f"ROS_DOMAIN_ID={raw_domain!r} is not an integer (use 0..101)") from None
    if not 0 <= domain <= 232:
        raise DdsEnvironmentError(f"ROS_DOMAIN_ID={domain} is outside 0..232 (use 0..101 on Linux)")
    profiles = os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE") or None
    if profiles and not os.path.isfile(profiles):
        raise DdsEnvironmentError(f"FASTDDS_DEFAULT_PROFILES_FILE={profiles} does not exist")
    return DdsEnvironment(os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"], domain, rmw, profiles)
