"""LR schedule, and the Ross3D schedule both as a plan and as what the real model then computes."""

from __future__ import annotations

import math

import pytest
import torch

from ros3d_agent.model.modeling import Ros3DForConditionalGeneration
from ros3d_agent.model.ross3d.configuration import Ross3DConfig
from training.collate import collate_samples
from training.schedules import Ross3DSchedule, WarmupCosine, make_lr_scheduler, warmup_steps_for
from training.trainer import model_inputs


def test_warmup_cosine() -> None:
    f = WarmupCosine(warmup=4, total=20, min_ratio=0.1)
    warm = [f(s) for s in range(4)]
    assert warm == sorted(warm) and 0 < warm[0] < warm[-1] < 1
    assert f(4) == pytest.approx(1.0)
    decay = [f(s) for s in range(4, 21)]
    assert all(a >= b for a, b in zip(decay, decay[1:]))
    assert f(20) == pytest.approx(0.1) and f(12) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert WarmupCosine(2, 10, kind="constant")(9) == 1.0
    assert warmup_steps_for(1000, 0.03, None) == 30 and warmup_steps_for(1000, 0.03, 7) == 7
    with pytest.raises(ValueError):
        WarmupCosine(warmup=11, total=10)
    # per-part learning rates keep their ratio under the schedule
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([{"params": [a], "lr": 1e-3}, {"params": [b], "lr": 1e-4}])
    sched = make_lr_scheduler(opt, WarmupCosine(2, 10))
    for _ in range(5):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(10 * opt.param_groups[1]["lr"])


def test_ross3d_plan() -> None:
    sched = Ross3DSchedule(Ross3DConfig.tiny(), {"ross3d_view": 1.0, "ross3d_bev": 1.0})
    assert [s for s in range(13) if sched.plan(s, "qa").view] == [0, 4, 8, 12]  # masking every Δt = 4 steps
    assert all(sched.plan(s, g).bev for s in range(13) for g in ("qa", "caption", "recon"))  # BEV every step
    assert not any(sched.plan(s, "grounding").view or sched.plan(s, "grounding").bev for s in range(13))
    off = Ross3DSchedule(Ross3DConfig.tiny(), {"ross3d_view": 0.0, "ross3d_bev": 1.0})
    assert not off.plan(0, "qa").view and off.plan(0, "qa").bev
    assert not Ross3DSchedule(None, {}).plan(0, "qa").bev
    every2 = Ross3DSchedule(Ross3DConfig.tiny(mask_interval=2), {"ross3d_view": 1.0})
    assert [s for s in range(6) if every2.mask_step(s)] == [0, 2, 4]


def test_model_follows_the_schedule(tiny_run) -> None:
    """Feeding the real model the trainer's inputs: view reconstruction (and masking) exactly on
    steps 0, 4, 8, BEV on every step, no Ross3D term on a grounding batch (but InfoNCE and 3DRS)."""
    ds, labeled, model_cfg = tiny_run["ds"], tiny_run["labeled"], tiny_run["model_cfg"]
    torch.manual_seed(0)
    model = Ros3DForConditionalGeneration(model_cfg, training_heads=True).train()
    sched = Ross3DSchedule(model_cfg.ross3d, model_cfg.loss_weights)
    qa = collate_samples([ds[i] for i, s in enumerate(labeled) if s.group == "qa"][:2], pad_id=0)
    gr = collate_samples([ds[i] for i, s in enumerate(labeled) if s.group == "grounding"][:2], pad_id=0)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for step in range(9):
            out = model(**model_inputs(qa, step, sched, torch.device("cpu"), gen))
            masked = step % 4 == 0
            assert ("ross3d_view" in out.losses) == masked, step
            assert (out.view_mask is not None and bool(out.view_mask.any())) == masked
            assert {"lm", "ross3d_bev", "align3drs"} <= set(out.losses)
        for step in (0, 1):
            out = model(**model_inputs(gr, step, sched, torch.device("cpu"), gen))
            assert set(out.losses) == {"ground", "align3drs", "loss"} and out.view_mask is None
