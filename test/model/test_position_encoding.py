"""3D position code: voxel indices, exact sin/cos values, zero padding, clamping, patch averaging, <coord>."""

from __future__ import annotations

import math

import pytest
import torch

from ros3d_agent.model.coord import coord_embedding
from ros3d_agent.model.position_encoding import (
    PositionEncodingConfig,
    SinCos3DPositionEncoding,
    discretize_xyz,
    patch_xyz_from_world,
)


def test_discretize_hand_computed_and_clamped():
    xyz = torch.tensor([[1.23, -2.0, 0.5], [100.0, -100.0, 7.0], [0.04, 0.0, -5.0]])
    idx = discretize_xyz(xyz)
    assert idx.dtype == torch.long
    # (1.23 + 15) / 0.1 = 162.3 -> 162; (-2 + 15) / 0.1 = 130; (0.5 + 5) / 0.1 = 55
    assert idx[0].tolist() == [162, 130, 55]
    # clamped to the max corner: 300, 0 (min), 100
    assert idx[1].tolist() == [300, 0, 100]
    assert idx[2].tolist() == [150, 150, 0]
    assert PositionEncodingConfig().num_voxels == (301, 301, 101)


def test_discretize_custom_grid_and_half_precision():
    cfg = PositionEncodingConfig(voxel_size=0.5, min_xyz=(0, 0, 0), max_xyz=(4, 4, 2))
    assert discretize_xyz(torch.tensor([1.2, 3.9, -1.0]), cfg).tolist() == [2, 8, 0]
    # bf16 input is discretized in float32, not in bf16 (14.3 m has ~0.06 m bf16 resolution)
    xyz = torch.tensor([[14.3, -7.7, 2.2]])
    assert discretize_xyz(xyz.bfloat16()).tolist() == discretize_xyz(xyz.bfloat16().float()).tolist()


@pytest.mark.parametrize("bad", [dict(voxel_size=0), dict(min_xyz=(0, 0, 0), max_xyz=(1, 1, 0)), dict(temperature=1.0)])
def test_config_rejects_nonsense(bad):
    with pytest.raises(ValueError):
        PositionEncodingConfig(**bad)


def test_sincos_values_against_hand_computation():
    D = 20  # num_feats = 6 per axis, 2 padding channels
    pe = SinCos3DPositionEncoding(D)
    code = pe(torch.tensor([1.23, -2.0, 0.5]))
    assert code.shape == (D,) and code.dtype == torch.float32
    nf = 6
    x, y, z = 162.0, 130.0, 55.0

    def dim_t(i: int) -> float:
        return 10000.0 ** (2 * (i // 2) / nf)

    expected = {
        0: math.sin(x / dim_t(0)),
        1: math.cos(x / dim_t(1)),
        2: math.sin(x / dim_t(2)),
        3: math.cos(x / dim_t(3)),
        5: math.cos(x / dim_t(5)),
        nf + 0: math.sin(y),
        nf + 3: math.cos(y / dim_t(3)),
        2 * nf + 0: math.sin(z),
        2 * nf + 1: math.cos(z),
        2 * nf + 4: math.sin(z / dim_t(4)),
    }
    for ch, val in expected.items():
        assert code[ch].item() == pytest.approx(val, abs=1e-5), ch
    assert code[18:].tolist() == [0.0, 0.0]  # zero padding


def test_sincos_at_llm_width_and_batch_shape():
    pe = SinCos3DPositionEncoding(3584)
    assert pe.num_feats == 1194
    xyz = torch.tensor([1.23, -2.0, 0.5]).expand(2, 3, 3)
    code = pe(xyz)
    assert code.shape == (2, 3, 3584)
    c = code[1, 2]
    assert c[5].item() == pytest.approx(math.cos(162 / 10000 ** (4 / 1194)), abs=1e-5)
    assert c[1194 + 100].item() == pytest.approx(math.sin(130 / 10000 ** (100 / 1194)), abs=1e-5)
    assert c[3582:].abs().sum() == 0


def test_sincos_has_no_parameters_and_clamps():
    pe = SinCos3DPositionEncoding(32)
    assert list(pe.parameters()) == []
    assert pe.state_dict() == {}
    far = pe(torch.tensor([100.0, -100.0, 9.0]))
    edge = pe(torch.tensor([15.0, -15.0, 5.0]))
    assert torch.equal(far, edge)
    assert not torch.equal(pe(torch.tensor([1.0, 0, 0])), pe(torch.tensor([1.1, 0, 0])))


def test_sincos_rejects_bad_shapes():
    pe = SinCos3DPositionEncoding(12)
    with pytest.raises(ValueError):
        pe(torch.zeros(4, 2))
    with pytest.raises(TypeError):
        pe(torch.zeros(4, 3, dtype=torch.long))
    with pytest.raises(ValueError):
        SinCos3DPositionEncoding(2)


def test_patch_xyz_averages_only_valid_pixels():
    # One view 4×5 pixels, grid 2×2: rows split [0,1] | [2,3], columns [0,1,2] | [3,4].
    H, W = 4, 5
    xyz = torch.zeros(1, 1, H, W, 3)
    for r in range(H):
        for c in range(W):
            xyz[0, 0, r, c] = torch.tensor([r, c, r * 10 + c], dtype=torch.float32)
    valid = torch.ones(1, 1, H, W, dtype=torch.bool)
    valid[0, 0, 0, 0] = False
    xyz[0, 0, 0, 0] = float("nan")  # must never be read
    valid[0, 0, 2:, 3:] = False  # bottom-right cell has no valid pixel
    xyz[0, 0, 2:, 3:] = float("inf")

    pxyz, pvalid = patch_xyz_from_world(xyz, valid, (2, 2))
    assert pxyz.shape == (1, 1, 2, 2, 3) and pvalid.shape == (1, 1, 2, 2)
    assert pvalid[0, 0].tolist() == [[True, True], [True, False]]
    # top-left: pixels (r,c) in {0,1}×{0,1,2} minus (0,0) -> 5 pixels
    pts = [(0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    exp = torch.tensor([[r, c, r * 10 + c] for r, c in pts], dtype=torch.float32).mean(0)
    torch.testing.assert_close(pxyz[0, 0, 0, 0], exp)
    # top-right: rows {0,1}, cols {3,4}
    pts = [(r, c) for r in (0, 1) for c in (3, 4)]
    exp = torch.tensor([[r, c, r * 10 + c] for r, c in pts], dtype=torch.float32).mean(0)
    torch.testing.assert_close(pxyz[0, 0, 0, 1], exp)
    assert torch.equal(pxyz[0, 0, 1, 1], torch.zeros(3))
    assert torch.isfinite(pxyz).all()


def test_patch_xyz_uneven_split_and_errors():
    # 7 rows into 3 cells: floor(r*3/7) -> rows {0,1,2} {3,4} {5,6}; every pixel in exactly one cell
    xyz = torch.arange(7, dtype=torch.float32)[None, None, :, None, None].expand(2, 3, 7, 1, 3)
    pxyz, pvalid = patch_xyz_from_world(xyz, torch.ones(2, 3, 7, 1, dtype=torch.bool), (3, 1))
    assert pxyz[0, 0, :, 0, 0].tolist() == [1.0, 3.5, 5.5]
    assert pvalid.all()
    with pytest.raises(ValueError):
        patch_xyz_from_world(xyz, torch.ones(2, 3, 7, 1, dtype=torch.bool), (8, 1))
    with pytest.raises(ValueError):
        patch_xyz_from_world(xyz, torch.ones(2, 3, 7, 2, dtype=torch.bool), (3, 1))


def test_coord_embedding_is_the_pe_of_the_centre():
    pe = SinCos3DPositionEncoding(24)
    centres = torch.tensor([[1.0, 2.0, 0.3], [-4.0, 0.0, 1.0]])
    emb = coord_embedding(pe, centres)
    assert emb.shape == (2, 24)
    torch.testing.assert_close(emb, pe(centres))
    with pytest.raises(ValueError):
        coord_embedding(pe, torch.zeros(3))
