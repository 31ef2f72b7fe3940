"""Offline 3D-teacher features for the 3DRS alignment loss.

The teacher is run once per scene, before training, on uniformly spread frames; its patch-feature
maps are cached as one safetensors file per scene together with the ids of the frames they belong
to, so training never runs the teacher and can match features to the frames it actually samples (the
reference stores features by position only, and its frames silently drift from the training frames).

Any vision backbone that ``transformers`` loads with ``AutoModel`` + ``AutoImageProcessor`` from a
local directory works (DINOv2, DINOv2-with-registers, SigLIP/CLIP vision towers, ViT). VGGT, the
reference's best teacher, is not a ``transformers`` model; of the loadable ones DINOv2 scored best in
the 3DRS teacher ablation.

File format (``<out_dir>/<scene_id>.safetensors``): tensor ``features`` ``(N, Dt, Ht, Wt)`` (float16
by default), tensor ``frame_ids`` ``(N,)`` int64, and metadata ``frame_ids`` (JSON list of the exact id
strings), ``scene_id``, ``teacher``, ``teacher_model_type``, ``format``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ..scene.errors import SceneDirError
from ..scene.sampling import uniform_sample
from ..scene.scene_dir import SceneDir

__all__ = [
    "TEACHER_FEATURES_FORMAT",
    "load_teacher",
    "extract_feature_map",
    "select_teacher_frames",
    "cache_teacher_features",
    "load_cached_features",
]

log = logging.getLogger(__name__)

TEACHER_FEATURES_FORMAT = "ros3d_teacher_features/1"

_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
# model_type -> number of non-patch tokens before the patch tokens, where the architecture fixes it.
_PREFIX_TOKENS = {
    "dinov2": lambda cfg: 1,
    "dinov2_with_registers": lambda cfg: 1 + int(getattr(cfg, "num_register_tokens", 0)),
    "vit": lambda cfg: 1,
    "clip_vision_model": lambda cfg: 1,
    "siglip_vision_model": lambda cfg: 0,
}


def load_teacher(
    local_path: str | os.PathLike[str], *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> tuple[Any, Any]:
    """``(model, image_processor)`` of a vision backbone in a local ``save_pretrained`` directory.

    The model is put in eval mode with gradients off. A full image-text model (CLIP, SigLIP) is
    reduced to its vision tower. Only safetensors weights are read and no remote code runs.

    Raises:
        FileNotFoundError: the directory, ``config.json``, the safetensors weights or
            ``preprocessor_config.json`` are missing.
        ValueError: ``transformers`` cannot build a model/processor from them.
    """
    from transformers import AutoImageProcessor, AutoModel

    p = Path(local_path).expanduser()
    if not p.is_dir():
        raise FileNotFoundError(f"teacher directory {p} does not exist (a local save_pretrained directory is required; hub names are not accepted)")
    present = sorted(os.listdir(p))
    if not (p / "config.json").is_file():
        raise FileNotFoundError(f"teacher directory {p} has no config.json (contents: {present[:20]})")
    if not any((p / f).is_file() for f in _WEIGHT_FILES):
        raise FileNotFoundError(f"teacher directory {p} has no safetensors weights {_WEIGHT_FILES} (contents: {present[:20]})")
    if not (p / "preprocessor_config.json").is_file():
        raise FileNotFoundError(f"teacher directory {p} has no preprocessor_config.json (save the image processor with it)")
    try:
        model = AutoModel.from_pretrained(p, local_files_only=True, use_safetensors=True, trust_remote_code=False, dtype=dtype)
        processor = AutoImageProcessor.from_pretrained(p, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"teacher directory {p}: not loadable with AutoModel + AutoImageProcessor ({exc})") from exc
    if hasattr(model, "vision_model") and hasattr(model.config, "vision_config"):
        model = model.vision_model  # its own config is the vision config (patch size, prefix tokens)
    model.requires_grad_(False).eval().to(device)
    return model, processor


def _patch_size(config: Any) -> tuple[int, int]:
    ps = getattr(config, "patch_size", None)
    if ps is None:
        raise ValueError(f"teacher config {type(config).__name__} has no patch_size; cannot recover the patch grid")
    if isinstance(ps, (list, tuple)):
        return int(ps[0]), int(ps[-1])
    return int(ps), int(ps)


@torch.no_grad()
def extract_feature_map(model: Any, processor: Any, images: Sequence[Any], *, batch_size: int = 8) -> torch.Tensor:
    """Last-layer patch features ``(N, Dt, Ht, Wt)`` float32 (on the model's device) of ``N`` images.

    ``images`` are whatever the processor accepts (``H×W×3`` uint8 arrays, PIL images). The patch
    grid comes from the processed pixel size and the config's patch size; the leading CLS/register
    tokens are dropped, their number checked against the architecture when it is known.
    """
    if len(images) == 0:
        raise ValueError("images: empty")
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    ph, pw = _patch_size(model.config)
    out = []
    for start in range(0, len(images), max(1, int(batch_size))):
        batch = list(images[start : start + batch_size])
        pixels = processor(images=batch, return_tensors="pt")["pixel_values"].to(device=device, dtype=dtype)
        Ht, Wt = pixels.shape[-2] // ph, pixels.shape[-1] // pw
        tokens = model(pixel_values=pixels).last_hidden_state  # (n, L, Dt)
        prefix = tokens.shape[1] - Ht * Wt
        known = _PREFIX_TOKENS.get(getattr(model.config, "model_type", ""))
        if prefix < 0 or (known is not None and prefix != known(model.config)):
            raise ValueError(
                f"teacher returned {tokens.shape[1]} tokens for a {Ht}x{Wt} patch grid "
                f"({getattr(model.config, 'model_type', '?')}: expected {Ht * Wt} patches + "
                f"{known(model.config) if known else 'some'} prefix tokens)"
            )
        patches = tokens[:, prefix:, :].float()
        out.append(patches.transpose(1, 2).reshape(tokens.shape[0], -1, Ht, Wt))
    return torch.cat(out)


def select_teacher_frames(scene: SceneDir, frames_per_scene: int) -> list[str]:
    """Frame ids spread uniformly over the frames with a usable pose (the training sampler's rule)."""
    usable = []
    for fid in scene.frame_ids():
        try:
            scene.load_pose(fid)
        except SceneDirError as exc:
            log.debug("scene %s: frame %s has no usable pose (%s)", scene.scene_id, fid, exc)
            continue
        usable.append(fid)
    return [usable[i] for i in uniform_sample(len(usable), frames_per_scene)] if usable else []


def cache_teacher_features(
    scene_dirs: Iterable[str | os.PathLike[str]],
    model_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    frames_per_scene: int = 32,
    device: torch.device | str = "cpu",
    *,
    batch_size: int = 8,
    storage_dtype: torch.dtype = torch.float16,
    overwrite: bool = False,
) -> list[Path]:
    """Run the teacher on ``frames_per_scene`` uniform frames of every scene; one file per scene.

    Scenes whose file already exists are skipped unless ``overwrite``; scenes without a loadable frame
    are skipped with a warning. Returns the files written by this call.
    """
    if frames_per_scene < 1:
        raise ValueError(f"frames_per_scene must be >= 1, got {frames_per_scene}")
    model, processor = load_teacher(model_path, device=device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    scene_list = list(scene_dirs)
    for scene_path in tqdm(scene_list, desc="teacher features", unit="scene"):
        scene = SceneDir(scene_path)
        target = out / f"{scene.scene_id}.safetensors"
        if target.exists() and not overwrite:
            log.info("%s exists; skipping scene %s", target, scene.scene_id)
            continue
        ids, images = [], []
        for fid in select_teacher_frames(scene, frames_per_scene):
            try:
                images.append(scene.load_frame(fid).rgb)
            except ValueError as exc:  # FrameLoadError / InvalidFrameError
                log.warning("scene %s: skipping frame %s (%s)", scene.scene_id, fid, exc)
                continue
            ids.append(fid)
        if not ids:
            log.warning("scene %s: no loadable frame; no teacher features written", scene.scene_id)
            continue
        feats = extract_feature_map(model, processor, images, batch_size=batch_size)
        tensors = {
            "features": feats.to(device="cpu", dtype=storage_dtype).contiguous(),
            "frame_ids": torch.tensor([int(f) for f in ids], dtype=torch.int64),
        }
        metadata = {
            "format": TEACHER_FEATURES_FORMAT,
            "scene_id": scene.scene_id,
            "frame_ids": json.dumps(ids),
            "teacher": str(model_path),
            "teacher_model_type": str(getattr(model.config, "model_type", "")),
        }
        tmp = target.with_suffix(".safetensors.tmp")
        save_file(tensors, str(tmp), metadata=metadata)
        os.replace(tmp, target)  # a crash never leaves a truncated file under the final name
        written.append(target)
    return written


def load_cached_features(path: str | os.PathLike[str]) -> tuple[torch.Tensor, list[str]]:
    """``(features (N, Dt, Ht, Wt), frame_ids)`` of a file written by :func:`cache_teacher_features`."""
    p = Path(path)
    with safe_open(str(p), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != TEACHER_FEATURES_FORMAT:
        raise ValueError(f"{p}: not a teacher-feature file (format {meta.get('format')!r})")
    tensors = load_file(str(p))
    ids = json.loads(meta["frame_ids"])
    if tensors["features"].shape[0] != len(ids):
        raise ValueError(f"{p}: {tensors['features'].shape[0]} feature maps but {len(ids)} frame ids")
    return tensors["features"], ids
