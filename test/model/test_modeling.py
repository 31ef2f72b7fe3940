"""The full model on the tiny preset: losses, grounding, <coord>, training heads, caching, generation."""

from __future__ import annotations

import time

import pytest
import torch
from torch.nn import functional as F

from ros3d_agent.model.configuration import SpecialTokenIds
from ros3d_agent.model.grounding import pool_proposal_features
from ros3d_agent.model.modeling import Ros3DForConditionalGeneration, VisualFeatures
from ros3d_agent.model.presets import get_preset
from ros3d_agent.model.tokenizer import IGNORE_INDEX, build_offline_tokenizer, build_prompt, collate_prompts

TOK = SpecialTokenIds()
S = 64  # tiny preset image size


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


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):
    return build_offline_tokenizer(tmp_path_factory.mktemp("tok"))


def frames(B: int = 2, V: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random pixels on a known geometry: view v sees the plane z = v, x/y spanning 0..4 m."""
    g = torch.Generator().manual_seed(seed)
    u = torch.linspace(0.0, 4.0, S)
    plane = torch.stack(torch.broadcast_tensors(u[None, :], u[:, None], torch.zeros(S, S)), dim=-1)
    xyz = plane[None, None].repeat(B, V, 1, 1, 1)
    xyz[..., 2] += torch.arange(V, dtype=torch.float32)[None, :, None, None]
    return {
        "pixel_values": torch.randn(B, V, 3, S, S, generator=g),
        "world_xyz": xyz,
        "world_valid": torch.ones(B, V, S, S, dtype=torch.bool),
    }


def proposals(B: int = 2) -> torch.Tensor:
    boxes = torch.tensor([[0.5, 0.5, 0.0, 1.0, 1.0, 0.5], [3.5, 3.5, 1.0, 1.0, 1.0, 0.5], [2.0, 2.0, 0.0, 1.0, 1.0, 0.5], [1.0, 3.0, 1.0, 1.0, 1.0, 0.5]])
    return boxes[None].repeat(B, 1, 1)


def qa_batch(tokenizer, padding_side: str = "right") -> dict[str, torch.Tensor]:
    prompts = [
        build_prompt(tokenizer, task="qa", question="What color is the chair?", answer="red"),
        build_prompt(tokenizer, task="qa", question="How many mugs are on the table?", answer="3"),
    ]
    return collate_prompts(prompts, TOK.pad, padding_side)  # type: ignore[arg-type]


def ground_batch(tokenizer) -> dict[str, torch.Tensor]:
    prompts = [
        build_prompt(tokenizer, task="ground", question="the red chair next to the table."),
        build_prompt(tokenizer, task="multi_ground", question="all the blue boxes."),
    ]
    return collate_prompts(prompts, TOK.pad)


# -- structure ---------------------------------------------------------------------------------------------
def test_inference_model_has_no_training_head_parameters(model) -> None:
    names = [n for n, _ in model.named_parameters()]
    assert not any(n.startswith("training_heads.") for n in names)
    assert not any("mask_token" in n or "denoiser" in n for n in names)
    assert not model.has_training_heads
    torch.manual_seed(0)
    train = Ros3DForConditionalGeneration(get_preset("tiny"), training_heads=True)
    assert set(train.training_heads) == {"view_masker", "ross3d", "alignment3drs"}
    heads = sum(p.numel() for p in train.training_heads.parameters())
    assert heads > 0 and train.num_parameters() == model.num_parameters() + heads
    assert train.num_parameters(include_training_heads=False) == model.num_parameters()
    # the non-head weights are the same modules with the same names
    assert {n for n, _ in train.named_parameters() if not n.startswith("training_heads.")} == set(names)
    off = Ros3DForConditionalGeneration(get_preset("tiny", ross3d=None, alignment3drs=None), training_heads=True)
    assert not off.has_training_heads


def test_module_names_follow_llava_video(model) -> None:
    keys = set(model.state_dict())
    assert {"image_newline", "mm_projector.0.weight", "mm_projector.2.weight", "language_model.model.embed_tokens.weight",
            "vision_tower.embeddings.patch_embedding.weight", "language_model.model.norm.weight"} <= keys
    assert not any(k.startswith("vision_tower.post_layernorm") or k.startswith("vision_tower.head") for k in keys)
    assert model.language_model.lm_head.weight is model.language_model.model.embed_tokens.weight  # tied (tiny)


# -- LM loss -------------------------------------------------------------------------------------------------
def test_lm_loss_covers_only_the_answer_tokens(model, tokenizer) -> None:
    batch = qa_batch(tokenizer)
    with torch.no_grad():
        out = model(**batch, **frames())
    ids, labels = batch["input_ids"], batch["labels"]
    n_vis = out.attention_mask.shape[1] - ids.shape[1] + 1
    assert n_vis == 2 * 4 * 5  # V · h · (w + 1)
    # independent re-derivation: original position i > <image> moves to i + n_vis - 1
    logit_rows, targets = [], []
    for b in range(ids.shape[0]):
        p = int((ids[b] == TOK.image).nonzero())
        for i in (labels[b] != IGNORE_INDEX).nonzero().flatten().tolist():
            assert i > p
            logit_rows.append(out.logits[b, i + n_vis - 1 - 1])
            targets.append(int(labels[b, i]))
    assert len(targets) == sum(len(tokenizer(a + "<|im_end|>", add_special_tokens=False)["input_ids"]) for a in ("red", "3"))
    expected = F.cross_entropy(torch.stack(logit_rows), torch.tensor(targets))
    torch.testing.assert_close(out.loss_terms["lm"], expected)
    assert out.losses["lm"] == pytest.approx(float(expected)) and out.loss is not None
    # without answer labels there is no LM term at all
    with torch.no_grad():
        silent = model(batch["input_ids"], batch["attention_mask"], torch.full_like(labels, IGNORE_INDEX), **frames())
    assert silent.loss is None and "lm" not in silent.losses


def test_text_only_batches_need_no_frames(model, tokenizer) -> None:
    ids = torch.tensor([tokenizer("hello chair", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        out = model(ids, labels=ids)
    assert out.visual_hidden is None and out.logits.shape[:2] == ids.shape and "lm" in out.losses


# -- grounding -------------------------------------------------------------------------------------------------
def test_grounding_logits_come_from_the_ground_token_state(model, tokenizer) -> None:
    batch = ground_batch(tokenizer)
    views, boxes = frames(), proposals()
    valid = torch.tensor([[True, True, True, False], [True, True, True, True]])
    with torch.no_grad():
        out = model(batch["input_ids"], batch["attention_mask"], pixel_values=views["pixel_values"], world_xyz=views["world_xyz"],
                    world_valid=views["world_valid"], proposals=boxes, proposal_valid=valid)
        assert out.ground_logits.shape == (2, 5)
        assert torch.isneginf(out.ground_logits[0, 3]) and torch.isfinite(out.ground_logits[1]).all()
        # recompute by hand: the LLM state at the <ground> position scores the pooled proposal features
        visual = model.encode_frames(**views)
        spliced = model.prepare_inputs_embeds(batch["input_ids"], batch["attention_mask"], visual=visual)
        hidden = model.language_model.model(inputs_embeds=spliced.inputs_embeds, attention_mask=spliced.attention_mask,
                                            position_ids=spliced.position_ids).last_hidden_state
        g = torch.tensor([int((row == TOK.ground).nonzero()[-1]) for row in spliced.token_ids])
        feats = pool_proposal_features(visual.pre_pool, visual.pre_pool_xyz, visual.pre_pool_valid, boxes, valid, model.position_encoding)
        want = model.grounding_head(hidden[torch.arange(2), g], feats, valid)
    torch.testing.assert_close(out.ground_logits, want)
    # causal: a token after <ground> does not change the scores, one before it does
    after, before = batch["input_ids"].clone(), batch["input_ids"].clone()
    last = batch["attention_mask"][0].sum() - 1
    after[0, last] = 100
    gpos = int((batch["input_ids"][0] == TOK.ground).nonzero()[-1])
    before[0, gpos - 3] = 100
    with torch.no_grad():
        same = model(after, batch["attention_mask"], **views, proposals=boxes, proposal_valid=valid).ground_logits
        diff = model(before, batch["attention_mask"], **views, proposals=boxes, proposal_valid=valid).ground_logits
    torch.testing.assert_close(same, out.ground_logits)
    assert not torch.allclose(diff[0, :3], out.ground_logits[0, :3])


def test_grounding_needs_a_ground_token_and_frames(model, tokenizer) -> None:
    batch = qa_batch(tokenizer)
    with pytest.raises(ValueError, match=r"samples \[0, 1\] have no <ground> token"):
        model(batch["input_ids"], batch["attention_mask"], **frames(), proposals=proposals())
    with pytest.raises(ValueError, match="ground_targets were given without proposals"):
        model(batch["input_ids"], batch["attention_mask"], **frames(), ground_targets=torch.zeros(2, 5, dtype=torch.bool))


# -- <coord> ---------------------------------------------------------------------------------------------------
def test_coord_token_embedding_gets_the_box_centre_code(model, tokenizer) -> None:
    p = build_prompt(tokenizer, task="caption", question="describe the object in this box.", answer="a red mug.")
    ids = torch.tensor([p.input_ids])
    centre = torch.tensor([[1.23, -0.4, 0.8]])
    visual = model.encode_frames(**frames(B=1))
    with torch.no_grad():
        spliced = model.prepare_inputs_embeds(ids, visual=visual, coord_centres=centre)
        plain = model.language_model.get_input_embeddings()(spliced.token_ids.clamp(min=0))
    is_coord = spliced.token_ids == TOK.coord
    assert int(is_coord.sum()) == 1
    delta = spliced.inputs_embeds - plain
    torch.testing.assert_close(delta[is_coord], model.position_encoding(centre), atol=1e-6, rtol=0)
    text = spliced.token_ids >= 0
    assert bool((delta[text & ~is_coord] == 0).all())
    with pytest.raises(ValueError, match="no coord_centres"):
        model.prepare_inputs_embeds(ids, visual=visual)
    with pytest.raises(ValueError, match="2 centres for 1 <coord>"):
        model.prepare_inputs_embeds(ids, visual=visual, coord_centres=centre.repeat(2, 1))


def test_image_placeholder_errors(model) -> None:
    views = frames(B=1)
    with pytest.raises(ValueError, match="exactly one <image>"):
        model(torch.tensor([[1, TOK.image, 7, TOK.image]]), **views)
    with pytest.raises(ValueError, match="exactly one <image>"):
        model(torch.tensor([[1, 7, 8]]), **views)
    with pytest.raises(ValueError, match="no frames/visual features"):
        model(torch.tensor([[1, TOK.image, 8]]))
    with pytest.raises(ValueError, match="need world_xyz"):
        model(torch.tensor([[1, TOK.image, 8]]), pixel_values=views["pixel_values"])


def test_training_targets_on_an_inference_model_fail_loudly(model) -> None:
    ids = torch.tensor([[1, TOK.image, 8, 9]])
    with pytest.raises(ValueError, match="no Ross3D head"):
        model(ids, **frames(B=1), bev_latents=torch.zeros(1, 64, 6, 6))
    with pytest.raises(ValueError, match="no 3DRS head"):
        model(ids, **frames(B=1), teacher_feats=torch.zeros(1, 2, 32, 4, 4))
    with pytest.raises(RuntimeError, match="view masker"):
        model.encode_frames(**frames(B=1), mask_views=True)


# -- training heads -------------------------------------------------------------------------------------------
def _targets(B: int = 2, V: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {
        "view_latents": torch.randn(B, V, 64, 4, 4, generator=g),
        "bev_latents": torch.randn(B, 64, 6, 6, generator=g),
        "bev_valid": (torch.rand(B, 1, 6, 6, generator=g) > 0.2).float(),
        "teacher_feats": torch.randn(B, V, 32, 5, 5, generator=g),
    }


def test_ross3d_schedule_masks_every_fourth_step_and_never_on_grounding(tokenizer) -> None:
    torch.manual_seed(0)
    train = Ros3DForConditionalGeneration(get_preset("tiny"), training_heads=True).train()
    batch, gbatch, views = qa_batch(tokenizer), ground_batch(tokenizer), frames(V=4)
    targets = _targets(V=4)
    seen = {}
    for step in range(5):
        out = train(**batch, **views, global_step=step, **targets)
        seen[step] = set(out.losses)
        assert (out.view_mask is not None) == (step % 4 == 0)
        assert "ross3d_bev" in out.losses and "align3drs" in out.losses
    assert "ross3d_view" in seen[0] and "ross3d_view" in seen[4] and "ross3d_view" not in seen[1]
    out = train(**batch, **views, global_step=0, **targets)
    assert int(out.view_mask.sum(dim=1).max()) == 1  # 25 % of 4 views
    # the masked view is the mask token plus its own position code
    visual = train.encode_frames(**views, mask_views=True, generator=torch.Generator().manual_seed(3))
    b, v = (int(i) for i in visual.view_mask.nonzero()[0])
    code = train.position_code(visual.token_xyz[b, v], visual.token_valid[b, v])
    torch.testing.assert_close(visual.tokens[b, v], train.training_heads["view_masker"].mask_token.expand_as(code) + code)
    # grounding batches: no Ross3D at all, 3DRS still on
    g = train(gbatch["input_ids"], gbatch["attention_mask"], gbatch["labels"], **views, global_step=0, proposals=proposals(),
              ground_targets=torch.tensor([[0, 1, 0, 0, 0], [0, 0, 0, 0, 1]], dtype=torch.bool), **targets)
    assert g.view_mask is None and {"ground", "align3drs"} <= set(g.losses) and not any(k.startswith("ross3d") for k in g.losses)
    # evaluation mode never masks
    assert train.eval()(**batch, **views, global_step=0, **targets).view_mask is None


def test_overfitting_one_batch_drives_every_loss_term_down(tokenizer) -> None:
    torch.manual_seed(0)
    train = Ros3DForConditionalGeneration(get_preset("tiny"), training_heads=True).train()
    opt = torch.optim.AdamW(train.parameters(), lr=3e-3, weight_decay=0.0)
    text, gb, views, targets = qa_batch(tokenizer), ground_batch(tokenizer), frames(), _targets()
    gt = torch.tensor([[0, 1, 0, 0, 0], [0, 0, 1, 1, 0]], dtype=torch.bool)
    history: dict[str, list[float]] = {}
    for step in range(28):
        gen = torch.Generator().manual_seed(0)  # same masks, timesteps and noise every step: a fixed objective
        a = train(**text, **views, global_step=step, generator=gen, **targets)
        b = train(**gb, **views, global_step=step, proposals=proposals(), ground_targets=gt, teacher_feats=targets["teacher_feats"], generator=gen)
        opt.zero_grad()
        (a.loss + b.loss).backward()
        opt.step()
        for key, value in list(a.losses.items()) + [("ground", b.losses["ground"]), ("lm_ground", b.losses["lm"])]:
            history.setdefault(key, []).append(value)
    assert set(history) == {"lm", "lm_ground", "ground", "ross3d_view", "ross3d_bev", "align3drs", "loss"}
    assert len(history["ross3d_view"]) == 7  # steps 0, 4, ..., 24
    for key, ratio in (("lm", 0.5), ("lm_ground", 0.5), ("ground", 0.2), ("align3drs", 0.6), ("ross3d_bev", 0.8), ("ross3d_view", 0.9)):
        first, last = history[key][0], history[key][-1]
        assert last < ratio * first, f"{key}: {first:.4f} -> {last:.4f}"


# -- caching, generation, checkpointing, speed -----------------------------------------------------------
def test_cached_per_view_features_give_the_same_answer(model, tokenizer) -> None:
    batch = qa_batch(tokenizer)
    views = frames(B=2, V=3)
    with torch.no_grad():
        full = model(**batch, **views)
        parts = [model.encode_frames(**{k: v[:, i : i + 1] for k, v in views.items()}) for i in range(3)]
        cached = model(**batch, visual=VisualFeatures.concat_views(parts))
    torch.testing.assert_close(cached.logits, full.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cached.visual_hidden, full.visual_hidden, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="different resolutions"):
        small = {"pixel_values": torch.zeros(2, 1, 3, 32, 32), "world_xyz": torch.zeros(2, 1, 32, 32, 3), "world_valid": torch.ones(2, 1, 32, 32, dtype=torch.bool)}
        VisualFeatures.concat_views([parts[0], model.encode_frames(**small)])


def test_generate_is_greedy_and_batch_padding_does_not_change_answers(model, tokenizer) -> None:
    views = frames(B=2)
    prompts = [build_prompt(tokenizer, task="qa", question=q) for q in ("What color is the chair?", "Is there a lamp on the big table in the room?")]
    batch = collate_prompts(prompts, TOK.pad, padding_side="left")
    out = model.generate(batch["input_ids"], batch["attention_mask"], **views, max_new_tokens=4, min_new_tokens=4)
    assert out.shape == (2, 4)
    for b, p in enumerate(prompts):
        one = {k: v[b : b + 1] for k, v in views.items()}
        ids = torch.tensor([p.input_ids])
        single = model.generate(ids, **one, max_new_tokens=4, min_new_tokens=4)
        assert single[0].tolist() == out[b].tolist()
        # manual greedy decoding with full forwards (no KV cache)
        seq = ids
        for _ in range(4):
            with torch.no_grad():
                logits = model(seq, **one).logits[0, -1]
            logits[[TOK.im_end, TOK.endoftext]] = -float("inf")  # min_new_tokens suppresses EOS
            seq = torch.cat([seq, logits.argmax().view(1, 1)], dim=1)
        assert seq[0, ids.shape[1] :].tolist() == single[0].tolist()


def test_gradient_checkpointing_gives_the_same_gradients(tokenizer) -> None:
    torch.manual_seed(0)
    m = Ros3DForConditionalGeneration(get_preset("tiny")).train()
    batch, views = qa_batch(tokenizer), frames()

    def grads() -> list[torch.Tensor]:
        m.zero_grad()
        m(**batch, **views).loss.backward()
        return [p.grad.clone() for p in m.parameters() if p.grad is not None]

    plain = grads()
    m.gradient_checkpointing_enable()
    assert m.language_model.model.gradient_checkpointing and m.vision_tower.encoder.gradient_checkpointing
    ckpt = grads()
    m.gradient_checkpointing_disable()
    assert not m.language_model.model.gradient_checkpointing
    assert len(plain) == len(ckpt)
    for a, b in zip(plain, ckpt):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_tiny_forward_is_well_under_a_second(model, tokenizer) -> None:
    batch = qa_batch(tokenizer)
    views = frames(B=2, V=8)
    times = []
    with torch.no_grad():
        for _ in range(4):
            t = time.perf_counter()
            model(**batch, **views)
            times.append(time.perf_counter() - t)
    assert min(times) < 0.25, times


def test_logits_to_keep_returns_the_last_positions(model, tokenizer) -> None:
    batch = qa_batch(tokenizer, padding_side="left")
    views = frames()
    with torch.no_grad():
        full = model(batch["input_ids"], batch["attention_mask"], **views)
        last = model(batch["input_ids"], batch["attention_mask"], **views, logits_to_keep=1)
    assert last.logits.shape == (2, 1, full.logits.shape[-1])
    torch.testing.assert_close(last.logits[:, 0], full.logits[:, -1])
    with pytest.raises(ValueError, match="cannot be combined with labels"):
        model(**batch, **views, logits_to_keep=1)


def test_text_only_ablation_sees_neither_pixels_nor_geometry() -> None:
    """visual_input=False: two different scenes give the very same visual tokens and proposal features,
    while the normal model tells them apart (so the check is not vacuous)."""
    torch.manual_seed(0)
    seeing = Ros3DForConditionalGeneration(get_preset("tiny")).eval()
    blind = Ros3DForConditionalGeneration(get_preset("tiny", visual_input=False)).eval()
    blind.load_state_dict(seeing.state_dict())
    a, b = frames(seed=1), frames(seed=2)
    b["world_xyz"] = b["world_xyz"] + 1.5
    with torch.no_grad():
        for m, same in ((seeing, False), (blind, True)):
            va, vb = m.encode_frames(**a), m.encode_frames(**b)
            assert torch.equal(va.tokens, vb.tokens) is same
            assert bool(va.pre_pool_valid.any()) is not same  # blind: no patch has a 3D position
    from ros3d_agent.model.configuration import ConfigError, Ros3DModelConfig

    cfg = get_preset("tiny", visual_input=False)
    assert Ros3DModelConfig.from_dict(cfg.to_dict()).visual_input is False
    with pytest.raises(ConfigError, match="visual_input"):
        Ros3DModelConfig.from_dict({**cfg.to_dict(), "visual_input": "no"})
