"""Datasets over scene dirs + annotation JSONL: tensors per task, grounding targets, cache, grouping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ros3d_agent.model.tokenizer import GROUND_TOKEN, IGNORE_INDEX, IM_END
from ros3d_agent.scene.annotations.records import AnnotationRecord
from ros3d_agent.scene.scene_dir import SceneDir
from training import cache as cache_io
from training import data as data_mod
from training.batching import BatchPlan
from training.collate import collate_samples
from training.views import ViewSpec, select_views


@pytest.fixture(scope="module")
def run(tiny_run):
    return tiny_run


def _first(run, task: str, pred=lambda r: True) -> tuple[int, AnnotationRecord]:
    for i, s in enumerate(run["labeled"]):
        if s.task == task and pred(s.record):
            return i, s.record
    raise AssertionError(f"no {task} sample")


def test_views_and_cache(run) -> None:
    cfg, layout = run["cfg"], run["layout"]
    assert run["needs"].view_latents and run["needs"].bev and run["needs"].teacher
    for sid, ids in run["views"].items():
        scene = SceneDir(run["scenes"][sid])
        assert ids == select_views(scene, ViewSpec("uniform", cfg.data.num_views)) and len(ids) == cfg.data.num_views
        lat = cache_io.load_view_latents(layout, sid)
        assert set(ids) <= set(lat) and lat[ids[0]].shape == (64, 4, 4)
        bev, valid = cache_io.load_bev(layout, sid)
        assert bev.shape == (64, 6, 6) and valid.shape == (1, 6, 6) and 0 < valid.sum() <= 36
        assert (layout.vae_scene_dir(sid) / "bev.png").is_file() and (layout.vae_scene_dir(sid) / "bev_holes.png").is_file()
        assert set(cache_io.load_teacher_features(layout, sid)) == set(ids)
    # max-coverage selection is a real alternative rule (a subset of the frames, temporal order)
    scene = SceneDir(next(iter(run["scenes"].values())))
    mc = select_views(scene, ViewSpec("max_coverage", 3))
    assert len(mc) == 3 and mc == sorted(mc) and set(mc) <= set(scene.frame_ids())


def test_qa_sample_labels_cover_the_answer_only(run) -> None:
    i, rec = _first(run, "qa")
    item = run["ds"][i]
    tok = run["tok"]
    V = run["cfg"].data.num_views
    assert item["pixel_values"].shape == (V, 3, 64, 64) and item["world_xyz"].shape == (V, 64, 64, 3)
    labels = item["labels"]
    answer_pos = labels != IGNORE_INDEX
    assert tok.decode(labels[answer_pos]) == rec.answers[0].strip() + IM_END
    # the labelled span is the tail of the sequence and equals the input there
    n = int(answer_pos.sum())
    assert bool(answer_pos[-n:].all()) and torch.equal(labels[-n:], item["input_ids"][-n:])
    assert rec.question.strip() in tok.decode(item["input_ids"])
    assert item["view_latents"].shape == (V, 64, 4, 4) and item["bev_latents"].shape == (64, 6, 6)
    cached = cache_io.load_view_latents(run["layout"], rec.scene_id)
    assert torch.equal(item["view_latents"][1], cached[item["frame_ids"][1]])
    assert item["teacher_valid"].all() and item["teacher_feats"].shape[:2] == (V, 32)
    assert "proposals" not in item and "coord_centre" not in item


def test_situated_and_caption_samples(run) -> None:
    i, rec = _first(run, "situated_qa")
    item = run["ds"][i]
    assert rec.situation.text.strip() in run["tok"].decode(item["input_ids"])
    i, rec = _first(run, "caption")
    item = run["ds"][i]
    assert torch.allclose(item["coord_centre"], torch.tensor(rec.box[:3], dtype=torch.float32))
    assert run["tok"].decode(item["labels"][item["labels"] != IGNORE_INDEX]) == rec.answers[0].strip() + IM_END


def test_grounding_targets_index_the_records_objects(run) -> None:
    i, rec = _first(run, "ground")
    item = run["ds"][i]
    objs = SceneDir(run["scenes"][rec.scene_id]).load_objects()
    props, targets = item["proposals"].numpy(), item["ground_targets"].numpy()
    assert props.shape == (len(objs), 6) and targets.shape == (len(objs) + 1,)
    chosen = np.flatnonzero(targets[:-1])
    assert [objs[j].id for j in chosen] == list(rec.object_ids) and not targets[-1]
    np.testing.assert_allclose(props[chosen], np.asarray(rec.boxes), atol=1e-5)
    assert (item["labels"] == IGNORE_INDEX).all()  # grounding trains InfoNCE only
    assert run["tok"].decode(item["input_ids"]).count(GROUND_TOKEN) == 1
    assert "view_latents" not in item and "bev_latents" not in item and "teacher_feats" in item
    # a Multi3DRefer record without targets marks the "no object" column
    rec0 = AnnotationRecord(id="z", scene_id=rec.scene_id, task="multi_ground", question="the purple dragons.")
    ids = [o.id for o in objs]
    boxes = np.array([o.box.to_list()[:6] for o in objs])
    props0, t0 = data_mod.grounding_candidates(rec0, ids, boxes, None, match_iou=0.5, max_proposals=64)
    assert t0[-1] and not t0[:-1].any()


def test_grounding_candidates_rules() -> None:
    ids = [10, 11, 12]
    boxes = np.array([[0, 0, 0, 1, 1, 1], [3, 0, 0, 1, 1, 1], [6, 0, 0, 1, 1, 1]], dtype=float)
    rec = AnnotationRecord(id="a", scene_id="s", task="ground", question="q", object_ids=(12,), boxes=(tuple(boxes[2]),))
    p, t = data_mod.grounding_candidates(rec, ids, boxes, None, match_iou=0.5, max_proposals=2)
    assert p.shape == (2, 6) and t.tolist() == [False, True, False] and np.allclose(p[1], boxes[2])  # target kept under the cap
    no_ids = AnnotationRecord(id="b", scene_id="s", task="ground", question="q", boxes=((3.05, 0, 0, 1, 1, 1),))
    _, t = data_mod.grounding_candidates(no_ids, ids, boxes, None, match_iou=0.5, max_proposals=64)
    assert t.tolist() == [False, True, False, False]
    pred = np.array([[0.1, 0, 0, 1, 1, 1], [6.05, 0, 0, 1, 1, 1], [6.0, 0, 0, 1.1, 1, 1]])
    _, t = data_mod.grounding_candidates(rec, ids, boxes, pred, match_iou=0.5, max_proposals=64)
    assert t.tolist() == [False, True, True, False]
    assert data_mod.grounding_candidates(rec, ids, boxes, pred[:1], match_iou=0.5, max_proposals=64) is None
    assert data_mod.grounding_candidates(rec, ids, boxes, np.empty((0, 6)), match_iou=0.5, max_proposals=64) is None
    bad = AnnotationRecord(id="c", scene_id="s", task="ground", question="q", object_ids=(99,), boxes=((0, 0, 0, 1, 1, 1),))
    with pytest.raises(data_mod.DataError, match=r"object id\(s\) \[99\]"):
        data_mod.grounding_candidates(bad, ids, boxes, None, match_iou=0.5, max_proposals=64)


def test_unlabeled_samples_feed_3d_losses_only(run) -> None:
    assert len(run["unlabeled"]) == 1 and run["stats"]["unlabeled_scenes"] == 1
    item = run["ds"][len(run["labeled"])]
    assert item["group"] == data_mod.RECON_GROUP and item["task"] is None
    assert (item["labels"] == IGNORE_INDEX).all() and "proposals" not in item
    assert "view_latents" in item and "bev_latents" in item and "teacher_feats" in item


def test_collate_pads_proposals_and_keeps_no_object_last(run) -> None:
    ds = run["ds"]
    idx = [i for i, s in enumerate(run["labeled"]) if s.group == "grounding"][:2]
    items = [ds[i] for i in idx]
    # make the second sample's proposal set smaller to exercise the padding
    items[1] = dict(items[1], proposals=items[1]["proposals"][:3],
                    ground_targets=torch.cat([items[1]["ground_targets"][:3], torch.tensor([not items[1]["ground_targets"][:3].any()])]))
    batch = collate_samples(items, pad_id=0)
    P = batch["proposals"].shape[1]
    assert batch["proposal_valid"][1].tolist() == [True] * 3 + [False] * (P - 3)
    assert batch["ground_targets"][1, P].item() == items[1]["ground_targets"][3].item()
    assert not batch["ground_targets"][1, 3:P].any()
    assert batch["group"] == "grounding" and batch["input_ids"].shape[0] == 2
    with pytest.raises(ValueError, match="one task group"):
        collate_samples([ds[idx[0]], ds[_first(run, "qa")[0]]], pad_id=0)


def test_batches_hold_one_task_group_and_cover_the_epoch(run) -> None:
    labeled, unlabeled = run["labeled"], run["unlabeled"]
    plan = BatchPlan([s.bucket for s in labeled], [s.bucket for s in unlabeled], batch_size=3, seed=5, unlabeled_fraction=0.25)
    specs = labeled + unlabeled
    e0 = plan.epoch_batches(0)
    assert e0 == plan.epoch_batches(0) and e0 != plan.epoch_batches(1)  # a pure function of (seed, epoch)
    for b in e0:
        assert len({specs[i].bucket for i in b}) == 1 and 1 <= len(b) <= 3
    lab = sorted(i for b in e0 for i in b if i < len(labeled))
    assert lab == list(range(len(labeled)))  # every labeled sample exactly once
    n_unl = sum(1 for b in e0 if b[0] >= len(labeled))
    assert n_unl == plan.num_unlabeled_batches and abs(n_unl / len(e0) - 0.25) < 0.1
    groups = {specs[b[0]].group for b in e0}
    assert groups == {"qa", "caption", "grounding", data_mod.RECON_GROUP}
    # two processes: disjoint, equally long shards of the same order
    r0 = BatchPlan([s.bucket for s in labeled], [s.bucket for s in unlabeled], batch_size=3, seed=5,
                   unlabeled_fraction=0.25, world_size=2, rank=0).epoch_batches(0)
    r1 = BatchPlan([s.bucket for s in labeled], [s.bucket for s in unlabeled], batch_size=3, seed=5,
                   unlabeled_fraction=0.25, world_size=2, rank=1).epoch_batches(0)
    assert len(r0) == len(r1) == len(e0) // 2 and r0 == e0[0::2][: len(r0)] and r1 == e0[1::2][: len(r1)]


def test_missing_scene_and_cache_are_reported(run, tmp_path: Path) -> None:
    from ros3d_agent.scene.annotations.records import write_annotations

    rec = AnnotationRecord(id="x", scene_id="synth_99999", task="qa", question="q?", answers=("a",))
    f = tmp_path / "a.jsonl"
    write_annotations(f, [rec])
    cfg = run["cfg"]
    from dataclasses import replace

    bad = replace(cfg, data=replace(cfg.data, annotations=str(f)))
    with pytest.raises(data_mod.DataError, match="synth_99999"):
        data_mod.discover_run_scenes(bad, run["model_cfg"])
    spec = run["labeled"][_first(run, "qa")[0]]
    uncached = next(f for f in SceneDir(run["scenes"][spec.scene_id]).frame_ids() if f not in spec.frame_ids)
    odd = replace(spec, frame_ids=(spec.frame_ids[0], uncached) + spec.frame_ids[2:])
    ds = data_mod.TrainDataset([odd], run["scenes"], run["tok"], run["model_cfg"], run["layout"], run["needs"])
    with pytest.raises(data_mod.DataError, match=f"no view latents for frame.*{uncached}"):
        ds[0]
