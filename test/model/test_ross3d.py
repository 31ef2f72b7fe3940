"""Ross3D: view masking, denoiser, VAE targets, BEV hole mask, the two losses, learning one batch."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import DDPMScheduler

from ros3d_agent.model.position_encoding import SinCos3DPositionEncoding
from ros3d_agent.model.ross3d import (
    Ross3DConfig,
    Ross3DDenoiser,
    Ross3DHead,
    ViewMasker,
    bev_latent_mask,
    encode_images,
    group_latents,
    load_vae,
    num_masked_views,
    tiny_random_vae,
)

D = 16  # LLM width of the tiny tests


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: intra-op threads only add wake-up latency on the shared 2-core box (seconds per test)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- masking -------------------------------------------------------------------------------------
def test_masked_view_is_the_mask_token_and_keeps_its_pe():
    cfg = Ross3DConfig.tiny()
    masker = ViewMasker(D, cfg)
    B, V, h, w = 3, 8, 2, 2
    tokens = torch.randn(B, V, h, w, D)
    masked, view_mask = masker.mask_views(tokens, generator=_gen())
    assert view_mask.shape == (B, V) and view_mask.dtype == torch.bool
    assert view_mask.sum(dim=1).tolist() == [2, 2, 2]  # round(0.25 * 8)
    sel = masked[view_mask]  # (B*2, h, w, D)
    assert torch.equal(sel, masker.mask_token.detach().expand_as(sel))
    assert torch.equal(masked[~view_mask], tokens[~view_mask])

    # the caller adds the 3D PE afterwards: a masked view = mask token + its own position code
    pe = SinCos3DPositionEncoding(D)
    xyz = torch.randn(B, V, h, w, 3) * 3
    with_pe = masked + pe(xyz)
    b, v = torch.nonzero(view_mask)[0].tolist()
    torch.testing.assert_close(with_pe[b, v], masker.mask_token.detach() + pe(xyz[b, v]))
    assert not torch.equal(with_pe[b, v, 0, 0], with_pe[b, v, 1, 1])  # position still tells cells apart

    # the mask token learns
    masked.sum().backward()
    assert masker.mask_token.grad is not None and masker.mask_token.grad.abs().sum() > 0


def test_mask_schedule_every_fourth_step():
    masker = ViewMasker(D, Ross3DConfig.tiny())
    assert [s for s in range(13) if masker.should_mask(s)] == [0, 4, 8, 12]
    assert all(ViewMasker(D, Ross3DConfig.tiny(mask_interval=1)).should_mask(s) for s in range(5))
    assert not any(ViewMasker(D, Ross3DConfig.tiny(cross_view=False)).should_mask(s) for s in range(5))
    assert not any(ViewMasker(D, Ross3DConfig.tiny(mask_ratio=0.0)).should_mask(s) for s in range(5))


def test_mask_ratio_and_at_least_one_view_kept():
    assert num_masked_views(32, 0.25) == 8
    assert num_masked_views(1, 0.25) == 0  # a single view is never masked
    assert num_masked_views(2, 0.25) == 1  # at least one when ratio > 0
    assert num_masked_views(3, 0.25) == 1
    assert num_masked_views(6, 0.25) == 2  # 1.5 rounds up
    assert num_masked_views(4, 0.9) == 3  # never all
    assert num_masked_views(5, 0.0) == 0
    masker = ViewMasker(D, Ross3DConfig.tiny(mask_ratio=0.9))
    for seed in range(20):
        vm = masker.sample_view_mask(4, 3, generator=_gen(seed))
        assert (vm.sum(dim=1) == 2).all() and (~vm).any(dim=1).all()
    # different samples get different views (random per sample)
    vm = ViewMasker(D, Ross3DConfig.tiny()).sample_view_mask(64, 8, generator=_gen(1))
    assert len({tuple(r) for r in vm.tolist()}) > 1
    with pytest.raises(ValueError):
        masker.apply(torch.zeros(1, 2, 2, 2, D), torch.zeros(1, 3, dtype=torch.bool))


# -- denoiser ------------------------------------------------------------------------------------
def test_denoiser_shapes_zero_init_and_any_grid():
    cfg = Ross3DConfig.tiny()
    den = Ross3DDenoiser(D, cfg)
    tokens = torch.randn(2, 10, D)
    cond = den.encode_condition(tokens, None, "view")
    assert cond.shape == (2, 16, cfg.denoiser_width)
    x = torch.randn(2, cfg.latent_channels, 4, 4)
    out = den(x, torch.tensor([3, 999]), cond, "view")
    assert out.shape == x.shape
    assert torch.equal(out, torch.zeros_like(out))  # adaLN-Zero: the untrained DiT predicts zero
    # a target grid other than the configured one (queries and positions are resized)
    cond = den.encode_condition(tokens, None, "bev", (3, 5))
    assert den(torch.randn(2, cfg.latent_channels, 3, 5), 10, cond, "bev").shape == (2, cfg.latent_channels, 3, 5)
    with pytest.raises(ValueError):
        den(x, torch.tensor([1, 2]), cond, "view")  # condition of the wrong grid
    with pytest.raises(ValueError):
        Ross3DDenoiser(D, Ross3DConfig.tiny(bev=False)).encode_condition(tokens, None, "bev")
    with pytest.raises(ValueError):
        Ross3DDenoiser(D, Ross3DConfig.tiny(bev=False, cross_view=False))


def test_config_validation_and_roundtrip():
    cfg = Ross3DConfig.tiny(view_latent_hw=5)
    assert cfg.view_latent_hw == (5, 5) and cfg.latent_channels == 64
    assert Ross3DConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    for bad in (dict(mask_ratio=1.0), dict(mask_interval=0), dict(denoiser_width=30), dict(prediction_type="flow")):
        with pytest.raises(ValueError):
            Ross3DConfig.tiny(**bad)
    with pytest.raises(ValueError):
        Ross3DConfig.from_dict({"nope": 1})
    with pytest.raises(TypeError):  # weights live only in Ros3DModelConfig.loss_weights
        Ross3DConfig.tiny(view_loss_weight=0.5)


# -- VAE targets ---------------------------------------------------------------------------------
def test_vae_saved_locally_loads_frozen_and_encodes(tmp_path):
    vae = tiny_random_vae()
    vae.save_pretrained(tmp_path / "pipe" / "vae")
    for path in (tmp_path / "pipe" / "vae", tmp_path / "pipe"):  # the VAE dir or a pipeline root
        loaded = load_vae(path)
        assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
        assert loaded.config.latent_channels == 16 and loaded.config.shift_factor == pytest.approx(0.1159)
    images = torch.rand(2, 3, 72, 72) * 2 - 1  # 72 px -> 9×9 latent (odd) -> 10×10 -> grouped 5×5
    lat = encode_images(loaded, images)
    assert lat.shape == (2, 64, 5, 5) and lat.dtype == torch.float32
    z = loaded.encode(images).latent_dist.mode()
    expected = group_latents((z - loaded.config.shift_factor) * loaded.config.scaling_factor)
    torch.testing.assert_close(lat, expected)
    torch.testing.assert_close(encode_images(vae, images), lat)  # same weights after the round trip
    with pytest.raises(ValueError):
        encode_images(loaded, images * 3)


def test_load_vae_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_vae(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_vae(tmp_path / "empty")
    tiny_random_vae().save_pretrained(tmp_path / "noweights")
    (tmp_path / "noweights" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="safetensors"):
        load_vae(tmp_path / "noweights")


def test_group_latents_space_to_channel():
    z = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4)
    g = group_latents(z)
    assert g.shape == (1, 8, 2, 2)
    # channel c*4 + i*2 + j at cell (y, x) holds z[c, 2y + i, 2x + j]
    assert g[0, 4 + 1 * 2 + 0, 1, 0].item() == z[0, 1, 3, 0].item()


def test_bev_latent_mask_excludes_holes():
    valid = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    valid[0, 0, 1, 2] = True  # a single valid pixel in the top-left quadrant
    valid[0, 0, 6:, 6:] = True
    m = bev_latent_mask(valid, (2, 2))
    assert m.dtype == torch.float32 and m[0, 0].tolist() == [[1.0, 0.0], [0.0, 1.0]]
    # a BEV image's channel mean (black = hole) works as validity too
    img = torch.zeros(1, 8, 8)
    img[0, :4, 4:] = 0.3
    assert bev_latent_mask(img, (2, 2))[0, 0].tolist() == [[0.0, 1.0], [0.0, 0.0]]


# -- head / losses -------------------------------------------------------------------------------
def _batch(cfg: Ross3DConfig, B: int = 2, V: int = 4, seed: int = 0):
    g = _gen(seed)
    vh = torch.randn(B, V, 2, 2, D, generator=g)
    vm = torch.zeros(B, V, dtype=torch.bool)
    vm[0, 1] = True
    vm[1, 3] = True
    vl = torch.randn(B, V, cfg.latent_channels, *cfg.view_latent_hw, generator=g)
    bl = torch.randn(B, cfg.latent_channels, *cfg.bev_latent_hw, generator=g)
    return vh, vm, vl, bl


def _perturbed_head(cfg: Ross3DConfig, **kw) -> Ross3DHead:
    """A head whose zero-initialised output layers are made non-zero, so the condition matters."""
    torch.manual_seed(0)
    head = Ross3DHead(D, cfg, **kw)
    with torch.no_grad():
        for p in head.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return head


def test_head_terms_present_only_when_enabled_and_given():
    cfg = Ross3DConfig.tiny()
    head = Ross3DHead(D, cfg)
    vh, vm, vl, bl = _batch(cfg)
    assert set(head(vh, vm, vl, bl, generator=_gen())) == {"ross3d_view", "ross3d_bev"}
    assert set(head(vh, None, vl, bl, generator=_gen())) == {"ross3d_bev"}  # not a masking step
    assert set(head(vh, vm, vl, None, generator=_gen())) == {"ross3d_view"}
    assert head(vh, torch.zeros_like(vm), vl) == {}  # nothing masked, no BEV
    view_only = Ross3DHead(D, Ross3DConfig.tiny(bev=False))
    assert set(view_only(vh, vm, vl, bl, generator=_gen())) == {"ross3d_view"}
    assert view_only.num_parameters() < head.num_parameters()
    with pytest.raises(ValueError, match="every view"):
        head(vh, torch.ones_like(vm), vl, bl)
    with pytest.raises(ValueError):
        head(vh, vm, vl[:, :, :8], bl)


def test_view_loss_conditions_on_unmasked_views_and_targets_masked_ones():
    cfg = Ross3DConfig.tiny(bev=False)
    head = _perturbed_head(cfg)
    vh, vm, vl, _ = _batch(cfg)
    base = head(vh, vm, vl, generator=_gen())["ross3d_view"]
    vh2 = vh.clone()
    vh2[vm] = torch.randn_like(vh2[vm]) * 5  # LLM outputs at masked views: not a condition
    vl2 = vl.clone()
    vl2[~vm] = 123.0  # latents of unmasked views: not a target
    assert torch.equal(head(vh2, vm, vl2, generator=_gen())["ross3d_view"], base)
    vh3 = vh.clone()
    vh3[~vm] = torch.randn_like(vh3[~vm])
    assert not torch.equal(head(vh3, vm, vl, generator=_gen())["ross3d_view"], base)


def test_bev_holes_do_not_matter():
    cfg = Ross3DConfig.tiny(cross_view=False)
    head = _perturbed_head(cfg)
    vh, _, _, bl = _batch(cfg)
    valid = torch.ones(2, 1, *cfg.bev_latent_hw)
    valid[0, :, :3, :] = 0  # top half of sample 0 is a hole
    valid[1] = 0  # sample 1 is all holes
    zeros = bl.clone()
    zeros[valid.expand_as(bl) == 0] = 0.0
    garbage = bl.clone()
    garbage[valid.expand_as(bl) == 0] = torch.randn_like(bl)[valid.expand_as(bl) == 0] * 100
    l_zero = head(vh, bev_latents=zeros, bev_valid=valid, generator=_gen())["ross3d_bev"]
    l_garbage = head(vh, bev_latents=garbage, bev_valid=valid, generator=_gen())["ross3d_bev"]
    assert torch.equal(l_zero, l_garbage)
    assert l_zero > 0
    # a hole-only target contributes exactly zero, and the graph survives
    none_valid = torch.zeros_like(valid)
    l_none = head(vh, bev_latents=garbage, bev_valid=none_valid, generator=_gen())["ross3d_bev"]
    assert l_none.item() == 0.0
    l_none.backward()


def test_swappable_scheduler_v_prediction():
    cfg = Ross3DConfig.tiny(prediction_type="v_prediction", cross_view=False)
    sched = DDPMScheduler(num_train_timesteps=50, beta_schedule="linear", prediction_type="v_prediction")
    head = Ross3DHead(D, cfg, noise_scheduler=sched)
    vh, _, _, bl = _batch(cfg)
    assert torch.isfinite(head(vh, bev_latents=bl, generator=_gen())["ross3d_bev"])
    with pytest.raises(ValueError, match="prediction"):
        Ross3DHead(D, Ross3DConfig.tiny(), noise_scheduler=sched)


def test_ross3d_losses_go_down_on_one_batch():
    torch.manual_seed(0)
    cfg = Ross3DConfig.tiny()
    head = Ross3DHead(D, cfg)
    vh, vm, vl, bl = _batch(cfg, seed=3)
    valid = torch.ones(2, 1, *cfg.bev_latent_hw)
    valid[:, :, :2] = 0
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    first = None
    for _ in range(40):
        losses = head(vh, vm, vl, bl, valid, generator=_gen(7))  # same t and noise every step
        first = first or {k: v.item() for k, v in losses.items()}
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    last = {k: v.item() for k, v in head(vh, vm, vl, bl, valid, generator=_gen(7)).items()}
    for key in ("ross3d_view", "ross3d_bev"):
        assert last[key] < 0.5 * first[key], (key, first[key], last[key])
