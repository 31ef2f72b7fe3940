"""ScanRefer (``ScanRefer_filtered_{train,val}.json``) → ``ground`` records.

Upstream item: ``{"scene_id", "object_id": "34", "object_name", "ann_id": "0", "description",
"token": [...]}`` (ids are strings). The record id is ``"<scene_id>|<object_id>|<ann_id>"``, the
triple ScanRefer's own evaluation keys predictions by. ``meta`` keeps ``object_name`` (ScanRefer's
unique/multiple split is computed from it), ``ann_id``, and ``eval_type`` when a preprocessed file
carries it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .benchmarks import ConvertContext, as_object_id, load_json_list, make_record, reference_meta, require_keys

__all__ = ["convert", "REQUIRED_KEYS"]

REQUIRED_KEYS = ("scene_id", "object_id", "ann_id", "description")


def convert(inputs: Sequence[Path], ctx: ConvertContext) -> Iterator[dict[str, Any]]:
    for path in inputs:
        items = load_json_list(path, "ScanRefer")
        for i, item in enumerate(ctx.iterate(items, f"scanrefer {path.name}")):
            require_keys(item, REQUIRED_KEYS, path, f"item {i}")
            oid = as_object_id(item["object_id"], path, f"item {i}")
            scene = item["scene_id"]
            yield make_record(
                id=f"{scene}|{oid}|{item['ann_id']}",
                scene_id=scene,
                task="ground",
                question=str(item["description"]).strip(),
                answers=[],
                object_ids=[oid],
                boxes=ctx.scenes.boxes(scene, [oid], ctx.summary),
                meta=reference_meta(item),
            )
