"""Multi3DRefer (``multi3drefer_{train,val}.json``) → ``multi_ground`` records (0..N targets).

Upstream item: ``{"scene_id", "object_name", "ann_id": int, "description", "object_ids": [int],
"eval_type": "zt_w_d" | "zt_wo_d" | "st_w_d" | "st_wo_d" | "mt", ...}``. The record id is
``"<scene_id>|<ann_id>"`` (Multi3DRefer's evaluation keys by scene and ann_id). ``meta.eval_type`` is
kept because the benchmark reports F1 per type. A zero-target description has ``object_ids == []``
and ``boxes == []`` by construction, which is not a warning; targets whose boxes are missing get
``meta.boxes_missing`` so they never read as zero-target.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .benchmarks import AnnotationFormatError, ConvertContext, as_object_id, load_json_list, make_record, reference_meta, require_keys

__all__ = ["convert", "EVAL_TYPES"]

EVAL_TYPES = ("zt_w_d", "zt_wo_d", "st_w_d", "st_wo_d", "mt")


def convert(inputs: Sequence[Path], ctx: ConvertContext) -> Iterator[dict[str, Any]]:
    for path in inputs:
        items = load_json_list(path, "Multi3DRefer")
        for i, item in enumerate(ctx.iterate(items, f"multi3drefer {path.name}")):
            where = f"item {i}"
            require_keys(item, ("scene_id", "ann_id", "description", "object_ids"), path, where)
            if not isinstance(item["object_ids"], list):
                raise AnnotationFormatError(f"{path}: {where}: 'object_ids' must be a list, got {item['object_ids']!r}")
            object_ids = [as_object_id(o, path, where) for o in item["object_ids"]]
            scene = item["scene_id"]
            yield make_record(
                id=f"{scene}|{item['ann_id']}",
                scene_id=scene,
                task="multi_ground",
                question=str(item["description"]).strip(),
                answers=[],
                object_ids=object_ids,
                boxes=ctx.scenes.boxes(scene, object_ids, ctx.summary),
                meta=reference_meta(item),
            )
