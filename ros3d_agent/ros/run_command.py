"""``ros3d-agent run``: the launch file's start-up without ROS 2 ``launch``.

``launch/agent.launch.py`` starts ``ros3d_agent_node`` with a params file, topic remaps, a
namespace and ``use_sim_time``, then drives configure → activate. ROS 2 ``launch`` cannot be
installed beside the PyPI wheels, so this module builds the same ``--ros-args`` from the same
options and runs the node in this process with ``--autostart`` semantics. Both share
:func:`build_ros_args`' vocabulary: config names resolve to ``config/<name>.yaml``, remaps are
``from:=to``, model options become ``model.*`` parameters.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["RunOptions", "resolve_config", "build_ros_args", "add_arguments", "options_from_args", "main", "PACKAGE"]

PACKAGE = "ros3d_agent"
_REMAP_RE = re.compile(r"^[~/A-Za-z_][A-Za-z0-9_/~]*:=[~/A-Za-z_][A-Za-z0-9_/~]*$")
_NS_RE = re.compile(r"^(/[A-Za-z_][A-Za-z0-9_]*)*/?$|^[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$")


class RunError(ValueError):
    """Options that cannot make a valid start-up (the message says which)."""


@dataclass
class RunOptions:
    """What ``ros3d-agent run`` (and the launch file) can set."""

    config: str = "workstation"
    checkpoint: str = ""
    preset: str = ""
    allow_random_weights: bool = False
    device: str = ""
    dtype: str = ""
    namespace: str = ""
    node_name: str = "ros3d_agent"
    remaps: list[str] = field(default_factory=list)
    params: list[str] = field(default_factory=list)
    use_sim_time: bool = False
    log_level: str = ""
    ready_file: str = ""


def config_dirs() -> list[Path]:
    """Where named configs are looked up: the installed share dir, then the source tree."""
    dirs: list[Path] = []
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            dirs.append(Path(get_package_share_directory(PACKAGE)) / "config")
        except (PackageNotFoundError, ValueError, OSError):
            pass
    except ImportError:
        pass
    dirs.append(Path(__file__).resolve().parents[2] / "config")
    return dirs


def resolve_config(name_or_path: str) -> Path:
    """A params file: an existing path, or a name like ``workstation`` / ``jetson_orin.yaml``."""
    p = Path(name_or_path).expanduser()
    if p.is_file():
        return p.resolve()
    if os.sep in name_or_path or name_or_path.startswith("."):
        raise RunError(f"config file {name_or_path} does not exist")
    stem = name_or_path[:-5] if name_or_path.endswith(".yaml") else name_or_path
    tried = []
    for d in config_dirs():
        cand = d / f"{stem}.yaml"
        tried.append(str(cand))
        if cand.is_file():
            return cand
    raise RunError(f"no config named {name_or_path!r} (looked for {', '.join(tried)})")


def build_ros_args(opts: RunOptions) -> list[str]:
    """``--ros-args ...`` equivalent to the launch file for these options."""
    args = ["--ros-args"]
    if opts.config:
        args += ["--params-file", str(resolve_config(opts.config))]
    if opts.namespace:
        ns = opts.namespace if opts.namespace.startswith("/") else "/" + opts.namespace
        if not _NS_RE.match(ns) or ns.endswith("/") and ns != "/":
            raise RunError(f"namespace {opts.namespace!r} is not a valid ROS namespace")
        args += ["-r", f"__ns:={ns}"]
    if opts.node_name:
        args += ["-r", f"__node:={opts.node_name}"]
    for remap in opts.remaps:
        if not _REMAP_RE.match(remap):
            raise RunError(f"remap {remap!r} must look like from:=to (ROS names on both sides)")
        args += ["-r", remap]
    overrides: list[tuple[str, str]] = []
    if opts.checkpoint:
        overrides.append(("model.checkpoint", opts.checkpoint))
        overrides.append(("model.preset", ""))
    if opts.preset:
        overrides.append(("model.preset", opts.preset))
        if not opts.checkpoint:
            overrides.append(("model.checkpoint", ""))
    if opts.allow_random_weights:
        overrides.append(("model.allow_random_weights", "true"))
    if opts.device:
        overrides.append(("model.device", opts.device))
    if opts.dtype:
        overrides.append(("model.dtype", opts.dtype))
    if opts.use_sim_time:
        overrides.append(("use_sim_time", "true"))
    for prm in opts.params:
        if ":=" not in prm:
            raise RunError(f"parameter {prm!r} must look like name:=value")
        name, value = prm.split(":=", 1)
        overrides.append((name.strip(), value))
    for name, value in overrides:
        args += ["-p", f"{name}:={value if value != '' else chr(39) * 2}"]
    if opts.log_level:
        args += ["--log-level", opts.log_level]
    return args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ros3d-agent run`` (mirrors the launch arguments)."""
    parser.add_argument("--config", default="workstation", help="params file: a path or a name in config/ (workstation, jetson_orin)")
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--checkpoint", default="", help="local checkpoint directory (overrides model.checkpoint)")
    model.add_argument("--preset", default="", help="random-init preset for plumbing tests, e.g. tiny (needs --allow-random-weights)")
    parser.add_argument("--allow-random-weights", action="store_true", help="allow --preset (answers are meaningless)")
    parser.add_argument("--device", default="", help="torch device override (cpu, cuda, cuda:N)")
    parser.add_argument("--dtype", default="", choices=("", "float32", "float16", "bfloat16"), help="dtype override")
    parser.add_argument("--namespace", default="", help="ROS namespace of the node")
    parser.add_argument("--node-name", default="ros3d_agent", help="ROS node name")
    parser.add_argument("--remap", action="append", default=[], metavar="FROM:=TO",
                        help="topic remap, repeatable (e.g. /camera/color/image_raw:=/head/rgb)")
    parser.add_argument("--param", "-p", action="append", default=[], metavar="NAME:=VALUE", help="parameter override, repeatable")
    parser.add_argument("--use-sim-time", action="store_true", help="use /clock (bag replay with --clock)")
    parser.add_argument("--log-level", default="", help="ROS log level (debug, info, warn, error)")
    parser.add_argument("--ready-file", default="", help=argparse.SUPPRESS)


def options_from_args(args: argparse.Namespace) -> RunOptions:
    return RunOptions(config=args.config, checkpoint=args.checkpoint, preset=args.preset,
                      allow_random_weights=args.allow_random_weights, device=args.device, dtype=args.dtype,
                      namespace=args.namespace, node_name=args.node_name, remaps=list(args.remap), params=list(args.param),
                      use_sim_time=args.use_sim_time, log_level=args.log_level, ready_file=args.ready_file)


def main(args: argparse.Namespace) -> int:
    """Run the node with these options until SIGINT/SIGTERM; exit code as ``run_node``."""
    try:
        opts = options_from_args(args)
        ros_args = build_ros_args(opts)
    except RunError as exc:
        print(f"ros3d-agent run: {exc}", file=sys.stderr)
        return 2
    from ros3d_agent.ros.node_main import run_node

    print("ros3d-agent run: ros3d_agent_node " + " ".join(ros_args), flush=True)
    return run_node(ros_args, autostart=True, node_name=opts.node_name, ready_file=opts.ready_file)


def _standalone(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ros3d-agent run", description="run the node with a config, model and remaps")
    add_arguments(parser)
    return main(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(_standalone())
