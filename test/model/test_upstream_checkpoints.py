"""Upstream (LLaVA-Video-7B-Qwen2 / Video-3D-LLM) checkpoints load into our model, tensor for tensor.

The checkpoints are fabricated here in exactly the upstream key and file layout (sharded safetensors +
index json + config.json with LLaVA's fields + a Qwen2-style tokenizer without our tokens) at tiny
widths. The proof that they loaded is a reference computation that uses the fabricated tensors
directly through transformers' SiglipVisionModel and Qwen2ForCausalLM (and plain torch for the
projector and the Video-3D-LLM grounding head), compared with our model's outputs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from ros3d_agent.model.checkpoint import load_checkpoint, save_checkpoint
from ros3d_agent.model.grounding import pool_proposal_features
from ros3d_agent.model.position_encoding import SinCos3DPositionEncoding, patch_xyz_from_world
from ros3d_agent.model.tokenizer import CHAT_TEMPLATE, COORD_TOKEN, GROUND_TOKEN, IMAGE_TOKEN, build_prompt
from ros3d_agent.model.upstream_checkpoints import (
    VISION_PREFIX,
    UpstreamCheckpointError,
    is_upstream_checkpoint,
    load_upstream_checkpoint,
    map_upstream_key,
    map_upstream_keys,
)

# Tiny widths in the 7B model's shape: SigLIP (3 layers; LLaVA keeps 2), mlp2x_gelu, Qwen2 with GQA.
VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2, image_size=64, patch_size=8,
              layer_norm_eps=1e-6, hidden_act="gelu_pytorch_tanh")
LLM = dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
           max_position_embeddings=2048, rope_theta=10000.0, rms_norm_eps=1e-6)
S = VISION["image_size"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------------------------------------
# Fabrication
# --------------------------------------------------------------------------------------------------
def _qwen_style_tokenizer(out: Path, extra: tuple[str, ...] = ()):
    """A byte-level BPE whose chat specials come after the regular vocabulary, as in Qwen2's; no
    <image>/<ground>/<coord> unless listed in ``extra`` (Video-3D-LLM adds <ground> and <coord>)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    corpus = ["what color is the chair next to the table?", "find the red mug on the desk.", "You are a helpful assistant.",
              "The video captures 3D spatial information of a scene.", "describe the object in detail."] * 4
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                        show_progress=False))
    bpe.add_special_tokens(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    if extra:
        tok.add_tokens(list(extra), special_tokens=True)
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(str(out))
    return tok


def _perturb(state: dict[str, torch.Tensor], g: torch.Generator) -> dict[str, torch.Tensor]:
    """Make every tensor distinct (norm weights are all ones at init: a swap would go unnoticed)."""
    return {k: (v + 0.05 * torch.randn(v.shape, generator=g)).contiguous() for k, v in state.items()}


def fabricate(out: Path, *, video3d: bool, pad_vocab: int, shards: int = 3, extra_keys: dict[str, torch.Tensor] | None = None,
              vision_tower: str | None = None) -> dict[str, torch.Tensor]:
    """Write an upstream-layout checkpoint to ``out``; returns its tensors by upstream key."""
    from safetensors.torch import save_file
    from transformers import Qwen2Config, Qwen2ForCausalLM, SiglipVisionConfig, SiglipVisionModel

    out.mkdir(parents=True, exist_ok=True)
    tok = _qwen_style_tokenizer(out, (GROUND_TOKEN, COORD_TOKEN) if video3d else ())
    vocab = len(tok) + pad_vocab
    g = torch.Generator().manual_seed(7)
    torch.manual_seed(11)

    # the SigLIP tower as LLaVA saves it: last layer deleted, head replaced by Identity, post_layernorm kept
    tower_dir = out / "siglip_tower"
    tower_dir.mkdir()
    SiglipVisionConfig(**VISION).save_pretrained(str(tower_dir))
    kept = SiglipVisionModel(SiglipVisionConfig(**{**VISION, "num_hidden_layers": VISION["num_hidden_layers"] - 1}))
    tensors = {VISION_PREFIX + k: v for k, v in kept.state_dict().items() if not k.startswith("head.")}
    qwen = Qwen2ForCausalLM(Qwen2Config(vocab_size=vocab, tie_word_embeddings=False, **LLM))
    tensors.update(qwen.state_dict())  # model.embed_tokens / model.layers.i / model.norm / lm_head: already LLaVA's names
    D, C = LLM["hidden_size"], VISION["hidden_size"]
    tensors.update({"model.mm_projector.0.weight": torch.zeros(D, C), "model.mm_projector.0.bias": torch.zeros(D),
                    "model.mm_projector.2.weight": torch.zeros(D, D), "model.mm_projector.2.bias": torch.zeros(D),
                    "model.image_newline": torch.zeros(D)})
    if video3d:
        for name in ("ground_head_query", "ground_head_obj"):
            head = nn.Sequential(nn.Linear(D, D), nn.ReLU(), nn.LayerNorm(D), nn.Linear(D, D))
            tensors.update({f"{name}.{k}": v for k, v in head.state_dict().items()})
        tensors["ground_head_zero_target"] = torch.zeros(D)
    tensors = _perturb(tensors, g)
    tensors.update(extra_keys or {})

    keys = sorted(tensors)
    per = math.ceil(len(keys) / shards)
    weight_map = {}
    for s in range(shards):
        name = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        chunk = {k: tensors[k] for k in keys[s * per:(s + 1) * per]}
        save_file(chunk, str(out / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in chunk})
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}))

    config = {
        "architectures": ["LlavaQwenForCausalLM"], "model_type": "llava_qwen", "hidden_act": "silu", "vocab_size": vocab,
        "tie_word_embeddings": False, "rope_scaling": None, "use_sliding_window": False, "torch_dtype": "bfloat16", **LLM,
        "mm_vision_tower": vision_tower or str(tower_dir), "mm_vision_select_layer": -2, "mm_vision_select_feature": "patch",
        "mm_projector_type": "mlp2x_gelu", "mm_hidden_size": C, "mm_spatial_pool_mode": "bilinear", "mm_spatial_pool_stride": 2,
        "mm_newline_position": "grid", "mm_patch_merge_type": "spatial_unpad", "image_aspect_ratio": "anyres_max_9",
        "image_grid_pinpoints": [[384, 384], [384, 768]], "add_faster_video": False, "use_mm_proj": True,
    }
    if video3d:
        config.update({"ground_head_type": "infonce", "ground_head_temperature": 0.07, "world_position_embedding_type": "avg-discrete-sin3d",
                       "voxel_size": 0.1, "min_xyz_range": [-15, -15, -5], "max_xyz_range": [15, 15, 5],
                       "ground_token_ids": tok.encode(GROUND_TOKEN, add_special_tokens=False),
                       "coord_token_ids": tok.encode(COORD_TOKEN, add_special_tokens=False)})
    (out / "config.json").write_text(json.dumps(config, indent=1))
    return tensors


@pytest.fixture(scope="module")
def v3d(tmp_path_factory: pytest.TempPathFactory):
    """A Video-3D-LLM checkpoint whose embedding table has spare rows (as Qwen2's 152064 does)."""
    path = tmp_path_factory.mktemp("video3dllm")
    tensors = fabricate(path, video3d=True, pad_vocab=8)
    return path, tensors, load_upstream_checkpoint(path)


@pytest.fixture(scope="module")
def llava(tmp_path_factory: pytest.TempPathFactory):
    """A LLaVA-Video checkpoint whose table is exactly the tokenizer: adding our 3 tokens grows it."""
    path = tmp_path_factory.mktemp("llavavideo")
    tensors = fabricate(path, video3d=False, pad_vocab=0, shards=2)
    return path, tensors, load_upstream_checkpoint(path)


# --------------------------------------------------------------------------------------------------
# Reference computation straight from the fabricated tensors
# --------------------------------------------------------------------------------------------------
def _frames(V: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    u = torch.linspace(0.0, 4.0, S)
    x, y = torch.meshgrid(u, u, indexing="xy")
    xyz = torch.stack([torch.stack([x, y, torch.full_like(x, 0.5 + v)], -1) for v in range(V)])[None]
    valid = torch.ones(1, V, S, S, dtype=torch.bool)
    valid[0, 0, :10, :20] = False  # a hole without depth
    return {"pixel_values": torch.randn(1, V, 3, S, S, generator=g), "world_xyz": xyz, "world_valid": valid}


def _reference_visual(tensors: dict[str, torch.Tensor], frames: dict[str, torch.Tensor], D: int):
    from transformers import SiglipVisionConfig, SiglipVisionModel

    tower = SiglipVisionModel(SiglipVisionConfig(**{**VISION, "num_hidden_layers": VISION["num_hidden_layers"] - 1}))
    missing, unexpected = tower.load_state_dict({k[len(VISION_PREFIX):]: v for k, v in tensors.items() if k.startswith(VISION_PREFIX)},
                                                strict=False)
    assert not unexpected and all(k.startswith("head.") for k in missing)
    tower.eval()
    px = frames["pixel_values"][0]
    V = px.shape[0]
    with torch.no_grad():
        feats = tower(pixel_values=px, output_hidden_states=True).hidden_states[-1]  # LLaVA: last kept layer, pre-norm
        x = F.linear(feats, tensors["model.mm_projector.0.weight"], tensors["model.mm_projector.0.bias"])
        x = F.linear(F.gelu(x), tensors["model.mm_projector.2.weight"], tensors["model.mm_projector.2.bias"])
    g = S // VISION["patch_size"]
    pre_pool = x.reshape(V, g, g, D)
    pooled = F.interpolate(pre_pool.permute(0, 3, 1, 2), size=(math.ceil(g / 2),) * 2, mode="bilinear", align_corners=False).permute(0, 2, 3, 1)
    h = pooled.shape[1]
    pe = SinCos3DPositionEncoding(D)
    tok_xyz, tok_valid = patch_xyz_from_world(frames["world_xyz"], frames["world_valid"], (h, h))
    tokens = pooled + pe(tok_xyz[0]) * tok_valid[0, ..., None]
    rows = torch.cat([tokens, tensors["model.image_newline"].expand(V, h, 1, D)], dim=2)  # newline after each row
    pre_xyz, pre_valid = patch_xyz_from_world(frames["world_xyz"], frames["world_valid"], (g, g))
    return rows.reshape(V * h * (h + 1), D), pre_pool[None], pre_xyz, pre_valid, pe


def _reference_qwen(tensors: dict[str, torch.Tensor]):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    vocab = tensors["model.embed_tokens.weight"].shape[0]
    qwen = Qwen2ForCausalLM(Qwen2Config(vocab_size=vocab, tie_word_embeddings=False, **LLM))
    qwen.load_state_dict({k: v for k, v in tensors.items() if k.startswith(("model.embed_tokens", "model.layers", "model.norm", "lm_head"))})
    return qwen.eval()


def _prompt_ids(tokenizer, task: str = "qa", question: str = "what color is the chair?") -> torch.Tensor:
    return torch.tensor([build_prompt(tokenizer, task=task, question=question).input_ids])


def _spliced_embeds(qwen, ids: torch.Tensor, image_id: int, visual_seq: torch.Tensor) -> torch.Tensor:
    p = int((ids[0] == image_id).nonzero())  # (the <image> id itself may be beyond the upstream table)
    embed = qwen.model.embed_tokens
    return torch.cat([embed(ids[:, :p]), visual_seq[None], embed(ids[:, p + 1:])], dim=1)


# --------------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------------
def test_key_mapping_rules() -> None:
    cases = {
        VISION_PREFIX + "embeddings.patch_embedding.weight": ("vision_tower.embeddings.patch_embedding.weight", None),
        VISION_PREFIX + "encoder.layers.25.mlp.fc1.weight": ("vision_tower.encoder.layers.25.mlp.fc1.weight", None),
        "model.mm_projector.2.bias": ("mm_projector.2.bias", None),
        "model.image_newline": ("image_newline", None),
        "model.layers.3.self_attn.q_proj.bias": ("language_model.model.layers.3.self_attn.q_proj.bias", None),
        "model.embed_tokens.weight": ("language_model.model.embed_tokens.weight", None),
        "lm_head.weight": ("language_model.lm_head.weight", None),
        "ground_head_obj.2.weight": ("grounding_head.object_head.2.weight", None),
        "ground_head_query.3.bias": ("grounding_head.query_head.3.bias", None),
    }
    for key, expected in cases.items():
        assert map_upstream_key(key, vision_layers_used=26) == expected, key
    dropped = [VISION_PREFIX + "post_layernorm.weight", VISION_PREFIX + "head.probe", VISION_PREFIX + "encoder.layers.26.mlp.fc1.weight",
               "model.layers.0.self_attn.rotary_emb.inv_freq", "model.faster_token"]
    for key in dropped:
        ours, reason = map_upstream_key(key, vision_layers_used=26)
        assert ours is None and reason, key
    assert map_upstream_key("lm_head.weight", 26, tied_embeddings=True)[0] is None
    m = map_upstream_keys(["model.vision_resampler.w", "ground_head_zero_target", "model.norm.weight"], 26)
    assert m.unknown == ["model.vision_resampler.w"] and m.zero_target == "ground_head_zero_target"
    assert m.mapped == {"model.norm.weight": "language_model.model.norm.weight"}


def test_video3dllm_config_and_placement(v3d) -> None:
    path, tensors, up = v3d
    assert is_upstream_checkpoint(path)
    cfg, model, report = up.config, up.model, up.report
    assert report.kind == "video-3d-llm" and report.added_tokens == (IMAGE_TOKEN,) and report.resized_vocab is None
    assert cfg.vision.num_hidden_layers == 3 and cfg.vision.layers_used == 2 and cfg.vision.select_layer == -2
    assert (cfg.vision.hidden_size, cfg.vision.image_size, cfg.vision.patch_size) == (32, 64, 8)
    assert cfg.language.vocab_size == tensors["model.embed_tokens.weight"].shape[0] and not cfg.language.tie_word_embeddings
    assert cfg.grounding.temperature == 0.07 and cfg.position_encoding.voxel_size == 0.1
    # our special tokens: <ground>/<coord> kept where Video-3D-LLM trained them, <image> appended
    tok = up.tokenizer
    assert cfg.tokens.ground == tok.convert_tokens_to_ids(GROUND_TOKEN) and cfg.tokens.image == len(tok) - 1
    # tensors land where expected, bit for bit
    assert torch.equal(model.mm_projector[0].weight, tensors["model.mm_projector.0.weight"])
    assert torch.equal(model.mm_projector[2].bias, tensors["model.mm_projector.2.bias"])
    assert torch.equal(model.image_newline, tensors["model.image_newline"])
    assert torch.equal(model.vision_tower.encoder.layers[1].layer_norm2.weight, tensors[VISION_PREFIX + "encoder.layers.1.layer_norm2.weight"])
    assert torch.equal(model.language_model.lm_head.weight, tensors["lm_head.weight"])
    assert torch.equal(model.grounding_head.query_head[2].bias, tensors["ground_head_query.2.bias"])
    assert report.initialised == [] and any("post_layernorm" in k for k in report.ignored)
    assert report.loaded == len(tensors) - len(report.ignored)


def test_video3dllm_logits_and_grounding_match_reference(v3d) -> None:
    path, tensors, up = v3d
    model, tok, cfg = up.model, up.tokenizer, up.config
    D = cfg.language.hidden_size
    frames = _frames()
    visual_seq, pre_pool, pre_xyz, pre_valid, pe = _reference_visual(tensors, frames, D)
    qwen = _reference_qwen(tensors)
    ids = _prompt_ids(tok)
    with torch.no_grad():
        ours = model(ids, **frames).logits
        ref = qwen(inputs_embeds=_spliced_embeds(qwen, ids, cfg.tokens.image, visual_seq)).logits
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)

    # grounding: Video-3D-LLM appends its zero target BEFORE the object head; scores must agree
    ids = _prompt_ids(tok, "ground", "the red mug on the desk")
    boxes = torch.tensor([[[1.0, 1.0, 0.5, 1.0, 1.0, 0.4], [3.0, 2.0, 1.5, 1.0, 2.0, 0.4], [9.0, 9.0, 9.0, 0.5, 0.5, 0.5]]])
    valid = torch.ones(1, 3, dtype=torch.bool)
    with torch.no_grad():
        ours = model(ids, **frames, proposals=boxes, logits_to_keep=1).ground_logits
        hidden = qwen.model(inputs_embeds=_spliced_embeds(qwen, ids, cfg.tokens.image, visual_seq)).last_hidden_state
        n_vis = visual_seq.shape[0] - 1
        g_pos = int((ids[0] == cfg.tokens.ground).nonzero()[-1]) + n_vis
        heads = {}
        for name in ("ground_head_query", "ground_head_obj"):
            heads[name] = nn.Sequential(nn.Linear(D, D), nn.ReLU(), nn.LayerNorm(D), nn.Linear(D, D))
            heads[name].load_state_dict({k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")})
        objs = pool_proposal_features(pre_pool, pre_xyz, pre_valid, boxes, valid, pe)[0]
        objs = torch.cat([objs, tensors["ground_head_zero_target"][None]])
        q = F.normalize(heads["ground_head_query"](hidden[0, g_pos]), dim=-1)
        ref = (F.normalize(heads["ground_head_obj"](objs), dim=-1) @ q) / 0.07
    torch.testing.assert_close(ours[0], ref, atol=1e-4, rtol=1e-4)


def test_llava_video_resizes_embeddings_and_reports_untrained_grounding(llava) -> None:
    path, tensors, up = llava
    model, tok, cfg, report = up.model, up.tokenizer, up.config, up.report
    vocab_up = tensors["model.embed_tokens.weight"].shape[0]
    assert report.kind == "llava-video" and set(report.added_tokens) == {IMAGE_TOKEN, GROUND_TOKEN, COORD_TOKEN}
    assert report.resized_vocab == (vocab_up, vocab_up + 3) and cfg.language.vocab_size == len(tok) == vocab_up + 3
    emb = model.language_model.model.embed_tokens.weight
    assert torch.equal(emb[:vocab_up], tensors["model.embed_tokens.weight"])
    torch.testing.assert_close(emb[vocab_up:], tensors["model.embed_tokens.weight"].mean(0).expand(3, -1))
    assert report.initialised and all(k.startswith("grounding_head.") for k in report.initialised)
    assert any("untrained" in n for n in report.notes) and "freshly initialised" in report.summary()

    frames = _frames(V=1, seed=3)
    visual_seq, *_ = _reference_visual(tensors, frames, cfg.language.hidden_size)
    qwen = _reference_qwen(tensors)
    ids = _prompt_ids(tok, "qa", "describe the object in detail.")
    with torch.no_grad():
        ours = model(ids, **frames).logits
        ref = qwen(inputs_embeds=_spliced_embeds(qwen, ids, cfg.tokens.image, visual_seq)).logits
    torch.testing.assert_close(ours[..., :vocab_up], ref, atol=1e-5, rtol=1e-4)


def test_mapped_model_round_trips_through_our_format(v3d, tmp_path: Path) -> None:
    _, _, up = v3d
    save_checkpoint(up.model, up.tokenizer, tmp_path)
    back = load_checkpoint(tmp_path)
    assert back.config == up.config
    sa, sb = up.model.state_dict(), back.model.state_dict()
    assert set(sa) == set(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
    ids = _prompt_ids(back.tokenizer)
    frames = _frames(V=1)
    with torch.no_grad():
        assert torch.equal(up.model(ids, **frames).logits, back.model(ids, **frames).logits)


def test_unknown_keys_are_errors_unless_not_strict(tmp_path: Path) -> None:
    fabricate(tmp_path, video3d=True, pad_vocab=8, shards=1, extra_keys={"model.vision_resampler.proj.weight": torch.zeros(2, 2)})
    with pytest.raises(UpstreamCheckpointError, match=r"model\.vision_resampler\.proj\.weight.*strict=False"):
        load_upstream_checkpoint(tmp_path)
    up = load_upstream_checkpoint(tmp_path, strict=False)
    assert up.report.ignored["model.vision_resampler.proj.weight"].startswith("unknown")


def test_clear_errors(tmp_path: Path) -> None:
    # the hub name of the real tower: its sizes (so400m) do not fit these weights, and the error says so
    fabricate(tmp_path / "a", video3d=False, pad_vocab=0, shards=1, vision_tower="google/siglip-so400m-patch14-384")
    with pytest.raises(UpstreamCheckpointError, match="do not match the weights"):
        load_upstream_checkpoint(tmp_path / "a")
    # a missing tensor (an incomplete download)
    path = tmp_path / "b"
    fabricate(path, video3d=True, pad_vocab=8, shards=2)
    index = json.loads((path / "model.safetensors.index.json").read_text())
    (path / index["weight_map"]["model.norm.weight"]).unlink()
    with pytest.raises(UpstreamCheckpointError, match="missing"):
        load_upstream_checkpoint(path)
    # pickled weights only: refused, never unpickled
    pkl = tmp_path / "c"
    pkl.mkdir()
    (pkl / "config.json").write_text(json.dumps({"mm_projector_type": "mlp2x_gelu", "mm_vision_tower": "x"}))
    (pkl / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(UpstreamCheckpointError, match="pickled"):
        load_upstream_checkpoint(pkl)
    with pytest.raises(UpstreamCheckpointError, match="not found"):
        load_upstream_checkpoint(tmp_path / "nope")


def test_engine_loads_an_upstream_directory(v3d) -> None:
    import numpy as np

    from ros3d_agent.inference.engine import EngineConfig, SceneEngine
    from ros3d_agent.scene.types import Box3D, Frame

    path, _, _ = v3d
    engine = SceneEngine(EngineConfig(checkpoint=str(path), max_new_tokens=4))
    info = engine.info
    assert info["source"] == "upstream" and info["upstream_kind"] == "video-3d-llm" and info["random_weights"] is False
    assert info["untrained_parameters"] == 0
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    K = np.array([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]])
    kf = engine.encode_keyframe(Frame(rgb=rgb, depth=np.full((48, 64), 2.0, np.float32), K=K, T_world_cam=np.eye(4), stamp=5))
    boxes = [Box3D.from_list([0, 0, 2, 1, 1, 0.2]), Box3D.from_list([5, 5, 1, 1, 1, 1])]
    ans = engine.answer("the red mug", "ground", [kf], boxes)
    assert ans.success and len(ans.objects) == 1 and ans.keyframe_stamps == [5]
    assert engine.answer("what color is the chair?", "qa", [kf]).success
