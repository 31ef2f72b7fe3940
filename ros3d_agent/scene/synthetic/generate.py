"""Seed → scene directory, for one scene or a resumable batch over worker processes.

A scene directory written here is the same ScanNet ``posed_images`` layout that real scans use
(written with :class:`~ros3d_agent.scene.scene_dir.SceneDir`), plus ``scene_graph.json``:

    synth_00042/
        intrinsic.txt  NNNNN.jpg  NNNNN.png  NNNNN.txt    frames (colour, uint16 mm depth, pose)
        objects.json                                      ids, labels, axis-aligned boxes
        points.ply                                        fused cloud of all frames, ~2 cm voxels
        scene_graph.json                                  room, objects with attributes, visibility

A scene is built in a hidden sibling directory and renamed into place when complete, so a
directory named ``synth_NNNNN`` is always whole: an interrupted batch resumes by skipping the scenes
that exist, and a crash never leaves a half-written scene that looks finished.

Determinism: scene ``seed`` depends only on the seed and the config (layout, trajectory, intrinsics
and per-frame noise each draw from their own ``SeedSequence([seed, stream, ...])``), not on the
worker that renders it or on what ran before.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..geometry import backproject_depth
from ..scene_dir import SceneDir
from ..types import Box3D, Frame, SceneObject
from .layout import LayoutConfig, SceneLayout, generate_layout, scene_id_for_seed
from .meshes import parts_box
from .render import RenderConfig, SceneRenderer
from .trajectory import TrajectoryConfig, camera_intrinsics, orbit_trajectory

__all__ = [
    "SCENE_GRAPH_FILE",
    "STAGES",
    "GenerateConfig",
    "SceneSummary",
    "generate_scene",
    "generate_scenes",
    "iter_generate_scenes",
    "render_scene_to",
    "scene_is_complete",
    "summarize",
]

SCENE_GRAPH_FILE = "scene_graph.json"
_PARTIAL_SUFFIX = ".partial"

# Independent random streams of one scene (the second entry of its SeedSequence).
_STREAM_LAYOUT, _STREAM_NOISE, _STREAM_TRAJECTORY, _STREAM_INTRINSICS = 0, 1, 2, 3

#: Stages reported by :class:`SceneSummary` timings (seconds summed over the scene).
STAGES = ("layout", "setup", "raycast", "shading", "noise", "write", "fuse")


@dataclass(frozen=True)
class GenerateConfig:
    """Everything that determines a synthetic scene besides its seed.

    The default of 40 frames per scene covers the walkway loop at ~9° of orbit per frame, which
    keeps 100 scenes within a few minutes on two cores; raise ``frames`` for denser video.
    ``fuse_stride`` subsamples pixels for ``points.ply``: at 640×480 every 4th pixel samples a
    surface every 1–3 cm out to 4 m, and 40 overlapping views fill the 2 cm voxels, at half the cost
    of stride 3. ``fuse_max_depth`` leaves out far readings, whose noise would thicken surfaces (TSDF
    fusion of real scans truncates them too).
    """

    frames: int = 40
    width: int = 640
    height: int = 480
    noise: bool = True
    fps: float = 30.0
    jpeg_quality: int = 92
    voxel_size: float = 0.02
    fuse_stride: int = 4
    fuse_max_depth: float = 4.0
    layout: LayoutConfig = field(default_factory=LayoutConfig)
    trajectory: TrajectoryConfig = field(default_factory=TrajectoryConfig)
    render: RenderConfig = field(default_factory=RenderConfig)

    def __post_init__(self) -> None:
        if isinstance(self.frames, bool) or not isinstance(self.frames, int) or self.frames < 1:
            raise ValueError(f"frames must be a positive integer, got {self.frames!r}")
        for name in ("width", "height"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 8 <= v <= 8192:
                raise ValueError(f"{name} must be an integer in [8, 8192], got {v!r}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in [1, 100], got {self.jpeg_quality}")
        if not self.voxel_size > 0 or self.fuse_stride < 1 or not self.fuse_max_depth > 0:
            raise ValueError(f"voxel_size and fuse_max_depth must be > 0 and fuse_stride >= 1, got {self.voxel_size}, {self.fuse_max_depth}, {self.fuse_stride}")
        # The scene-level knobs win over the nested configs, so one place says how big and how many.
        object.__setattr__(self, "trajectory", replace(self.trajectory, num_frames=self.frames, fps=self.fps))
        noise = self.render.noise if self.noise else replace(self.render.noise, enabled=False)
        object.__setattr__(self, "render", replace(self.render, width=self.width, height=self.height, noise=noise))


@dataclass
class SceneSummary:
    """What happened to one scene: where it is, how big, how long each stage took (seconds).

    ``seconds`` is wall-clock time, ``cpu_seconds`` the CPU time of the process that made it; on a
    shared machine the second is the one that predicts throughput on idle cores.
    """

    scene_id: str
    seed: int
    path: str
    skipped: bool
    num_objects: int = 0
    num_frames: int = 0
    num_points: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def scene_is_complete(path: str | os.PathLike[str]) -> bool:
    """A scene directory whose last-written file exists (directories only appear complete; see module doc)."""
    p = Path(path)
    return (p / SCENE_GRAPH_FILE).is_file() and (p / "intrinsic.txt").is_file()


def _partial_dir(out_dir: Path, scene_id: str) -> Path:
    return out_dir / f".{scene_id}{_PARTIAL_SUFFIX}-{os.getpid()}"


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), *stream])


class _CloudFuser:
    """Back-projects frames into a coloured cloud and voxel-downsamples it with open3d as it grows.

    Downsampling whenever the buffer passes ``flush_points`` bounds memory for long trajectories
    (a voxel's average then weights earlier frames as one sample, which is harmless at 2 cm).
    """

    def __init__(self, voxel_size: float, stride: int, max_depth: float, flush_points: int = 4_000_000) -> None:
        self.voxel_size, self.stride, self.max_depth, self.flush_points = voxel_size, stride, max_depth, flush_points
        self._xyz: list[np.ndarray] = []
        self._rgb: list[np.ndarray] = []
        self._n = 0

    def add(self, depth: np.ndarray, rgb: np.ndarray, K: np.ndarray, T: np.ndarray) -> None:
        pts, mask = backproject_depth(depth, K, T, stride=self.stride, max_depth=self.max_depth)
        self._xyz.append(pts)
        self._rgb.append(rgb[:: self.stride, :: self.stride][mask])
        self._n += pts.shape[0]
        if self._n > self.flush_points:
            xyz, col = self.result()
            self._xyz, self._rgb, self._n = [xyz], [col], xyz.shape[0]

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        import open3d as o3d

        if not self._xyz:
            return np.empty((0, 3), np.float32), np.empty((0, 3), np.uint8)
        xyz = np.concatenate(self._xyz)
        col = np.concatenate(self._rgb)
        pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(xyz.astype(np.float64)))
        pcd.colors = o3d.utility.Vector3dVector(col.astype(np.float64) / 255.0)
        down = pcd.voxel_down_sample(self.voxel_size)
        out_xyz = np.asarray(down.points).astype(np.float32)
        out_rgb = np.clip(np.rint(np.asarray(down.colors) * 255.0), 0, 255).astype(np.uint8)
        return out_xyz, out_rgb


def _write_json(path: Path, record: object) -> None:
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def render_scene_to(path: Path, layout: SceneLayout, config: GenerateConfig, raycast_threads: int = 0) -> SceneSummary:
    """Render ``layout`` and write every file of its scene directory at ``path`` (no atomicity)."""
    seed = layout.seed
    timings = dict.fromkeys(STAGES, 0.0)
    t0 = time.perf_counter()
    rcfg = replace(config.render, raycast_threads=raycast_threads)
    K = camera_intrinsics(config.width, config.height, _rng(seed, _STREAM_INTRINSICS), config.trajectory.focal)
    poses = orbit_trajectory(layout.walkway, config.trajectory, _rng(seed, _STREAM_TRAJECTORY))
    renderer = SceneRenderer(layout, rcfg)
    boxes = {o.id: parts_box([p for p in renderer.parts if p.object_id == o.id]) for o in layout.objects}
    period_ns = int(round(1e9 / config.fps))
    sd = SceneDir.create(path, K, frame_period_ns=period_ns)
    fuser = _CloudFuser(config.voxel_size, config.fuse_stride, config.fuse_max_depth)
    n_obj = len(layout.objects)
    vis_frames = np.zeros(n_obj, np.int64)
    vis_pixels = np.zeros(n_obj, np.int64)
    threshold = rcfg.visible_threshold
    timings["setup"] = time.perf_counter() - t0

    for i, T in enumerate(poses):
        res = renderer.render(T, K, _rng(seed, _STREAM_NOISE, i) if rcfg.noise.enabled else None)
        for k, v in res.timings.items():
            timings[k] += v
        t1 = time.perf_counter()
        px = np.bincount(res.object_ids.ravel() + 1, minlength=n_obj + 1)[1:]
        vis_pixels += px
        vis_frames += px >= threshold
        frame = Frame(rgb=res.rgb, depth=res.depth, K=K, T_world_cam=T, stamp=i * period_ns, frame_id=f"{i:05d}")
        sd.write_frame(i, frame, jpeg_quality=config.jpeg_quality)
        t2 = time.perf_counter()
        fuser.add(res.depth, res.rgb, K, T)
        t3 = time.perf_counter()
        timings["write"] += t2 - t1
        timings["fuse"] += t3 - t2

    t3 = time.perf_counter()
    xyz, rgb = fuser.result()
    t4 = time.perf_counter()
    sd.write_points(xyz, rgb)
    sd.write_objects(SceneObject(o.id, o.label, Box3D.from_list(boxes[o.id])) for o in layout.objects)
    graph = layout.scene_graph(
        boxes=boxes,
        visibility={o.id: (int(vis_frames[j]), int(vis_pixels[j])) for j, o in enumerate(layout.objects)},
        trajectory=config.trajectory.record(),
    )
    _write_json(path / SCENE_GRAPH_FILE, graph)  # last: its presence marks the scene complete
    timings["fuse"] += t4 - t3
    timings["write"] += time.perf_counter() - t4
    return SceneSummary(
        scene_id=layout.scene_id,
        seed=seed,
        path=str(path),
        skipped=False,
        num_objects=n_obj,
        num_frames=len(poses),
        num_points=int(xyz.shape[0]),
        timings=timings,
    )


def generate_scene(
    seed: int,
    out_dir: str | os.PathLike[str],
    config: GenerateConfig | None = None,
    *,
    overwrite: bool = False,
    raycast_threads: int = 0,
) -> SceneSummary:
    """Generate scene ``seed`` into ``out_dir/synth_{seed:05d}``; an existing complete scene is kept unless ``overwrite``."""
    cfg = config or GenerateConfig()
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"output path {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    scene_id = scene_id_for_seed(int(seed))
    final = out / scene_id
    if scene_is_complete(final) and not overwrite:
        return SceneSummary(scene_id, int(seed), str(final), skipped=True)

    start, cpu_start = time.perf_counter(), time.process_time()
    tmp = _partial_dir(out, scene_id)
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        t0 = time.perf_counter()
        layout = generate_layout(int(seed), cfg.layout)
        t_layout = time.perf_counter() - t0
        summary = render_scene_to(tmp, layout, cfg, raycast_threads)
        summary.timings["layout"] = t_layout
        if final.exists():  # an incomplete leftover, or a complete scene being overwritten
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary.path = str(final)
    summary.seconds = time.perf_counter() - start
    summary.cpu_seconds = time.process_time() - cpu_start
    return summary


# ---------------------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------------------
def _init_worker() -> None:
    """Each worker owns one core: no library may start its own thread pool on top."""
    import cv2

    cv2.setNumThreads(1)


def _work(task: tuple[int, str, GenerateConfig, bool, int]) -> SceneSummary:
    seed, out_dir, cfg, overwrite, threads = task
    return generate_scene(seed, out_dir, cfg, overwrite=overwrite, raycast_threads=threads)


def _remove_stale_partials(out: Path, seeds: range) -> None:
    """Drop hidden partial scenes that an interrupted run of the same seeds left behind."""
    wanted = {scene_id_for_seed(s) for s in seeds}
    for p in out.glob(f".synth_*{_PARTIAL_SUFFIX}-*"):
        if p.is_dir() and p.name[1:].split(_PARTIAL_SUFFIX)[0] in wanted:
            shutil.rmtree(p, ignore_errors=True)


def iter_generate_scenes(
    out_dir: str | os.PathLike[str],
    num: int,
    seed: int = 0,
    config: GenerateConfig | None = None,
    *,
    workers: int = 2,
    overwrite: bool = False,
) -> Iterator[SceneSummary]:
    """Yield a :class:`SceneSummary` per scene ``seed .. seed + num - 1`` as each finishes (skipped ones first).

    Arguments are checked here, before anything is generated (so a bad call fails at once, not at
    the first ``next``).
    """
    cfg = config or GenerateConfig()
    for name, v in (("num", num), ("seed", seed), ("workers", workers)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{name} must be an integer, got {v!r}")
    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"output path {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    return _iter_batch(out, range(int(seed), int(seed) + int(num)), cfg, workers, overwrite)


def _iter_batch(out: Path, seeds: range, cfg: GenerateConfig, workers: int, overwrite: bool) -> Iterator[SceneSummary]:
    _remove_stale_partials(out, seeds)
    todo = []
    for s in seeds:
        final = out / scene_id_for_seed(s)
        if scene_is_complete(final) and not overwrite:
            yield SceneSummary(scene_id_for_seed(s), s, str(final), skipped=True)
        else:
            todo.append(s)
    n_proc = min(workers, len(todo))
    if n_proc <= 1:
        for s in todo:
            yield generate_scene(s, out, cfg, overwrite=overwrite, raycast_threads=0)
        return
    threads = max(1, (os.cpu_count() or 1) // n_proc)
    tasks = [(s, str(out), cfg, overwrite, threads) for s in todo]
    # spawn, not fork: the parent may already hold open3d/OpenMP thread pools, which fork does not copy safely.
    with mp.get_context("spawn").Pool(n_proc, initializer=_init_worker) as pool:
        yield from pool.imap_unordered(_work, tasks)


def generate_scenes(
    out_dir: str | os.PathLike[str],
    num: int,
    seed: int = 0,
    config: GenerateConfig | None = None,
    *,
    workers: int = 2,
    overwrite: bool = False,
    progress: bool = True,
) -> list[SceneSummary]:
    """Generate (or skip, when already complete) scenes ``seed .. seed + num - 1``, with a tqdm bar.

    Returns the summaries ordered by seed.
    """
    from tqdm import tqdm

    out: list[SceneSummary] = []
    batch = iter_generate_scenes(out_dir, num, seed, config, workers=workers, overwrite=overwrite)
    with tqdm(total=num, unit="scene", desc="scenes", disable=not progress, dynamic_ncols=True) as bar:
        for summary in batch:
            out.append(summary)
            bar.set_postfix_str(f"{summary.scene_id} {'skipped' if summary.skipped else f'{summary.seconds:.1f}s'}", refresh=False)
            bar.update(1)
    return sorted(out, key=lambda s: s.seed)


def summarize(summaries: list[SceneSummary], wall_seconds: float) -> dict[str, float]:
    """Totals of a batch: scenes made/skipped, seconds per scene and frame (wall clock), stage shares."""
    made = [s for s in summaries if not s.skipped]
    frames = sum(s.num_frames for s in made)
    stages = {k: sum(s.timings.get(k, 0.0) for s in made) for k in STAGES}
    out: dict[str, float] = {
        "generated": len(made),
        "skipped": len(summaries) - len(made),
        "frames": frames,
        "wall_s": wall_seconds,
        "wall_s_per_scene": wall_seconds / len(made) if made else 0.0,
        "wall_s_per_frame": wall_seconds / frames if frames else 0.0,
        "worker_s_per_scene": sum(s.seconds for s in made) / len(made) if made else 0.0,
        "cpu_s_per_scene": sum(s.cpu_seconds for s in made) / len(made) if made else 0.0,
    }
    for k, v in stages.items():
        out[f"{k}_s_per_frame"] = v / frames if frames else 0.0
    return out

