"""Start and stop rclpy nodes without leaving threads or DDS participants behind.

Interpreter exit while an executor thread still spins aborts the process (SIGABRT), and
rclpy's own SIGINT handler can leave a child blocked in its wait set. So nodes run with
their own ``Context``, rclpy's signal handlers off, an executor in a daemon thread, and a
strict shutdown order: executor, thread, node, context.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

from ros3d_agent.ros.dds_env import prepare_dds_environment


@contextmanager
def spinning_node(name: str, namespace: str = "") -> Iterator["rclpy.node.Node"]:  # noqa: F821
    """A node in a private context, spun by a background single-threaded executor."""
    prepare_dds_environment()
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    context = rclpy.Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node(name, namespace=namespace, context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, name=f"{name}-executor", daemon=True)
    thread.start()
    try:
        yield node
    finally:
        executor.shutdown(timeout_sec=2.0)
        thread.join(timeout=5.0)
        node.destroy_node()
        rclpy.try_shutdown(context=context)
