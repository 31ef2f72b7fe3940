"""Export a scene directory as a rosbag2 (MCAP or sqlite3) that looks like a real robot recording.

Why: the node and the replay evaluation consume bags, and the datasets we have are scene
directories. A bag that only held images and a ``map → camera`` transform would let bugs through
that real recordings trigger (TF looked up at the wrong time, the optical rotation forgotten,
odometry drift ignored, TF arriving after the image). So each camera pose is split into the TF
chain of a mobile robot with a pan-tilt head (:mod:`.robot_frames`)::

    map → odom         /tf, planar, slowly drifting (localisation correction)
    odom → base_link   /tf, planar x, y, yaw under the camera (wheel odometry)
    base_link → camera_link            /tf, the remainder: the moving pan-tilt head
    camera_link → camera_color_optical_frame   /tf_static, the standard optical rotation

and composing the chain at an image stamp gives back the scene's camera-to-world pose (to float64
rounding). Messages are built and serialised with rosbags' own typestore (no rclpy: this module is
in ``scene/``), in the Kilted definitions whose RIHS01 hashes equal those of the ROS wheels.

Timing mimics a driver + robot: frame ``i`` of the scene is stamped ``start + i / rate``; images and
their CameraInfo are logged ``image_delay`` after the stamp, each /tf message (stamped at the image
stamp) ``tf_delay`` after it, i.e. after the images of the same instant, which is the order in which
a live subscriber sees them. Frames whose pose is lost (NaN/inf) keep their slot in time, so the
bag shows a gap there, and are counted in the result.
"""

from __future__ import annotations

import heapq
import json
import logging
import math
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .errors import SceneError
from .geometry import invert_transform, matrix_to_quaternion, transform_from_translation_quaternion
from .robot_frames import T_LINK_OPTICAL, CameraTopics, SimulatedRobot, planar_transform
from .scene_dir import SceneDir
from .types import Frame

__all__ = [
    "BagExportError",
    "BagExportConfig",
    "BagExportResult",
    "TfChain",
    "DEFAULT_START_TIME_NS",
    "TYPESTORE_NAME",
    "ROSBAG2_VERSION",
    "decompose_camera_pose",
    "compose_tf",
    "tf_edges_from_message",
    "BagMessageFactory",
    "color_payload",
    "depth_payload",
    "export_scene_to_bag",
    "DEPTH_FORMATS",
    "COLOR_ENCODINGS",
    "STORAGES",
]

log = logging.getLogger(__name__)

#: Default stamp of the first frame: a fixed instant (2023-11-14T22:13:20Z), so two exports of
#: the same scene are byte-identical in every payload, and stamps look like wall-clock time
#: (sim-time consumers that treat 0 as "unset" are not fooled).
DEFAULT_START_TIME_NS: Final = 1_700_000_000 * 1_000_000_000
#: rosbags typestore used for definitions and hashes; matches the ROS 2 Kilted wheels.
TYPESTORE_NAME: Final = "ros2_kilted"
#: rosbag2 metadata version written (9: Jazzy and later; QoS as a YAML list, type hashes present).
ROSBAG2_VERSION: Final = 9

DepthFormat = Literal["16UC1", "32FC1"]
ColorEncoding = Literal["rgb8", "bgr8"]
StorageName = Literal["mcap", "sqlite3"]
DEPTH_FORMATS: Final = ("16UC1", "32FC1")
COLOR_ENCODINGS: Final = ("rgb8", "bgr8")
STORAGES: Final = ("mcap", "sqlite3")

_NS_PER_S: Final = 1_000_000_000
_MAX_STAMP_NS: Final = (2**31 - 1) * _NS_PER_S  # builtin_interfaces/Time.sec is int32
# Separate /tf publishers (localiser, odometry, robot_state_publisher) do not land on the same
# nanosecond; space their messages a little so the log order is well defined.
_TF_PUBLISHER_SPACING_NS: Final = 200_000
# rmw's "infinite" duration as rosbag2 records it (RMW_DURATION_INFINITE split into sec/nsec).
_INFINITE_SEC, _INFINITE_NSEC = 9_223_372_036, 854_775_807


class BagExportError(SceneError, ValueError):
    """The export cannot be done (bad output path, no usable frames, bad configuration)."""


# ---------------------------------------------------------------------------------------------------
# Configuration and result
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BagExportConfig:
    """What to write and how. Defaults give a RealSense-like MCAP bag at 30 Hz.

    Attributes:
        rate_hz: frame rate; frame ``i`` of the scene is stamped ``start_time_ns + i / rate_hz``.
        start_time_ns: stamp of the first frame (and of /tf_static).
        depth_format: ``16UC1`` millimetres (REP 118 integer depth, 0 = no return) or ``32FC1``
            metres (REP 118: NaN = no return).
        color_encoding: ``rgb8`` or ``bgr8`` (what many drivers publish).
        topic_prefix: camera namespace, e.g. ``/camera``.
        storage: ``mcap`` (rosbag2's default since Iron) or ``sqlite3``.
        overwrite: replace an existing bag at the output path (never anything that is not a bag).
        image_delay_ns: log (receive) time of images and CameraInfo after their stamp.
        tf_delay_ns: log time of /tf after the stamp; must exceed ``image_delay_ns``, because TF for
            time t reaches a recorder after the images of time t.
        robot: frame names, head mount and odometry drift of the simulated robot.
    """

    rate_hz: float = 30.0
    start_time_ns: int = DEFAULT_START_TIME_NS
    depth_format: DepthFormat = "16UC1"
    color_encoding: ColorEncoding = "rgb8"
    topic_prefix: str = "/camera"
    storage: StorageName = "mcap"
    overwrite: bool = False
    image_delay_ns: int = 12_000_000
    tf_delay_ns: int = 18_000_000
    robot: SimulatedRobot = field(default_factory=SimulatedRobot)

    def __post_init__(self) -> None:
        if isinstance(self.rate_hz, bool) or not isinstance(self.rate_hz, (int, float)) or not (math.isfinite(self.rate_hz) and self.rate_hz > 0):
            raise BagExportError(f"rate_hz must be a finite number > 0, got {self.rate_hz!r}")
        if self.rate_hz > 1e6:
            raise BagExportError(f"rate_hz {self.rate_hz} is above 1 MHz: frames would share nanosecond stamps")
        for name in ("start_time_ns", "image_delay_ns", "tf_delay_ns"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise BagExportError(f"{name} must be a non-negative integer (nanoseconds), got {v!r}")
        if self.start_time_ns > _MAX_STAMP_NS:
            raise BagExportError(f"start_time_ns {self.start_time_ns} does not fit builtin_interfaces/Time (int32 seconds)")
        if not self.tf_delay_ns > self.image_delay_ns:
            raise BagExportError(
                f"tf_delay_ns ({self.tf_delay_ns}) must be greater than image_delay_ns ({self.image_delay_ns}): "
                "a real recorder receives TF for time t after the images of time t"
            )
        if self.depth_format not in DEPTH_FORMATS:
            raise BagExportError(f"depth_format must be one of {DEPTH_FORMATS}, got {self.depth_format!r}")
        if self.color_encoding not in COLOR_ENCODINGS:
            raise BagExportError(f"color_encoding must be one of {COLOR_ENCODINGS}, got {self.color_encoding!r}")
        if self.storage not in STORAGES:
            raise BagExportError(f"storage must be one of {STORAGES}, got {self.storage!r}")
        try:
            CameraTopics(prefix=self.topic_prefix)
        except ValueError as exc:
            raise BagExportError(f"topic_prefix: {exc}") from exc
        if not isinstance(self.robot, SimulatedRobot):
            raise BagExportError(f"robot must be a SimulatedRobot, got {type(self.robot).__name__}")

    @property
    def topics(self) -> CameraTopics:
        return CameraTopics(prefix=self.topic_prefix)

    def stamp_ns(self, index: int) -> int:
        """Stamp of the frame at position ``index`` of the scene (computed from the index, so no drift accumulates)."""
        return self.start_time_ns + round(index * _NS_PER_S / self.rate_hz)

    def to_json(self) -> str:
        """Stable JSON of every setting (stored in the bag's custom_data for provenance)."""
        d = asdict(self)
        d.pop("overwrite")
        return json.dumps(d, sort_keys=True, separators=(",", ":"))


@dataclass
class BagExportResult:
    """What an export wrote; ``skipped`` counts unusable frames by reason (``nonfinite_pose``, ...)."""

    path: Path
    scene_id: str
    storage: str
    frames_written: int
    frames_total: int
    skipped: dict[str, int]
    skipped_frames: dict[str, str]
    topic_counts: dict[str, int]
    first_stamp_ns: int
    last_stamp_ns: int
    size_bytes: int
    seconds: float

    @property
    def duration_s(self) -> float:
        return (self.last_stamp_ns - self.first_stamp_ns) / _NS_PER_S

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        d["duration_s"] = self.duration_s
        return d


# ---------------------------------------------------------------------------------------------------
# TF chain
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TfChain:
    """One camera pose split into the robot's TF edges (each ``T_parent_child``, 4×4)."""

    map_odom: NDArray[np.float64]
    odom_base: NDArray[np.float64]
    base_camera_link: NDArray[np.float64]
    camera_link_optical: NDArray[np.float64]

    def compose(self) -> NDArray[np.float64]:
        """``T_map_optical``: the camera-to-world pose the chain encodes."""
        return self.map_odom @ self.odom_base @ self.base_camera_link @ self.camera_link_optical


def _heading(R_map_optical: NDArray[np.float64]) -> float:
    """Yaw (about map z) the camera looks along; the robot base faces the same way.

    The optical axis projected on the floor gives the heading. A camera looking straight up or
    down has no such projection; the image's "up" direction (optical -y) is horizontal then.
    """
    forward = R_map_optical[:, 2]
    if math.hypot(forward[0], forward[1]) > 1e-6:
        return math.atan2(forward[1], forward[0])
    up = -R_map_optical[:, 1]
    return math.atan2(up[1], up[0])


def decompose_camera_pose(T_map_optical: ArrayLike, t_s: float, robot: SimulatedRobot | None = None) -> TfChain:
    """Split a camera-to-world pose (OpenCV optical) into map→odom→base_link→camera_link→optical.

    ``map → odom`` is the robot's drift at ``t_s`` seconds into the bag; ``odom → base_link`` is the
    planar pose (z = 0) of a base facing the camera's heading with the head ``robot.mount`` ahead
    of its centre; ``base_link → camera_link`` is whatever remains (height, tilt, roll: the head);
    ``camera_link → optical`` is the fixed optical rotation. The remainder is computed from the other
    three, so the chain composes back to the input to float64 rounding. (A pose whose rotation block
    is not quite orthonormal, which :class:`Frame` tolerates up to 1e-3, comes back as the nearest
    rotation: a TF quaternion cannot carry the error.)
    """
    robot = robot or SimulatedRobot()
    T = np.asarray(T_map_optical, dtype=np.float64)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        raise BagExportError(f"camera pose must be a finite 4x4 matrix, got shape {T.shape}")
    yaw = _heading(T[:3, :3])
    c, s = math.cos(yaw), math.sin(yaw)
    mx, my = robot.mount.forward_m, robot.mount.left_m
    base_x = T[0, 3] - (c * mx - s * my)
    base_y = T[1, 3] - (s * mx + c * my)
    dx, dy, dyaw = robot.drift.at(t_s)
    # odom_base = inv(map_odom) @ map_base, done in closed form so it stays exactly planar.
    cd, sd = math.cos(dyaw), math.sin(dyaw)
    ox, oy = base_x - dx, base_y - dy
    map_odom = planar_transform(dx, dy, dyaw)
    odom_base = planar_transform(cd * ox + sd * oy, -sd * ox + cd * oy, yaw - dyaw)
    map_base = map_odom @ odom_base
    base_camera_link = invert_transform(map_base) @ T @ invert_transform(T_LINK_OPTICAL)
    return TfChain(map_odom, odom_base, base_camera_link, np.array(T_LINK_OPTICAL))


def compose_tf(edges: Mapping[str, tuple[str, ArrayLike]], target: str, source: str) -> NDArray[np.float64]:
    """``T_target_source`` from a TF tree given as ``{child: (parent, T_parent_child)}``.

    A small, time-less TF lookup: walk both frames to the root and compose. Used by tests and
    tools to check that a bag's TF reproduces poses; the node's buffer adds time interpolation.
    """

    def to_root(frame: str) -> list[str]:
        path = [frame]
        while path[-1] in edges:
            path.append(edges[path[-1]][0])
            if len(path) > len(edges) + 1:
                raise BagExportError(f"TF tree has a cycle through {frame!r}")
        return path

    def root_T(path: list[str]) -> NDArray[np.float64]:
        out = np.eye(4)
        for child in reversed(path[:-1]):
            out = out @ np.asarray(edges[child][1], dtype=np.float64)
        return out

    src_path, tgt_path = to_root(source), to_root(target)
    if src_path[-1] != tgt_path[-1]:
        raise BagExportError(
            f"frames {target!r} and {source!r} are not connected (roots {tgt_path[-1]!r} and {src_path[-1]!r})"
        )
    return invert_transform(root_T(tgt_path)) @ root_T(src_path)


def tf_edges_from_message(msg: Any) -> dict[str, tuple[str, int, NDArray[np.float64]]]:
    """``{child: (parent, stamp_ns, T_parent_child)}`` of a (rosbags- or rclpy-) TFMessage."""
    out = {}
    for tr in msg.transforms:
        t, q = tr.transform.translation, tr.transform.rotation
        T = transform_from_translation_quaternion((t.x, t.y, t.z), (q.x, q.y, q.z, q.w))
        stamp = int(tr.header.stamp.sec) * _NS_PER_S + int(tr.header.stamp.nanosec)
        out[tr.child_frame_id] = (tr.header.frame_id, stamp, T)
    return out


# ---------------------------------------------------------------------------------------------------
# Messages (rosbags typestore, CDR)
# ---------------------------------------------------------------------------------------------------
def _qos_profile(durability: str) -> Any:
    """The offered QoS a recorder notes for a reliable publisher (history/depth are not discoverable)."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    infinite = QosTime(_INFINITE_SEC, _INFINITE_NSEC)
    return Qos(
        history=QosHistory.UNKNOWN,
        depth=0,
        reliability=QosReliability.RELIABLE,
        durability=QosDurability[durability],
        deadline=infinite,
        lifespan=infinite,
        liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=infinite,
        avoid_ros_namespace_conventions=False,
    )


class BagMessageFactory:
    """Builds and CDR-serialises the bag's messages with rosbags' typestore.

    Serialisation is always little-endian (what every ROS host emits), so payloads are identical
    whichever machine exports.
    """

    IMAGE: Final = "sensor_msgs/msg/Image"
    CAMERA_INFO: Final = "sensor_msgs/msg/CameraInfo"
    TF_MESSAGE: Final = "tf2_msgs/msg/TFMessage"

    def __init__(self) -> None:
        from rosbags.typesys import Stores, get_typestore

        self.typestore = get_typestore(Stores(TYPESTORE_NAME))
        self._t = self.typestore.types

    def _header(self, stamp_ns: int, frame_id: str) -> Any:
        if not 0 <= stamp_ns <= _MAX_STAMP_NS + _NS_PER_S - 1:
            raise BagExportError(f"stamp {stamp_ns} ns does not fit builtin_interfaces/Time")
        sec, nanosec = divmod(int(stamp_ns), _NS_PER_S)
        stamp = self._t["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)
        return self._t["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)

    def serialize(self, msg: Any) -> bytes:
        return bytes(self.typestore.serialize_cdr(msg, msg.__msgtype__, little_endian=True))

    def image(self, arr: NDArray[Any], encoding: str, stamp_ns: int, frame_id: str) -> Any:
        """A ``sensor_msgs/Image`` holding ``arr`` (little-endian, unpadded rows)."""
        data = np.ascontiguousarray(arr)
        if data.dtype.itemsize > 1:
            data = data.astype(data.dtype.newbyteorder("<"), copy=False)
        h, w = data.shape[:2]
        return self._t[self.IMAGE](
            header=self._header(stamp_ns, frame_id),
            height=h,
            width=w,
            encoding=encoding,
            is_bigendian=0,
            step=data.nbytes // h,
            data=data.reshape(-1).view(np.uint8),
        )

    def camera_info(self, K: ArrayLike, height: int, width: int, stamp_ns: int, frame_id: str) -> Any:
        """Rectified pinhole CameraInfo: plumb_bob with zero D, R = I, P = [K | 0]."""
        K = np.asarray(K, dtype=np.float64)
        P = np.zeros((3, 4))
        P[:, :3] = K
        roi = self._t["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
        return self._t[self.CAMERA_INFO](
            header=self._header(stamp_ns, frame_id),
            height=int(height),
            width=int(width),
            distortion_model="plumb_bob",
            d=np.zeros(5),
            k=K.reshape(-1).copy(),
            r=np.eye(3).reshape(-1),
            p=P.reshape(-1),
            binning_x=0,
            binning_y=0,
            roi=roi,
        )

    def tf_message(self, edges: Sequence[tuple[str, str, NDArray[np.float64], int]]) -> Any:
        """A ``tf2_msgs/TFMessage`` of ``(parent, child, T_parent_child, stamp_ns)`` edges."""
        t = self._t
        transforms = []
        for parent, child, T, stamp_ns in edges:
            q = matrix_to_quaternion(T)
            transforms.append(
                t["geometry_msgs/msg/TransformStamped"](
                    header=self._header(stamp_ns, parent),
                    child_frame_id=child,
                    transform=t["geometry_msgs/msg/Transform"](
                        translation=t["geometry_msgs/msg/Vector3"](x=float(T[0, 3]), y=float(T[1, 3]), z=float(T[2, 3])),
                        rotation=t["geometry_msgs/msg/Quaternion"](x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3])),
                    ),
                )
            )
        return t[self.TF_MESSAGE](transforms=transforms)

    def offered_qos(self, latched: bool) -> list[Any]:
        """One reliable profile; ``latched`` makes it TRANSIENT_LOCAL (what /tf_static must be)."""
        return [_qos_profile("TRANSIENT_LOCAL" if latched else "VOLATILE")]


def color_payload(rgb: NDArray[np.uint8], encoding: str) -> NDArray[np.uint8]:
    """The Frame's RGB as the chosen wire channel order."""
    return np.ascontiguousarray(rgb[:, :, ::-1]) if encoding == "bgr8" else rgb


def depth_payload(depth_m: NDArray[np.float32], depth_format: str) -> NDArray[Any]:
    """Depth in the chosen REP 118 form: uint16 mm with 0 = invalid, or float32 m with NaN = invalid.

    Millimetres are rounded (the scene's PNGs are integer mm, so this restores them exactly); depth
    beyond 65.535 m cannot be stored in 16 bits and becomes invalid rather than saturated.
    """
    if depth_format == "16UC1":
        mm = np.rint(depth_m.astype(np.float64) * 1000.0)
        mm[(mm > np.iinfo(np.uint16).max) | ~np.isfinite(mm) | (mm < 0)] = 0
        return mm.astype(np.uint16)
    out = depth_m.astype(np.float32, copy=True)
    out[~(out > 0)] = np.nan
    return out


# ---------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------
def _is_bag_dir(path: Path) -> bool:
    """True when ``path`` holds a rosbag2 (metadata.yaml or storage files only), or is empty."""
    entries = list(path.iterdir())
    if not entries:
        return True
    if (path / "metadata.yaml").is_file():
        return True
    return all(e.is_file() and re.search(r"\.(mcap|db3)(\.zstd)?$", e.name) for e in entries)


def _check_output(out: Path, overwrite: bool) -> None:
    if not out.name or out.name in (".", ".."):
        raise BagExportError(f"bad output path {str(out)!r}: name the bag directory to create")
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise BagExportError(f"{out} already exists; pass overwrite=True (--overwrite) to replace it")
        if not out.is_dir() or out.is_symlink():
            raise BagExportError(f"{out} exists and is not a bag directory; refusing to replace it")
        if not _is_bag_dir(out):
            raise BagExportError(f"{out} exists and does not look like a rosbag2 directory; refusing to delete it")


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class _OrderedWriter:
    """Writes messages in log-time order: big camera messages go straight out, /tf waits in a heap.

    The camera messages of consecutive frames are already in time order; TF for time t is due
    ``tf_delay`` after t and may belong after the next frame's images when the delay exceeds the
    frame period, so it is held until every earlier image has been written.
    """

    def __init__(self, writer: Any) -> None:
        self.writer = writer
        self._pending: list[tuple[int, int, Any, bytes]] = []
        self._seq = 0

    def write_now(self, conn: Any, log_ns: int, payload: bytes) -> None:
        self.flush_before(log_ns)
        self.writer.write(conn, log_ns, payload)

    def defer(self, conn: Any, log_ns: int, payload: bytes) -> None:
        heapq.heappush(self._pending, (log_ns, self._seq, conn, payload))
        self._seq += 1

    def flush_before(self, log_ns: int | None = None) -> None:
        while self._pending and (log_ns is None or self._pending[0][0] < log_ns):
            t, _, conn, payload = heapq.heappop(self._pending)
            self.writer.write(conn, t, payload)


class _SceneBagWriter:
    """The topics of one robot-like recording on an open rosbags ``Writer``."""

    def __init__(self, writer: Any, config: BagExportConfig) -> None:
        self.config = config
        self.names = config.robot.frames
        self.fac = BagMessageFactory()
        self.out = _OrderedWriter(writer)
        self.counts: Counter[str] = Counter()
        self.stamps: list[int] = []
        topics, fac = config.topics, self.fac
        volatile, latched = fac.offered_qos(False), fac.offered_qos(True)

        def conn(topic: str, msgtype: str, qos: list[Any]) -> Any:
            return writer.add_connection(topic, msgtype, typestore=fac.typestore, offered_qos_profiles=qos)

        self.c_static = conn(topics.tf_static, fac.TF_MESSAGE, latched)
        self.c_tf = conn(topics.tf, fac.TF_MESSAGE, volatile)
        self.c_color = conn(topics.color_image, fac.IMAGE, volatile)
        self.c_color_info = conn(topics.color_info, fac.CAMERA_INFO, volatile)
        self.c_depth = conn(topics.depth_image, fac.IMAGE, volatile)
        self.c_depth_info = conn(topics.depth_info, fac.CAMERA_INFO, volatile)

    def _put(self, conn: Any, log_ns: int, msg: Any, *, deferred: bool = False) -> None:
        payload = self.fac.serialize(msg)
        (self.out.defer if deferred else self.out.write_now)(conn, log_ns, payload)
        self.counts[conn.topic] += 1

    def write_static(self) -> None:
        """/tf_static once, at the start, as a static broadcaster latches it when the robot boots."""
        start = self.config.start_time_ns
        msg = self.fac.tf_message([(self.names.camera_link, self.names.color_optical, T_LINK_OPTICAL, start)])
        self._put(self.c_static, start, msg)

    def write_frame(self, frame: Frame, stamp: int) -> None:
        """Camera messages now; the frame's three /tf messages (one per publisher) when their log time comes."""
        cfg, fac, names = self.config, self.fac, self.names
        self.stamps.append(stamp)
        cam_log = stamp + cfg.image_delay_ns
        opt = names.color_optical
        self._put(self.c_color, cam_log, fac.image(color_payload(frame.rgb, cfg.color_encoding), cfg.color_encoding, stamp, opt))
        info = fac.camera_info(frame.K, frame.height, frame.width, stamp, opt)
        self._put(self.c_color_info, cam_log, info)
        self._put(self.c_depth, cam_log, fac.image(depth_payload(frame.depth, cfg.depth_format), cfg.depth_format, stamp, opt))
        self._put(self.c_depth_info, cam_log, info)
        chain = decompose_camera_pose(frame.T_world_cam, (stamp - cfg.start_time_ns) / _NS_PER_S, cfg.robot)
        edges = [
            (names.map, names.odom, chain.map_odom),  # localiser
            (names.odom, names.base, chain.odom_base),  # wheel odometry
            (names.base, names.camera_link, chain.base_camera_link),  # robot_state_publisher (head joints)
        ]
        for j, (parent, child, T) in enumerate(edges):
            log_ns = stamp + cfg.tf_delay_ns + j * _TF_PUBLISHER_SPACING_NS
            self._put(self.c_tf, log_ns, fac.tf_message([(parent, child, T, stamp)]), deferred=True)

    def finish(self) -> None:
        self.out.flush_before(None)


def export_scene_to_bag(
    scene: SceneDir | str | os.PathLike[str],
    out: str | os.PathLike[str],
    config: BagExportConfig | None = None,
    *,
    progress: bool = True,
) -> BagExportResult:
    """Write ``scene`` as a rosbag2 at ``out`` (a directory, as ``ros2 bag record -o`` makes).

    The bag is written into a hidden sibling directory and renamed into place when complete, so an
    interrupted export never leaves a half-written bag at ``out``.

    Raises:
        SceneDirError: the scene directory is missing or malformed.
        BagExportError: ``out`` exists (without ``overwrite``) or is not a bag, or no frame is usable.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer
    from tqdm import tqdm

    config = config or BagExportConfig()
    sd = scene if isinstance(scene, SceneDir) else SceneDir(scene)
    out = Path(out)
    _check_output(out, config.overwrite)
    frame_ids = sd.frame_ids()
    if not frame_ids:
        raise BagExportError(f"{sd.path}: no frames to export (expected NNNNN.jpg/.png/.txt files)")
    last_stamp = config.stamp_ns(len(frame_ids) - 1) + config.tf_delay_ns
    if last_stamp > _MAX_STAMP_NS:
        raise BagExportError(f"the last frame's stamp ({last_stamp} ns) does not fit builtin_interfaces/Time")
    index = {fid: i for i, fid in enumerate(frame_ids)}

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    t0 = time.perf_counter()
    try:
        bag_path = staging / out.name
        plugin = StoragePlugin.MCAP if config.storage == "mcap" else StoragePlugin.SQLITE3
        with Writer(bag_path, version=ROSBAG2_VERSION, storage_plugin=plugin) as writer:
            writer.set_custom_data("ros3d_agent.scene_id", sd.scene_id)
            writer.set_custom_data("ros3d_agent.export_config", config.to_json())
            bag = _SceneBagWriter(writer, config)
            bag.write_static()
            with tqdm(total=len(frame_ids), desc=f"to-bag {sd.scene_id}", unit="frame", disable=not progress, leave=False) as bar:
                for frame in sd.iter_frames():
                    i = index[frame.frame_id]
                    bag.write_frame(frame, config.stamp_ns(i))
                    bar.update(i + 1 - bar.n)  # skipped frames count as done too
                bar.update(len(frame_ids) - bar.n)
            bag.finish()
            if not bag.stamps:
                reasons = ", ".join(f"{k}: {v}" for k, v in sorted(sd.skipped.items()))
                raise BagExportError(f"{sd.path}: none of the {len(frame_ids)} frames is usable ({reasons})")
            writer.set_custom_data("ros3d_agent.skipped_frames", json.dumps(dict(sorted(sd.skipped_frames.items()))))
        _move_into_place(bag_path, out, config.overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    result = BagExportResult(
        path=out,
        scene_id=sd.scene_id,
        storage=config.storage,
        frames_written=len(bag.stamps),
        frames_total=len(frame_ids),
        skipped=dict(sd.skipped),
        skipped_frames=dict(sd.skipped_frames),
        topic_counts=dict(bag.counts),
        first_stamp_ns=bag.stamps[0],
        last_stamp_ns=bag.stamps[-1],
        size_bytes=_dir_size(out),
        seconds=time.perf_counter() - t0,
    )
    if result.skipped:
        log.warning("scene %s: skipped %d frame(s): %s", sd.scene_id, sum(result.skipped.values()), result.skipped)
    return result


def _move_into_place(bag_path: Path, out: Path, overwrite: bool) -> None:
    """Rename the finished bag to ``out``; an old bag there (overwrite) is removed only after that works."""
    old = None
    if out.exists():
        if not overwrite:  # appeared while we were writing
            raise BagExportError(f"{out} appeared during the export; not replacing it")
        old = bag_path.parent / f"{out.name}.old"
        out.rename(old)
    try:
        bag_path.rename(out)
    except OSError:
        if old is not None:
            old.rename(out)
        raise
    if old is not None:
        shutil.rmtree(old)
