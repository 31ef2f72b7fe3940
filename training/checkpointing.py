"""Training checkpoints that resume exactly and never leave a broken ``latest``.

A checkpoint directory ``<run>/checkpoints/step-XXXXXXXX/`` holds everything that decides the rest
of the run::

    trainable.safetensors     every trainable parameter (frozen ones are rebuilt identically from
                              the seed / init checkpoint; their fingerprint is checked on resume)
    optimizer.pt              AdamW state (tensors and numbers only: loaded with weights_only=True)
    scheduler.json            LambdaLR state (step counters, base lrs)
    scaler.json               fp16 loss-scaler state (fp16 runs only)
    rng_rank<R>.json/.safetensors   Python, NumPy, torch CPU/CUDA and the trainer's noise generator,
                              one pair per process
    accelerate/               sharded model/optimizer state (DeepSpeed / FSDP runs only)
    trainer_state.json        step, epoch, batch position in the epoch, counters; written last

Atomicity: everything is written into a hidden ``.tmp-step-XXXXXXXX`` directory, each file and the
directory are fsynced, the directory is renamed to its final name, and only then is the ``latest``
pointer file replaced (itself written to a temporary name, fsynced and renamed). A crash at any
point leaves ``latest`` naming the previous complete checkpoint; leftovers are removed by the next
save. Data position needs no sampler state: the batch order of an epoch is a pure function of the
seed and the epoch (:mod:`.batching`).
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "CHECKPOINTS_DIR",
    "LATEST_FILE",
    "TrainState",
    "DistInfo",
    "capture_rng",
    "restore_rng",
    "save_training_checkpoint",
    "find_latest_checkpoint",
    "load_training_checkpoint",
    "list_checkpoints",
    "CheckpointResumeError",
]

log = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
LATEST_FILE = "latest"
STATE_FILE = "trainer_state.json"
FORMAT = "ros3d_train_state/1"
_STEP_RE = re.compile(r"^step-(\d{8})$")


class CheckpointResumeError(RuntimeError):
    """A training checkpoint that cannot be resumed into this run (missing files, another model)."""


@dataclass
class TrainState:
    """Where the run is: optimizer ``step``, data position (``epoch``, ``batch_in_epoch`` = batches of
    the epoch this process has consumed), running counters, and the not yet logged part of the
    current logging window (so logging resumes exactly too)."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    samples_seen: int = 0
    tokens_seen: int = 0
    elapsed_s: float = 0.0
    log_window: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the run; ``barrier`` waits for all processes."""

    rank: int = 0
    world_size: int = 1
    barrier: Callable[[], None] = lambda: None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


# ------------------------------------------------------------------------------------------------
# fsync helpers
# ------------------------------------------------------------------------------------------------
def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json(path: Path, data: Any) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_tree(root: Path) -> None:
    for dirpath, _, filenames in os.walk(root):
        for f in filenames:
            _fsync_file(Path(dirpath) / f)
        _fsync_dir(Path(dirpath))


# ------------------------------------------------------------------------------------------------
# RNG
# ------------------------------------------------------------------------------------------------
def capture_rng(generator: torch.Generator | None) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(json_part, tensor_part)`` of every random state that influences training."""
    py = random.getstate()
    np_state = np.random.get_state()
    js = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    if generator is not None:
        tensors["generator"] = generator.get_state()
    return js, tensors


def restore_rng(js: dict[str, Any], tensors: dict[str, torch.Tensor], generator: torch.Generator | None) -> None:
    py = js["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = js["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
    if cuda and torch.cuda.is_available():
        if len(cuda) != torch.cuda.device_count():
            log.warning("checkpoint has %d CUDA RNG states, this machine %d GPUs; restoring what fits", len(cuda), torch.cuda.device_count())
        for i, s in enumerate(cuda[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(s, i)
    if generator is not None:
        if "generator" not in tensors:
            raise CheckpointResumeError("the checkpoint has no state of the trainer's noise generator")
        generator.set_state(tensors["generator"].to(generator.get_state().device))


# ------------------------------------------------------------------------------------------------
# save
# ------------------------------------------------------------------------------------------------
def _frozen_fingerprint(model: nn.Module) -> dict[str, float]:
    """A float64 sum per frozen parameter: a resumed run must rebuild the very same frozen weights."""
    with torch.no_grad():
        return {n: float(p.detach().sum(dtype=torch.float64)) for n, p in model.named_parameters() if not p.requires_grad}


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete step checkpoints ``(step, path)``, oldest first."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    out = []
    if root.is_dir():
        for d in root.iterdir():
            m = _STEP_RE.match(d.name)
            if m and (d / STATE_FILE).is_file():
                out.append((int(m.group(1)), d))
    return sorted(out)


def _write_latest(root: Path, name: str) -> None:
    tmp = root / f".{LATEST_FILE}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(name + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, root / LATEST_FILE)
    _fsync_dir(root)


def _read_latest(root: Path) -> str | None:
    try:
        return (root / LATEST_FILE).read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def save_training_checkpoint(
    run_dir: Path,
    state: TrainState,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    *,
    generator: torch.Generator | None,
    dist: DistInfo = DistInfo(),
    scaler: Any | None = None,
    keep_last: int = 2,
    run_config: dict[str, Any] | None = None,
    accelerator: Any | None = None,
) -> Path:
    """Write a checkpoint of ``state.step`` atomically and point ``latest`` at it (see the module docstring).

    Every process calls this (each writes its RNG state); ``model`` is the unwrapped model. With
    ``accelerator`` given and a sharded strategy (DeepSpeed / FSDP), model and optimizer go through
    ``accelerator.save_state`` instead of the single-file writers.

    Returns:
        The final checkpoint directory.
    """
    from safetensors.torch import save_file

    root = Path(run_dir) / CHECKPOINTS_DIR
    name = f"step-{state.step:08d}"
    tmp = root / f".tmp-{name}"
    final = root / name
    if dist.is_main:
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(".tmp-*"):  # a crashed earlier save
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir()
    dist.barrier()

    js, tensors = capture_rng(generator)
    _write_json(tmp / f"rng_rank{dist.rank}.json", js)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / f"rng_rank{dist.rank}.safetensors"))

    sharded = accelerator is not None and getattr(accelerator, "distributed_type", None) is not None and \
        str(accelerator.distributed_type).rsplit(".", 1)[-1] in ("DEEPSPEED", "FSDP")
    if sharded:
        accelerator.save_state(str(tmp / "accelerate"))
    if dist.is_main:
        if not sharded:
            trainable = {n: p.detach().to("cpu").contiguous() for n, p in model.named_parameters() if p.requires_grad}
            save_file(trainable, str(tmp / "trainable.safetensors"))
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        _write_json(tmp / "scheduler.json", scheduler.state_dict())
        if scaler is not None:
            _write_json(tmp / "scaler.json", scaler.state_dict())
        if not sharded:  # sharded parameters are flat shards: nothing comparable per name
            _write_json(tmp / "fingerprint.json", _frozen_fingerprint(model))
        if run_config is not None:
            _write_json(tmp / "run_config.json", run_config)
        # the commit marker of the directory: written last
        _write_json(tmp / STATE_FILE, {"format": FORMAT, "world_size": dist.world_size, "sharded": sharded, **asdict(state)})
    dist.barrier()
    if dist.is_main:
        _fsync_tree(tmp)
        trash = None
        if final.exists():  # left by a crash between rename and pointer update; about to be replaced
            trash = root / f".trash-{name}-{os.getpid()}"
            os.rename(final, trash)
        os.rename(tmp, final)
        _fsync_dir(root)
        _write_latest(root, name)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
        _prune(Path(run_dir), keep_last)
    dist.barrier()
    return final


def _prune(run_dir: Path, keep_last: int) -> None:
    ckpts = list_checkpoints(run_dir)
    latest = _read_latest(run_dir / CHECKPOINTS_DIR)
    for step, path in ckpts[:-keep_last] if keep_last > 0 else ckpts:
        if path.name != latest:
            shutil.rmtree(path, ignore_errors=True)


# ------------------------------------------------------------------------------------------------
# load
# ------------------------------------------------------------------------------------------------
def find_latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint ``latest`` names; without a (valid) pointer, the newest complete one; else None."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    name = _read_latest(root)
    if name is not None:
        path = root / name
        if (path / STATE_FILE).is_file():
            return path
        log.warning("%s names %s, which is not a complete checkpoint; using the newest complete one", root / LATEST_FILE, name)
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1][1] if ckpts else None


def load_training_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    *,
    generator: torch.Generator | None,
    dist: DistInfo = DistInfo(),
    scaler: Any | None = None,
    accelerator: Any | None = None,
) -> TrainState:
    """Restore a checkpoint into a freshly built run (same config): weights, optimizer, scheduler,
    loss scaler, RNG states. Returns the data position to continue from.

    Raises:
        CheckpointResumeError: missing files, another world size, or frozen weights / trainable
            names that differ from the checkpointed run's (another init checkpoint, seed or LoRA setup).
    """
    from safetensors.torch import load_file

    path = Path(path)
    state_file = path / STATE_FILE
    if not state_file.is_file():
        raise CheckpointResumeError(f"{path} is not a complete training checkpoint (no {STATE_FILE})")
    meta = json.loads(state_file.read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT:
        raise CheckpointResumeError(f"{state_file}: unknown format {meta.get('format')!r}")
    if meta["world_size"] != dist.world_size:
        raise CheckpointResumeError(f"{path} was written by {meta['world_size']} process(es), this run has {dist.world_size}: "
                                    "the data order per process would differ (resume with the same number of processes)")
    if meta.get("sharded"):
        if accelerator is None:
            raise CheckpointResumeError(f"{path} holds a sharded (DeepSpeed/FSDP) state; resume under the same launcher")
        accelerator.load_state(str(path / "accelerate"))
    else:
        weights = load_file(str(path / "trainable.safetensors"))
        own = {n for n, p in model.named_parameters() if p.requires_grad}
        if set(weights) != own:
            missing, extra = sorted(own - set(weights)), sorted(set(weights) - own)
            raise CheckpointResumeError(f"{path}: trainable parameters differ from this run's (missing {missing[:5]}, "
                                        f"unexpected {extra[:5]}); was it written with another freezing / LoRA setting?")
        params = dict(model.named_parameters())
        with torch.no_grad():
            for n, t in weights.items():
                params[n].copy_(t.to(device=params[n].device, dtype=params[n].dtype))
        opt_state = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
        optimizer.load_state_dict(opt_state)
    fp_file = path / "fingerprint.json"
    if fp_file.is_file():
        saved = json.loads(fp_file.read_text(encoding="utf-8"))
        now = _frozen_fingerprint(model)
        bad = [n for n, v in saved.items() if n not in now or not np.isclose(now[n], v, rtol=1e-6, atol=1e-6)]
        if bad:
            raise CheckpointResumeError(f"{path}: {len(bad)} frozen parameter(s) differ from the checkpointed run's, e.g. {bad[:3]} "
                                        "(another init checkpoint or seed?)")
    scheduler.load_state_dict(json.loads((path / "scheduler.json").read_text(encoding="utf-8")))
    if scaler is not None:
        sc = path / "scaler.json"
        if not sc.is_file():
            raise CheckpointResumeError(f"{path}: fp16 run but the checkpoint has no loss-scaler state")
        scaler.load_state_dict(json.loads(sc.read_text(encoding="utf-8")))
    rng_js = path / f"rng_rank{dist.rank}.json"
    if not rng_js.is_file():
        raise CheckpointResumeError(f"{path}: no RNG state for process {dist.rank}")
    restore_rng(json.loads(rng_js.read_text(encoding="utf-8")), load_file(str(path / f"rng_rank{dist.rank}.safetensors")), generator)
    keys = {f.name for f in TrainState.__dataclass_fields__.values()}
    return TrainState(**{k: v for k, v in meta.items() if k in keys})
