"""`ros3d-agent eval run --checkpoint CKPT --data DIR --benchmark B [--split test] ...`.

Runs a model checkpoint over an annotation split, writes ``predictions.jsonl`` and scores it with
:mod:`ros3d_agent.eval` (``metrics.json`` beside it; the metrics are printed as JSON). Thin CLI
layer over :func:`training.evaluate.evaluate`, imported only when the command runs. For several
GPUs: ``accelerate launch -m training.evaluate`` with the same flags. Exit 0 on success, 2 on bad
inputs.
"""

from __future__ import annotations

import json
import sys

from ros3d_agent.eval.benchmarks import BENCHMARK_NAMES


def add_arguments(parser) -> None:
    parser.add_argument("--checkpoint", required=True, help="model checkpoint directory (e.g. runs/x/final)")
    parser.add_argument("--data", required=True, help="scene root holding annotations/<split>.jsonl")
    parser.add_argument("--benchmark", required=True, choices=BENCHMARK_NAMES, help="which benchmark's task and metrics")
    parser.add_argument("--split", default="test", help="annotation split (default test)")
    parser.add_argument("--annotations", default=None, metavar="FILE.jsonl", help="annotation file (default <data>/annotations/<split>.jsonl)")
    parser.add_argument("--out", default=None, metavar="DIR", help="output directory (default <checkpoint>/eval/<benchmark>-<split>)")
    parser.add_argument("--num-views", type=int, default=None, help="views per sample (default: the training run's, else 8)")
    parser.add_argument("--sampling", choices=("uniform", "max_coverage"), default=None, help="view sampling (default: the training run's)")
    parser.add_argument("--proposals", choices=("predicted", "gt"), default="predicted",
                        help="grounding candidates: predicted proposals (benchmark protocol) or GT boxes (oracle upper bound)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="score only the first N records of the task")
    parser.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default=None, help="default: bf16 on GPU, fp32 on CPU")
    parser.add_argument("--no-java", action="store_true", help="skip METEOR (needs Java); BLEU/ROUGE-L/CIDEr still computed")


def main(args) -> int:
    import logging

    from ros3d_agent.eval.benchmarks import EvalInputError
    from ros3d_agent.model.checkpoint import CheckpointError
    from ros3d_agent.scene.annotations.records import AnnotationError
    from training.evaluate import config_from_args, evaluate

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        res = evaluate(config_from_args(args))
    except (ValueError, FileNotFoundError, EvalInputError, CheckpointError, AnnotationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if res is None:  # a non-main process of a sharded run
        return 0
    for note in res.result.notes + res.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"predictions: {res.predictions_path}\nmetrics: {res.metrics_path}", file=sys.stderr)
    print(json.dumps(res.result.to_dict(), indent=2))
    return 0
