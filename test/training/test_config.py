"""Training config: YAML loading, validation messages, shipped configs, accelerate launcher configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from training.config import (
    TrainConfigError,
    apply_overrides,
    config_from_dict,
    load_config,
    parse_set_option,
)
from training.model_init import deep_merge, resolve_model_config

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "training" / "configs"
ACCEL = REPO / "training" / "accelerate"


def _base(tmp_path: Path) -> dict:
    return yaml.safe_load((CONFIGS / "tiny_cpu.yaml").read_text()) | {"run": {"output_dir": str(tmp_path / "run")}}


@pytest.mark.parametrize("name", ["tiny_cpu", "small_synthetic", "llava_video_7b_lora"])
def test_shipped_configs_parse(name: str) -> None:
    cfg = load_config(CONFIGS / f"{name}.yaml", check_paths=False)
    if name == "llava_video_7b_lora":
        assert cfg.lora.enabled and cfg.lora.apply_to == ["llm"] and not cfg.optim.parts["vision_tower"].train
        assert cfg.train.gradient_checkpointing and cfg.train.mixed_precision == "bf16"
        cfg = load_config(CONFIGS / f"{name}.yaml", {"model.init_checkpoint": None}, check_paths=False)
    model_cfg = resolve_model_config(cfg)
    cfg.validate_against_model(model_cfg)
    if name == "small_synthetic":
        assert model_cfg.alignment3drs is None and model_cfg.ross3d is not None
    if name == "llava_video_7b_lora":
        assert model_cfg.alignment3drs.teacher_dim == 1024 and model_cfg.language.hidden_size == 3584


def test_unknown_key_names_its_path(tmp_path: Path) -> None:
    data = _base(tmp_path)
    data["schedule"]["warmup_raito"] = 0.1
    with pytest.raises(TrainConfigError, match=r"schedule\.warmup_raito"):
        config_from_dict(data, check_paths=False)
    data = _base(tmp_path) | {"trian": {}}
    with pytest.raises(TrainConfigError, match="trian"):
        config_from_dict(data, check_paths=False)


@pytest.mark.parametrize(
    "dotted, value, message",
    [
        ("train.batch_size", "two", r"train\.batch_size: expected an integer"),
        ("train.batch_size", 0, r"train\.batch_size must be >= 1"),
        ("train.mixed_precision", "fp8", r"train\.mixed_precision: must be one of"),
        ("optim.lr", -1.0, r"optim\.lr must be > 0"),
        ("optim.parts", {"decoder": {"train": True}}, r"unknown part"),
        ("data.sampling", "random", r"data\.sampling: must be one of"),
        ("data.coverage_stop", 0.9, r"coverage_stop only applies to sampling: max_coverage"),
        ("data.unlabeled_fraction", 0.5, r"needs data\.unlabeled_scenes"),
        ("data.tasks", ["qa", "vqa"], r"data\.tasks must be a non-empty subset"),
        ("data.vae", {"path": "x", "tiny_random": True}, r"either path or tiny_random"),
        ("schedule.warmup_ratio", 1.5, r"warmup_ratio must be in"),
        ("checkpoint.keep_last", 0, r"keep_last must be >= 1"),
    ],
)
def test_bad_values_are_rejected(tmp_path: Path, dotted: str, value, message: str) -> None:
    data = apply_overrides(_base(tmp_path), {dotted: value})
    with pytest.raises(TrainConfigError, match=message):
        config_from_dict(data, check_paths=False)


def test_combinations(tmp_path: Path) -> None:
    frozen = {f"optim.parts.{p}": {"train": False} for p in ("vision_tower", "projector", "llm", "heads")}
    with pytest.raises(TrainConfigError, match="every part is frozen"):
        config_from_dict(apply_overrides(_base(tmp_path), frozen), check_paths=False)
    lora_on_frozen = {"lora.enabled": True, "optim.parts.llm": {"train": False}}
    with pytest.raises(TrainConfigError, match="its adapters would never train"):
        config_from_dict(apply_overrides(_base(tmp_path), lora_on_frozen), check_paths=False)
    with pytest.raises(TrainConfigError, match=r"data\.scenes .* is not a directory"):
        config_from_dict(_base(tmp_path) | {"data": {"scenes": str(tmp_path / "nope")}})


def test_model_level_checks(tmp_path: Path) -> None:
    cfg = config_from_dict(apply_overrides(_base(tmp_path), {"data.vae": {}}), check_paths=False)
    with pytest.raises(TrainConfigError, match="trains Ross3D reconstruction but data.vae is not set"):
        cfg.validate_against_model(resolve_model_config(cfg))
    no3d = {"model.overrides": {"ross3d": None, "alignment3drs": None}, "data.unlabeled_scenes": "u", "data.unlabeled_fraction": 0.3}
    cfg = config_from_dict(apply_overrides(_base(tmp_path), no3d), check_paths=False)
    with pytest.raises(TrainConfigError, match="no 3D loss"):
        cfg.validate_against_model(resolve_model_config(cfg))
    # loss weights stay in the model config; overrides deep-merge into it
    cfg = config_from_dict(apply_overrides(_base(tmp_path), {"model.overrides": {"loss_weights": {"align3drs": 0.5}}}), check_paths=False)
    mc = resolve_model_config(cfg)
    assert mc.loss_weights["align3drs"] == 0.5 and mc.loss_weights["lm"] == 1.0
    bad = config_from_dict(apply_overrides(_base(tmp_path), {"model.overrides": {"loss_weights": {"lmm": 1.0}}}), check_paths=False)
    with pytest.raises(TrainConfigError, match="model.overrides"):
        resolve_model_config(bad)


def test_set_option_and_merge() -> None:
    assert parse_set_option("schedule.max_steps=12") == ("schedule.max_steps", 12)
    assert parse_set_option("data.vae={tiny_random: true}") == ("data.vae", {"tiny_random": True})
    with pytest.raises(TrainConfigError, match="KEY=VALUE"):
        parse_set_option("schedule.max_steps")
    assert deep_merge({"a": {"b": 1, "c": 2}, "d": 1}, {"a": {"b": 3}, "d": None}) == {"a": {"b": 3, "c": 2}, "d": None}


def test_fp16_needs_cuda(tmp_path: Path, tiny_data, make_config) -> None:
    import torch

    from training.trainer import train

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    cfg = make_config(tmp_path / "fp16", **{"train.mixed_precision": "fp16"})
    with pytest.raises(TrainConfigError, match="fp16 needs a CUDA GPU"):
        train(cfg)


# -- accelerate launcher configs ---------------------------------------------------------------------
def _launch_args(name: str):
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    args = launch_command_parser().parse_args(["--config_file", str(ACCEL / f"{name}.yaml"), "-m", "training.trainer", "--config", "x.yaml"])
    return _validate_launch_command(args)


@pytest.mark.parametrize("name, kind", [("single_gpu", "NO"), ("multi_gpu", "MULTI_GPU"), ("deepspeed_zero2", "DEEPSPEED"),
                                         ("deepspeed_zero3", "DEEPSPEED"), ("fsdp", "FSDP")])
def test_accelerate_configs_parse(name: str, kind: str) -> None:
    from accelerate.commands.config.config_args import ClusterConfig

    c = ClusterConfig.from_yaml_file(str(ACCEL / f"{name}.yaml"))
    assert str(c.distributed_type).endswith(kind)
    args, defaults, _ = _launch_args(name)  # what `accelerate launch --config_file` does before starting processes
    assert args.use_deepspeed == (kind == "DEEPSPEED") and args.use_fsdp == (kind == "FSDP")
    if kind == "DEEPSPEED":
        from accelerate.utils.launch import prepare_deepspeed_cmd_env

        args.deepspeed_fields_from_accelerate_config = list(defaults.deepspeed_config.keys())
        _, env = prepare_deepspeed_cmd_env(args)
        assert env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == name[-1]
        # left out on purpose, so it follows the training YAML's train.grad_accum ("auto")
        assert "ACCELERATE_GRADIENT_ACCUMULATION_STEPS" not in env


def test_fsdp_plugin_builds_from_the_launch_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The env `accelerate launch` would export builds a valid FSDP plugin, and its wrap classes exist."""
    from accelerate import FullyShardedDataParallelPlugin
    from accelerate.utils.launch import prepare_multi_gpu_env

    from ros3d_agent.model import Ros3DForConditionalGeneration, get_preset

    args, _, _ = _launch_args("fsdp")
    for k, v in prepare_multi_gpu_env(args).items():
        if k.startswith("FSDP") or k.startswith("ACCELERATE"):
            monkeypatch.setenv(k, v)
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2
    classes = {type(m).__name__ for m in Ros3DForConditionalGeneration(get_preset("tiny")).modules()}
    assert set(plugin.transformer_cls_names_to_wrap) <= classes
    assert os.environ["FSDP_STATE_DICT_TYPE"] == "SHARDED_STATE_DICT"
