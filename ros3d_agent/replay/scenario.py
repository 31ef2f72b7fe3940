"""What a replay run needs: the bag, the questions, the model, the topics and the options.

A *scenario* bundles them so that a run can be repeated exactly (the same bag and questions with
the same node parameters, in CI or after a model change)::

    # scenario.yaml (paths are relative to this file)
    bag: bags/synth_00007
    questions: synth_00007.jsonl         # annotation JSONL (+ optional ask_at)
    mode: offline                        # offline | realtime
    out: results/synth_00007
    model: {checkpoint: models/demo_small}        # or {preset: tiny, allow_random_weights: true}
    topics: {color: /head/rgb, depth: /head/depth, camera_info: /head/rgb_info}
    fixed_frame: map
    rate: 1.0                            # realtime playback speed
    config: workstation                  # node params file (a name in config/ or a path)
    params: {keyframes.min_interval_sec: 0.1}     # node parameter overrides
    repeat: 1

Command-line options override the scenario's values, which override the defaults here.

Questions are annotation records (``ros3d_agent.scene.annotations.records``: ground truth in the
fixed frame) with an optional ``ask_at``: seconds from the bag's first message at which the
question is asked (top level or in ``meta``). Without it a question is asked after the last frame.

Replay sends a situation or a caption's object in the question text, in the form the node parses
when AskScene's ``situation`` / ``object_id`` fields are left empty (:meth:`ReplayQuestion.ask_text`);
offline replay builds the same text, so both modes give the model the same prompt and record one
``ask_text``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from ros3d_agent.scene.annotations.records import AnnotationError, AnnotationRecord
from ros3d_agent.scene.robot_frames import CameraTopics

__all__ = [
    "ReplayError",
    "TopicMap",
    "ReplayQuestion",
    "ModelChoice",
    "Scenario",
    "MODES",
    "read_questions",
    "load_scenario_file",
    "parse_param_overrides",
    "format_param_value",
    "node_param_values",
    "resolve_model",
    "run_scenario",
]

MODES: Final = ("offline", "realtime")
_DEFAULT_TOPICS: Final = CameraTopics()


class ReplayError(ValueError):
    """The inputs of a replay cannot work (missing file, bad option, wrong topics): fix and rerun."""


# ---------------------------------------------------------------------------------------------------
# Topics
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TopicMap:
    """Names of the inputs *in the bag* (a robot's own topic names; the node is remapped to them)."""

    color: str = _DEFAULT_TOPICS.color_image
    depth: str = _DEFAULT_TOPICS.depth_image
    color_info: str = _DEFAULT_TOPICS.color_info
    depth_info: str = _DEFAULT_TOPICS.depth_info
    tf: str = _DEFAULT_TOPICS.tf
    tf_static: str = _DEFAULT_TOPICS.tf_static

    def __post_init__(self) -> None:
        for role, name in self.items(True):
            if not isinstance(name, str) or not name.startswith("/") or len(name) < 2:
                raise ReplayError(f"{role} topic {name!r} must be an absolute ROS topic name such as /camera/color/image_raw")
        image_topics = [self.color, self.depth, self.color_info]
        if len(set(image_topics)) != len(image_topics):
            raise ReplayError(f"colour, depth and camera_info topics must differ, got {image_topics}")

    def items(self, use_depth_info: bool) -> list[tuple[str, str]]:
        """``(role, topic)`` pairs the replay reads; ``depth_info`` only when the node uses it."""
        roles = ["color", "depth", "color_info"] + (["depth_info"] if use_depth_info else []) + ["tf", "tf_static"]
        return [(r, getattr(self, r)) for r in roles]

    def node_remaps(self, use_depth_info: bool) -> list[str]:
        """``from:=to`` remaps that point the node's default topics at these names (none when equal)."""
        defaults = TopicMap()
        return [f"{getattr(defaults, r)}:={t}" for r, t in self.items(use_depth_info) if getattr(defaults, r) != t]


# ---------------------------------------------------------------------------------------------------
# Questions
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReplayQuestion:
    """An annotation record and when to ask it (``ask_at`` s after the bag start; None = at the end)."""

    record: AnnotationRecord
    ask_at: float | None = None

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def task(self) -> str:
        return self.record.task

    def ask_text(self, object_id: int | None = None) -> str:
        """The ``AskScene`` question text: the node reads a situation and a caption's object from it.

        ``situated_qa`` → ``situation: <text> question: <question>``; ``caption`` → ``#<id> <question>``
        (``object_id`` is a proposal id of the node's scene memory, see ``ros3d_agent/ros/node.py``).
        """
        r = self.record
        if r.task == "situated_qa" and r.situation is not None:
            return f"situation: {r.situation.text} question: {r.question}"
        if r.task == "caption":
            if object_id is None:
                raise ValueError("a caption question needs the proposal id of the object to describe")
            return f"#{int(object_id)} {r.question}"
        return r.question

    def due_ns(self, bag_start_ns: int) -> int | None:
        """Bag time (ns) at which the question is due; None = after the last message."""
        return None if self.ask_at is None else bag_start_ns + int(round(self.ask_at * 1e9))


def _ask_at(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ReplayError(f"{where}: ask_at must be a number of seconds >= 0 from the bag start (or absent), got {value!r}")
    return float(value)


def _question(data: dict[str, Any], default_ask_at: float | None) -> ReplayQuestion:
    """One line: an annotation record plus ``ask_at`` (top level or ``meta.ask_at``; not ground truth, so it leaves the record)."""
    if not isinstance(data, dict):
        raise ReplayError(f"expected a JSON object, got {type(data).__name__}")
    data = dict(data)
    ask_at = _ask_at(data.pop("ask_at", None), "question")
    meta = data.get("meta")
    if isinstance(meta, dict) and "ask_at" in meta:
        meta = dict(meta)
        meta_at = _ask_at(meta.pop("ask_at"), "question")
        ask_at = meta_at if ask_at is None else ask_at
        data["meta"] = meta
    try:
        rec = AnnotationRecord.from_dict(data)
    except AnnotationError as exc:
        raise ReplayError(str(exc)) from None
    return ReplayQuestion(rec, ask_at if ask_at is not None else default_ask_at)


def read_questions(path: str | os.PathLike[str], default_ask_at: float | None = None) -> list[ReplayQuestion]:
    """Annotation JSONL with an optional ``ask_at`` per line (top level or ``meta.ask_at``).

    Errors name ``file:line``; duplicate ids are refused (results are keyed by id).

    Raises:
        ReplayError: the file is missing, empty or malformed.
    """
    from ros3d_agent.utils.jsonl import iter_jsonl

    out = list(iter_jsonl(path, lambda d: _question(d, default_ask_at), ReplayError, what="questions file"))
    if not out:
        raise ReplayError(f"questions file {path} holds no question")
    return out


# ---------------------------------------------------------------------------------------------------
# Model and node parameters
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelChoice:
    """Which model the node (and offline replay) loads. Empty device/dtype: the params file's."""

    checkpoint: str = ""
    preset: str = ""
    allow_random_weights: bool = False
    device: str = ""
    dtype: str = ""

    def validate(self) -> None:
        if self.checkpoint and self.preset:
            raise ReplayError("choose either --checkpoint or --preset, not both")
        if not self.checkpoint and not self.preset:
            raise ReplayError("no model: pass --checkpoint DIR (a trained checkpoint) or --preset tiny --allow-random-weights")
        if self.preset and not self.allow_random_weights:
            raise ReplayError(f"--preset {self.preset} has random weights (meaningless answers): add --allow-random-weights "
                              "to run the plumbing anyway, or pass --checkpoint DIR")
        if self.checkpoint and not Path(self.checkpoint).is_dir():
            raise ReplayError(f"checkpoint directory {self.checkpoint} does not exist (only local checkpoints are used)")

    @property
    def random_weights(self) -> bool:
        return bool(self.preset) and not self.checkpoint


def format_param_value(value: Any) -> str:
    """A parameter value as ``-p name:=value`` text (YAML scalars, as rcl parses them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value else "''"
    return repr(value) if isinstance(value, float) else str(value)


def parse_param_overrides(items: Sequence[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """``["name:=value", ...]`` or ``{name: value}`` → ``{name: value}`` (values parsed as YAML scalars)."""
    import yaml

    if not items:
        return {}
    if isinstance(items, Mapping):
        return {str(k): v for k, v in items.items()}
    out: dict[str, Any] = {}
    for item in items:
        if not isinstance(item, str) or ":=" not in item:
            raise ReplayError(f"parameter override {item!r} must look like name:=value")
        name, text = item.split(":=", 1)
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        out[name.strip()] = "" if value is None else value
    return out


# ---------------------------------------------------------------------------------------------------
# Scenario
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scenario:
    """Every input of one replay run (see the module doc for the file form)."""

    bag: Path
    questions: Path
    out: Path
    mode: str = "offline"
    model: ModelChoice = field(default_factory=ModelChoice)
    topics: TopicMap = field(default_factory=TopicMap)
    fixed_frame: str = "map"
    rate: float = 1.0
    config: str = "workstation"
    params: Mapping[str, Any] = field(default_factory=dict)
    repeat: int = 1
    default_ask_at: float | None = None
    threads: int = 0
    java: bool = True
    settle_timeout_s: float = 20.0
    question_timeout_s: float = 120.0
    node: str = ""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ReplayError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if isinstance(self.rate, bool) or not isinstance(self.rate, (int, float)) or not (math.isfinite(self.rate) and 0 < self.rate <= 100):
            raise ReplayError(f"rate must be a number in (0, 100], got {self.rate!r}")
        if isinstance(self.repeat, bool) or not isinstance(self.repeat, int) or self.repeat < 1:
            raise ReplayError(f"repeat must be an integer >= 1, got {self.repeat!r}")
        if not isinstance(self.fixed_frame, str) or not self.fixed_frame.strip("/"):
            raise ReplayError(f"fixed_frame must be a TF frame name, got {self.fixed_frame!r}")
        if self.threads < 0:
            raise ReplayError(f"threads must be >= 0, got {self.threads}")
        _ask_at(self.default_ask_at, "scenario")

    def check_inputs(self) -> None:
        """Refuse early and clearly when a file is missing or the model choice cannot work."""
        if not self.bag.exists():
            raise ReplayError(f"bag {self.bag} does not exist")
        if not self.questions.is_file():
            raise ReplayError(f"questions file {self.questions} does not exist")
        self.model.validate()
        if self.out.exists() and not self.out.is_dir():
            raise ReplayError(f"output path {self.out} exists and is not a directory")

    def with_out(self, out: Path) -> "Scenario":
        return replace(self, out=out)


def load_scenario_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a scenario YAML into plain values; relative paths are made relative to the file.

    Raises:
        ReplayError: unreadable file, not a mapping, or unknown keys (usually a misspelling).
    """
    import yaml

    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ReplayError(f"scenario {p}: cannot read it ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise ReplayError(f"scenario {p}: not valid YAML ({exc})") from None
    if not isinstance(doc, dict):
        raise ReplayError(f"scenario {p}: expected a mapping of options at the top level")
    known = {"bag", "questions", "out", "mode", "model", "topics", "fixed_frame", "rate", "config", "params", "repeat",
             "ask_at", "threads", "java", "settle_timeout_s", "question_timeout_s", "node"}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise ReplayError(f"scenario {p}: unknown key(s) {unknown}; known: {sorted(known)}")
    base = p.resolve().parent
    for key in ("bag", "questions", "out"):
        if key in doc and doc[key] is not None:
            v = Path(str(doc[key])).expanduser()
            doc[key] = v if v.is_absolute() else base / v
    model = doc.get("model") or {}
    if not isinstance(model, dict):
        raise ReplayError(f"scenario {p}: 'model' must be a mapping (checkpoint, preset, allow_random_weights, device, dtype)")
    bad = sorted(set(model) - {"checkpoint", "preset", "allow_random_weights", "device", "dtype"})
    if bad:
        raise ReplayError(f"scenario {p}: unknown model key(s) {bad}")
    if model.get("checkpoint"):
        ck = Path(str(model["checkpoint"])).expanduser()
        model["checkpoint"] = str(ck if ck.is_absolute() else base / ck)
    doc["model"] = model
    topics = doc.get("topics") or {}
    if not isinstance(topics, dict):
        raise ReplayError(f"scenario {p}: 'topics' must be a mapping (color, depth, camera_info, depth_info, tf, tf_static)")
    bad = sorted(set(topics) - {"color", "depth", "camera_info", "color_info", "depth_info", "tf", "tf_static"})
    if bad:
        raise ReplayError(f"scenario {p}: unknown topic role(s) {bad}")
    doc["topics"] = topics
    if doc.get("config") and (os.sep in str(doc["config"]) or str(doc["config"]).startswith(".")):
        c = Path(str(doc["config"])).expanduser()
        doc["config"] = str(c if c.is_absolute() else base / c)
    return doc


def node_param_values(config: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``{dotted name: value}`` of the params file ``config`` (a name in config/ or a path) + ``overrides``.

    What ``ros3d-agent run --config C -p ...`` gives the node, so offline replay runs on the same
    parameters as the live node.
    """
    import yaml

    from ros3d_agent.ros.params import flatten_yaml_parameters
    from ros3d_agent.ros.run_command import RunError, resolve_config

    try:
        path = resolve_config(config)
    except RunError as exc:
        raise ReplayError(str(exc)) from None
    try:
        values = flatten_yaml_parameters(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    except (ValueError, yaml.YAMLError) as exc:
        raise ReplayError(f"params file {path}: {exc}") from None
    values.update(overrides)
    values.pop("use_sim_time", None)
    return values


# ---------------------------------------------------------------------------------------------------
# Running a scenario
# ---------------------------------------------------------------------------------------------------
EXIT_OK, EXIT_RUN_FAILED, EXIT_BAD_INPUT, EXIT_BAG_ERROR = 0, 1, 2, 3


def _cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def resolve_model(m: ModelChoice, config_values: Mapping[str, Any], notes: list[str]) -> ModelChoice:
    """The model choice with device and dtype filled in: the given ones, else the params file's;
    a CUDA device on a machine without one falls back to the CPU in float32 (said in the notes)."""
    device = m.device or str(config_values.get("model.device", "cpu"))
    dtype = m.dtype or str(config_values.get("model.dtype", "float32"))
    if device.startswith("cuda") and not m.device and not _cuda_available():
        notes.append(f"the params file asks for {device}, which this machine lacks: the model runs on the cpu in float32")
        device, dtype = "cpu", "float32"
    if device == "cpu" and dtype == "float16":
        dtype = "float32"
    return replace(m, device=device, dtype=dtype)


def run_scenario(sc: Scenario, *, say: Any = print, on_answer: Any = None) -> tuple[int, list[dict[str, Any]]]:
    """Run ``sc`` (``repeat`` times), write every output, print the table; returns (exit code, summaries).

    Exit codes: 0 done; 1 the run could not be carried out (node or player failed); 2 bad inputs;
    3 the bag is truncated or corrupt (results so far written).
    """
    from ros3d_agent.replay.bag_source import BagOpenError, BagSource
    from ros3d_agent.replay.results import format_table, model_identity, result_record, write_outputs
    from ros3d_agent.ros.params import NodeParams, ParamError

    notes: list[str] = []
    try:
        sc.check_inputs()
        source = BagSource(sc.bag)
        questions = read_questions(sc.questions, sc.default_ask_at)
        base_values = node_param_values(sc.config, {})
        model = resolve_model(sc.model, base_values, notes)
        overrides = {"fixed_frame": sc.fixed_frame, "model.checkpoint": model.checkpoint, "model.preset": model.preset,
                     "model.allow_random_weights": model.allow_random_weights, "model.device": model.device,
                     "model.dtype": model.dtype, **dict(sc.params)}
        params = NodeParams.from_values(node_param_values(sc.config, overrides))
        wanted = source.check_topics(dict(sc.topics.items(params.input.use_depth_info)))
    except ParamError as exc:
        say("error: node parameters: " + "; ".join(exc.errors))
        return EXIT_BAD_INPUT, []
    except (ReplayError, BagOpenError) as exc:
        say(f"error: {exc}")
        return EXIT_BAD_INPUT, []
    for topic, role in wanted.items():
        kind = source.topics[topic].msgtype.rsplit("/", 1)[-1]
        need = {"color": params.input.color_transport == "compressed", "depth": params.input.depth_transport == "compressedDepth"}
        if role in need and (kind == "CompressedImage") != need[role]:
            name = "input.color_transport" if role == "color" else "input.depth_transport"
            value = ("compressed" if role == "color" else "compressedDepth") if kind == "CompressedImage" else "raw"
            say(f"error: the bag's {role} topic {topic} carries {kind}, but the node is set up for "
                f"{'compressed' if need[role] else 'raw'} images: pass -p {name}:={value}")
            return EXIT_BAD_INPUT, []
    if sc.threads > 0:
        import torch

        torch.set_num_threads(sc.threads)
    say(f"bag {source.path}: {source.storage}, {source.duration_s:.2f} s, "
        + ", ".join(f"{t} ({r})" for t, r in wanted.items()) + f"; {len(questions)} question(s); mode {sc.mode}")
    inputs = {
        "bag": str(source.path), "bag_sha256": source.sha256(), "bag_start_ns": source.start_ns,
        "bag_duration_s": round(source.duration_s, 6), "questions_file": str(sc.questions),
        "model": model_identity(model.checkpoint, model.preset, int(params.model.seed)),
        "device": model.device, "dtype": model.dtype, "config": sc.config, "params": {k: v for k, v in sc.params.items()},
        "topics": {r: t for t, r in wanted.items()}, "fixed_frame": params.fixed_frame, "rate": sc.rate if sc.mode == "realtime" else None,
    }
    summaries: list[dict[str, Any]] = []
    code = EXIT_OK
    for k in range(sc.repeat):
        out = sc.out if sc.repeat == 1 else sc.out / f"run_{k + 1}"
        if sc.repeat > 1:
            say(f"-- run {k + 1}/{sc.repeat} -> {out}")
        try:
            if sc.mode == "offline":
                from ros3d_agent.replay.offline import run_offline

                run = run_offline(source, sc.topics, questions, params, on_answer=on_answer)
            else:
                from ros3d_agent.replay.offline import fused_cloud_at_stamps
                from ros3d_agent.replay.realtime import RealtimeError, RealtimeOptions, run_realtime

                opts = RealtimeOptions(model=model, topics=sc.topics, config=sc.config, params=dict(sc.params),
                                       fixed_frame=params.fixed_frame, use_depth_info=params.input.use_depth_info, rate=sc.rate,
                                       node=sc.node, settle_timeout_s=sc.settle_timeout_s, question_timeout_s=sc.question_timeout_s)
                try:
                    run = run_realtime(source, questions, opts, out, on_answer=on_answer, on_status=say)
                except RealtimeError as exc:
                    say(f"error: {exc}")
                    return EXIT_RUN_FAILED, summaries
                stamps = {s for o in run.outcomes for s in o.answer.keyframe_stamps}
                run.cloud = fused_cloud_at_stamps(source, sc.topics, params, stamps)
        except (BagOpenError, ReplayError) as exc:
            say(f"error: {exc}")
            return EXIT_BAD_INPUT, summaries
        run.notes = notes + run.notes
        summary = write_outputs(run, out, inputs, java=sc.java)
        records = [result_record(o) for o in run.outcomes]
        say("")
        say(format_table(records, summary))
        for note in summary["notes"]:
            say(f"note: {note}")
        bev = f", BEV: {', '.join(summary['bev'])}" if summary["bev"] else ""
        say(f"results: {out / 'results.jsonl'}, summary: {out / 'summary.json'}{bev}")
        summaries.append(summary)
        if run.bag_error:
            say(f"error: {run.bag_error}; the results so far are in {out}")
            code = EXIT_BAG_ERROR
    if sc.repeat > 1:
        digests = [s.get("determinism_digest") for s in summaries]
        rep = {"runs": len(summaries), "mode": sc.mode, "determinism_digests": digests,
               "identical": sc.mode == "offline" and len(set(digests)) == 1,
               "latency_p50_s": [s["latency_s"]["p50"] for s in summaries], "latency_p95_s": [s["latency_s"]["p95"] for s in summaries],
               "wall_s": [s["wall_s"] for s in summaries]}
        (sc.out / "repeats.json").write_text(json.dumps(rep, indent=2) + "\n", encoding="utf-8")
        if sc.mode == "offline":
            verdict = "IDENTICAL" if rep["identical"] else "DIFFERENT"
            say(f"repeated {len(summaries)} times: results are {verdict} (digests {', '.join(d[:12] for d in digests)})")
    return code, summaries
