"""3DRS alignment: the 2 − 2·cos loss on hand-built vectors, detached teacher, masking, learning,
and teacher features from a fabricated local checkpoint (load, extract, cache per scene)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ros3d_agent.model.alignment3drs import Alignment3DRSConfig, Alignment3DRSHead
from ros3d_agent.model.teacher_features import (
    cache_teacher_features,
    extract_feature_map,
    load_cached_features,
    load_teacher,
)
from ros3d_agent.scene import Frame, SceneDir


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: intra-op threads only add wake-up latency on the shared 2-core box (seconds per test)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _identity_head(D: int) -> Alignment3DRSHead:
    """MLP made exactly the identity: W1 = [I; -I], W2 = [I, -I], since GELU(x) − GELU(−x) = x."""
    head = Alignment3DRSHead(D, Alignment3DRSConfig(teacher_dim=D))
    eye = torch.eye(D)
    with torch.no_grad():
        head.proj[0].weight.copy_(torch.cat([eye, -eye], dim=0))
        head.proj[0].bias.zero_()
        head.proj[2].weight.copy_(torch.cat([eye, -eye], dim=1))
        head.proj[2].bias.zero_()
    return head


def test_loss_is_two_minus_two_cos_on_hand_built_vectors():
    D = 4
    head = _identity_head(D)
    x = torch.zeros(1, 2, 1, 2, D)
    x[..., 0] = 1.0  # every student token = e0
    teacher = torch.zeros(1, 2, D, 2, 4)  # 2×4 teacher map pools to the 1×2 token grid
    teacher[0, 0, 0] = 3.0  # view 0: same direction, other scale
    teacher[0, 1, 0] = 1.0
    teacher[0, 1, 1] = 1.0  # view 1: e0 + e1 -> cos = 1/sqrt(2)
    assert head(x[:, :1], teacher[:, :1]).item() == pytest.approx(0.0, abs=1e-6)
    assert head(x[:, 1:], teacher[:, 1:]).item() == pytest.approx(2 - math.sqrt(2), abs=1e-6)
    assert head(x, teacher).item() == pytest.approx((2 - math.sqrt(2)) / 2, abs=1e-6)
    # opposite direction: the maximum 4
    assert head(x[:, :1], -teacher[:, :1]).item() == pytest.approx(4.0, abs=1e-6)


def test_teacher_is_pooled_to_the_token_grid():
    D = 2
    head = _identity_head(D)
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).reshape(1, 1, 1, 2, D)
    teacher = torch.zeros(1, 1, D, 3, 4)
    teacher[0, 0, 0, :, :2] = 2.0  # left half points along e0, right half along e1
    teacher[0, 0, 1, :, 2:] = 5.0
    assert head(x, teacher).item() == pytest.approx(0.0, abs=1e-6)


def test_invalid_views_are_excluded():
    D = 4
    head = _identity_head(D)
    x = torch.randn(2, 3, 2, 2, D)
    teacher = torch.randn(2, 3, D, 4, 4)
    valid = torch.tensor([[True, False, True], [False, False, True]])
    garbage = teacher.clone()
    garbage[~valid] = torch.randn_like(garbage[~valid]) * 50
    torch.testing.assert_close(head(x, teacher, valid), head(x, garbage, valid))
    only = head(x[1:, 2:], teacher[1:, 2:])
    torch.testing.assert_close(head(x[1:], teacher[1:], valid[1:]), only)
    none = head(x, teacher, torch.zeros_like(valid))
    assert none.item() == 0.0
    # the head returns the raw 2 - 2cos; weighting happens once, in the model's loss composer
    with pytest.raises(TypeError):
        Alignment3DRSConfig(teacher_dim=D, weight=0.5)


def test_teacher_gets_no_gradient_student_does():
    head = Alignment3DRSHead(8, Alignment3DRSConfig(teacher_dim=6))
    x = torch.randn(1, 2, 2, 2, 8, requires_grad=True)
    teacher = torch.randn(1, 2, 6, 3, 3, requires_grad=True)
    head(x, teacher).backward()
    assert teacher.grad is None
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert head.proj[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        head(x, torch.randn(1, 2, 5, 3, 3))


def test_parameter_count_formula():
    D, Dt = 8, 6
    head = Alignment3DRSHead(D, Alignment3DRSConfig(teacher_dim=Dt))
    assert head.num_parameters() == (D * 2 * D + 2 * D) + (2 * D * Dt + Dt)


def test_alignment_learns_one_batch():
    torch.manual_seed(0)
    head = Alignment3DRSHead(16, Alignment3DRSConfig(teacher_dim=12))
    x, teacher = torch.randn(2, 3, 2, 2, 16), torch.randn(2, 3, 12, 4, 4)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    first = None
    for _ in range(40):
        loss = head(x, teacher)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first


# -- teacher features ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    """A tiny DINOv2 saved in the upstream layout (config.json, model.safetensors, preprocessor_config.json)."""
    from transformers import BitImageProcessorPil, Dinov2Config, Dinov2Model

    d = tmp_path_factory.mktemp("dinov2_tiny")
    torch.manual_seed(0)
    cfg = Dinov2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, image_size=28, patch_size=14)
    Dinov2Model(cfg).save_pretrained(d)
    BitImageProcessorPil(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 42}).save_pretrained(d)
    return d


def test_local_teacher_loads_and_gives_a_feature_map(teacher_dir):
    model, processor = load_teacher(teacher_dir)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (30, 50, 3), dtype=np.uint8) for _ in range(3)]
    fmap = extract_feature_map(model, processor, images, batch_size=2)
    assert fmap.shape == (3, 16, 2, 3)  # 28×42 crop / patch 14, CLS dropped
    pixels = processor(images=images, return_tensors="pt")["pixel_values"]
    tokens = model(pixel_values=pixels).last_hidden_state
    torch.testing.assert_close(fmap[1, :, 1, 2], tokens[1, 1 + 1 * 3 + 2])  # token after CLS, row-major


def test_load_teacher_clear_errors(tmp_path, teacher_dir):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_teacher(tmp_path / "nope")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text((teacher_dir / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match="safetensors"):
        load_teacher(tmp_path / "half")


def _write_scene(root, n_frames: int = 3):
    K = np.array([[20.0, 0, 16], [0, 20.0, 12], [0, 0, 1]])
    sd = SceneDir.create(root, K)
    rng = np.random.default_rng(1)
    for i in range(n_frames):
        T = np.eye(4)
        T[0, 3] = 0.1 * i
        rgb = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
        sd.write_frame(i, Frame(rgb=rgb, depth=np.full((24, 32), 1.5, np.float32), K=K, T_world_cam=T))
    (sd.path / "00001.txt").write_text("-inf -inf -inf -inf\n" * 4)  # lost tracking: never chosen
    return sd


def test_cache_teacher_features_per_scene(tmp_path, teacher_dir):
    scene = _write_scene(tmp_path / "scene0000_00", n_frames=4)
    out_dir = tmp_path / "feats"
    written = cache_teacher_features([scene.path], teacher_dir, out_dir, frames_per_scene=2)
    assert written == [out_dir / "scene0000_00.safetensors"]
    feats, ids = load_cached_features(written[0])
    assert ids == ["00000", "00003"]  # uniform over the frames with a usable pose
    assert feats.shape == (2, 16, 2, 3) and feats.dtype == torch.float16
    # the cached map is the teacher's map of those very frames
    model, processor = load_teacher(teacher_dir)
    direct = extract_feature_map(model, processor, [scene.load_frame(i).rgb for i in ids])
    torch.testing.assert_close(feats.float(), direct, atol=1e-2, rtol=1e-2)
    # existing files are kept unless overwrite
    assert cache_teacher_features([scene.path], teacher_dir, out_dir, frames_per_scene=2) == []
    assert len(cache_teacher_features([scene.path], teacher_dir, out_dir, frames_per_scene=2, overwrite=True)) == 1
