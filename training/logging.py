"""What a person watching a run sees: tensorboard scalars, ``metrics.jsonl``, a progress bar with
ETA, and PNG plots (loss curves; Ross3D reconstructions, see :mod:`.recon`).

Every loss term the model reports goes to tensorboard as ``loss/<term>`` (unweighted, as the model
logs them; ``loss/loss`` is the weighted total), the learning rate of every parameter group as
``lr/<group>``, and speed as ``perf/*``. ``metrics.jsonl`` holds the same numbers, one line per
logged step, with full float precision (the resume test compares it bit for bit). On resume both
are cut back to the checkpoint's step, so a re-done step never appears twice.

A record at step ``s`` describes the optimizer steps since the previous record (means over that
window), the last of which is the ``s``-th step; the model saw ``global_step = s - 1`` on it (the
Ross3D schedule counts from 0, so masking steps are logged at 1, 5, 9, ... with ``log_every: 1``).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

__all__ = ["METRICS_FILE", "RunLogger", "read_metrics", "plot_loss_curves"]

METRICS_FILE = "metrics.jsonl"


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` (a torn last line from a killed process is skipped)."""
    out = []
    if not Path(path).is_file():
        return out
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def _ema(values: list[float], alpha: float = 0.2) -> list[float]:
    out: list[float] = []
    for v in values:
        out.append(v if not out else alpha * v + (1 - alpha) * out[-1])
    return out


def plot_loss_curves(records: list[dict[str, Any]], path: Path, title: str = "training losses") -> Path | None:
    """One panel per loss term (raw + smoothed, log scale where positive); None without records."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    terms = sorted({k[5:] for r in records for k in r if k.startswith("loss/")}, key=lambda t: (t != "loss", t))
    if not terms:
        return None
    cols = min(3, len(terms))
    rows = math.ceil(len(terms) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for i, term in enumerate(terms):
        ax = axes[i // cols][i % cols]
        pts = [(r["step"], r[f"loss/{term}"]) for r in records if f"loss/{term}" in r]
        steps, vals = [p[0] for p in pts], [p[1] for p in pts]
        ax.plot(steps, vals, lw=0.8, alpha=0.4, color="tab:blue")
        ax.plot(steps, _ema(vals), lw=1.8, color="tab:blue")
        if vals and min(vals) > 0:
            ax.set_yscale("log")
        ax.set_title(term if term != "loss" else "total (weighted)", fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
    for j in range(len(terms), rows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


class RunLogger:
    """Tensorboard + metrics.jsonl + progress bar of the main process (a no-op elsewhere).

    Args:
        run_dir: the run directory (``tb/``, ``metrics.jsonl``, ``plots/`` go there).
        enabled: False on non-main processes.
        start_step: the step the run starts from (resume: the checkpoint's; later records are dropped).
        total_steps: for the bar's ETA.
        progress: show the tqdm bar.
    """

    def __init__(self, run_dir: Path, *, enabled: bool, start_step: int, total_steps: int, progress: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.metrics_path = self.run_dir / METRICS_FILE
        self._writer = None
        self._bar = None
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter
        from tqdm.auto import tqdm

        self.run_dir.mkdir(parents=True, exist_ok=True)
        kept = [r for r in read_metrics(self.metrics_path) if r.get("step", 0) <= start_step] if start_step else []
        with open(self.metrics_path, "w", encoding="utf-8") as fh:
            for r in kept:
                fh.write(json.dumps(r) + "\n")
        self._fh = open(self.metrics_path, "a", encoding="utf-8")
        # purge_step drops events a killed run wrote after its last checkpoint
        self._writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=start_step + 1 if start_step else None)
        self._bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True,
                         disable=not progress, file=sys.stderr, smoothing=0.1)

    def log(self, step: int, metrics: dict[str, float], text: dict[str, str] | None = None) -> None:
        """Write one step's numbers (tensorboard + jsonl)."""
        if not self.enabled:
            return
        for key, value in metrics.items():
            self._writer.add_scalar(key, value, step)
        self._fh.write(json.dumps({"step": step, **metrics, **(text or {})}) + "\n")
        self._fh.flush()

    def advance(self, n: int, postfix: dict[str, Any]) -> None:
        if self.enabled and self._bar is not None:
            self._bar.update(n)
            self._bar.set_postfix({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in postfix.items()}, refresh=False)

    def add_image(self, tag: str, png: Path, step: int) -> None:
        """Also show a saved PNG in tensorboard's image tab."""
        if not self.enabled:
            return
        import numpy as np
        from PIL import Image

        img = np.asarray(Image.open(png).convert("RGB"))
        self._writer.add_image(tag, img, step, dataformats="HWC")

    def plot_losses(self, title: str) -> Path | None:
        if not self.enabled:
            return None
        return plot_loss_curves(read_metrics(self.metrics_path), self.run_dir / "plots" / "loss_curves.png", title)

    def close(self) -> None:
        if not self.enabled:
            return
        self._bar.close()
        self._writer.flush()
        self._writer.close()
        self._fh.close()
