"""QoS profiles chosen by name, so a mismatch with a driver is fixed in YAML, not in code.

A reliable subscriber receives nothing from a best-effort camera driver, and nothing says so
unless someone watches for it (the most common "node gives no output" report). So every
subscription and publisher of the node takes its QoS from a string parameter (the names Isaac ROS
and nvblox use), the effective profile is logged, and :func:`incompatible_qos_callbacks` turns the
middleware's incompatible-QoS event into a warning plus a counter.

Name parsing is pure Python (the parameter validation and static tests use it without rclpy);
building a profile imports ``rclpy.qos``.
"""

from __future__ import annotations

from typing import Any, Callable, Final

__all__ = [
    "QOS_NAMES",
    "QosError",
    "normalize_qos_name",
    "qos_from_name",
    "describe_qos",
    "tf_qos",
    "tf_static_qos",
    "incompatible_qos_callbacks",
]

#: Accepted names (case-insensitive). The first six are rclpy's presets; the last three are the
#: common explicit choices: keep-last reliable, keep-last best effort, and latched (transient local).
QOS_NAMES: Final = (
    "SENSOR_DATA",
    "DEFAULT",
    "SYSTEM_DEFAULT",
    "SERVICES_DEFAULT",
    "PARAMETERS",
    "PARAMETER_EVENTS",
    "RELIABLE",
    "BEST_EFFORT",
    "LATCHED",
)


class QosError(ValueError):
    """A QoS name that is not one of :data:`QOS_NAMES`, or a bad depth."""


def normalize_qos_name(name: str) -> str:
    """Upper-case, trimmed name; raises :class:`QosError` listing the valid ones."""
    if not isinstance(name, str):
        raise QosError(f"QoS name must be a string, got {type(name).__name__}")
    key = name.strip().upper().replace("-", "_")
    if key not in QOS_NAMES:
        raise QosError(f"unknown QoS {name!r}; use one of {', '.join(QOS_NAMES)}")
    return key


def qos_from_name(name: str, depth: int | None = None) -> Any:
    """The ``rclpy.qos.QoSProfile`` for ``name``; ``depth`` > 0 overrides the history depth."""
    from rclpy.qos import (
        DurabilityPolicy,
        HistoryPolicy,
        QoSProfile,
        ReliabilityPolicy,
        qos_profile_parameter_events,
        qos_profile_parameters,
        qos_profile_sensor_data,
        qos_profile_services_default,
        qos_profile_system_default,
    )

    key = normalize_qos_name(name)
    if depth is not None and (isinstance(depth, bool) or int(depth) != depth or depth < 0):
        raise QosError(f"QoS depth must be a non-negative integer, got {depth!r}")
    base = {
        "SENSOR_DATA": qos_profile_sensor_data,
        "SYSTEM_DEFAULT": qos_profile_system_default,
        "SERVICES_DEFAULT": qos_profile_services_default,
        "PARAMETERS": qos_profile_parameters,
        "PARAMETER_EVENTS": qos_profile_parameter_events,
    }.get(key)
    if base is not None:
        profile = QoSProfile(
            history=base.history, depth=base.depth, reliability=base.reliability, durability=base.durability
        )
    elif key == "BEST_EFFORT":
        profile = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
    elif key == "LATCHED":
        profile = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    else:  # DEFAULT, RELIABLE
        profile = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    if depth:
        profile.history = HistoryPolicy.KEEP_LAST
        profile.depth = int(depth)
    return profile


def describe_qos(profile: Any) -> str:
    """One line for the log: ``reliable/volatile/keep_last(10)``."""
    def short(policy: Any) -> str:
        return getattr(policy, "name", str(policy)).lower()

    history = short(profile.history)
    if history == "keep_last":
        history = f"keep_last({profile.depth})"
    return f"{short(profile.reliability)}/{short(profile.durability)}/{history}"


def tf_qos() -> Any:
    """What tf2_ros listeners use for ``/tf``: reliable, volatile, deep enough for bursts."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    return QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)


def tf_static_qos() -> Any:
    """What tf2_ros listeners use for ``/tf_static``: latched, so late joiners still get the tree."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def incompatible_qos_callbacks(topic: str, on_incompatible: Callable[[str, str], None]) -> Any:
    """Subscription event callbacks that report an incompatible publisher as ``(topic, policy)``."""
    from rclpy.event_handler import SubscriptionEventCallbacks

    def handler(info: Any) -> None:
        policy = getattr(info, "last_policy_kind", "unknown")
        on_incompatible(topic, getattr(policy, "name", str(policy)))

    return SubscriptionEventCallbacks(incompatible_qos=handler)
