"""`ros3d-agent eval ...`: score predictions against benchmark annotations.

Each sub-subcommand lives in its own module ``ros3d_agent.commands.eval_<name>`` with
``add_arguments(parser)`` and ``main(args) -> int``, imported only when listed here.
"""

from __future__ import annotations

import importlib

# name -> (module, help)
EVAL_COMMANDS: dict[str, tuple[str, str]] = {
    "score": ("ros3d_agent.commands.eval_score",
              "score a predictions JSONL against annotation JSONL (ScanQA, SQA3D, ScanRefer, Multi3DRefer, Scan2Cap)"),
}


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="eval_command", metavar="EVAL_COMMAND", required=True)
    for name, (module, help_text) in EVAL_COMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue  # not built yet
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_eval_module=module)
        mod.add_arguments(p)


def main(args) -> int:
    return int(importlib.import_module(args._eval_module).main(args) or 0)
