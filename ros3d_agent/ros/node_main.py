"""Entry point ``ros3d_agent_node``: one process, one lifecycle node, a clean exit on SIGTERM/SIGINT.

Started by a launch file (which then drives the lifecycle transitions) or by ``ros3d-agent run``
(which passes ``--autostart`` to configure and activate in-process). ROS arguments
(``--ros-args --params-file f.yaml -r from:=to -p name:=value``) are handled by rcl as usual.

Process rules of the package (see ``spinning.py``): rclpy's signal handlers are off and ours only
set an event, the executor spins in its own thread, and shutdown goes deactivate → cleanup →
shutdown → executor → thread → node → context, so an interrupted process never aborts in rclpy
and never leaves a DDS participant behind.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from ros3d_agent.ros.dds_env import DdsEnvironmentError, prepare_dds_environment

__all__ = ["main", "run_node"]

EXECUTOR_THREADS = 4


class _RosLogHandler(logging.Handler):
    """Forward the package's Python ``logging`` records (workers) to the node's ROS logger."""

    def __init__(self, ros_logger: Any) -> None:
        super().__init__(level=logging.INFO)
        self.ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = f"[{record.name}] {record.getMessage()}"
            if record.exc_info:
                msg += "\n" + logging.Formatter().formatException(record.exc_info)
            if record.levelno >= logging.ERROR:
                self.ros_logger.error(msg)
            elif record.levelno >= logging.WARNING:
                self.ros_logger.warning(msg)
            else:
                self.ros_logger.info(msg)
        except Exception:  # logging must never raise into a worker
            pass


def _parse_own_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """Our options come before ``--ros-args``; everything from ``--ros-args`` on goes to rcl."""
    argv = list(argv)
    cut = argv.index("--ros-args") if "--ros-args" in argv else len(argv)
    parser = argparse.ArgumentParser(prog="ros3d_agent_node", description="the ros3d_agent lifecycle node")
    parser.add_argument("--autostart", action="store_true", help="configure and activate at start (no lifecycle manager)")
    parser.add_argument("--node-name", default="ros3d_agent", help="node name (a __node remap wins)")
    parser.add_argument("--ready-file", default="", help="write 'active' or 'failed: ...' here after autostart (tests)")
    own, _unknown = parser.parse_known_args(argv[:cut])
    return own, argv[cut:]


def _spin_until_shutdown(executor: Any, context: Any, logger: Any) -> None:
    """``executor.spin()`` that survives an entity destroyed while the executor waits on it.

    A lifecycle transition (deactivate, cleanup) destroys subscriptions and QoS event handlers from
    another thread; if the executor is in the middle of building its wait set, rclpy raises
    ``InvalidHandle`` there and ``spin()`` would end the executor thread for good. The destroyed
    entity is gone by the next iteration, so one lost iteration is all it costs.
    """
    from rclpy._rclpy_pybind11 import InvalidHandle
    from rclpy.executors import ExternalShutdownException

    while context.ok():
        try:
            executor.spin_once(timeout_sec=0.2)
        except InvalidHandle as exc:
            logger.debug(f"executor: skipped an iteration over a destroyed entity ({exc})")
        except (ExternalShutdownException, KeyboardInterrupt):
            return
        except RuntimeError as exc:  # rclpy raises RuntimeError once the executor is shut down
            if "shutdown" in str(exc).lower():
                return
            raise
        if getattr(executor, "_is_shutdown", False):
            return


def run_node(ros_args: Sequence[str], *, autostart: bool, node_name: str = "ros3d_agent", ready_file: str = "",
             stop_event: threading.Event | None = None) -> int:
    """Run the node until ``stop_event`` (or SIGTERM/SIGINT); returns the process exit code.

    Exit codes: 0 clean stop; 1 the autostart transitions failed (the reason is logged); 2 bad environment.
    """
    try:
        prepare_dds_environment()
    except DdsEnvironmentError as exc:
        print(f"ros3d_agent_node: {exc}", file=sys.stderr)
        return 2
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.signals import SignalHandlerOptions

    from ros3d_agent.ros.node import SceneAgentNode

    stop = stop_event or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())

    context = rclpy.Context()
    rclpy.init(args=["ros3d_agent_node", *ros_args], context=context, signal_handler_options=SignalHandlerOptions.NO)
    node = SceneAgentNode(node_name, context=context)
    handler = _RosLogHandler(node.get_logger())
    pkg_logger = logging.getLogger("ros3d_agent")
    pkg_logger.addHandler(handler)
    pkg_logger.setLevel(logging.INFO)
    executor = MultiThreadedExecutor(num_threads=EXECUTOR_THREADS, context=context)
    executor.add_node(node)
    spin_thread = threading.Thread(target=_spin_until_shutdown, args=(executor, context, node.get_logger()),
                                   name="ros3d-agent-executor", daemon=True)
    spin_thread.start()
    code = 0

    def report(text: str) -> None:
        if ready_file:
            with open(ready_file, "w") as f:
                f.write(text)

    try:
        if autostart:
            for name, trigger in (("configure", node.trigger_configure), ("activate", node.trigger_activate)):
                if stop.is_set():
                    break
                ret = trigger()
                if ret != TransitionCallbackReturn.SUCCESS:
                    node.get_logger().error(f"autostart: {name} failed; see the errors above. Exiting.")
                    report(f"failed: {name}")
                    code = 1
                    stop.set()
                    break
            else:
                node.get_logger().info("autostart: node is active")
                report("active")
        while not stop.wait(0.2):
            if not spin_thread.is_alive():
                node.get_logger().error("the executor thread ended unexpectedly")
                code = 1
                break
    finally:
        try:
            if node.state == "active":
                node.trigger_deactivate()
            if node.state == "inactive":
                node.trigger_cleanup()
            if node.state == "unconfigured":
                node.trigger_shutdown()
        except Exception as exc:  # shutting down regardless
            print(f"ros3d_agent_node: error while shutting down the node: {exc}", file=sys.stderr)
        executor.shutdown(timeout_sec=5.0)
        spin_thread.join(timeout=5.0)
        pkg_logger.removeHandler(handler)
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Console script ``ros3d_agent_node``."""
    args = list(sys.argv[1:] if argv is None else argv)
    own, ros_args = _parse_own_args(args)
    return run_node(ros_args, autostart=own.autostart, node_name=own.node_name, ready_file=own.ready_file)


if __name__ == "__main__":
    sys.exit(main())
