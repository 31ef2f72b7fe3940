"""Helpers of the replay tests (importable: conftest puts this folder on sys.path)."""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

ROBOT_TOPICS = {"color": "/head_cam/color/image_raw", "depth": "/head_cam/aligned_depth_to_color/image_raw",
                "color_info": "/head_cam/color/camera_info"}
ROBOT_FIXED_FRAME = "world"


@dataclass(frozen=True)
class ReplayData:
    scene: Path
    questions: Path
    bag: Path
    robot_bag: Path
    n_questions: int


def write_questions(scene: Path, out: Path) -> int:
    """Two questions per task from the scene's annotations; one QA asked 0.5 s into the bag."""
    from ros3d_agent.scene.annotations.graph import load_scene_graph
    from ros3d_agent.scene.annotations.pipeline import AnnotateConfig, annotate_graphs

    records = annotate_graphs({scene.name: load_scene_graph(scene)}, AnnotateConfig(per_scene=4, seed=3))
    picked = []
    for task in ("qa", "ground", "multi_ground", "situated_qa", "caption"):
        rs = [r for r in records if r.task == task]
        if task == "multi_ground":
            rs = sorted(rs, key=lambda r: not r.boxes)  # targets first
        picked += rs[:2]
    lines = []
    for i, r in enumerate(picked):
        d = r.to_dict()
        if i == 0:
            d["ask_at"] = 0.5
        lines.append(json.dumps(d))
    out.write_text("\n".join(lines) + "\n")
    return len(lines)


def copy_bag(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def mcap_file(bag: Path) -> Path:
    return next(bag.glob("*.mcap"))


def run_cli(args: list[str], timeout: float = 240.0) -> tuple[int | None, str]:
    """``python -m ros3d_agent.commands.replay ARGS`` as a reaped child process; (exit code, output)."""
    import subprocess

    from ros3d_agent.utils.processes import ManagedProcess, child_env

    proc = ManagedProcess([sys.executable, "-m", "ros3d_agent.commands.replay", *args], env=child_env())
    out = ""
    with proc:
        try:
            out, _ = proc.popen.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            out = f"(timed out after {timeout:.0f} s)"
    return proc.popen.returncode, out
