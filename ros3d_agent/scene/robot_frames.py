"""The simulated robot that "carries" a scene's camera: TF frame names, topics, mount geometry, drift.

A scene directory only knows camera-to-world poses. To exercise the node and the replay evaluation
the way a robot would, bag export splits each pose into the TF chain a mobile robot with a pan-tilt
RGB-D head publishes (REP 105 frames, REP 103 axes)::

    map ──(localisation, /tf)──► odom ──(wheel odometry, /tf)──► base_link
        ──(pan-tilt head joints, /tf)──► camera_link ──(static, /tf_static)──► camera_color_optical_frame

The replay code imports the same names from here, so the writer and the reader of a bag cannot
disagree about what a frame or topic is called. Nothing here imports rclpy.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "RobotFrames",
    "CameraTopics",
    "HeadMount",
    "OdometryDrift",
    "SimulatedRobot",
    "R_LINK_OPTICAL",
    "Q_LINK_OPTICAL",
    "T_LINK_OPTICAL",
    "planar_transform",
]

#: Rotation of an optical frame (x right, y down, z forward) in its body frame (x forward, y left,
#: z up): the columns are the optical axes written in body coordinates (x_opt = -y, y_opt = -z,
#: z_opt = +x). Every ROS camera driver publishes this as its ``*_optical_frame`` static transform.
R_LINK_OPTICAL: NDArray[np.float64] = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
R_LINK_OPTICAL.setflags(write=False)
#: The same rotation as a ROS quaternion (x, y, z, w); exact in binary floating point.
Q_LINK_OPTICAL: tuple[float, float, float, float] = (-0.5, 0.5, -0.5, 0.5)
#: 4×4 ``T_camera_link_optical`` (no translation: the optical frame sits at the link's origin).
T_LINK_OPTICAL: NDArray[np.float64] = np.eye(4)
T_LINK_OPTICAL[:3, :3] = R_LINK_OPTICAL
T_LINK_OPTICAL.setflags(write=False)

# ROS 2 name tokens: letters, digits, underscores; a token must not start with a digit.
_TOPIC_RE = re.compile(r"^(/[A-Za-z_][A-Za-z0-9_]*)+$")
_FRAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_/]*$")


@dataclass(frozen=True)
class RobotFrames:
    """TF frame names (REP 105). ``map`` is the scene's world frame."""

    map: str = "map"
    odom: str = "odom"
    base: str = "base_link"
    camera_link: str = "camera_link"
    color_optical: str = "camera_color_optical_frame"

    def __post_init__(self) -> None:
        names = [self.map, self.odom, self.base, self.camera_link, self.color_optical]
        for name in names:
            if not isinstance(name, str) or not _FRAME_RE.match(name):
                raise ValueError(f"TF frame name {name!r} is not valid (letters, digits, '_', '/'; no leading digit or '/')")
        if len(set(names)) != len(names):
            raise ValueError(f"TF frame names must be distinct, got {names}")

    @property
    def chain(self) -> tuple[str, ...]:
        """Root-to-leaf order of the chain the bag publishes."""
        return (self.map, self.odom, self.base, self.camera_link, self.color_optical)


@dataclass(frozen=True)
class CameraTopics:
    """Topic names of a RealSense-style RGB-D driver under one namespace (``prefix``).

    Depth is published registered to the colour camera (``aligned_depth_to_color``), so both
    streams share the colour intrinsics and optical frame, which is what the Frame contract wants.
    """

    prefix: str = "/camera"
    tf: str = "/tf"
    tf_static: str = "/tf_static"

    def __post_init__(self) -> None:
        for name in (self.prefix, self.tf, self.tf_static):
            if not isinstance(name, str) or not _TOPIC_RE.match(name):
                raise ValueError(
                    f"topic name {name!r} is not a valid absolute ROS 2 name "
                    "(e.g. '/camera' or '/robot1/head_camera'; no trailing '/')"
                )

    @property
    def color_image(self) -> str:
        return f"{self.prefix}/color/image_raw"

    @property
    def color_info(self) -> str:
        return f"{self.prefix}/color/camera_info"

    @property
    def depth_image(self) -> str:
        return f"{self.prefix}/aligned_depth_to_color/image_raw"

    @property
    def depth_info(self) -> str:
        return f"{self.prefix}/aligned_depth_to_color/camera_info"


@dataclass(frozen=True)
class HeadMount:
    """Where the pan-tilt head sits on the base, used to place ``base_link`` under the camera.

    ``base_link`` is put at floor level (z = 0), facing the camera's heading, ``forward_m`` behind
    the camera and ``left_m`` to its right, so ``base_link → camera_link`` looks like a head on a
    mast ahead of the base centre (translation ≈ (forward_m, left_m, camera height)) with tilt and
    roll only, rather than an arbitrary 6-DoF jump.
    """

    forward_m: float = 0.10
    left_m: float = 0.0

    def __post_init__(self) -> None:
        for name in ("forward_m", "left_m"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"HeadMount.{name} must be a finite number, got {v!r}")


@dataclass(frozen=True)
class OdometryDrift:
    """Deterministic planar drift of odometry against the map: ``map → odom`` at time ``t`` (s).

    Real ``map → odom`` is a localiser's correction: small, slowly changing and planar. A linear
    ramp (plus a slow wobble, so the transform is not trivially affine in time) is enough to catch
    code that ignores it or looks it up at the wrong time, while staying exactly reproducible.
    """

    xy_m_per_s: tuple[float, float] = (0.004, -0.0025)
    yaw_rad_per_s: float = 0.0015
    wobble_m: float = 0.002
    wobble_period_s: float = 7.0

    def __post_init__(self) -> None:
        vals = [*self.xy_m_per_s, self.yaw_rad_per_s, self.wobble_m, self.wobble_period_s]
        if len(self.xy_m_per_s) != 2 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in vals):
            raise ValueError(f"OdometryDrift: every parameter must be a finite number (xy is a pair), got {self!r}")
        if not self.wobble_period_s > 0:
            raise ValueError(f"OdometryDrift.wobble_period_s must be > 0, got {self.wobble_period_s}")

    def at(self, t_s: float) -> tuple[float, float, float]:
        """``(x, y, yaw)`` of ``odom`` in ``map`` at ``t_s`` seconds after the bag start."""
        w = self.wobble_m * math.sin(2.0 * math.pi * t_s / self.wobble_period_s)
        return (self.xy_m_per_s[0] * t_s + w, self.xy_m_per_s[1] * t_s - 0.5 * w, self.yaw_rad_per_s * t_s)


def planar_transform(x: float, y: float, yaw: float) -> NDArray[np.float64]:
    """4×4 transform of a pose on the floor plane: translation (x, y, 0), rotation ``yaw`` about z."""
    c, s = math.cos(yaw), math.sin(yaw)
    T = np.eye(4)
    T[0, 0], T[0, 1], T[1, 0], T[1, 1] = c, -s, s, c
    T[0, 3], T[1, 3] = x, y
    return T


@dataclass(frozen=True)
class SimulatedRobot:
    """Everything bag export and replay need to agree on about the robot."""

    frames: RobotFrames = field(default_factory=RobotFrames)
    mount: HeadMount = field(default_factory=HeadMount)
    drift: OdometryDrift = field(default_factory=OdometryDrift)

