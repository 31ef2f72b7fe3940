"""QA exact match: ScanQA raw EM, SQA3D clean-up EM, EM-R, on hand-derived cases."""

from __future__ import annotations

import pytest

from ros3d_agent.eval.qa_metrics import QAMatch, exact_match_raw, match_scanqa, match_sqa3d, qa_scores, refined_match
from ros3d_agent.eval.text_normalization import scan2cap_wrap, sqa3d_clean_answer, squeeze_whitespace, strip_trailing_periods


@pytest.mark.parametrize(
    "raw, cleaned",
    [
        ("The Left.", "left"),  # lower-case, punctuation, article
        ("  Behine the   chair  ", "behind chair"),  # trim, collapse spaces, typo, article
        ("2", "two"),
        ("20", "twenty"),
        ("21", "21"),  # only 0-20 and 23 are spelt out
        ("23", "twenty-three"),
        ("none", "zero"),
        ("letf", "left"),
        ("let", "left"),
        ("a tv", "TV"),  # article dropped, then the 'tv' typo rule upper-cases it
        ("mat2", "mat"),  # a digit glued to a word is dropped
        ("1.5", "fifteen"),  # '.' removed first, then "15" is a number
        ("the a chair", "chair"),  # 'a' pass runs before the 'the' pass
        ("a a chair", "a chair"),  # one non-overlapping pass per article
        ("a the a chair", "chair"),  # ... and in the order a, an, the ('the' first would leave "a chair")
        ("Backwards!", "backward"),
        ("o'  clock", "o'clock"),
        ("red, white", "red, white"),  # ',' survives
        ("red .", "red "),  # trailing space is trimmed before '.' is removed, so it stays
    ],
)
def test_sqa3d_clean_answer(raw, cleaned):
    assert sqa3d_clean_answer(raw) == cleaned


def test_small_normalisers():
    assert strip_trailing_periods("a chair...") == "a chair"
    assert strip_trailing_periods("a. chair") == "a. chair"
    assert squeeze_whitespace(" table \t cloth\n") == "tablecloth"
    assert scan2cap_wrap("A chair. It is red, big") == "sos a chair .  it is red ,  big eos"
    assert scan2cap_wrap("") == "sos  eos"


def test_scanqa_em_is_raw_string_match():
    answers = ["red", "crimson"]
    assert exact_match_raw("red", answers)
    assert exact_match_raw("crimson", answers)
    for wrong in ("Red", "red.", " red", "red "):
        assert not exact_match_raw(wrong, answers), wrong


def test_scanqa_em_r_uses_clean_up_and_containment():
    assert match_scanqa("red", ["red"]) == QAMatch(True, True)
    assert match_scanqa("Red.", ["red"]) == QAMatch(False, True)
    assert match_scanqa("dark red chair", ["red"]) == QAMatch(False, True)
    assert match_scanqa("blue", ["red", "crimson"]) == QAMatch(False, False)


def test_refined_match():
    assert refined_match("chair", ["chair"]) == QAMatch(True, True)
    assert refined_match("brown chair", ["chair"]) == QAMatch(False, True)  # reference inside prediction
    assert refined_match("chair", ["brown chair"]) == QAMatch(False, True)  # prediction inside reference
    assert refined_match("tablecloth", ["table cloth"]) == QAMatch(False, True)  # whitespace ignored
    assert refined_match("lamp", ["chair", "table"]) == QAMatch(False, False)
    # an exact later reference is found even though an earlier one matches only partially
    assert refined_match("chair", ["brown chair", "chair"]) == QAMatch(True, True)


def test_empty_prediction_is_em_r_correct_as_in_the_reference():
    """'' is a substring of every reference: the reference code counts it as EM-R-correct."""
    assert refined_match("", ["left"]) == QAMatch(False, True)
    assert match_sqa3d(".", ["left"]) == QAMatch(False, True)


def test_sqa3d_match_cleans_both_sides():
    assert match_sqa3d("The Left.", ["left"]) == QAMatch(True, True)
    assert match_sqa3d("2", ["Two"]) == QAMatch(True, True)
    assert match_sqa3d("0", ["none"]) == QAMatch(True, True)
    assert match_sqa3d("TV", ["the tv"]) == QAMatch(True, True)
    assert match_sqa3d("brown chair", ["the chair"]) == QAMatch(False, True)
    assert match_sqa3d("right", ["left"]) == QAMatch(False, False)


def test_qa_scores_counts_missing_as_wrong():
    preds = ["The Left.", None, "brown chair", "right"]
    refs = [["left"], ["left"], ["chair"], ["left"]]
    assert qa_scores(preds, refs, match_sqa3d) == {"EM": 25.0, "EM-R": 50.0}


def test_qa_scores_rejects_bad_input():
    with pytest.raises(ValueError, match="2 predictions but 1"):
        qa_scores(["a", "b"], [["a"]], match_sqa3d)
    with pytest.raises(ValueError, match="no samples"):
        qa_scores([], [], match_sqa3d)
    with pytest.raises(ValueError, match="no reference"):
        qa_scores(["a"], [[]], match_sqa3d)
