"""The shipped JSONL files (probes, anchors): one JSON object per line, each with exactly its fields."""

from __future__ import annotations

import json
from collections.abc import Iterator


def object_lines(text: str, *, path, fields: tuple[str, ...], example: str = "") -> Iterator[tuple[int, str, dict]]:
    """Each non-blank line of `text` as (line number, "PATH, line N", its object). A line that is not a
    JSON object with exactly `fields` raises ValueError naming the file, the line and the fix."""
    hint = f"; write one object per line, like {example}" if example else ""
    for line_number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}, line {line_number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno}){hint}") from exc
        if not isinstance(row, dict) or set(row) != set(fields):
            keys = sorted(row) if isinstance(row, dict) else type(row).__name__
            raise ValueError(f"{where}: expected exactly the keys {list(fields)}, got {keys}; add or remove keys")
        yield line_number, where, row
