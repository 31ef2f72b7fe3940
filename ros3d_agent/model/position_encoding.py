"""3D position of visual tokens: per-patch world coordinates and the sin-cos 3D position code.

Every visual token carries *where in the scene* it looks, so the LLM can relate views to each other
and to boxes (Video-3D-LLM, "avg-discrete-sin3d"): the depth-unprojected world xyz of a token's pixels
is averaged per patch cell (:func:`patch_xyz_from_world`), snapped to a 0.1 m voxel index
(:func:`discretize_xyz`) and turned into a fixed sinusoidal code (:class:`SinCos3DPositionEncoding`)
that is *added* to the token. The same code marks box centres for grounding and ``<coord>``.

The code has no learnable parameters, so it costs nothing to checkpoint and is identical at train
and inference time. Discretizing before encoding makes the code insensitive to centimetre-level depth
noise and bounds the largest argument of the sinusoids (x, y in 0..300, z in 0..100 voxels).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "PositionEncodingConfig",
    "discretize_xyz",
    "SinCos3DPositionEncoding",
    "patch_xyz_from_world",
    "cell_assignment",
]


@dataclass(frozen=True)
class PositionEncodingConfig:
    """Voxel grid and frequency base of the 3D position code.

    Attributes:
        voxel_size: edge of a voxel in metres; coordinates are encoded as integer voxel indices.
        min_xyz: lower corner of the encoded volume (metres); coordinates below are clamped.
        max_xyz: upper corner (metres); coordinates above are clamped. The defaults hold any
            indoor scene once it is roughly centred (ScanNet scenes are axis-aligned and centred).
        temperature: the frequency base of the sinusoids (the transformer's 10000).
    """

    voxel_size: float = 0.1
    min_xyz: tuple[float, float, float] = (-15.0, -15.0, -5.0)
    max_xyz: tuple[float, float, float] = (15.0, 15.0, 5.0)
    temperature: float = 10000.0

    def __post_init__(self) -> None:
        if not self.voxel_size > 0:
            raise ValueError(f"voxel_size must be > 0, got {self.voxel_size}")
        if len(self.min_xyz) != 3 or len(self.max_xyz) != 3:
            raise ValueError(f"min_xyz/max_xyz must have 3 entries, got {self.min_xyz} / {self.max_xyz}")
        if any(not hi > lo for lo, hi in zip(self.min_xyz, self.max_xyz)):
            raise ValueError(f"max_xyz must exceed min_xyz on every axis, got {self.min_xyz} / {self.max_xyz}")
        if not self.temperature > 1:
            raise ValueError(f"temperature must be > 1, got {self.temperature}")
        # Tuples even when built from JSON lists, so the config stays hashable and comparable.
        object.__setattr__(self, "min_xyz", tuple(float(v) for v in self.min_xyz))
        object.__setattr__(self, "max_xyz", tuple(float(v) for v in self.max_xyz))

    @property
    def num_voxels(self) -> tuple[int, int, int]:
        """Largest voxel index + 1 per axis (301, 301, 101 for the defaults)."""
        return tuple(int(round((hi - lo) / self.voxel_size)) + 1 for lo, hi in zip(self.min_xyz, self.max_xyz))  # type: ignore[return-value]


def _check_xyz(xyz: torch.Tensor, name: str = "xyz") -> None:
    if not isinstance(xyz, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(xyz).__name__}")
    if xyz.ndim < 1 or xyz.shape[-1] != 3:
        raise ValueError(f"{name}: expected shape (..., 3), got {tuple(xyz.shape)}")
    if not xyz.is_floating_point():
        raise TypeError(f"{name}: expected a floating tensor of metres, got dtype {xyz.dtype}")


def discretize_xyz(xyz: torch.Tensor, cfg: PositionEncodingConfig | None = None) -> torch.Tensor:
    """Voxel indices ``(..., 3)`` long of world coordinates ``(..., 3)`` in metres.

    Clamp to ``[min_xyz, max_xyz]``, subtract ``min_xyz``, divide by ``voxel_size`` and round to the
    nearest integer (``torch.round``: exact halves go to the even index). Computed in float32 at
    least, so half-precision inputs do not shift voxels. Non-finite coordinates (NaN from invalid
    depth) are mapped to the world origin rather than raising: a check would force a device sync on
    every forward; callers mark such cells invalid with their own mask.
    """
    _check_xyz(xyz)
    cfg = cfg or PositionEncodingConfig()
    x = xyz.float() if xyz.dtype in (torch.float16, torch.bfloat16) else xyz
    x = torch.nan_to_num(x, nan=0.0)
    lo = torch.tensor(cfg.min_xyz, dtype=x.dtype, device=x.device)
    hi = torch.tensor(cfg.max_xyz, dtype=x.dtype, device=x.device)
    x = torch.minimum(torch.maximum(x, lo), hi)
    return torch.round((x - lo) / cfg.voxel_size).long()


class SinCos3DPositionEncoding(nn.Module):
    """Fixed sin-cos code of 3D positions, ``(..., 3)`` metres → ``(..., hidden_size)`` float32.

    Per axis ``num_feats = hidden_size // 3`` channels; channel ``i`` of an axis is
    ``sin(p / dim_t[i])`` for even ``i`` and ``cos(p / dim_t[i])`` for odd ``i`` with
    ``dim_t[i] = temperature ** (2 * (i // 2) / num_feats)`` and ``p`` the voxel index along that axis.
    Axes are concatenated ``[x | y | z]`` and zero-padded to ``hidden_size`` (the last
    ``hidden_size % 3`` channels are always 0).

    The output is float32 whatever the input dtype (the sinusoids of indices up to 300 lose whole
    periods in bf16); cast it to the features' dtype where it is added.
    """

    dim_t: torch.Tensor

    def __init__(self, hidden_size: int, cfg: PositionEncodingConfig | None = None) -> None:
        super().__init__()
        if hidden_size < 3:
            raise ValueError(f"hidden_size must be >= 3 (one channel per axis), got {hidden_size}")
        self.hidden_size = int(hidden_size)
        self.cfg = cfg or PositionEncodingConfig()
        self.num_feats = self.hidden_size // 3
        i = torch.arange(self.num_feats, dtype=torch.float64)
        dim_t = self.cfg.temperature ** (2 * torch.div(i, 2, rounding_mode="floor") / self.num_feats)
        # A buffer (moves with .to()) but not persistent: it is a pure function of the config, so it
        # never belongs in a checkpoint.
        self.register_buffer("dim_t", dim_t.float(), persistent=False)
        self.register_buffer("_is_sin", (torch.arange(self.num_feats) % 2 == 0), persistent=False)

    def extra_repr(self) -> str:
        return f"hidden_size={self.hidden_size}, num_feats={self.num_feats}, cfg={self.cfg}"

    def encode_indices(self, idx: torch.Tensor) -> torch.Tensor:
        """The code of integer voxel indices ``(..., 3)`` (already discretized)."""
        if idx.ndim < 1 or idx.shape[-1] != 3:
            raise ValueError(f"idx: expected shape (..., 3), got {tuple(idx.shape)}")
        pos = idx.to(torch.float32)[..., None] / self.dim_t  # (..., 3, num_feats)
        code = torch.where(self._is_sin, torch.sin(pos), torch.cos(pos))
        code = code.flatten(-2)  # [x | y | z]
        pad = self.hidden_size - code.shape[-1]
        if pad:
            code = nn.functional.pad(code, (0, pad))
        return code

    def forward(self, xyz: torch.Tensor) -> torch.Tensor:
        return self.encode_indices(discretize_xyz(xyz, self.cfg))


def cell_assignment(n: int, cells: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """One-hot ``(cells, n)`` matrix sending pixel row/column ``r`` to cell ``floor(r * cells / n)``.

    That splits ``n`` pixels into ``cells`` contiguous runs whose lengths differ by at most one.
    """
    cell_of = torch.div(torch.arange(n, device=device) * cells, n, rounding_mode="floor")
    return (cell_of[None, :] == torch.arange(cells, device=device)[:, None]).to(dtype)


def patch_xyz_from_world(
    world_xyz: torch.Tensor, valid: torch.Tensor, grid_hw: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Average world coordinate of each patch cell, ignoring invalid pixels.

    Args:
        world_xyz: ``(B, V, H, W, 3)`` per-pixel world coordinates (metres). Values at invalid pixels
            are never read (they may be NaN/inf).
        valid: ``(B, V, H, W)`` bool, True where the depth gave a real point.
        grid_hw: ``(h, w)`` cells per view, ``1 <= h <= H``, ``1 <= w <= W``. Rows/columns are split
            into contiguous runs as evenly as possible (lengths differ by at most one pixel).

    Returns:
        ``patch_xyz (B, V, h, w, 3)`` (float32 at least; 0 in cells without a valid pixel) and
        ``patch_valid (B, V, h, w)`` bool, True iff the cell has at least one valid pixel.
    """
    if world_xyz.ndim != 5 or world_xyz.shape[-1] != 3:
        raise ValueError(f"world_xyz: expected shape (B, V, H, W, 3), got {tuple(world_xyz.shape)}")
    if valid.shape != world_xyz.shape[:-1]:
        raise ValueError(f"valid: expected shape {tuple(world_xyz.shape[:-1])}, got {tuple(valid.shape)}")
    h, w = (int(v) for v in grid_hw)
    H, W = world_xyz.shape[2], world_xyz.shape[3]
    if not (1 <= h <= H and 1 <= w <= W):
        raise ValueError(f"grid_hw {grid_hw} must satisfy 1 <= h <= H={H} and 1 <= w <= W={W}")
    dtype = torch.float64 if world_xyz.dtype == torch.float64 else torch.float32
    valid = valid.to(torch.bool)
    xyz = torch.where(valid[..., None], world_xyz.to(dtype), torch.zeros((), dtype=dtype, device=world_xyz.device))
    R = cell_assignment(H, h, world_xyz.device, dtype)  # (h, H)
    C = cell_assignment(W, w, world_xyz.device, dtype)  # (w, W)
    sums = torch.einsum("iy,bvyxc,jx->bvijc", R, xyz, C)
    counts = torch.einsum("iy,bvyx,jx->bvij", R, valid.to(dtype), C)
    patch_valid = counts > 0
    patch_xyz = sums / counts.clamp(min=1)[..., None]
    return patch_xyz, patch_valid
