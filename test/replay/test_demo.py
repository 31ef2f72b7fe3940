"""The README demo (`ros3d-agent demo`): end to end in a real process, and its data cache."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest

from ros3d_agent.replay.demo import RANDOM_WEIGHTS_NOTICE, DemoConfig, pick_questions, prepare_demo_data
from ros3d_agent.utils.processes import ManagedProcess, child_env


def test_demo_data_is_made_once_then_reused(tmp_path):
    from ros3d_agent.scene.annotations.records import read_annotations

    cfg = DemoConfig(frames=8, width=64, height=48, cache=tmp_path / "cache", out=tmp_path / "out")
    said: list[str] = []
    first = prepare_demo_data(cfg, said.append)
    assert not first.reused and first.bag.is_dir() and first.annotations.is_file() and any("cached" in s for s in said)
    again = prepare_demo_data(cfg, said.append)
    assert again.reused and again.bag == first.bag and again.scene == first.scene
    qs = pick_questions(read_annotations(first.annotations), 0.7)
    assert [q.task for q in qs][:5] == ["qa", "ground", "multi_ground", "situated_qa", "caption"]
    assert qs[0].ask_at == 0.35 and all(q.ask_at is None for q in qs[1:])
    other = prepare_demo_data(DemoConfig(frames=9, width=64, height=48, cache=tmp_path / "cache"), said.append)
    assert not other.reused and other.bag != first.bag  # another configuration, another cache entry


@pytest.mark.ros
@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path):
    argv = [sys.executable, "-m", "ros3d_agent.commands.demo_replay", "--frames", "12", "--width", "96", "--height", "72",
            "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out"), "--checkpoint", str(tmp_path / "no_model")]
    t0 = time.monotonic()
    with ManagedProcess(argv, env=child_env(), cwd=tmp_path) as proc:
        try:
            out, _ = proc.popen.communicate(timeout=170)
        except subprocess.TimeoutExpired:
            out = "(timed out)"
    wall = time.monotonic() - t0
    assert proc.popen.returncode == 0, out[-6000:]
    assert wall < 120, f"the demo took {wall:.0f} s"
    assert "environment check (ros3d-agent doctor)" in out and "0 failures" in out  # the doctor table comes first
    assert out.count(RANDOM_WEIGHTS_NOTICE) >= 2  # said before the answers and at the end
    for i in range(1, 7):
        assert re.search(rf"^Q{i} \[(qa|ground|multi_ground|situated_qa|caption)\] ", out, re.M), f"Q{i} not printed"
    assert "IoU with ground truth" in out and "6/6 questions answered" in out
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["mode"] == "realtime" and summary["answered"] == 6 and summary["model"]["random_weights"]
    assert set(summary["metrics"]) == {"qa", "situated_qa", "ground", "multi_ground", "caption"}
    assert summary["bev"] and all((tmp_path / "out").joinpath(p.rsplit("/", 1)[-1]).is_file() for p in summary["bev"])
