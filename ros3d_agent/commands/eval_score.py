"""`ros3d-agent eval score --benchmark B --pred PRED.jsonl --gt GT.jsonl [--no-java] [--strict]`.

Prints the metrics as one JSON object on stdout (percent units; see
:mod:`ros3d_agent.eval.benchmarks`) and notes on stderr. Exit 0 on success, 2 when a file is
missing or malformed or the inputs do not fit the benchmark. Thin wrapper over
:func:`ros3d_agent.eval.benchmarks.score_files`.
"""

from __future__ import annotations

import json
import sys

from ros3d_agent.eval.benchmarks import BENCHMARK_NAMES


def add_arguments(parser) -> None:
    parser.add_argument("--benchmark", required=True, choices=BENCHMARK_NAMES, help="which benchmark's metrics to compute")
    parser.add_argument("--pred", required=True, metavar="PRED.jsonl", help="predictions JSONL ({id, answer} or {id, boxes, scores})")
    parser.add_argument("--gt", required=True, metavar="GT.jsonl",
                        help="annotation JSONL; records of other tasks are ignored")
    parser.add_argument("--no-java", action="store_true",
                        help="skip the Java scorers: METEOR is reported as null (BLEU/ROUGE-L/CIDEr still computed)")
    parser.add_argument("--strict", action="store_true",
                        help="fail (exit 2) when a GT id has no prediction or a prediction id is not in the GT")


def main(args) -> int:
    from ros3d_agent.eval.benchmarks import EvalInputError, score_files
    from ros3d_agent.eval.predictions import PredictionError
    from ros3d_agent.scene.annotations.records import AnnotationError

    print(f"eval score: {args.benchmark}: {args.pred} vs {args.gt}", file=sys.stderr)
    try:
        result = score_files(args.benchmark, args.pred, args.gt, java=not args.no_java, strict=args.strict)
    except (EvalInputError, PredictionError, AnnotationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    print(json.dumps(result.to_dict(), indent=2))
    return 0
