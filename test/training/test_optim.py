"""Per-part freezing and learning rates; LoRA adapters (only they and the chosen parts train); merging."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ros3d_agent.model import Ros3DForConditionalGeneration, get_preset, load_checkpoint, save_checkpoint
from training.config import LoraConfig, OptimConfig, PartConfig
from training.optim import apply_lora, build_optimizer, configure_trainable, merge_lora, part_of, trainable_summary

S = 64


def _model(seed: int = 0) -> Ros3DForConditionalGeneration:
    torch.manual_seed(seed)
    return Ros3DForConditionalGeneration(get_preset("tiny", alignment3drs=None), training_heads=True).train()


def _batch(tokenizer) -> dict[str, torch.Tensor]:
    from ros3d_agent.model.tokenizer import build_prompt, collate_prompts

    g = torch.Generator().manual_seed(0)
    u = torch.linspace(0, 4, S)
    xyz = torch.stack(torch.broadcast_tensors(u[None, :], u[:, None], torch.zeros(S, S)), -1)[None, None].repeat(2, 2, 1, 1, 1)
    enc = collate_prompts([build_prompt(tokenizer, task="qa", question="What color is the chair?", answer="red"),
                           build_prompt(tokenizer, task="qa", question="How many mugs?", answer="3")], 0)
    return {**enc, "pixel_values": torch.randn(2, 2, 3, S, S, generator=g), "world_xyz": xyz,
            "world_valid": torch.ones(2, 2, S, S, dtype=torch.bool)}


def _step(model, batch) -> dict[str, torch.Tensor]:
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = build_optimizer(model, OptimConfig(lr=1e-2))
    model(**batch).loss.backward()
    opt.step()
    return before


def test_parts_cover_every_parameter() -> None:
    model = _model()
    parts = {part_of(n) for n, _ in model.named_parameters()}
    assert parts == {"vision_tower", "projector", "llm", "heads"}
    assert part_of("image_newline") == "projector" and part_of("training_heads.ross3d.denoiser.proj_out.weight") == "heads"
    with pytest.raises(ValueError, match="belongs to no model part"):
        part_of("new_module.weight")


def test_freezing_and_learning_rates_per_part(tokenizer) -> None:
    model = _model()
    optim = OptimConfig(lr=1e-3, weight_decay=0.1, parts={"vision_tower": PartConfig(train=False), "projector": PartConfig(lr=5e-4)})
    trainable = configure_trainable(model, optim, LoraConfig())
    assert not trainable["vision_tower"] and trainable["projector"] and trainable["llm"] and trainable["heads"]
    opt = build_optimizer(model, optim)
    lrs = {g["name"]: (g["lr"], g["weight_decay"]) for g in opt.param_groups}
    assert lrs["projector"] == (5e-4, 0.1) and lrs["projector/no_decay"] == (5e-4, 0.0) and lrs["llm"] == (1e-3, 0.1)
    assert not any(n.startswith("vision_tower") for n in lrs)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model(**_batch(tokenizer)).loss.backward()
    opt.step()
    for n, p in model.named_parameters():
        if n.startswith("vision_tower."):
            assert torch.equal(p, before[n]) and p.grad is None, n
    assert not torch.equal(model.mm_projector[0].weight, before["mm_projector.0.weight"])
    assert not torch.equal(model.language_model.model.layers[0].mlp.up_proj.weight,
                           before["language_model.model.layers.0.mlp.up_proj.weight"])


def test_lora_trains_only_adapters_and_chosen_parts(tokenizer, tmp_path: Path) -> None:
    model = _model()
    batch = _batch(tokenizer)
    plain_keys = set(model.state_dict())
    lora = LoraConfig(enabled=True, r=4, alpha=8, dropout=0.0, apply_to=["llm"])
    optim = OptimConfig(lr=1e-2, parts={"vision_tower": PartConfig(train=False), "projector": PartConfig(train=False)})
    adapted = apply_lora(model, lora)
    assert len(adapted) == 2 * 7  # 2 decoder layers × q,k,v,o,gate,up,down
    trainable = configure_trainable(model, optim, lora)
    assert trainable["llm"] and all(".lora_" in n for n in trainable["llm"])
    assert not trainable["vision_tower"] and not trainable["projector"] and trainable["heads"]
    summary = trainable_summary(model)
    assert 0 < summary["llm"]["trainable"] < summary["llm"]["total"] / 5
    before = _step(model, batch)
    for n, p in model.named_parameters():
        changed = not torch.equal(p, before[n])
        if n.startswith("language_model.") and ".lora_" not in n:
            assert not changed, n  # base LLM weights frozen
        if ".lora_B." in n:
            assert changed, n  # lora_B starts at zero and must have moved
    # merged into the base weights: the plain module tree again, same outputs, a loadable checkpoint
    model.eval()
    with torch.no_grad():
        ref = model(**batch).logits
        assert merge_lora(model) == 14
        assert set(model.state_dict()) == plain_keys
        torch.testing.assert_close(model(**batch).logits, ref, rtol=1e-4, atol=1e-4)
    save_checkpoint(model, tokenizer, tmp_path / "ck", include_training_heads=False)
    loaded = load_checkpoint(tmp_path / "ck")
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(**batch).logits, ref, rtol=1e-4, atol=1e-4)


def test_lora_rejects_targets_that_do_not_exist() -> None:
    with pytest.raises(ValueError, match="match no Linear layer"):
        apply_lora(_model(), LoraConfig(enabled=True, apply_to=["llm"], target_modules=["qkv"]))
