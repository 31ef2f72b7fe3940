"""Checking what a query asks before the model sees it, and turning it into prompt tokens.

Questions come from robots, people and other LLMs over ROS topics; a malformed one must produce a
failure answer that says what was wrong, never an exception in the model worker. Every check here
returns an error string (``"<code>: <reason>"``, codes as the node counts them) or ``None``.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ros3d_agent.inference.answer import TASKS
from ros3d_agent.model.tokenizer import PromptTokens, build_prompt
from ros3d_agent.scene.types import Box3D

__all__ = [
    "MAX_QUESTION_CHARS",
    "GROUNDING_TASKS",
    "QueryText",
    "check_question",
    "situation_text",
    "prepare_query",
]

#: longer questions (and situation texts) are refused: no benchmark question comes near this, and a
#: 100 kB "question" is a bug or an attack that would otherwise fill the LLM's context
MAX_QUESTION_CHARS = 4000
GROUNDING_TASKS = ("ground", "multi_ground")
_ALLOWED_CONTROL = {"\n", "\t", "\r"}


def check_question(text: Any, what: str = "question") -> str | None:
    """``None`` when ``text`` is a usable question, else ``"invalid_question: <why>"``."""
    if not isinstance(text, str):
        return f"invalid_question: {what} must be text, got {type(text).__name__}"
    if not text.strip():
        return f"invalid_question: {what} is empty"
    if len(text) > MAX_QUESTION_CHARS:
        return f"invalid_question: {what} is {len(text)} characters; the limit is {MAX_QUESTION_CHARS}"
    bad = sum(1 for ch in text if ch not in _ALLOWED_CONTROL and unicodedata.category(ch) in ("Cc", "Cs"))
    if bad:
        return f"invalid_question: {what} holds {bad} non-printable character(s) (control codes or unpaired surrogates)"
    return None


def situation_text(situation: Any) -> str | None:
    """The text of a situated-QA situation: a string, an annotation dict ``{"text", "position", "yaw"}``
    or an object with a ``text`` attribute (:class:`~ros3d_agent.scene.annotations.records.Situation`)."""
    if situation is None:
        return None
    if isinstance(situation, str):
        return situation
    if isinstance(situation, Mapping):
        text = situation.get("text")
        return text if isinstance(text, str) else None
    text = getattr(situation, "text", None)
    return text if isinstance(text, str) else None


@dataclass(frozen=True)
class QueryText:
    """A checked query: its prompt tokens and, for captions, the box centre the ``<coord>`` token carries."""

    prompt: PromptTokens
    coord_centre: tuple[float, float, float] | None


def prepare_query(tokenizer: Any, task: str, question: Any, situation: Any = None, box: Box3D | None = None) -> QueryText | str:
    """Check a query and build its prompt; returns the error string instead when it cannot be asked.

    ``situated_qa`` needs a situation text, ``caption`` the box of the object to describe (its centre
    becomes the ``<coord>`` token's 3D code), ``ground``/``multi_ground`` end with ``<ground>``.
    """
    if task not in TASKS:
        return f"invalid_question: unknown task {task!r}; use one of {', '.join(TASKS)}"
    err = check_question(question)
    if err:
        return err
    situation_str = None
    if task == "situated_qa":
        situation_str = situation_text(situation)
        if situation_str is None:
            return "invalid_question: situated_qa needs a situation (text saying where the agent stands and faces)"
        err = check_question(situation_str, "situation")
        if err:
            return err
    centre = None
    if task == "caption":
        if not isinstance(box, Box3D):
            return "invalid_question: caption needs the box of the object to describe (its centre is given to the model)"
        centre = tuple(float(v) for v in box.center)
    try:
        prompt = build_prompt(tokenizer, task=task, question=question, situation=situation_str)  # type: ignore[arg-type]
    except ValueError as exc:
        return f"invalid_question: {exc}"
    return QueryText(prompt=prompt, coord_centre=centre)  # type: ignore[arg-type]
