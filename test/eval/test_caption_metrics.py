"""Caption metrics (pycocoevalcap) and Scan2Cap @0.5 on tiny corpora with hand-computed values.

CIDEr facts used below: IDF = log(N) - log(df) over the N samples' references, each n-gram order's
cosine similarity is averaged over n = 1..4, and the result is ×10 (×100 again in our reports). An
identical hypothesis has cosine 1 for every order it has n-grams of, so a one-word answer scores
10 × 1/4 = 2.5 (reported 250) and a sentence of ≥ 4 words scores 10 (reported 1000), as long as its
n-grams are not in every sample's references (IDF 0). Only one test here starts Java (METEOR).
"""

from __future__ import annotations

import math

import pytest

from ros3d_agent.eval.caption_grounded import grounded_caption_scores
from ros3d_agent.eval.caption_metrics import caption_scores, java_available
from ros3d_agent.eval.text_normalization import ptb_like_tokenize

S1 = "the red chair near the window"
S2 = "a small blue lamp on a desk"


def test_identical_one_word_answers():
    res = caption_scores({"a": ["red"], "b": ["blue"]}, {"a": "red", "b": "blue"}, java=False)
    assert res.metrics["CIDEr"] == pytest.approx(250.0)
    assert res.metrics["BLEU-1"] == pytest.approx(100.0)
    assert res.metrics["ROUGE-L"] == pytest.approx(100.0)
    assert res.per_sample["CIDEr"] == pytest.approx([2.5, 2.5])


def test_identical_corpora_get_the_maximum():
    res = caption_scores({"a": [S1], "b": [S2]}, {"a": S1, "b": S2}, java=False)
    assert res.metrics["CIDEr"] == pytest.approx(1000.0)
    for k in ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L"):
        assert res.metrics[k] == pytest.approx(100.0), k


def test_a_wrong_caption_scores_less():
    perfect = caption_scores({"a": [S1], "b": [S2]}, {"a": S1, "b": S2}, java=False)
    wrong = caption_scores({"a": [S1], "b": [S2]}, {"a": S1, "b": "green plant"}, java=False)
    assert wrong.per_sample["CIDEr"] == pytest.approx([10.0, 0.0])  # no shared n-gram: 0
    assert wrong.metrics["CIDEr"] == pytest.approx(500.0)
    assert wrong.metrics["BLEU-4"] < perfect.metrics["BLEU-4"]
    assert wrong.metrics["ROUGE-L"] == pytest.approx(50.0)


def test_bleu1_and_rouge_l_hand_values():
    # "red chair" vs "a red chair": unigram precision 2/2, brevity penalty exp(1 - 3/2);
    # ROUGE-L: LCS 2, P = 1, R = 2/3, F_beta(1.2) = (1 + 1.44) P R / (R + 1.44 P)
    res = caption_scores({"a": ["a red chair"]}, {"a": "red chair"}, java=False)
    assert res.per_sample["BLEU-1"][0] == pytest.approx(math.exp(-0.5), rel=1e-6)
    assert res.metrics["BLEU-1"] == pytest.approx(100 * math.exp(-0.5), rel=1e-6)
    r = 2 / 3
    assert res.metrics["ROUGE-L"] == pytest.approx(100 * 2.44 * r / (r + 1.44))


def test_without_java_meteor_is_null_with_a_note():
    res = caption_scores({"a": ["red"], "b": ["blue"]}, {"a": "red", "b": "blue"}, java=False)
    assert res.metrics["METEOR"] is None
    assert any("METEOR" in n for n in res.notes)


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="different ids"):
        caption_scores({"a": ["x"]}, {"b": "x"}, java=False)
    with pytest.raises(ValueError, match="non-empty list"):
        caption_scores({"a": []}, {"a": "x"}, java=False)
    with pytest.raises(ValueError, match="non-empty list"):
        caption_scores({"a": "x"}, {"a": "x"}, java=False)
    with pytest.raises(ValueError, match="no samples"):
        caption_scores({}, {}, java=False)
    with pytest.raises(ValueError, match="tokenize"):
        caption_scores({"a": ["x"]}, {"a": "x"}, tokenize="spacy")


def test_ptb_fallback_tokenisation():
    assert ptb_like_tokenize("It's a Red-chair, isn't it? (yes).") == "it 's a red-chair is n't it -lrb- yes -rrb-"
    assert ptb_like_tokenize("Don't move the 1.5 m table...") == "do n't move the 1.5 m table"
    res = caption_scores({"a": ["The red chair."], "b": ["A lamp!"]}, {"a": "the RED chair", "b": "a lamp"},
                         java=False, tokenize="ptb")
    assert res.metrics["BLEU-1"] == pytest.approx(100.0)
    assert any("pure-Python" in n for n in res.notes)


# -- Scan2Cap @0.5 ---------------------------------------------------------------------------------
BOX_A = [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
BOX_B = [5.0, 0.0, 0.0, 1.0, 1.0, 1.0]
REFS = {"a": [S1], "b": [S2]}
GT = {"a": BOX_A, "b": BOX_B}


def test_c_at_05_zeroes_captions_whose_box_misses():
    caps = {"a": S1, "b": S2}  # both captions perfect
    hit = grounded_caption_scores(REFS, GT, caps, {"a": BOX_A, "b": BOX_B}, java=False)
    assert hit.metrics["CIDEr@0.5"] == pytest.approx(1000.0)
    assert (hit.hits, hit.misses) == (2, 0)

    # b's box has IoU 1/3 with its GT box: its perfect caption is replaced by the empty one
    miss = grounded_caption_scores(REFS, GT, caps, {"a": BOX_A, "b": [5.5, 0.0, 0.0, 1.0, 1.0, 1.0]}, java=False)
    assert miss.ious == pytest.approx([1.0, 1 / 3])
    assert (miss.hits, miss.misses) == (1, 1)
    assert miss.per_sample["CIDEr@0.5"] == pytest.approx([10.0, 0.0])
    assert miss.metrics["CIDEr@0.5"] == pytest.approx(500.0)
    assert miss.metrics["BLEU-4@0.5"] < hit.metrics["BLEU-4@0.5"]
    assert miss.metrics["METEOR@0.5"] is None


def test_c_at_05_threshold_is_inclusive_and_missing_or_boxless_are_misses():
    caps = {"a": S1, "b": S2}
    half = grounded_caption_scores(REFS, GT, caps, {"a": [0.0, 0.0, 0.0, 2.0, 1.0, 1.0], "b": BOX_B}, java=False)
    assert half.ious[0] == 0.5 and half.hits == 2
    partial = grounded_caption_scores(REFS, GT, {"a": S1}, {"a": None}, java=False)
    assert (partial.hits, partial.misses, partial.no_box, partial.missing) == (0, 0, 1, 1)
    assert partial.metrics["CIDEr@0.5"] == 0.0
    with pytest.raises(ValueError, match="without references"):
        grounded_caption_scores(REFS, GT, {"z": S1}, {"z": BOX_A}, java=False)


@pytest.mark.slow
@pytest.mark.skipif(not java_available(), reason="METEOR needs java")
def test_meteor_through_java():
    """The one test that starts Java: METEOR is a number, perfect beats wrong."""
    res = caption_scores({"a": [S1], "b": [S2]}, {"a": S1, "b": "green plant\non the | ||| floor"}, java=True)
    assert not res.notes, res.notes
    m = res.metrics["METEOR"]
    assert m is not None and 0.0 < m < 100.0
    assert res.per_sample["METEOR"][0] > 0.9 and res.per_sample["METEOR"][0] > res.per_sample["METEOR"][1]
