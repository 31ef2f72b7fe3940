"""launch/replay_eval.launch.py, checked statically (ROS 2 ``launch`` is not installable beside the wheels).

It must hand ``ros3d-agent replay`` only options that command has, and ``agent.launch.py`` only
arguments that file declares, with the same camera topics.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TREE = ast.parse((ROOT / "launch" / "replay_eval.launch.py").read_text())
AGENT = ast.parse((ROOT / "launch" / "agent.launch.py").read_text())


def _constant(tree: ast.Module, name: str):
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"no {name}")


def _declared(tree: ast.Module) -> set[str]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "DeclareLaunchArgument" and node.args:
            if isinstance(node.args[0], ast.Constant):
                out.add(node.args[0].value)
    return out


def test_replay_options_exist_in_the_command():
    from ros3d_agent.commands.replay import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    known = {s for a in parser._actions for s in a.option_strings}
    used = {n.value for n in ast.walk(TREE) if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.startswith("--")}
    assert used and used <= known, used - known
    assert _constant(TREE, "REPLAY_COMMAND") == ["ros3d-agent", "replay"]


def test_node_arguments_and_topics_match_agent_launch():
    topic_args = _constant(AGENT, "TOPIC_ARGUMENTS")
    options = _constant(TREE, "TOPIC_OPTIONS")
    assert {k: v[1] for k, v in options.items()} == topic_args
    agent_args = _declared(AGENT) | set(topic_args)
    assert set(_constant(TREE, "NODE_ARGUMENTS")) <= agent_args
    assert {"use_sim_time", "autostart"} <= agent_args
    mine = _declared(TREE) | set(options)
    assert {"mode", "bag", "questions", "out", "rate", "fixed_frame", "scenario", *_constant(TREE, "NODE_ARGUMENTS")} <= mine
