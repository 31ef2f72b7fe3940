"""ScanQA (``ScanQA_v1.0_{train,val,test_w_obj,test_wo_obj}.json``) → ``qa`` records.

Upstream item: ``{"answers": [...], "object_ids": [int], "object_names": [...], "question",
"question_id": "train-scene0000-0", "scene_id"}``. The test files omit ``answers`` (and
``test_wo_obj`` also ``object_ids``); those become empty lists rather than errors, so a test split
converts into records a model can be run on.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .benchmarks import ConvertContext, as_object_id, load_json_list, make_record, require_keys

__all__ = ["convert"]


def convert(inputs: Sequence[Path], ctx: ConvertContext) -> Iterator[dict[str, Any]]:
    for path in inputs:
        items = load_json_list(path, "ScanQA")
        for i, item in enumerate(ctx.iterate(items, f"scanqa {path.name}")):
            where = f"item {i}"
            require_keys(item, ("question_id", "scene_id", "question"), path, where)
            object_ids = [as_object_id(o, path, where) for o in item.get("object_ids") or []]
            yield make_record(
                id=item["question_id"],
                scene_id=item["scene_id"],
                task="qa",
                question=item["question"],
                answers=item.get("answers") or [],
                object_ids=object_ids,
                boxes=ctx.scenes.boxes(item["scene_id"], object_ids, ctx.summary),
            )
