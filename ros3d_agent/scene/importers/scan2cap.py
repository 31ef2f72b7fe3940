"""Scan2Cap (ScanRefer-format descriptions) → one ``caption`` record per described object.

Every description of the same ``(scene_id, object_id)`` is a reference caption of that object, so the
records group them: ``answers`` holds them all (in file order) and ``box`` is the object's box, the
location the caption is asked about. The id ``"<scene_id>|<object_id>|<object_name>"`` is the key
Scan2Cap's evaluation builds its reference corpus with. The format requires ``box``, so an object not
found under ``--scenes`` (e.g. a wall excluded at import) is skipped and counted.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .benchmarks import ConvertContext, as_object_id, load_json_list, make_record, require_keys
from .scanrefer import REQUIRED_KEYS

__all__ = ["convert", "CAPTION_QUESTION"]

#: The records' question; prompt wording belongs to training, this only says what is asked.
CAPTION_QUESTION = "Describe the object in the given box."


def convert(inputs: Sequence[Path], ctx: ConvertContext) -> Iterator[dict[str, Any]]:
    groups: dict[tuple[str, int], dict[str, Any]] = {}
    for path in inputs:
        items = load_json_list(path, "ScanRefer (Scan2Cap)")
        for i, item in enumerate(ctx.iterate(items, f"scan2cap {path.name}")):
            require_keys(item, REQUIRED_KEYS, path, f"item {i}")
            key = (item["scene_id"], as_object_id(item["object_id"], path, f"item {i}"))
            group = groups.setdefault(key, {"object_name": item.get("object_name", ""), "captions": []})
            group["captions"].append(str(item["description"]).strip())
    for (scene, oid), group in groups.items():
        boxes = ctx.scenes.boxes(scene, [oid], ctx.summary)
        yield make_record(
            id=f"{scene}|{oid}|{group['object_name']}",
            scene_id=scene,
            task="caption",
            question=CAPTION_QUESTION,
            answers=group["captions"],
            object_ids=[oid],
            boxes=boxes,
            box=boxes[0] if boxes else None,
            meta={"object_name": str(group["object_name"])},
        )
