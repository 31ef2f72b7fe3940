"""Camera intrinsics and a handheld-like camera path through a synthetic room.

The path walks (most of) a loop of the layout's walkway ellipse, at chest-to-eye height, while the
view swings smoothly left and right of the room centre and tilts down a little, with a small roll
and lateral wander. This is how people scan a room with a handheld RGB-D camera (ScanNet) or how a
robot orbits a space, and it shows every object from several sides at 1–5 m: the distances and view
changes the model sees on real data. All variation is low-frequency sinusoids with per-scene random
phases, so consecutive poses are close (the replay and keyframe code rely on smooth motion).

Poses are camera-to-world in the OpenCV optical convention (x right, y down, z forward), as in
:class:`~ros3d_agent.scene.types.Frame`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..geometry import make_transform
from .layout import Walkway

__all__ = ["TrajectoryConfig", "camera_intrinsics", "look_rotation", "orbit_trajectory", "REFERENCE_WIDTH"]

#: Focal lengths are specified for a 640-pixel-wide image and scaled with the width, keeping the field of view.
REFERENCE_WIDTH = 640


@dataclass(frozen=True)
class TrajectoryConfig:
    """Shape of the camera path. Angles in degrees, lengths in metres; ranges are drawn per scene."""

    num_frames: int = 40
    fps: float = 30.0
    height: tuple[float, float] = (1.2, 1.7)
    height_wobble: float = 0.06
    pitch_deg: tuple[float, float] = (-22.0, -8.0)
    pitch_wobble_deg: float = 5.0
    pan_deg: tuple[float, float] = (25.0, 45.0)
    pan_cycles: tuple[int, int] = (1, 2)
    roll_deg: float = 2.0
    wander: float = 0.06
    arc: tuple[float, float] = (0.85, 1.0)
    focal: tuple[float, float] = (525.0, 580.0)

    def __post_init__(self) -> None:
        if isinstance(self.num_frames, bool) or not isinstance(self.num_frames, int) or self.num_frames < 1:
            raise ValueError(f"num_frames must be a positive integer, got {self.num_frames!r}")
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"fps must be > 0, got {self.fps}")
        for name in ("height", "pitch_deg", "pan_deg", "arc", "focal"):
            lo, hi = getattr(self, name)
            if not (lo <= hi):
                raise ValueError(f"{name}: expected (min, max) with min <= max, got {(lo, hi)}")
        if self.height[0] <= 0.2 or self.focal[0] <= 0 or self.arc[0] <= 0:
            raise ValueError("height, focal and arc must be positive")
        if not (-89.0 < self.pitch_deg[0] and self.pitch_deg[1] < 89.0):
            raise ValueError(f"pitch_deg must stay within (-89, 89), got {self.pitch_deg}")

    def record(self) -> dict[str, object]:
        """The ``trajectory`` entry of ``scene_graph.json``."""
        return {"type": "orbit", "num_frames": int(self.num_frames), "fps": float(self.fps)}


def camera_intrinsics(width: int, height: int, rng: np.random.Generator, focal: tuple[float, float] = (525.0, 580.0)) -> NDArray[np.float64]:
    """A pinhole ``K`` like a consumer RGB-D camera's: fx ≈ fy, principal point near the centre."""
    if width < 8 or height < 8:
        raise ValueError(f"image size must be at least 8x8 pixels, got {width}x{height}")
    s = width / REFERENCE_WIDTH
    fx = float(rng.uniform(*focal)) * s
    fy = fx * (1.0 + float(rng.uniform(-0.004, 0.004)))
    cx = (width - 1) / 2 + float(rng.uniform(-0.008, 0.008)) * width
    cy = (height - 1) / 2 + float(rng.uniform(-0.008, 0.008)) * height
    return np.array([[round(fx, 3), 0.0, round(cx, 3)], [0.0, round(fy, 3), round(cy, 3)], [0.0, 0.0, 1.0]])


def look_rotation(heading: float, pitch: float, roll: float = 0.0) -> NDArray[np.float64]:
    """Camera-to-world rotation of an OpenCV camera: looking along world ``heading`` (radians from +x,
    counter-clockwise), tilted up by ``pitch`` (negative looks down), rolled by ``roll`` about the view axis."""
    cp = math.cos(pitch)
    forward = np.array([cp * math.cos(heading), cp * math.sin(heading), math.sin(pitch)])
    right = np.array([math.sin(heading), -math.cos(heading), 0.0])
    down = np.cross(forward, right)
    cr, sr = math.cos(roll), math.sin(roll)
    right, down = cr * right + sr * down, -sr * right + cr * down
    return np.column_stack([right, down, forward])


def _smooth(t: NDArray[np.float64], rng: np.random.Generator, cycles: tuple[float, ...]) -> NDArray[np.float64]:
    """A smooth signal in about [-1, 1] over t in [0, 1): a few sinusoids with random phases."""
    out = np.zeros_like(t)
    for k in cycles:
        out += np.sin(2 * math.pi * k * t + float(rng.uniform(0, 2 * math.pi)))
    return out / len(cycles)


def orbit_trajectory(walkway: Walkway, config: TrajectoryConfig, rng: np.random.Generator) -> NDArray[np.float64]:
    """``(num_frames, 4, 4)`` camera-to-world poses along the walkway, looking into the room."""
    n = config.num_frames
    t = np.arange(n, dtype=np.float64) / max(n, 1)
    start = float(rng.uniform(0, 2 * math.pi))
    direction = 1.0 if rng.random() < 0.5 else -1.0
    arc = float(rng.uniform(*config.arc))
    angle = start + direction * 2 * math.pi * arc * t

    xy = walkway.point(angle)
    radial = xy - np.asarray(walkway.center)
    radial /= np.maximum(np.linalg.norm(radial, axis=1, keepdims=True), 1e-9)
    xy = xy + radial * (config.wander * _smooth(t, rng, (3.0, 5.0)))[:, None]
    z = float(rng.uniform(*config.height)) + config.height_wobble * _smooth(t, rng, (1.0, 2.0))

    to_center = np.asarray(walkway.center) - xy
    heading0 = np.arctan2(to_center[:, 1], to_center[:, 0])
    pan_amp = math.radians(float(rng.uniform(*config.pan_deg)))
    pan_k = int(rng.integers(config.pan_cycles[0], config.pan_cycles[1] + 1))
    heading = heading0 + pan_amp * np.sin(2 * math.pi * pan_k * t + float(rng.uniform(0, 2 * math.pi)))
    pitch = math.radians(float(rng.uniform(*config.pitch_deg))) + math.radians(config.pitch_wobble_deg) * _smooth(t, rng, (1.0, 3.0))
    roll = math.radians(config.roll_deg) * _smooth(t, rng, (2.0, 4.0))

    poses = np.empty((n, 4, 4))
    for i in range(n):
        poses[i] = make_transform(look_rotation(float(heading[i]), float(pitch[i]), float(roll[i])), (xy[i, 0], xy[i, 1], z[i]))
    return poses
