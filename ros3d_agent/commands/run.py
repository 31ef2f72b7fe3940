"""`ros3d-agent run`: start the node with a config, a model and remaps, and activate it (no ROS 2 launch needed)."""

from __future__ import annotations


def add_arguments(parser) -> None:
    from ros3d_agent.ros.run_command import add_arguments as add

    add(parser)


def main(args) -> int:
    from ros3d_agent.ros.run_command import main as run

    return run(args)
