"""A tiny constraint language for describing objects, and its evaluator over a scene graph.

Every referring expression, every object a question mentions and every multi-object target set is
first built as a :class:`Ref` (a conjunction of attribute and relation filters plus at most one
superlative) and only then rendered to words. The evaluator runs the *same* constraints over the
whole room, so "the small red mug on the table" is kept only if it selects exactly its target and
nothing is borderline. Text is never parsed back: what is checked is what was said.

Truth is three-valued (Kleene): a relation inside its dead band (see
:class:`~.graph.RelationConfig`) is *uncertain*, and an object that might match makes a selection
unclear. Generators keep only clear selections, so no annotation depends on a judgement call.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from itertools import combinations
from typing import Literal, Union

import numpy as np

from .graph import GraphObject, RelationConfig, SceneGraph

__all__ = [
    "Truth",
    "On",
    "OnFloor",
    "NextTo",
    "Supports",
    "Between",
    "Extreme",
    "Closest",
    "NearestWall",
    "NearestCentre",
    "Ref",
    "Selection",
    "Evaluator",
    "relation_between",
    "attribute_refs",
    "simple_definite",
    "unique_references",
    "distance_ok",
    "k_and",
    "k_or",
]

Truth = Union[bool, None]


def k_and(a: Truth, b: Truth) -> Truth:
    if a is False or b is False:
        return False
    if a is None or b is None:
        return None
    return True


def k_or(a: Truth, b: Truth) -> Truth:
    if a is True or b is True:
        return True
    if a is None or b is None:
        return None
    return False


# --------------------------------------------------------------------------------------------------
# Constraints
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class On:
    """The target stands directly on the object ``anchor`` describes (the graph's ``support``)."""

    anchor: Ref
    kind = "support"


@dataclass(frozen=True)
class OnFloor:
    """The target stands on the floor (no supporting object)."""

    kind = "support"


@dataclass(frozen=True)
class NextTo:
    """The target's footprint is within ``near_gap`` of the anchor's (and neither stands on the other)."""

    anchor: Ref
    kind = "nearby"


@dataclass(frozen=True)
class Supports:
    """Something matching ``what`` stands on the target ("the table with a mug on it")."""

    what: Ref
    kind = "support"


@dataclass(frozen=True)
class Between:
    """The target's centre lies on the segment between two anchors' centres, well inside and close to it."""

    a: Ref
    b: Ref
    kind = "nearby"


@dataclass(frozen=True)
class Extreme:
    """The largest / smallest (volume) or tallest / shortest (height) of the filtered objects."""

    which: Literal["largest", "smallest", "tallest", "shortest"]
    kind = "size"


@dataclass(frozen=True)
class Closest:
    """The filtered object whose footprint is nearest to (or, with ``farthest``, farthest from) the anchor's."""

    anchor: Ref
    farthest: bool = False
    kind = "nearby"


@dataclass(frozen=True)
class NearestWall:
    """The filtered object whose footprint is nearest to any wall."""

    kind = "position"


@dataclass(frozen=True)
class NearestCentre:
    """The filtered object whose centre is nearest to the middle of the room."""

    kind = "position"


Relation = Union[On, OnFloor, NextTo, Supports, Between]
Superlative = Union[Extreme, Closest, NearestWall, NearestCentre]


@dataclass(frozen=True)
class Ref:
    """A description: category (``None`` = any object), attributes, relation filters, one superlative."""

    label: str | None
    color: str | None = None
    size_class: str | None = None
    relations: tuple[Relation, ...] = ()
    superlative: Superlative | None = None

    def kinds(self) -> set[str]:
        """Constraint kinds used at the top level: color, size, support, nearby, position."""
        out = {r.kind for r in self.relations}
        if self.color:
            out.add("color")
        if self.size_class:
            out.add("size")
        if self.superlative is not None:
            out.add(self.superlative.kind)
        return out

    def anchors(self) -> list[Ref]:
        """The other objects this description mentions (each must be definite when the text says "the")."""
        out: list[Ref] = []
        for r in self.relations:
            if isinstance(r, (On, NextTo)):
                out.append(r.anchor)
            elif isinstance(r, Between):
                out += [r.a, r.b]
        if isinstance(self.superlative, Closest):
            out.append(self.superlative.anchor)
        return out

    def without_superlative(self) -> Ref:
        return replace(self, superlative=None)

    @property
    def complexity(self) -> float:
        """How much a listener has to check; generators prefer simple descriptions for mentions."""
        c = float(bool(self.color)) + float(bool(self.size_class))
        c += sum(2.0 if isinstance(r, Between) else 1.5 for r in self.relations)
        c += 1.5 if self.superlative is not None else 0.0
        return c


@dataclass(frozen=True)
class Selection:
    """What a description selects: objects that certainly match, and objects that might."""

    ids: tuple[int, ...] = ()
    uncertain: tuple[int, ...] = ()

    @property
    def clear(self) -> bool:
        return not self.uncertain

    def is_exactly(self, ids: Iterable[int]) -> bool:
        """True when the selection is clear and equals ``ids`` as a set."""
        return self.clear and set(self.ids) == set(ids)


def relation_between(graph: SceneGraph, o: GraphObject, a: GraphObject, b: GraphObject) -> Truth:
    """Is ``o`` between ``a`` and ``b``? Projected position along a→b and distance off the line, with a dead band."""
    pa, pb, po = a.centre_xy, b.centre_xy, o.centre_xy
    ab = pb - pa
    length = float(np.linalg.norm(ab))
    if length < 1e-6 or o.id in (a.id, b.id):
        return False
    t = float((po - pa) @ ab) / (length * length)
    off = abs(float(ab[0] * (po - pa)[1] - ab[1] * (po - pa)[0])) / length
    if 0.2 <= t <= 0.8 and off <= 0.3 * length:
        return True
    if t < 0.0 or t > 1.0 or off > 0.6 * length:
        return False
    return None


# --------------------------------------------------------------------------------------------------
# Evaluator
# --------------------------------------------------------------------------------------------------
@dataclass
class Evaluator:
    """Evaluates :class:`Ref` objects over one scene graph (memoised: anchors recur constantly)."""

    graph: SceneGraph
    cfg: RelationConfig = field(default_factory=RelationConfig)

    def __post_init__(self) -> None:
        self._memo: dict[Ref, Selection] = {}
        self._by_label: dict[str, list[GraphObject]] = {}
        for o in self.graph.objects:
            self._by_label.setdefault(o.label, []).append(o)

    def select(self, ref: Ref) -> Selection:
        sel = self._memo.get(ref)
        if sel is None:
            sel = self._select(ref)
            self._memo[ref] = sel
        return sel

    def is_definite(self, ref: Ref) -> bool:
        """Selects exactly one object, clearly (what "the ..." promises)."""
        sel = self.select(ref)
        return sel.clear and len(sel.ids) == 1

    def anchors_definite(self, ref: Ref) -> bool:
        return all(self.is_definite(a) for a in ref.anchors())

    def filter_truth(self, ref: Ref, o: GraphObject) -> Truth:
        """Does ``o`` pass every filter of ``ref`` (label, attributes, relations), superlative ignored?"""
        if ref.label is not None and o.label != ref.label:
            return False
        if ref.color is not None and o.color != ref.color:
            return False
        if ref.size_class is not None and o.size_class != ref.size_class:
            return False
        truth: Truth = True
        for rel in ref.relations:
            truth = k_and(truth, self._relation(rel, o))
            if truth is False:
                return False
        return truth

    # -- internals -------------------------------------------------------------------------------
    def _select(self, ref: Ref) -> Selection:
        excluded = {i for a in ref.anchors() for i in self.select(a).ids}
        certain, maybe = [], []
        candidates = self.graph.objects if ref.label is None else self._by_label.get(ref.label, [])
        for o in candidates:
            if o.id in excluded:
                continue
            t = self.filter_truth(ref, o)
            if t is True:
                certain.append(o)
            elif t is None:
                maybe.append(o)
        if ref.superlative is None:
            return Selection(tuple(o.id for o in certain), tuple(o.id for o in maybe))
        return self._superlative(ref.superlative, certain, maybe)

    def _relation(self, rel: Relation, o: GraphObject) -> Truth:
        g = self.graph
        if isinstance(rel, OnFloor):
            return o.support is None
        if isinstance(rel, On):
            sel = self.select(rel.anchor)
            if o.support in sel.ids:
                return True
            return None if o.support in sel.uncertain else False
        if isinstance(rel, NextTo):
            sel = self.select(rel.anchor)
            truth: Truth = False
            for aid, certain in [(i, True) for i in sel.ids] + [(i, None) for i in sel.uncertain]:
                a = g.get(aid)
                truth = k_or(truth, k_and(certain, self._next_to(o, a)))
            return truth
        if isinstance(rel, Supports):
            sel = self.select(rel.what)
            truth = False
            for aid, certain in [(i, True) for i in sel.ids] + [(i, None) for i in sel.uncertain]:
                if g.get(aid).support == o.id:
                    truth = k_or(truth, certain)
            return truth
        if isinstance(rel, Between):
            sa, sb = self.select(rel.a), self.select(rel.b)
            if not (self.is_definite(rel.a) and self.is_definite(rel.b)):
                return None if (sa.ids or sa.uncertain) and (sb.ids or sb.uncertain) else False
            return relation_between(g, o, g.get(sa.ids[0]), g.get(sb.ids[0]))
        raise TypeError(f"unknown relation {rel!r}")

    def _next_to(self, o: GraphObject, a: GraphObject) -> Truth:
        if o.id == a.id or self.graph.support_related(o, a):
            return False
        gap = self.graph.gap(o, a)
        if gap <= self.cfg.near_gap:
            return True
        if gap >= self.cfg.far_gap:
            return False
        return None

    def _superlative(self, sup: Superlative, certain: list[GraphObject], maybe: list[GraphObject]) -> Selection:
        pool = certain + maybe
        if not pool:
            return Selection()
        cfg, g = self.cfg, self.graph
        if isinstance(sup, Extreme):
            metric = {"largest": lambda o: o.volume, "smallest": lambda o: o.volume,
                      "tallest": lambda o: o.height, "shortest": lambda o: o.height}[sup.which]
            descending = sup.which in ("largest", "tallest")
            ratio = cfg.volume_ratio if sup.which in ("largest", "smallest") else cfg.height_ratio

            def clearly_better(best: float, other: float) -> bool:
                return best >= ratio * other if descending else other >= ratio * best
        else:
            descending = isinstance(sup, Closest) and sup.farthest
            if isinstance(sup, Closest):
                anchor = self.select(sup.anchor)
                if not (anchor.clear and len(anchor.ids) == 1):
                    return Selection((), tuple(o.id for o in pool))
                a = g.get(anchor.ids[0])
                metric = lambda o: g.gap(o, a)  # noqa: E731
            elif isinstance(sup, NearestWall):
                metric = g.wall_distance
            elif isinstance(sup, NearestCentre):
                metric = g.centre_distance
            else:
                raise TypeError(f"unknown superlative {sup!r}")

            def clearly_better(best: float, other: float) -> bool:
                near, far = (other, best) if descending else (best, other)
                return far - near >= max(cfg.distance_margin_abs, cfg.distance_margin_rel * near)

        ranked = sorted(pool, key=metric, reverse=descending)
        values = [metric(o) for o in ranked]
        certain_ids = {o.id for o in certain}
        # Every object that the winner does not clearly beat is a contender; so is any uncertain
        # object ranked above the first certain one (it may or may not pass the filters).
        contenders = [ranked[0]] + [o for o, v in zip(ranked[1:], values[1:]) if not clearly_better(values[0], v)]
        if len(contenders) == 1 and ranked[0].id in certain_ids:
            return Selection((ranked[0].id,), ())
        if len(contenders) == 1:  # the winner itself is uncertain: the answer hinges on it
            first_certain = next((i for i, o in enumerate(ranked) if o.id in certain_ids), len(ranked) - 1)
            return Selection((), tuple(o.id for o in ranked[: first_certain + 1]))
        return Selection((), tuple(o.id for o in contenders))


# --------------------------------------------------------------------------------------------------
# Building descriptions
# --------------------------------------------------------------------------------------------------
def attribute_refs(o: GraphObject, exclude: Iterable[str] = ()) -> list[Ref]:
    """Attribute-only descriptions of ``o``, simplest first: label, colour, size, size + colour."""
    ex = set(exclude)
    out = [Ref(o.label)]
    if o.color and "color" not in ex:
        out.append(Ref(o.label, color=o.color))
    if o.size_class and "size" not in ex:
        out.append(Ref(o.label, size_class=o.size_class))
        if o.color and "color" not in ex:
            out.append(Ref(o.label, color=o.color, size_class=o.size_class))
    return out


def simple_definite(ev: Evaluator, o: GraphObject, exclude: Iterable[str] = ()) -> Ref | None:
    """The simplest attribute-only description that picks out ``o`` alone (used for anchors), or None."""
    for ref in attribute_refs(o, exclude):
        sel = ev.select(ref)
        if sel.clear and sel.ids == (o.id,):
            return ref
    return None


def unique_references(
    ev: Evaluator,
    target: GraphObject,
    *,
    min_frames: int,
    exclude: Iterable[str] = (),
    avoid_ids: Iterable[int] = (),
    max_neighbours: int = 3,
) -> list[Ref]:
    """Every description (up to one relation and one superlative) that selects exactly ``target``.

    Anchors are visible objects with an attribute-only definite description; ``exclude`` drops
    constraint kinds (e.g. "color" when the question asks for the colour) and ``avoid_ids`` keeps
    objects out of the description (e.g. the answer of "what is closest to ...?"). Sorted simplest first.
    """
    g, cfg = ev.graph, ev.cfg
    ex = set(exclude)
    avoid = set(avoid_ids) | {target.id}

    def anchor(o: GraphObject) -> Ref | None:
        if o.id in avoid or not o.is_visible(min_frames):
            return None
        return simple_definite(ev, o)

    relations: list[Relation | None] = [None]
    if "support" not in ex:
        if target.support is None:
            relations.append(OnFloor())
        else:
            a = anchor(g.get(target.support))
            if a is not None:
                relations.append(On(a))
        for label in sorted({o.label for o in g.supported_by(target.id) if o.is_visible(min_frames) and o.id not in avoid}):
            relations.append(Supports(Ref(label)))
    neighbours = sorted(
        (o for o in g.objects if o.id not in avoid and o.is_visible(min_frames) and not g.support_related(o, target)),
        key=lambda o: g.gap(o, target),
    )
    if "nearby" not in ex:
        for o in [o for o in neighbours if g.gap(o, target) <= cfg.near_gap][:max_neighbours]:
            a = anchor(o)
            if a is not None:
                relations.append(NextTo(a))
        pairs = 0
        for o1, o2 in combinations(neighbours[:6], 2):
            if pairs >= 2 or float(np.linalg.norm(o1.centre_xy - o2.centre_xy)) < 1.0:
                continue
            if relation_between(g, target, o1, o2) is True:
                a1, a2 = anchor(o1), anchor(o2)
                if a1 is not None and a2 is not None:
                    relations.append(Between(a1, a2))
                    pairs += 1

    superlatives: list[Superlative | None] = [None]
    if "size" not in ex:
        superlatives += [Extreme("largest"), Extreme("smallest"), Extreme("tallest"), Extreme("shortest")]
    if "position" not in ex:
        superlatives += [NearestWall(), NearestCentre()]
    if "nearby" not in ex:
        other_label = [o for o in neighbours if o.label != target.label and g.gap(o, target) <= 2.5]
        for o in other_label[:max_neighbours]:
            a = anchor(o)
            if a is not None:
                superlatives.append(Closest(a))

    found: list[Ref] = []
    for base in attribute_refs(target, ex):
        for rel in relations:
            rels = (rel,) if rel is not None else ()
            filtered = Ref(base.label, base.color, base.size_class, rels)
            pool = ev.select(filtered)
            for sup in superlatives:
                if sup is not None and len(pool.ids) + len(pool.uncertain) < 2:
                    continue  # "the largest chair" when only one chair passes the filters says nothing
                if isinstance(sup, Extreme) and base.size_class:
                    continue  # "the largest small chair" reads as a contradiction
                ref = replace(filtered, superlative=sup)
                sel = ev.select(ref)
                if sel.clear and sel.ids == (target.id,) and ev.anchors_definite(ref):
                    found.append(ref)
    found.sort(key=lambda r: r.complexity)
    return found


def distance_ok(a: float, b: float, cfg: RelationConfig) -> bool:
    """Are two distances clearly different (the rule "closest" uses), so that a comparison is fair?"""
    near, far = min(a, b), max(a, b)
    return far - near >= max(cfg.distance_margin_abs, cfg.distance_margin_rel * near) and math.isfinite(far)
