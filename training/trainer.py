"""The training loop on Hugging Face accelerate: one config from a laptop CPU to multi-node GPUs.

``python -m training.trainer --config CFG`` / ``accelerate launch [--config_file
training/accelerate/X.yaml] -m training.trainer --config CFG`` / ``ros3d-agent train --config CFG``
all run :func:`train`. What the launcher decides (processes, DDP / DeepSpeed ZeRO / FSDP, machines)
stays in the accelerate config; what the run is (data, model, optimisation) stays in the training
YAML, so the same YAML scales without edits.

One optimizer step:

1. ``grad_accum`` micro-batches, each of one task group (:mod:`.batching`); the inputs it gets
   follow the Ross3D schedule (:mod:`.schedules`): masked-view latents only on every Δt-th step,
   the BEV on every step, neither on grounding batches; teacher features whenever cached.
2. forward under the accelerator's autocast (bf16 / fp16), backward (loss / grad_accum), gradients
   synchronised on the last micro-batch only;
3. clip, AdamW step, LR schedule step;
4. log every loss term, save an atomic checkpoint every ``save_every`` steps, plot every
   ``plot_every`` steps.

The run ends with a training checkpoint and the final model written with
:func:`ros3d_agent.model.save_checkpoint` (LoRA merged; training heads dropped by default), which
is what the ROS node and :mod:`.evaluate` load.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

from ros3d_agent.model.configuration import LOSS_TERMS

from .batching import BatchPlan, EpochBatches
from .checkpointing import (
    DistInfo,
    TrainState,
    find_latest_checkpoint,
    list_checkpoints,
    load_training_checkpoint,
    save_training_checkpoint,
)
from .collate import collate_samples
from .config import TrainConfig, TrainConfigError, load_config, parse_set_option
from .schedules import Ross3DSchedule, WarmupCosine, make_lr_scheduler, warmup_steps_for

__all__ = ["TrainResult", "train", "model_inputs", "main"]

log = logging.getLogger(__name__)

RUN_CONFIG_FILE = "run_config.json"
FINAL_DIR = "final"


@dataclass
class TrainResult:
    """What a finished run produced."""

    run_dir: Path
    steps: int
    final_model: Path | None
    metrics_path: Path
    plots: list[Path] = field(default_factory=list)
    resumed_from: Path | None = None


# ------------------------------------------------------------------------------------------------
# one batch -> model keywords
# ------------------------------------------------------------------------------------------------
def model_inputs(batch: dict[str, Any], step: int, schedule: Ross3DSchedule, device: torch.device,
                 generator: torch.Generator | None) -> dict[str, Any]:
    """The keyword arguments of ``model(...)`` for a collated batch at optimizer step ``step``.

    The Ross3D targets follow ``schedule``: view latents (which switch the model's view masking on)
    only on masking steps, BEV latents on every non-grounding step; proposals and targets only on
    grounding batches; teacher features when the batch has any valid view.
    """
    def dev(key: str) -> torch.Tensor:
        return batch[key].to(device, non_blocking=True)

    kw: dict[str, Any] = {k: dev(k) for k in ("input_ids", "attention_mask", "labels", "pixel_values", "world_xyz", "world_valid")}
    group = batch["group"]
    if group == "grounding":
        kw.update(proposals=dev("proposals"), proposal_valid=dev("proposal_valid"), ground_targets=dev("ground_targets"))
    if "coord_centres" in batch:
        kw["coord_centres"] = dev("coord_centres")
    plan = schedule.plan(step, group)
    if plan.view and "view_latents" in batch:
        kw["view_latents"] = dev("view_latents")
    if plan.bev and "bev_latents" in batch:
        kw.update(bev_latents=dev("bev_latents"), bev_valid=dev("bev_valid"))
    if "teacher_feats" in batch and bool(batch["teacher_valid"].any()):
        kw.update(teacher_feats=dev("teacher_feats"), teacher_valid=dev("teacher_valid"))
    kw["global_step"] = step
    kw["generator"] = generator
    return kw


# ------------------------------------------------------------------------------------------------
# setup helpers
# ------------------------------------------------------------------------------------------------
def _make_accelerator(cfg: TrainConfig) -> Any:
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    if cfg.train.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise TrainConfigError("train.mixed_precision: fp16 needs a CUDA GPU (use bf16 on CPU)")
    # grounding batches leave the Ross3D head unused, QA batches the grounding head: DDP must
    # tolerate parameters without gradients in a step
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    # cpu=True without CUDA: several CPU processes (torchrun / mpirun) then form a gloo/MPI group
    return Accelerator(mixed_precision=cfg.train.mixed_precision, gradient_accumulation_steps=cfg.train.grad_accum,
                       kwargs_handlers=[ddp], step_scheduler_with_optimizer=False, cpu=not torch.cuda.is_available())


def _sharded(accelerator: Any) -> bool:
    """DeepSpeed / FSDP: parameters are sharded over processes (no single-process forward, sharded state)."""
    return str(accelerator.distributed_type).rsplit(".", 1)[-1] in ("DEEPSPEED", "FSDP")


def _dist(accelerator: Any) -> DistInfo:
    return DistInfo(rank=accelerator.process_index, world_size=accelerator.num_processes, barrier=accelerator.wait_for_everyone)


def _main_first(accelerator: Any, fn: Any) -> Any:
    """Run ``fn`` on the main process first (it writes caches), then on the others (they read them)."""
    with accelerator.main_process_first():
        return fn()


def _run_config_check(run_dir: Path, cfg: TrainConfig, resume: bool, is_main: bool) -> None:
    path = run_dir / RUN_CONFIG_FILE
    current = cfg.to_dict()
    if resume and path.is_file():
        before = json.loads(path.read_text(encoding="utf-8"))
        if before != current:
            changed = sorted(k for k in set(before) | set(current) if before.get(k) != current.get(k))
            log.warning("resuming with a config that differs from the run's in section(s) %s: the continuation is "
                        "not the uninterrupted run any more", changed)
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(current, indent=1) + "\n", encoding="utf-8")


@dataclass
class _LogWindow:
    """What happened since the last logged step: loss sums/counts per term, tokens, time, task groups.

    Logged values are means over the window, so a term that only some steps compute (Ross3D view
    reconstruction every Δt steps) still shows up with ``log_every`` > 1. The window is part of the
    checkpointed state, so a resumed run logs exactly what the uninterrupted one would have.
    """

    sums: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    tokens: int = 0
    steps: int = 0
    seconds: float = 0.0
    groups: set[str] = field(default_factory=set)
    grad_norm: float | None = None

    def add_batch(self, group: str, losses: dict[str, float], tokens: int) -> None:
        self.groups.add(group)
        for k, v in losses.items():
            self.sums[k] += v
            self.counts[k] += 1
        self.tokens += tokens

    def to_dict(self) -> dict[str, Any]:
        return {"sums": dict(self.sums), "counts": dict(self.counts), "tokens": self.tokens, "steps": self.steps,
                "seconds": self.seconds, "groups": sorted(self.groups), "grad_norm": self.grad_norm}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> _LogWindow:
        w = cls()
        if d:
            w.sums.update(d["sums"])
            w.counts.update(d["counts"])
            w.tokens, w.steps, w.seconds, w.grad_norm = d["tokens"], d["steps"], d["seconds"], d["grad_norm"]
            w.groups = set(d["groups"])
        return w


def _reduce_losses(accelerator: Any, sums: dict[str, float], counts: dict[str, int]) -> dict[str, float]:
    """Mean of each loss term over micro-batches and processes (terms absent everywhere are left out)."""
    names = ["loss", *LOSS_TERMS]
    t = torch.tensor([[sums.get(n, 0.0), float(counts.get(n, 0))] for n in names], dtype=torch.float64, device=accelerator.device)
    if accelerator.num_processes > 1:
        t = accelerator.reduce(t, reduction="sum")
    return {f"loss/{n}": float(t[i, 0] / t[i, 1]) for i, n in enumerate(names) if t[i, 1] > 0}


# ------------------------------------------------------------------------------------------------
# the run
# ------------------------------------------------------------------------------------------------
def train(cfg: TrainConfig, *, resume: bool = False) -> TrainResult:
    """Run (or continue, with ``resume``) the training a config describes.

    Raises:
        TrainConfigError / DataError: the config does not fit the data or the machine.
        FileExistsError: the run directory already holds checkpoints and ``resume`` is False.
    """
    from accelerate.utils import set_seed
    from torch.utils.data import DataLoader

    from ros3d_agent.model.checkpoint import save_checkpoint

    from . import data as data_mod
    from .cache import CacheLayout, ensure_cache
    from .logging import RunLogger
    from .model_init import build_model, build_tokenizer, resolve_model_config
    from .optim import apply_lora, build_optimizer, configure_trainable, merge_lora, trainable_summary

    if cfg.run.num_threads:
        torch.set_num_threads(cfg.run.num_threads)
    run_dir = Path(cfg.run.output_dir)
    if not resume and list_checkpoints(run_dir):
        raise FileExistsError(f"{run_dir} already holds training checkpoints: pass --resume to continue it, or choose another --output")
    accelerator = _make_accelerator(cfg)
    sharded = _sharded(accelerator)
    if str(accelerator.distributed_type).rsplit(".", 1)[-1] == "DEEPSPEED":
        # our DataLoader is not prepared by accelerate, so DeepSpeed learns the micro-batch from here
        accelerator.state.deepspeed_plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = cfg.train.batch_size
    dist = _dist(accelerator)
    device = accelerator.device
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = cfg.train.tf32
        torch.backends.cudnn.allow_tf32 = cfg.train.tf32
    set_seed(cfg.run.seed)

    model_cfg = resolve_model_config(cfg)
    cfg.validate_against_model(model_cfg)
    _run_config_check(run_dir, cfg, resume, accelerator.is_main_process)
    tokenizer = _main_first(accelerator, lambda: build_tokenizer(cfg, model_cfg, run_dir))

    # -- data -------------------------------------------------------------------------------------
    records = data_mod.load_records(cfg)
    scenes, views = _main_first(accelerator, lambda: data_mod.discover_run_scenes(cfg, model_cfg, records))
    needs = data_mod.TargetNeeds.for_run(cfg, model_cfg)
    layout: CacheLayout | None = None
    if needs.view_latents or needs.bev or needs.teacher or cfg.data.proposals == "predicted":
        layout = _main_first(accelerator, lambda: ensure_cache(cfg, model_cfg, scenes, views, device,
                                                               progress=accelerator.is_main_process))
    labeled, unlabeled, stats = data_mod.build_sample_specs(cfg, records, scenes, views, layout)
    dataset = data_mod.TrainDataset(labeled + unlabeled, scenes, tokenizer, model_cfg, layout, needs)
    plan = BatchPlan([s.bucket for s in labeled], [s.bucket for s in unlabeled], batch_size=cfg.train.batch_size,
                     seed=cfg.run.seed, unlabeled_fraction=cfg.data.unlabeled_fraction,
                     world_size=dist.world_size, rank=dist.rank)
    steps_per_epoch = plan.batches_per_epoch // cfg.train.grad_accum
    if steps_per_epoch < 1:
        raise TrainConfigError(f"an epoch has {plan.batches_per_epoch} batch(es) per process, fewer than train.grad_accum "
                               f"{cfg.train.grad_accum}: lower grad_accum or batch_size, or add data")
    total_steps = cfg.schedule.max_steps or max(1, math.ceil(cfg.schedule.epochs * steps_per_epoch))

    # -- model and optimizer --------------------------------------------------------------------------
    model = build_model(cfg, model_cfg)
    if cfg.lora.enabled:
        apply_lora(model, cfg.lora)
    configure_trainable(model, cfg.optim, cfg.lora)
    if cfg.train.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    model.to(device)
    optimizer = build_optimizer(model, cfg.optim)
    warmup = warmup_steps_for(total_steps, cfg.schedule.warmup_ratio, cfg.schedule.warmup_steps)
    scheduler = make_lr_scheduler(optimizer, WarmupCosine(warmup, total_steps, cfg.schedule.min_lr_ratio, cfg.schedule.kind))
    model, optimizer = accelerator.prepare(model, optimizer)
    unwrapped = accelerator.unwrap_model(model)
    generator = torch.Generator(device=device).manual_seed(cfg.run.seed * 100_003 + dist.rank)
    schedule = Ross3DSchedule(model_cfg.ross3d, model_cfg.loss_weights)

    state = TrainState()
    resumed_from = None
    if resume:
        ckpt = find_latest_checkpoint(run_dir)
        if ckpt is None:
            log.warning("--resume: %s has no checkpoint yet; starting from step 0", run_dir)
        else:
            state = load_training_checkpoint(ckpt, unwrapped, optimizer, scheduler, generator=generator, dist=dist,
                                             scaler=accelerator.scaler, accelerator=accelerator)
            resumed_from = ckpt
    if accelerator.is_main_process:
        summary = trainable_summary(unwrapped)
        log.info("model %s: %s", model_cfg.preset, json.dumps(summary))
        log.info("data: %d labeled + %d unlabeled samples, %s; %d batches/epoch/process, %d steps/epoch, %d steps%s",
                 len(labeled), len(unlabeled), stats, plan.batches_per_epoch, steps_per_epoch, total_steps,
                 f" (resuming at {state.step} from {resumed_from})" if resumed_from else "")
    logger = RunLogger(run_dir, enabled=accelerator.is_main_process, start_step=state.step, total_steps=total_steps,
                       progress=cfg.logging.progress)
    # a reconstruction plot runs the model on the main process alone, which sharded parameters cannot do
    recon_batch = _recon_batch(cfg, dataset, labeled + unlabeled, tokenizer) if accelerator.is_main_process and not sharded else None

    def batches(epoch: int, pos: int) -> Iterator[tuple[dict[str, Any], int, int]]:
        while True:
            loader = DataLoader(dataset, batch_sampler=EpochBatches(plan, epoch, pos),
                                collate_fn=partial(collate_samples, pad_id=model_cfg.tokens.pad),
                                num_workers=cfg.data.num_workers, pin_memory=device.type == "cuda",
                                # its own generator: creating a loader must not draw from the global RNG
                                generator=torch.Generator().manual_seed(cfg.run.seed + epoch))
            for b in loader:
                pos += 1
                yield b, epoch, pos
            epoch, pos = epoch + 1, 0

    stream = batches(state.epoch, state.batch_in_epoch)
    params = [p for p in model.parameters() if p.requires_grad]
    plots: list[Path] = []
    t_start = time.perf_counter() - state.elapsed_s
    model.train()
    window = _LogWindow.from_dict(state.log_window)  # a window cut by a checkpoint goes on after resume
    while state.step < total_steps:
        t0 = time.perf_counter()
        for _ in range(cfg.train.grad_accum):
            batch, epoch, pos = next(stream)
            with accelerator.accumulate(model):
                out = model(**model_inputs(batch, state.step, schedule, device, generator))
                loss = out.loss if out.loss is not None else out.logits.sum() * 0.0  # nothing to learn here
                accelerator.backward(loss)
            window.add_batch(batch["group"], out.losses, int(out.attention_mask.sum()))
            state.samples_seen += len(batch["ids"])
        lrs = {f"lr/{g['name']}": float(g["lr"]) for g in optimizer.param_groups}  # the lrs this step used
        if cfg.train.max_grad_norm > 0:
            grad_norm = accelerator.clip_grad_norm_(params, cfg.train.max_grad_norm)
            if grad_norm is not None:
                window.grad_norm = float(grad_norm)
        optimizer.step()
        if not getattr(optimizer, "step_was_skipped", False):
            scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state.step += 1
        state.epoch, state.batch_in_epoch = epoch, pos
        window.steps += 1
        window.seconds += time.perf_counter() - t0
        state.elapsed_s = time.perf_counter() - t_start

        if state.step % cfg.logging.log_every == 0 or state.step == total_steps:
            state.tokens_seen += window.tokens
            metrics = {**_reduce_losses(accelerator, window.sums, window.counts), **lrs}
            if window.grad_norm is not None:
                metrics["perf/grad_norm"] = window.grad_norm
            metrics["perf/step_s"] = window.seconds / window.steps
            metrics["perf/tokens_per_s"] = window.tokens * dist.world_size / max(window.seconds, 1e-9)
            logger.log(state.step, metrics, {"groups": ",".join(sorted(window.groups))})
            logger.advance(window.steps, {"loss": metrics.get("loss/loss", float("nan")), "lr": lrs[f"lr/{optimizer.param_groups[0]['name']}"]})
            window = _LogWindow()
        state.log_window = window.to_dict()
        if cfg.checkpoint.save_every and state.step % cfg.checkpoint.save_every == 0 and state.step < total_steps:
            save_training_checkpoint(run_dir, state, unwrapped, optimizer, scheduler, generator=generator, dist=dist,
                                     scaler=accelerator.scaler, keep_last=cfg.checkpoint.keep_last,
                                     run_config=cfg.to_dict(), accelerator=accelerator)
        if cfg.logging.plot_every and state.step % cfg.logging.plot_every == 0 and state.step < total_steps:
            plots += _plot(cfg, logger, unwrapped, recon_batch, layout, accelerator, state.step)

    accelerator.wait_for_everyone()
    if not list_checkpoints(run_dir) or list_checkpoints(run_dir)[-1][0] != state.step:
        save_training_checkpoint(run_dir, state, unwrapped, optimizer, scheduler, generator=generator, dist=dist,
                                 scaler=accelerator.scaler, keep_last=cfg.checkpoint.keep_last,
                                 run_config=cfg.to_dict(), accelerator=accelerator)
    plots += _plot(cfg, logger, unwrapped, recon_batch, layout, accelerator, state.step)
    final = None
    if cfg.checkpoint.save_final:
        final = _save_final(cfg, accelerator, model, unwrapped, tokenizer, model_cfg, run_dir, merge_lora, save_checkpoint)
    if accelerator.is_main_process:
        (run_dir / "run_summary.json").write_text(json.dumps({
            "steps": state.step, "samples_seen": state.samples_seen, "tokens_seen": state.tokens_seen,
            "elapsed_s": state.elapsed_s, "final_model": str(final) if final else None,
            "resumed_from": str(resumed_from) if resumed_from else None, "data": stats,
        }, indent=1) + "\n", encoding="utf-8")
    logger.close()
    accelerator.end_training()
    return TrainResult(run_dir, state.step, final, logger.metrics_path, plots, resumed_from)


def _recon_batch(cfg: TrainConfig, dataset: Any, specs: list[Any], tokenizer: Any) -> dict[str, Any] | None:
    """A fixed batch of up to ``recon_samples`` non-grounding samples of one bucket (for the recon plots)."""
    if cfg.logging.recon_samples < 1 or not (dataset.needs.view_latents or dataset.needs.bev):
        return None
    candidates = [i for i, s in enumerate(specs) if s.group != "grounding"]
    if not candidates:
        return None
    bucket = specs[candidates[0]].bucket
    same = [i for i in candidates if specs[i].bucket == bucket]
    chosen: list[int] = []
    for i in same:  # prefer samples of different scenes (one BEV each)
        if specs[i].scene_id not in {specs[j].scene_id for j in chosen}:
            chosen.append(i)
    chosen += [i for i in same if i not in chosen]
    chosen = chosen[: cfg.logging.recon_samples]
    return collate_samples([dataset[i] for i in chosen], pad_id=tokenizer.pad_token_id)


def _plot(cfg: TrainConfig, logger: Any, model: Any, recon_batch: dict[str, Any] | None, layout: Any,
          accelerator: Any, step: int) -> list[Path]:
    """Loss curves and (Ross3D) reconstructions; main process only; never touches the training RNG."""
    if not accelerator.is_main_process:
        return []
    out: list[Path] = []
    loss_png = logger.plot_losses(f"{Path(cfg.run.output_dir).name}: step {step}")
    if loss_png is not None:
        out.append(loss_png)
    if recon_batch is None or "ross3d" not in model.training_heads:
        return out
    import numpy as np
    from PIL import Image

    from .cache import build_vae
    from .recon import reconstruct, save_reconstruction_figure

    device = accelerator.device
    bev_images = []
    for sid in recon_batch["scene_ids"]:
        png = layout.vae_scene_dir(sid) / "bev.png" if layout is not None and layout.vae_key else None
        bev_images.append(np.asarray(Image.open(png).convert("RGB")) if png is not None and png.is_file() else None)
    batch = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in recon_batch.items()}
    vae = build_vae(cfg.data.vae, device, model.config.ross3d.vae_latent_channels)
    cuda = [device] if device.type == "cuda" else []
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=cuda), accelerator.autocast():
            panels = reconstruct(model, batch, vae, steps=cfg.logging.recon_steps, seed=cfg.run.seed, bev_images=bev_images)
    finally:
        model.train(was_training)
    if panels:
        path = save_reconstruction_figure(panels, Path(cfg.run.output_dir) / "plots" / f"recon_step{step:08d}.png",
                                          f"Ross3D reconstructions at step {step} ({cfg.logging.recon_steps} DDIM steps, "
                                          f"VAE {cfg.data.vae.describe()})")
        logger.add_image("recon", path, step)
        out.append(path)
    return out


def _save_final(cfg: TrainConfig, accelerator: Any, model: Any, unwrapped: Any, tokenizer: Any, model_cfg: Any,
                run_dir: Path, merge_lora: Any, save_checkpoint: Any) -> Path | None:
    """The final model in the node's format (LoRA merged, training heads dropped unless asked)."""
    from ros3d_agent.model.modeling import Ros3DForConditionalGeneration

    dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, None: None}[cfg.checkpoint.final_dtype]
    full = accelerator.get_state_dict(model) if _sharded(accelerator) else None  # collective: every process takes part
    out = None
    if accelerator.is_main_process:
        target = unwrapped
        if full is not None:  # sharded run: load the gathered weights into a CPU copy of the model
            target = Ros3DForConditionalGeneration(model_cfg, training_heads=True)
            if cfg.lora.enabled:
                from .optim import apply_lora

                apply_lora(target, cfg.lora)
            target.load_state_dict(full)
        if cfg.lora.enabled:
            merge_lora(target)
        out = save_checkpoint(target, tokenizer, run_dir / FINAL_DIR, dtype=dtype,
                              include_training_heads=cfg.checkpoint.final_include_training_heads)
    accelerator.wait_for_everyone()
    return out


# ------------------------------------------------------------------------------------------------
# entry point
# ------------------------------------------------------------------------------------------------
def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of parsed CLI arguments (``--config``, ``--set``, ``--max-steps``, ``--output``)."""
    overrides = dict(parse_set_option(s) for s in (args.set or []))
    if args.max_steps is not None:
        overrides["schedule.max_steps"] = args.max_steps
    if args.output is not None:
        overrides["run.output_dir"] = args.output
    return load_config(args.config, overrides)


def main(argv: list[str] | None = None) -> int:
    """``python -m training.trainer`` / ``accelerate launch -m training.trainer`` (same flags as ``ros3d-agent train``)."""
    from ros3d_agent.commands.train import add_arguments

    parser = argparse.ArgumentParser(prog="python -m training.trainer", description="Train the ros3d_agent model.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result = train(config_from_args(args), resume=args.resume)
    print(json.dumps({"run_dir": str(result.run_dir), "steps": result.steps,
                      "final_model": str(result.final_model) if result.final_model else None}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
