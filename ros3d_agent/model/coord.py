"""The ``<coord>`` token: telling the LLM *which* object a caption request is about.

A prompt such as "Given an object located at <coord>, describe the object in detail." carries the
object as a single special token whose input embedding gets the 3D position code of the box centre
added (Video-3D-LLM). Using the very same code as the visual tokens means the LLM can match the
``<coord>`` token against the visual tokens that look at that place, without any new parameters.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["coord_embedding"]


def coord_embedding(pe_module: Callable[[torch.Tensor], torch.Tensor], box_centres: torch.Tensor) -> torch.Tensor:
    """The embedding ``(N, D)`` to add to the ``<coord>`` tokens of ``N`` box centres ``(N, 3)`` (metres).

    ``pe_module`` is the model's :class:`~ros3d_agent.model.position_encoding.SinCos3DPositionEncoding`
    (or any module with the same ``(..., 3) -> (..., D)`` contract); the result is its float32 code,
    to be cast to the embedding dtype by the caller.
    """
    if not isinstance(box_centres, torch.Tensor):
        raise TypeError(f"box_centres: expected a torch.Tensor, got {type(box_centres).__name__}")
    if box_centres.ndim != 2 or box_centres.shape[-1] != 3:
        raise ValueError(f"box_centres: expected shape (N, 3), got {tuple(box_centres.shape)}")
    if not box_centres.is_floating_point():
        box_centres = box_centres.float()
    out = pe_module(box_centres)
    if out.ndim != 2 or out.shape[0] != box_centres.shape[0]:
        raise ValueError(f"pe_module returned shape {tuple(out.shape)} for {box_centres.shape[0]} centres; expected (N, D)")
    return out
