"""`ros3d-agent scenes ...`: make, import, inspect and export scenes.

Each sub-subcommand lives in its own module ``ros3d_agent.commands.scenes_<name>`` with
``add_arguments(parser)`` and ``main(args) -> int``, imported only when listed here.
"""

from __future__ import annotations

from ros3d_agent.commands.registry import add_subcommands, run_subcommand

# name -> (module, help)
SCENE_COMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("ros3d_agent.commands.scenes_generate", "render procedural indoor RGB-D scenes (scene-dir layout)"),
    "annotate": ("ros3d_agent.commands.scenes_annotate", "generate QA / situated QA / referring / captions JSONL"),
    "import-scannet": ("ros3d_agent.commands.scenes_import_scannet", "convert ScanNet scans into the scene layout"),
    "import-annotations": ("ros3d_agent.commands.scenes_import_annotations",
                           "convert ScanQA / SQA3D / ScanRefer / Multi3DRefer / Scan2Cap files to JSONL"),
    "sample": ("ros3d_agent.commands.scenes_sample", "pick frames: uniform or maximum coverage"),
    "bev": ("ros3d_agent.commands.scenes_bev", "render a top-down BEV image + hole mask of a scene"),
    "proposals": ("ros3d_agent.commands.scenes_proposals", "class-agnostic 3D box proposals; recall on scenes"),
    "to-bag": ("ros3d_agent.commands.scenes_to_bag", "write a scene as a rosbag2 (MCAP) with images, camera_info, TF"),
}


def add_arguments(parser) -> None:
    add_subcommands(parser, SCENE_COMMANDS, "scenes_command")


def main(args) -> int:
    return run_subcommand(args, "scenes_command")
