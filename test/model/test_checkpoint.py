"""Our checkpoint format: bit-exact round trip, training heads optional, no pickle, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ros3d_agent.model.checkpoint import (
    CONFIG_FILE,
    TOKENIZER_DIR,
    WEIGHTS_FILE,
    CheckpointError,
    load_checkpoint,
    read_checkpoint_config,
    save_checkpoint,
)
from ros3d_agent.model.modeling import Ros3DForConditionalGeneration
from ros3d_agent.model.presets import get_preset
from ros3d_agent.model.tokenizer import build_offline_tokenizer


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):
    return build_offline_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture()
def no_pickle(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading must never unpickle: make torch.load explode."""

    def refuse(*args, **kwargs):
        raise AssertionError("torch.load was called")

    monkeypatch.setattr(torch, "load", refuse)


def _model(training_heads: bool = False, seed: int = 0) -> Ros3DForConditionalGeneration:
    torch.manual_seed(seed)
    return Ros3DForConditionalGeneration(get_preset("tiny"), training_heads=training_heads)


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module, skip_prefix: str | None = None) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    keys = {k for k in sa if skip_prefix is None or not k.startswith(skip_prefix)}
    assert keys == {k for k in sb if skip_prefix is None or not k.startswith(skip_prefix)}
    for k in keys:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k


def test_round_trip_is_bit_exact(tmp_path: Path, tokenizer, no_pickle) -> None:
    model = _model()
    save_checkpoint(model, tokenizer, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_DIR}
    loaded = load_checkpoint(tmp_path)
    assert loaded.config == model.config and not loaded.model.training
    _assert_same_weights(model, loaded.model)
    # tied embeddings are stored once and come back tied
    meta = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert meta["tied"] == {"language_model.lm_head.weight": "language_model.model.embed_tokens.weight"}
    assert meta["format_version"] == 1 and meta["dtype"] == "float32"
    lm = loaded.model.language_model
    assert lm.lm_head.weight is lm.model.embed_tokens.weight
    # the tokenizer comes back with the same ids and the same encoding
    text = "What color is the chair? <image> <ground>"
    assert loaded.tokenizer(text)["input_ids"] == tokenizer(text)["input_ids"]
    # and so do the outputs
    ids = torch.tensor([[1, 7, 8, 9]])
    with torch.no_grad():
        assert torch.equal(model.eval()(ids).logits, loaded.model(ids).logits)


def test_training_checkpoint_loads_into_an_inference_model_and_back(tmp_path: Path, tokenizer, no_pickle) -> None:
    trained = _model(training_heads=True)
    save_checkpoint(trained, tokenizer, tmp_path / "train")
    inference = load_checkpoint(tmp_path / "train")
    assert not inference.model.has_training_heads
    assert inference.dropped and all(k.startswith("training_heads.") for k in inference.dropped)
    _assert_same_weights(trained, inference.model, skip_prefix="training_heads.")
    resumed = load_checkpoint(tmp_path / "train", training_heads=True)
    assert resumed.dropped == () and resumed.initialised == ()
    _assert_same_weights(trained, resumed.model)
    # an inference checkpoint loaded for training gets fresh heads, and says so
    save_checkpoint(inference.model, tokenizer, tmp_path / "inf")
    fresh = load_checkpoint(tmp_path / "inf", training_heads=True)
    assert fresh.model.has_training_heads and fresh.initialised
    assert all(k.startswith("training_heads.") for k in fresh.initialised)
    _assert_same_weights(inference.model, fresh.model, skip_prefix="training_heads.")


def test_heads_can_be_left_out_and_fp16_halves_the_file(tmp_path: Path, tokenizer) -> None:
    trained = _model(training_heads=True)
    save_checkpoint(trained, tokenizer, tmp_path / "full")
    save_checkpoint(trained, tokenizer, tmp_path / "half", dtype=torch.float16, include_training_heads=False)
    meta = json.loads((tmp_path / "half" / CONFIG_FILE).read_text())
    assert meta["dtype"] == "float16" and meta["training_heads"] == []
    full_size = (tmp_path / "full" / WEIGHTS_FILE).stat().st_size
    assert (tmp_path / "half" / WEIGHTS_FILE).stat().st_size < 0.55 * full_size
    half = load_checkpoint(tmp_path / "half")
    assert half.model.language_model.model.embed_tokens.weight.dtype == torch.float32  # built in fp32, upcast
    torch.testing.assert_close(half.model.image_newline, trained.image_newline.half().float())
    bf = load_checkpoint(tmp_path / "half", dtype=torch.bfloat16)
    assert bf.model.mm_projector[0].weight.dtype == torch.bfloat16


def test_weights_only_checkpoint(tmp_path: Path) -> None:
    save_checkpoint(_model(), None, tmp_path)
    loaded = load_checkpoint(tmp_path)
    assert loaded.tokenizer is None and not (tmp_path / TOKENIZER_DIR).exists()


def test_bad_checkpoints_fail_clearly(tmp_path: Path, tokenizer) -> None:
    from safetensors.torch import load_file, save_file

    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        load_checkpoint(tmp_path)
    model = _model()
    save_checkpoint(model, tokenizer, tmp_path)
    meta = json.loads((tmp_path / CONFIG_FILE).read_text())

    newer = dict(meta, format_version=99)
    (tmp_path / CONFIG_FILE).write_text(json.dumps(newer))
    with pytest.raises(CheckpointError, match="newer than this code supports"):
        read_checkpoint_config(tmp_path)
    (tmp_path / CONFIG_FILE).write_text(json.dumps(dict(meta, format="llava")))
    with pytest.raises(CheckpointError, match="not a ros3d_agent.model checkpoint"):
        load_checkpoint(tmp_path)
    (tmp_path / CONFIG_FILE).write_text(json.dumps(meta))

    state = load_file(str(tmp_path / WEIGHTS_FILE))
    save_file({**state, "extra.weight": torch.zeros(2)}, str(tmp_path / WEIGHTS_FILE))
    with pytest.raises(CheckpointError, match="do not belong to this model.*extra.weight"):
        load_checkpoint(tmp_path)
    save_file({k: v for k, v in state.items() if k != "image_newline"}, str(tmp_path / WEIGHTS_FILE))
    with pytest.raises(CheckpointError, match="missing 1 tensor.*image_newline"):
        load_checkpoint(tmp_path)
    save_file({**state, "image_newline": torch.zeros(7)}, str(tmp_path / WEIGHTS_FILE))
    with pytest.raises(CheckpointError, match="does not fit the config"):
        load_checkpoint(tmp_path)


def test_tokenizer_must_match_the_config(tmp_path: Path, tokenizer) -> None:
    from ros3d_agent.model.configuration import SpecialTokenIds

    cfg = get_preset("tiny", tokens=SpecialTokenIds(pad=0, endoftext=0, im_start=1, im_end=2, image=5, ground=4, coord=3))
    other = Ros3DForConditionalGeneration(cfg)
    with pytest.raises(CheckpointError, match="special-token ids"):
        save_checkpoint(other, tokenizer, tmp_path)
