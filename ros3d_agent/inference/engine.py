"""The inference engine the ROS node, evaluation and replay call: load once, encode each keyframe
once, answer many questions over cached features.

Contract (the node is written against exactly this)::

    engine = SceneEngine(EngineConfig(checkpoint="ckpt/"))       # or preset="tiny", allow_random_weights=True
    engine.warmup()                                               # seconds; first real query is not slow
    kf = engine.encode_keyframe(frame)                            # ingest worker, once per admitted keyframe
    ans = engine.answer("what is on the table?", "qa", [kf, ...], proposals,
                        progress=cb, should_cancel=stop)          # query worker; never raises on a bad query
    engine.release()                                              # frees the model (and GPU memory)

Why split encoding from answering: the vision tower and projector cost as much as a short answer and
do not depend on the question, so the node pays for them when a keyframe arrives and a query pays only
for the LLM over the concatenated cached features (:meth:`VisualFeatures.concat_views`).

Failures a caller can cause with a query (empty/oversized/unprintable question, no keyframes, no
proposals to ground in, cancellation) come back as ``Answer.failure`` whose ``error`` starts with a
code (``invalid_question``, ``empty_memory``, ``invalid_keyframes``, ``no_proposals``,
``context_overflow``) or is exactly ``cancelled``. Problems with the engine itself (bad checkpoint,
unavailable device, use after :meth:`~SceneEngine.release`) raise :class:`EngineError`.

One lock guards the model, so ``encode_keyframe`` (ingest worker) and ``answer`` (query worker) may
be called from different threads; they run one at a time.
"""

from __future__ import annotations

import atexit
import gc
import json
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ros3d_agent.inference.answer import TASKS, Answer, GroundedBox
from ros3d_agent.inference.keyframe_features import KeyframeFeatures, coverage_voxels, select_keyframes
from ros3d_agent.inference.prompting import GROUNDING_TASKS, prepare_query
from ros3d_agent.model.modeling import Ros3DForConditionalGeneration, VisualFeatures
from ros3d_agent.scene.types import Box3D, Frame

__all__ = ["EngineConfig", "EngineError", "SceneEngine", "STAGES"]

log = logging.getLogger(__name__)

#: progress stages, in the order a query goes through them (a text task skips "grounding", a
#: grounding task skips "generating")
STAGES = ("selecting_views", "encoding", "generating", "grounding")
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# Share of the progress bar before the LLM runs (view selection and feature assembly are quick).
_LLM_START = 0.1


class EngineError(RuntimeError):
    """The engine cannot be built or used: bad checkpoint or config, unavailable device, released."""


@dataclass
class EngineConfig:
    """How to build a :class:`SceneEngine`.

    Attributes:
        checkpoint: a LOCAL checkpoint directory: our format (:mod:`ros3d_agent.model.checkpoint`) or
            an upstream LLaVA-Video / Video-3D-LLM Hugging Face directory (mapped on load, see
            :mod:`ros3d_agent.model.upstream_checkpoints`).
        preset: a model preset (``tiny``, ``small``, ...) with random weights, for tests and
            plumbing only: needs ``allow_random_weights``; the answers are then meaningless.
        allow_random_weights: permit ``preset`` without a checkpoint.
        device: ``cpu``, ``cuda``, ``cuda:N`` (or ``mps``).
        dtype: ``float32``, ``float16`` (GPU only) or ``bfloat16``.
        max_views: at most this many keyframes per query.
        max_new_tokens: generation length limit of text answers.
        multi_threshold: cumulative probability at which multi-object grounding stops adding boxes.
        seed: seed of a preset's random initialisation (answers are greedy, hence deterministic).
    """

    checkpoint: str | None = None
    preset: str | None = None
    allow_random_weights: bool = False
    device: str = "cpu"
    dtype: str = "float32"
    max_views: int = 16
    max_new_tokens: int = 32
    multi_threshold: float = 0.4
    seed: int = 0

    def validate(self) -> None:
        """Raise :class:`EngineError` naming the field on any unusable setting."""
        if self.checkpoint and self.preset:
            raise EngineError("EngineConfig: set either checkpoint or preset, not both")
        if not self.checkpoint and not self.preset:
            raise EngineError("EngineConfig: set checkpoint (a local checkpoint directory) or preset (with allow_random_weights=True)")
        if self.preset and not self.allow_random_weights:
            raise EngineError(
                f"EngineConfig: preset {self.preset!r} has random weights and gives meaningless answers; "
                "pass a checkpoint, or set allow_random_weights=True for tests/plumbing"
            )
        if self.dtype not in _DTYPES:
            raise EngineError(f"EngineConfig.dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")
        for name in ("max_views", "max_new_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise EngineError(f"EngineConfig.{name} must be an integer >= 1, got {value!r}")
        if isinstance(self.multi_threshold, bool) or not isinstance(self.multi_threshold, (int, float)) or not 0 < self.multi_threshold <= 1:
            raise EngineError(f"EngineConfig.multi_threshold must be in (0, 1], got {self.multi_threshold!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise EngineError(f"EngineConfig.seed must be an integer, got {self.seed!r}")


def _resolve_device(name: str, dtype: str) -> torch.device:
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise EngineError(f"EngineConfig.device {name!r} is not a torch device (cpu, cuda, cuda:N): {exc}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            built = "with" if torch.backends.cuda.is_built() else "without"
            raise EngineError(f"cuda requested but not available (torch {torch.__version__} is built {built} CUDA; no usable GPU/driver found)")
        index = device.index if device.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise EngineError(f"{name} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
        device = torch.device("cuda", index)
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise EngineError("mps requested but not available")
    elif device.type != "cpu":
        raise EngineError(f"EngineConfig.device {name!r}: only cpu, cuda[:N] and mps are supported")
    if device.type == "cpu" and dtype == "float16":
        raise EngineError("EngineConfig.dtype float16 is not supported on cpu: use float32 or bfloat16")
    return device


# -- offline tokenizer for presets ----------------------------------------------------------------
_offline_lock = threading.Lock()
_offline_dir: Path | None = None


def _offline_tokenizer_dir() -> Path:
    """A directory holding the offline tokenizer, built once per process (it is deterministic)."""
    global _offline_dir
    with _offline_lock:
        if _offline_dir is None or not (_offline_dir / "tokenizer.json").is_file():
            from ros3d_agent.model.tokenizer import build_offline_tokenizer

            path = Path(tempfile.mkdtemp(prefix="ros3d_offline_tokenizer_"))
            atexit.register(shutil.rmtree, path, True)
            build_offline_tokenizer(path)
            _offline_dir = path
        return _offline_dir


# -- model loading --------------------------------------------------------------------------------
@dataclass
class _Loaded:
    model: Ros3DForConditionalGeneration
    tokenizer: Any
    info: dict[str, Any]


def _build_preset(cfg: EngineConfig, device: torch.device, dtype: torch.dtype) -> _Loaded:
    from ros3d_agent.model.configuration import ConfigError
    from ros3d_agent.model.presets import get_preset
    from ros3d_agent.model.tokenizer import load_tokenizer

    try:
        config = get_preset(str(cfg.preset), ross3d=None, alignment3drs=None)
    except ConfigError as exc:
        raise EngineError(str(exc)) from None
    loaded_tok = load_tokenizer(_offline_tokenizer_dir(), embedding_rows=config.language.vocab_size)
    if loaded_tok.needs_resize:
        raise EngineError(f"preset {cfg.preset!r} has {config.language.vocab_size} embeddings, fewer than the offline tokenizer's "
                          f"{len(loaded_tok.tokenizer)} tokens")
    if loaded_tok.token_ids != config.tokens:
        # e.g. llava-video-7b expects Qwen2's ids; with random weights any rows serve, so use the tokenizer's
        config = config.replace(tokens=loaded_tok.token_ids)
    default_dtype = torch.get_default_dtype()
    with torch.random.fork_rng(devices=[]):  # the seed shapes the weights without touching the caller's RNG
        torch.manual_seed(cfg.seed)
        try:
            torch.set_default_dtype(dtype)
            with torch.device(device):
                model = Ros3DForConditionalGeneration(config)
        finally:
            torch.set_default_dtype(default_dtype)
    log.warning("SceneEngine: preset %r has RANDOM weights (allow_random_weights=True): answers are meaningless; "
                "use it for tests and plumbing only", cfg.preset)
    return _Loaded(model, loaded_tok.tokenizer, {"source": "preset", "preset": cfg.preset, "checkpoint": None, "random_weights": True})


def _load_checkpoint_dir(cfg: EngineConfig, device: torch.device, dtype: torch.dtype) -> _Loaded:
    from ros3d_agent.model.checkpoint import CONFIG_FILE, FORMAT_NAME, load_checkpoint
    from ros3d_agent.model.configuration import ConfigError

    path = Path(str(cfg.checkpoint)).expanduser()
    if not path.is_dir():
        raise EngineError(f"checkpoint directory not found: {path} (only local directories are supported; nothing is downloaded)")
    cfg_file = path / CONFIG_FILE
    if not cfg_file.is_file():
        raise EngineError(f"{path} is not a checkpoint directory: it has no {CONFIG_FILE}")
    try:
        meta = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EngineError(f"{cfg_file}: cannot read it as JSON ({exc})") from None
    if isinstance(meta, dict) and meta.get("format") == FORMAT_NAME:
        try:
            ckpt = load_checkpoint(path, device=device, dtype=dtype)
        except (ConfigError, ValueError, OSError, RuntimeError) as exc:
            raise EngineError(f"cannot load checkpoint {path}: {exc}") from None
        if ckpt.tokenizer is None:
            raise EngineError(f"checkpoint {path} has no tokenizer/ directory; save it with its tokenizer (save_checkpoint(model, tokenizer, ...))")
        model = ckpt.model
        info = {"source": "checkpoint", "preset": ckpt.config.preset, "checkpoint": str(path), "random_weights": False}
        return _Loaded(model, ckpt.tokenizer, info)

    from ros3d_agent.model.upstream_checkpoints import UpstreamCheckpointError, is_upstream_checkpoint, load_upstream_checkpoint

    if not is_upstream_checkpoint(path):
        raise EngineError(f"{path}: neither a ros3d_agent checkpoint (config.json format={FORMAT_NAME!r}) "
                          "nor a LLaVA-Video / Video-3D-LLM directory (config.json with mm_projector_type, mm_vision_tower)")
    try:
        up = load_upstream_checkpoint(path, device=device, dtype=dtype)
    except (UpstreamCheckpointError, ConfigError, ValueError, OSError) as exc:
        raise EngineError(f"cannot load upstream checkpoint {path}: {exc}") from None
    info = {"source": "upstream", "preset": None, "checkpoint": str(path), "random_weights": False,
            "upstream_kind": up.report.kind, "untrained_parameters": len(up.report.initialised)}
    if up.report.initialised:
        log.warning("SceneEngine: %s", up.report.summary())
    return _Loaded(up.model, up.tokenizer, info)


# -- generation hooks -----------------------------------------------------------------------------
class _Progress:
    """Forwards ``(stage, fraction)`` to the caller's callback; a failing listener never breaks a query."""

    def __init__(self, callback: Callable[[str, float], None] | None) -> None:
        self.callback = callback

    def __call__(self, stage: str, fraction: float) -> None:
        if self.callback is None:
            return
        try:
            self.callback(stage, float(min(1.0, max(0.0, fraction))))
        except Exception:
            log.debug("progress callback failed", exc_info=True)


def _stopping_criteria(should_cancel: Callable[[], bool] | None, progress: _Progress, max_new_tokens: int) -> Any:
    """A transformers StoppingCriteria polled after every generated token: reports progress and
    stops generation as soon as ``should_cancel()`` is true (``.cancelled`` then says so)."""
    from transformers import StoppingCriteria

    class _CancelAndReport(StoppingCriteria):
        def __init__(self) -> None:
            self.cancelled = False

        def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
            progress("generating", _LLM_START + (1 - _LLM_START) * input_ids.shape[1] / max_new_tokens)
            if should_cancel is not None and should_cancel():
                self.cancelled = True
            return torch.full((input_ids.shape[0],), self.cancelled, dtype=torch.bool, device=input_ids.device)

    return _CancelAndReport()


def _dummy_frame(size: int) -> Frame:
    """A synthetic posed RGB-D view (a wall 2 m in front of the camera) for warm-up."""
    u = np.linspace(0, 255, size, dtype=np.float32)
    rgb = np.stack(np.broadcast_arrays(u[None, :], u[:, None], np.full((size, size), 128.0, np.float32)), axis=-1).astype(np.uint8)
    depth = np.full((size, size), 2.0, np.float32)
    K = np.array([[size, 0, size / 2], [0, size, size / 2], [0, 0, 1]], dtype=np.float64)
    return Frame(rgb=rgb, depth=depth, K=K, T_world_cam=np.eye(4), stamp=0, frame_id="warmup")


class SceneEngine:
    """Loads the model once and answers questions over cached keyframe features (see the module doc)."""

    def __init__(self, cfg: EngineConfig) -> None:
        if not isinstance(cfg, EngineConfig):
            raise EngineError(f"SceneEngine: expected an EngineConfig, got {type(cfg).__name__}")
        cfg.validate()
        self.cfg = cfg
        self._lock = threading.RLock()
        self._device = _resolve_device(cfg.device, cfg.dtype)
        self._dtype = _DTYPES[cfg.dtype]
        t0 = time.perf_counter()
        loaded = _load_checkpoint_dir(cfg, self._device, self._dtype) if cfg.checkpoint else _build_preset(cfg, self._device, self._dtype)
        model = loaded.model.eval()  # built on the device in the dtype (a cast here would also hit fp32 buffers)
        model.requires_grad_(False)
        self._model: Ros3DForConditionalGeneration | None = model
        self._tokenizer: Any = loaded.tokenizer
        mc = model.config
        self._info: dict[str, Any] = {
            **loaded.info,
            "parameters": int(model.num_parameters()),
            "device": str(self._device),
            "dtype": cfg.dtype,
            "max_views": cfg.max_views,
            "max_new_tokens": cfg.max_new_tokens,
            "multi_threshold": float(cfg.multi_threshold),
            "hidden_size": mc.language.hidden_size,
            "vocab_size": mc.language.vocab_size,
            "image_size": mc.vision.image_size,
            "tokens_per_view": mc.tokens_per_view,
            "context_length": mc.language.max_position_embeddings,
            "load_seconds": round(time.perf_counter() - t0, 3),
            "released": False,
        }

    # -- state ------------------------------------------------------------------------------------
    @property
    def info(self) -> dict[str, Any]:
        """What is loaded: source/preset/checkpoint, parameters, device, dtype, random_weights, sizes."""
        return dict(self._info)

    @property
    def model(self) -> Ros3DForConditionalGeneration:
        """The loaded model (e.g. to attach hooks); raises :class:`EngineError` after :meth:`release`."""
        return self._require()

    @property
    def tokenizer(self) -> Any:
        self._require()
        return self._tokenizer

    def _require(self) -> Ros3DForConditionalGeneration:
        if self._model is None:
            raise EngineError("the engine was released (release() freed its model); build a new SceneEngine")
        return self._model

    def _sync(self) -> None:
        """Wait for queued GPU work, so stage timings measure the work and not its launch."""
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)

    def release(self) -> None:
        """Free the model and tokenizer (and cached GPU memory). Later calls raise :class:`EngineError`.

        Keyframe features the caller still holds keep their own (device) memory until dropped.
        """
        with self._lock:
            if self._model is None:
                return
            self._model = None
            self._tokenizer = None
            gc.collect()
            if self._device.type == "cuda":
                torch.cuda.empty_cache()
                # cuBLAS keeps one workspace per thread that ran a matmul (~33 MB each on an H100); the
                # node's deactivate must hand the GPU back entirely, so drop them too when torch allows.
                clear_workspaces = getattr(torch._C, "_cuda_clearCublasWorkspaces", None)
                if clear_workspaces is not None:
                    clear_workspaces()
            self._info["released"] = True

    # -- encoding ---------------------------------------------------------------------------------
    def encode_keyframe(self, frame: Frame) -> KeyframeFeatures:
        """Vision tower + projector + 3D code of ONE frame, for the caller to cache and pass to :meth:`answer`."""
        if not isinstance(frame, Frame):
            raise TypeError(f"encode_keyframe: expected a Frame, got {type(frame).__name__}")
        from ros3d_agent.model.geometry_inputs import frames_to_tensors

        t0 = time.perf_counter()
        # Resampling and back-projection run on the CPU outside the lock: a query is not held up by them.
        views = frames_to_tensors([frame], self._require().config.vision)
        voxels = coverage_voxels(views.world_xyz[0], views.world_valid[0])
        with self._lock:
            model = self._require()
            v = views.to(self._device)
            with torch.inference_mode():
                visual = model.encode_frames(v.pixel_values[None], v.world_xyz[None], v.world_valid[None])
            self._sync()
            return KeyframeFeatures(stamp=frame.stamp, frame_id=frame.frame_id, visual=visual, voxels=voxels,
                                    encode_seconds=time.perf_counter() - t0)

    # -- answering --------------------------------------------------------------------------------
    def answer(
        self,
        question: str,
        task: str,
        keyframes: Sequence[KeyframeFeatures],
        proposals: Sequence[Box3D] = (),
        *,
        situation: dict | str | None = None,
        box: Box3D | None = None,
        progress: Callable[[str, float], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> Answer:
        """Answer one query over cached keyframes (see the module doc for failures and stages).

        Args:
            question: the question / referring expression / caption request.
            task: ``qa``, ``situated_qa``, ``ground``, ``multi_ground`` or ``caption``.
            keyframes: cached features from :meth:`encode_keyframe`; at most ``max_views`` are used.
            proposals: candidate boxes for ``ground``/``multi_ground`` (``Answer.objects[i].proposal_id``
                is the index into this sequence).
            situation: ``situated_qa`` situation (text, or an annotation dict with ``"text"``).
            box: the object a ``caption`` is about; its centre is given to the model via ``<coord>``.
            progress: ``progress(stage, fraction)`` with stages :data:`STAGES` in order, fraction of the
                whole query in [0, 1].
            should_cancel: polled between stages and after every generated token; True ends the query
                with ``Answer.failure(..., "cancelled")``.

        Raises:
            ValueError: ``task`` is not one of the tasks (an Answer cannot carry it).
            EngineError: the engine was released.
        """
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; use one of {', '.join(TASKS)}")
        with self._lock:
            return self._answer(question, task, keyframes, proposals, situation, box, _Progress(progress), should_cancel,
                                self.cfg.max_new_tokens)

    def _answer(
        self,
        question: Any,
        task: str,
        keyframes: Sequence[KeyframeFeatures],
        proposals: Sequence[Box3D],
        situation: Any,
        box: Box3D | None,
        progress: _Progress,
        should_cancel: Callable[[], bool] | None,
        max_new_tokens: int,
    ) -> Answer:
        model = self._require()
        q_text = question if isinstance(question, str) else ""
        t_start = time.perf_counter()

        def fail(error: str) -> Answer:
            return Answer.failure(q_text, task, error)

        def cancelled() -> bool:
            return should_cancel is not None and bool(should_cancel())

        query = prepare_query(self._tokenizer, task, question, situation, box)
        if isinstance(query, str):
            return fail(query)
        if not keyframes:
            return fail("empty_memory: no keyframes were given (encode frames with encode_keyframe first)")
        err = self._check_keyframes(keyframes, model.hidden_size)
        if err:
            return fail(err)
        grounding = task in GROUNDING_TASKS
        boxes: list[Box3D] = list(proposals)
        if grounding and not boxes:
            return fail("no_proposals: no proposals to ground in (grounding selects among candidate boxes; none were given)")
        if any(not isinstance(b, Box3D) for b in boxes):
            return fail("invalid_proposals: proposals must be Box3D objects")
        if cancelled():
            return fail("cancelled")

        timings: dict[str, float] = {}
        progress("selecting_views", 0.0)
        t0 = time.perf_counter()
        selection = select_keyframes(keyframes, self.cfg.max_views)
        chosen = [keyframes[i] for i in selection.indices]
        timings["selecting_views"] = time.perf_counter() - t0
        if cancelled():
            return fail("cancelled")

        progress("encoding", 0.05)
        t0 = time.perf_counter()
        with torch.inference_mode():
            visual = VisualFeatures.concat_views([kf.visual for kf in chosen])
            if visual.tokens.device != self._device:
                visual = replace(visual, **{f.name: getattr(visual, f.name).to(self._device) for f in fields(visual)
                                            if getattr(visual, f.name) is not None})
        n_positions = len(query.prompt.input_ids) - 1 + visual.num_spliced_tokens + (0 if grounding else max_new_tokens)
        context = model.config.language.max_position_embeddings
        if n_positions > context:
            return fail(f"context_overflow: {len(chosen)} view(s) + the prompt need {n_positions} positions; "
                        f"the model's context is {context} (use fewer views or a shorter question)")
        input_ids = torch.tensor([query.prompt.input_ids], dtype=torch.long, device=self._device)
        self._sync()
        timings["encoding"] = time.perf_counter() - t0
        if cancelled():
            return fail("cancelled")

        stamps = [int(kf.stamp) for kf in chosen]
        if grounding:
            progress("grounding", _LLM_START)
            t0 = time.perf_counter()
            objects = self._ground(model, task, input_ids, visual, boxes)
            self._sync()
            timings["grounding"] = time.perf_counter() - t0
            if cancelled():
                return fail("cancelled")
            progress("grounding", 1.0)
            text = ""
        else:
            progress("generating", _LLM_START)
            t0 = time.perf_counter()
            criteria = _stopping_criteria(should_cancel, progress, max_new_tokens)
            from transformers import StoppingCriteriaList

            coord = None
            if query.coord_centre is not None:
                coord = torch.tensor([query.coord_centre], dtype=torch.float32, device=self._device)
            with torch.inference_mode():
                out = model.generate(input_ids, visual=visual, coord_centres=coord, max_new_tokens=max_new_tokens,
                                     stopping_criteria=StoppingCriteriaList([criteria]))
            self._sync()
            timings["generating"] = time.perf_counter() - t0
            if criteria.cancelled or cancelled():
                return fail("cancelled")
            text = self._tokenizer.decode(out[0].tolist(), skip_special_tokens=True).strip()
            progress("generating", 1.0)
            objects = []
        timings["total"] = time.perf_counter() - t_start
        return Answer(question=q_text, task=task, text=text, objects=objects, keyframe_stamps=stamps, timings=timings)

    @staticmethod
    def _check_keyframes(keyframes: Sequence[KeyframeFeatures], hidden_size: int) -> str | None:
        for i, kf in enumerate(keyframes):
            if not isinstance(kf, KeyframeFeatures):
                return f"invalid_keyframes: keyframes[{i}] is a {type(kf).__name__}, not the KeyframeFeatures encode_keyframe returns"
            if kf.hidden_size != hidden_size:
                return (f"invalid_keyframes: keyframes[{i}] has width {kf.hidden_size} but this model {hidden_size} "
                        "(encoded by another model; re-encode it)")
        grids = {(kf.visual.grid, tuple(kf.visual.pre_pool.shape[2:4])) for kf in keyframes}
        if len(grids) != 1:
            return f"invalid_keyframes: keyframes were encoded at different resolutions {sorted(map(str, grids))}"
        return None

    def _ground(self, model: Ros3DForConditionalGeneration, task: str, input_ids: torch.Tensor, visual: VisualFeatures,
                boxes: list[Box3D]) -> list[GroundedBox]:
        """Score the proposals with the ``<ground>`` token; best first, scores are probabilities."""
        from ros3d_agent.model.grounding import select_multi, select_single

        rows = []
        for b in boxes:  # the model compares axis-aligned boxes: a yawed box counts as its enclosing AABB
            lo, hi = b.bounds()
            rows.append(np.concatenate([(lo + hi) / 2, hi - lo]))
        props = torch.tensor(np.asarray(rows), dtype=torch.float32, device=self._device)[None]
        with torch.inference_mode():
            out = model(input_ids, visual=visual, proposals=props, logits_to_keep=1)
        logits = out.ground_logits.float()
        probs = torch.softmax(logits, dim=-1)[0].cpu()
        if task == "ground":
            best = int(select_single(logits)[0])
            picked = [best] if best < len(boxes) else []
        else:
            picked = select_multi(logits, float(self.cfg.multi_threshold))[0]
        return [GroundedBox(box=boxes[i], score=float(probs[i]), proposal_id=int(i)) for i in picked]

    # -- warm-up ----------------------------------------------------------------------------------
    def warmup(self) -> float:
        """One dummy encode + a short text answer + a grounding pass; returns the seconds it took."""
        with self._lock:
            model = self._require()
            t0 = time.perf_counter()
            kf = self.encode_keyframe(_dummy_frame(model.config.vision.image_size))
            quiet = _Progress(None)
            for task, proposals in (("qa", []), ("ground", [Box3D(np.array([0.0, 0.0, 2.0]), np.array([1.0, 1.0, 1.0]))])):
                ans = self._answer("What is in front of the camera?", task, [kf], proposals, None, None, quiet, None,
                                   min(2, self.cfg.max_new_tokens))
                if not ans.success:
                    raise EngineError(f"warm-up {task} query failed: {ans.error}")
            return time.perf_counter() - t0

    def __repr__(self) -> str:
        state = "released" if self._model is None else f"{self._info['parameters']:,} parameters"
        src = self._info.get("checkpoint") or f"preset {self._info.get('preset')}"
        return f"SceneEngine({src}, {self._info['device']}, {self._info['dtype']}, {state})"

