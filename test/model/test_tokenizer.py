"""Offline tokenizer, loading local tokenizers with our special tokens, prompts with label masks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ros3d_agent.model.configuration import SpecialTokenIds
from ros3d_agent.model.tokenizer import (
    COORD_TOKEN,
    GROUND_TOKEN,
    IGNORE_INDEX,
    IM_END,
    IMAGE_TOKEN,
    SPATIAL_INSTRUCTION,
    build_offline_tokenizer,
    build_prompt,
    collate_prompts,
    default_corpus,
    load_tokenizer,
    special_token_ids,
)


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tok")
    build_offline_tokenizer(out, vocab_size=4096)
    return out


@pytest.fixture(scope="module")
def tokenizer(tok_dir: Path):
    return load_tokenizer(tok_dir).tokenizer


def test_offline_tokenizer_is_a_local_hf_tokenizer(tok_dir: Path) -> None:
    from transformers import AutoTokenizer

    assert {p.name for p in tok_dir.iterdir()} >= {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja"}
    tok = AutoTokenizer.from_pretrained(str(tok_dir), local_files_only=True)
    assert 1000 < len(tok) <= 4096
    # the presets' default ids are the offline tokenizer's ids
    assert special_token_ids(tok) == SpecialTokenIds()
    assert tok.eos_token == IM_END and tok.pad_token == "<|endoftext|>"


def test_offline_tokenizer_is_deterministic(tok_dir: Path, tmp_path: Path) -> None:
    build_offline_tokenizer(tmp_path, vocab_size=4096)
    assert json.loads((tmp_path / "tokenizer.json").read_text()) == json.loads((tok_dir / "tokenizer.json").read_text())


def test_vocab_size_bounds_the_tokenizer(tmp_path: Path) -> None:
    tok = build_offline_tokenizer(tmp_path, vocab_size=400)
    assert len(tok) <= 400
    with pytest.raises(ValueError, match="vocab_size must be >= 262"):
        build_offline_tokenizer(tmp_path / "x", vocab_size=100)


def test_template_words_are_single_tokens_and_any_text_round_trips(tokenizer) -> None:
    for word in (" chair", " table", " color", " closest", " bookshelf", " trash", " how", " many"):
        assert len(tokenizer(word, add_special_tokens=False)["input_ids"]) == 1, word
    # digits are split one per token, so every number uses the same ten symbols
    assert len(tokenizer("2024", add_special_tokens=False)["input_ids"]) == 4
    text = "Zürich → 3.14 m, émoji 🤖 <image> and <ground>!"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert ids.count(tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)) == 1


def test_corpus_covers_the_annotation_vocabulary() -> None:
    corpus = " ".join(default_corpus())
    for word in ("chair", "trash can", "beige", "farthest", "in front of me", "how many", SPATIAL_INSTRUCTION):
        assert word in corpus


def _qwen_like_tokenizer_dir(path: Path) -> Path:
    """A chat tokenizer that has Qwen2's three specials but not ours (as a real Qwen2 dir)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(["hello world, where is the chair?"] * 4, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>").save_pretrained(str(path))
    return path


def test_load_tokenizer_adds_missing_special_tokens_and_reports_resize(tmp_path: Path) -> None:
    d = _qwen_like_tokenizer_dir(tmp_path / "qwen")
    loaded = load_tokenizer(d)
    assert loaded.added_tokens == (IMAGE_TOKEN, GROUND_TOKEN, COORD_TOKEN)
    assert loaded.needs_resize  # no table size given: adding tokens may need a resize
    n = len(loaded.tokenizer)
    ids = loaded.token_ids
    assert (ids.image, ids.ground, ids.coord) == (n - 3, n - 2, n - 1)
    assert ids.im_end == loaded.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert loaded.tokenizer.chat_template  # ours was set since the directory had none
    assert not load_tokenizer(d, embedding_rows=n).needs_resize
    assert load_tokenizer(d, embedding_rows=n - 1).needs_resize
    # the offline tokenizer already has everything
    full = load_tokenizer(_build(tmp_path / "full"))
    assert full.added_tokens == () and not full.needs_resize


def _build(path: Path) -> Path:
    build_offline_tokenizer(path, vocab_size=300, corpus=["a small corpus for a test"])
    return path


def test_load_tokenizer_refuses_remote_code_and_hub_names(tmp_path: Path) -> None:
    d = _build(tmp_path / "t")
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    cfg["auto_map"] = {"AutoTokenizer": ["evil.Tok", None]}
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="remote code"):
        load_tokenizer(d)
    with pytest.raises(FileNotFoundError, match="only local directories"):
        load_tokenizer("Qwen/Qwen2-7B-Instruct")


def test_special_token_ids_requires_our_tokens(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    d = _qwen_like_tokenizer_dir(tmp_path / "q")
    with pytest.raises(ValueError, match="lacks special tokens"):
        special_token_ids(AutoTokenizer.from_pretrained(str(d)))


# -- prompts -------------------------------------------------------------------------------------------
def test_qa_prompt_masks_everything_but_the_answer(tokenizer) -> None:
    p = build_prompt(tokenizer, task="qa", question="What color is the chair?", answer="red")
    assert len(p.input_ids) == len(p.labels)
    labelled = [t for t, l in zip(p.input_ids, p.labels) if l != IGNORE_INDEX]
    assert tokenizer.decode(labelled) == "red" + IM_END
    # the labelled tokens are exactly the tail of the sequence, copied from input_ids
    k = len(labelled)
    assert p.labels[-k:] == p.input_ids[-k:] and all(l == IGNORE_INDEX for l in p.labels[:-k])
    text = tokenizer.decode(p.input_ids)
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<image>\n")
    assert SPATIAL_INSTRUCTION in text and text.endswith("<|im_start|>assistant\nred<|im_end|>")
    assert p.input_ids.count(SpecialTokenIds().image) == 1


def test_inference_prompt_ends_with_the_open_assistant_turn(tokenizer) -> None:
    p = build_prompt(tokenizer, task="qa", question="How many chairs are there?", spatial_instruction=False)
    assert all(l == IGNORE_INDEX for l in p.labels)
    text = tokenizer.decode(p.input_ids)
    assert text.endswith("How many chairs are there?<|im_end|>\n<|im_start|>assistant\n") and SPATIAL_INSTRUCTION not in text


def test_task_specific_prompts(tokenizer) -> None:
    ids = SpecialTokenIds()
    sit = build_prompt(tokenizer, task="situated_qa", question="What is on my left?", situation="I am facing the sofa.", answer="lamp")
    assert "I am facing the sofa. What is on my left?" in tokenizer.decode(sit.input_ids)
    with pytest.raises(ValueError, match="situation"):
        build_prompt(tokenizer, task="situated_qa", question="What is on my left?")
    cap = build_prompt(tokenizer, task="caption", question="describe the object in this box.", answer="a red mug on the table.")
    assert cap.input_ids.count(ids.coord) == 1
    for task in ("ground", "multi_ground"):
        g = build_prompt(tokenizer, task=task, question="the red chair next to the table.", answer="ignored")
        labelled = [t for t, l in zip(g.input_ids, g.labels) if l != IGNORE_INDEX]
        assert labelled == [ids.ground, ids.im_end]
        # inference grounding prompts carry the <ground> token too: its hidden state scores the boxes
        assert ids.ground in build_prompt(tokenizer, task=task, question="the red chair.").input_ids
    with pytest.raises(ValueError, match="unknown task"):
        build_prompt(tokenizer, task="count", question="x")


def test_collate_pads_left_or_right(tokenizer) -> None:
    a = build_prompt(tokenizer, task="qa", question="What color is the chair?", answer="red")
    b = build_prompt(tokenizer, task="qa", question="Is there a lamp?", answer="yes")
    pad = SpecialTokenIds().pad
    right = collate_prompts([a, b], pad)
    L = max(len(a.input_ids), len(b.input_ids))
    assert right["input_ids"].shape == (2, L)
    assert right["input_ids"][1, : len(b.input_ids)].tolist() == b.input_ids
    assert right["attention_mask"].sum(1).tolist() == [len(a.input_ids), len(b.input_ids)]
    left = collate_prompts([a, b], pad, padding_side="left")
    assert left["input_ids"][1, L - len(b.input_ids):].tolist() == b.input_ids
    assert bool((left["labels"][1, : L - len(b.input_ids)] == IGNORE_INDEX).all())
    assert left["attention_mask"].dtype == torch.long
