"""The training configuration: one dataclass tree, loaded from YAML and validated before anything runs.

Why a typed tree and not a dict: a typo in a 7B run's YAML (``warmup_raito``) must stop the run at
load time with the key's path in the message, not silently fall back to a default three hours into
training. Every section rejects unknown keys, checks the type of every value, and then checks the
meaning (ranges, combinations) in ``validate``.

The model architecture and the loss weights are *not* here: they belong to the model config
(:class:`~ros3d_agent.model.Ros3DModelConfig`, the one place loss weights live). A training config
names a preset (or a checkpoint to start from) and may deep-merge ``model.overrides`` into that
config, e.g. ``{loss_weights: {align3drs: 0.5}}`` or ``{alignment3drs: null}``.

Relative paths are taken relative to the working directory the run is started from.
"""

from __future__ import annotations

from ros3d_agent.utils.jsonable import jsonable

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "TrainConfigError",
    "RunConfig",
    "ModelSection",
    "VaeSource",
    "TeacherSource",
    "DataConfig",
    "PartConfig",
    "OptimConfig",
    "LoraConfig",
    "ScheduleConfig",
    "TrainLoopConfig",
    "CheckpointConfig",
    "LoggingConfig",
    "TrainConfig",
    "PARTS",
    "load_config",
    "config_from_dict",
    "apply_overrides",
    "parse_set_option",
]

#: the model parts that can be frozen / given their own learning rate
PARTS: tuple[str, ...] = ("vision_tower", "projector", "llm", "heads")
_TASKS: tuple[str, ...] = ("qa", "situated_qa", "ground", "multi_ground", "caption")


class TrainConfigError(ValueError):
    """A training config that is malformed or inconsistent; the message names the offending key."""


# ------------------------------------------------------------------------------------------------
# sections
# ------------------------------------------------------------------------------------------------
@dataclass
class RunConfig:
    """Where a run writes, and what makes it reproducible.

    Attributes:
        output_dir: run directory (checkpoints/, tb/, plots/, metrics.jsonl, final/).
        seed: seeds model init, data order and the training noise.
        num_threads: ``torch.set_num_threads`` for CPU runs; None leaves torch's default.
    """

    output_dir: str = "runs/train"
    seed: int = 0
    num_threads: int | None = None

    def validate(self) -> None:
        if not self.output_dir:
            raise TrainConfigError("run.output_dir must be a non-empty path")
        if self.seed < 0:
            raise TrainConfigError(f"run.seed must be >= 0, got {self.seed}")
        if self.num_threads is not None and self.num_threads < 1:
            raise TrainConfigError(f"run.num_threads must be >= 1 or null, got {self.num_threads}")


@dataclass
class ModelSection:
    """Which model to train.

    Attributes:
        preset: a :mod:`ros3d_agent.model.presets` name; ignored for the architecture when
            ``init_checkpoint`` is given (the checkpoint's config is used).
        init_checkpoint: a checkpoint written by ``save_checkpoint`` to start from (weights +
            config + tokenizer), e.g. a converted LLaVA-Video-7B; None = random init of ``preset``.
        tokenizer: a local Hugging Face tokenizer directory. None: the init checkpoint's tokenizer,
            else the offline BPE built into the run directory.
        overrides: deep-merged into the model config dict (``Ros3DModelConfig.to_dict`` layout).
    """

    preset: str = "tiny"
    init_checkpoint: str | None = None
    tokenizer: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        from ros3d_agent.model.presets import available_presets

        if self.init_checkpoint is None and self.preset not in available_presets():
            raise TrainConfigError(f"model.preset {self.preset!r} is unknown; available: {available_presets()}")


@dataclass
class VaeSource:
    """The frozen image VAE whose latents are Ross3D's targets (and that decodes the recon plots).

    Exactly one of ``path`` (a local diffusers AutoencoderKL directory, e.g. FLUX.1-dev/vae) or
    ``tiny_random`` (a random FLUX-shaped VAE: tests and smoke runs only, its latents are random
    features of the image and its decoder is not their inverse).
    """

    path: str | None = None
    tiny_random: bool = False
    seed: int = 0

    @property
    def configured(self) -> bool:
        return self.path is not None or self.tiny_random

    def describe(self) -> str:
        return f"tiny_random(seed={self.seed})" if self.tiny_random else str(self.path)

    def validate(self) -> None:
        if self.path is not None and self.tiny_random:
            raise TrainConfigError("data.vae: set either path or tiny_random, not both")


@dataclass
class TeacherSource:
    """The frozen 3D teacher of the 3DRS loss (features cached per scene before training).

    Attributes:
        path: a local ``transformers`` vision backbone directory (see
            :mod:`ros3d_agent.model.teacher_features`).
        tiny_random: a random DINOv2-shaped teacher written into the cache (tests/smoke runs only).
        frames_per_scene: how many uniformly spread frames get features; None = ``data.num_views``
            so that, with uniform sampling, every training view has its teacher features.
    """

    path: str | None = None
    tiny_random: bool = False
    frames_per_scene: int | None = None

    @property
    def configured(self) -> bool:
        return self.path is not None or self.tiny_random

    def validate(self) -> None:
        if self.path is not None and self.tiny_random:
            raise TrainConfigError("data.teacher: set either path or tiny_random, not both")
        if self.frames_per_scene is not None and self.frames_per_scene < 1:
            raise TrainConfigError(f"data.teacher.frames_per_scene must be >= 1, got {self.frames_per_scene}")


@dataclass
class DataConfig:
    """Scenes, annotations, view sampling, proposals, semi-supervised mixing and the target cache.

    Attributes:
        scenes: directory holding one sub-directory per scene (ScanNet ``posed_images`` layout).
        annotations: an annotation JSONL file, or a directory holding ``{split}.jsonl``
            (default: ``<scenes>/annotations``, where ``ros3d-agent scenes annotate`` writes).
        split: which split file of a directory to read.
        tasks: annotation tasks to train on (others are skipped).
        max_samples: keep only the first N records (overfitting checks, smoke runs).
        num_views: views per sample (Video-3D-LLM: 32).
        sampling: ``uniform`` (the published recipe) or ``max_coverage`` (greedy voxel coverage).
        coverage_stop: with max_coverage, stop once this share of the scene's voxels is covered
            (fewer views; samples are then batched with others of the same view count).
        proposals: grounding candidates at train time: ``gt`` (the scene's objects.json boxes,
            as Video-3D-LLM trains) or ``predicted`` (cached class-agnostic proposals; targets are
            those with IoU >= ``proposal_match_iou`` to a target box).
        max_proposals: cap on candidates per sample (GT boxes are all kept if fewer).
        unlabeled_scenes: directory of scenes without annotations; they only feed the 3D losses
            (Ross3D reconstruction, 3DRS alignment), as in Ross3D's semi-supervised setting.
        unlabeled_fraction: share of batches drawn from unlabeled scenes (0 = none).
        cache_dir: where VAE latents, BEV targets, view selections, proposals and teacher features
            are cached (default ``<scenes>/.ros3d_cache``; shared by runs on the same scenes).
        build_cache: ``auto`` builds what is missing before training, ``never`` fails instead.
        num_workers: DataLoader worker processes.
    """

    scenes: str = ""
    annotations: str | None = None
    split: str = "train"
    tasks: list[str] = field(default_factory=lambda: list(_TASKS))
    max_samples: int | None = None
    num_views: int = 8
    sampling: Literal["uniform", "max_coverage"] = "uniform"
    coverage_stop: float | None = None
    proposals: Literal["gt", "predicted"] = "gt"
    proposal_match_iou: float = 0.5
    max_proposals: int = 64
    unlabeled_scenes: str | None = None
    unlabeled_fraction: float = 0.0
    cache_dir: str | None = None
    build_cache: Literal["auto", "never"] = "auto"
    num_workers: int = 0
    vae: VaeSource = field(default_factory=VaeSource)
    teacher: TeacherSource = field(default_factory=TeacherSource)

    def annotation_file(self) -> Path:
        """The JSONL file the records come from."""
        base = Path(self.annotations) if self.annotations else Path(self.scenes) / "annotations"
        return base / f"{self.split}.jsonl" if base.suffix != ".jsonl" else base

    def resolved_cache_dir(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else Path(self.scenes) / ".ros3d_cache"

    def validate(self, check_paths: bool = True) -> None:
        if not self.scenes:
            raise TrainConfigError("data.scenes is required (a directory of scene directories)")
        bad = [t for t in self.tasks if t not in _TASKS]
        if bad or not self.tasks:
            raise TrainConfigError(f"data.tasks must be a non-empty subset of {list(_TASKS)}, got {self.tasks}")
        if self.max_samples is not None and self.max_samples < 1:
            raise TrainConfigError(f"data.max_samples must be >= 1 or null, got {self.max_samples}")
        if self.num_views < 1:
            raise TrainConfigError(f"data.num_views must be >= 1, got {self.num_views}")
        if self.coverage_stop is not None and not 0 < self.coverage_stop <= 1:
            raise TrainConfigError(f"data.coverage_stop must be in (0, 1] or null, got {self.coverage_stop}")
        if self.coverage_stop is not None and self.sampling != "max_coverage":
            raise TrainConfigError("data.coverage_stop only applies to sampling: max_coverage")
        if not 0 < self.proposal_match_iou <= 1:
            raise TrainConfigError(f"data.proposal_match_iou must be in (0, 1], got {self.proposal_match_iou}")
        if self.max_proposals < 1:
            raise TrainConfigError(f"data.max_proposals must be >= 1, got {self.max_proposals}")
        if not 0 <= self.unlabeled_fraction < 1:
            raise TrainConfigError(f"data.unlabeled_fraction must be in [0, 1), got {self.unlabeled_fraction}")
        if self.unlabeled_fraction > 0 and not self.unlabeled_scenes:
            raise TrainConfigError("data.unlabeled_fraction > 0 needs data.unlabeled_scenes")
        if self.num_workers < 0:
            raise TrainConfigError(f"data.num_workers must be >= 0, got {self.num_workers}")
        self.vae.validate()
        self.teacher.validate()
        if check_paths:
            if not Path(self.scenes).is_dir():
                raise TrainConfigError(f"data.scenes {self.scenes!r} is not a directory")
            if not self.annotation_file().is_file():
                raise TrainConfigError(f"annotation file {self.annotation_file()} does not exist "
                                       "(set data.annotations, or run 'ros3d-agent scenes annotate')")
            if self.unlabeled_scenes and not Path(self.unlabeled_scenes).is_dir():
                raise TrainConfigError(f"data.unlabeled_scenes {self.unlabeled_scenes!r} is not a directory")
            if self.vae.path and not Path(self.vae.path).is_dir():
                raise TrainConfigError(f"data.vae.path {self.vae.path!r} is not a directory")
            if self.teacher.path and not Path(self.teacher.path).is_dir():
                raise TrainConfigError(f"data.teacher.path {self.teacher.path!r} is not a directory")


@dataclass
class PartConfig:
    """One model part: trained or frozen, and its learning rate (None = ``optim.lr``)."""

    train: bool = True
    lr: float | None = None


def _default_parts() -> dict[str, PartConfig]:
    return {name: PartConfig() for name in PARTS}


@dataclass
class OptimConfig:
    """AdamW with one parameter group per trained part (x decay / no decay).

    Attributes:
        lr: learning rate of every part without its own ``lr``.
        parts: ``vision_tower`` (SigLIP), ``projector`` (mm_projector + image_newline), ``llm``
            (Qwen2 incl. embeddings), ``heads`` (grounding head + training heads). Video-3D-LLM:
            all trained, vision tower at 2e-6; Ross3D: vision tower frozen.
        weight_decay: applied to matrices only (not to biases, norms, or 1-D parameters).
    """

    lr: float = 1e-5
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    parts: dict[str, PartConfig] = field(default_factory=_default_parts)

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # type: ignore[assignment]
        self.parts = {**_default_parts(), **self.parts}

    def part_lr(self, part: str) -> float:
        lr = self.parts[part].lr
        return self.lr if lr is None else lr

    def validate(self) -> None:
        if not self.lr > 0:
            raise TrainConfigError(f"optim.lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise TrainConfigError(f"optim.weight_decay must be >= 0, got {self.weight_decay}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise TrainConfigError(f"optim.betas must be two numbers in [0, 1), got {self.betas}")
        if not self.eps > 0:
            raise TrainConfigError(f"optim.eps must be > 0, got {self.eps}")
        unknown = sorted(set(self.parts) - set(PARTS))
        if unknown:
            raise TrainConfigError(f"optim.parts: unknown part(s) {unknown}; known: {list(PARTS)}")
        for name, part in self.parts.items():
            if part.lr is not None and not part.lr > 0:
                raise TrainConfigError(f"optim.parts.{name}.lr must be > 0 or null, got {part.lr}")


@dataclass
class LoraConfig:
    """LoRA adapters (peft) on the LLM and/or the vision tower; their base weights stay frozen.

    Attributes:
        apply_to: parts that get adapters (``llm``, ``vision_tower``); they train at the part's lr.
        target_modules: Linear module names inside those parts (Qwen2 / SigLIP names).
    """

    enabled: bool = False
    r: int = 16
    alpha: float = 32.0
    dropout: float = 0.05
    apply_to: list[str] = field(default_factory=lambda: ["llm"])
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])

    def validate(self, optim: OptimConfig) -> None:
        if not self.enabled:
            return
        if self.r < 1:
            raise TrainConfigError(f"lora.r must be >= 1, got {self.r}")
        if not self.alpha > 0:
            raise TrainConfigError(f"lora.alpha must be > 0, got {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise TrainConfigError(f"lora.dropout must be in [0, 1), got {self.dropout}")
        bad = [p for p in self.apply_to if p not in ("llm", "vision_tower")]
        if bad or not self.apply_to:
            raise TrainConfigError(f"lora.apply_to must be a non-empty subset of ['llm', 'vision_tower'], got {self.apply_to}")
        if not self.target_modules:
            raise TrainConfigError("lora.target_modules must name at least one module")
        for part in self.apply_to:
            if not optim.parts[part].train:
                raise TrainConfigError(f"lora.apply_to includes {part!r} but optim.parts.{part}.train is false: "
                                       "its adapters would never train")


@dataclass
class ScheduleConfig:
    """Learning-rate schedule: linear warmup, then cosine (or constant) down to ``min_lr_ratio·lr``.

    Attributes:
        max_steps: optimizer steps; None = ``epochs`` over the data.
        warmup_ratio / warmup_steps: warmup length (steps win when both are set).
    """

    kind: Literal["cosine", "constant"] = "cosine"
    max_steps: int | None = None
    epochs: float = 1.0
    warmup_ratio: float = 0.03
    warmup_steps: int | None = None
    min_lr_ratio: float = 0.0

    def validate(self) -> None:
        if self.max_steps is not None and self.max_steps < 1:
            raise TrainConfigError(f"schedule.max_steps must be >= 1 or null, got {self.max_steps}")
        if self.max_steps is None and not self.epochs > 0:
            raise TrainConfigError(f"schedule.epochs must be > 0 when max_steps is null, got {self.epochs}")
        if not 0 <= self.warmup_ratio < 1:
            raise TrainConfigError(f"schedule.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise TrainConfigError(f"schedule.warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise TrainConfigError(f"schedule.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")


@dataclass
class TrainLoopConfig:
    """Batching and numerics of the loop.

    Attributes:
        batch_size: samples per device per micro-batch (the reference: 1).
        grad_accum: micro-batches per optimizer step (global batch = batch_size × grad_accum × GPUs).
        mixed_precision: ``no``, ``bf16`` (CPU too) or ``fp16`` (CUDA only; loss scaling).
        gradient_checkpointing: recompute SigLIP/Qwen2 layer activations in backward.
        max_grad_norm: clip the global gradient norm (0 = no clipping).
        tf32: allow TF32 matmuls on Ampere+ GPUs.
    """

    batch_size: int = 1
    grad_accum: int = 1
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    gradient_checkpointing: bool = False
    max_grad_norm: float = 1.0
    tf32: bool = True

    def validate(self) -> None:
        if self.batch_size < 1:
            raise TrainConfigError(f"train.batch_size must be >= 1, got {self.batch_size}")
        if self.grad_accum < 1:
            raise TrainConfigError(f"train.grad_accum must be >= 1, got {self.grad_accum}")
        if self.max_grad_norm < 0:
            raise TrainConfigError(f"train.max_grad_norm must be >= 0, got {self.max_grad_norm}")


@dataclass
class CheckpointConfig:
    """Training checkpoints (exact resume) and the final model.

    Attributes:
        save_every: optimizer steps between checkpoints (0 = only at the end).
        keep_last: how many step checkpoints to keep (the one ``latest`` names is never deleted).
        save_final: write the final model with ``save_checkpoint`` to ``<output_dir>/final``.
        final_include_training_heads: keep Ross3D/3DRS heads in the final model (default: no, so it
            is exactly what the node loads).
        final_dtype: cast the final weights (``float16``/``bfloat16``) or keep them (null).
    """

    save_every: int = 500
    keep_last: int = 2
    save_final: bool = True
    final_include_training_heads: bool = False
    final_dtype: Literal["float16", "bfloat16", "float32"] | None = None

    def validate(self) -> None:
        if self.save_every < 0:
            raise TrainConfigError(f"checkpoint.save_every must be >= 0, got {self.save_every}")
        if self.keep_last < 1:
            raise TrainConfigError(f"checkpoint.keep_last must be >= 1, got {self.keep_last}")


@dataclass
class LoggingConfig:
    """What a person sees: tensorboard scalars, a progress bar, PNG plots.

    Attributes:
        log_every: optimizer steps between tensorboard/metrics.jsonl writes.
        plot_every: steps between PNG plots (loss curves + reconstructions); 0 = at the end only.
        recon_samples: samples whose BEV / masked-view reconstructions are plotted.
        recon_steps: denoising steps of the plotted reconstructions (diffusers DDIM).
        progress: show a tqdm bar with ETA on the main process.
    """

    log_every: int = 1
    plot_every: int = 0
    recon_samples: int = 2
    recon_steps: int = 20
    progress: bool = True

    def validate(self) -> None:
        if self.log_every < 1:
            raise TrainConfigError(f"logging.log_every must be >= 1, got {self.log_every}")
        if self.plot_every < 0 or self.recon_samples < 0 or self.recon_steps < 1:
            raise TrainConfigError("logging.plot_every/recon_samples must be >= 0 and recon_steps >= 1")


@dataclass
class TrainConfig:
    """A whole training run (see the section classes for every field)."""

    run: RunConfig = field(default_factory=RunConfig)
    model: ModelSection = field(default_factory=ModelSection)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainLoopConfig = field(default_factory=TrainLoopConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def validate(self, check_paths: bool = True) -> None:
        """Check every section, then the combinations that involve several."""
        self.run.validate()
        self.model.validate()
        self.data.validate(check_paths)
        self.optim.validate()
        self.lora.validate(self.optim)
        self.schedule.validate()
        self.train.validate()
        self.checkpoint.validate()
        self.logging.validate()
        lora_parts = set(self.lora.apply_to) if self.lora.enabled else set()
        if not any(p.train for p in self.optim.parts.values()) and not lora_parts:
            raise TrainConfigError("optim.parts: every part is frozen; nothing would train")
        if check_paths and self.model.init_checkpoint and not Path(self.model.init_checkpoint).is_dir():
            raise TrainConfigError(f"model.init_checkpoint {self.model.init_checkpoint!r} is not a directory "
                                   "(a checkpoint written by ros3d_agent.model.save_checkpoint)")
        if check_paths and self.model.tokenizer and not Path(self.model.tokenizer).is_dir():
            raise TrainConfigError(f"model.tokenizer {self.model.tokenizer!r} is not a directory")

    def validate_against_model(self, model_config: Any) -> None:
        """Checks that need the resolved model config (3D losses vs targets, semi-supervised data)."""
        w = model_config.loss_weights
        ross = model_config.ross3d
        ross_on = ross is not None and ross.enabled and (
            (ross.cross_view and w.get("ross3d_view", 0) > 0) or (ross.bev and w.get("ross3d_bev", 0) > 0))
        align_on = model_config.alignment3drs is not None and w.get("align3drs", 0) > 0
        if ross_on and not self.data.vae.configured:
            raise TrainConfigError("the model trains Ross3D reconstruction but data.vae is not set: give a local VAE "
                                   "(data.vae.path) or disable it (model.overrides: {ross3d: null})")
        if align_on and not self.data.teacher.configured:
            raise TrainConfigError("the model trains 3DRS alignment but data.teacher is not set: give a local teacher "
                                   "(data.teacher.path) or disable it (model.overrides: {alignment3drs: null})")
        if self.data.unlabeled_fraction > 0 and not (ross_on or align_on):
            raise TrainConfigError("data.unlabeled_fraction > 0 but the model has no 3D loss (Ross3D/3DRS) that "
                                   "unlabeled scenes could train")
        if ross_on and ross.cross_view and self.data.num_views < 2:
            raise TrainConfigError("Ross3D cross-view reconstruction needs data.num_views >= 2 (one masked, one kept)")

    def to_dict(self) -> dict[str, Any]:
        return jsonable(dataclasses.asdict(self))


# ------------------------------------------------------------------------------------------------
# generic dict -> dataclass with type checks
# ------------------------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (and build nested dataclasses)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except TrainConfigError as exc:
                errors.append(str(exc))
        raise TrainConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} does not fit {_type_name(tp)}")
    if origin is Literal:
        if value not in args:
            raise TrainConfigError(f"{where}: must be one of {list(args)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return _build(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise TrainConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise TrainConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        out = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise TrainConfigError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(v, vt, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise TrainConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TrainConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML reads "1e-5" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise TrainConfigError(f"{where}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TrainConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise TrainConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise TrainConfigError(f"{where}: unsupported field type {_type_name(tp)}")  # pragma: no cover - a bug here


def _build(cls: type, data: Any, where: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise TrainConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        prefix = f"{where}." if where else ""
        raise TrainConfigError(f"unknown key(s) {[prefix + k for k in unknown]}; known in {where or 'the top level'}: {sorted(known)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise TrainConfigError(f"{where or 'config'}: {exc}") from exc


def config_from_dict(data: dict[str, Any], *, check_paths: bool = True) -> TrainConfig:
    """Build and validate a :class:`TrainConfig` from a plain dict (the YAML's content)."""
    cfg = _build(TrainConfig, data, "")
    cfg.validate(check_paths=check_paths)
    return cfg


def parse_set_option(item: str) -> tuple[str, Any]:
    """``"a.b=VALUE"`` → ``("a.b", yaml-parsed VALUE)`` (the CLI's ``--set``)."""
    import yaml

    if "=" not in item:
        raise TrainConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. schedule.max_steps=100")
    key, raw = item.split("=", 1)
    if not key.strip():
        raise TrainConfigError(f"--set {item!r}: empty key")
    return key.strip(), yaml.safe_load(raw)


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` with dotted keys set (``{"schedule.max_steps": 10}``); intermediate maps are created."""
    out = copy.deepcopy(data)
    for dotted, value in overrides.items():
        node = out
        keys = dotted.split(".")
        for k in keys[:-1]:
            nxt = node.get(k)
            if nxt is None:
                nxt = node[k] = {}
            if not isinstance(nxt, dict):
                raise TrainConfigError(f"override {dotted!r}: {k!r} is not a section")
            node = nxt
        node[keys[-1]] = value
    return out


def load_config(path: str | Path, overrides: dict[str, Any] | None = None, *, check_paths: bool = True) -> TrainConfig:
    """Read a YAML training config, apply dotted ``overrides``, build and validate it.

    Raises:
        TrainConfigError: unreadable YAML, unknown keys, wrong types or inconsistent values (the
            message names the key).
    """
    import yaml

    p = Path(path)
    if not p.is_file():
        raise TrainConfigError(f"training config {p} does not exist")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise TrainConfigError(f"{p}: not valid YAML ({exc})") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise TrainConfigError(f"{p}: the top level must be a mapping of sections")
    if overrides:
        data = apply_overrides(data, overrides)
    try:
        return config_from_dict(data, check_paths=check_paths)
    except TrainConfigError as exc:
        raise TrainConfigError(f"{p}: {exc}") from exc
