"""Line-by-line JSONL reading with errors that name ``file:line``.

Annotations, predictions and replay questions are all JSONL keyed by an ``id``: one reader makes
them fail the same way on a bad line, and refuse duplicate ids (a duplicate would silently score
one sample twice).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")


def read_json_object(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A JSON object file written by another step (a run summary, a metrics file, a bundle's results),
    or ``{}`` when it is missing, unreadable or not an object: callers treat all three as "not there yet"."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def iter_jsonl(path: str | os.PathLike[str], parse: Callable[[dict[str, Any]], T], error: type[Exception],
               *, key: Callable[[T], str] = lambda record: record.id, what: str = "") -> Iterator[T]:
    """Yield ``parse(obj)`` for every non-blank line; ``error`` (raised by ``parse`` too) gets ``file:line``."""
    p = Path(path)
    seen: dict[str, int] = {}
    try:
        fh = p.open("r", encoding="utf-8")
    except OSError as exc:
        raise error(f"{p}: cannot open{' ' + what if what else ''} ({exc.strerror or exc})") from exc
    with fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise error(f"{p}:{lineno}: not valid JSON ({exc.msg})") from None
            try:
                record = parse(data)
            except error as exc:
                raise error(f"{p}:{lineno}: {exc}") from None
            record_id = key(record)
            if record_id in seen:
                raise error(f"{p}:{lineno}: duplicate id {record_id!r} (first on line {seen[record_id]})")
            seen[record_id] = lineno
            yield record


def write_jsonl(path: str | os.PathLike[str], items: Iterable[Any], parse: Callable[[Any], T],
                error: type[Exception], *, key: Callable[[T], str] = lambda record: record.id) -> int:
    """Write ``parse(item).to_dict()`` per line, atomically (a reader never sees half a file); returns the count.

    ``parse`` validates plain dicts and passes records through; duplicate ids raise ``error``.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    n = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for item in items:
                record = parse(item)
                record_id = key(record)
                if record_id in seen:
                    raise error(f"{p}: duplicate id {record_id!r}")
                seen.add(record_id)
                fh.write(json.dumps(record.to_dict(), ensure_ascii=False, separators=(",", ":")) + "\n")
                n += 1
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n
