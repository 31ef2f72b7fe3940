"""Nested subcommands (``ros3d-agent scenes generate``, ``ros3d-agent eval score``) from a name table.

Each entry names a module with ``add_arguments(parser)`` and ``main(args) -> int``; modules are
imported when the parser is built (they import their heavy libraries only inside ``main``).
"""

from __future__ import annotations

import argparse
import importlib

CommandTable = dict[str, tuple[str, str]]  # name -> (module, one-line help)


def add_subcommands(parser: argparse.ArgumentParser, table: CommandTable, dest: str) -> None:
    sub = parser.add_subparsers(dest=dest, metavar=dest.upper(), required=True)
    for name, (module, help_text) in table.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(**{f"_{dest}_module": module})
        importlib.import_module(module).add_arguments(p)


def run_subcommand(args: argparse.Namespace, dest: str) -> int:
    return int(importlib.import_module(getattr(args, f"_{dest}_module")).main(args) or 0)
