"""`ros3d-agent eval ...`: score predictions against benchmark annotations.

Each sub-subcommand lives in its own module ``ros3d_agent.commands.eval_<name>`` with
``add_arguments(parser)`` and ``main(args) -> int``, imported only when listed here.
"""

from __future__ import annotations

from ros3d_agent.commands.registry import add_subcommands, run_subcommand

# name -> (module, help)
EVAL_COMMANDS: dict[str, tuple[str, str]] = {
    "score": ("ros3d_agent.commands.eval_score",
              "score a predictions JSONL against annotation JSONL (ScanQA, SQA3D, ScanRefer, Multi3DRefer, Scan2Cap)"),
    "run": ("ros3d_agent.commands.eval_run",
            "run a checkpoint over an annotation split, write predictions, score them"),
}


def add_arguments(parser) -> None:
    add_subcommands(parser, EVAL_COMMANDS, "eval_command")


def main(args) -> int:
    return run_subcommand(args, "eval_command")
