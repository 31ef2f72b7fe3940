"""Run a checkpoint over an annotation split, write the predictions JSONL, score it with ros3d_agent.eval.

``ros3d-agent eval run --checkpoint CKPT --data DIR --benchmark B [--split test]`` (or
``accelerate launch -m training.evaluate ...`` to shard the records over several GPUs: each
process predicts every W-th record, the main process merges and scores).

Predictions come from the model directly (the inference engine is not used here, so the numbers
measure the model, not the engine's caching): the same view selection as training, the same
prompts without the answer, greedy decoding for text; for grounding the ``<ground>`` token's scores
over the proposals: ScanRefer gets every proposal best first, Multi3DRefer the set
:func:`~ros3d_agent.model.grounding.select_multi` picks (possibly empty). Proposals are the cached
predicted ones (the benchmark protocol) or, with ``proposals="gt"``, the scene's objects.json boxes
(an oracle upper bound, labelled as such in the result). Scan2Cap captions describe the proposal
that best overlaps the annotated box (its centre goes into ``<coord>``), as the reference does.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ros3d_agent.eval.benchmarks import BENCHMARK_NAMES, BENCHMARKS, EvalResult, score_benchmark
from ros3d_agent.eval.predictions import Prediction, read_predictions, write_predictions
from ros3d_agent.model.geometry_inputs import frames_to_tensors, stack_views
from ros3d_agent.model.grounding import select_multi
from ros3d_agent.model.tokenizer import build_prompt, collate_prompts
from ros3d_agent.scene.annotations.records import AnnotationRecord, read_annotations
from ros3d_agent.scene.iou import pairwise_aabb_iou
from ros3d_agent.scene.scene_dir import SceneDir

from .cache import CacheLayout, cache_proposals, load_proposals
from .data import discover_scene_dirs
from .views import ViewSpec, cached_views

__all__ = ["EvalRunConfig", "EvalRunResult", "evaluate", "main"]

log = logging.getLogger(__name__)


@dataclass
class EvalRunConfig:
    """One evaluation run.

    Attributes:
        checkpoint: a model checkpoint (``save_checkpoint`` format, with its tokenizer).
        data: the scene root (``<data>/annotations/<split>.jsonl`` unless ``annotations`` is given).
        benchmark: one of :data:`ros3d_agent.eval.BENCHMARK_NAMES`.
        num_views / sampling / coverage_stop: view selection (None: the training run's, read from
            ``<checkpoint>/../run_config.json`` when there is one, else 8 uniform views).
        proposals: ``predicted`` (cached class-agnostic proposals) or ``gt`` (oracle boxes).
        out_dir: where ``predictions.jsonl`` and ``metrics.json`` go (default
            ``<checkpoint>/eval/<benchmark>-<split>``).
    """

    checkpoint: str
    data: str
    benchmark: str
    split: str = "test"
    annotations: str | None = None
    out_dir: str | None = None
    num_views: int | None = None
    sampling: str | None = None
    coverage_stop: float | None = None
    proposals: str = "predicted"
    max_proposals: int = 50
    batch_size: int = 4
    max_new_tokens: int = 32
    limit: int | None = None
    java: bool = True
    dtype: str | None = None
    cache_dir: str | None = None

    def validate(self) -> None:
        if self.benchmark not in BENCHMARKS:
            raise ValueError(f"unknown benchmark {self.benchmark!r}; known: {list(BENCHMARK_NAMES)}")
        if self.proposals not in ("predicted", "gt"):
            raise ValueError(f"proposals must be 'predicted' or 'gt', got {self.proposals!r}")
        if self.batch_size < 1 or self.max_new_tokens < 1 or self.max_proposals < 1:
            raise ValueError("batch_size, max_new_tokens and max_proposals must be >= 1")
        if self.num_views is not None and self.num_views < 1:
            raise ValueError(f"num_views must be >= 1, got {self.num_views}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")
        if not Path(self.checkpoint).is_dir():
            raise FileNotFoundError(f"checkpoint {self.checkpoint} is not a directory")
        if not Path(self.data).is_dir():
            raise FileNotFoundError(f"--data {self.data} is not a directory")

    def annotation_file(self) -> Path:
        return Path(self.annotations) if self.annotations else Path(self.data) / "annotations" / f"{self.split}.jsonl"


@dataclass
class EvalRunResult:
    predictions_path: Path
    metrics_path: Path
    result: EvalResult
    notes: list[str] = field(default_factory=list)


def _view_spec(cfg: EvalRunConfig) -> ViewSpec:
    """The eval view rule: explicit settings win, then the training run's, then 8 uniform views."""
    trained: dict[str, Any] = {}
    run_cfg = Path(cfg.checkpoint).resolve().parent / "run_config.json"
    if run_cfg.is_file():
        trained = json.loads(run_cfg.read_text(encoding="utf-8")).get("data", {})
    sampling = cfg.sampling or trained.get("sampling", "uniform")
    return ViewSpec(sampling, cfg.num_views or int(trained.get("num_views", 8)),
                    cfg.coverage_stop if cfg.coverage_stop is not None else trained.get("coverage_stop"))


def _proposal_boxes(cfg: EvalRunConfig, scene: SceneDir, layout: CacheLayout) -> np.ndarray:
    if cfg.proposals == "gt":
        boxes = np.array([o.box.to_list()[:6] for o in scene.load_objects()], dtype=np.float64).reshape(-1, 6)
    else:
        cache_proposals(scene, layout, cfg.max_proposals)
        boxes = load_proposals(layout, scene.scene_id)
        assert boxes is not None
    return boxes[: cfg.max_proposals]


class _Predictor:
    """Predictions of batches of records of one task (the model, tokenizer and scene caches it needs)."""

    def __init__(self, cfg: EvalRunConfig, model: Any, tokenizer: Any, device: torch.device, spec: ViewSpec, layout: CacheLayout,
                 scenes: dict[str, Path]) -> None:
        self.cfg, self.model, self.tok, self.device, self.spec, self.layout, self.scenes = cfg, model, tokenizer, device, spec, layout, scenes
        self._views: dict[str, tuple[list[str], Any]] = {}
        self._boxes: dict[str, np.ndarray] = {}

    def views(self, scene_id: str) -> tuple[list[str], Any]:
        """Frame ids and model inputs of a scene's views (a few scenes are kept: records come scene by scene)."""
        if scene_id not in self._views:
            if scene_id not in self.scenes:
                raise FileNotFoundError(f"scene {scene_id} is not under {self.cfg.data}")
            scene = SceneDir(self.scenes[scene_id])
            ids = cached_views(scene, self.spec, self.layout.scene_dir(scene_id))
            if len(self._views) >= 8:
                self._views.pop(next(iter(self._views)))
            self._views[scene_id] = (ids, frames_to_tensors([scene.load_frame(f) for f in ids], self.model.config.vision))
        return self._views[scene_id]

    def boxes(self, scene_id: str) -> np.ndarray:
        if scene_id not in self._boxes:
            self._boxes[scene_id] = _proposal_boxes(self.cfg, SceneDir(self.scenes[scene_id]), self.layout)
        return self._boxes[scene_id]

    def _frames(self, records: Sequence[AnnotationRecord]) -> dict[str, torch.Tensor]:
        views = stack_views([self.views(r.scene_id)[1] for r in records]).to(self.device)
        dtype = next(self.model.parameters()).dtype
        return {"pixel_values": views.pixel_values.to(dtype), "world_xyz": views.world_xyz, "world_valid": views.world_valid}

    @torch.no_grad()
    def text(self, records: Sequence[AnnotationRecord]) -> list[Prediction]:
        """QA / situated QA / caption: greedy answers."""
        centres, boxes = [], []
        for r in records:
            if r.task == "caption":
                assert r.box is not None
                box = np.asarray(r.box)
                if self.cfg.proposals == "predicted":
                    props = self.boxes(r.scene_id)
                    if props.shape[0]:
                        box = props[int(pairwise_aabb_iou(box[None], props)[0].argmax())]
                boxes.append(box)
                centres.append(box[:3])
        prompts = [build_prompt(self.tok, task=r.task, question=r.question,  # type: ignore[arg-type]
                                situation=r.situation.text if r.situation else None) for r in records]
        enc = collate_prompts(prompts, self.model.config.tokens.pad, padding_side="left")
        coord = torch.tensor(np.asarray(centres), dtype=torch.float32, device=self.device) if centres else None
        out = self.model.generate(enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device),
                                  **self._frames(records), coord_centres=coord, max_new_tokens=self.cfg.max_new_tokens)
        texts = self.tok.batch_decode(out, skip_special_tokens=True)
        preds, k = [], 0
        for r, t in zip(records, texts):
            box = None
            if r.task == "caption":
                box = [float(v) for v in boxes[k]]
                k += 1
            preds.append(Prediction(id=r.id, answer=t.strip(), box=box))
        return preds

    @torch.no_grad()
    def ground(self, records: Sequence[AnnotationRecord]) -> list[Prediction]:
        """ScanRefer: all proposals best first; Multi3DRefer: the selected set (may be empty)."""
        props = [self.boxes(r.scene_id) for r in records]
        P = max(1, max(p.shape[0] for p in props))
        proposals = torch.zeros(len(records), P, 6)
        proposals[..., 3:] = 1.0
        valid = torch.zeros(len(records), P, dtype=torch.bool)
        for i, p in enumerate(props):
            proposals[i, : p.shape[0]] = torch.from_numpy(p).float()
            valid[i, : p.shape[0]] = True
        prompts = [build_prompt(self.tok, task=r.task, question=r.question) for r in records]  # type: ignore[arg-type]
        enc = collate_prompts(prompts, self.model.config.tokens.pad)
        out = self.model(enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device), **self._frames(records),
                         proposals=proposals.to(self.device), proposal_valid=valid.to(self.device), logits_to_keep=1)
        logits = out.ground_logits.float().cpu()
        multi = select_multi(logits, self.model.config.grounding.multi_cum_prob_threshold)
        probs = torch.softmax(logits, dim=1)
        preds = []
        for i, r in enumerate(records):
            n = props[i].shape[0]
            if r.task == "multi_ground":
                idx = multi[i]
            else:
                idx = [int(j) for j in torch.argsort(logits[i, :n], descending=True, stable=True)]
            preds.append(Prediction(id=r.id, boxes=[props[i][j].tolist() for j in idx],
                                    scores=[float(probs[i, j]) for j in idx]))
        return preds


def evaluate(cfg: EvalRunConfig) -> EvalRunResult | None:
    """Predict and score (see the module docstring); returns None on non-main processes.

    Raises:
        ValueError / FileNotFoundError: a bad setting, a missing file or scene.
        EvalInputError (from ros3d_agent.eval): the split holds no record of the benchmark's task.
    """
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    from ros3d_agent.model.checkpoint import load_checkpoint

    cfg.validate()
    accelerator = Accelerator(cpu=not torch.cuda.is_available())  # CPU processes (torchrun) form a gloo group
    device = accelerator.device
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32, None: None}[cfg.dtype]
    if dtype is None and device.type == "cuda":
        dtype = torch.bfloat16
    ck = load_checkpoint(cfg.checkpoint, device=device, dtype=dtype)
    if ck.tokenizer is None:
        raise FileNotFoundError(f"checkpoint {cfg.checkpoint} has no tokenizer/ directory")
    bench = BENCHMARKS[cfg.benchmark]
    all_records = [r for r in read_annotations(cfg.annotation_file()) if r.task == bench.task]
    if cfg.limit is not None:
        all_records = all_records[: cfg.limit]
    if not all_records:
        raise ValueError(f"{cfg.annotation_file()}: no {bench.task!r} record for benchmark {cfg.benchmark}")
    mine = all_records[accelerator.process_index:: accelerator.num_processes]
    spec = _view_spec(cfg)
    layout = CacheLayout(Path(cfg.cache_dir) if cfg.cache_dir else Path(cfg.data) / ".ros3d_cache", None, None)
    predictor = _Predictor(cfg, ck.model, ck.tokenizer, device, spec, layout, discover_scene_dirs(cfg.data))

    # batches of one scene-view count (stackable), in record order within each
    by_views: dict[int, list[AnnotationRecord]] = defaultdict(list)
    for r in mine:
        by_views[len(predictor.views(r.scene_id)[0])].append(r)
    preds: list[Prediction] = []
    grounding = bench.task in ("ground", "multi_ground")
    bar = tqdm(total=len(mine), desc=f"eval {cfg.benchmark}", unit="sample", disable=not accelerator.is_main_process)
    for group in by_views.values():
        for i in range(0, len(group), cfg.batch_size):
            chunk = group[i: i + cfg.batch_size]
            preds += predictor.ground(chunk) if grounding else predictor.text(chunk)
            bar.update(len(chunk))
    bar.close()

    out_dir = Path(cfg.out_dir) if cfg.out_dir else Path(cfg.checkpoint) / "eval" / f"{cfg.benchmark}-{cfg.split}"
    out_dir.mkdir(parents=True, exist_ok=True)
    write_predictions(out_dir / f"predictions.rank{accelerator.process_index}.jsonl", preds)
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return None
    merged: dict[str, Prediction] = {}
    for r in range(accelerator.num_processes):
        part = out_dir / f"predictions.rank{r}.jsonl"
        merged.update(read_predictions(part))
        part.unlink()
    order = {r.id: i for i, r in enumerate(all_records)}
    ordered = sorted(merged.values(), key=lambda p: order[p.id])
    pred_path = out_dir / "predictions.jsonl"
    write_predictions(pred_path, ordered)
    result = score_benchmark(cfg.benchmark, all_records, merged, java=cfg.java)
    notes = []
    if cfg.proposals == "gt" and grounding:
        notes.append("proposals = ground-truth boxes (oracle): an upper bound, not the benchmark protocol")
    payload = {**result.to_dict(), "eval_run": {**asdict(cfg), "views": asdict(spec), "processes": accelerator.num_processes},
               "eval_notes": notes}
    metrics_path = out_dir / "metrics.json"
    metrics_path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return EvalRunResult(pred_path, metrics_path, result, notes)


def config_from_args(args: argparse.Namespace) -> EvalRunConfig:
    return EvalRunConfig(checkpoint=args.checkpoint, data=args.data, benchmark=args.benchmark, split=args.split,
                         annotations=args.annotations, out_dir=args.out, num_views=args.num_views, sampling=args.sampling,
                         proposals=args.proposals, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                         limit=args.limit, java=not args.no_java, dtype=args.dtype)


def main(argv: list[str] | None = None) -> int:
    """``python -m training.evaluate`` / ``accelerate launch -m training.evaluate`` (flags of ``ros3d-agent eval run``)."""
    from ros3d_agent.commands.eval_run import add_arguments

    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    res = evaluate(config_from_args(args))
    if res is not None:
        print(json.dumps(res.result.to_dict(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
