"""Caption metrics through pycocoevalcap: BLEU-1..4, METEOR, ROUGE-L, CIDEr.

The scorers are pycocoevalcap's own (the reference evaluations vendor the same coco-caption code):
BLEU with the "closest" reference length (corpus-level), METEOR 1.5 (``-l en -norm``, Java),
ROUGE-L (β = 1.2, mean over samples), CIDEr (n = 4, σ = 6, IDF from the references of the scored
set, mean over samples). As in the reference scripts, strings are split on whitespace as given; no
PTB tokenisation happens unless asked for (``tokenize="ptb"``), and it is never asked for by the
benchmark scorers (anchors-3dlmm §8).

Java: METEOR and the PTB tokenizer run Java programs. With ``java=False`` (the CLI's ``--no-java``)
or without a ``java`` on PATH, BLEU/ROUGE-L/CIDEr are still computed, METEOR is ``None`` (never a
silent 0) and a note says why, and PTB tokenisation falls back to
:func:`~ros3d_agent.eval.text_normalization.ptb_like_tokenize` with a note. SPICE is never run.

Units: ``metrics`` are percentages (×100, CIDEr too, as the papers print them); ``per_sample``
holds each sample's score on the metric's native scale (CIDEr 0..10, others 0..1).
"""

from __future__ import annotations

import contextlib
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .text_normalization import ptb_like_tokenize

__all__ = ["CAPTION_METRICS", "CaptionScores", "caption_scores", "java_available"]

#: metric names, in the order reports list them
CAPTION_METRICS: tuple[str, ...] = ("CIDEr", "BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L")


@dataclass
class CaptionScores:
    """Corpus metrics (percent; ``None`` = not computed, see ``notes``) and per-sample scores (native scale)."""

    metrics: dict[str, float | None]
    per_sample: dict[str, list[float]]
    ids: list[str]
    notes: list[str] = field(default_factory=list)


def java_available() -> bool:
    """Whether a ``java`` executable is on PATH (METEOR and the PTB tokenizer need one)."""
    return shutil.which("java") is not None


def _validate(references: Mapping[str, Sequence[str]], hypotheses: Mapping[str, str]) -> list[str]:
    ids = list(references)
    if not ids:
        raise ValueError("no samples to score")
    if set(ids) != set(hypotheses):
        only_ref = sorted(set(ids) - set(hypotheses))[:5]
        only_hyp = sorted(set(hypotheses) - set(ids))[:5]
        raise ValueError(f"references and hypotheses cover different ids (only in references: {only_ref}, only in hypotheses: {only_hyp})")
    for k in ids:
        refs = references[k]
        if isinstance(refs, str) or not refs or not all(isinstance(r, str) for r in refs):
            raise ValueError(f"sample {k!r}: references must be a non-empty list of strings, got {refs!r}")
        if not isinstance(hypotheses[k], str):
            raise ValueError(f"sample {k!r}: hypothesis must be a string, got {hypotheses[k]!r}")
    return ids


def _ptb(gts: dict[str, list[str]], res: dict[str, list[str]], java: bool, notes: list[str]) -> tuple[dict, dict]:
    """Tokenise references and hypotheses the COCO way: Java PTB when allowed, else the Python stand-in."""
    if java and java_available():
        try:
            from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

            tok = PTBTokenizer()
            return (
                tok.tokenize({k: [{"caption": c} for c in v] for k, v in gts.items()}),
                tok.tokenize({k: [{"caption": c} for c in v] for k, v in res.items()}),
            )
        except Exception as exc:  # the Java tokenizer writes a temp file next to its jar and may fail
            notes.append(f"PTB tokenizer failed ({type(exc).__name__}: {exc}); used the pure-Python approximation")
    else:
        why = "Java disabled" if not java else "no 'java' on PATH"
        notes.append(f"PTB tokenisation by the pure-Python approximation ({why}); scores may differ slightly from Java PTB")
    return (
        {k: [ptb_like_tokenize(c) for c in v] for k, v in gts.items()},
        {k: [ptb_like_tokenize(c) for c in v] for k, v in res.items()},
    )


def _meteor(gts: dict[str, list[str]], res: dict[str, list[str]], java: bool, notes: list[str]) -> tuple[float | None, list[float]]:
    if not java:
        notes.append("METEOR not computed: Java disabled (--no-java); METEOR is reported as null")
        return None, []
    if not java_available():
        notes.append("METEOR unavailable: no 'java' on PATH (METEOR 1.5 is a Java program); METEOR is reported as null")
        return None, []
    # METEOR's line protocol breaks on newlines and '|||' inside a string; its -norm tokenisation
    # makes whitespace runs irrelevant, so collapsing them does not change the score.
    def clean(s: str) -> str:
        return " ".join(s.replace("|||", " ").split())

    try:
        from pycocoevalcap.meteor.meteor import Meteor

        scorer = Meteor()
        try:
            score, scores = scorer.compute_score({k: [clean(r) for r in v] for k, v in gts.items()},
                                                 {k: [clean(h) for h in v] for k, v in res.items()})
        except Exception:
            # compute_score holds its lock when it fails, and __del__ takes the same lock: free it, or
            # dropping the scorer would block forever
            if scorer.lock.locked():
                scorer.lock.release()
            raise
        finally:
            del scorer  # its __del__ stops the Java process
        return float(score), [float(s) for s in scores]
    except Exception as exc:
        notes.append(f"METEOR failed ({type(exc).__name__}: {exc}); METEOR is reported as null")
        return None, []


def caption_scores(
    references: Mapping[str, Sequence[str]],
    hypotheses: Mapping[str, str],
    *,
    java: bool = True,
    tokenize: str = "none",
) -> CaptionScores:
    """Score one hypothesis per sample against its references with the coco-caption metrics.

    Args:
        references: sample id → reference strings (at least one each).
        hypotheses: sample id → the hypothesis (the same ids as ``references``).
        java: allow Java (METEOR, PTB tokenizer). ``False`` skips METEOR (reported as ``None``).
        tokenize: ``"none"`` (the reference protocol: strings as given) or ``"ptb"``.

    Raises:
        ValueError: empty input, mismatched ids, a sample without references, or an unknown ``tokenize``.
    """
    if tokenize not in ("none", "ptb"):
        raise ValueError(f"tokenize must be 'none' or 'ptb', got {tokenize!r}")
    ids = _validate(references, hypotheses)
    notes: list[str] = []
    gts = {k: list(references[k]) for k in ids}
    res = {k: [hypotheses[k]] for k in ids}
    if tokenize == "ptb":
        gts, res = _ptb(gts, res, java, notes)

    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the caller's JSON
        bleu, bleu_each = Bleu(4).compute_score(gts, res, verbose=0)
        cider, cider_each = Cider().compute_score(gts, res)
        rouge, rouge_each = Rouge().compute_score(gts, res)
    meteor, meteor_each = _meteor(gts, res, java, notes)

    metrics: dict[str, float | None] = {"CIDEr": 100.0 * float(cider)}
    per_sample: dict[str, list[float]] = {"CIDEr": [float(x) for x in cider_each]}
    for i in range(4):
        metrics[f"BLEU-{i + 1}"] = 100.0 * float(bleu[i])
        per_sample[f"BLEU-{i + 1}"] = [float(x) for x in bleu_each[i]]
    metrics["METEOR"] = None if meteor is None else 100.0 * meteor
    if meteor is not None:
        per_sample["METEOR"] = meteor_each
    metrics["ROUGE-L"] = 100.0 * float(rouge)
    per_sample["ROUGE-L"] = [float(x) for x in rouge_each]
    return CaptionScores(metrics=metrics, per_sample=per_sample, ids=ids, notes=notes)
