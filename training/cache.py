"""Precompute what training would otherwise recompute every step: per scene, the frozen-VAE latents
of the sampled views, the BEV render + hole mask + its latents, predicted proposals, and 3DRS
teacher features.

Why cache: the VAE and the teacher are frozen, and the views of a scene are chosen deterministically
(:mod:`.views`), so their outputs are a pure function of the scene. Computing them once keeps the
training step to the model alone (the 3DRS paper's "no additional training overhead") and lets a
person look at the BEV targets before spending GPU hours.

Layout (everything VAE-dependent sits under a key of the VAE and image sizes, so a different VAE
never reads stale latents)::

    <cache_dir>/<scene_id>/views.json                   view selection per rule (see .views)
    <cache_dir>/<scene_id>/proposals.json               predicted proposals (data.proposals: predicted)
    <cache_dir>/vae-<key>/<scene_id>/view_latents.safetensors   latents (N, C, h, w) + frame ids
    <cache_dir>/vae-<key>/<scene_id>/bev.safetensors    latents (C, hb, wb), valid (1, hb, wb)
    <cache_dir>/vae-<key>/<scene_id>/bev.png, bev_holes.png      the render and its holes (white)
    <cache_dir>/teacher-<key>/<scene_id>.safetensors    ros3d_agent.model.teacher_features format

Every file is written to a temporary name and renamed into place, so an interrupted build never
leaves a truncated file that a later run would trust. Run it ahead of a multi-GPU job with
``python -m training.cache --config CFG`` (the trainer otherwise builds what is missing on the main
process before training).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from ros3d_agent.model.configuration import Ros3DModelConfig
from ros3d_agent.model.geometry_inputs import resample_window
from ros3d_agent.scene.scene_dir import SceneDir

from .config import TeacherSource, TrainConfig, VaeSource

__all__ = [
    "CACHE_FORMAT",
    "CacheLayout",
    "build_vae",
    "view_images",
    "write_tiny_random_teacher",
    "cache_view_latents",
    "cache_bev",
    "cache_proposals",
    "load_view_latents",
    "load_bev",
    "load_teacher_features",
    "load_proposals",
    "ensure_cache",
    "main",
]

log = logging.getLogger(__name__)

CACHE_FORMAT = "ros3d_train_cache/1"
VIEW_LATENTS_FILE = "view_latents.safetensors"
BEV_FILE = "bev.safetensors"
PROPOSALS_FILE = "proposals.json"


def _key(payload: Mapping[str, Any]) -> str:
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def _atomic_save_safetensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


@dataclass(frozen=True)
class CacheLayout:
    """Where the cached targets of one (VAE, image sizes) and one teacher live."""

    root: Path
    vae_key: str | None
    teacher_key: str | None

    @classmethod
    def for_config(cls, cfg: TrainConfig, model_cfg: Ros3DModelConfig) -> CacheLayout:
        ross = model_cfg.ross3d
        vae_key = None
        if ross is not None and ross.enabled and cfg.data.vae.configured:
            vae_key = _key({
                "vae": cfg.data.vae.describe(), "view_image_size": ross.view_image_size, "bev_image_size": ross.bev_image_size,
                "group": ross.latent_group, "crop": model_cfg.vision.crop_strategy,
            })
        teacher_key = None
        if model_cfg.alignment3drs is not None and cfg.data.teacher.configured:
            t = cfg.data.teacher
            teacher_key = _key({
                "teacher": t.path if t.path else f"tiny_random(dim={model_cfg.alignment3drs.teacher_dim},seed={cfg.run.seed})",
                "frames_per_scene": t.frames_per_scene or cfg.data.num_views,
            })
        return cls(cfg.data.resolved_cache_dir(), vae_key, teacher_key)

    def scene_dir(self, scene_id: str) -> Path:
        return self.root / scene_id

    def vae_scene_dir(self, scene_id: str) -> Path:
        if self.vae_key is None:
            raise RuntimeError("no VAE configured: there are no cached latents")
        return self.root / f"vae-{self.vae_key}" / scene_id

    @property
    def teacher_dir(self) -> Path:
        if self.teacher_key is None:
            raise RuntimeError("no teacher configured: there are no cached teacher features")
        return self.root / f"teacher-{self.teacher_key}"


# ------------------------------------------------------------------------------------------------
# frozen models
# ------------------------------------------------------------------------------------------------
def build_vae(src: VaeSource, device: torch.device | str = "cpu", latent_channels: int = 16) -> Any:
    """The frozen VAE a config names (local diffusers directory, or the tiny random test VAE)."""
    from ros3d_agent.model.ross3d.targets import load_vae, tiny_random_vae

    if src.tiny_random:
        return tiny_random_vae(latent_channels=latent_channels, seed=src.seed).to(device)
    if src.path is None:
        raise ValueError("data.vae: neither path nor tiny_random is set")
    vae = load_vae(src.path, device=device)
    if vae.config.latent_channels != latent_channels:
        raise ValueError(f"VAE {src.path} has {vae.config.latent_channels} latent channels but the model's Ross3D config "
                         f"expects vae_latent_channels={latent_channels}")
    return vae


def write_tiny_random_teacher(out_dir: Path, teacher_dim: int, seed: int = 0) -> Path:
    """A random DINOv2-shaped teacher (``teacher_dim`` wide, patch 8 at 32 px) in ``save_pretrained`` form.

    For tests and smoke runs only: it exercises the whole 3DRS path (caching, matching features
    to the sampled views, the loss) but its features carry no 3D knowledge.
    """
    from transformers import BitImageProcessorPil, Dinov2Config, Dinov2Model

    if (out_dir / "config.json").is_file() and (out_dir / "model.safetensors").is_file():
        return out_dir
    heads = 2 if teacher_dim % 2 == 0 else 1
    cfg = Dinov2Config(hidden_size=teacher_dim, num_hidden_layers=1, num_attention_heads=heads,
                       intermediate_size=2 * teacher_dim, patch_size=8, image_size=32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Dinov2Model(cfg)
    tmp = out_dir.with_name(f".{out_dir.name}.{os.getpid()}.tmp")
    model.save_pretrained(str(tmp))
    BitImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(str(tmp))
    if out_dir.exists():
        import shutil

        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return out_dir


# ------------------------------------------------------------------------------------------------
# images -> VAE inputs
# ------------------------------------------------------------------------------------------------
def view_images(rgbs: Sequence[np.ndarray], size: int, crop_strategy: str) -> torch.Tensor:
    """``(N, 3, size, size)`` in [-1, 1]: each frame resized/cropped exactly as the vision tower sees
    it (same window as :func:`~ros3d_agent.model.geometry_inputs.frames_to_tensors`), so the target
    of a masked view shows what that view's tokens showed."""
    out = []
    for rgb in rgbs:
        h, w = rgb.shape[:2]
        win = resample_window(h, w, size, crop_strategy)
        img = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float()
        if tuple(win.resized_hw) != (h, w):
            img = F.interpolate(img, size=win.resized_hw, mode="bicubic", align_corners=False, antialias=True)
        img = img[0, :, win.top: win.top + size, win.left: win.left + size]
        out.append(img.clamp(0, 255) / 127.5 - 1.0)
    return torch.stack(out)


# ------------------------------------------------------------------------------------------------
# writers
# ------------------------------------------------------------------------------------------------
def load_view_latents(layout: CacheLayout, scene_id: str) -> dict[str, torch.Tensor]:
    """Cached view latents of a scene, ``{frame_id: (C, h, w) float32}`` (empty when none)."""
    from safetensors import safe_open

    path = layout.vae_scene_dir(scene_id) / VIEW_LATENTS_FILE
    if not path.is_file():
        return {}
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        latents = f.get_tensor("latents")
    ids = json.loads(meta.get("frame_ids", "[]"))
    if len(ids) != latents.shape[0]:
        raise ValueError(f"{path}: {latents.shape[0]} latents but {len(ids)} frame ids (corrupt cache; delete it)")
    return {fid: latents[i] for i, fid in enumerate(ids)}


def cache_view_latents(
    scene: SceneDir, frame_ids: Sequence[str], layout: CacheLayout, vae: Any, model_cfg: Ros3DModelConfig,
) -> int:
    """Encode the views ``frame_ids`` of ``scene`` that are not cached yet; returns how many were added."""
    from ros3d_agent.model.ross3d.targets import encode_images

    ross = model_cfg.ross3d
    assert ross is not None
    have = load_view_latents(layout, scene.scene_id)
    missing = [f for f in frame_ids if f not in have]
    if not missing:
        return 0
    rgbs = [scene.load_frame(f).rgb for f in missing]
    images = view_images(rgbs, ross.view_image_size, model_cfg.vision.crop_strategy)
    latents = encode_images(vae, images, group=ross.latent_group).cpu()
    expected = (ross.latent_channels, *ross.view_latent_hw)
    if tuple(latents.shape[1:]) != expected:
        raise ValueError(f"VAE latents of {ross.view_image_size}-px views have shape {tuple(latents.shape[1:])}, the model's "
                         f"Ross3D config expects {expected} (check ross3d.view_image_size and the VAE's downsampling)")
    have.update({f: latents[i] for i, f in enumerate(missing)})
    ids = sorted(have)
    _atomic_save_safetensors(
        {"latents": torch.stack([have[f] for f in ids]).float()},
        layout.vae_scene_dir(scene.scene_id) / VIEW_LATENTS_FILE,
        {"format": CACHE_FORMAT, "frame_ids": json.dumps(ids), "scene_id": scene.scene_id},
    )
    return len(missing)


def load_bev(layout: CacheLayout, scene_id: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(latents (C, hb, wb), valid (1, hb, wb))`` of a scene's BEV, or None when not cached."""
    from safetensors.torch import load_file

    path = layout.vae_scene_dir(scene_id) / BEV_FILE
    if not path.is_file():
        return None
    t = load_file(str(path))
    return t["latents"], t["valid"]


def cache_bev(scene: SceneDir, layout: CacheLayout, vae: Any, model_cfg: Ros3DModelConfig) -> bool:
    """Render the BEV (Ross3D's global view), save it + its hole mask as PNG, and its latents + the
    latent-cell loss mask. Returns False when it was already cached."""
    from PIL import Image

    from ros3d_agent.model.ross3d.targets import bev_latent_mask, encode_images
    from ros3d_agent.scene.bev import BevConfig, render_scene_bev

    ross = model_cfg.ross3d
    assert ross is not None
    out = layout.vae_scene_dir(scene.scene_id)
    if (out / BEV_FILE).is_file():
        return False
    size = ross.bev_image_size
    bev = render_scene_bev(scene, BevConfig(width=size, height=size))
    rgb = torch.from_numpy(np.ascontiguousarray(bev.rgb)).permute(2, 0, 1).float() / 127.5 - 1.0
    latents = encode_images(vae, rgb[None], group=ross.latent_group)[0].cpu()
    if tuple(latents.shape) != (ross.latent_channels, *ross.bev_latent_hw):
        raise ValueError(f"BEV latents have shape {tuple(latents.shape)}, the model's Ross3D config expects "
                         f"{(ross.latent_channels, *ross.bev_latent_hw)} (check ross3d.bev_image_size)")
    valid = bev_latent_mask(torch.from_numpy(~bev.holes)[None, None], ross.bev_latent_hw)[0]
    out.mkdir(parents=True, exist_ok=True)
    for name, arr in (("bev.png", bev.rgb), ("bev_holes.png", (bev.holes * 255).astype(np.uint8))):
        tmp = out / f".{name}.{os.getpid()}.tmp.png"
        Image.fromarray(arr).save(tmp)
        os.replace(tmp, out / name)
    _atomic_write_text(out / "bev.json", json.dumps({"mapping": bev.mapping.to_dict(), "coverage": bev.coverage}) + "\n")
    _atomic_save_safetensors({"latents": latents.float(), "valid": valid.float()}, out / BEV_FILE,
                             {"format": CACHE_FORMAT, "scene_id": scene.scene_id})
    return True


def load_proposals(layout: CacheLayout, scene_id: str) -> np.ndarray | None:
    """Cached predicted proposals ``(P, 6)`` best first, or None."""
    path = layout.scene_dir(scene_id) / PROPOSALS_FILE
    if not path.is_file():
        return None
    boxes = json.loads(path.read_text(encoding="utf-8"))["boxes"]
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 6)


def cache_proposals(scene: SceneDir, layout: CacheLayout, max_proposals: int) -> bool:
    """Class-agnostic proposals of the scene's fused cloud (:func:`~ros3d_agent.scene.proposals.propose_boxes`)."""
    from ros3d_agent.scene.fusion import scene_cloud
    from ros3d_agent.scene.proposals import propose_boxes

    path = layout.scene_dir(scene.scene_id) / PROPOSALS_FILE
    if path.is_file():
        return False
    cloud = scene_cloud(scene)
    res = propose_boxes(cloud.xyz, rgb=cloud.rgb)
    boxes = res.as_array()[:max_proposals]
    _atomic_write_text(path, json.dumps({"boxes": boxes.round(5).tolist(), "scores": res.scores[:max_proposals].tolist()}) + "\n")
    return True


def load_teacher_features(layout: CacheLayout, scene_id: str) -> dict[str, torch.Tensor]:
    """Cached teacher feature maps ``{frame_id: (Dt, Ht, Wt)}`` (empty when the scene has none)."""
    from ros3d_agent.model.teacher_features import load_cached_features

    path = layout.teacher_dir / f"{scene_id}.safetensors"
    if not path.is_file():
        return {}
    feats, ids = load_cached_features(path)
    return {fid: feats[i] for i, fid in enumerate(ids)}


# ------------------------------------------------------------------------------------------------
# the whole cache of a run
# ------------------------------------------------------------------------------------------------
def ensure_cache(
    cfg: TrainConfig,
    model_cfg: Ros3DModelConfig,
    scenes: Mapping[str, Path],
    views: Mapping[str, Sequence[str]],
    device: torch.device | str = "cpu",
    *,
    progress: bool = False,
) -> CacheLayout:
    """Build every cached target the run needs that is not there yet.

    Args:
        scenes: scene id → scene directory (labeled and unlabeled scenes).
        views: scene id → the frame ids its samples see (:func:`.views.cached_views`).

    Raises:
        FileNotFoundError: something is missing and ``data.build_cache`` is ``never``.
    """
    from tqdm.auto import tqdm

    layout = CacheLayout.for_config(cfg, model_cfg)
    ross = model_cfg.ross3d
    need_vae = layout.vae_key is not None
    need_props = cfg.data.proposals == "predicted"
    todo: list[str] = []
    for sid in scenes:
        missing = False
        if need_vae:
            have = load_view_latents(layout, sid)
            missing |= ross is not None and ross.cross_view and any(f not in have for f in views[sid])
            missing |= ross is not None and ross.bev and not (layout.vae_scene_dir(sid) / BEV_FILE).is_file()
        if need_props:
            missing |= not (layout.scene_dir(sid) / PROPOSALS_FILE).is_file()
        if missing:
            todo.append(sid)
    teacher_todo = []
    if layout.teacher_key is not None:
        teacher_todo = [sid for sid in scenes if not (layout.teacher_dir / f"{sid}.safetensors").is_file()]
    if (todo or teacher_todo) and cfg.data.build_cache == "never":
        raise FileNotFoundError(f"the target cache {layout.root} lacks {len(todo)} scene(s) (e.g. {todo[:3]}) and "
                                f"{len(teacher_todo)} teacher file(s); build it with 'python -m training.cache --config ...' "
                                "or set data.build_cache: auto")
    if todo:
        vae = build_vae(cfg.data.vae, device, ross.vae_latent_channels) if need_vae and ross is not None else None
        for sid in tqdm(todo, desc="cache targets", unit="scene", disable=not progress):
            scene = SceneDir(scenes[sid])
            if vae is not None and ross is not None:
                if ross.cross_view:
                    cache_view_latents(scene, views[sid], layout, vae, model_cfg)
                if ross.bev:
                    cache_bev(scene, layout, vae, model_cfg)
            if need_props:
                cache_proposals(scene, layout, cfg.data.max_proposals)
        del vae
    if teacher_todo:
        from ros3d_agent.model.teacher_features import cache_teacher_features

        t: TeacherSource = cfg.data.teacher
        assert model_cfg.alignment3drs is not None
        model_path = Path(t.path) if t.path else write_tiny_random_teacher(
            layout.teacher_dir / "_tiny_random_teacher", model_cfg.alignment3drs.teacher_dim, cfg.run.seed)
        cache_teacher_features([scenes[s] for s in teacher_todo], model_path, layout.teacher_dir,
                               frames_per_scene=t.frames_per_scene or cfg.data.num_views, device=device)
    meta = {"format": CACHE_FORMAT, "vae": cfg.data.vae.describe() if need_vae else None, "vae_key": layout.vae_key,
            "teacher": cfg.data.teacher.path or ("tiny_random" if cfg.data.teacher.tiny_random else None),
            "teacher_key": layout.teacher_key}
    _atomic_write_text(layout.root / "cache.json", json.dumps(meta, indent=1) + "\n")
    return layout


def main(argv: list[str] | None = None) -> int:
    """``python -m training.cache --config CFG [--set k=v ...]``: build a run's target cache."""
    from .config import load_config, parse_set_option
    from .data import discover_run_scenes
    from .model_init import resolve_model_config

    parser = argparse.ArgumentParser(prog="python -m training.cache", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="training YAML")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = load_config(args.config, dict(parse_set_option(s) for s in args.set))
    model_cfg = resolve_model_config(cfg)
    cfg.validate_against_model(model_cfg)
    scenes, views = discover_run_scenes(cfg, model_cfg)
    layout = ensure_cache(cfg, model_cfg, scenes, views, args.device, progress=True)
    print(json.dumps({"cache_dir": str(layout.root), "scenes": len(scenes), "vae_key": layout.vae_key,
                      "teacher_key": layout.teacher_key}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
