"""Replay a JSONL file of posts (backfills, demos), optionally in (sped-up) real time.

Each line is one post in the push API's form. The cursor is the byte offset
after the last line whose post is in Kafka (and its line number, for logs), so
a restart continues with the next line. With ``speedup`` the gaps between the
posts' ``created_at`` are replayed N times faster; without it the file goes as
fast as Kafka takes it. The connector ends at the end of the file.

Lines are read and parsed as JSON in a worker thread, a batch at a time, so a
large file does not stall the event loop (the API, the other connectors).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, AsyncIterator, BinaryIO

from ..normalize import Normalized, Rejection, normalize, parse_timestamp
from ..parsing import BodyError, parse_ndjson_line
from lyssna.common.config import FileSource

from .base import Batch, Connector, SourceError, register

log = logging.getLogger(__name__)


def _event_time(item: object) -> float | None:
    if not isinstance(item, dict):
        return None
    try:
        dt = parse_timestamp(item.get("created_at"))
    except Exception:  # noqa: BLE001 - normalize reports the bad value itself
        return None
    return dt.timestamp() if dt else None


# No post needs more (a record is at most MAX_RECORD_BYTES); a longer line is
# read in pieces and skipped, never held in memory whole.
MAX_LINE_BYTES = 1024 * 1024


def _skip_rest_of_line(f: BinaryIO) -> tuple[int, bool]:
    """Read past the rest of an over-long line: (bytes skipped, whether it ended)."""
    skipped = 0
    while True:
        piece = f.readline(MAX_LINE_BYTES)
        skipped += len(piece)
        if not piece or piece.endswith(b"\n"):
            return skipped, bool(piece)


def read_lines(f: BinaryIO, first_line: int, limit: int) -> list[tuple[bytes, Any, int]]:
    """Up to ``limit`` lines from ``f``: (its bytes, its JSON value or the BodyError
    that says why it has none (None for a blank line), its length in the file).
    A line over MAX_LINE_BYTES keeps only its start. Blocking: run in a thread."""
    out: list[tuple[bytes, Any, int]] = []
    for lineno in range(first_line, first_line + limit):
        raw = f.readline(MAX_LINE_BYTES + 1)
        if not raw:
            break
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            skipped, ended = _skip_rest_of_line(f)
            head = raw[:1000] + (b"\n" if ended else b"")  # ends like the line did: partial or not
            out.append((head, BodyError(f"line longer than {MAX_LINE_BYTES} bytes; skipped", line=lineno),
                        len(raw) + skipped))
            continue
        if not raw.strip():
            out.append((raw, None, len(raw)))
            continue
        try:
            out.append((raw, parse_ndjson_line(raw.rstrip(b"\r\n"), lineno), len(raw)))
        except BodyError as e:
            out.append((raw, e, len(raw)))
    return out


@register
class JsonlConnector(Connector):
    type = "file"
    source_model = FileSource

    @classmethod
    def from_source(cls, source: FileSource, name: str, settings, *, http=None) -> "JsonlConnector":
        return cls(source.path, name, speedup=source.speedup)

    def __init__(self, path: str | os.PathLike, name: str, *, speedup: float | None = None,
                 batch_size: int = 500, base_dir: str | os.PathLike | None = None,
                 clock=time.monotonic, sleep=asyncio.sleep):
        p = Path(path)
        if not p.is_absolute() and base_dir is not None:
            p = Path(base_dir) / p
        self.path = p
        super().__init__(name, str(p.resolve()))
        self.speedup = speedup
        self.batch_size = batch_size
        self.retry_base_s = 5.0
        self._clock, self._sleep = clock, sleep

    async def batches(self, cursor: str | None) -> AsyncIterator[Batch]:
        state = json.loads(cursor) if cursor else {"offset": 0, "line": 0}
        offset, line = int(state["offset"]), int(state["line"])
        try:
            f = open(self.path, "rb")
        except OSError as e:
            raise SourceError(f"cannot open {self.path}: {e}") from e
        with f:
            size = os.fstat(f.fileno()).st_size
            if offset > size:
                log.warning("replay file is shorter than its cursor; starting over",
                            extra={"path": str(self.path), "offset": offset, "size": size})
                offset, line = 0, 0
            f.seek(offset)
            items: list[Normalized | Rejection] = []
            first_event: float | None = None
            started = 0.0
            partial = False
            while not partial and (lines := await asyncio.to_thread(read_lines, f, line + 1, self.batch_size)):
                for raw, item, size in lines:
                    line += 1
                    offset += size
                    if item is None:
                        continue
                    if isinstance(item, BodyError):
                        if not raw.endswith(b"\n"):
                            # A last line still being written: leave it for the next run.
                            offset, line = offset - size, line - 1
                            partial = True
                            break
                        items.append(Rejection(f"{self.path.name} line {line}: {item}",
                                               payload=raw.decode("utf-8", "replace")))
                    else:
                        if self.speedup:
                            at = _event_time(item)
                            if at is not None:
                                if first_event is None:
                                    first_event, started = at, self._clock()
                                wait = (at - first_event) / self.speedup - (self._clock() - started)
                                if wait > 0:
                                    if items:
                                        yield Batch(items, self._cursor(offset - size, line - 1))
                                        items = []
                                    await self._sleep(wait)
                        n = normalize(item, default_source="file")
                        if isinstance(n, Rejection):
                            n = Rejection(f"{self.path.name} line {line}: {n.reason}",
                                          payload=raw.decode("utf-8", "replace"))
                        items.append(n)
                    if len(items) >= self.batch_size:
                        yield Batch(items, self._cursor(offset, line))
                        items = []
            yield Batch(items, self._cursor(offset, line))

    @staticmethod
    def _cursor(offset: int, line: int) -> str:
        return json.dumps({"offset": offset, "line": line})
