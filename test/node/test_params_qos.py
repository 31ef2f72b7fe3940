"""Parameter table, validation, the shipped YAML configs, and QoS by name. No DDS."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ros3d_agent.ros.params import (
    LIVE_PARAMETERS,
    PARAMETER_NAMES,
    PARAMETERS,
    NodeParams,
    ParamError,
    check_value,
    flatten_yaml_parameters,
)
from ros3d_agent.ros.qos import QOS_NAMES, QosError, describe_qos, normalize_qos_name, qos_from_name

ROOT = Path(__file__).resolve().parents[2]
TINY = {"model.preset": "tiny", "model.allow_random_weights": True, "model.device": "cpu", "model.dtype": "float32"}


def test_table_is_consistent():
    assert len(set(PARAMETER_NAMES)) == len(PARAMETER_NAMES)
    for spec in PARAMETERS:
        assert spec.description and not spec.description.endswith(".")
        assert check_value(spec.name, spec.default) is None, spec.name
        if spec.choices:
            assert spec.default in spec.choices
    assert LIVE_PARAMETERS <= set(PARAMETER_NAMES)
    assert not any(n.startswith("model.") for n in LIVE_PARAMETERS)
    assert all(s.read_only for s in PARAMETERS if s.name.startswith("model."))


def test_defaults_need_a_model_and_say_how():
    with pytest.raises(ParamError) as err:
        NodeParams.defaults()
    assert "model.checkpoint" in str(err.value)
    p = NodeParams.from_values(TINY)
    assert p.model.preset == "tiny" and p.query.max_views == 16 and p.fixed_frame == "map"


@pytest.mark.parametrize("values, fragment", [
    ({"model.preset": "tiny"}, "allow_random_weights"),
    ({**TINY, "model.dtype": "float16"}, "float16 is not supported on cpu"),
    ({**TINY, "model.device": "gpu0"}, "not a torch device"),
    ({**TINY, "model.checkpoint": "/x"}, "not both"),
    ({**TINY, "qos.images": "FAST"}, "unknown QoS"),
    ({**TINY, "topics.color": "not a topic"}, "not a valid ROS topic"),
    ({**TINY, "topics.depth": "/camera/color/image_raw"}, "must be distinct"),
    ({**TINY, "fixed_frame": "9map"}, "not a valid TF frame"),
    ({**TINY, "sync.slop_sec": -0.1}, "below the minimum"),
    ({**TINY, "keyframes.max_count": 2.5}, "expected int"),
    ({**TINY, "query.default_views": 20}, "exceeds query.max_views"),
    ({**TINY, "input.min_depth_m": 7.0}, "must be below"),
    ({**TINY, "query.view_selection": "random"}, "not one of"),
    ({**TINY, "no.such": 1}, "unknown parameter"),
])
def test_invalid_values_are_listed_with_reasons(values, fragment):
    with pytest.raises(ParamError) as err:
        NodeParams.from_values(values)
    assert any(fragment in e for e in err.value.errors), err.value.errors


def test_ints_are_accepted_for_floats():
    assert NodeParams.from_values({**TINY, "tf.timeout_sec": 1}).tf.timeout_sec == 1.0


@pytest.mark.parametrize("name", ["workstation", "jetson_orin"])
def test_shipped_configs_declare_only_known_parameters_with_valid_values(name):
    doc = yaml.safe_load((ROOT / "config" / f"{name}.yaml").read_text())
    assert list(doc) == ["/**"], "configs apply to the node whatever its name/namespace"
    values = flatten_yaml_parameters(doc)
    unknown = set(values) - set(PARAMETER_NAMES)
    assert not unknown
    assert set(values) == set(PARAMETER_NAMES), f"missing from {name}.yaml: {set(PARAMETER_NAMES) - set(values)}"
    for k, v in values.items():
        spec = next(s for s in PARAMETERS if s.name == k)
        assert type(v) is type(spec.default), f"{name}.yaml: {k} is {type(v).__name__}, the node declares {spec.type_name}"
    p = NodeParams.from_values({**values, "model.preset": "tiny", "model.allow_random_weights": True})
    if name == "jetson_orin":
        ws = NodeParams.from_values({**flatten_yaml_parameters(yaml.safe_load((ROOT / "config/workstation.yaml").read_text())),
                                     "model.preset": "tiny", "model.allow_random_weights": True})
        assert p.query.max_views < ws.query.max_views and p.max_bytes < ws.max_bytes and p.model.dtype == "float16"


def test_qos_names():
    from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

    assert normalize_qos_name(" sensor-data ") == "SENSOR_DATA"
    with pytest.raises(QosError, match="use one of"):
        normalize_qos_name("QUICK")
    for name in QOS_NAMES:
        assert describe_qos(qos_from_name(name))
    assert qos_from_name("SENSOR_DATA").reliability == ReliabilityPolicy.BEST_EFFORT
    assert qos_from_name("RELIABLE", depth=3).depth == 3
    latched = qos_from_name("LATCHED")
    assert latched.durability == DurabilityPolicy.TRANSIENT_LOCAL and latched.reliability == ReliabilityPolicy.RELIABLE
    assert describe_qos(qos_from_name("DEFAULT")) == "reliable/volatile/keep_last(10)"
    with pytest.raises(QosError):
        qos_from_name("DEFAULT", depth=-1)
