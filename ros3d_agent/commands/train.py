"""`ros3d-agent train --config CFG [--resume] [--max-steps N] [--output DIR] [--set KEY=VALUE ...]`.

Thin CLI layer over :func:`training.trainer.train` (the ``training`` package is imported only when
the command runs: the library itself never imports it). The same flags work with
``python -m training.trainer`` and ``accelerate launch -m training.trainer`` for multi-GPU /
multi-node runs (see ``training/README.md``). Exit 0 on success, 2 on a bad config or data.
"""

from __future__ import annotations

import json
import sys


def add_arguments(parser) -> None:
    parser.add_argument("--config", required=True, metavar="CFG.yaml", help="training config (e.g. training/configs/tiny_cpu.yaml)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the latest checkpoint in the output directory (exactly where it stopped)")
    parser.add_argument("--max-steps", type=int, default=None, metavar="N", help="override schedule.max_steps")
    parser.add_argument("--output", default=None, metavar="DIR", help="override run.output_dir")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config key, e.g. --set data.scenes=/data/scenes --set train.batch_size=2")


def main(args) -> int:
    import logging

    from training.config import TrainConfigError
    from training.data import DataError
    from training.trainer import config_from_args, train

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = config_from_args(args)
        result = train(cfg, resume=args.resume)
    except (TrainConfigError, DataError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"run_dir": str(result.run_dir), "steps": result.steps,
                      "final_model": str(result.final_model) if result.final_model else None,
                      "metrics": str(result.metrics_path), "plots": [str(p) for p in result.plots]}))
    return 0
