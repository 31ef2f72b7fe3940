"""Camera and rigid-body geometry: back-projection, transforms, quaternions, voxels, depth alignment.

Everything is vectorised numpy; the pieces the model runs per batch on the GPU
(:func:`backproject_depth_torch`, :func:`transform_points_torch`) also have torch versions with the
same conventions, so training, inference and the scene tools agree on where a pixel lands.

Conventions: pixel ``(u, v)`` = (column, row) with pixel centres at integer coordinates (OpenCV);
camera frame is OpenCV optical (x right, y down, z forward); quaternions are in ROS order
``(x, y, z, w)``; transforms are 4×4 homogeneous matrices ``T_target_source``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, overload, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.spatial.transform import Rotation

if TYPE_CHECKING:  # torch is imported lazily so numpy-only users (and tools) do not pay for it.
    import torch

__all__ = [
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
]

# Dense occupancy grids up to this many cells are faster than sorting for unique voxels.
_DENSE_GRID_MAX_CELLS = 1 << 24


def _check_K(K: ArrayLike) -> NDArray[np.float64]:
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"K: expected shape (3, 3), got {K.shape}")
    if not (K[0, 0] > 0 and K[1, 1] > 0):
        raise ValueError(f"K: focal lengths must be positive, got fx={K[0, 0]}, fy={K[1, 1]}")
    return K


def _check_T(T: ArrayLike, name: str = "T") -> NDArray[np.float64]:
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise ValueError(f"{name}: expected shape (4, 4), got {T.shape}")
    return T


# ---------------------------------------------------------------------------------------------------
# Rigid transforms
# ---------------------------------------------------------------------------------------------------
def make_transform(R: ArrayLike, t: ArrayLike) -> NDArray[np.float64]:
    """4×4 homogeneous transform from a 3×3 rotation and a translation."""
    R = np.asarray(R, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    if R.shape != (3, 3) or t.shape != (3,):
        raise ValueError(f"make_transform: expected R (3, 3) and t (3,), got {R.shape} and {t.shape}")
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = t
    return T


def invert_transform(T: ArrayLike) -> NDArray[np.float64]:
    """Inverse of a rigid transform using R^T (exact and cheaper than a general inverse)."""
    T = _check_T(T)
    R = T[:3, :3]
    out = np.eye(4)
    out[:3, :3] = R.T
    out[:3, 3] = -R.T @ T[:3, 3]
    return out


def transform_points(T: ArrayLike, points: ArrayLike) -> NDArray[np.floating]:
    """Apply a 4×4 transform to points of shape (..., 3).

    Floating inputs keep their dtype (a float32 cloud of a million points stays float32); other
    inputs are promoted to float64.
    """
    T = _check_T(T)
    pts = np.asarray(points)
    if pts.shape[-1:] != (3,):
        raise ValueError(f"points: expected shape (..., 3), got {pts.shape}")
    dtype = pts.dtype if np.issubdtype(pts.dtype, np.floating) else np.dtype(np.float64)
    pts = pts.astype(dtype, copy=False)
    R = T[:3, :3].astype(dtype)
    out = pts @ R.T
    # Adding t per column: broadcasting a (3,) vector over an (N, 3) array runs numpy's slow
    # short-inner-loop path (~4x slower than the matmul itself for large clouds).
    for i in range(3):
        out[..., i] += dtype.type(T[i, 3])
    return out


def transform_points_torch(T: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Batched rigid transform: ``T`` (B, 4, 4) or (4, 4), ``points`` (B, ..., 3) or (..., 3)."""
    T = T.to(dtype=points.dtype, device=points.device)
    R, t = T[..., :3, :3], T[..., :3, 3]
    if T.ndim == 2:
        return points @ R.T + t
    B = T.shape[0]
    flat = points.reshape(B, -1, 3)
    out = flat @ R.transpose(1, 2) + t[:, None, :]
    return out.reshape(points.shape)


def quaternion_to_matrix(q: ArrayLike) -> NDArray[np.float64]:
    """3×3 rotation from a quaternion in ROS order ``(x, y, z, w)``; normalised first (ROS messages often are not quite unit)."""
    q = np.asarray(q, dtype=np.float64)
    if q.shape != (4,):
        raise ValueError(f"quaternion: expected 4 values (x, y, z, w), got shape {q.shape}")
    if not np.all(np.isfinite(q)) or np.linalg.norm(q) < 1e-12:
        raise ValueError(f"quaternion: must be finite and non-zero, got {q.tolist()}")
    return Rotation.from_quat(q).as_matrix()


def matrix_to_quaternion(R: ArrayLike) -> NDArray[np.float64]:
    """Quaternion ``(x, y, z, w)`` with ``w >= 0`` (one canonical sign, so equal rotations compare equal)."""
    R = np.asarray(R, dtype=np.float64)
    if R.shape == (4, 4):
        R = R[:3, :3]
    if R.shape != (3, 3):
        raise ValueError(f"rotation: expected shape (3, 3) or (4, 4), got {R.shape}")
    return Rotation.from_matrix(R).as_quat(canonical=True)


def transform_from_translation_quaternion(t: ArrayLike, q: ArrayLike) -> NDArray[np.float64]:
    """4×4 transform from a ROS ``Transform``/``Pose`` (translation xyz, rotation xyzw)."""
    return make_transform(quaternion_to_matrix(q), t)


# ---------------------------------------------------------------------------------------------------
# Back-projection
# ---------------------------------------------------------------------------------------------------
def backproject_depth(
    depth: ArrayLike,
    K: ArrayLike,
    T_world_cam: ArrayLike | None = None,
    stride: int = 1,
    *,
    max_depth: float | None = None,
    dtype: type[np.floating] | np.dtype = np.float32,
) -> tuple[NDArray[np.floating], NDArray[np.bool_]]:
    """Lift the valid pixels of a depth image to 3D.

    Args:
        depth: H×W metres; 0, negative and non-finite values are invalid.
        K: 3×3 intrinsics of ``depth``.
        T_world_cam: optional camera-to-world transform; points are in the camera frame without it.
        stride: keep every ``stride``-th row and column (cheap subsampling for coarse maps).
        max_depth: optionally treat readings beyond this range as invalid (far depth is noisy).
        dtype: output dtype; float32 by default because clouds are large and metres need no more.

    Returns:
        ``(points, mask)``: points (N, 3) in row-major pixel order, and the boolean validity mask over
        the strided grid ``depth[::stride, ::stride]`` so ``points[i]`` belongs to the i-th True pixel.
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    d = np.asarray(depth)
    if d.ndim != 2:
        raise ValueError(f"depth: expected shape (H, W), got {d.shape}")
    K = _check_K(K)
    d = d[::stride, ::stride]
    with np.errstate(invalid="ignore"):
        mask = np.isfinite(d) & (d > 0)
        if max_depth is not None:
            mask &= d <= max_depth
    dt = np.dtype(dtype)
    fx, s, cx, fy, cy = K[0, 0], K[0, 1], K[0, 2], K[1, 1], K[1, 2]
    if T_world_cam is None:
        R, t = np.eye(3), np.zeros(3)
    else:
        T = _check_T(T_world_cam, "T_world_cam")
        R, t = T[:3, :3], T[:3, 3]
    # The ray through pixel (u, v) is (x0(u) - (s/fx) y0(v), y0(v), 1) in the camera, so each world
    # component of the ray is separable, a_i(u) + b_i(v): it is built from the two small axes, one
    # component at a time on contiguous images (numpy's loops are slow on a 3-wide inner axis, and a
    # BLAS matmul's threads stall on a busy CPU), written into the planes of an (H, W, 3) image and
    # compacted with ONE boolean selection over 3-float records instead of three.
    x0 = (np.arange(d.shape[1]) * stride - cx) / fx
    y0 = (np.arange(d.shape[0]) * stride - cy) / fy
    a = (x0[:, None] * R[:, 0]).astype(dt)  # (W, 3)
    b = (y0[:, None] * (R[:, 1] - (s / fx) * R[:, 0]) + R[:, 2]).astype(dt)  # (H, 3)
    d = d.astype(dt, copy=False)
    image = np.empty((*d.shape, 3), dtype=dt)
    ray = np.empty(d.shape, dtype=dt)
    with np.errstate(invalid="ignore", over="ignore"):  # invalid pixels may hold inf/NaN; they are masked out
        for i in range(3):
            if T_world_cam is None and i == 2:
                image[..., 2] = d
                continue
            np.add(a[None, :, i], b[:, None, i], out=ray)
            ray *= d
            np.add(ray, dt.type(t[i]), out=image[..., i])
    records = image.view(np.dtype((np.void, 3 * dt.itemsize))).reshape(d.shape)
    points = records[mask].view(dt).reshape(-1, 3)
    return points, mask


def backproject_depth_torch(
    depth: torch.Tensor,
    K: torch.Tensor,
    T_world_cam: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched back-projection of every pixel, for the model's 3D position encoding.

    Args:
        depth: (B, H, W) metres; 0 / negative / non-finite are invalid.
        K: (B, 3, 3) or (3, 3) intrinsics.
        T_world_cam: (B, 4, 4), (4, 4) or None (camera frame).

    Returns:
        ``(points, mask)``: points (B, H, W, 3) in ``depth``'s dtype and device, mask (B, H, W) bool.
        Invalid pixels get the point (0, 0, 0) rather than NaN, because NaN survives multiplication by
        a zero mask and would poison gradients; always consult ``mask``.
    """
    import torch

    if depth.ndim != 3:
        raise ValueError(f"depth: expected shape (B, H, W), got {tuple(depth.shape)}")
    if not depth.is_floating_point():
        raise ValueError(f"depth: expected a floating tensor in metres, got {depth.dtype}")
    B, H, W = depth.shape
    K = K.to(dtype=depth.dtype, device=depth.device)
    if K.ndim == 2:
        K = K.expand(B, 3, 3)
    if K.shape != (B, 3, 3):
        raise ValueError(f"K: expected shape ({B}, 3, 3) or (3, 3), got {tuple(K.shape)}")
    mask = torch.isfinite(depth) & (depth > 0)
    z = torch.where(mask, depth, torch.zeros((), dtype=depth.dtype, device=depth.device))
    fx, s, cx = K[:, 0, 0, None, None], K[:, 0, 1, None, None], K[:, 0, 2, None, None]
    fy, cy = K[:, 1, 1, None, None], K[:, 1, 2, None, None]
    v = torch.arange(H, dtype=depth.dtype, device=depth.device).view(1, H, 1)
    u = torch.arange(W, dtype=depth.dtype, device=depth.device).view(1, 1, W)
    y_n = (v - cy) / fy
    x_n = (u - cx - s * y_n) / fx
    points = torch.stack([x_n * z, y_n * z, z], dim=-1)
    if T_world_cam is not None:
        T = T_world_cam.to(dtype=depth.dtype, device=depth.device)
        if T.ndim == 2:
            T = T.expand(B, 4, 4)
        if T.shape != (B, 4, 4):
            raise ValueError(f"T_world_cam: expected shape ({B}, 4, 4) or (4, 4), got {tuple(T.shape)}")
        points = transform_points_torch(T, points)
        points = points * mask.unsqueeze(-1)  # keep invalid pixels at exactly 0 after the translation
    return points, mask


# ---------------------------------------------------------------------------------------------------
# Voxels
# ---------------------------------------------------------------------------------------------------
@overload
def voxelize(points: ArrayLike, voxel_size: float = ..., bounds: ArrayLike | None = ..., return_unique: Literal[False] = ...) -> NDArray[np.int64]: ...
@overload
def voxelize(points: ArrayLike, voxel_size: float = ..., bounds: ArrayLike | None = ..., *, return_unique: Literal[True]) -> tuple[NDArray[np.int64], NDArray[np.int64]]: ...
def voxelize(
    points: ArrayLike,
    voxel_size: float = 0.1,
    bounds: ArrayLike | None = None,
    return_unique: bool = False,
) -> NDArray[np.int64] | tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Integer voxel index of every point, optionally with the set of occupied voxels.

    Args:
        points: (N, 3), finite (NaN/inf raise ``ValueError``).
        voxel_size: edge length in metres.
        bounds: optional ``[[xmin, ymin, zmin], [xmax, ymax, zmax]]``. Indices are then relative to
            the minimum corner and clamped into ``[0, n_axis - 1]``, so points outside the region land
            in the border voxels (callers that want them dropped filter first). Without bounds,
            indices are ``floor(p / voxel_size)`` in the world grid and may be negative.
        return_unique: also return the occupied voxels (M, 3), sorted lexicographically.

    Returns:
        ``indices`` (N, 3) int64, or ``(indices, unique)`` when ``return_unique``. When only the
        occupied set is wanted, :func:`occupied_voxels` skips building ``indices`` and is faster.
    """
    axes, lo, dims = _floor_axes(points, voxel_size, bounds)
    idx = np.empty((axes[0].shape[0], 3), dtype=np.int64)
    for i in range(3):
        idx[:, i] = axes[i]
    if not return_unique:
        return idx
    return idx, _unique_voxels(axes, lo, dims, fallback_rows=idx)


def occupied_voxels(points: ArrayLike, voxel_size: float = 0.1, bounds: ArrayLike | None = None) -> NDArray[np.int64]:
    """The occupied voxels (M, 3) int64, sorted lexicographically; same grid and clamping as :func:`voxelize`.

    This is what mapping needs per keyframe, so it avoids materialising the per-point (N, 3) indices.
    """
    axes, lo, dims = _floor_axes(points, voxel_size, bounds)
    return _unique_voxels(axes, lo, dims)


def _floor_axes(
    points: ArrayLike, voxel_size: float, bounds: ArrayLike | None
) -> tuple[list[NDArray[np.integer]], NDArray[np.int64], NDArray[np.int64]]:
    """Per-axis integer voxel coordinates plus the grid origin and extent (in voxels) they lie in.

    Works one axis at a time on contiguous 1-D arrays with a single reused float buffer: (N, 3)
    arithmetic is slow in numpy (3-wide inner loops), and every fresh multi-megabyte temporary costs
    page faults that, on small robot CPUs and VMs, take longer than the arithmetic itself.
    """
    if not voxel_size > 0:
        raise ValueError(f"voxel_size must be > 0, got {voxel_size}")
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points: expected shape (N, 3), got {pts.shape}")
    if not np.issubdtype(pts.dtype, np.floating):
        pts = pts.astype(np.float64)
    n = pts.shape[0]
    vs = pts.dtype.type(voxel_size)
    lo_b = None
    if bounds is not None:
        b = np.asarray(bounds, dtype=np.float64)
        if b.shape != (2, 3) or not np.all(b[1] > b[0]):
            raise ValueError(f"bounds: expected [[min xyz], [max xyz]] with max > min, got {b.tolist()}")
        lo_b = b[0]
        dims = np.maximum(np.ceil((b[1] - b[0]) / voxel_size - 1e-9).astype(np.int64), 1)
    if n == 0:
        empty = np.empty(0, np.int64)
        return [empty, empty, empty], np.zeros(3, np.int64), (dims if bounds is not None else np.zeros(3, np.int64))

    buf = np.empty(n, dtype=pts.dtype)
    axes: list[NDArray[np.integer]] = []
    lo = np.zeros(3, np.int64)
    hi = np.zeros(3, np.int64)
    for i in range(3):
        if lo_b is not None:
            np.subtract(pts[:, i], pts.dtype.type(lo_b[i]), out=buf)
            buf /= vs
        else:
            np.divide(pts[:, i], vs, out=buf)  # one pass: strided read, contiguous write
        np.floor(buf, out=buf)
        fmin, fmax = buf.min(), buf.max()  # NaN propagates and inf shows, so this doubles as the finiteness check
        if not (np.isfinite(fmin) and np.isfinite(fmax)):
            raise ValueError("points: contain NaN or inf")
        if lo_b is not None:
            np.clip(buf, 0, dims[i] - 1, out=buf)
            fmin, fmax = min(max(fmin, 0), dims[i] - 1), min(max(fmax, 0), dims[i] - 1)
        small = max(abs(fmin), abs(fmax)) < 2**31 - 1
        axes.append(buf.astype(np.int32 if small else np.int64))
        lo[i], hi[i] = int(fmin), int(fmax)
    if lo_b is not None:
        return axes, np.zeros(3, np.int64), dims
    return axes, lo, hi - lo + 1


def _unique_voxels(
    axes: list[NDArray[np.integer]],
    lo: NDArray[np.int64],
    dims: NDArray[np.int64],
    fallback_rows: NDArray[np.int64] | None = None,
) -> NDArray[np.int64]:
    """Unique voxels via a linear key: a dense bitmap when the grid is small, else a 1-D sort.

    ``np.unique(axis=0)`` sorts structured rows and is an order of magnitude slower; a C-order
    linear key sorts identically to lexicographic (x, y, z). ``axes`` may be modified in place.
    """
    if axes[0].shape[0] == 0:
        return np.empty((0, 3), np.int64)
    nx, ny, nz = (int(v) for v in dims)
    n_cells = nx * ny * nz  # Python ints: exact, so the overflow checks below are sound
    if n_cells >= 1 << 62:
        # A linear key would overflow int64 (points kilometres apart at fine resolution).
        rows = fallback_rows if fallback_rows is not None else np.stack(axes, axis=1).astype(np.int64)
        return np.unique(rows, axis=0)
    key_t = np.int32 if n_cells < 2**31 and all(a.dtype == np.int32 for a in axes) else np.int64
    # Subtract the origin from each axis before combining, so no partial sum leaves [0, n_cells).
    keys = np.subtract(axes[0], lo[0], dtype=key_t)
    keys *= key_t(ny)
    keys += np.subtract(axes[1], lo[1], dtype=key_t)
    keys *= key_t(nz)
    keys += np.subtract(axes[2], lo[2], dtype=key_t)
    # Neighbouring pixels mostly fall in the same voxel, so dropping repeats of the previous key
    # first shrinks the scatter/sort below by an order of magnitude for back-projected frames.
    if keys.shape[0] > 1:
        keep = np.empty(keys.shape[0], dtype=np.bool_)
        keep[0] = True
        np.not_equal(keys[1:], keys[:-1], out=keep[1:])
        keys = keys[keep]
    if n_cells <= _DENSE_GRID_MAX_CELLS:
        occ = np.zeros(n_cells, dtype=np.bool_)
        occ[keys] = True
        ukeys = np.flatnonzero(occ)
    else:
        ukeys = np.unique(keys).astype(np.int64)
    out = np.empty((ukeys.shape[0], 3), dtype=np.int64)
    out[:, 0], rem = np.divmod(ukeys, ny * nz)
    out[:, 1], out[:, 2] = np.divmod(rem, nz)
    return out + lo


# ---------------------------------------------------------------------------------------------------
# Depth registration
# ---------------------------------------------------------------------------------------------------
def align_depth_to_color(
    depth: ArrayLike,
    K_depth: ArrayLike,
    K_color: ArrayLike,
    color_hw: tuple[int, int],
) -> NDArray[np.float32]:
    """Resample a registered depth image onto the colour camera's pixel grid.

    "Registered" means depth and colour share the optical centre and orientation (ScanNet, most RGB-D
    drivers' ``aligned_depth_to_color``) and differ only in intrinsics and resolution; this is the
    one place where that difference is removed (DESIGN: resample once at the edge). Nearest
    neighbour is used so depth is never averaged across an object boundary or an invalid (0) pixel;
    colour pixels whose ray falls outside the depth image get 0.
    """
    d = np.asarray(depth)
    if d.ndim != 2:
        raise ValueError(f"depth: expected shape (H, W), got {d.shape}")
    Kd, Kc = _check_K(K_depth), _check_K(K_color)
    Hc, Wc = (int(v) for v in color_hw)
    if Hc <= 0 or Wc <= 0:
        raise ValueError(f"color_hw must be positive, got {color_hw}")
    d = d.astype(np.float32, copy=False)
    if d.shape == (Hc, Wc) and np.array_equal(Kd, Kc):
        return d.copy()
    Hd, Wd = d.shape
    v = np.arange(Hc, dtype=np.float64)[:, None]
    u = np.arange(Wc, dtype=np.float64)[None, :]
    y_n = (v - Kc[1, 2]) / Kc[1, 1]
    x_n = (u - Kc[0, 2] - Kc[0, 1] * y_n) / Kc[0, 0] if Kc[0, 1] != 0 else (u - Kc[0, 2]) / Kc[0, 0]
    ud = Kd[0, 0] * x_n + Kd[0, 2]
    if Kd[0, 1] != 0:
        ud = ud + Kd[0, 1] * y_n
    vd = Kd[1, 1] * y_n + Kd[1, 2]
    ui = np.floor(ud + 0.5).astype(np.int64)
    vi = np.floor(vd + 0.5).astype(np.int64)
    ui, vi = np.broadcast_arrays(ui, vi)
    inside = (ui >= 0) & (ui < Wd) & (vi >= 0) & (vi < Hd)
    out = d[np.clip(vi, 0, Hd - 1), np.clip(ui, 0, Wd - 1)]
    out = np.where(inside, out, np.float32(0.0)).astype(np.float32, copy=False)
    # Non-finite depth stays invalid after resampling rather than spreading NaN.
    out[~np.isfinite(out) | (out < 0)] = 0.0
    return out
