"""The Answer contract round-trips through JSON and rejects nonsense."""

from __future__ import annotations

import json

import pytest

from ros3d_agent.inference.answer import Answer, GroundedBox
from ros3d_agent.scene.types import Box3D


def test_answer_json_round_trip():
    ans = Answer(question="where is the red mug?", task="ground", text="", query_id="q7",
                 objects=[GroundedBox(Box3D.from_list([1, 2, 0.5, 0.1, 0.1, 0.12]), 0.8, 3, "mug")],
                 keyframe_stamps=[10, 20], timings={"encode": 0.01, "llm": 0.2})
    back = Answer.from_dict(json.loads(ans.to_json()))
    assert back == ans
    assert back.objects[0].box.to_list() == [1, 2, 0.5, 0.1, 0.1, 0.12]


def test_failure_answer():
    ans = Answer.failure("what is here?", "qa", "no keyframes yet")
    assert not ans.success and ans.error == "no keyframes yet" and ans.to_dict()["objects"] == []


@pytest.mark.parametrize("kwargs", [{"task": "dance"}, {"task": "qa", "timings": {"llm": -1.0}},
                                    {"task": "qa", "timings": {"llm": float("nan")}}])
def test_invalid_answers_are_rejected(kwargs):
    with pytest.raises(ValueError):
        Answer(question="q", **kwargs)
