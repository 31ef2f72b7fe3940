"""Shared fixtures of the training tests: a few tiny synthetic scenes with annotations, one unlabeled
scene, a shared target cache, and TrainConfig builders on top of ``training/configs/tiny_cpu.yaml``.

Everything is generated here (96×72 frames, 6 per scene) in a second or two, once per session.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
TINY_YAML = REPO / "training" / "configs" / "tiny_cpu.yaml"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matmuls on a shared 2-core box: a second intra-op thread only adds contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``scenes`` (3 annotated scenes), ``annotations`` (all their records in one file), ``unlabeled``
    (1 scene without annotations), ``cache`` (a cache directory shared by the session's runs)."""
    from ros3d_agent.scene.annotations.pipeline import AnnotateConfig, build_dataset
    from ros3d_agent.scene.annotations.records import read_annotations, write_annotations
    from ros3d_agent.scene.synthetic.generate import GenerateConfig, generate_scene

    root = tmp_path_factory.mktemp("train_data")
    gen = GenerateConfig(frames=6, width=96, height=72)
    scenes = root / "scenes"
    for seed in (0, 1, 2):
        generate_scene(seed, scenes, gen)
    unlabeled = root / "unlabeled"
    generate_scene(7, unlabeled, gen)
    build_dataset(scenes, cfg=AnnotateConfig(per_scene=2), progress=False)
    records = []
    for split in ("train", "val", "test"):
        records += read_annotations(scenes / "annotations" / f"{split}.jsonl")
    records.sort(key=lambda r: r.id)
    all_file = scenes / "annotations" / "all.jsonl"
    write_annotations(all_file, records)
    return {"root": root, "scenes": scenes, "annotations": all_file, "unlabeled": unlabeled, "cache": root / "cache"}


def _tiny_overrides(tiny_data: dict[str, Path], out: Path, **extra: Any) -> dict[str, Any]:
    """Dotted overrides turning tiny_cpu.yaml into a test run in ``out`` on the session's data."""
    base = {
        "run.output_dir": str(out),
        "data.scenes": str(tiny_data["scenes"]),
        "data.annotations": str(tiny_data["annotations"]),
        "data.cache_dir": str(tiny_data["cache"]),
        "logging.progress": False,
    }
    base.update(extra)
    return base


@pytest.fixture(scope="session")
def tiny_overrides(tiny_data: dict[str, Path]):
    """``tiny_overrides(out, **dotted)``: the override dict of a test run (for load_config / --set)."""
    return lambda out, **extra: _tiny_overrides(tiny_data, out, **extra)


@pytest.fixture(scope="session")
def make_config(tiny_data: dict[str, Path]):
    """``make_config(out, **dotted)``: tiny_cpu.yaml with the session's data, writing to ``out``."""
    from training.config import load_config

    return lambda out, **extra: load_config(TINY_YAML, _tiny_overrides(tiny_data, out, **extra))


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):
    from ros3d_agent.model.tokenizer import build_offline_tokenizer

    return build_offline_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_data, make_config):
    """Config, specs, dataset and cache of the tiny run, with one unlabeled scene mixed in."""
    from training import cache as cache_io
    from training import data as data_mod
    from training.model_init import build_tokenizer, resolve_model_config

    out = tmp_path_factory.mktemp("data_run")
    cfg = make_config(out, **{"data.unlabeled_scenes": str(tiny_data["unlabeled"]), "data.unlabeled_fraction": 0.25})
    model_cfg = resolve_model_config(cfg)
    tok = build_tokenizer(cfg, model_cfg, out)
    records = data_mod.load_records(cfg)
    scenes, views = data_mod.discover_run_scenes(cfg, model_cfg, records)
    layout = cache_io.ensure_cache(cfg, model_cfg, scenes, views)
    labeled, unlabeled, stats = data_mod.build_sample_specs(cfg, records, scenes, views, layout)
    needs = data_mod.TargetNeeds.for_run(cfg, model_cfg)
    ds = data_mod.TrainDataset(labeled + unlabeled, scenes, tok, model_cfg, layout, needs)
    return dict(cfg=cfg, model_cfg=model_cfg, tok=tok, records=records, scenes=scenes, views=views, layout=layout,
                labeled=labeled, unlabeled=unlabeled, ds=ds, needs=needs, stats=stats)
