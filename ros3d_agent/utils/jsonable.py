"""Plain-JSON forms of config dataclasses (tuples → lists, keys → str), so configs saved beside
checkpoints and training runs read back the same everywhere."""

from __future__ import annotations

from typing import Any


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value
