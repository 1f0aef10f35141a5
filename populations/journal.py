"""The search's append-only journal: one JSON line per event, flushed and fsynced as it happens.

Everything a search learns is an event in ``journal.jsonl``: ``start`` (a driver started or
resumed), ``reference`` (AdamW's measurements per funnel stage and task, the fitness normaliser,
with its seed-to-seed noise), ``proposed`` (a candidate with its id, origin, parents and
canonical text), ``staged`` (its measurements and score at one funnel stage, and whether it goes
on), ``remeasured`` (a top incumbent's outcome after fresh seeds), ``finished`` (its outcome:
fitness, status, stage reached, per-task ratios), ``validated`` (a held-out meta-validation
result) and ``end``. The file is the search's whole state: kill the driver at any moment, replay the
journal, and the search goes on with nothing lost and nothing evaluated twice (a candidate that
was proposed but not finished is simply submitted again).

Each record is written as a single ``write`` of one line followed by ``flush`` and ``fsync``.
A crash can at worst leave a torn last line (no newline); opening the journal for appending
cuts such a tail off, and reading skips it, so every complete line is a complete record.
Records carry a sequence number ``seq`` and a UTC time.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

EVENTS = ("start", "reference", "proposed", "staged", "remeasured", "finished", "validated", "end")


class JournalError(ValueError):
    """A journal line that is complete but not a valid record (the file was edited or mixed)."""


def _strict(obj: Any) -> Any:
    """JSON has no inf/NaN: non-finite floats become None (a failed result also says so in words)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    return obj


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def read_records(path: str | Path) -> list[dict]:
    """Every complete record of the journal at ``path`` in order ([] if there is no file)."""
    return list(_iter_records(Path(path)))


def _iter_records(path: Path) -> Iterator[dict]:
    if not path.exists():
        return
    with path.open("rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    for number, raw in enumerate(lines[:-1], start=1):  # the last piece has no newline: torn or ""
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise JournalError(f"{path}:{number}: not a JSON record ({exc.msg})") from None
        if not isinstance(record, dict) or record.get("event") not in EVENTS:
            raise JournalError(f"{path}:{number}: not a journal record (event must be one of "
                               f"{', '.join(EVENTS)})")
        yield record


class Journal:
    """Append records to ``path`` durably; ``records`` holds everything read or written so far."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._cut_torn_tail()
        self.records: list[dict] = read_records(self.path)
        self._seq = max((r.get("seq", 0) for r in self.records), default=0)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _cut_torn_tail(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb+") as f:
            data = f.read()
            keep = data.rfind(b"\n") + 1  # 0 when there is no complete line at all
            if keep != len(data):
                f.truncate(keep)
                f.flush()
                os.fsync(f.fileno())

    def append(self, event: str, **fields: Any) -> dict:
        """Write one record and return it; it is on disk when this returns."""
        if event not in EVENTS:
            raise ValueError(f"unknown journal event {event!r}; one of {', '.join(EVENTS)}")
        if self._fd < 0:
            raise ValueError(f"journal {self.path} is closed")
        self._seq += 1
        record = _strict({"seq": self._seq, "event": event, "time": _now(), **fields})
        line = json.dumps(record, allow_nan=False, separators=(",", ":")) + "\n"
        data = line.encode("utf-8")
        while data:  # os.write may write less than asked
            data = data[os.write(self._fd, data):]
        os.fsync(self._fd)
        self.records.append(record)
        return record

    def of(self, event: str) -> list[dict]:
        return [r for r in self.records if r["event"] == event]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
