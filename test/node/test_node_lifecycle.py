"""Lifecycle and parameters of the node, in this process (a private rclpy context, loopback DDS).

Configure refuses bad parameters with readable reasons, activate fails cleanly on a model that
cannot load, deactivate releases the model and the memory, runtime parameter changes are checked.
Plus the start-up of ``ros3d-agent run`` as a child process (exit codes and messages).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from node_support import engine_missing_reason
from rclpy.parameter import Parameter

from ros3d_agent.ros.run_command import RunError, RunOptions, build_ros_args, resolve_config

pytestmark = pytest.mark.ros

TINY = [("model.preset", "tiny"), ("model.allow_random_weights", True), ("model.device", "cpu"), ("model.dtype", "float32")]


@pytest.fixture
def make_node():
    """Build SceneAgentNode instances in a private context; always shut down in order."""
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    from ros3d_agent.ros.node import SceneAgentNode

    context = rclpy.Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    nodes = []

    def make(overrides, name="lifecycle_probe"):
        node = SceneAgentNode(name, context=context,
                              parameter_overrides=[Parameter(k, value=v) for k, v in overrides])
        nodes.append(node)
        return node

    try:
        yield make
    finally:
        for node in nodes:
            if node.state == "active":
                node.trigger_deactivate()
            node.destroy_node()
        rclpy.try_shutdown(context=context)


def test_configure_refuses_bad_parameters(make_node):
    from rclpy.lifecycle import TransitionCallbackReturn

    node = make_node([("model.preset", "tiny"), ("qos.images", "FAST"), ("sync.slop_sec", -1.0)], "bad_params")
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert node.state == "unconfigured"
    typed = make_node([*TINY, ("keyframes.max_count", "many")], "bad_type")  # wrong type in a params file
    assert any("keyframes.max_count" in p for p in typed._param_problems)
    assert typed.trigger_configure() == TransitionCallbackReturn.FAILURE


def test_configure_creates_outputs_and_runtime_parameter_rules(make_node):
    from rclpy.lifecycle import TransitionCallbackReturn

    node = make_node(TINY, "configure_probe")
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.state == "inactive"
    topics = {n for n, _ in node.get_publisher_names_and_types_by_node(node.get_name(), node.get_namespace())}
    assert {"/configure_probe/answer", "/configure_probe/objects", "/configure_probe/markers", "/diagnostics"} <= topics
    ok = node.set_parameters([Parameter("keyframes.max_count", value=5)])[0]
    assert ok.successful
    bad = node.set_parameters([Parameter("keyframes.max_count", value=0)])[0]
    assert not bad.successful and "out of range" in bad.reason  # the descriptor's range
    choice = node.set_parameters([Parameter("query.view_selection", value="random")])[0]
    assert not choice.successful and "not one of" in choice.reason  # our check of the table
    ro = node.set_parameters([Parameter("model.device", value="cuda")])[0]
    assert not ro.successful  # read-only: the model is fixed for the process
    assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS and node.state == "unconfigured"


@pytest.mark.skipif(engine_missing_reason() is not None, reason=str(engine_missing_reason()))
def test_activate_with_a_missing_checkpoint_fails_cleanly_then_tiny_works(make_node, tmp_path):
    from rclpy.lifecycle import TransitionCallbackReturn

    node = make_node([("model.checkpoint", str(tmp_path / "no_such_checkpoint")), ("model.device", "cpu"),
                      ("model.dtype", "float32")], "bad_ckpt")
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.FAILURE
    assert node.state == "inactive" and node.snapshot().model == {"loaded": False}

    good = make_node(TINY, "tiny_probe")
    assert good.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert good.trigger_activate() == TransitionCallbackReturn.SUCCESS and good.state == "active"
    snap = good.snapshot()
    assert snap.model["loaded"] and snap.model["load_s"] >= 0
    live = good.set_parameters([Parameter("keyframes.min_translation_m", value=0.5)])[0]
    assert live.successful and good._rt.memory.policy.min_translation_m == 0.5
    frozen = good.set_parameters([Parameter("topics.color", value="/other")])[0]
    assert not frozen.successful and "deactivate" in frozen.reason
    assert good.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert good.state == "inactive" and good.snapshot().model == {"loaded": False}
    assert good.trigger_activate() == TransitionCallbackReturn.SUCCESS  # and back
    assert good.trigger_deactivate() == TransitionCallbackReturn.SUCCESS


def test_run_command_builds_the_launch_equivalent_arguments(tmp_path):
    args = build_ros_args(RunOptions(config="jetson_orin", preset="tiny", allow_random_weights=True, namespace="robot1",
                                     remaps=["/camera/color/image_raw:=/head/rgb"], params=["query.max_views:=4"],
                                     use_sim_time=True, device="cpu"))
    assert args[:2] == ["--ros-args", "--params-file"] and args[2].endswith("config/jetson_orin.yaml")
    joined = " ".join(args)
    for part in ("-r __ns:=/robot1", "-r /camera/color/image_raw:=/head/rgb", "-p model.preset:=tiny",
                 "-p model.allow_random_weights:=true", "-p use_sim_time:=true", "-p query.max_views:=4", "-p model.device:=cpu"):
        assert part in joined
    assert resolve_config("workstation.yaml") == resolve_config("workstation")
    for bad in (RunOptions(config="nope"), RunOptions(remaps=["nonsense"]), RunOptions(namespace="1bad"), RunOptions(params=["x"])):
        with pytest.raises(RunError):
            build_ros_args(bad)


def test_run_command_exit_codes_and_messages(tmp_path):
    from ros3d_agent.utils.processes import child_env

    bad = subprocess.run([sys.executable, "-m", "ros3d_agent.ros.run_command", "--config", "no_such_config"],
                         capture_output=True, text=True, timeout=60, env=child_env())
    assert bad.returncode == 2 and "no config named 'no_such_config'" in bad.stderr
    unconfigured = subprocess.run([sys.executable, "-m", "ros3d_agent.ros.run_command", "--device", "cpu", "--dtype", "float32"],
                                  capture_output=True, text=True, timeout=90, env=child_env())
    out = unconfigured.stdout + unconfigured.stderr
    assert unconfigured.returncode == 1 and "set model.checkpoint" in out and "configure failed" in out
