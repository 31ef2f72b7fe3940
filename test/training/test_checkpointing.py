"""Exact resume after SIGKILL, atomic checkpoint writes, pruning."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ros3d_agent.utils.processes import ManagedProcess, child_env, python_module_argv
from training import checkpointing as ck
from training.logging import read_metrics
from training.schedules import WarmupCosine, make_lr_scheduler

REPO = Path(__file__).resolve().parents[2]
TINY_YAML = REPO / "training" / "configs" / "tiny_cpu.yaml"


def _toy(seed: int):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    model[0].weight.requires_grad_(False)  # a frozen part, fingerprinted
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    sched = make_lr_scheduler(opt, WarmupCosine(1, 10))
    return model, opt, sched


def _train_step(model, opt, sched, gen: torch.Generator) -> None:
    x = torch.randn(16, 4, generator=gen)
    model(x).pow(2).mean().backward()
    opt.step()
    sched.step()
    opt.zero_grad()


def test_failed_save_never_breaks_latest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, opt, sched = _toy(0)
    gen = torch.Generator().manual_seed(1)
    _train_step(model, opt, sched, gen)
    ck.save_training_checkpoint(tmp_path, ck.TrainState(step=1, epoch=0, batch_in_epoch=1), model, opt, sched, generator=gen)
    saved = {n: p.detach().clone() for n, p in model.named_parameters()}
    _train_step(model, opt, sched, gen)

    # 1. a failure between two files of the save (after the weights, at the optimizer state)
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ck.torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        ck.save_training_checkpoint(tmp_path, ck.TrainState(step=2), model, opt, sched, generator=gen)
    monkeypatch.undo()
    root = tmp_path / ck.CHECKPOINTS_DIR
    assert (root / ck.LATEST_FILE).read_text().strip() == "step-00000001"
    assert (root / ".tmp-step-00000002").is_dir() and not (root / "step-00000002").exists()
    latest = ck.find_latest_checkpoint(tmp_path)
    fresh, fopt, fsched = _toy(0)
    fgen = torch.Generator()
    state = ck.load_training_checkpoint(latest, fresh, fopt, fsched, generator=fgen)
    assert (state.step, state.batch_in_epoch) == (1, 1) and fsched.last_epoch == 1
    for n, p in fresh.named_parameters():
        assert torch.equal(p, saved[n]), n
    # the restored generator continues exactly where the checkpointed one was
    assert torch.equal(torch.randn(3, generator=fgen), torch.randn(3, generator=torch.Generator().set_state(
        load_file(str(latest / "rng_rank0.safetensors"))["generator"])))

    # 2. a crash after the rename but before the pointer update: latest still names step 1; the
    #    next save of that step (by the resumed run) replaces the orphan; the stale tmp dir is gone
    def crash(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(ck, "_write_latest", crash)
    with pytest.raises(RuntimeError, match="killed"):
        ck.save_training_checkpoint(tmp_path, ck.TrainState(step=2), model, opt, sched, generator=gen)
    monkeypatch.undo()
    assert (root / "step-00000002").is_dir() and not (root / ".tmp-step-00000002").exists()
    assert (root / ck.LATEST_FILE).read_text().strip() == "step-00000001"
    assert ck.find_latest_checkpoint(tmp_path).name == "step-00000001"
    ck.save_training_checkpoint(tmp_path, ck.TrainState(step=2), model, opt, sched, generator=gen)
    assert ck.find_latest_checkpoint(tmp_path).name == "step-00000002"
    assert not list(root.glob(".tmp-*")) and not list(root.glob(".trash-*"))

    # 3. a checkpoint of another run (different frozen weights) is refused, not silently mixed
    other, oopt, osched = _toy(5)
    with pytest.raises(ck.CheckpointResumeError, match="frozen parameter"):
        ck.load_training_checkpoint(ck.find_latest_checkpoint(tmp_path), other, oopt, osched, generator=torch.Generator())


def test_keep_last_prunes_old_checkpoints(tmp_path: Path) -> None:
    model, opt, sched = _toy(0)
    gen = torch.Generator().manual_seed(0)
    for step in range(1, 6):
        _train_step(model, opt, sched, gen)
        ck.save_training_checkpoint(tmp_path, ck.TrainState(step=step), model, opt, sched, generator=gen, keep_last=2)
    assert [s for s, _ in ck.list_checkpoints(tmp_path)] == [4, 5]
    assert ck.find_latest_checkpoint(tmp_path).name == "step-00000005"


def _loss_rows(run_dir: Path) -> dict[int, dict[str, float]]:
    return {r["step"]: {k: v for k, v in r.items() if k.startswith(("loss/", "lr/"))} for r in read_metrics(run_dir / "metrics.jsonl")}


@pytest.mark.slow
def test_sigkill_and_resume_reproduce_the_uninterrupted_run(tmp_path: Path, tiny_data, make_config, tiny_overrides) -> None:
    """Run N steps; run again in a child process, SIGKILL it after a checkpoint, resume: the loss
    sequence (every term, every step) and the final weights match the uninterrupted run."""
    from training.trainer import train

    # checkpoints every 3 steps, logs every 2: a checkpoint cuts a logging window in half, and the
    # resumed run must finish that window exactly as the uninterrupted one did
    common = {"schedule.max_steps": 14, "checkpoint.save_every": 3, "checkpoint.keep_last": 5, "logging.recon_samples": 0,
              "logging.log_every": 2, "data.unlabeled_scenes": str(tiny_data["unlabeled"]), "data.unlabeled_fraction": 0.2}
    base = train(make_config(tmp_path / "a", **common))
    assert base.steps == 14

    run_b = tmp_path / "b"
    sets = [a for k, v in tiny_overrides(run_b, **common).items() for a in ("--set", f"{k}={json.dumps(v)}")]
    log_path = tmp_path / "child.log"
    with open(log_path, "w") as log_fh:
        proc = ManagedProcess(python_module_argv("training.trainer", "--config", str(TINY_YAML), *sets),
                              env=child_env(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1"), cwd=str(REPO),
                              stdout=log_fh, stderr=subprocess.STDOUT)
        with proc:
            latest = run_b / ck.CHECKPOINTS_DIR / ck.LATEST_FILE
            deadline = time.monotonic() + 180
            while proc.poll() is None and not latest.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            alive = proc.poll() is None
            if alive:
                proc.popen.send_signal(signal.SIGKILL)
                proc.popen.wait(timeout=30)
        code = proc.popen.returncode
    assert alive and code == -signal.SIGKILL, f"child ended before it could be killed (rc={code}):\n{log_path.read_text()[-3000:]}"
    assert not (run_b / "run_summary.json").exists() and not (run_b / "final").exists()
    killed_at = ck.find_latest_checkpoint(run_b)
    assert killed_at is not None and 3 <= int(killed_at.name.split("-")[1]) < 14

    resumed = train(make_config(run_b, **common), resume=True)
    assert resumed.resumed_from == killed_at and resumed.steps == 14

    a, b = _loss_rows(tmp_path / "a"), _loss_rows(run_b)
    assert sorted(a) == sorted(b) == list(range(2, 15, 2))
    worst = 0.0
    for step in a:
        assert a[step].keys() == b[step].keys(), step
        for key, value in a[step].items():
            worst = max(worst, abs(value - b[step][key]))
    print(f"largest deviation of the resumed run: {worst}")
    assert worst <= 1e-6, f"resumed run deviates by {worst}"
    wa = load_file(str(tmp_path / "a" / "final" / "model.safetensors"))
    wb = load_file(str(run_b / "final" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) <= 1e-6
