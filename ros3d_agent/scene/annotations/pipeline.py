"""From a folder of synthetic scenes to ``annotations/{train,val,test}.jsonl`` + ``summary.json``.

Per scene, every task family proposes all the well-posed samples it can (:mod:`.generators`); a
dataset-wide balancer then keeps ``per_scene`` of them per task, always taking the question type
that is furthest behind and, within it, the candidate whose answer (and answer for that category)
has been given least so far. Balancing across the dataset rather than per scene is what makes the
answer distribution of each question type flat: one room alone rarely offers a "4" to count.

Candidate pools depend only on ``(seed, scene_id, task)`` and the graph, never on which scenes came
before, so any sample can be regenerated from its scene graph alone (:func:`graph_oracle_predictions`).
"""

from __future__ import annotations

import json
import os
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .baseline import BaselineRow, blind_baselines
from .generators import FAMILIES, Candidate, GeneratorConfig, SceneContext
from .graph import SCENE_GRAPH_FILE, SceneGraph, load_scene_graph
from .records import TASKS, AnnotationRecord, write_annotations
from .splits import SPLITS, parse_fractions, split_scenes

__all__ = [
    "AnnotateConfig",
    "SkippedScene",
    "SceneScan",
    "DatasetReport",
    "discover_scenes",
    "scene_pool",
    "Balancer",
    "CategoryPriors",
    "annotate_graphs",
    "build_dataset",
    "graph_oracle_predictions",
    "record_key",
]

#: relative share of question types where equal shares would misrepresent the benchmark we imitate:
#: ScanRefer is mostly "multiple" (distractor) targets, Multi3DRefer has few zero-target samples
QTYPE_WEIGHTS: dict[str, dict[str, float]] = {
    "ground": {"unique": 0.5, "multiple": 1.0},
    "multi_ground": {"zero": 0.5, "single": 1.0, "multiple": 1.0},
}


@dataclass(frozen=True)
class AnnotateConfig:
    """How many samples per scene and task, which tasks, the seed, the split and the generator settings."""

    per_scene: int = 20
    tasks: tuple[str, ...] = TASKS
    seed: int = 0
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    #: skip colour/support questions about a category whose answer is this predictable from the
    #: category alone over the whole dataset (e.g. plants are always green); 1.0 disables the filter
    prior_threshold: float = 0.8
    #: no answer may exceed this share of its question type (checked once a type has 20 samples);
    #: scenes that could only add more of a dominant answer add none. Above 0.5 so binary types fit
    max_answer_share: float = 0.55

    def __post_init__(self) -> None:
        if not 0.5 < self.max_answer_share <= 1.0:
            raise ValueError(f"max_answer_share must be in (0.5, 1], got {self.max_answer_share}")
        if not 0.0 < self.prior_threshold <= 1.0:
            raise ValueError(f"prior_threshold must be in (0, 1], got {self.prior_threshold}")
        if self.per_scene < 1:
            raise ValueError(f"per_scene must be >= 1, got {self.per_scene}")
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown or not self.tasks:
            raise ValueError(f"tasks must be a non-empty subset of {list(TASKS)}, got {list(self.tasks)}")
        object.__setattr__(self, "fractions", parse_fractions(self.fractions))


# --------------------------------------------------------------------------------------------------
# Finding scenes
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SkippedScene:
    path: str
    reason: str


@dataclass
class SceneScan:
    """Scene directories with a scene graph (``scene_id`` → path), and the ones skipped with why."""

    scenes: dict[str, Path]
    skipped: list[SkippedScene]


def discover_scenes(root: str | os.PathLike[str], exclude: Iterable[str | os.PathLike[str]] = ()) -> SceneScan:
    """``root`` itself when it holds a scene graph, else each sub-directory of it (sorted).

    Sub-directories without ``scene_graph.json`` are skipped with a reason: an imported ScanNet scene
    (``objects.json`` only) has no graph to generate questions from and needs benchmark annotations
    (``ros3d-agent scenes import-annotations``) instead.
    """
    root_p = Path(root)
    if not root_p.is_dir():
        raise FileNotFoundError(f"--scenes {root_p}: no such directory")
    if (root_p / SCENE_GRAPH_FILE).is_file():
        return SceneScan({root_p.name: root_p}, [])
    excluded = {Path(e).resolve() for e in exclude}
    scenes: dict[str, Path] = {}
    skipped: list[SkippedScene] = []
    for d in sorted(p for p in root_p.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if d.resolve() in excluded:
            continue
        if (d / SCENE_GRAPH_FILE).is_file():
            scenes[d.name] = d
        elif (d / "objects.json").is_file():
            skipped.append(SkippedScene(str(d), "imported scene (objects.json, no scene_graph.json): "
                                                "use benchmark annotations (scenes import-annotations) instead"))
        else:
            skipped.append(SkippedScene(str(d), "no scene_graph.json"))
    return SceneScan(scenes, skipped)


# --------------------------------------------------------------------------------------------------
# Pools and balancing
# --------------------------------------------------------------------------------------------------
def _rng(seed: int, scene_id: str, salt: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(scene_id.encode()), salt])


def scene_pool(graph: SceneGraph, task: str, cfg: AnnotateConfig, scene_id: str | None = None) -> list[Candidate]:
    """Every candidate of one task in one scene, deduplicated; a function of the graph and the seed only.

    Two candidates that read the same but answer differently would teach noise, so both are dropped.
    """
    sid = scene_id or graph.scene_id
    ctx = SceneContext(graph, cfg.generator, _rng(cfg.seed, sid, TASKS.index(task)))
    by_key: dict[tuple, Candidate | None] = {}
    for c in FAMILIES[task](ctx):
        if c.key not in by_key:
            by_key[c.key] = c
        elif by_key[c.key] is not None and by_key[c.key].answers != c.answers:  # type: ignore[union-attr]
            by_key[c.key] = None
    return [c for c in by_key.values() if c is not None]


@dataclass
class CategoryPriors:
    """Category → attribute statistics over the whole dataset, to find answers a category gives away.

    If nearly every plant in the dataset is green, "what color is the plant?" tests the language
    prior, not the scene; such questions are not asked (the threshold is
    :attr:`AnnotateConfig.prior_threshold`). Only attributes the graph fixes per object are
    tracked: colour (colour questions) and what an object stands on (support questions).
    """

    color: dict[str, Counter[str]] = field(default_factory=dict)
    support: dict[str, Counter[str]] = field(default_factory=dict)
    threshold: float = 0.8
    min_count: int = 5

    @classmethod
    def from_graphs(cls, graphs: Iterable[SceneGraph], threshold: float = 0.8) -> CategoryPriors:
        color: dict[str, Counter[str]] = defaultdict(Counter)
        support: dict[str, Counter[str]] = defaultdict(Counter)
        for g in graphs:
            for o in g.objects:
                color[o.label][o.color] += 1
                support[o.label][g.get(o.support).label if o.support is not None else "floor"] += 1
        return cls(dict(color), dict(support), threshold)

    def predictable(self, c: Candidate) -> bool:
        """True when the candidate's answer is (nearly) fixed by the category it is about."""
        table = self.color if c.qtype in ("color", "color_side") else self.support if c.qtype == "support" else None
        counts = table.get(c.focus) if table is not None else None
        if not counts or sum(counts.values()) < self.min_count:
            return False
        return max(counts.values()) / sum(counts.values()) >= self.threshold

    def predictable_categories(self) -> dict[str, list[str]]:
        """For the summary: which categories are skipped for which question kind."""
        out: dict[str, list[str]] = {}
        for name, table in (("color", self.color), ("support", self.support)):
            out[name] = sorted(lab for lab, c in table.items()
                               if sum(c.values()) >= self.min_count and max(c.values()) / sum(c.values()) >= self.threshold)
        return out


class Balancer:
    """Dataset-wide counts that decide which candidates to keep (see the module docstring)."""

    #: a question type's answer shares are enforced once it has this many samples
    CAP_AFTER = 20

    def __init__(self, priors: CategoryPriors | None = None, max_answer_share: float = 1.0) -> None:
        self.priors = priors
        self.max_answer_share = max_answer_share
        self.type_counts: Counter[tuple[str, str]] = Counter()
        self.answer_counts: Counter[tuple[str, str, str]] = Counter()
        self.focus_counts: Counter[tuple[str, str, str, str]] = Counter()

    def _type_load(self, task: str, qtype: str) -> float:
        return self.type_counts[(task, qtype)] / QTYPE_WEIGHTS.get(task, {}).get(qtype, 1.0)

    def _answer_load(self, c: Candidate) -> int:
        return self.answer_counts[(c.task, c.qtype, c.balance_key)] + self.focus_counts[(c.task, c.qtype, c.focus, c.balance_key)]

    def _over_cap(self, c: Candidate) -> bool:
        """Would keeping ``c`` push its answer above the allowed share of its question type?"""
        if c.task not in ("qa", "situated_qa"):
            return False
        total = self.type_counts[(c.task, c.qtype)]
        if total < self.CAP_AFTER:
            return False
        return (self.answer_counts[(c.task, c.qtype, c.balance_key)] + 1) / (total + 1) > self.max_answer_share

    def select(self, pool: Sequence[Candidate], n: int, rng: np.random.Generator) -> list[Candidate]:
        groups: dict[str, list[Candidate]] = defaultdict(list)
        for i in rng.permutation(len(pool)):
            c = pool[int(i)]
            if self.priors is None or not self.priors.predictable(c):
                groups[c.qtype].append(c)
        tiebreak = {q: float(rng.random()) for q in groups}
        chosen: list[Candidate] = []
        while len(chosen) < n and any(groups.values()):
            qtype = min((q for q in groups if groups[q]), key=lambda q: (self._type_load(groups[q][0].task, q), tiebreak[q]))
            group = groups[qtype]
            group[:] = [c for c in group if not self._over_cap(c)]
            if not group:
                continue
            best = min(range(len(group)), key=lambda i: self._answer_load(group[i]))  # first minimum: random order
            c = group.pop(best)
            chosen.append(c)
            self.type_counts[(c.task, c.qtype)] += 1
            self.answer_counts[(c.task, c.qtype, c.balance_key)] += 1
            self.focus_counts[(c.task, c.qtype, c.focus, c.balance_key)] += 1
        return chosen


def _to_record(c: Candidate, scene_id: str, index: int) -> AnnotationRecord:
    return AnnotationRecord(
        id=f"{scene_id}-{c.task}-{index:04d}",
        scene_id=scene_id,
        task=c.task,
        question=c.question,
        answers=c.answers,
        object_ids=tuple(o.id for o in c.objects),
        boxes=tuple(tuple(o.aabb) for o in c.objects),
        situation=c.situation,
        box=tuple(c.box) if c.box is not None else None,
        meta={"qtype": c.qtype},
    )


def annotate_graphs(
    graphs: Mapping[str, SceneGraph], cfg: AnnotateConfig, on_scene: Callable[[str], None] | None = None
) -> list[AnnotationRecord]:
    """Balanced records for scenes ``{scene_id: graph}``, in scene-id order, ``per_scene`` per task at most."""
    balancer = Balancer(CategoryPriors.from_graphs(graphs.values(), cfg.prior_threshold), cfg.max_answer_share)
    records: list[AnnotationRecord] = []
    for scene_id in sorted(graphs):
        graph = graphs[scene_id]
        for task in cfg.tasks:
            pool = scene_pool(graph, task, cfg, scene_id)
            chosen = balancer.select(pool, cfg.per_scene, _rng(cfg.seed, scene_id, 100 + TASKS.index(task)))
            records += [_to_record(c, scene_id, k) for k, c in enumerate(chosen)]
        if on_scene is not None:
            on_scene(scene_id)
    return records


def record_key(r: AnnotationRecord) -> tuple:
    """The :attr:`Candidate.key` of the candidate a record was made from."""
    sit = (r.situation.text, r.situation.position, r.situation.yaw) if r.situation else None
    return (r.task, sit, r.question, tuple(r.box) if r.box is not None else None)


def graph_oracle_predictions(records: Sequence[AnnotationRecord], graphs: Mapping[str, SceneGraph], cfg: AnnotateConfig) -> dict[str, str]:
    """A "cheating" predictor that reads the scene graph: it regenerates each scene's candidates and
    answers every question the graph answers. Scoring it should give EM 1.0; anything less means an
    answer is not a function of the scene and the question (or the metric is broken)."""
    preds: dict[str, str] = {}
    by_scene: dict[str, list[AnnotationRecord]] = defaultdict(list)
    for r in records:
        by_scene[r.scene_id].append(r)
    for scene_id, recs in by_scene.items():
        answers: dict[tuple, str] = {}
        for task in sorted({r.task for r in recs}):
            for c in scene_pool(graphs[scene_id], task, cfg, scene_id):
                if c.answers:
                    answers[c.key] = c.answers[0]
        for r in recs:
            if record_key(r) in answers:
                preds[r.id] = answers[record_key(r)]
    return preds


# --------------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------------
@dataclass
class DatasetReport:
    """What :func:`build_dataset` wrote and measured (also saved as ``summary.json``)."""

    out_dir: Path
    splits: dict[str, list[str]]
    counts: dict[str, dict[str, int]]
    qtypes: dict[str, dict[str, int]]
    answer_balance: dict[str, dict[str, dict[str, Any]]]
    skipped: list[SkippedScene]
    warnings: list[str]
    baseline: dict[str, BaselineRow]
    not_asked: dict[str, list[str]] = field(default_factory=dict)

    def summary(self, cfg: AnnotateConfig, scenes_root: Path) -> dict[str, Any]:
        return {
            "scenes_root": str(scenes_root),
            "config": {"per_scene": cfg.per_scene, "tasks": list(cfg.tasks), "seed": cfg.seed,
                       "fractions": list(cfg.fractions), "prior_threshold": cfg.prior_threshold,
                       "max_answer_share": cfg.max_answer_share,
                       "generator": asdict(cfg.generator)},
            "scenes": {s: len(v) for s, v in self.splits.items()},
            "split_scenes": self.splits,
            "counts": self.counts,
            "qtypes": self.qtypes,
            "answer_balance": self.answer_balance,
            "skipped": [asdict(s) for s in self.skipped],
            "warnings": self.warnings,
            "not_asked_predictable_from_category": self.not_asked,
            "baseline_test": {t: row.to_dict() for t, row in self.baseline.items()},
        }


def answer_balance(records: Iterable[AnnotationRecord]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per task and question type: distinct answers, the most common one and its share."""
    by: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for r in records:
        if r.task in ("qa", "situated_qa") and r.answers:
            by[(r.task, r.qtype or "?")][r.answers[0]] += 1
    out: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for (task, qtype), c in sorted(by.items()):
        top, n = c.most_common(1)[0]
        out[task][qtype] = {"n": sum(c.values()), "distinct": len(c), "top": top, "top_share": round(n / sum(c.values()), 3)}
    return dict(out)


def build_dataset(
    scenes_root: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    cfg: AnnotateConfig | None = None,
    progress: bool = True,
) -> DatasetReport:
    """Annotate every scene under ``scenes_root`` and write the split files and ``summary.json``.

    Raises:
        FileNotFoundError: ``scenes_root`` is not a directory.
        SceneGraphError: a ``scene_graph.json`` is corrupt (the message names the file).
        ValueError: no scene under ``scenes_root`` has a scene graph.
    """
    from tqdm import tqdm

    cfg = cfg or AnnotateConfig()
    root = Path(scenes_root)
    out = Path(out_dir) if out_dir is not None else root / "annotations"
    scan = discover_scenes(root, exclude=[out])
    if not scan.scenes:
        raise ValueError(f"{root}: no scene directory with {SCENE_GRAPH_FILE} found "
                         f"({len(scan.skipped)} sub-directories skipped)")
    warnings: list[str] = []
    graphs: dict[str, SceneGraph] = {}
    bar = tqdm(total=2 * len(scan.scenes), desc="annotate", unit="step", disable=not progress)
    for scene_id, path in scan.scenes.items():
        bar.set_postfix_str(f"load {scene_id}")
        g = load_scene_graph(path)
        if g.scene_id != scene_id:
            warnings.append(f"{path / SCENE_GRAPH_FILE}: scene_id {g.scene_id!r} differs from the directory name; "
                            f"records use {scene_id!r} (the name training loads the scene by)")
        graphs[scene_id] = g
        bar.update(1)

    def tick(scene_id: str) -> None:
        bar.set_postfix_str(scene_id)
        bar.update(1)

    records = annotate_graphs(graphs, cfg, on_scene=tick)
    bar.close()

    splits = split_scenes(graphs, cfg.fractions, cfg.seed)
    scene_split = {s: name for name, ids in splits.items() for s in ids}
    by_split: dict[str, list[AnnotationRecord]] = {name: [] for name in SPLITS}
    for r in records:
        by_split[scene_split[r.scene_id]].append(r)
    for name in SPLITS:
        write_annotations(out / f"{name}.jsonl", by_split[name])

    counts = {name: {t: sum(r.task == t for r in recs) for t in cfg.tasks} for name, recs in by_split.items()}
    qtypes: dict[str, dict[str, int]] = defaultdict(dict)
    for (task, qtype), n in sorted(Counter((r.task, r.qtype or "?") for r in records).items()):
        qtypes[task][qtype] = n
    report = DatasetReport(
        out_dir=out,
        splits=splits,
        counts=counts,
        qtypes=dict(qtypes),
        answer_balance=answer_balance(records),
        skipped=scan.skipped,
        warnings=warnings,
        baseline=blind_baselines(by_split["train"], by_split["test"]),
        not_asked=CategoryPriors.from_graphs(graphs.values(), cfg.prior_threshold).predictable_categories(),
    )
    (out / "summary.json").write_text(json.dumps(report.summary(cfg, root), indent=2) + "\n", encoding="utf-8")
    return report
