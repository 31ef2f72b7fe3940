"""The README demo (``make demo`` → ``scripts/demo.sh`` → ``ros3d-agent demo``): a robot's questions
answered live, from a recorded bag, with the real node.

1. ``ros3d-agent doctor``: the environment check, as a short table (stops on a failure);
2. data, cached under ``.cache/demo/`` (reused when present): a synthetic room rendered at
   320×240 (``scene.synthetic``), its annotations (``scene.annotations``) and its rosbag
   (``scene.bag_export``: RGB, depth, camera_info, the robot's TF chain);
3. the node started as ``ros3d-agent run`` with the bundled demo checkpoint
   (``models/demo_small``) when it exists, else the ``tiny`` preset with random weights, which the
   demo says plainly;
4. the bag played in real time with ``/clock`` (:mod:`.realtime`), six questions from the scene's
   annotations (QA, situated QA, grounding, multi-object grounding, captioning; one asked while the
   bag plays) sent through the ``AskScene`` action;
5. each answer printed with its boxes and their IoU against the ground truth, the BEV picture with
   predicted and ground-truth boxes, and the summary (``outputs/demo/``).

Paths are relative to the working directory (``scripts/demo.sh`` runs from the repository root).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from ros3d_agent.replay.results import QuestionOutcome, box6
from ros3d_agent.replay.scenario import ModelChoice, ReplayQuestion
from ros3d_agent.utils.jsonl import read_json_object

__all__ = ["DemoConfig", "prepare_demo_data", "pick_questions", "run_demo", "RANDOM_WEIGHTS_NOTICE", "DEMO_CHECKPOINT"]

#: what the demo says when no trained model is bundled (the wording is part of the README's promise)
RANDOM_WEIGHTS_NOTICE: Final = "no trained model is bundled yet: answers are from random weights and meaningless; the plumbing is real"
DEMO_CHECKPOINT: Final = Path("models/demo_small")
#: order in which the demo asks (grounding before captioning: a caption describes an object the node has grounded)
_TASK_ORDER: Final = ("qa", "ground", "multi_ground", "situated_qa", "caption")
_DATA_VERSION: Final = 1


@dataclass(frozen=True)
class DemoConfig:
    """What the demo builds and how it runs (defaults: the README demo)."""

    seed: int = 7
    frames: int = 30
    width: int = 320
    height: int = 240
    bag_rate_hz: float = 10.0
    rate: float = 1.0
    cache: Path = Path(".cache/demo")
    out: Path = Path("outputs/demo")
    checkpoint: Path = DEMO_CHECKPOINT
    doctor: bool = True
    fresh: bool = False
    config: str = "workstation"

    @property
    def data_dir(self) -> Path:
        return self.cache / f"synth_{self.seed:05d}_{self.width}x{self.height}_{self.frames}f_{self.bag_rate_hz:g}hz"


@dataclass(frozen=True)
class DemoData:
    scene: Path
    annotations: Path
    bag: Path
    reused: bool
    seconds: float


def bundle_views_per_query(checkpoint: Path) -> int | None:
    """Views per query the bundled model was trained with (``results.json`` of ``training.bundle_demo``)."""
    views = read_json_object(checkpoint / "results.json").get("views_per_query")
    return views if isinstance(views, int) and 1 <= views <= 256 else None


def bundle_score_line(checkpoint: Path) -> str | None:
    """One line of the bundled model's measured held-out scores, or None."""
    evals = read_json_object(checkpoint / "results.json").get("evaluations")
    if not isinstance(evals, dict):
        return None
    wanted = (("scanqa", "EM", "QA EM"), ("sqa3d", "EM", "situated EM"), ("scanrefer", "Acc@0.25", "grounding Acc@0.25"),
              ("multi3drefer", "F1@0.25", "multi-object F1@0.25"), ("scan2cap", "CIDEr@0.5", "caption CIDEr@0.5"))
    parts = []
    for bench, key, label in wanted:
        entry = next((v for k, v in evals.items() if k.split("-", 1)[0] == bench and isinstance(v, dict)), None)
        value = (entry or {}).get("metrics", {}).get(key)
        if isinstance(value, (int, float)):
            parts.append(f"{label} {value:.1f}")
    return ", ".join(parts) or None


def prepare_demo_data(cfg: DemoConfig, say: Callable[[str], None] = print) -> DemoData:
    """Scene + annotations + bag under ``cfg.data_dir``, made once and reused (``ready.json`` marks a complete set)."""
    from ros3d_agent.scene.annotations.graph import load_scene_graph
    from ros3d_agent.scene.annotations.pipeline import AnnotateConfig, annotate_graphs
    from ros3d_agent.scene.annotations.records import write_annotations
    from ros3d_agent.scene.bag_export import BagExportConfig, export_scene_to_bag
    from ros3d_agent.scene.synthetic import GENERATOR_VERSION
    from ros3d_agent.scene.synthetic.generate import GenerateConfig, generate_scene

    t0 = time.perf_counter()
    d = cfg.data_dir
    marker = d / "ready.json"
    want = {"version": _DATA_VERSION, "generator_version": GENERATOR_VERSION, "seed": cfg.seed, "frames": cfg.frames,
            "width": cfg.width, "height": cfg.height, "bag_rate_hz": cfg.bag_rate_hz}
    if not cfg.fresh and marker.is_file():
        try:
            have = json.loads(marker.read_text())
        except ValueError:
            have = {}
        if {k: have.get(k) for k in want} == want:
            return DemoData(Path(have["scene"]), d / "annotations.jsonl", d / "bag", True, time.perf_counter() - t0)
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    say(f"making the demo data in {d} (cached for the next run)")
    summary = generate_scene(cfg.seed, d / "scenes", GenerateConfig(frames=cfg.frames, width=cfg.width, height=cfg.height))
    scene = Path(summary.path)
    say(f"  scene {summary.scene_id}: {summary.num_objects} objects, {summary.num_frames} frames {cfg.width}x{cfg.height} "
        f"({summary.seconds:.1f} s)")
    records = annotate_graphs({summary.scene_id: load_scene_graph(scene)}, AnnotateConfig(per_scene=6, seed=cfg.seed))
    write_annotations(d / "annotations.jsonl", records)
    say(f"  annotations: {len(records)} records ({', '.join(sorted({r.task for r in records}))})")
    res = export_scene_to_bag(scene, d / "bag", BagExportConfig(rate_hz=cfg.bag_rate_hz), progress=False)
    say(f"  bag: {res.frames_written} frames, {res.duration_s:.1f} s at {cfg.bag_rate_hz:g} Hz, {res.size_bytes / 1e6:.1f} MB")
    marker.write_text(json.dumps({**want, "scene": str(scene)}, indent=2))
    return DemoData(scene, d / "annotations.jsonl", d / "bag", False, time.perf_counter() - t0)


def pick_questions(records: Sequence[Any], bag_duration_s: float) -> list[ReplayQuestion]:
    """One question per task (two QA), preferring grounding questions with targets; the first QA
    is asked halfway through the bag, the rest after the last frame."""
    by_task: dict[str, list[Any]] = {t: [r for r in records if r.task == t] for t in _TASK_ORDER}
    missing = [t for t, rs in by_task.items() if not rs]
    if missing:
        raise ValueError(f"the demo scene's annotations have no {', '.join(missing)} question; use another --seed")
    multi = [r for r in by_task["multi_ground"] if r.boxes] or by_task["multi_ground"]
    picks: list[ReplayQuestion] = [ReplayQuestion(by_task["qa"][0], ask_at=round(bag_duration_s / 2, 3))]
    picks.append(ReplayQuestion(by_task["ground"][0]))
    picks.append(ReplayQuestion(multi[0]))
    picks.append(ReplayQuestion(by_task["situated_qa"][0]))
    picks.append(ReplayQuestion(by_task["caption"][0]))
    if len(by_task["qa"]) > 1:
        picks.append(ReplayQuestion(by_task["qa"][1]))
    return picks


def _fmt_box(b: Sequence[float]) -> str:
    return f"centre ({b[0]:.2f}, {b[1]:.2f}, {b[2]:.2f}) size ({b[3]:.2f}, {b[4]:.2f}, {b[5]:.2f})"


def describe_outcome(i: int, o: QuestionOutcome) -> str:
    """The demo's printout of one answer: question, answer, boxes and their IoU against the ground truth."""
    from ros3d_agent.scene.iou import aabb_iou

    r, a = o.question.record, o.answer
    when = f"asked at {o.asked_at_s:.2f} s of bag time, " if o.asked_at_s is not None else ""
    lines = [f"Q{i} [{r.task}] {r.question}" + (f"   ({r.situation.text})" if r.situation else ""),
             f"    {when}answered in {o.latency_s:.2f} s using {len(a.keyframe_stamps)} keyframe(s)"]
    if not a.success:
        lines.append(f"    FAILED: {a.error}")
        return "\n".join(lines)
    if r.task in ("qa", "situated_qa", "caption"):
        lines.append(f"    answer: {a.text!r}")
        lines.append(f"    ground truth: {' | '.join(r.answers[:2])}")
    if r.task in ("ground", "multi_ground"):
        lines.append(f"    {len(a.objects)} box(es); ground truth: {len(r.boxes)} box(es)")
        for o_ in a.objects[:6]:
            b = box6(o_.box)
            best = max((aabb_iou(b, list(g)) for g in r.boxes), default=0.0)
            lines.append(f"      object #{o_.proposal_id} score {o_.score:.2f}: {_fmt_box(b)}  IoU with ground truth {best:.3f}")
        if len(a.objects) > 6:
            lines.append(f"      ... {len(a.objects) - 6} more")
    if r.task == "caption" and o.caption_object:
        c = o.caption_object
        lines.append(f"    described object #{c['id']}: {_fmt_box(c['box'])}  IoU with ground truth {c['iou_to_gt']:.3f}")
    return "\n".join(lines)


def run_demo(cfg: DemoConfig, say: Callable[[str], None] = print) -> int:
    """The whole demo; returns the process exit code."""
    t_start = time.perf_counter()
    say("== ros3d_agent demo: a robot asks about its surroundings, from a recorded bag, through the live node ==")
    if cfg.doctor:
        from ros3d_agent.doctor import FAIL, format_table, run_checks

        say("\n-- 1/4 environment check (ros3d-agent doctor) --")
        results = run_checks()
        say(format_table(results, color=sys.stdout.isatty()))
        if any(r.status == FAIL for r in results):
            say("\ndemo stopped: fix the failures above first.")
            return 1
    node_params: dict[str, Any] = {}
    if (cfg.checkpoint / "config.json").is_file():
        model = ModelChoice(checkpoint=str(cfg.checkpoint))
        model_text = f"the bundled demo checkpoint {cfg.checkpoint}"
        views = bundle_views_per_query(cfg.checkpoint)
        if views:
            node_params["query.default_views"] = views
            model_text += f" (asked with {views} views, as it was trained)"
        scores = bundle_score_line(cfg.checkpoint)
        if scores:
            model_text += f"\nits held-out scores (so you know what to expect): {scores}; details in {cfg.checkpoint / 'README.md'}"
    else:
        model = ModelChoice(preset="tiny", allow_random_weights=True)
        model_text = "the 'tiny' preset"
    say("\n-- 2/4 data: synthetic room, its annotations and its rosbag --")
    from ros3d_agent.replay.bag_source import BagSource
    from ros3d_agent.scene.annotations.records import read_annotations

    try:
        data = prepare_demo_data(cfg, say)
        source = BagSource(data.bag)
        questions = pick_questions(read_annotations(data.annotations), source.duration_s)
    except (ValueError, OSError) as exc:
        say(f"demo stopped: could not prepare its data in {cfg.data_dir}: {exc} (rerun with --fresh)")
        return 1
    say(f"{'reused' if data.reused else 'made'} {cfg.data_dir} in {data.seconds:.1f} s; bag {source.duration_s:.1f} s of "
        f"{', '.join(sorted(source.topics))}")

    say(f"\n-- 3/4 live replay: node + bag at x{cfg.rate:g} with /clock + {len(questions)} questions through the AskScene action --")
    say(f"model: {model_text}")
    if model.random_weights:
        say(f"NOTE: {RANDOM_WEIGHTS_NOTICE}.")
    from ros3d_agent.replay.offline import fused_cloud_at_stamps
    from ros3d_agent.replay.realtime import RealtimeError, RealtimeOptions, run_realtime
    from ros3d_agent.replay.results import format_table, model_identity, result_record, write_outputs
    from ros3d_agent.replay.scenario import TopicMap, node_param_values, resolve_model
    from ros3d_agent.ros.params import NodeParams

    notes: list[str] = []
    model = resolve_model(model, node_param_values(cfg.config, {}), notes)
    params = NodeParams.from_values(node_param_values(cfg.config, {"model.checkpoint": model.checkpoint, "model.preset": model.preset,
                                                                    "model.allow_random_weights": model.allow_random_weights,
                                                                    "model.device": model.device, "model.dtype": model.dtype}))
    opts = RealtimeOptions(model=model, config=cfg.config, rate=cfg.rate, params=node_params)
    index = {q.id: i for i, q in enumerate(questions, 1)}

    def show(o: QuestionOutcome) -> None:
        say(describe_outcome(index[o.question.id], o))

    try:
        run = run_realtime(source, questions, opts, cfg.out, on_answer=show, on_status=lambda s: say(f"  {s}"))
    except RealtimeError as exc:
        say(f"demo failed: {exc}")
        return 1
    run.cloud = fused_cloud_at_stamps(source, TopicMap(), params, {s for o in run.outcomes for s in o.answer.keyframe_stamps})
    run.notes = notes + run.notes
    if model.random_weights:
        run.notes.insert(0, RANDOM_WEIGHTS_NOTICE)
    inputs = {"bag": str(data.bag), "bag_sha256": source.sha256(), "bag_duration_s": round(source.duration_s, 6),
              "questions_file": str(data.annotations), "model": model_identity(model.checkpoint, model.preset, int(params.model.seed)),
              "device": model.device, "dtype": model.dtype, "config": cfg.config, "rate": cfg.rate,
              "demo": {k: str(v) for k, v in asdict(cfg).items()}}
    summary = write_outputs(run, cfg.out, inputs, java=True)
    say("\n-- 4/4 summary --")
    say(format_table([result_record(o) for o in run.outcomes], summary))
    for note in summary["notes"]:
        say(f"note: {note}")
    if summary["bev"]:
        say(f"BEV picture (fused keyframes from above; green = ground truth, red = predicted): {', '.join(summary['bev'])}")
    say(f"results: {cfg.out / 'results.jsonl'}   summary: {cfg.out / 'summary.json'}   node log: {cfg.out / 'node.log'}")
    say(f"demo finished in {time.perf_counter() - t_start:.0f} s ({summary['answered']}/{summary['questions']} questions answered)")
    if model.random_weights:
        say(f"NOTE: {RANDOM_WEIGHTS_NOTICE}.")
    return 0 if summary["answered"] == summary["questions"] and not run.bag_error else 1
