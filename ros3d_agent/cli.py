"""The one ``ros3d-agent`` command.

Subcommands live in their own modules and are imported only when chosen, so
``ros3d-agent --help`` stays instant and a command that needs no torch or rclpy never
pays for importing them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ros3d_agent import __version__

# name -> (module, one-line help). Each module provides add_arguments(parser) and main(args) -> int.
COMMANDS: dict[str, tuple[str, str]] = {
    "doctor": ("ros3d_agent.doctor", "check this machine: ROS 2, DDS, interfaces, torch/CUDA, open3d, ..."),
    "roundtrip": ("ros3d_agent.commands.roundtrip", "stream images to a second ROS 2 process and check its answers"),
    "demo": ("ros3d_agent.commands.demo_replay",
             "the README demo: doctor, then a bag replayed into the live node with grounded questions"),
    "scenes": ("ros3d_agent.commands.scenes", "generate, import, sample, render BEV, propose boxes, export bags"),
    "eval": ("ros3d_agent.commands.eval", "score predictions against benchmark annotations"),
    "ask": ("ros3d_agent.commands.ask", "answer one question about a scene directory, offline"),
    "run": ("ros3d_agent.commands.run", "run the node: config, model, remaps; configure + activate"),
    "train": ("ros3d_agent.commands.train", "train the model (training/ configs; accelerate for multi-GPU)"),
    "replay": ("ros3d_agent.commands.replay",
               "evaluate the node on a rosbag: offline (deterministic) or real time (player + node + action)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ros3d-agent", description="Grounded 3D question answering for ROS 2 robots.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(importlib.import_module(args._module).main(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
