"""Procedural indoor RGB-D scenes: the data source the model, trainer, node and replay evaluation learn from.

Real ScanNet cannot be downloaded here, so scenes are generated instead, real-shaped (ScanNet's
scene-directory layout, a consumer RGB-D camera's intrinsics, noise and holes) and learnable
(nameable colours, composed shapes, same-category distractors, exact ground-truth boxes).

Pipeline, one module per step: :mod:`.catalog` (what may appear) → :mod:`.layout` (seed → room and
scene graph) → :mod:`.meshes` (open3d primitives) → :mod:`.trajectory` (camera path) →
:mod:`.render` (ray-cast RGB-D) → :mod:`.generate` (scene directory, batches).

Importing this package does not import open3d; the modules that need it do.
"""

from __future__ import annotations

from .catalog import CATALOG, PALETTE, SIZE_CLASSES, Category, Material, Placement, ShapeVariant
from .layout import GENERATOR_VERSION, LayoutConfig, PlacedObject, Room, SceneLayout, Walkway, generate_layout, scene_id_for_seed
from .trajectory import TrajectoryConfig, camera_intrinsics, look_rotation, orbit_trajectory

__all__ = [
    "CATALOG",
    "PALETTE",
    "SIZE_CLASSES",
    "Category",
    "Material",
    "Placement",
    "ShapeVariant",
    "GENERATOR_VERSION",
    "LayoutConfig",
    "PlacedObject",
    "Room",
    "SceneLayout",
    "Walkway",
    "generate_layout",
    "scene_id_for_seed",
    "TrajectoryConfig",
    "camera_intrinsics",
    "look_rotation",
    "orbit_trajectory",
]
