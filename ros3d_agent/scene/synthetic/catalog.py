"""What a synthetic room can contain: object categories, their shapes and sizes, and the colour palette.

Everything a downstream question, referring expression or caption can mention about an object comes
from here: its ``label``, a nameable ``color`` from :data:`PALETTE`, a coarse ``shape`` word and a
``size_class``. Keeping the vocabulary in one table is what makes the generated annotations and the
rendered pixels agree (the renderer colours the object's main parts with exactly ``color``).

``size_class`` is relative to the category: every category has a size range per shape variant, and
``small`` / ``medium`` / ``large`` are its lower, middle and upper thirds, with every axis of the
sampled size inside the chosen third. So two mugs of different classes are told apart by size, while
a "large mug" is still smaller than a "small sofa" (absolute size is in the box).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Mapping

import numpy as np

__all__ = [
    "PALETTE",
    "SIZE_CLASSES",
    "SHAPES",
    "Placement",
    "Material",
    "ShapeVariant",
    "Category",
    "CATALOG",
    "category",
    "color_rgb",
    "sample_size",
]

#: Distinct, nameable colours as sRGB in [0, 1]. Chosen far apart in hue/lightness so that a shaded,
#: JPEG-compressed object is still recognisably its colour, and so that a person would use the name.
PALETTE: Mapping[str, tuple[float, float, float]] = MappingProxyType(
    {
        "white": (0.90, 0.90, 0.88),
        "black": (0.09, 0.09, 0.10),
        "gray": (0.50, 0.50, 0.52),
        "red": (0.78, 0.12, 0.12),
        "orange": (0.93, 0.48, 0.10),
        "yellow": (0.93, 0.82, 0.16),
        "green": (0.18, 0.58, 0.22),
        "cyan": (0.16, 0.72, 0.78),
        "blue": (0.14, 0.28, 0.78),
        "purple": (0.48, 0.22, 0.64),
        "pink": (0.94, 0.56, 0.70),
        "brown": (0.44, 0.27, 0.14),
        "beige": (0.84, 0.76, 0.60),
    }
)

SIZE_CLASSES: tuple[str, ...] = ("small", "medium", "large")

#: Shape words used in the scene graph: the silhouette of the object's dominant part.
SHAPES: tuple[str, ...] = ("box", "cylinder", "sphere", "cone", "hemisphere")


class Placement(str, Enum):
    """Where an object may stand; drives the placement strategy in :mod:`.layout`."""

    WALL = "wall"  # on the floor, back against a wall (sofa, bed, bookshelf, cabinet)
    FLOOR = "floor"  # anywhere on the free floor
    SURFACE = "surface"  # only on top of a supporting object (table, cabinet)
    FLOOR_OR_SURFACE = "floor_or_surface"  # either; on a surface only when small


class Material(int, Enum):
    """Procedural surface finish; the renderer picks texture and gloss from it (values index tables)."""

    PLAIN = 0  # smooth paint / plastic: faint noise
    WOOD = 1  # stripes along the object's local x axis
    FABRIC = 2  # fine weave
    CERAMIC = 3  # smooth and glossy
    METAL = 4  # smooth, glossy, used for poles and legs
    FOLIAGE = 5  # blotchy leaves
    SCREEN = 6  # a dark, glossy monitor panel
    FLOOR_TILES = 7
    FLOOR_PLANKS = 8
    WALL = 9


@dataclass(frozen=True)
class ShapeVariant:
    """One way a category can look: a shape word and its size range ``(sx, sy, sz)`` in metres.

    ``sx`` is the width along the object's local x axis, ``sy`` its depth along local y (the back of
    furniture faces +y), ``sz`` its height. ``round`` variants have a circular footprint (``sx == sy``),
    so their axis-aligned box does not grow with yaw.
    """

    shape: str
    size_min: tuple[float, float, float]
    size_max: tuple[float, float, float]
    weight: float = 1.0
    round: bool = False

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"shape {self.shape!r} is not one of {SHAPES}")
        lo, hi = np.asarray(self.size_min), np.asarray(self.size_max)
        if lo.shape != (3,) or hi.shape != (3,) or not np.all(lo > 0) or not np.all(hi >= lo):
            raise ValueError(f"{self.shape}: size range must be 3 positive extents with max >= min, got {self.size_min}..{self.size_max}")
        if self.round and not (lo[0] == lo[1] and hi[0] == hi[1]):
            raise ValueError(f"{self.shape}: a round variant needs sx == sy in its size range")


@dataclass(frozen=True)
class Category:
    """An object category: label, looks, colours and how it is placed.

    ``supports``: its top is a surface that small objects are stacked on (at exactly its top z).
    ``weight``: relative frequency when a layout draws categories.
    """

    label: str
    variants: tuple[ShapeVariant, ...]
    placement: Placement
    colors: tuple[str, ...]
    material: Material
    supports: bool = False
    weight: float = 1.0
    max_per_scene: int = 3

    def __post_init__(self) -> None:
        if not self.variants:
            raise ValueError(f"{self.label}: needs at least one shape variant")
        unknown = [c for c in self.colors if c not in PALETTE]
        if unknown or not self.colors:
            raise ValueError(f"{self.label}: colours must be non-empty and from PALETTE, unknown: {unknown}")

    def variant(self, shape: str) -> ShapeVariant:
        for v in self.variants:
            if v.shape == shape:
                return v
        raise KeyError(f"category {self.label!r} has no shape {shape!r} (has {[v.shape for v in self.variants]})")


def _v(shape: str, lo: tuple[float, float, float], hi: tuple[float, float, float], weight: float = 1.0, round: bool = False) -> ShapeVariant:
    return ShapeVariant(shape, lo, hi, weight, round)


_FURNITURE_WOOD = ("brown", "white", "black", "gray", "beige")
_BRIGHT = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink")

_CATEGORIES = (
    Category("table", (_v("box", (0.80, 0.60, 0.70), (1.60, 0.95, 0.78), 2.0), _v("cylinder", (0.70, 0.70, 0.70), (1.10, 1.10, 0.76), 1.0, True)),
             Placement.FLOOR, _FURNITURE_WOOD, Material.WOOD, supports=True, weight=0.0, max_per_scene=2),
    Category("cabinet", (_v("box", (0.60, 0.40, 0.70), (1.20, 0.55, 1.00)),),
             Placement.WALL, ("white", "brown", "gray", "black", "beige", "blue"), Material.WOOD, supports=True, weight=0.0, max_per_scene=2),
    Category("chair", (_v("box", (0.42, 0.42, 0.80), (0.52, 0.52, 1.00)),),
             Placement.FLOOR, ("black", "white", "gray", "brown", "red", "blue", "green", "orange"), Material.PLAIN, weight=2.0, max_per_scene=4),
    Category("sofa", (_v("box", (1.50, 0.80, 0.75), (2.20, 0.95, 0.90)),),
             Placement.WALL, ("gray", "blue", "green", "red", "brown", "beige", "black"), Material.FABRIC, weight=0.8, max_per_scene=2),
    Category("bookshelf", (_v("box", (0.60, 0.28, 1.30), (1.00, 0.38, 2.00)),),
             Placement.WALL, _FURNITURE_WOOD, Material.WOOD, weight=0.8, max_per_scene=2),
    Category("bed", (_v("box", (1.00, 1.90, 0.80), (1.60, 2.10, 1.10)),),
             Placement.WALL, ("white", "blue", "gray", "green", "pink", "beige", "red"), Material.FABRIC, weight=0.4, max_per_scene=1),
    Category("lamp", (_v("cylinder", (0.30, 0.30, 1.40), (0.45, 0.45, 1.80), round=True), _v("cone", (0.30, 0.30, 1.40), (0.45, 0.45, 1.80), round=True)),
             Placement.FLOOR, ("white", "beige", "black", "red", "yellow", "blue", "gray"), Material.PLAIN, weight=1.0),
    Category("plant", (_v("sphere", (0.30, 0.30, 0.50), (0.60, 0.60, 1.20), round=True), _v("cone", (0.30, 0.30, 0.60), (0.55, 0.55, 1.40), round=True)),
             Placement.FLOOR, ("green",), Material.FOLIAGE, weight=1.0),
    Category("monitor", (_v("box", (0.45, 0.18, 0.32), (0.70, 0.22, 0.50)),),
             Placement.SURFACE, ("black", "white", "gray"), Material.PLAIN, weight=1.0),
    Category("box", (_v("box", (0.20, 0.15, 0.12), (0.55, 0.45, 0.45)),),
             Placement.FLOOR_OR_SURFACE, ("brown", "white", "red", "blue", "green", "yellow", "beige"), Material.PLAIN, weight=1.5),
    Category("mug", (_v("cylinder", (0.11, 0.08, 0.09), (0.14, 0.10, 0.12)),),
             Placement.SURFACE, ("white", "red", "blue", "green", "yellow", "black", "orange", "pink"), Material.CERAMIC, weight=1.5),
    Category("bottle", (_v("cylinder", (0.06, 0.06, 0.20), (0.09, 0.09, 0.32), round=True),),
             Placement.SURFACE, ("green", "blue", "white", "red", "cyan", "orange"), Material.PLAIN, weight=1.5),
    Category("bowl", (_v("hemisphere", (0.14, 0.14, 0.06), (0.26, 0.26, 0.11), round=True),),
             Placement.SURFACE, ("white", "red", "blue", "green", "yellow", "orange", "gray"), Material.CERAMIC, weight=1.2),
    Category("ball", (_v("sphere", (0.15, 0.15, 0.15), (0.30, 0.30, 0.30), round=True),),
             Placement.FLOOR_OR_SURFACE, ("red", "blue", "yellow", "orange", "green", "white", "purple"), Material.PLAIN, weight=1.0),
    Category("trash can", (_v("cylinder", (0.25, 0.25, 0.35), (0.40, 0.40, 0.65), 1.5, True), _v("box", (0.25, 0.22, 0.35), (0.40, 0.32, 0.65))),
             Placement.FLOOR, ("gray", "black", "white", "blue", "green", "red"), Material.PLAIN, weight=1.0),
    Category("backpack", (_v("box", (0.28, 0.16, 0.38), (0.36, 0.24, 0.50)),),
             Placement.FLOOR, ("black", "blue", "red", "green", "gray", "orange", "purple"), Material.FABRIC, weight=1.0),
    Category("vase", (_v("cylinder", (0.10, 0.10, 0.18), (0.18, 0.18, 0.38), round=True), _v("sphere", (0.14, 0.14, 0.18), (0.24, 0.24, 0.32), round=True)),
             Placement.SURFACE, ("white", "blue", "red", "yellow", "green", "purple", "cyan"), Material.CERAMIC, weight=1.0),
    Category("book", (_v("box", (0.15, 0.21, 0.02), (0.22, 0.30, 0.05)),),
             Placement.SURFACE, ("red", "blue", "green", "yellow", "black", "white", "orange", "purple"), Material.PLAIN, weight=1.2),
)

#: label -> :class:`Category`, in a fixed order (layouts iterate it, so the order is part of determinism).
CATALOG: Mapping[str, Category] = MappingProxyType({c.label: c for c in _CATEGORIES})


def category(label: str) -> Category:
    """The catalog entry for ``label``, with the known labels in the error."""
    try:
        return CATALOG[label]
    except KeyError:
        raise KeyError(f"unknown category {label!r}; known: {sorted(CATALOG)}") from None


def color_rgb(name: str) -> tuple[float, float, float]:
    """sRGB triple of a palette colour name."""
    try:
        return PALETTE[name]
    except KeyError:
        raise KeyError(f"unknown colour {name!r}; known: {sorted(PALETTE)}") from None


def sample_size(variant: ShapeVariant, size_class: str, rng: np.random.Generator) -> tuple[float, float, float]:
    """A size inside the ``size_class`` third of the variant's range, on every axis.

    Axes are drawn around a shared fraction with a little independent jitter, so objects of a class
    vary in proportion but a "large" one is larger than a "medium" one along every axis. Rounded to
    0.1 mm so that the scene graph holds short, exactly reproducible numbers.
    """
    if size_class not in SIZE_CLASSES:
        raise ValueError(f"size_class must be one of {SIZE_CLASSES}, got {size_class!r}")
    k = SIZE_CLASSES.index(size_class)
    lo_f, hi_f = k / 3.0, (k + 1) / 3.0
    base = rng.uniform(lo_f, hi_f)
    frac = np.clip(base + rng.uniform(-0.08, 0.08, size=3), lo_f, hi_f)
    lo, hi = np.asarray(variant.size_min), np.asarray(variant.size_max)
    size = lo + frac * (hi - lo)
    if variant.round:
        size[1] = size[0]
    return tuple(float(round(s, 4)) for s in size)  # type: ignore[return-value]
