#!/usr/bin/env python3
"""Training-step cost per preset, with and without the Ross3D / 3DRS training heads.

Why: the auxiliary 3D objectives are sold as (nearly) free at training time; this measures what
they cost on the step that actually trains. For each preset it times the same optimizer step twice
in one run — the baseline (LM loss only: the model built without training heads) and the full
objective (LM + Ross3D view reconstruction on every 4th step + BEV every step + 3DRS alignment) —
and reports step time, tokens/s (text + spliced visual tokens), MFU and the heads' overhead in %.

Step = forward under autocast + backward + AdamW step on a synthetic batch of the preset's real
shapes (random pixels on a known geometry, an ~80-token prompt with an 8-token answer, random VAE
latents / teacher features of the right sizes). ``global_step`` runs through the Ross3D schedule,
so the timed steps include masking steps in the trained proportion (1 in 4).

MFU = model FLOPs per step / step time / peak FLOP/s. Model FLOPs are the forward FLOPs of each part
(counted with ``torch.utils.flop_counter`` over one forward, averaged over masking and
non-masking steps) times (1 + b): b = 2 for a part with trained weights, 1 for a frozen part that
gradients pass through (a LoRA'd LLM), 0 for a frozen part with nothing trainable before it (a
frozen vision tower). Recomputation by gradient checkpointing is not counted (it is overhead, not
model work). Peak: ``--peak-tflops``, else the bf16 dense peak of a known GPU (H100/H200: 989).

    python benchmarks/train_step.py --preset tiny --device cpu                       # CPU, seconds
    python benchmarks/train_step.py --device cuda --preset small --preset llava-video-7b   # one H100

``llava-video-7b`` defaults to the LoRA recipe (LoRA r=64 on the LLM, vision tower frozen, bf16
weights, gradient checkpointing) so it fits one GPU; ``--mode full`` trains every part.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout without installing

from ros3d_agent.model.modeling import Ros3DForConditionalGeneration  # noqa: E402
from ros3d_agent.model.presets import available_presets, get_preset  # noqa: E402
from ros3d_agent.model.ross3d.configuration import Ross3DConfig  # noqa: E402
from training.config import LoraConfig, OptimConfig, PartConfig  # noqa: E402
from training.optim import apply_lora, build_optimizer, configure_trainable  # noqa: E402

PROMPT_TOKENS = 80
ANSWER_TOKENS = 8
#: per preset: (views, batch per device, mode, gradient checkpointing, weights dtype on GPU)
DEFAULTS = {
    "tiny": (4, 2, "full", False, "fp32"),
    "small": (8, 16, "full", False, "fp32"),
    "llava-video-7b": (32, 1, "lora", True, "bf16"),
}
PEAK_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0, "L40S": 362.0, "A10": 125.0}
PARTS = ("vision_tower", "mm_projector", "language_model", "grounding_head", "training_heads")


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


@dataclass
class Result:
    preset: str
    heads: bool
    mode: str
    views: int
    batch: int
    tokens_per_sample: int
    step_s: float
    step_s_stdev: float
    tokens_per_s: float
    model_tflops_per_step: float
    mfu: float | None
    peak_mem_gb: float | None
    trainable_params: int


def synthetic_batch(cfg, B: int, V: int, device: torch.device, heads: bool, seed: int = 0) -> dict[str, torch.Tensor]:
    """A batch of the preset's real shapes: views at the tower's native size on a tilted plane, a
    prompt with one <image> and a labelled answer, Ross3D / 3DRS targets when ``heads``."""
    g = torch.Generator().manual_seed(seed)
    S = cfg.vision.image_size
    L = PROMPT_TOKENS + ANSWER_TOKENS
    ids = torch.randint(10, min(cfg.language.vocab_size, 4000), (B, L), generator=g)
    ids[:, 3] = cfg.tokens.image
    labels = torch.full_like(ids, -100)
    labels[:, -ANSWER_TOKENS:] = ids[:, -ANSWER_TOKENS:]
    u = torch.linspace(0.0, 6.0, S)
    plane = torch.stack(torch.broadcast_tensors(u[None, :], u[:, None], 0.3 * u[:, None]), dim=-1)
    batch = {
        "input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels,
        "pixel_values": torch.randn(B, V, 3, S, S, generator=g),
        "world_xyz": (plane[None, None] + torch.arange(V, dtype=torch.float32)[None, :, None, None, None] * 0.1).expand(B, V, S, S, 3).contiguous(),
        "world_valid": torch.ones(B, V, S, S, dtype=torch.bool),
    }
    if heads and cfg.ross3d is not None:
        r: Ross3DConfig = cfg.ross3d
        batch["view_latents"] = torch.randn(B, V, r.latent_channels, *r.view_latent_hw, generator=g)
        batch["bev_latents"] = torch.randn(B, r.latent_channels, *r.bev_latent_hw, generator=g)
        batch["bev_valid"] = torch.ones(B, 1, *r.bev_latent_hw)
    if heads and cfg.alignment3drs is not None:
        batch["teacher_feats"] = torch.randn(B, V, cfg.alignment3drs.teacher_dim, 16, 16, generator=g)
        batch["teacher_valid"] = torch.ones(B, V, dtype=torch.bool)
    return {k: v.to(device) for k, v in batch.items()}


def build(preset: str, heads: bool, mode: str, device: torch.device, dtype: torch.dtype, grad_ckpt: bool):
    """The model (training heads iff ``heads``), its trainable parts per ``mode``, and AdamW."""
    cfg = get_preset(preset)
    torch.manual_seed(0)
    with default_dtype(dtype), torch.device(device):
        model = Ros3DForConditionalGeneration(cfg, training_heads=heads)
    if mode == "lora":
        lora = LoraConfig(enabled=True, r=64, alpha=128, dropout=0.0, apply_to=["llm"])
        apply_lora(model, lora)
        optim = OptimConfig(lr=1e-4, parts={"vision_tower": PartConfig(train=False)})
    else:
        lora = LoraConfig()
        optim = OptimConfig(lr=1e-4, parts={"vision_tower": PartConfig(train=mode == "full")})
    configure_trainable(model, optim, lora)
    model.to(device)
    if grad_ckpt:
        model.gradient_checkpointing_enable()
    return model.train(), build_optimizer(model, optim), cfg


def _top_level(counts: dict[str, dict], root: str) -> int:
    """FLOPs of the outermost counted modules under ``root`` (children are already inside their parents)."""
    keys = [k for k in counts if k == root or k.startswith(root + ".")]
    tops = [k for k in keys if not any(k != o and k.startswith(o + ".") for o in keys)]
    return sum(sum(counts[k].values()) for k in tops)


def model_flops(model, batch: dict[str, torch.Tensor], mode: str, autocast) -> float:
    """Model FLOPs of one training step (see the module docstring), averaged over the Ross3D schedule."""
    from torch.utils.flop_counter import FlopCounterMode

    interval = model.config.ross3d.mask_interval if model.config.ross3d is not None else 1
    per_step = []
    lm_cfg = model.language_model.config
    impl = lm_cfg._attn_implementation
    for step in sorted({0, 1} if interval > 1 else {0}):
        # A forward with autograd on (the module tracker needs it), its graph dropped right away.
        # Eager attention while counting: torch's SDPA FLOP formula rejects grouped-query shapes.
        lm_cfg._attn_implementation = "eager"
        try:
            with autocast(), FlopCounterMode(display=False) as fc:
                del model(**batch, global_step=step).loss
        finally:
            lm_cfg._attn_implementation = impl
        counts = fc.get_flop_counts()
        fwd = {p: _top_level(counts, f"Ros3DForConditionalGeneration.{p}") for p in PARTS}
        trained = {p: any(prm.requires_grad for n, prm in model.named_parameters() if n.startswith(p + ".") or n == p) for p in PARTS}
        b = {
            "vision_tower": 2 if trained["vision_tower"] else 0,
            "mm_projector": 2 if trained["mm_projector"] else (1 if trained["vision_tower"] else 0),
            "language_model": 2 if mode == "full" else 1,
            "grounding_head": 2, "training_heads": 2,
        }
        other = sum(counts.get("Global", {}).values()) - sum(fwd.values())  # pooling, position code, ...
        per_step.append((step, sum(f * (1 + b[p]) for p, f in fwd.items()) + 3 * max(other, 0)))
    if len(per_step) == 1:
        return per_step[0][1]
    mask, plain = per_step[0][1], per_step[1][1]
    return (mask + (interval - 1) * plain) / interval


def peak_tflops(device: torch.device, override: float | None) -> float | None:
    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def measure(preset: str, heads: bool, args: argparse.Namespace, device: torch.device) -> Result:
    views, B, mode, grad_ckpt, wdtype = DEFAULTS[preset]
    views = args.views or views
    B = args.batch or B
    mode = args.mode or mode
    grad_ckpt = grad_ckpt if args.grad_ckpt is None else args.grad_ckpt
    dtype = torch.bfloat16 if (device.type == "cuda" and wdtype == "bf16") else torch.float32
    model, opt, cfg = build(preset, heads, mode, device, dtype, grad_ckpt)
    batch = synthetic_batch(cfg, B, views, device, heads)
    amp = torch.bfloat16 if args.amp == "bf16" else None

    def autocast():
        return torch.autocast(device.type, dtype=amp) if amp is not None else contextlib.nullcontext()

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    gen = torch.Generator(device=device).manual_seed(0)
    step_no = 0

    def step() -> None:
        nonlocal step_no
        with autocast():
            out = model(**batch, global_step=step_no, generator=gen)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        step_no += 1

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(args.iters):
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    mean = statistics.mean(times)
    tokens = PROMPT_TOKENS + ANSWER_TOKENS - 1 + views * cfg.tokens_per_view
    try:
        flops = model_flops(model, batch, mode, autocast)
    except Exception as exc:  # noqa: BLE001 - a counting failure must not hide the timings
        print(f"warning: FLOP counting failed ({type(exc).__name__}: {exc}); MFU not reported", file=sys.stderr)
        flops = float("nan")
    peak = peak_tflops(device, args.peak_tflops)
    res = Result(
        preset=preset, heads=heads, mode=mode, views=views, batch=B, tokens_per_sample=tokens,
        step_s=mean, step_s_stdev=statistics.pstdev(times), tokens_per_s=B * tokens / mean,
        model_tflops_per_step=flops / 1e12, mfu=(flops / mean / (peak * 1e12)) if peak and flops == flops else None,
        peak_mem_gb=torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
        trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
    )
    return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", action="append", choices=available_presets(), help="repeatable (default: tiny)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--views", type=int, default=None, help="views per sample (default per preset: 4 / 8 / 32)")
    parser.add_argument("--batch", type=int, default=None, help="samples per step (default per preset: 2 / 16 / 1)")
    parser.add_argument("--mode", choices=("full", "frozen_vision", "lora"), default=None,
                        help="what trains (default: full for tiny/small, lora for llava-video-7b)")
    parser.add_argument("--grad-ckpt", dest="grad_ckpt", action="store_true", default=None)
    parser.add_argument("--no-grad-ckpt", dest="grad_ckpt", action="store_false")
    parser.add_argument("--amp", choices=("bf16", "none"), default=None, help="autocast (default bf16 on CUDA, none on CPU)")
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--iters", type=int, default=8, help="timed steps (a multiple of 4 keeps the masking share at 1/4)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="peak FLOP/s for MFU (default: known GPUs' bf16 peak)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", action="store_true", help="print one JSON object per result")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.amp is None:
        args.amp = "bf16" if device.type == "cuda" else "none"
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    presets = args.preset or ["tiny"]
    results = []
    for preset in presets:
        for heads in (False, True):
            r = measure(preset, heads, args, device)
            if device.type == "cuda":
                torch.cuda.empty_cache()  # the measured model is gone with measure()'s frame
            results.append(r)
            print(f"{preset:>15} heads={'on ' if heads else 'off'} {r.mode:>5} B={r.batch} V={r.views} "
                  f"step {r.step_s * 1e3:8.1f} ms ±{r.step_s_stdev * 1e3:.1f}  {r.tokens_per_s:10.0f} tok/s  "
                  f"{r.model_tflops_per_step:8.3f} TFLOP/step  MFU {'-' if r.mfu is None else f'{100 * r.mfu:5.1f}%'}"
                  f"  mem {'-' if r.peak_mem_gb is None else f'{r.peak_mem_gb:.1f} GB'}", flush=True)
        base, full = results[-2], results[-1]
        print(f"{preset:>15} training-heads overhead: {100 * (full.step_s / base.step_s - 1):+.1f}% step time "
              f"({100 * (full.model_tflops_per_step / base.model_tflops_per_step - 1):+.1f}% FLOPs)", flush=True)
    if args.json:
        for r in results:
            print(json.dumps({**asdict(r), "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
