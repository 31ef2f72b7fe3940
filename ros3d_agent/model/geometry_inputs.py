"""Frames → model inputs: normalised pixels plus the world coordinate of every pixel.

The vision tower wants a fixed square input; the 3D position code wants, for every visual token, the
world xyz of the pixels it looks at. Both must come from the *same* resampling of the frame, or tokens
get the positions of their neighbours. Following Video-3D-LLM, each frame is resized so its shorter
side is ``image_size`` and centre-cropped (``center_crop``), or squashed to a square (``resize``,
as 3DRS does); colour is resampled bicubically (antialiased), while the coordinate map is resampled
with nearest neighbour (``cv2.INTER_NEAREST``'s rule, ``src = floor(dst · in/out)``) so that no
interpolated point floats between a chair and the wall behind it.

The coordinate map is the depth back-projected with the frame's intrinsics and camera-to-world pose at
the *original* resolution and then resampled; only the pixels the resampling keeps are lifted (same
pinhole convention as :func:`~ros3d_agent.scene.geometry.backproject_depth_torch`, which the tests
compare against). Pixels without depth stay invalid through the resampling.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from ros3d_agent.scene.geometry import transform_points_torch
from ros3d_agent.scene.types import Frame

from .configuration import VisionConfig

__all__ = ["ViewTensors", "ResampleWindow", "resample_window", "frames_to_tensors", "stack_views"]


@dataclass(frozen=True)
class ResampleWindow:
    """Where an output pixel comes from: the frame is resized to ``resized_hw`` and cropped at ``(top, left)``."""

    in_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    top: int
    left: int
    out_size: int

    def source_rows(self) -> torch.Tensor:
        """Nearest source row of every output row (floor rule, as ``cv2.INTER_NEAREST``)."""
        return _nearest_source(self.in_hw[0], self.resized_hw[0], self.top, self.out_size)

    def source_cols(self) -> torch.Tensor:
        return _nearest_source(self.in_hw[1], self.resized_hw[1], self.left, self.out_size)


def _nearest_source(n_in: int, n_resized: int, offset: int, n_out: int) -> torch.Tensor:
    dst = torch.arange(offset, offset + n_out, dtype=torch.float64)
    return torch.clamp(torch.floor(dst * (n_in / n_resized)).long(), 0, n_in - 1)


def resample_window(height: int, width: int, out_size: int, strategy: str = "center_crop") -> ResampleWindow:
    """The resize + crop that maps an ``height × width`` frame onto an ``out_size`` square.

    ``center_crop``: the shorter side becomes ``out_size`` (640×480 → 512×384 for 384) and the
    centre ``out_size`` square is kept. ``resize``: the frame is squashed to ``out_size × out_size``.
    """
    if height < 1 or width < 1 or out_size < 1:
        raise ValueError(f"resample_window: sizes must be positive, got {height}x{width} -> {out_size}")
    if strategy == "resize":
        return ResampleWindow((height, width), (out_size, out_size), 0, 0, out_size)
    if strategy != "center_crop":
        raise ValueError(f"strategy must be 'center_crop' or 'resize', got {strategy!r}")
    scale = out_size / min(height, width)
    rh = max(out_size, int(round(height * scale)))
    rw = max(out_size, int(round(width * scale)))
    return ResampleWindow((height, width), (rh, rw), (rh - out_size) // 2, (rw - out_size) // 2, out_size)


@dataclass(frozen=True)
class ViewTensors:
    """Model inputs of ``V`` views (or ``B × V`` after :func:`stack_views`).

    Attributes:
        pixel_values: ``(V, 3, S, S)`` float32, normalised with the tower's mean/std.
        world_xyz: ``(V, S, S, 3)`` float32 world coordinates (metres); 0 where invalid.
        world_valid: ``(V, S, S)`` bool, True where the pixel had a depth reading.
    """

    pixel_values: torch.Tensor
    world_xyz: torch.Tensor
    world_valid: torch.Tensor

    def to(self, device: torch.device | str) -> ViewTensors:
        return ViewTensors(self.pixel_values.to(device), self.world_xyz.to(device), self.world_valid.to(device))


def _resample_rgb(rgb: np.ndarray, window: ResampleWindow) -> torch.Tensor:
    """uint8 H×W×3 → float (3, S, S) in [0, 1]: antialiased bicubic resize, then the crop."""
    img = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float()
    if tuple(window.resized_hw) != tuple(window.in_hw):
        img = F.interpolate(img, size=window.resized_hw, mode="bicubic", align_corners=False, antialias=True)
    s = window.out_size
    img = img[0, :, window.top : window.top + s, window.left : window.left + s]
    return (img.clamp(0.0, 255.0) / 255.0).contiguous()


def _frame_xyz(frame: Frame, window: ResampleWindow) -> tuple[torch.Tensor, torch.Tensor]:
    """World xyz ``(S, S, 3)`` and validity ``(S, S)`` of the nearest source pixel of every output pixel.

    Equal to back-projecting the whole depth image (:func:`backproject_depth_torch`) and then
    resampling the map, but only the ``S²`` pixels that survive the resampling are lifted (a 640×480
    frame has 307k pixels; a 64-px tiny model keeps 4k of them).
    """
    rows, cols = window.source_rows(), window.source_cols()
    depth = torch.from_numpy(np.ascontiguousarray(frame.depth, dtype=np.float32))
    sampled = depth[rows][:, cols].double()  # (S, S)
    K = torch.from_numpy(np.asarray(frame.K, dtype=np.float64))
    T = torch.from_numpy(np.asarray(frame.T_world_cam, dtype=np.float64))
    # Pixel (i, j) of the output is source pixel (u, v) = (cols[j], rows[i]); float64 keeps world
    # coordinates a few metres from the origin exact to well below a millimetre.
    fx, s, cx, fy, cy = K[0, 0], K[0, 1], K[0, 2], K[1, 1], K[1, 2]
    y_n = (rows.double()[:, None] - cy) / fy
    x_n = (cols.double()[None, :] - cx - s * y_n) / fx
    valid = torch.isfinite(sampled) & (sampled > 0)
    z = torch.where(valid, sampled, torch.zeros((), dtype=sampled.dtype))
    cam = torch.stack(torch.broadcast_tensors(x_n * z, y_n * z, z), dim=-1)
    xyz = transform_points_torch(T, cam).float()
    xyz = torch.where(valid[..., None], xyz, torch.zeros((), dtype=xyz.dtype))
    return xyz.contiguous(), valid.contiguous()


def frames_to_tensors(frames: Sequence[Frame], cfg: VisionConfig, image_size: int | None = None) -> ViewTensors:
    """Resample posed RGB-D frames into the tower's input and the matching world-coordinate maps.

    Args:
        frames: the views of one query (any number, any resolution each).
        cfg: vision config (``image_size``, ``image_mean``/``image_std``, ``crop_strategy``).
        image_size: override of ``cfg.image_size`` (the tower then interpolates its position
            embeddings).
    """
    if len(frames) == 0:
        raise ValueError("frames_to_tensors: no frames")
    size = int(image_size or cfg.image_size)
    mean = torch.tensor(cfg.image_mean, dtype=torch.float32)[:, None, None]
    std = torch.tensor(cfg.image_std, dtype=torch.float32)[:, None, None]
    pixels, xyzs, valids = [], [], []
    for i, frame in enumerate(frames):
        if not isinstance(frame, Frame):
            raise TypeError(f"frames[{i}]: expected a Frame, got {type(frame).__name__}")
        h, w = frame.rgb.shape[:2]
        window = resample_window(h, w, size, cfg.crop_strategy)
        pixels.append((_resample_rgb(frame.rgb, window) - mean) / std)
        xyz, valid = _frame_xyz(frame, window)
        xyzs.append(xyz)
        valids.append(valid)
    return ViewTensors(torch.stack(pixels), torch.stack(xyzs), torch.stack(valids))


def stack_views(samples: Sequence[ViewTensors]) -> ViewTensors:
    """Batch per-sample views ``(V, ...)`` into ``(B, V, ...)``; every sample needs the same ``V`` and size."""
    if not samples:
        raise ValueError("stack_views: no samples")
    shapes = {tuple(s.pixel_values.shape) for s in samples}
    if len(shapes) != 1:
        raise ValueError(f"stack_views: samples differ in (V, 3, S, S): {sorted(shapes)}")
    return ViewTensors(
        torch.stack([s.pixel_values for s in samples]),
        torch.stack([s.world_xyz for s in samples]),
        torch.stack([s.world_valid for s in samples]),
    )
