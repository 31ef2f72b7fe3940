"""Candidate annotations from a scene graph: one function per task family.

Each family function returns *every* well-posed sample it can find in one scene (capped per question
type), not a final selection: choosing which ones to keep is the balancer's job
(:mod:`.pipeline`), because answer balance is a property of the whole dataset, not of one scene.

Rules every candidate obeys, so that a model cannot answer without looking and is never marked
wrong for a right answer:

* it only asks about, and only mentions, objects seen in at least ``min_visible_frames`` frames;
* every object it mentions with "the" is picked out uniquely by the description's constraints over
  the *whole* room (:class:`~.references.Evaluator`), with no relation inside its dead band;
* counts, "no" answers and sets are computed over the whole room and kept only when every object
  they involve was seen (so "how many chairs" never depends on a chair the camera missed);
* a description never contains its own answer (no colour in a colour question, no neighbour in a
  "what is closest" question, no support in "what is it on").
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from . import templates as T
from .graph import GraphObject, RelationConfig, SceneGraph, bearing_deg, side_of
from .records import Situation
from .references import (
    Evaluator,
    NextTo,
    On,
    OnFloor,
    Ref,
    Truth,
    distance_ok,
    simple_definite,
    unique_references,
)

__all__ = [
    "GeneratorConfig",
    "Candidate",
    "SceneContext",
    "qa_candidates",
    "situated_candidates",
    "ground_candidates",
    "multi_ground_candidates",
    "caption_candidates",
    "FAMILIES",
]


@dataclass(frozen=True)
class GeneratorConfig:
    """What counts as seen, how many candidates to keep, and the geometry thresholds."""

    #: an object is askable when the camera saw it in at least this many frames
    min_visible_frames: int = 2
    #: candidates kept per question type and scene (a random subset when more exist)
    max_per_qtype: int = 40
    #: situations sampled per scene for situated QA
    situations: int = 6
    #: "the closest thing on my left" looks no farther than this (metres)
    max_side_distance: float = 3.0
    #: the agent stands at least this far (metres) from any floor-standing object
    agent_clearance: float = 0.25
    relations: RelationConfig = field(default_factory=RelationConfig)

    def __post_init__(self) -> None:
        if self.min_visible_frames < 0 or self.max_per_qtype < 1 or self.situations < 0:
            raise ValueError("GeneratorConfig: min_visible_frames >= 0, max_per_qtype >= 1, situations >= 0")


@dataclass
class Candidate:
    """A well-posed sample before selection; ``focus`` is the category a text-only model could key on."""

    task: str
    qtype: str
    question: str
    answers: tuple[str, ...]
    objects: tuple[GraphObject, ...]
    focus: str
    situation: Situation | None = None
    box: list[float] | None = None
    ref: Ref | None = None

    @property
    def balance_key(self) -> str:
        """What the balancer spreads: the answer for text tasks, the target count for multi-object grounding."""
        if self.task in ("qa", "situated_qa"):
            return self.answers[0]
        if self.task == "multi_ground":
            return self.qtype
        return self.focus

    @property
    def key(self) -> tuple:
        """Identity of the question as a model sees it (two candidates with one key are the same sample)."""
        sit = (self.situation.text, self.situation.position, self.situation.yaw) if self.situation else None
        return (self.task, sit, self.question, self.box and tuple(self.box))


class SceneContext:
    """One scene's graph, evaluator, visibility rule and random stream, shared by the family functions."""

    def __init__(self, graph: SceneGraph, cfg: GeneratorConfig, rng: np.random.Generator) -> None:
        self.graph, self.cfg, self.rng = graph, cfg, rng
        self.ev = Evaluator(graph, cfg.relations)
        self.visible = graph.visible(cfg.min_visible_frames)
        self._mentions: dict[tuple, Ref | None] = {}

    def seen(self, o: GraphObject) -> bool:
        return o.is_visible(self.cfg.min_visible_frames)

    def all_seen(self, objs: Iterable[GraphObject]) -> bool:
        return all(self.seen(o) for o in objs)

    def mention(self, o: GraphObject, exclude: Iterable[str] = (), avoid: Iterable[int] = ()) -> Ref | None:
        """The simplest description that picks out ``o`` alone, without the excluded kinds/objects."""
        key = (o.id, frozenset(exclude), frozenset(avoid))
        if key not in self._mentions:
            ref = simple_definite(self.ev, o, exclude)
            if ref is None:
                refs = unique_references(self.ev, o, min_frames=self.cfg.min_visible_frames, exclude=exclude, avoid_ids=avoid)
                ref = refs[0] if refs else None
            self._mentions[key] = ref
        return self._mentions[key]

    def say(self, ref: Ref) -> str:
        return T.render_ref(ref, self.rng)

    def template(self, table: dict[str, tuple[str, ...]], key: str, **fields: str) -> str:
        return T.pick(self.rng, table[key]).format(**fields)

    def cap(self, items: list[Candidate]) -> list[Candidate]:
        """Keep at most ``max_per_qtype`` candidates per question type, chosen at random."""
        by_type: dict[str, list[Candidate]] = {}
        for c in items:
            by_type.setdefault(c.qtype, []).append(c)
        out: list[Candidate] = []
        for group in by_type.values():
            if len(group) > self.cfg.max_per_qtype:
                keep = sorted(self.rng.choice(len(group), self.cfg.max_per_qtype, replace=False).tolist())
                group = [group[i] for i in keep]
            out += group
        return out

    def surfaces(self) -> list[GraphObject]:
        """Seen objects that things stand on (or could), each with a support-free definite description."""
        return [s for s in self.visible if s.label in T.SURFACE_LABELS or self.graph.supported_by(s.id)]


def _qa(ctx: SceneContext, qtype: str, question: str, answer: str, objs: Sequence[GraphObject], focus: str) -> Candidate:
    return Candidate("qa", qtype, T.sentence(question), (answer,), tuple(sorted(objs, key=lambda o: o.id)), focus)


# --------------------------------------------------------------------------------------------------
# QA (ScanQA-like)
# --------------------------------------------------------------------------------------------------
def qa_candidates(ctx: SceneContext) -> list[Candidate]:
    """Attribute, counting, existence, support/spatial relation and comparison questions."""
    out: list[Candidate] = []
    for fn in (_qa_color, _qa_count, _qa_exist, _qa_what_on, _qa_support, _qa_closest, _qa_compare_size, _qa_compare_distance):
        out += fn(ctx)
    return ctx.cap(out)


def _qa_color(ctx: SceneContext) -> list[Candidate]:
    out = []
    for o in ctx.visible:
        ref = ctx.mention(o, exclude={"color"}) if o.color else None
        if ref is not None:
            out.append(_qa(ctx, "color", ctx.template(T.QA, "color", x=ctx.say(ref)), o.color, [o], o.label))
    return out


def _qa_count(ctx: SceneContext) -> list[Candidate]:
    g, out = ctx.graph, []
    for label in g.labels:
        objs = g.with_label(label)
        if not ctx.all_seen(objs):
            continue
        out.append(_qa(ctx, "count", ctx.template(T.QA, "count_room", pl=T.pluralize(label)), str(len(objs)), objs, label))
        label_colors = sorted({o.color for o in objs if o.color})
        others = [c for c in g.colors if c not in label_colors]
        extra = [str(c) for c in ctx.rng.choice(others, min(1, len(others)), replace=False)] if others else []
        for c in label_colors + extra:
            match = [o for o in objs if o.color == c]
            q = ctx.template(T.QA, "count_color", color=c, pl=T.pluralize(label))
            out.append(_qa(ctx, "count", q, str(len(match)), match, label))
    absent = [lab for lab in T.CATEGORY_VOCAB if lab not in g.labels]
    for label in ctx.rng.choice(absent, min(2, len(absent)), replace=False) if absent else []:
        out.append(_qa(ctx, "count", ctx.template(T.QA, "count_room", pl=T.pluralize(str(label))), "0", [], str(label)))
    for s in ctx.surfaces():
        on = g.supported_by(s.id)
        ref = ctx.mention(s, exclude={"support"})
        if ref is not None and ctx.all_seen(on):
            out.append(_qa(ctx, "count", ctx.template(T.QA, "count_on", s=ctx.say(ref)), str(len(on)), on, s.label))
    return out


def _qa_exist(ctx: SceneContext) -> list[Candidate]:
    g, out = ctx.graph, []
    small_labels = sorted({o.label for o in g.objects if o.support is not None})
    for s in ctx.surfaces():
        ref = ctx.mention(s, exclude={"support"})
        if ref is None:
            continue
        on = g.supported_by(s.id)
        for label in small_labels:
            found = [o for o in on if o.label == label]
            if found and not any(ctx.seen(o) for o in found):
                continue  # true, but only an unseen instance makes it so
            q = ctx.template(T.QA, "exist_on", thing=T.with_article(label), label=label, s=ctx.say(ref))
            out.append(_qa(ctx, "exist", q, "yes" if found else "no", [o for o in found if ctx.seen(o)], label))
    for label in g.labels:
        objs = g.with_label(label)
        if not any(ctx.seen(o) for o in objs):
            continue
        label_colors = sorted({o.color for o in objs if o.color})
        absent = [c for c in g.colors if c not in label_colors]
        absent = [str(c) for c in ctx.rng.choice(absent, min(2, len(absent)), replace=False)] if absent else []
        for c in label_colors + absent:
            found = [o for o in objs if o.color == c]
            if found and not any(ctx.seen(o) for o in found):
                continue
            q = ctx.template(T.QA, "exist_room", thing=T.with_article(f"{c} {label}"))
            out.append(_qa(ctx, "exist", q, "yes" if found else "no", [o for o in found if ctx.seen(o)], label))
    return out


def _qa_what_on(ctx: SceneContext) -> list[Candidate]:
    g, out = ctx.graph, []
    for s in ctx.visible:
        on = g.supported_by(s.id)
        if not on or not ctx.all_seen(on) or len({o.label for o in on}) != 1:
            continue  # one category on it, so "what is on X" has one right answer
        ref = ctx.mention(s, exclude={"support"})
        if ref is not None:
            out.append(_qa(ctx, "what_on", ctx.template(T.QA, "what_on", s=ctx.say(ref)), on[0].label, on, s.label))
    return out


def _qa_support(ctx: SceneContext) -> list[Candidate]:
    g, out = ctx.graph, []
    for o in ctx.visible:
        below = g.get(o.support) if o.support is not None else None
        if below is not None and not ctx.seen(below):
            continue
        ref = ctx.mention(o, exclude={"support"})
        if ref is None:
            continue
        answer = below.label if below is not None else "floor"
        out.append(_qa(ctx, "support", ctx.template(T.QA, "support", x=ctx.say(ref)), answer, [below] if below else [], o.label))
    return out


def _qa_closest(ctx: SceneContext) -> list[Candidate]:
    g, cfg, out = ctx.graph, ctx.cfg.relations, []
    for o in ctx.visible:
        others = sorted((p for p in g.objects if p.id != o.id and not g.support_related(o, p)), key=lambda p: g.gap(o, p))
        if len(others) < 2:
            continue
        best = g.gap(o, others[0])
        contenders = [p for p in others if not distance_ok(best, g.gap(o, p), cfg)]
        if len({p.label for p in contenders}) != 1 or not ctx.all_seen(contenders):
            continue  # the answer is a category: ties within one category are still one answer
        ref = ctx.mention(o, exclude={"nearby"}, avoid=[p.id for p in contenders])
        if ref is not None:
            q = ctx.template(T.QA, "closest", x=ctx.say(ref))
            out.append(_qa(ctx, "closest", q, contenders[0].label, contenders, o.label))
    return out


def _qa_compare_size(ctx: SceneContext) -> list[Candidate]:
    out, ratio = [], ctx.cfg.relations.volume_ratio
    for label in ctx.graph.labels:
        objs = [o for o in ctx.visible if o.label == label]
        for a, b in combinations(objs, 2):
            big, small = (a, b) if a.volume >= b.volume else (b, a)
            if big.volume < ratio * small.volume:
                continue
            rb, rs = simple_definite(ctx.ev, big, exclude={"size"}), simple_definite(ctx.ev, small, exclude={"size"})
            if rb is None or rs is None:
                continue
            larger = bool(ctx.rng.random() < 0.5)
            winner, wref = (big, rb) if larger else (small, rs)
            first, second = (rb, rs) if ctx.rng.random() < 0.5 else (rs, rb)
            q = ctx.template(T.QA, "larger" if larger else "smaller", a=ctx.say(first), b=ctx.say(second))
            out.append(_qa(ctx, "compare_size", q, T.answer_phrase(wref, ctx.rng), [winner], label))
    return out


def _qa_compare_distance(ctx: SceneContext) -> list[Candidate]:
    g, out = ctx.graph, []
    for x in ctx.visible:
        refs = {}
        for p in ctx.visible:
            if p.id != x.id and not g.support_related(x, p) and g.gap(x, p) <= 4.0:
                r = simple_definite(ctx.ev, p)
                if r is not None:
                    refs[p.id] = (p, r)
        pairs = [(a, b) for a, b in combinations(refs.values(), 2) if a[0].label != b[0].label]
        ctx.rng.shuffle(pairs)
        for (a, ra), (b, rb) in pairs[:3]:
            da, db = g.gap(x, a), g.gap(x, b)
            near, far = min(da, db), max(da, db)
            if far - near < max(0.4, 0.5 * near):
                continue  # clearly closer to one, by eye
            rx = ctx.mention(x, exclude={"nearby"}, avoid=[a.id, b.id])
            if rx is None:
                continue
            nearer = a if da < db else b
            first, second = (ra, rb) if ctx.rng.random() < 0.5 else (rb, ra)
            q = ctx.template(T.QA, "compare_distance", x=ctx.say(rx), a=ctx.say(first), b=ctx.say(second))
            out.append(_qa(ctx, "compare_distance", q, nearer.label, [nearer], x.label))
    return out


# --------------------------------------------------------------------------------------------------
# Situated QA (SQA3D-like)
# --------------------------------------------------------------------------------------------------
def object_side(ctx: SceneContext, position: Sequence[float], yaw: float, o: GraphObject, side: str) -> Truth:
    """Is the whole footprint (centre and corners) of ``o`` on ``side`` of the agent? None if it straddles."""
    margin = ctx.cfg.relations.side_margin_deg
    truths = {side_of(bearing_deg(position, yaw, q), side, margin) for q in [o.centre_xy, *o.footprint]}
    if truths == {True}:
        return True
    if truths == {False}:
        return False
    return None


def _sample_situations(ctx: SceneContext) -> list[tuple[Situation, GraphObject, GraphObject]]:
    g, rng, cfg = ctx.graph, ctx.rng, ctx.cfg
    named = {o.id: r for o in ctx.visible if (r := simple_definite(ctx.ev, o)) is not None}
    anchors = [o for o in ctx.visible if o.support is None and o.id in named]
    W, D = g.room.size[0], g.room.size[1]
    found: list[tuple[Situation, GraphObject, GraphObject]] = []
    used: set[tuple[int, int]] = set()
    for _ in range(cfg.situations * 20):
        if len(found) >= cfg.situations or not anchors:
            break
        a = anchors[int(rng.integers(len(anchors)))]
        theta = rng.uniform(0, 2 * math.pi)
        r = 0.5 * math.hypot(a.aabb[3], a.aabb[4]) + rng.uniform(0.3, 0.8)
        p = (round(float(a.centre_xy[0] + r * math.cos(theta)), 3), round(float(a.centre_xy[1] + r * math.sin(theta)), 3))
        if not (0.3 <= p[0] <= W - 0.3 and 0.3 <= p[1] <= D - 0.3):
            continue
        if g.point_clearance(p) < cfg.agent_clearance or g.point_gap(p, a) > 0.9:
            continue
        faces = [o for o in ctx.visible if o.id in named and o.id != a.id and o.support != a.id
                 and math.dist(p, o.centre_xy) >= 1.0]
        if not faces:
            continue
        f = faces[int(rng.integers(len(faces)))]
        if (a.id, f.id) in used:
            continue
        yaw = round(math.atan2(f.centre_xy[1] - p[1], f.centre_xy[0] - p[0]), 4)
        a_text, f_text = ctx.say(named[a.id]), ctx.say(named[f.id])
        sides = [s for s in ("left", "right", "behind") if object_side(ctx, p, yaw, a, s) is True]
        if sides and rng.random() < 0.5:
            text = ctx.template(T.SITUATION_TEXT, "side_facing", a=a_text, f=f_text, where=T.SIDE_WHERE[sides[0]])
        else:
            text = ctx.template(T.SITUATION_TEXT, "by_facing", a=a_text, f=f_text)
        used.add((a.id, f.id))
        found.append((Situation(T.sentence(text), (p[0], p[1], 0.0), yaw), a, f))
    return found


def situated_candidates(ctx: SceneContext) -> list[Candidate]:
    """Questions relative to a sampled agent pose: nearest thing on a side, front/behind, left/right, counts, colours."""
    out: list[Candidate] = []
    for sit, a, f in _sample_situations(ctx):
        out += _situated_for(ctx, sit, a, f)
    return ctx.cap(out)


def _situated_for(ctx: SceneContext, sit: Situation, by: GraphObject, facing: GraphObject) -> list[Candidate]:
    """Questions for one situation. The objects the situation text names (and, for counts and
    colours, their categories) are left out: the text already says where they are."""
    g, rng = ctx.graph, ctx.rng
    p, yaw = sit.position[:2], sit.yaw
    named, named_labels = {by.id, facing.id}, {by.label, facing.label}
    out: list[Candidate] = []

    def add(qtype: str, question: str, answer: str, objs: Sequence[GraphObject], focus: str) -> None:
        out.append(Candidate("situated_qa", qtype, T.sentence(question), (answer,), tuple(sorted(objs, key=lambda o: o.id)), focus, sit))

    # the nearest floor-standing thing on a side (ties or a nearer straddler: skip)
    for side in ("left", "right", "behind"):
        pool = [(o, object_side(ctx, p, yaw, o, side)) for o in g.objects if o.support is None]
        pool = sorted(((o, t) for o, t in pool if t is not False and g.point_gap(p, o) <= ctx.cfg.max_side_distance),
                      key=lambda ot: g.point_gap(p, ot[0]))
        if not pool or pool[0][1] is not True or not ctx.seen(pool[0][0]) or pool[0][0].id in named:
            continue
        if len(pool) > 1 and not distance_ok(g.point_gap(p, pool[0][0]), g.point_gap(p, pool[1][0]), ctx.cfg.relations):
            continue
        best = pool[0][0]
        add("what_side", ctx.template(T.SITUATED, "what_side", where=T.SIDE_WHERE[side]), best.label, [best], side)

    # where is X: front/behind and left/right
    others = [o for o in ctx.visible if o.id not in named]
    rng.shuffle(others)
    for o in others[:6]:
        ref = ctx.mention(o)
        if ref is None:
            continue
        for qtype, sides, answers in (("front_behind", ("front", "behind"), ("in front", "behind")),
                                      ("left_right", ("left", "right"), ("left", "right"))):
            for side, answer in zip(sides, answers):
                if object_side(ctx, p, yaw, o, side) is True:
                    add(qtype, ctx.template(T.SITUATED, qtype, x=ctx.say(ref)), answer, [o], o.label)

    # counts and colours on a side, only when every instance of the category is seen and unambiguous
    for label in g.labels:
        objs = g.with_label(label)
        if label in named_labels or not ctx.all_seen(objs):
            continue
        for side in ("left", "right", "front", "behind"):
            truths = [object_side(ctx, p, yaw, o, side) for o in objs]
            if None in truths:
                continue
            on_side = [o for o, t in zip(objs, truths) if t]
            if rng.random() < 0.5:
                q = ctx.template(T.SITUATED, "count_side", pl=T.pluralize(label), where=T.SIDE_WHERE[side])
                add("count_side", q, str(len(on_side)), on_side, label)
            if len(objs) >= 2 and len(on_side) == 1 and on_side[0].color:
                q = ctx.template(T.SITUATED, "color_side", label=label, where=T.SIDE_WHERE[side])
                add("color_side", q, on_side[0].color, on_side, label)
    return out


# --------------------------------------------------------------------------------------------------
# Referring expressions (ScanRefer-like) and multi-object references (Multi3DRefer-like)
# --------------------------------------------------------------------------------------------------
def ground_candidates(ctx: SceneContext, per_target: int = 2) -> list[Candidate]:
    """Up to ``per_target`` verified-unique descriptions per seen object (``qtype``: unique / multiple)."""
    out: list[Candidate] = []
    for t in ctx.visible:
        refs = unique_references(ctx.ev, t, min_frames=ctx.cfg.min_visible_frames)
        if not refs:
            continue
        qtype = "multiple" if len(ctx.graph.with_label(t.label)) > 1 else "unique"
        for i in ctx.rng.choice(len(refs), min(per_target, len(refs)), replace=False):
            ref = refs[int(i)]
            out.append(Candidate("ground", qtype, T.render_ground(ref, ctx.rng), (), (t,), t.label, ref=ref))
    return ctx.cap(out)


def plural_refs(ctx: SceneContext, label: str | None) -> list[Ref]:
    """Plural descriptions over one category: all, by colour, by size, on a surface, on the floor, next to X.

    Colours and anchors are drawn from what the scene holds, so the zero-target ones stay plausible
    (a green sofa in a room with a sofa and green things) rather than absurd.
    """
    g = ctx.graph
    insts = g.objects if label is None else g.with_label(label)
    refs: list[Ref] = [] if label is None else [Ref(label)]
    colors = sorted({o.color for o in insts if o.color})
    others = [c for c in g.colors if c not in colors]
    colors += [str(c) for c in ctx.rng.choice(others, min(2, len(others)), replace=False)] if others else []
    refs += [Ref(label, color=c) for c in colors]
    if label is None:
        return refs
    sizes = sorted({o.size_class for o in insts if o.size_class})
    if len(sizes) > 1:
        refs += [Ref(label, size_class=s) for s in sizes]
    supports = {o.support for o in insts}
    if len(supports) > 1 and None in supports:
        refs.append(Ref(label, relations=(OnFloor(),)))
    stands_on_things = any(o.support is not None for o in g.objects if o.label == label)
    for s in ctx.surfaces() if stands_on_things else []:
        a = simple_definite(ctx.ev, s)
        if a is not None and s.label != label:
            refs.append(Ref(label, relations=(On(a),)))
            for c in sorted({o.color for o in g.supported_by(s.id) if o.label == label and o.color})[:1]:
                refs.append(Ref(label, color=c, relations=(On(a),)))
    near = sorted({p.id for o in insts for p in ctx.visible
                   if p.label != label and not g.support_related(o, p) and g.gap(o, p) <= ctx.cfg.relations.near_gap})
    for pid in near[:4]:
        a = simple_definite(ctx.ev, g.get(pid))
        if a is not None:
            refs.append(Ref(label, relations=(NextTo(a),)))
    return refs


def multi_ground_candidates(ctx: SceneContext) -> list[Candidate]:
    """Plural references with 0..N targets (``qtype``: zero / single / multiple), all targets seen."""
    out: list[Candidate] = []
    labels = [lab for lab in ctx.graph.labels if any(ctx.seen(o) for o in ctx.graph.with_label(lab))]
    for label in [*labels, None]:
        for ref in plural_refs(ctx, label):
            sel = ctx.ev.select(ref)
            if not sel.clear or not ctx.ev.anchors_definite(ref):
                continue
            objs = [ctx.graph.get(i) for i in sel.ids]
            if not ctx.all_seen(objs) or (label is None and not objs):
                continue
            qtype = "zero" if not objs else "single" if len(objs) == 1 else "multiple"
            focus = label or "object"
            out.append(Candidate("multi_ground", qtype, T.render_multi(ref, ctx.rng), (), tuple(objs), focus, ref=ref))
    return ctx.cap(out)


# --------------------------------------------------------------------------------------------------
# Captions (Scan2Cap-like)
# --------------------------------------------------------------------------------------------------
def caption_candidates(ctx: SceneContext) -> list[Candidate]:
    """Two reference captions per seen object: colour, size, what it stands on, a neighbour, and
    (when same-category distractors exist) the relation that tells it apart."""
    g, rng, out = ctx.graph, ctx.rng, []
    for t in ctx.visible:
        below = g.get(t.support) if t.support is not None else None
        if below is None:
            where = "on the floor"
        else:
            where = "on the " + " ".join(w for w in ((below.color if ctx.seen(below) else ""), below.label) if w)
        neighbours = [p for p in ctx.visible if p.id != t.id and not g.support_related(t, p)
                      and g.gap(t, p) <= ctx.cfg.relations.near_gap]
        near = ""
        if neighbours:
            n = min(neighbours, key=lambda p: g.gap(t, p))
            near = T.pick(rng, (", next to {}", " beside {}", ", close to {}")).format(T.with_article(n.label))
        head = " ".join(w for w in (t.size_class, t.color, t.label) if w)
        size_word = {"medium": "medium-sized"}.get(t.size_class, t.size_class)
        desc = " and ".join(w for w in (t.color, size_word) if w) or "plain"
        extra = ""
        if len(g.with_label(t.label)) > 1:
            refs = [r for r in unique_references(ctx.ev, t, min_frames=ctx.cfg.min_visible_frames) if r.relations or r.superlative]
            if refs:
                extra = f" it is {T.render_ref(refs[0], rng)}."
        chosen = rng.choice(len(T.CAPTIONS), 2, replace=False)
        caps = tuple(T.CAPTIONS[int(i)].format(head_a=T.with_article(head), where=where, near=near, label=t.label, desc=desc) + extra
                     for i in chosen)
        out.append(Candidate("caption", "caption", T.pick(rng, T.CAPTION_QUESTIONS), caps, (t,), t.label, box=t.aabb))
    return ctx.cap(out)


#: task -> family function, in the order records are written
FAMILIES = {
    "qa": qa_candidates,
    "situated_qa": situated_candidates,
    "ground": ground_candidates,
    "multi_ground": multi_ground_candidates,
    "caption": caption_candidates,
}
