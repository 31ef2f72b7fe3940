"""Evaluation: the benchmark metrics exactly as the reference evaluations define them.

* :mod:`.text_normalization`: answer/caption clean-up conventions (ScanQA raw, SQA3D/LEO clean-up,
  EM-R whitespace squeeze, Scan2Cap "sos ... eos" wrapping);
* :mod:`.qa_metrics`: ScanQA EM, SQA3D EM, EM-R;
* :mod:`.caption_metrics`: BLEU-1..4, METEOR, ROUGE-L, CIDEr through pycocoevalcap;
* :mod:`.grounding_metrics`: ScanRefer Acc@k, Multi3DRefer F1@k, the reference selection rules;
* :mod:`.caption_grounded`: Scan2Cap metrics @0.5 IoU;
* :mod:`.predictions`: the predictions JSONL (read/write/validate);
* :mod:`.benchmarks`: benchmark name → task → metrics → :class:`EvalResult`.

Units: every aggregate metric (a dict keyed by metric name: EM, Acc@0.25, CIDEr, ...) is ×100,
as the papers print them; per-sample values stay on the metric's native scale.

Nothing here imports rclpy or torch; numpy/scipy/pycocoevalcap are imported by the modules that
need them, so importing this package (and the CLI) stays cheap.
"""

from .benchmarks import BENCHMARK_NAMES, BENCHMARKS, UNITS, Benchmark, EvalInputError, EvalResult, score_benchmark, score_files
from .predictions import Prediction, PredictionError, read_predictions, write_predictions
from .qa_metrics import QAMatch, match_scanqa, match_sqa3d, qa_scores, refined_match
from .text_normalization import scan2cap_wrap, sqa3d_clean_answer

__all__ = [
    "BENCHMARKS",
    "BENCHMARK_NAMES",
    "UNITS",
    "Benchmark",
    "EvalInputError",
    "EvalResult",
    "score_benchmark",
    "score_files",
    "Prediction",
    "PredictionError",
    "read_predictions",
    "write_predictions",
    "QAMatch",
    "match_scanqa",
    "match_sqa3d",
    "refined_match",
    "qa_scores",
    "sqa3d_clean_answer",
    "scan2cap_wrap",
]
