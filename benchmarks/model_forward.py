#!/usr/bin/env python3
"""Model size and forward cost per preset, against a baseline measured in the same run.

Why: the ROS node answers a query by running the LLM over the visual tokens of up to N keyframes. The
vision part (SigLIP + projector + pooling + 3D code) depends only on the keyframe, so the node encodes
each keyframe once and reuses its features; what a query then costs is the LLM forward. This script
reports, for each preset:

- parameter counts (vision tower / projector / LLM / grounding head, the training-only heads apart,
  and the fp16 size), with ``llava-video-7b`` built on the meta device so nothing is allocated;
- the time of a full forward (frames → answer logits) and of the baseline the node actually runs
  per query: the same forward with cached visual features (``visual=``), plus the encode alone;
- on CUDA, peak memory of the full forward.

    python benchmarks/model_forward.py                                   # counts + tiny/small on CPU
    python benchmarks/model_forward.py --device cpu --preset tiny --views 32
    python benchmarks/model_forward.py --device cuda --preset llava-video-7b --views 32   # bf16, GPU

One JSON object per measured preset is printed last (``--json``) for CI logs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout without installing

from ros3d_agent.model.modeling import Ros3DForConditionalGeneration, VisualFeatures  # noqa: E402
from ros3d_agent.model.presets import available_presets, get_preset  # noqa: E402

QUESTION_TOKENS = 80  # system prompt + spatial instruction + a question, roughly


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Build parameters directly in ``dtype`` (a 7B model never exists in fp32 on the device)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def count_parameters(preset: str) -> dict[str, float]:
    """Parameter counts of a preset, built on the meta device (no memory, seconds even for 7B)."""
    with torch.device("meta"):
        model = Ros3DForConditionalGeneration(get_preset(preset), training_heads=True)

    def n(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    inference = model.num_parameters(include_training_heads=False)
    return {
        "vision_tower": n(model.vision_tower),
        "mm_projector": n(model.mm_projector),
        "language_model": n(model.language_model),
        "grounding_head": n(model.grounding_head),
        "image_newline": model.image_newline.numel(),
        "inference_total": inference,
        "fp16_mb": inference * 2 / 1e6,
        **{f"training.{name}": n(head) for name, head in model.training_heads.items()},
    }


def timed(fn: Callable[[], object], device: torch.device, iters: int, warmup: int) -> list[float]:
    """Wall-clock seconds of ``fn`` (device-synchronised), after ``warmup`` untimed calls."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    out = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t)
    return out


def synthetic_inputs(model: Ros3DForConditionalGeneration, views: int, device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """One query: ``views`` frames at the tower's native size on a 6×6×3 m room, and a prompt."""
    cfg = model.config
    S = cfg.vision.image_size
    g = torch.Generator().manual_seed(0)
    u = torch.linspace(-3.0, 3.0, S)
    xyz = torch.stack(torch.broadcast_tensors(u[None, :], u[:, None], torch.zeros(S, S)), dim=-1)
    xyz = xyz[None, None].repeat(1, views, 1, 1, 1)
    xyz[..., 2] = torch.linspace(0.0, 3.0, views)[None, :, None, None]
    ids = torch.randint(10, min(cfg.language.vocab_size, 4000), (1, QUESTION_TOKENS), generator=g)
    ids[0, 0], ids[0, 20] = cfg.tokens.im_start, cfg.tokens.image
    return {
        "input_ids": ids.to(device),
        "pixel_values": torch.randn(1, views, 3, S, S, generator=g).to(device=device, dtype=dtype),
        "world_xyz": xyz.to(device),
        "world_valid": torch.ones(1, views, S, S, dtype=torch.bool, device=device),
    }


def measure(preset: str, device: torch.device, dtype: torch.dtype, views: int, iters: int, warmup: int, new_tokens: int = 0) -> dict[str, object]:
    torch.manual_seed(0)
    t = time.perf_counter()
    with torch.device(device), default_dtype(dtype):
        model = Ros3DForConditionalGeneration(get_preset(preset)).eval()
    build_s = time.perf_counter() - t
    inputs = synthetic_inputs(model, views, device, dtype)
    frames = {k: inputs[k] for k in ("pixel_values", "world_xyz", "world_valid")}

    with torch.inference_mode():
        visual: VisualFeatures = model.encode_frames(**frames)
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        full = timed(lambda: model(inputs["input_ids"], **frames), device, iters, warmup)
        peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
        cached = timed(lambda: model(inputs["input_ids"], visual=visual), device, iters, warmup)
        encode = timed(lambda: model.encode_frames(**frames), device, iters, warmup)
        generate = None
        if new_tokens:
            gen = lambda: model.generate(inputs["input_ids"], visual=visual, max_new_tokens=new_tokens, min_new_tokens=new_tokens)  # noqa: E731
            generate = timed(gen, device, max(1, iters // 2), 1)
    seq_len = inputs["input_ids"].shape[1] - 1 + visual.num_spliced_tokens
    full_ms, cached_ms = 1e3 * statistics.median(full), 1e3 * statistics.median(cached)
    return {
        "preset": preset,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": str(dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "views": views,
        "tokens_per_view": visual.num_spliced_tokens // views,
        "sequence_length": seq_len,
        "build_s": round(build_s, 2),
        "full_forward_ms": round(full_ms, 2),
        "baseline_cached_visual_ms": round(cached_ms, 2),
        "encode_frames_ms": round(1e3 * statistics.median(encode), 2),
        "full_over_cached": round(full_ms / cached_ms, 2),
        "peak_memory_gib": None if peak is None else round(peak, 2),
        "generate_tokens": new_tokens,
        "generate_cached_visual_ms": None if generate is None else round(1e3 * statistics.median(generate), 2),
        "iters": iters,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=available_presets(), action="append",
                        help="preset(s) to time (repeatable); default: tiny and small on CPU")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), help="default: float32 on CPU, bfloat16 on CUDA")
    parser.add_argument("--views", type=int, default=8, help="frames per query (the reference uses 32)")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, help="torch intra-op threads on CPU")
    parser.add_argument("--generate-tokens", type=int, default=0, help="also time greedy generation of this many tokens (cached visual)")
    parser.add_argument("--no-counts", action="store_true", help="skip the parameter table")
    parser.add_argument("--json", action="store_true", help="print one JSON line per measured preset")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda requested but CUDA is not available")
    if args.views < 1:
        parser.error("--views must be >= 1")
    dtype = getattr(torch, args.dtype) if args.dtype else (torch.bfloat16 if device.type == "cuda" else torch.float32)
    if args.threads:
        torch.set_num_threads(args.threads)
    presets = args.preset or ["tiny", "small"]

    if not args.no_counts:
        print("parameters (inference model; training-only heads listed apart)")
        for name in available_presets():
            c = count_parameters(name)
            heads = ", ".join(f"{k.split('.', 1)[1]} {v / 1e6:.2f}M" for k, v in c.items() if k.startswith("training."))
            print(f"  {name:15s} total {c['inference_total'] / 1e6:10.2f}M  (vision {c['vision_tower'] / 1e6:.2f}M, "
                  f"projector {c['mm_projector'] / 1e6:.2f}M, LLM {c['language_model'] / 1e6:.2f}M, "
                  f"grounding {c['grounding_head'] / 1e6:.2f}M)  fp16 {c['fp16_mb']:.1f} MB  | training heads: {heads}")

    results = []
    for name in presets:
        r = measure(name, device, dtype, args.views, args.iters, args.warmup, args.generate_tokens)
        results.append(r)
        mem = f", peak {r['peak_memory_gib']} GiB" if r["peak_memory_gib"] is not None else ""
        print(f"{name} on {r['device_name']} ({r['dtype']}, {r['views']} views × {r['tokens_per_view']} tokens, "
              f"sequence {r['sequence_length']}): full forward {r['full_forward_ms']} ms vs cached-visual baseline "
              f"{r['baseline_cached_visual_ms']} ms ({r['full_over_cached']}×), encode alone {r['encode_frames_ms']} ms{mem}")
        if r["generate_cached_visual_ms"] is not None:
            print(f"  generate {r['generate_tokens']} tokens (cached visual): {r['generate_cached_visual_ms']} ms")
    if args.json:
        for r in results:
            print(json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
