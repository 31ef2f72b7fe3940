"""Core value types shared by every part of the system: :class:`Frame`, :class:`Box3D`, :class:`SceneObject`.

These are the contracts in DESIGN.md ("Shared contracts"). They validate on construction so that a
malformed frame fails loudly where it was made (the ROS callback, the scene-dir reader) instead of
surfacing as NaNs deep inside the model.

The dataclasses are frozen: attributes cannot be rebound. Numpy arrays inside a :class:`Frame` are
not copied or locked (frames are large and arrive at camera rate), so treat them as read-only by
convention; :class:`Box3D` arrays are tiny and are copied and made read-only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .errors import InvalidBoxError, InvalidFrameError

__all__ = ["Frame", "Box3D", "SceneObject"]

# A pose read from a text file or composed from TF in float32 is orthonormal only to ~1e-6; allow
# generous slack so real data passes, while a scaled or sheared matrix (errors of 1e-2 and up) fails.
_ROTATION_ATOL = 1e-3


def _as_real_matrix(name: str, value: ArrayLike, shape: tuple[int, int]) -> NDArray[np.float64]:
    """Accept any real numeric array-like (ints included: ``K`` is often written with integers)."""
    try:
        arr = np.asarray(value)
    except Exception as exc:  # pragma: no cover - defensive: exotic objects
        raise InvalidFrameError(f"{name}: cannot be converted to an array ({exc})") from exc
    if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise InvalidFrameError(f"{name}: expected a real numeric {shape[0]}x{shape[1]} matrix, got dtype {arr.dtype}")
    if arr.shape != shape:
        raise InvalidFrameError(f"{name}: expected shape {shape}, got {arr.shape}")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise InvalidFrameError(f"{name}: contains NaN or inf")
    return arr


@dataclass(frozen=True, eq=False)
class Frame:
    """One posed RGB-D observation, the unit every other part consumes.

    Attributes:
        rgb: uint8 H×W×3 colour image, RGB channel order.
        depth: float32 H×W depth in metres, registered to ``rgb`` (same intrinsics and resolution);
            0 marks an invalid pixel. Depth cameras emit NaN/inf (no return) and occasionally negative
            values (filtering artefacts); those are rewritten to 0 on construction rather than
            rejected, because a handful of such pixels is normal in every real depth image and
            downstream code already skips zeros.
        K: 3×3 float64 pinhole intrinsics of ``rgb`` (and therefore of ``depth``).
        T_world_cam: 4×4 float64 camera-to-world transform, OpenCV optical convention
            (x right, y down, z forward).
        stamp: acquisition time in integer nanoseconds (ROS time).
        frame_id: identifier of this observation (the file stem such as ``"00042"`` in a scene
            directory). It is not a TF frame name: the pose already resolves TF.
    """

    rgb: NDArray[np.uint8]
    depth: NDArray[np.float32]
    K: NDArray[np.float64]
    T_world_cam: NDArray[np.float64]
    stamp: int = 0
    frame_id: str = ""

    def __post_init__(self) -> None:
        rgb = self.rgb
        if not isinstance(rgb, np.ndarray):
            raise InvalidFrameError(f"rgb: expected a numpy array, got {type(rgb).__name__}")
        if rgb.dtype != np.uint8:
            raise InvalidFrameError(f"rgb: expected dtype uint8, got {rgb.dtype}")
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
            raise InvalidFrameError(f"rgb: expected shape (H, W, 3) with H, W > 0, got {rgb.shape}")

        depth = self.depth
        if not isinstance(depth, np.ndarray):
            raise InvalidFrameError(f"depth: expected a numpy array, got {type(depth).__name__}")
        if depth.dtype != np.float32:
            hint = " (uint16 millimetres? divide by the depth scale and cast to float32)" if depth.dtype == np.uint16 else ""
            raise InvalidFrameError(f"depth: expected dtype float32 metres, got {depth.dtype}{hint}")
        if depth.shape != rgb.shape[:2]:
            raise InvalidFrameError(
                f"depth: expected shape {rgb.shape[:2]} to match rgb (align depth to colour first), got {depth.shape}"
            )
        bad = ~np.isfinite(depth) | (depth < 0)
        if bad.any():
            depth = np.where(bad, np.float32(0.0), depth).astype(np.float32, copy=False)
            object.__setattr__(self, "depth", depth)

        K = _as_real_matrix("K", self.K, (3, 3))
        if not (K[0, 0] > 0 and K[1, 1] > 0):
            raise InvalidFrameError(f"K: focal lengths must be positive, got fx={K[0, 0]}, fy={K[1, 1]}")
        if not np.allclose(K[2], (0.0, 0.0, 1.0)) or K[1, 0] != 0:
            raise InvalidFrameError(f"K: not a pinhole intrinsics matrix (expected [[fx,s,cx],[0,fy,cy],[0,0,1]]), got {K.tolist()}")
        object.__setattr__(self, "K", K)

        T = _as_real_matrix("T_world_cam", self.T_world_cam, (4, 4))
        if not np.allclose(T[3], (0.0, 0.0, 0.0, 1.0)):
            raise InvalidFrameError(f"T_world_cam: last row must be [0, 0, 0, 1], got {T[3].tolist()}")
        R = T[:3, :3]
        ortho_err = float(np.abs(R @ R.T - np.eye(3)).max())
        if ortho_err > _ROTATION_ATOL:
            raise InvalidFrameError(f"T_world_cam: rotation block is not orthonormal (max |R R^T - I| = {ortho_err:.3g})")
        det = float(np.linalg.det(R))
        if abs(det - 1.0) > _ROTATION_ATOL:
            raise InvalidFrameError(f"T_world_cam: rotation block has det {det:.6g}, expected 1 (a reflection or scale)")
        object.__setattr__(self, "T_world_cam", T)

        stamp = self.stamp
        if isinstance(stamp, (bool, np.bool_)) or not isinstance(stamp, (int, np.integer)):
            raise InvalidFrameError(f"stamp: expected integer nanoseconds, got {type(stamp).__name__}")
        if stamp < 0:
            raise InvalidFrameError(f"stamp: must be >= 0 ns, got {stamp}")
        object.__setattr__(self, "stamp", int(stamp))

        if not isinstance(self.frame_id, str):
            raise InvalidFrameError(f"frame_id: expected str, got {type(self.frame_id).__name__}")

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])


def _vec3(name: str, value: ArrayLike) -> NDArray[np.float64]:
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidBoxError(f"{name}: expected 3 numbers, got {value!r}") from exc
    if arr.shape != (3,):
        raise InvalidBoxError(f"{name}: expected shape (3,), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InvalidBoxError(f"{name}: contains NaN or inf: {arr.tolist()}")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class Box3D:
    """A 3D box in the scene's world frame (metres).

    ``yaw`` is a rotation about world z in radians; ``None`` means axis-aligned, which is what the
    grounding benchmarks use and what selects axis-aligned IoU (see :func:`~ros3d_agent.scene.iou.box_iou`).
    ``yaw=0.0`` describes the same region as ``None`` but keeps the box in the oriented code path.
    """

    center: NDArray[np.float64]
    size: NDArray[np.float64]
    yaw: float | None = None

    def __post_init__(self) -> None:
        center = _vec3("center", self.center)
        size = _vec3("size", self.size)
        if not np.all(size > 0):
            raise InvalidBoxError(f"size: every extent must be > 0, got {size.tolist()}")
        object.__setattr__(self, "center", center)
        object.__setattr__(self, "size", size)
        if self.yaw is not None:
            try:
                yaw = float(self.yaw)
            except (TypeError, ValueError) as exc:
                raise InvalidBoxError(f"yaw: expected a number or None, got {self.yaw!r}") from exc
            if not math.isfinite(yaw):
                raise InvalidBoxError(f"yaw: must be finite, got {yaw}")
            object.__setattr__(self, "yaw", yaw)

    # -- list form -------------------------------------------------------------------------------
    @classmethod
    def from_list(cls, values: Sequence[float] | ArrayLike) -> Box3D:
        """Build from ``[cx, cy, cz, sx, sy, sz]`` (the annotation/prediction format) or ``[..., yaw]``."""
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
        if arr.shape[0] == 6:
            return cls(arr[:3], arr[3:6])
        if arr.shape[0] == 7:
            return cls(arr[:3], arr[3:6], float(arr[6]))
        raise InvalidBoxError(f"box list: expected 6 values [cx,cy,cz,sx,sy,sz] (+ optional yaw), got {arr.shape[0]}")

    def to_list(self) -> list[float]:
        """``[cx, cy, cz, sx, sy, sz]``, with ``yaw`` appended only when set, so no information is dropped."""
        out = [float(v) for v in self.center] + [float(v) for v in self.size]
        if self.yaw is not None:
            out.append(float(self.yaw))
        return out

    # -- geometry --------------------------------------------------------------------------------
    @property
    def volume(self) -> float:
        return float(np.prod(self.size))

    def _rot2d(self) -> NDArray[np.float64]:
        c, s = (math.cos(self.yaw), math.sin(self.yaw)) if self.yaw is not None else (1.0, 0.0)
        return np.array([[c, -s], [s, c]])

    def footprint(self) -> NDArray[np.float64]:
        """The 4×2 xy corners of the box base, counter-clockwise (what oriented IoU clips)."""
        hx, hy = self.size[0] / 2, self.size[1] / 2
        local = np.array([[-hx, -hy], [hx, -hy], [hx, hy], [-hx, hy]])
        return local @ self._rot2d().T + self.center[:2]

    def corners(self) -> NDArray[np.float64]:
        """8×3 corners: the bottom face (z-) counter-clockwise seen from +z, then the top face in the same order."""
        xy = self.footprint()
        z0 = self.center[2] - self.size[2] / 2
        z1 = self.center[2] + self.size[2] / 2
        bottom = np.column_stack([xy, np.full(4, z0)])
        top = np.column_stack([xy, np.full(4, z1)])
        return np.vstack([bottom, top])

    def bounds(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """``(min_xyz, max_xyz)`` of the axis-aligned box enclosing this one."""
        if self.yaw is None:
            half = self.size / 2
        else:
            c, s = abs(math.cos(self.yaw)), abs(math.sin(self.yaw))
            half = np.array([c * self.size[0] + s * self.size[1], s * self.size[0] + c * self.size[1], self.size[2]]) / 2
        return self.center - half, self.center + half

    def contains(self, points: ArrayLike) -> NDArray[np.bool_]:
        """Boolean mask over an (N, 3) array: inside or on the surface, honouring yaw."""
        pts = np.asarray(points, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 3:
            raise ValueError(f"points: expected shape (N, 3), got {pts.shape}")
        local = pts - self.center
        if self.yaw is not None:
            # Express the points in the box frame: rotate by -yaw about z.
            xy = local[:, :2] @ self._rot2d()
            local = np.column_stack([xy, local[:, 2]])
        # A relative tolerance keeps points that sit exactly on a face inside despite rounding in the rotation.
        half = self.size / 2 * (1 + 1e-12) + 1e-12
        return np.all(np.abs(local) <= half, axis=1)

    # -- value semantics -------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Box3D):
            return NotImplemented
        return bool(np.array_equal(self.center, other.center) and np.array_equal(self.size, other.size) and self.yaw == other.yaw)

    def __hash__(self) -> int:
        return hash(tuple(self.to_list()) + (self.yaw is None,))

    def __repr__(self) -> str:
        yaw = "" if self.yaw is None else f", yaw={self.yaw:.6g}"
        return f"Box3D(center={self.center.tolist()}, size={self.size.tolist()}{yaw})"


@dataclass(frozen=True)
class SceneObject:
    """An annotated object of a scene (an ``objects.json`` entry): instance id, class label, box."""

    id: int
    label: str
    box: Box3D = field(compare=True)

    def __post_init__(self) -> None:
        if isinstance(self.id, (bool, np.bool_)) or not isinstance(self.id, (int, np.integer)):
            raise ValueError(f"id: expected int, got {type(self.id).__name__}")
        object.__setattr__(self, "id", int(self.id))
        if not isinstance(self.label, str):
            raise ValueError(f"label: expected str, got {type(self.label).__name__}")
        if not isinstance(self.box, Box3D):
            raise ValueError(f"box: expected Box3D, got {type(self.box).__name__}")

    def to_dict(self) -> dict[str, Any]:
        """The ``objects.json`` record: ``{"id", "label", "box": [cx,cy,cz,sx,sy,sz(,yaw)]}``."""
        return {"id": self.id, "label": self.label, "box": self.box.to_list()}

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> SceneObject:
        return cls(id=record["id"], label=record["label"], box=Box3D.from_list(record["box"]))
