"""``lyssna classify``: JSONL posts in, one JSON prediction line per input line out.

For analysts trying rules before they go live and for measuring quality. A
line that cannot be classified still gets an output line, with ``error`` and
its line number, so outputs stay aligned with inputs.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterable, Iterator
from typing import IO

from .classifier import Classifier

CHUNK = 256


def parse_line(n: int, line: str) -> tuple[str, str] | dict:
    """(id, text) for a good line, else the error record to write in its place."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        return {"line": n, "error": f"invalid JSON at column {e.colno}: {e.msg}"}
    if not isinstance(row, dict):
        return {"line": n, "error": "expected a JSON object with 'id' and 'text'"}
    post_id, text = row.get("id"), row.get("text")
    missing = [k for k, v in (("id", post_id), ("text", text)) if v in (None, "")]
    if missing:
        return {"line": n, "id": post_id, "error": f"missing {' and '.join(missing)}"}
    if not isinstance(text, str) or not text.strip():
        return {"line": n, "id": post_id, "error": "'text' must be a non-empty string"}
    return str(post_id), text


def _chunks(lines: Iterable[str]) -> Iterator[list[tuple[int, str]]]:
    chunk: list[tuple[int, str]] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        chunk.append((n, line))
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def classify_stream(classifier: Classifier, lines: Iterable[str], out: IO[str], progress=None) -> dict:
    stats = {"lines": 0, "classified": 0, "errors": 0}
    for chunk in _chunks(lines):
        parsed = [(n, parse_line(n, line)) for n, line in chunk]
        good = [(n, p) for n, p in parsed if isinstance(p, tuple)]
        results = iter(classifier.classify_texts([text for _, (_, text) in good]))
        for n, p in parsed:
            if isinstance(p, dict):
                record = p
                stats["errors"] += 1
            else:
                r = next(results)
                # Every field of the result, as the service's message has them (org_relevance and
                # rejected_orgs say why a named organization did or did not count).
                record = {"id": p[0], **dataclasses.asdict(r)}
                stats["classified"] += 1
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        stats["lines"] += len(chunk)
        if progress is not None:
            progress.update(len(chunk))
    out.flush()
    return stats


def count_lines(path: str) -> int | None:
    if path == "-":
        return None
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def open_input(path: str) -> IO[str]:
    return sys.stdin if path == "-" else open(path, encoding="utf-8", errors="strict")
