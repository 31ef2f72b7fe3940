"""Wording: question templates per question type and the renderer from :class:`~.references.Ref` to text.

Templates only choose words. Every fact a sentence states comes from a constraint the evaluator
checked, and every constraint of a description appears in its rendering (see :func:`render_ref`),
so wording variety never changes meaning. Variety matters because a model trained on one phrasing
per question type learns the phrasing, not the scene.

Case follows the benchmarks we imitate: QA questions and situations read as sentences (SQA3D,
ScanQA), referring expressions and captions are lower-case (ScanRefer, Scan2Cap), and answers are
lower-case and short.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .references import Between, Closest, Extreme, NearestCentre, NearestWall, NextTo, On, OnFloor, Ref, Supports

__all__ = [
    "pluralize",
    "with_article",
    "render_ref",
    "render_plural_ref",
    "render_ground",
    "render_multi",
    "CAPTIONS",
    "answer_phrase",
    "pick",
    "sentence",
    "QA",
    "SITUATED",
    "SITUATION_TEXT",
    "GROUND_STYLES",
    "MULTI_STYLES",
    "CAPTION_QUESTIONS",
    "SIDE_WHERE",
    "CATEGORY_VOCAB",
    "SURFACE_LABELS",
]

#: categories an indoor scene plausibly holds; absent ones make honest "0" / "no" answers
CATEGORY_VOCAB: tuple[str, ...] = (
    "chair", "table", "sofa", "cabinet", "bookshelf", "lamp", "plant", "monitor", "box", "mug",
    "bottle", "bowl", "ball", "trash can", "pillow", "backpack", "vase", "book", "desk", "bed",
)
#: categories things stand on; "how many things are on the desk?" may be 0 only for these
SURFACE_LABELS: frozenset[str] = frozenset(
    {"table", "desk", "cabinet", "bookshelf", "shelf", "counter", "sofa", "bed", "nightstand", "dresser", "stool"}
)

_IRREGULAR = {"shelf": "shelves", "bookshelf": "bookshelves", "person": "people", "knife": "knives", "leaf": "leaves"}


def pluralize(label: str) -> str:
    """English plural of a category name; multi-word names inflect their last word ("trash cans")."""
    words = label.split()
    if not words:
        return label
    last = words[-1]
    if last in _IRREGULAR:
        last = _IRREGULAR[last]
    elif last.endswith(("s", "x", "z", "ch", "sh")):
        last += "es"
    elif last.endswith("y") and len(last) > 1 and last[-2] not in "aeiou":
        last = last[:-1] + "ies"
    else:
        last += "s"
    return " ".join(words[:-1] + [last])


def with_article(phrase: str) -> str:
    """``a``/``an`` + phrase by the first letter (good enough for our category and colour words)."""
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def sentence(text: str) -> str:
    """Capitalise the first letter (QA questions and situations read as sentences)."""
    return text[:1].upper() + text[1:] if text else text


# --------------------------------------------------------------------------------------------------
# Rendering descriptions
# --------------------------------------------------------------------------------------------------
_EXTREME_WORDS = {
    "largest": ("largest", "biggest"),
    "smallest": ("smallest",),
    "tallest": ("tallest",),
    "shortest": ("shortest", "lowest"),
}


def _head(ref: Ref, plural: bool) -> str:
    noun = ref.label if ref.label is not None else "object"
    if plural:
        noun = pluralize(noun)
    return " ".join(w for w in (ref.size_class, ref.color, noun) if w)


def _definite(ref: Ref, rng: np.random.Generator) -> str:
    return render_ref(ref, rng)


def _relation_clause(rel: object, rng: np.random.Generator, plural: bool) -> str:
    if isinstance(rel, On):
        return pick(rng, ("on {}", "on top of {}", "sitting on {}")).format(_definite(rel.anchor, rng))
    if isinstance(rel, OnFloor):
        return pick(rng, ("on the floor", "standing on the floor"))
    if isinstance(rel, NextTo):
        return pick(rng, ("next to {}", "beside {}", "by {}")).format(_definite(rel.anchor, rng))
    if isinstance(rel, Supports):
        thing = with_article(_head(rel.what, plural=False))
        return ("with {} on them" if plural else pick(rng, ("with {} on it", "that has {} on top"))).format(thing)
    if isinstance(rel, Between):
        return f"between {_definite(rel.a, rng)} and {_definite(rel.b, rng)}"
    raise TypeError(f"cannot render relation {rel!r}")


def _superlative_parts(ref: Ref, rng: np.random.Generator) -> tuple[str, str]:
    """(adjective before the noun, clause after it) for the description's superlative."""
    sup = ref.superlative
    if sup is None:
        return "", ""
    if isinstance(sup, Extreme):
        return pick(rng, _EXTREME_WORDS[sup.which]), ""
    if isinstance(sup, Closest):
        anchor = _definite(sup.anchor, rng)
        if sup.farthest:
            return "", f"farthest from {anchor}"
        return "", pick(rng, ("closest to {}", "nearest to {}", "nearest {}")).format(anchor)
    if isinstance(sup, NearestWall):
        return "", pick(rng, ("closest to a wall", "nearest to the wall"))
    if isinstance(sup, NearestCentre):
        return "", pick(rng, ("nearest the middle of the room", "closest to the center of the room"))
    raise TypeError(f"cannot render superlative {sup!r}")


def render_ref(ref: Ref, rng: np.random.Generator, *, article: str = "the") -> str:
    """A singular noun phrase: ``the [largest] [small] [red] mug [on the table] [closest to the lamp]``."""
    adj, tail = _superlative_parts(ref, rng)
    words = [article, adj, _head(ref, plural=False)]
    words += [_relation_clause(r, rng, plural=False) for r in ref.relations]
    words.append(tail)
    return " ".join(w for w in words if w)


def render_plural_ref(ref: Ref, rng: np.random.Generator) -> str:
    """A plural noun phrase for multi-object references: ``the blue boxes on the shelf``."""
    if ref.superlative is not None:
        raise ValueError("plural references carry no superlative")
    words = ["the", _head(ref, plural=True)] + [_relation_clause(r, rng, plural=True) for r in ref.relations]
    return " ".join(w for w in words if w)


def answer_phrase(ref: Ref, rng: np.random.Generator) -> str:
    """A description used as an answer: no article ("blue box"), the short form EM compares."""
    return render_ref(ref, rng, article="")


def render_ground(ref: Ref, rng: np.random.Generator) -> str:
    """A ScanRefer-like referring expression in one of several styles, all stating every constraint."""
    style = pick(rng, GROUND_STYLES)
    if style == "described" and (ref.relations or ref.superlative is not None):
        # "this is a red chair. it is next to the table and it is the one closest to the door."
        head = with_article(_head(ref, plural=False))
        facts = [_relation_clause(r, rng, plural=False) for r in ref.relations]
        adj, tail = _superlative_parts(ref, rng)
        if adj:
            facts.append(f"the {adj} one")
        elif tail:
            facts.append(f"the one {tail}")
        return f"this is {head}. it is " + " and it is ".join(facts) + "."
    phrase = render_ref(ref, rng)
    if style == "find":
        return pick(rng, ("find {}.", "locate {}.", "point to {}.", "where is {}?")).format(phrase)
    return phrase + "."


def render_multi(ref: Ref, rng: np.random.Generator) -> str:
    """A Multi3DRefer-like plural expression ("find all the blue boxes on the shelf.")."""
    phrase = render_plural_ref(ref, rng)
    return pick(rng, MULTI_STYLES).format(phrase, phrase[len("the "):])


# --------------------------------------------------------------------------------------------------
# Question templates
# --------------------------------------------------------------------------------------------------
#: question type -> templates; ``{x}``, ``{a}``, ``{b}``, ``{s}`` are definite descriptions,
#: ``{pl}`` a plural category, ``{color}`` a colour, ``{thing}`` an indefinite noun phrase
QA: dict[str, tuple[str, ...]] = {
    "color": ("what color is {x}?", "what is the color of {x}?", "which color does {x} have?", "what colour is {x}?"),
    "count_room": ("how many {pl} are in the room?", "how many {pl} are there?", "what is the number of {pl} in the room?",
                   "how many {pl} can you see in the room?"),
    "count_color": ("how many {color} {pl} are there?", "how many {color} {pl} are in the room?"),
    "count_on": ("how many objects are on {s}?", "how many things are on top of {s}?", "how many items are sitting on {s}?"),
    "exist_on": ("is there {thing} on {s}?", "can you see {thing} on {s}?", "is there any {label} on {s}?"),
    "exist_room": ("is there {thing} in the room?", "does the room have {thing}?", "can you find {thing} in this room?"),
    "what_on": ("what is on {s}?", "what is on top of {s}?", "what object is sitting on {s}?"),
    "support": ("what is {x} on?", "what is {x} standing on?", "what is under {x}?", "what is {x} placed on?"),
    "closest": ("what is closest to {x}?", "which object is nearest to {x}?", "what is the closest object to {x}?"),
    "larger": ("which is larger, {a} or {b}?", "which is bigger, {a} or {b}?", "which one is larger: {a} or {b}?"),
    "smaller": ("which is smaller, {a} or {b}?", "which one is smaller: {a} or {b}?"),
    "compare_distance": ("is {x} closer to {a} or to {b}?", "which is {x} nearer to, {a} or {b}?",
                         "is {x} nearer to {a} or to {b}?"),
}

#: how a side reads inside a question
SIDE_WHERE: dict[str, str] = {"left": "on my left", "right": "on my right", "front": "in front of me", "behind": "behind me"}

SITUATED: dict[str, tuple[str, ...]] = {
    "what_side": ("what is the closest thing {where}?", "what is the nearest object {where}?", "which object {where} is closest to me?"),
    "front_behind": ("is {x} in front of me or behind me?", "is {x} ahead of me or behind me?"),
    "left_right": ("is {x} on my left or on my right?", "is {x} to my left or to my right?",
                   "which way should I turn to face {x}, left or right?"),
    "count_side": ("how many {pl} are {where}?", "how many {pl} can I find {where}?", "what is the number of {pl} {where}?"),
    "color_side": ("what color is the {label} {where}?", "what is the color of the {label} {where}?"),
}

#: situation sentences; ``{a}`` the object the agent stands by, ``{f}`` the one it faces
SITUATION_TEXT: dict[str, tuple[str, ...]] = {
    "by_facing": ("I am standing by {a}, facing {f}.", "I am next to {a} and {f} is right in front of me.",
                  "I am standing near {a} and looking at {f}.", "{f} is straight ahead of me and {a} is close by."),
    "side_facing": ("I am facing {f} and {a} is {where}.", "{a} is {where} while I look at {f}."),
}

#: ScanRefer-like presentation styles of one referring expression
GROUND_STYLES: tuple[str, ...] = ("plain", "find", "described")
#: Multi3DRefer-like plural styles; ``{0}`` = "the blue boxes", ``{1}`` = "blue boxes"
MULTI_STYLES: tuple[str, ...] = ("{0}.", "find all {0}.", "all {0}.", "locate every one of {0}.", "all {1} in the room.")

CAPTION_QUESTIONS: tuple[str, ...] = (
    "describe the object in this box.",
    "what is this object? describe it.",
    "give a short description of the object at this location.",
    "describe this object and where it is.",
)

#: Scan2Cap-like caption sentences; ``{head}`` "small red mug", ``{where}`` "on the brown table"
CAPTIONS: tuple[str, ...] = (
    "this is {head_a}. it is {where}{near}.",
    "{head_a} {where}{near}.",
    "the {label} is {desc}. it is {where}{near}.",
    "there is {head_a} {where}{near}.",
)
