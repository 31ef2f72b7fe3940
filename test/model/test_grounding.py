"""Grounding: proposal pooling, InfoNCE (single/multi/no object), selection rules, learning."""

from __future__ import annotations

import math

import pytest
import torch

from ros3d_agent.model.grounding import (
    GroundingConfig,
    GroundingHead,
    boxes_contain,
    infonce_loss,
    patch_box_fraction,
    pool_proposal_features,
    select_multi,
    select_single,
)
from ros3d_agent.model.position_encoding import SinCos3DPositionEncoding


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: intra-op threads only add wake-up latency on the shared 2-core box (seconds per test)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _scene():
    """1 sample, 2 views of 2×2 pre-pool patches, D = 6, with positions spread along x."""
    B, V, Hp, Wp, D = 1, 2, 2, 2, 6
    feats = torch.arange(B * V * Hp * Wp * D, dtype=torch.float32).reshape(B, V, Hp, Wp, D)
    xyz = torch.zeros(B, V, Hp, Wp, 3)
    xyz[0, 0, 0, 0] = torch.tensor([0.0, 0.0, 0.0])
    xyz[0, 0, 0, 1] = torch.tensor([5.0, 0.0, 0.0])
    xyz[0, 0, 1, 0] = torch.tensor([0.2, 0.1, 0.0])  # inside box 0 but invalid
    xyz[0, 0, 1, 1] = torch.tensor([9.0, 9.0, 0.0])
    xyz[0, 1, 0, 0] = torch.tensor([-5.0, 0.0, 0.0])
    xyz[0, 1, 0, 1] = torch.tensor([5.0, 5.0, 1.0])
    xyz[0, 1, 1, 0] = torch.tensor([7.0, 7.0, 0.0])
    xyz[0, 1, 1, 1] = torch.tensor([0.4, -0.4, 0.3])  # inside box 0 (boundary-inclusive on x/y: half size 0.5)
    valid = torch.ones(B, V, Hp, Wp, dtype=torch.bool)
    valid[0, 0, 1, 0] = False
    boxes = torch.tensor([[[0.0, 0.0, 0.0, 1.0, 1.0, 1.0], [20.0, 20.0, 0.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]]])
    box_valid = torch.tensor([[True, True, False]])
    return feats, xyz, valid, boxes, box_valid


def test_pool_averages_exactly_the_in_box_patches():
    feats, xyz, valid, boxes, box_valid = _scene()
    pe = SinCos3DPositionEncoding(6)
    out = pool_proposal_features(feats, xyz, valid, boxes, box_valid, pe)
    assert out.shape == (1, 3, 6)
    expected0 = (feats[0, 0, 0, 0] + feats[0, 1, 1, 1]) / 2 + pe(boxes[0, 0, :3])
    torch.testing.assert_close(out[0, 0], expected0)
    # no patch inside box 1: only its centre code
    torch.testing.assert_close(out[0, 1], pe(boxes[0, 1, :3]))
    # padded box: all zeros even though patches lie inside its volume
    assert torch.equal(out[0, 2], torch.zeros(6))


def test_pool_with_explicit_membership_and_pixel_fractions():
    feats, xyz, valid, boxes, box_valid = _scene()
    pe = SinCos3DPositionEncoding(6)
    inside = torch.zeros(1, 3, 2, 2, 2, dtype=torch.bool)
    inside[0, 1, 0, 0, 1] = True
    out = pool_proposal_features(feats, xyz, valid, boxes, box_valid, pe, inside=inside)
    torch.testing.assert_close(out[0, 1], feats[0, 0, 0, 1] + pe(boxes[0, 1, :3]))

    # pixel-level membership: one view 2×4 pixels, grid 1×2; left cell 3 of 4 pixels in box, one invalid
    world = torch.full((1, 1, 2, 4, 3), 10.0)
    world[0, 0, 0, 0] = 0.0
    world[0, 0, 0, 1] = 0.1
    world[0, 0, 1, 0] = 0.2
    pix_valid = torch.ones(1, 1, 2, 4, dtype=torch.bool)
    pix_valid[0, 0, 1, 1] = False
    frac = patch_box_fraction(world, pix_valid, boxes[:, :1], (1, 2))
    assert frac.shape == (1, 1, 1, 1, 2)
    assert frac[0, 0, 0, 0].tolist() == pytest.approx([1.0, 0.0])  # 3 valid pixels, all inside
    assert (frac >= GroundingConfig().min_pixel_fraction).sum() == 1


def test_boxes_contain_and_shape_errors():
    pts = torch.tensor([[[0.5, 0.0, 0.0], [0.51, 0.0, 0.0]]])
    box = torch.tensor([[[0.0, 0.0, 0.0, 1.0, 1.0, 1.0]]])
    assert boxes_contain(pts, box).tolist() == [[[True, False]]]
    feats, xyz, valid, boxes, box_valid = _scene()
    pe = SinCos3DPositionEncoding(6)
    with pytest.raises(ValueError):
        pool_proposal_features(feats, xyz, valid, boxes[..., :5], box_valid, pe)
    with pytest.raises(ValueError):
        pool_proposal_features(feats, xyz[..., :2], valid, boxes, box_valid, pe)


def test_infonce_hand_computed():
    logits = torch.tensor([[1.0, 2.0, 3.0, 0.0]])
    pos = torch.tensor([[True, False, False, False]])
    total = math.log(math.e**1 + math.e**2 + math.e**3 + 1.0)
    assert infonce_loss(logits, pos).item() == pytest.approx(total - 1.0, abs=1e-6)
    # multi-positive: -log((e^1 + e^3) / Σ)
    pos = torch.tensor([[True, False, True, False]])
    assert infonce_loss(logits, pos).item() == pytest.approx(total - math.log(math.e + math.e**3), abs=1e-6)
    # empty target set -> the no-object column is the positive
    assert infonce_loss(logits, torch.zeros(1, 4, dtype=torch.bool)).item() == pytest.approx(total - 0.0, abs=1e-6)
    # a (B, P) mask over the real candidates is accepted
    assert infonce_loss(logits, torch.tensor([[True, False, True]])).item() == pytest.approx(total - math.log(math.e + math.e**3), abs=1e-6)
    # batch mean
    two = infonce_loss(logits.repeat(2, 1), torch.tensor([[True, False, False, False], [False, False, False, False]]))
    assert two.item() == pytest.approx(((total - 1.0) + total) / 2, abs=1e-6)


def test_infonce_rejects_positive_on_masked_candidate_and_bad_shapes():
    logits = torch.tensor([[1.0, float("-inf"), 0.0]])
    with pytest.raises(ValueError, match="masked"):
        infonce_loss(logits, torch.tensor([[False, True, False]]))
    with pytest.raises(ValueError):
        infonce_loss(logits, torch.zeros(1, 5, dtype=torch.bool))


def test_head_logits_masking_and_bounds():
    torch.manual_seed(0)
    cfg = GroundingConfig(temperature=0.1)
    head = GroundingHead(8, cfg)
    q, objs = torch.randn(2, 8), torch.randn(2, 3, 8)
    valid = torch.tensor([[True, False, True], [True, True, True]])
    logits = head(q, objs, valid)
    assert logits.shape == (2, 4)
    assert torch.isneginf(logits[0, 1]) and torch.isfinite(logits[0, 3]) and torch.isfinite(logits[1]).all()
    assert logits[torch.isfinite(logits)].abs().max() <= 1 / cfg.temperature + 1e-4
    with pytest.raises(ValueError):
        head(q, objs[:, :, :4])
    assert head.num_parameters() == 2 * (8 * 8 + 8 + 2 * 8 + 8 * 8 + 8) + 8


def test_select_single_and_fallback():
    logits = torch.tensor([[0.1, 2.0, 0.5, 3.0], [float("-inf"), float("-inf"), float("-inf"), 1.0], [0.0, 4.0, 1.0, 2.0]])
    assert select_single(logits).tolist() == [1, 3, 1]  # no-object only when nothing else is valid
    assert select_single(logits, allow_no_object=True).tolist() == [3, 3, 1]


def test_select_multi_threshold_and_no_object():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.3, 0.1, 0.2, 0.4], [0.4, 0.1, 0.2, 0.3], [0.5, 0.0, 0.2, 0.3]])
    logits = probs.clamp(min=1e-12).log()
    logits[3, 1] = float("-inf")
    assert select_multi(logits[:1], 0.4) == [[0]]
    assert select_multi(logits[:1], 0.7) == [[0, 1]]
    assert select_multi(logits[:1], 0.9) == [[0, 1, 2]]
    assert select_multi(logits[:1], 1.0) == [[0, 1, 2]]  # the no-object candidate ends the list
    assert select_multi(logits[1:2], 0.25) == [[]]  # no-object first -> empty answer
    assert select_multi(logits[2:3], 0.9) == [[0]]  # no-object second -> stops after the first
    assert select_multi(logits[3:4], 1.0) == [[0]]  # masked candidates never returned
    with pytest.raises(ValueError):
        select_multi(logits, 0.0)


def test_grounding_learns_one_batch():
    torch.manual_seed(0)
    D, P = 16, 5
    head = GroundingHead(D)
    q, objs = torch.randn(4, D), torch.randn(4, P, D)
    pos = torch.zeros(4, P + 1, dtype=torch.bool)
    pos[0, 2] = True
    pos[1, [0, 4]] = True
    pos[3, 1] = True  # row 2: no object
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        loss = infonce_loss(head(q, objs), pos)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first
    assert select_single(head(q, objs)).tolist()[0] == 2
