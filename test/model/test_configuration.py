"""Model configuration: presets, validation with clear errors, JSON round trip, losses composition."""

from __future__ import annotations

import json

import pytest
import torch

from ros3d_agent.model.configuration import ConfigError, LanguageConfig, ProjectorConfig, Ros3DModelConfig, SpecialTokenIds, VisionConfig
from ros3d_agent.model.losses import compose_losses
from ros3d_agent.model.presets import available_presets, get_preset
from ros3d_agent.model.ross3d.configuration import Ross3DConfig


@pytest.mark.parametrize("name", ["tiny", "small", "llava-video-7b"])
def test_presets_are_valid_and_round_trip_through_json(name: str) -> None:
    cfg = get_preset(name)
    assert cfg.preset == name
    again = Ros3DModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg


def test_llava_video_7b_preset_matches_the_reference_layout() -> None:
    cfg = get_preset("llava-video-7b")
    v, lm = cfg.vision, cfg.language
    assert (v.hidden_size, v.num_hidden_layers, v.num_attention_heads, v.intermediate_size) == (1152, 27, 16, 4304)
    assert (v.image_size, v.patch_size, v.select_layer) == (384, 14, -2)
    assert v.layers_used == 26  # layer -2: the last SigLIP layer is never built
    assert (lm.hidden_size, lm.num_hidden_layers, lm.num_attention_heads, lm.num_key_value_heads) == (3584, 28, 28, 4)
    assert (lm.intermediate_size, lm.vocab_size) == (18944, 152064)
    assert cfg.projector.projector_type == "mlp2x_gelu" and cfg.projector.pool_mode == "bilinear"
    assert v.grid_size == 27 and cfg.pooled_grid == (14, 14)
    assert cfg.tokens_per_view == 210


def test_unknown_preset_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown model preset 'huge'.*tiny"):
        get_preset("huge")
    assert set(available_presets()) == {"tiny", "small", "llava-video-7b"}


def test_preset_overrides_are_validated() -> None:
    cfg = get_preset("tiny", ross3d=None, alignment3drs=None)
    assert cfg.ross3d is None and cfg.alignment3drs is None
    with pytest.raises(ConfigError, match="tokens.coord"):
        get_preset("tiny", tokens=SpecialTokenIds(coord=5000))


@pytest.mark.parametrize(
    "part, kwargs, message",
    [
        ("vision", dict(hidden_size=30, num_attention_heads=4), "vision.hidden_size 30 is not divisible"),
        ("vision", dict(select_layer=-5, num_hidden_layers=3), "select_layer -5 is outside"),
        ("vision", dict(select_layer=0), "select_layer 0"),
        ("vision", dict(patch_size=128, image_size=64), "patch_size 128 exceeds"),
        ("vision", dict(crop_strategy="pad"), "crop_strategy"),
        ("language", dict(hidden_size=48, num_attention_heads=4, num_key_value_heads=3), "not a multiple of"),
        ("language", dict(hidden_size=50, num_attention_heads=4), "not divisible"),
        ("language", dict(hidden_size=60, num_attention_heads=4), "head_dim 15 must be even"),
        ("language", dict(num_hidden_layers=0), "num_hidden_layers must be a positive integer"),
        ("projector", dict(projector_type="qformer"), "mlp2x_gelu"),
        ("projector", dict(pool_mode="median"), "pool_mode"),
        ("projector", dict(pool_stride=0), "pool_stride"),
    ],
)
def test_inconsistent_sizes_fail_with_the_field_named(part: str, kwargs: dict, message: str) -> None:
    base = get_preset("tiny")
    cls = {"vision": VisionConfig, "language": LanguageConfig, "projector": ProjectorConfig}[part]
    fields = {**base.to_dict()[part], **kwargs}
    if part == "vision":
        fields["image_mean"], fields["image_std"] = tuple(fields["image_mean"]), tuple(fields["image_std"])
    with pytest.raises(ConfigError, match=message):
        base.replace(**{part: cls(**fields)})


def test_token_ids_must_fit_the_vocabulary_and_differ() -> None:
    with pytest.raises(ConfigError, match="not an id in the vocabulary"):
        get_preset("tiny", tokens=SpecialTokenIds(image=4096))
    with pytest.raises(ConfigError, match="four different ids"):
        get_preset("tiny", tokens=SpecialTokenIds(ground=3))


def test_ross3d_view_grid_must_match_the_token_grid() -> None:
    with pytest.raises(ConfigError, match=r"view_latent_hw \(5, 5\) must equal the pooled token grid \(4, 4\)"):
        get_preset("tiny", ross3d=Ross3DConfig.tiny(view_latent_hw=(5, 5)))


def test_loss_weights_are_checked() -> None:
    with pytest.raises(ConfigError, match="unknown terms \\['lm_loss'\\]"):
        get_preset("tiny", loss_weights={"lm_loss": 1.0})
    with pytest.raises(ConfigError, match="must be a number >= 0"):
        get_preset("tiny", loss_weights={"lm": -1.0})


def test_from_dict_rejects_unknown_keys() -> None:
    data = get_preset("tiny").to_dict()
    data["vision"]["hiden_size"] = 3
    with pytest.raises(ConfigError, match="vision: unknown keys \\['hiden_size'\\]"):
        Ros3DModelConfig.from_dict(data)
    data = get_preset("tiny").to_dict()
    data["extra"] = 1
    with pytest.raises(ConfigError, match="unknown keys \\['extra'\\]"):
        Ros3DModelConfig.from_dict(data)


def test_hf_configs_follow_the_dataclasses() -> None:
    cfg = get_preset("small")
    siglip = cfg.vision.siglip_config()
    assert siglip.num_hidden_layers == cfg.vision.layers_used and siglip.vision_use_head is False
    qwen = cfg.language.qwen2_config(cfg.tokens)
    assert (qwen.hidden_size, qwen.num_key_value_heads, qwen.tie_word_embeddings) == (384, 2, True)
    assert qwen.pad_token_id == cfg.tokens.pad and cfg.tokens.im_end in qwen.eos_token_id


# -- compose_losses -----------------------------------------------------------------------------------
def test_compose_losses_weights_logs_and_skips() -> None:
    a = torch.tensor(2.0, requires_grad=True)
    b = torch.tensor(3.0, requires_grad=True)
    c = torch.tensor(5.0, requires_grad=True)
    total, log = compose_losses({"lm": a, "ground": b, "ross3d_bev": c}, {"lm": 1.0, "ground": 0.5, "ross3d_bev": 0.0})
    assert total is not None and total.item() == pytest.approx(3.5)
    assert log == {"lm": 2.0, "ground": 3.0, "loss": 3.5}
    total.backward()
    assert a.grad.item() == 1.0 and b.grad.item() == 0.5 and c.grad is None


def test_compose_losses_without_terms_and_with_bad_input() -> None:
    assert compose_losses({}, {"lm": 1.0}) == (None, {})
    assert compose_losses({"lm": torch.tensor(1.0)}, {}) == (None, {})
    with pytest.raises(ValueError, match="scalar"):
        compose_losses({"lm": torch.ones(2)}, {"lm": 1.0})
    with pytest.raises(ValueError, match="not finite"):
        compose_losses({"lm": torch.tensor(float("nan"))}, {"lm": 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        compose_losses({"lm": torch.tensor(1.0)}, {"lm": -2.0})


def test_small_preset_fits_the_bundled_demo_budget() -> None:
    """The demo model ships as fp16 safetensors of at most 30 MB (training heads excluded)."""
    from ros3d_agent.model.modeling import Ros3DForConditionalGeneration

    with torch.device("meta"):
        small = Ros3DForConditionalGeneration(get_preset("small"))
    n = small.num_parameters()
    assert 10e6 < n <= 14e6 and 2 * n <= 30e6
    cfg = get_preset("small")
    assert (cfg.vision.image_size, cfg.vision.patch_size, cfg.tokens_per_view) == (224, 16, 56)
    assert cfg.language.tie_word_embeddings and cfg.language.vocab_size == 4096
