"""Text-only ("blind") baselines: how far can one get on the QA tasks without looking at the scene?

If a model can answer from the question alone, the annotations teach language priors instead of 3D
understanding, and a good score means little. These baselines measure that leak on the test split,
learning only from train answers:

* ``overall``: the single most common train answer of the task, for every question;
* ``type``: the most common train answer per (task, question type), the classic blind baseline;
* ``question``: the most common train answer to the *identical* question text (falling back to
  ``type``), which catches category priors such as "what color is the plant?" → always "green".

Scores are exact match after light normalisation (case, surrounding whitespace and punctuation),
the ScanQA/SQA3D EM convention.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

from .records import AnnotationRecord

__all__ = [
    "normalize_answer",
    "exact_match",
    "question_type",
    "TypeScore",
    "BaselineRow",
    "blind_baselines",
    "score_predictions",
    "format_baseline_table",
]

BASELINE_TASKS: tuple[str, ...] = ("qa", "situated_qa")


def normalize_answer(text: str) -> str:
    """Lower-case, collapse whitespace, strip surrounding punctuation ("Red." == "red")."""
    return re.sub(r"\s+", " ", text.strip().lower()).strip(" .,!?;:'\"")


def exact_match(prediction: str, answers: Iterable[str]) -> bool:
    """True when the normalised prediction equals any normalised reference answer."""
    p = normalize_answer(prediction)
    return any(p == normalize_answer(a) for a in answers)


def question_type(rec: AnnotationRecord) -> str:
    """``meta.qtype`` when the record has one, else the first two words (the ScanQA/SQA3D convention)."""
    if rec.qtype:
        return rec.qtype
    return " ".join(normalize_answer(rec.question).split()[:2]) or "?"


@dataclass
class TypeScore:
    """One question type of one task: test size, blind EM and the answer the baseline always gives."""

    n_test: int
    em: float
    majority: str
    majority_share_train: float


@dataclass
class BaselineRow:
    """Blind EM of one task on the test split."""

    task: str
    n_train: int
    n_test: int
    em_overall: float
    em_type: float
    em_question: float
    overall_answer: str
    per_type: dict[str, TypeScore] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _majority(counter: Counter[str]) -> tuple[str, float]:
    if not counter:
        return "", 0.0
    # ties resolved alphabetically so the baseline is deterministic
    answer, n = min(counter.items(), key=lambda kv: (-kv[1], kv[0]))
    return answer, n / sum(counter.values())


def blind_baselines(
    train: Sequence[AnnotationRecord], test: Sequence[AnnotationRecord], tasks: Sequence[str] = BASELINE_TASKS
) -> dict[str, BaselineRow]:
    """Fit the three blind baselines on ``train`` answers and score them on ``test``, per task."""
    rows: dict[str, BaselineRow] = {}
    for task in tasks:
        tr = [r for r in train if r.task == task and r.answers]
        te = [r for r in test if r.task == task and r.answers]
        overall: Counter[str] = Counter(normalize_answer(r.answers[0]) for r in tr)
        by_type: dict[str, Counter[str]] = defaultdict(Counter)
        by_question: dict[str, Counter[str]] = defaultdict(Counter)
        for r in tr:
            a = normalize_answer(r.answers[0])
            by_type[question_type(r)][a] += 1
            by_question[normalize_answer(r.question)][a] += 1
        overall_answer, _ = _majority(overall)
        type_major = {t: _majority(c) for t, c in by_type.items()}

        hits = Counter()
        per_type_hits: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for r in te:
            t = question_type(r)
            type_answer = type_major.get(t, (overall_answer, 0.0))[0]
            q_counter = by_question.get(normalize_answer(r.question))
            q_answer = _majority(q_counter)[0] if q_counter else type_answer
            hits["overall"] += exact_match(overall_answer, r.answers)
            ok = exact_match(type_answer, r.answers)
            hits["type"] += ok
            hits["question"] += exact_match(q_answer, r.answers)
            per_type_hits[t][0] += 1
            per_type_hits[t][1] += ok
        n = len(te)
        rows[task] = BaselineRow(
            task=task,
            n_train=len(tr),
            n_test=n,
            em_overall=hits["overall"] / n if n else 0.0,
            em_type=hits["type"] / n if n else 0.0,
            em_question=hits["question"] / n if n else 0.0,
            overall_answer=overall_answer,
            per_type={
                t: TypeScore(n_test=c[0], em=c[1] / c[0], majority=type_major.get(t, (overall_answer, 0.0))[0],
                             majority_share_train=type_major.get(t, ("", 0.0))[1])
                for t, c in sorted(per_type_hits.items())
            },
        )
    return rows


def score_predictions(records: Sequence[AnnotationRecord], predict: Callable[[AnnotationRecord], str | None] | Mapping[str, str]) -> dict[str, float]:
    """EM per task of any predictor (a function of the record, or ``{id: answer}``); a missing answer scores 0."""
    hits: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    for r in records:
        if not r.answers:
            continue
        pred = predict.get(r.id) if isinstance(predict, Mapping) else predict(r)
        totals[r.task] += 1
        hits[r.task] += pred is not None and exact_match(pred, r.answers)
    return {t: hits[t] / totals[t] for t in totals}


def format_baseline_table(rows: Mapping[str, BaselineRow], per_type: bool = True) -> str:
    """A plain-text table of the blind baselines (what the CLI prints)."""
    lines = [f"{'task':<12} {'n_train':>7} {'n_test':>6}  {'EM overall':>10} {'EM type':>8} {'EM question':>11}  most common answer"]
    for row in rows.values():
        lines.append(f"{row.task:<12} {row.n_train:>7} {row.n_test:>6}  {row.em_overall:>10.3f} {row.em_type:>8.3f} "
                     f"{row.em_question:>11.3f}  {row.overall_answer!r}")
        if per_type:
            for t, s in row.per_type.items():
                lines.append(f"  {t:<18} n={s.n_test:<5} EM={s.em:.3f}  always {s.majority!r} "
                             f"(train share {s.majority_share_train:.2f})")
    return "\n".join(lines)
