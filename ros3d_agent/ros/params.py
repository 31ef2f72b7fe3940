"""Every parameter of the node, declared in one place with its type, range and meaning.

The table :data:`PARAMETERS` is the single source of truth: the node declares from it (with a
``ParameterDescriptor`` each: description, range, read-only), the YAML configs and the launch file
are checked against it by tests, and :class:`NodeParams` (typed, grouped dataclasses) is built from
it and validated as a whole in ``on_configure``. It imports no rclpy at module level, so tools and
static tests can read it on a machine without ROS.

Names are dotted (``keyframes.max_count``); in YAML they nest (``keyframes: {max_count: 64}``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from typing import Any, Final, Mapping, Sequence

from ros3d_agent.ros.qos import QosError, normalize_qos_name

__all__ = [
    "ParamSpec",
    "PARAMETERS",
    "PARAMETER_NAMES",
    "LIVE_PARAMETERS",
    "NodeParams",
    "ParamError",
    "declare_parameters",
    "read_parameter_values",
    "check_value",
    "flatten_yaml_parameters",
]

Scalar = bool | int | float | str


class ParamError(ValueError):
    """One or more parameters are invalid; ``errors`` lists every problem, one line each."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(self.errors))


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: name, default (its type is the parameter's type), meaning, constraints."""

    name: str
    default: Scalar
    description: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    read_only: bool = False

    @property
    def type_name(self) -> str:
        return type(self.default).__name__


def _p(name: str, default: Scalar, description: str, **kw: Any) -> ParamSpec:
    return ParamSpec(name, default, description, **kw)


#: Every parameter the node declares. Defaults suit a RealSense-style driver on a workstation.
PARAMETERS: Final[tuple[ParamSpec, ...]] = (
    # --- frames -------------------------------------------------------------------------------
    _p("fixed_frame", "map", "TF frame answers, boxes and keyframe poses are expressed in"),
    _p("camera_frame", "", "optical frame of the colour camera; empty = the colour image's header.frame_id"),
    # --- topics (remapping works too; these are for YAML-only deployments) ---------------------
    _p("topics.color", "/camera/color/image_raw", "colour image (sensor_msgs/Image, or CompressedImage with input.color_transport=compressed)"),
    _p("topics.depth", "/camera/aligned_depth_to_color/image_raw", "depth image (16UC1 mm or 32FC1 m; CompressedImage with input.depth_transport=compressedDepth)"),
    _p("topics.color_info", "/camera/color/camera_info", "CameraInfo of the colour image"),
    _p("topics.depth_info", "/camera/aligned_depth_to_color/camera_info", "CameraInfo of the depth image (used only with input.use_depth_info)"),
    _p("topics.tf", "/tf", "dynamic transforms (tf2_msgs/TFMessage)"),
    _p("topics.tf_static", "/tf_static", "static transforms (tf2_msgs/TFMessage, latched)"),
    # --- input --------------------------------------------------------------------------------
    _p("input.color_transport", "raw", "raw: sensor_msgs/Image; compressed: sensor_msgs/CompressedImage (jpeg/png)", choices=("raw", "compressed")),
    _p("input.depth_transport", "raw", "raw: sensor_msgs/Image; compressedDepth: CompressedImage from compressed_depth_image_transport", choices=("raw", "compressedDepth")),
    _p("input.use_depth_info", False, "depth has its own CameraInfo (intrinsics/resolution): subscribe to it and resample depth onto the colour grid"),
    _p("input.depth_unit_m", 0.001, "metres per unit of integer (16UC1) depth; 0.001 = millimetres (REP 118)", min=1e-6, max=1.0),
    _p("input.min_depth_m", 0.1, "depth below this is treated as invalid", min=0.0, max=10.0),
    _p("input.max_depth_m", 6.0, "depth beyond this is treated as invalid (far depth is the noisiest)", min=0.1, max=100.0),
    _p("input.max_stamp_age_sec", 0.0, "drop frames whose stamp is older than this versus the node clock (0 = off; use with use_sim_time for bags)", min=0.0, max=3600.0),
    # --- QoS ----------------------------------------------------------------------------------
    _p("qos.images", "SENSOR_DATA", "QoS of the image subscriptions (SENSOR_DATA receives from reliable and best-effort drivers)", choices=None),
    _p("qos.camera_info", "SENSOR_DATA", "QoS of the CameraInfo subscriptions"),
    _p("qos.image_depth", 10, "history depth of image/CameraInfo subscriptions (0 = the preset's): ~0.3 s at 30 Hz absorbs a busy interpreter", min=0, max=100),
    _p("qos.outputs", "RELIABLE", "QoS of answers, objects and markers"),
    _p("qos.questions", "RELIABLE", "QoS of the ~/question subscription"),
    # --- synchronisation and TF -----------------------------------------------------------------
    _p("sync.slop_sec", 0.02, "max stamp difference between colour, depth and CameraInfo of one frame", min=0.0, max=1.0),
    _p("sync.queue_size", 10, "messages kept per input while waiting for partners", min=1, max=200),
    _p("tf.timeout_sec", 0.5, "how long a frame waits for TF at its stamp before it is dropped (wall time)", min=0.0, max=30.0),
    _p("tf.cache_sec", 30.0, "how much TF history is kept", min=1.0, max=600.0),
    _p("tf.pending_max", 60, "frames waiting for TF at most; the oldest is dropped beyond that", min=1, max=1000),
    _p("tf.time_jump_sec", 2.0, "a stamp this far behind the newest seen is a backward time jump (bag loop): buffers reset", min=0.01, max=3600.0),
    # --- ingestion -----------------------------------------------------------------------------
    _p("ingest.queue_size", 4, "candidate keyframes waiting for encoding; more are dropped and counted", min=1, max=100),
    _p("ingest.reset_memory_on_time_jump", True, "also forget keyframes and the fused cloud when time jumps back"),
    # --- keyframe memory -------------------------------------------------------------------------
    _p("keyframes.min_translation_m", 0.3, "admit a frame when the camera moved this far from every keyframe", min=0.0, max=100.0),
    _p("keyframes.min_rotation_deg", 20.0, "... or turned this much", min=0.0, max=180.0),
    _p("keyframes.min_interval_sec", 0.2, "never admit two keyframes closer in time than this", min=0.0, max=60.0),
    _p("keyframes.coverage_check_sec", 0.5, "a frame that neither moved nor turned enough is tested for new coverage at most this often", min=0.0, max=60.0),
    _p("keyframes.min_new_coverage", 0.2, "share of a frame's voxels no keyframe sees yet for it to be admitted on coverage", min=0.0, max=1.0),
    _p("keyframes.max_count", 64, "keyframes kept at most; the most redundant one is evicted beyond that", min=1, max=10000),
    _p("keyframes.max_megabytes", 512.0, "memory budget of the keyframes (cached visual features + voxel sets)", min=1.0, max=1_000_000.0),
    _p("keyframes.voxel_size", 0.1, "voxel edge (m) of the coverage sets used for admission, eviction and view selection", min=0.01, max=2.0),
    _p("keyframes.coverage_stride", 4, "pixel stride of the coverage back-projection", min=1, max=32),
    # --- fused cloud and proposals --------------------------------------------------------------
    _p("fusion.voxel_size", 0.03, "voxel edge (m) of the fused scene cloud", min=0.005, max=1.0),
    _p("fusion.stride", 4, "pixel stride when fusing a keyframe into the cloud", min=1, max=32),
    _p("fusion.max_voxels", 2_000_000, "memory bound of the fused cloud (the grid coarsens beyond it)", min=1000, max=100_000_000),
    _p("proposals.enabled", True, "maintain class-agnostic box proposals for grounding"),
    _p("proposals.min_growth", 0.05, "recompute proposals when the cloud grew by this share", min=0.0, max=10.0),
    _p("proposals.min_interval_sec", 2.0, "recompute proposals at most this often", min=0.0, max=600.0),
    _p("proposals.max_proposals", 50, "proposals kept (the grounding candidates)", min=1, max=1000),
    # --- queries ------------------------------------------------------------------------------
    _p("query.default_views", 8, "views per query when the request says 0", min=1, max=256),
    _p("query.max_views", 16, "upper bound on views per query (requests above are clamped)", min=1, max=256),
    _p("query.view_selection", "coverage", "how views are picked from the keyframes", choices=("coverage", "uniform", "latest")),
    _p("query.default_deadline_sec", 30.0, "deadline when the request says 0 (measured from submission)", min=0.1, max=3600.0),
    _p("query.max_deadline_sec", 300.0, "upper bound on a request's deadline", min=0.1, max=86400.0),
    _p("query.queue_size", 4, "queries waiting beyond the running one; more are refused with a reason", min=1, max=1000),
    _p("query.max_question_bytes", 2000, "longer questions are refused", min=16, max=1_000_000),
    _p("query.default_task", "qa", "task for ~/question messages", choices=("qa", "situated_qa", "ground", "multi_ground", "caption")),
    # --- model (fixed for the life of the process: changing it needs a restart) -----------------
    _p("model.checkpoint", "", "directory of a checkpoint in our format (local only; nothing is downloaded)", read_only=True),
    _p("model.preset", "", "random-init model preset (e.g. tiny) for plumbing tests; needs model.allow_random_weights", read_only=True),
    _p("model.allow_random_weights", False, "allow model.preset without a checkpoint (answers are meaningless)", read_only=True),
    _p("model.device", "cuda", "torch device: cpu, cuda, cuda:N", read_only=True),
    _p("model.dtype", "float16", "weights/activations dtype", choices=("float32", "float16", "bfloat16"), read_only=True),
    _p("model.max_new_tokens", 32, "generation length limit", min=1, max=4096, read_only=True),
    _p("model.multi_threshold", 0.4, "score threshold for multi-object grounding", min=0.0, max=1.0, read_only=True),
    _p("model.seed", 0, "seed of random-init presets", min=0, max=2**31 - 1, read_only=True),
    _p("model.warmup", True, "run one dummy query at activation so the first real one is not slow", read_only=True),
    # --- outputs ------------------------------------------------------------------------------
    _p("output.markers", True, "publish ~/markers (MarkerArray) for RViz"),
    _p("output.answer_json", True, "publish ~/answer_json (the Answer as JSON in std_msgs/String)"),
    _p("diagnostics.period_sec", 1.0, "period of /diagnostics", min=0.1, max=60.0),
)

#: Parameters whose new value takes effect immediately, even while the node is active.
LIVE_PARAMETERS: Final = frozenset(
    s.name for s in PARAMETERS if s.name.startswith(("keyframes.", "output.")) and s.name not in ("keyframes.voxel_size", "keyframes.coverage_stride")
) | {"query.default_views", "query.default_deadline_sec", "query.default_task", "input.max_stamp_age_sec"}

PARAMETER_NAMES: Final = tuple(s.name for s in PARAMETERS)
_SPECS: Final = {s.name: s for s in PARAMETERS}

_TOPIC_RE = re.compile(r"^(~/|/)?[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$")
_FRAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_/\-]*$")
_DEVICE_RE = re.compile(r"^(cpu|cuda(:\d+)?|mps)$")
_QOS_PARAMS = ("qos.images", "qos.camera_info", "qos.outputs", "qos.questions")


def check_value(name: str, value: Any) -> str | None:
    """Why ``value`` is not acceptable for parameter ``name`` (None when it is)."""
    spec = _SPECS.get(name)
    if spec is None:
        return f"unknown parameter {name!r}"
    want = type(spec.default)
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not want:
        return f"{name}: expected {want.__name__}, got {type(value).__name__} {value!r}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{name}: must be finite, got {value}"
    if spec.min is not None and value < spec.min:
        return f"{name}: {value} is below the minimum {spec.min}"
    if spec.max is not None and value > spec.max:
        return f"{name}: {value} is above the maximum {spec.max}"
    if spec.choices is not None and value not in spec.choices:
        return f"{name}: {value!r} is not one of {', '.join(spec.choices)}"
    if name in _QOS_PARAMS:
        try:
            normalize_qos_name(value)
        except QosError as exc:
            return f"{name}: {exc}"
    return None


# ---------------------------------------------------------------------------------------------------
# Typed view
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TopicParams:
    color: str
    depth: str
    color_info: str
    depth_info: str
    tf: str
    tf_static: str


@dataclass(frozen=True)
class InputParams:
    color_transport: str
    depth_transport: str
    use_depth_info: bool
    depth_unit_m: float
    min_depth_m: float
    max_depth_m: float
    max_stamp_age_sec: float


@dataclass(frozen=True)
class QosParams:
    images: str
    camera_info: str
    image_depth: int
    outputs: str
    questions: str


@dataclass(frozen=True)
class SyncParams:
    slop_sec: float
    queue_size: int


@dataclass(frozen=True)
class TfParams:
    timeout_sec: float
    cache_sec: float
    pending_max: int
    time_jump_sec: float


@dataclass(frozen=True)
class IngestParams:
    queue_size: int
    reset_memory_on_time_jump: bool


@dataclass(frozen=True)
class KeyframeParams:
    min_translation_m: float
    min_rotation_deg: float
    min_interval_sec: float
    coverage_check_sec: float
    min_new_coverage: float
    max_count: int
    max_megabytes: float
    voxel_size: float
    coverage_stride: int


@dataclass(frozen=True)
class FusionParams:
    voxel_size: float
    stride: int
    max_voxels: int


@dataclass(frozen=True)
class ProposalParams:
    enabled: bool
    min_growth: float
    min_interval_sec: float
    max_proposals: int


@dataclass(frozen=True)
class QueryParams:
    default_views: int
    max_views: int
    view_selection: str
    default_deadline_sec: float
    max_deadline_sec: float
    queue_size: int
    max_question_bytes: int
    default_task: str


@dataclass(frozen=True)
class ModelParams:
    checkpoint: str
    preset: str
    allow_random_weights: bool
    device: str
    dtype: str
    max_new_tokens: int
    multi_threshold: float
    seed: int
    warmup: bool


@dataclass(frozen=True)
class OutputParams:
    markers: bool
    answer_json: bool


@dataclass(frozen=True)
class DiagnosticsParams:
    period_sec: float


def _group(values: Mapping[str, Any], prefix: str, cls: type) -> Any:
    kwargs = {}
    for f in fields(cls):
        v = values[f"{prefix}.{f.name}"]
        if isinstance(_SPECS[f"{prefix}.{f.name}"].default, float) and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        kwargs[f.name] = v
    return cls(**kwargs)


@dataclass(frozen=True)
class NodeParams:
    """All parameters, typed and grouped as the node uses them."""

    fixed_frame: str
    camera_frame: str
    topics: TopicParams
    input: InputParams
    qos: QosParams
    sync: SyncParams
    tf: TfParams
    ingest: IngestParams
    keyframes: KeyframeParams
    fusion: FusionParams
    proposals: ProposalParams
    query: QueryParams
    model: ModelParams
    output: OutputParams
    diagnostics: DiagnosticsParams

    @classmethod
    def defaults(cls) -> "NodeParams":
        return cls.from_values({})

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> "NodeParams":
        """Build and validate from ``{name: value}`` (missing names take the default).

        Raises:
            ParamError: listing every invalid value and every inconsistent combination.
        """
        merged = {s.name: s.default for s in PARAMETERS}
        errors = [f"unknown parameter {k!r}" for k in values if k not in merged]
        merged.update({k: v for k, v in values.items() if k in merged})
        errors += [e for name, v in merged.items() if (e := check_value(name, v))]
        if errors:
            raise ParamError(errors)
        params = cls(
            fixed_frame=merged["fixed_frame"].strip().lstrip("/"),
            camera_frame=merged["camera_frame"].strip().lstrip("/"),
            topics=_group(merged, "topics", TopicParams),
            input=_group(merged, "input", InputParams),
            qos=_group(merged, "qos", QosParams),
            sync=_group(merged, "sync", SyncParams),
            tf=_group(merged, "tf", TfParams),
            ingest=_group(merged, "ingest", IngestParams),
            keyframes=_group(merged, "keyframes", KeyframeParams),
            fusion=_group(merged, "fusion", FusionParams),
            proposals=_group(merged, "proposals", ProposalParams),
            query=_group(merged, "query", QueryParams),
            model=_group(merged, "model", ModelParams),
            output=_group(merged, "output", OutputParams),
            diagnostics=_group(merged, "diagnostics", DiagnosticsParams),
        )
        errors = params.consistency_errors()
        if errors:
            raise ParamError(errors)
        return params

    def consistency_errors(self) -> list[str]:
        """Problems that involve more than one parameter, or a string's format."""
        errors: list[str] = []
        if not _FRAME_RE.match(self.fixed_frame):
            errors.append(f"fixed_frame: {self.fixed_frame!r} is not a valid TF frame name")
        if self.camera_frame and not _FRAME_RE.match(self.camera_frame):
            errors.append(f"camera_frame: {self.camera_frame!r} is not a valid TF frame name")
        if self.camera_frame and self.camera_frame == self.fixed_frame:
            errors.append("camera_frame and fixed_frame must differ")
        for f in fields(TopicParams):
            topic = getattr(self.topics, f.name)
            if not _TOPIC_RE.match(topic):
                errors.append(f"topics.{f.name}: {topic!r} is not a valid ROS topic name")
        names = [self.topics.color, self.topics.depth, self.topics.color_info] + ([self.topics.depth_info] if self.input.use_depth_info else [])
        if len(set(names)) != len(names):
            errors.append(f"topics: colour, depth and CameraInfo topics must be distinct, got {names}")
        if self.input.min_depth_m >= self.input.max_depth_m:
            errors.append(f"input.min_depth_m ({self.input.min_depth_m}) must be below input.max_depth_m ({self.input.max_depth_m})")
        if self.query.default_views > self.query.max_views:
            errors.append(f"query.default_views ({self.query.default_views}) exceeds query.max_views ({self.query.max_views})")
        if self.query.default_deadline_sec > self.query.max_deadline_sec:
            errors.append("query.default_deadline_sec exceeds query.max_deadline_sec")
        m = self.model
        if not m.checkpoint and not m.preset:
            errors.append("model: set model.checkpoint (a local checkpoint directory) or model.preset (with model.allow_random_weights)")
        if m.checkpoint and m.preset:
            errors.append("model: set either model.checkpoint or model.preset, not both")
        if m.preset and not m.checkpoint and not m.allow_random_weights:
            errors.append(f"model.preset={m.preset!r} gives random weights: set model.allow_random_weights:=true to run it (tests/plumbing only)")
        if not _DEVICE_RE.match(m.device):
            errors.append(f"model.device: {m.device!r} is not a torch device (cpu, cuda, cuda:N)")
        if m.device == "cpu" and m.dtype == "float16":
            errors.append("model.dtype float16 is not supported on cpu: use float32 or bfloat16")
        return errors

    @property
    def max_bytes(self) -> int:
        return int(self.keyframes.max_megabytes * 1024 * 1024)


# ---------------------------------------------------------------------------------------------------
# rclpy glue
# ---------------------------------------------------------------------------------------------------
def _descriptor(spec: ParamSpec) -> Any:
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

    ptype = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
             float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}[type(spec.default)]
    desc = ParameterDescriptor(name=spec.name, type=ptype, description=spec.description, read_only=spec.read_only)
    if spec.choices:
        desc.additional_constraints = "one of: " + ", ".join(spec.choices)
    if isinstance(spec.default, float) and spec.min is not None and spec.max is not None:
        desc.floating_point_range = [FloatingPointRange(from_value=float(spec.min), to_value=float(spec.max), step=0.0)]
    elif isinstance(spec.default, int) and not isinstance(spec.default, bool) and spec.min is not None and spec.max is not None:
        desc.integer_range = [IntegerRange(from_value=int(spec.min), to_value=int(spec.max), step=1)]
    return desc


def declare_parameters(node: Any) -> list[str]:
    """Declare every parameter on ``node``; returns problems with the values it was started with.

    A value of the wrong type or out of range in a params file would make rclpy raise from the
    node's constructor (a crash at start-up with a stack trace). Instead the default is kept and the
    problem is returned, so ``on_configure`` can refuse with a readable list.
    """
    from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException

    problems: list[str] = []
    for spec in PARAMETERS:
        desc = _descriptor(spec)
        try:
            node.declare_parameter(spec.name, spec.default, desc)
        except (InvalidParameterTypeException, InvalidParameterValueException, TypeError, ValueError) as exc:
            problems.append(f"{spec.name}: value from the command line/params file rejected ({exc}); default {spec.default!r} kept")
            node.declare_parameter(spec.name, spec.default, desc, ignore_override=True)
    return problems


def read_parameter_values(node: Any) -> dict[str, Any]:
    """``{name: value}`` of every declared parameter of the table."""
    return {spec.name: node.get_parameter(spec.name).value for spec in PARAMETERS}


def flatten_yaml_parameters(doc: Mapping[str, Any]) -> dict[str, Any]:
    """``ros__parameters`` of a params file (first node entry, e.g. ``/**``) as ``{dotted.name: value}``."""
    for entry in doc.values():
        if isinstance(entry, Mapping) and "ros__parameters" in entry:
            out: dict[str, Any] = {}

            def walk(prefix: str, node: Mapping[str, Any]) -> None:
                for k, v in node.items():
                    name = f"{prefix}.{k}" if prefix else str(k)
                    if isinstance(v, Mapping):
                        walk(name, v)
                    else:
                        out[name] = v

            walk("", entry["ros__parameters"])
            return out
    raise ValueError("no '<node>: ros__parameters:' section found in the params file")
