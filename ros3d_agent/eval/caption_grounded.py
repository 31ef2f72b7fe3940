"""Scan2Cap captioning at an IoU threshold: CIDEr@0.5, BLEU-4@0.5, METEOR@0.5, ROUGE-L@0.5.

Definition (Scan2Cap ``eval_helper.py``; Video-3D-LLM ``model_scan2cap.py`` / ``eval_scan2cap.py``,
anchors-3dlmm §1.3): one sample per (scene, object), references = all descriptions of the object.
A caption counts only when the box it was produced for overlaps the GT box with IoU >= 0.5;
otherwise the sample's caption is the *empty* caption, and every sample is then scored together:

* all strings are wrapped ``"sos " + text + " eos"`` with ``.``/``,`` spaced out and lower-cased
  (:func:`~ros3d_agent.eval.text_normalization.scan2cap_wrap`), no PTB tokenisation;
* CIDEr/BLEU/METEOR/ROUGE-L are computed over all samples (CIDEr IDF from all references).

So a missed object's hypothesis is ``"sos  eos"``. Its CIDEr is exactly 0 ("sos"/"eos" occur in
every reference, so their IDF weight is 0, and the bigram "sos eos" occurs in none); its BLEU,
METEOR and ROUGE-L are small but not 0, and it still counts in the corpus BLEU, exactly as in the
reference code (which substitutes ``"sos eos"`` for undetected objects). Missing predictions and
captions that carry no box are treated as misses and counted separately.

IoU >= threshold follows Video-3D-LLM (``--threshold 0.5``); the original Scan2Cap code tests
``IoU > 0.5``, which differs only for an IoU of exactly 0.5.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ros3d_agent.scene.iou import aabb_iou

from .caption_metrics import CAPTION_METRICS, caption_scores
from .text_normalization import scan2cap_wrap

__all__ = ["GroundedCaptionScores", "grounded_caption_scores"]

Box = Sequence[float]


@dataclass
class GroundedCaptionScores:
    """Metrics at the IoU threshold (percent; ``None`` = not computed) and what happened to each sample.

    ``ious[i]`` is ``None`` when sample ``i`` had no prediction or no box. ``hits`` passed the
    threshold, ``misses`` had a box below it, ``no_box`` had a caption without a box, ``missing``
    had no prediction at all; the last three were scored as the empty caption.
    """

    metrics: dict[str, float | None]
    per_sample: dict[str, list[float]]
    ids: list[str]
    ious: list[float | None]
    hits: int
    misses: int
    no_box: int
    missing: int
    notes: list[str] = field(default_factory=list)


def grounded_caption_scores(
    references: Mapping[str, Sequence[str]],
    gt_boxes: Mapping[str, Box],
    captions: Mapping[str, str],
    pred_boxes: Mapping[str, Box | None],
    *,
    iou_threshold: float = 0.5,
    java: bool = True,
) -> GroundedCaptionScores:
    """Scan2Cap metrics @``iou_threshold`` (see the module docstring).

    Args:
        references: sample id → reference descriptions (raw; wrapping happens here).
        gt_boxes: sample id → the object's GT box ``[cx, cy, cz, sx, sy, sz]``.
        captions: sample id → predicted caption (raw); ids absent here are missing predictions.
        pred_boxes: sample id → the box the caption was produced for.
        java: allow Java (METEOR); without it METEOR@k is ``None`` with a note.

    Raises:
        ValueError: a reference id without a GT box, a caption for an unknown id, or a bad threshold.
    """
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    ids = list(references)
    no_gt_box = [k for k in ids if k not in gt_boxes]
    if no_gt_box:
        raise ValueError(f"{len(no_gt_box)} sample(s) without a GT box, e.g. {no_gt_box[:5]}")
    unknown = [k for k in captions if k not in references]
    if unknown:
        raise ValueError(f"{len(unknown)} caption(s) for ids without references, e.g. {unknown[:5]}")

    hyps: dict[str, str] = {}
    ious: list[float | None] = []
    hits = misses = no_box = missing = 0
    for k in ids:
        if k not in captions:
            missing += 1
            ious.append(None)
            hyps[k] = scan2cap_wrap("")
            continue
        box = pred_boxes.get(k)
        if box is None:
            no_box += 1
            ious.append(None)
            hyps[k] = scan2cap_wrap("")
            continue
        iou = aabb_iou(box, gt_boxes[k])
        ious.append(iou)
        if iou >= iou_threshold:
            hits += 1
            hyps[k] = scan2cap_wrap(captions[k])
        else:
            misses += 1
            hyps[k] = scan2cap_wrap("")

    refs = {k: [scan2cap_wrap(r) for r in references[k]] for k in ids}
    scores = caption_scores(refs, hyps, java=java, tokenize="none")
    suffix = f"@{iou_threshold:g}"
    metrics = {f"{name}{suffix}": scores.metrics[name] for name in CAPTION_METRICS}
    per_sample = {f"{name}{suffix}": v for name, v in scores.per_sample.items()}
    return GroundedCaptionScores(
        metrics=metrics,
        per_sample=per_sample,
        ids=ids,
        ious=ious,
        hits=hits,
        misses=misses,
        no_box=no_box,
        missing=missing,
        notes=list(scores.notes),
    )
