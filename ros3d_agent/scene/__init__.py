"""Scene layer: the shared data types, camera geometry, IoU and scene-directory IO.

Nothing here imports rclpy (DESIGN.md house rule): a training box uses this package without ROS.
"""

from .errors import FrameLoadError, InvalidBoxError, InvalidFrameError, SceneDirError, SceneError
from .geometry import (
    align_depth_to_color,
    backproject_depth,
    backproject_depth_torch,
    invert_transform,
    make_transform,
    matrix_to_quaternion,
    occupied_voxels,
    quaternion_to_matrix,
    transform_from_translation_quaternion,
    transform_points,
    transform_points_torch,
    voxelize,
)
from .iou import aabb_iou, box_iou, pairwise_aabb_iou
from .scene_dir import SceneDir
from .types import Box3D, Frame, SceneObject

__all__ = [
    "Frame",
    "Box3D",
    "SceneObject",
    "SceneDir",
    "SceneError",
    "InvalidFrameError",
    "InvalidBoxError",
    "SceneDirError",
    "FrameLoadError",
    "backproject_depth",
    "backproject_depth_torch",
    "transform_points",
    "transform_points_torch",
    "invert_transform",
    "make_transform",
    "quaternion_to_matrix",
    "matrix_to_quaternion",
    "transform_from_translation_quaternion",
    "voxelize",
    "occupied_voxels",
    "align_depth_to_color",
    "aabb_iou",
    "pairwise_aabb_iou",
    "box_iou",
]
