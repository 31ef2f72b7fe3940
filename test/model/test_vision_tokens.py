"""Visual tokens: frame resampling + world xyz, tower cut at the selected layer, pooling, newline
layout for any number of views and any resolution, and the 3D position code added to every token."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ros3d_agent.model.geometry_inputs import frames_to_tensors, resample_window, stack_views
from ros3d_agent.model.modeling import Ros3DForConditionalGeneration
from ros3d_agent.model.presets import get_preset
from ros3d_agent.model.vision import add_row_newlines, build_vision_tower, pool_grid, pooled_grid_size, visual_token_offsets
from ros3d_agent.scene.geometry import make_transform
from ros3d_agent.scene.types import Frame


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matmuls on a shared 2-core box: a second intra-op thread only adds spin-wait contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model() -> Ros3DForConditionalGeneration:
    torch.manual_seed(0)
    return Ros3DForConditionalGeneration(get_preset("tiny")).eval()


def _pose() -> np.ndarray:
    c, s = math.cos(0.4), math.sin(0.4)
    R = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # optical z -> world x
    yaw = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return make_transform(yaw @ R, [0.5, -1.0, 1.4])


def _frame(h: int = 480, w: int = 640, depth: float = 2.0, hole: tuple[slice, slice] | None = None) -> Frame:
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[:, : w // 2] = (255, 0, 0)
    rgb[:, w // 2 :] = (0, 0, 255)
    d = np.full((h, w), depth, np.float32)
    # a slanted plane so every pixel has a different world point
    d += np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]
    if hole is not None:
        d[hole] = 0.0
    K = np.array([[500.0, 0.0, (w - 1) / 2], [0.0, 500.0, (h - 1) / 2], [0.0, 0.0, 1.0]])
    return Frame(rgb=rgb, depth=d, K=K, T_world_cam=_pose())


def _analytic_world(frame: Frame, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    K, T = frame.K, frame.T_world_cam
    u, v = np.meshgrid(cols, rows)
    z = frame.depth[v, u].astype(np.float64)
    cam = np.stack([(u - K[0, 2]) * z / K[0, 0], (v - K[1, 2]) * z / K[1, 1], z], axis=-1)
    return cam @ T[:3, :3].T + T[:3, 3]


# -- frames → tensors ------------------------------------------------------------------------------------
def test_center_crop_window_follows_video_3d_llm() -> None:
    win = resample_window(480, 640, 384, "center_crop")
    assert (win.resized_hw, win.top, win.left) == ((384, 512), 0, 64)
    assert win.source_cols()[0].item() == int(64 * 640 / 512) and win.source_rows()[-1].item() == int(383 * 480 / 384)
    sq = resample_window(480, 640, 384, "resize")
    assert (sq.resized_hw, sq.top, sq.left) == ((384, 384), 0, 0)
    with pytest.raises(ValueError, match="strategy"):
        resample_window(480, 640, 384, "pad")


def test_world_xyz_is_the_back_projected_depth_resampled_nearest() -> None:
    cfg = get_preset("tiny").vision
    frame = _frame(hole=(slice(0, 120), slice(0, 640)))
    views = frames_to_tensors([frame], cfg)
    S = cfg.image_size
    assert views.pixel_values.shape == (1, 3, S, S) and views.world_xyz.shape == (1, S, S, 3)
    win = resample_window(480, 640, S, "center_crop")
    rows, cols = win.source_rows().numpy(), win.source_cols().numpy()
    expected = _analytic_world(frame, rows, cols)
    valid = frame.depth[np.ix_(rows, cols)] > 0
    np.testing.assert_array_equal(views.world_valid[0].numpy(), valid)
    np.testing.assert_allclose(views.world_xyz[0].numpy()[valid], expected[valid], atol=1e-5)
    assert bool((views.world_xyz[0][~views.world_valid[0]] == 0).all())
    # colour: left half red, right half blue, normalised to [-1, 1] (SigLIP mean/std 0.5)
    px = views.pixel_values[0]
    assert px[0, :, :4].mean() > 0.95 and px[2, :, :4].mean() < -0.95
    assert px[2, :, -4:].mean() > 0.95 and px[0, :, -4:].mean() < -0.95


def test_frames_of_any_resolution_batch_together() -> None:
    cfg = get_preset("tiny").vision
    a = frames_to_tensors([_frame(480, 640), _frame(120, 90)], cfg)
    b = frames_to_tensors([_frame(200, 200), _frame(64, 64)], cfg)
    batch = stack_views([a, b])
    assert batch.pixel_values.shape == (2, 2, 3, 64, 64) and batch.world_valid.shape == (2, 2, 64, 64)
    with pytest.raises(ValueError, match="differ"):
        stack_views([a, frames_to_tensors([_frame()], cfg)])
    with pytest.raises(TypeError, match="expected a Frame"):
        frames_to_tensors([np.zeros((4, 4, 3))], cfg)  # type: ignore[list-item]


# -- tower, pooling, layout -------------------------------------------------------------------------------
def test_tower_is_cut_at_the_selected_layer_without_post_norm() -> None:
    from transformers import SiglipVisionModel

    cfg = get_preset("tiny").vision  # 3 layers, select -2
    torch.manual_seed(1)
    full = SiglipVisionModel(cfg.siglip_config().__class__(**{**cfg.siglip_config().to_dict(), "num_hidden_layers": 3}))
    tower = build_vision_tower(cfg)
    assert len(tower.encoder.layers) == 2 and isinstance(tower.post_layernorm, torch.nn.Identity)
    missing, unexpected = tower.load_state_dict(full.state_dict(), strict=False)
    assert not missing and all(k.startswith(("encoder.layers.2.", "post_layernorm.")) for k in unexpected)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = full(pixel_values=x, output_hidden_states=True).hidden_states[-2]
        got = tower(pixel_values=x).last_hidden_state
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("hp, wp, stride, expect", [(27, 27, 2, (14, 14)), (8, 8, 2, (4, 4)), (7, 12, 2, (4, 6)), (5, 5, 1, (5, 5))])
def test_pooling_rounds_up(hp: int, wp: int, stride: int, expect: tuple[int, int]) -> None:
    assert pooled_grid_size(hp, wp, stride) == expect
    for mode in ("bilinear", "average", "max"):
        assert pool_grid(torch.randn(2, hp, wp, 6), stride, mode).shape == (2, *expect, 6)


def test_average_pooling_and_bilinear_on_even_grids() -> None:
    x = torch.randn(1, 4, 6, 3)
    avg = pool_grid(x, 2, "average")
    torch.testing.assert_close(avg[0, 1, 2], x[0, 2:4, 4:6].mean(dim=(0, 1)))
    # for an even grid, bilinear 2x down-sampling with align_corners=False is the 2x2 mean
    torch.testing.assert_close(pool_grid(x, 2, "bilinear"), avg)
    with pytest.raises(ValueError, match="pool mode"):
        pool_grid(x, 2, "median")


def test_newline_layout_and_offsets() -> None:
    B, V, h, w, D = 2, 3, 4, 5, 7
    tokens = torch.randn(B, V, h, w, D)
    newline = torch.randn(D)
    seq = add_row_newlines(tokens, newline)
    assert seq.shape == (B, V * h * (w + 1), D)
    offsets = visual_token_offsets(V, h, w)
    torch.testing.assert_close(seq[:, offsets].reshape(B, V, h, w, D), tokens)
    is_newline = torch.ones(seq.shape[1], dtype=torch.bool)
    is_newline[offsets] = False
    assert int(is_newline.sum()) == V * h
    assert bool((seq[:, is_newline] == newline).all())
    # a newline closes every row: positions w, 2w+1, ...
    assert torch.nonzero(is_newline).flatten()[:2].tolist() == [w, 2 * w + 1]


@pytest.mark.parametrize("views, height, width", [(1, 64, 64), (3, 48, 80), (2, 100, 60), (5, 64, 64)])
def test_spliced_sequence_has_h_times_w_plus_one_tokens_per_view(model, views: int, height: int, width: int) -> None:
    cfg = model.config
    B = 2
    pixel = torch.randn(B, views, 3, height, width)
    xyz = torch.randn(B, views, height, width, 3)
    valid = torch.ones(B, views, height, width, dtype=torch.bool)
    with torch.no_grad():
        visual = model.encode_frames(pixel, xyz, valid)
    hp, wp = height // cfg.vision.patch_size, width // cfg.vision.patch_size
    h, w = pooled_grid_size(hp, wp, cfg.projector.pool_stride)
    assert visual.pre_pool.shape == (B, views, hp, wp, cfg.language.hidden_size)
    assert visual.tokens.shape == (B, views, h, w, cfg.language.hidden_size)
    ids = torch.tensor([[1, 10, 3, 11, 12], [1, 10, 11, 3, 12]])
    with torch.no_grad():
        spliced = model.prepare_inputs_embeds(ids, visual=visual)
    n_vis = views * h * (w + 1)
    assert spliced.inputs_embeds.shape[1] == ids.shape[1] - 1 + n_vis
    assert spliced.attention_mask.shape == spliced.token_ids.shape == spliced.inputs_embeds.shape[:2]
    assert int((spliced.token_ids == -1).sum(dim=1)[0]) == n_vis
    # real tokens sit at visual_positions; the others of the visual span are image_newline
    for b, start in enumerate((2, 3)):
        got = spliced.inputs_embeds[b, spliced.visual_positions[b]].reshape(views, h, w, -1)
        torch.testing.assert_close(got, visual.tokens[b])
        span = torch.zeros(spliced.inputs_embeds.shape[1], dtype=torch.bool)
        span[start : start + n_vis] = True
        span[spliced.visual_positions[b]] = False
        assert int(span.sum()) == views * h
        assert bool((spliced.inputs_embeds[b, span] == model.image_newline.detach()).all())
    # text around the placeholder is kept in order
    emb = model.language_model.get_input_embeddings()
    torch.testing.assert_close(spliced.inputs_embeds[0, 3 + n_vis - 1], emb.weight[11].detach())
    torch.testing.assert_close(spliced.inputs_embeds[1, 2], emb.weight[11].detach())


# -- 3D position code ---------------------------------------------------------------------------------------
def test_tokens_differ_from_the_no_pe_path_by_exactly_the_code(model) -> None:
    views = frames_to_tensors([_frame(hole=(slice(0, 480), slice(0, 200))), _frame(depth=3.0)], model.config.vision)
    args = (views.pixel_values[None], views.world_xyz[None], views.world_valid[None])
    with torch.no_grad():
        with_pe = model.encode_frames(*args)
        without = model.encode_frames(*args, add_position_encoding=False)
    diff = with_pe.tokens - without.tokens
    code = model.position_encoding(with_pe.token_xyz) * with_pe.token_valid[..., None]
    torch.testing.assert_close(diff, code, atol=1e-6, rtol=0)
    assert diff.abs().sum() > 0
    # the hole (left ~third of the first view) leaves whole token cells without depth: no code there
    assert not bool(with_pe.token_valid[0, 0, :, 0].any())
    assert bool((diff[0, 0, :, 0] == 0).all()) and bool(with_pe.token_valid[0, 1].all())
    # pre-pool features (what grounding pools) never carry the code
    torch.testing.assert_close(with_pe.pre_pool, without.pre_pool)


def test_token_xyz_is_the_mean_of_the_back_projected_pixels_of_its_cell(model) -> None:
    frame = _frame(hole=(slice(0, 240), slice(0, 320)))
    cfg = model.config.vision
    views = frames_to_tensors([frame], cfg)
    with torch.no_grad():
        visual = model.encode_frames(views.pixel_values[None], views.world_xyz[None], views.world_valid[None])
    S, ps = cfg.image_size, cfg.patch_size
    win = resample_window(480, 640, S, cfg.crop_strategy)
    world = _analytic_world(frame, win.source_rows().numpy(), win.source_cols().numpy())
    valid = frame.depth[np.ix_(win.source_rows().numpy(), win.source_cols().numpy())] > 0
    h, w = visual.grid
    cell = S // h  # 64 px in 4 cells of 16 px (= 2x2 patches of 8 px)
    for i in range(h):
        for j in range(w):
            m = valid[i * cell : (i + 1) * cell, j * cell : (j + 1) * cell]
            assert bool(visual.token_valid[0, 0, i, j]) == bool(m.any())
            if m.any():
                want = world[i * cell : (i + 1) * cell, j * cell : (j + 1) * cell][m].mean(axis=0)
                np.testing.assert_allclose(visual.token_xyz[0, 0, i, j].numpy(), want, atol=1e-4)
    # and per patch (pre-pool grid)
    m = valid[:ps, -ps:]
    np.testing.assert_allclose(visual.pre_pool_xyz[0, 0, 0, -1].numpy(), world[:ps, -ps:][m].mean(axis=0), atol=1e-4)


def test_encode_frames_rejects_mismatched_shapes(model) -> None:
    with pytest.raises(ValueError, match="world_xyz: expected shape"):
        model.encode_frames(torch.zeros(1, 2, 3, 64, 64), torch.zeros(1, 2, 32, 32, 3), torch.ones(1, 2, 64, 64, dtype=torch.bool))
    with pytest.raises(ValueError, match="pixel_values: expected shape"):
        model.encode_frames(torch.zeros(2, 3, 64, 64), torch.zeros(2, 64, 64, 3), torch.ones(2, 64, 64, dtype=torch.bool))
    with pytest.raises(ValueError, match="smaller than one"):
        model.encode_frames(torch.zeros(1, 1, 3, 4, 4), torch.zeros(1, 1, 4, 4, 3), torch.ones(1, 1, 4, 4, dtype=torch.bool))


def test_world_xyz_agrees_with_the_scene_back_projection() -> None:
    """Lifting only the kept pixels gives what back-projecting the whole image and resampling gives."""
    from ros3d_agent.model.geometry_inputs import _frame_xyz
    from ros3d_agent.scene.geometry import backproject_depth_torch

    frame = _frame(120, 160, hole=(slice(10, 40), slice(0, 50)))
    K = frame.K.copy()
    K[0, 1] = 3.0  # skew, to pin the convention
    frame = Frame(rgb=frame.rgb, depth=frame.depth, K=K, T_world_cam=frame.T_world_cam)
    win = resample_window(120, 160, 64, "center_crop")
    xyz, valid = _frame_xyz(frame, win)
    full, mask = backproject_depth_torch(torch.from_numpy(frame.depth)[None].double(), torch.from_numpy(K), torch.from_numpy(frame.T_world_cam))
    rows, cols = win.source_rows(), win.source_cols()
    torch.testing.assert_close(valid, mask[0][rows][:, cols])
    torch.testing.assert_close(xyz, full[0][rows][:, cols].float(), atol=1e-5, rtol=0)
