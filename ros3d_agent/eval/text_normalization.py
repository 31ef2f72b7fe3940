"""Answer and caption clean-up, exactly as the reference evaluations do it.

The benchmarks disagree on how much a string is normalised before matching, and the published
numbers depend on it (anchors-3dlmm §1.3, §8), so each convention gets its own function and none is
"improved":

* ScanQA EM compares the *raw* prediction with the raw references (no function here on purpose);
  only its caption metrics see the prediction with trailing periods removed
  (:func:`strip_trailing_periods`).
* SQA3D EM compares after LEO's ``clean_answer`` (:func:`sqa3d_clean_answer`): lower-case, drop
  punctuation except ``, ' - :``, fix a few typos, spell out numbers, drop articles.
* EM-R ("refined" EM, Ross3D after LEO) compares with all whitespace removed
  (:func:`squeeze_whitespace`), see :func:`ros3d_agent.eval.qa_metrics.refined_match`.
* Scan2Cap captions are wrapped as ``"sos <caption> eos"`` with ``.`` and ``,`` spaced out
  (:func:`scan2cap_wrap`) and never PTB-tokenised.
* :func:`ptb_like_tokenize` is a pure-Python stand-in for the Java PTB tokenizer, used only when a
  caller asks for COCO-style tokenisation on a machine without Java.
"""

from __future__ import annotations

import re

__all__ = [
    "strip_trailing_periods",
    "sqa3d_clean_answer",
    "squeeze_whitespace",
    "scan2cap_wrap",
    "ptb_like_tokenize",
    "PTB_PUNCTUATION",
]


def strip_trailing_periods(text: str) -> str:
    """ScanQA's caption-metric input: the prediction with every trailing ``.`` removed (``rstrip('.')``)."""
    return text.rstrip(".")


# -- SQA3D / LEO clean-up ------------------------------------------------------------------------
# Each step is one regex substitution applied in order; the order matters (e.g. the article passes
# run one after another, so "the a chair" loses both articles), so the steps are data, applied in a loop.

_LAYOUT_STEPS: tuple[tuple[str, str], ...] = (
    (r"[ ]+$", ""),  # trailing spaces (spaces only, not tabs)
    (r"^[ ]+", ""),  # leading spaces
    (r" {2,}", " "),
    (r"\.[ ]{2,}", ". "),
    (r"[^a-zA-Z0-9,'\s\-:]+", ""),  # punctuation except , ' - : (and any non-ASCII letter)
    # The reference then maps 'ç'->'c' and '’'->"'": both characters are already gone after the
    # line above, so those two steps can never fire and are left out.
)

_TYPO_FIXES: tuple[tuple[str, str], ...] = (
    ("letf", "left"),
    ("let", "left"),
    ("tehre", "there"),
    ("rigth", "right"),
    ("rght", "right"),
    ("behine", "behind"),
    ("tv", "TV"),  # upper-cased after lower-casing: harmless, both sides get it
    ("chai", "chair"),
    ("wasing", "washing"),
    ("waslked", "walked"),
    ("oclock", "o'clock"),
)

_NUMBER_WORDS: tuple[str, ...] = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen", "twenty",
)  # fmt: skip


def _build_steps() -> tuple[tuple[re.Pattern[str], str], ...]:
    steps: list[tuple[str, str]] = list(_LAYOUT_STEPS)
    steps += [(rf"\b{wrong}\b", right) for wrong, right in _TYPO_FIXES]
    steps.append((r"\bo'[ ]+clock\b", "o'clock"))
    # numbers as words: 0..20, "none" -> "zero", and 23 (the only larger number the reference spells out)
    steps.append((r"\b0\b", "zero"))
    steps.append((r"\bnone\b", "zero"))
    steps += [(rf"\b{i}\b", word) for i, word in enumerate(_NUMBER_WORDS) if i > 0]
    steps.append((r"\b23\b", "twenty-three"))
    # a single digit glued to a word ("no1", "mat2") is dropped
    steps.append((r"\b([a-zA-Z]+)([0-9])\b", r"\g<1>"))
    # articles, one pass each, in this order
    steps += [(rf"\b{article}\b ([a-zA-Z]+)", r"\g<1>") for article in ("a", "an", "the")]
    steps.append((r"\bbackwards\b", "backward"))
    return tuple((re.compile(p), r) for p, r in steps)


_SQA3D_STEPS = _build_steps()


def sqa3d_clean_answer(text: str) -> str:
    """LEO's ``clean_answer`` as used by the SQA3D evaluations (Video-3D-LLM, Ross3D).

    Lower-cases, trims spaces, removes punctuation other than ``, ' - :``, fixes the dataset's common
    typos, writes numbers 0-20 (and 23, and "none") as words, drops a digit glued to a word, drops
    the articles a/an/the before a word, and maps "backwards" to "backward". Applied to both the
    prediction and the reference before comparing.
    """
    out = text.lower()
    for pattern, repl in _SQA3D_STEPS:
        out = pattern.sub(repl, out)
    return out


def squeeze_whitespace(text: str) -> str:
    """All whitespace removed (``''.join(text.split())``): EM-R compares strings this way."""
    return "".join(text.split())


def scan2cap_wrap(text: str) -> str:
    """A Scan2Cap caption as scored: ``"sos " + caption + " eos"``, ``.``/``,`` spaced out, lower-cased.

    Applied to predictions and references alike (Video-3D-LLM ``eval_scan2cap.py``, after LEO and
    the original Scan2Cap corpus format). An empty caption becomes ``"sos  eos"``.
    """
    return "sos " + text.replace(".", " . ").replace(",", " , ").lower() + " eos"


#: tokens the pycocoevalcap PTB tokenizer drops after tokenising. Its list also names the bracket
#: tokens, but in upper case ("-LRB-") while the tokenizer runs with ``-lowerCase``, so brackets
#: survive as "-lrb-"/"-rrb-"; the effective set is this one.
PTB_PUNCTUATION: frozenset[str] = frozenset(["''", "'", "``", "`", ".", "?", "!", ",", ":", "-", "--", "...", ";"])

_PTB_TOKEN = re.compile(
    r"(?:n't)"  # clitic "n't" splits off its verb
    r"|(?:'(?:s|re|ve|ll|d|m))(?![a-z])"  # other clitics
    r"|[a-z0-9]+(?:[-.][a-z0-9]+)*(?=n't)"  # the verb before "n't"
    r"|[a-z0-9]+(?:[-.][a-z0-9]+)*"  # words, hyphenated words, decimals
    r"|\.\.\.|--|``|''"
    r"|[^\sa-z0-9]"  # any other single symbol
)
_PTB_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "{": "-lcb-", "}": "-rcb-"}


def ptb_like_tokenize(text: str) -> str:
    """Approximate the Java PTB tokenizer as pycocoevalcap runs it (``-lowerCase``, punctuation dropped).

    Used only when COCO-style tokenisation is requested and Java is unavailable. It agrees with the
    Java tokenizer on ordinary English (clitics ``n't``/``'s`` split, hyphenated words kept, brackets
    mapped to ``-lrb-``/``-rrb-``), but it is an approximation: results computed with it are flagged.
    """
    tokens = []
    for tok in _PTB_TOKEN.findall(text.lower()):
        tok = _PTB_BRACKETS.get(tok, tok)
        if tok not in PTB_PUNCTUATION:
            tokens.append(tok)
    return " ".join(tokens)
