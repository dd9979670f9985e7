"""The prediction log: one JSON object a line per prediction, in files rotated by size and day.

Each record: {"id", "request_id", "time" (ISO 8601, UTC), "run", "alias", "model_sha256",
"inputs", "output", "latency_ms"}. Files are `predictions-YYYYMMDD-NNNN.jsonl` in one folder;
a file is closed and the next one started when it passes `max_bytes` or the UTC day changes.

The writer never blocks the caller: records go through a bounded queue to one background
thread, and when the queue is full they are counted as dropped. The reader iterates records in
time order, from a time (`since`) and/or the last `window` records.

Standard library only: nb2prod and the packages it generates ship this same file.
"""

from __future__ import annotations

import json
import os
import queue
import random
import re
import threading
from collections import deque
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

FIELDS = (
    "id",
    "request_id",
    "time",
    "run",
    "alias",
    "model_sha256",
    "inputs",
    "output",
    "latency_ms",
)
FILE_PATTERN = re.compile(r"predictions-(\d{8})-(\d{4})\.jsonl\Z")
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_QUEUE = 10_000

Observer = Callable[[list[dict[str, Any]]], None]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


class PredictionLog:
    """Appends prediction records to a folder of JSON lines files (one writer per folder)."""

    def __init__(
        self, folder: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._handle: Any = None
        self._day = ""
        self._size = 0
        self.written = 0

    def _open(self, day: str) -> None:
        self.close()
        numbers = [
            int(m.group(2))
            for p in self.folder.iterdir()
            if (m := FILE_PATTERN.match(p.name)) and m.group(1) == day
        ]
        number = max(numbers, default=-1)
        path = self.folder / f"predictions-{day}-{number:04d}.jsonl"
        if number < 0 or path.stat().st_size >= self.max_bytes:
            path = self.folder / f"predictions-{day}-{number + 1:04d}.jsonl"
        self._handle = open(path, "a", encoding="utf-8")
        self._day = day
        self._size = path.stat().st_size

    def write(self, records: Iterable[dict[str, Any]]) -> None:
        for record in records:
            day = record["time"][:10].replace("-", "")
            if self._handle is None or day != self._day or self._size >= self.max_bytes:
                self._open(day)
            line = json.dumps(record, separators=(",", ":"), default=str) + "\n"
            self._handle.write(line)
            self._size += len(line.encode("utf-8"))
            self.written += 1
        if self._handle is not None:
            self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


class BackgroundWriter:
    """A bounded queue and one thread that logs predictions and hands them to observers.

    `submit` never waits: when the queue is full the records are dropped and counted.
    `sample` is the share of requests whose predictions are logged (observers see all).
    """

    def __init__(
        self,
        log: PredictionLog | None = None,
        observers: Iterable[Observer] = (),
        sample: float = 1.0,
        queue_size: int = DEFAULT_QUEUE,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.log = log
        self.observers = list(observers)
        self.sample = sample
        self.dropped = 0
        self.errors = 0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._on_error = on_error
        self._thread = threading.Thread(
            target=self._run, name="nb2prod-prediction-log", daemon=True
        )
        self._thread.start()

    @property
    def active(self) -> bool:
        return self.log is not None or bool(self.observers)

    @property
    def written(self) -> int:
        return self.log.written if self.log is not None else 0

    def submit(self, event: dict[str, Any]) -> bool:
        """Queue one request's predictions: an event with request_id, time, run, alias,
        model_sha256, latency_ms and the lists ids, inputs, outputs (one item a row)."""
        if not self.active:
            return True
        logged = self.log is not None and (
            self.sample >= 1.0 or random.random() < self.sample
        )
        try:
            self._queue.put_nowait((event, logged))
        except queue.Full:
            self.dropped += len(event.get("ids") or ())
            return False
        return True

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                break
            event, logged = item
            try:
                records = prediction_records(event)
                if logged and self.log is not None:
                    self.log.write(records)
                for observer in self.observers:
                    observer(records)
            except Exception as exc:  # a full disk must not stop the server
                self.errors += 1
                if self._on_error is not None:
                    self._on_error(f"prediction log: {type(exc).__name__}: {exc}")

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop the thread."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(timeout)
        if self.log is not None:
            self.log.close()


def prediction_records(event: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per prediction of a request event, with the log's FIELDS."""
    common = {
        "request_id": event["request_id"],
        "time": event["time"],
        "run": event["run"],
        "alias": event.get("alias"),
        "model_sha256": event["model_sha256"],
        "latency_ms": event["latency_ms"],
    }
    return [
        {"id": pid, **common, "inputs": inputs, "output": output}
        for pid, inputs, output in zip(event["ids"], event["inputs"], event["outputs"])
    ]


def log_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The log's files, oldest first."""
    path = Path(folder)
    if not path.is_dir():
        return []
    return sorted(p for p in path.iterdir() if FILE_PATTERN.match(p.name))


def _moment(value: datetime | str | timedelta | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        return utc_now() - value
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value


def iter_records(
    folder: str | os.PathLike[str],
    since: datetime | str | timedelta | None = None,
    window: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Records of the log in time order: from `since` (a time, or how long ago) and, with
    `window`, only the last `window` of those. A torn last line is skipped."""
    start = _moment(since)
    start_day = start.strftime("%Y%m%d") if start is not None else ""
    start_text = iso(start) if start is not None else ""

    def records() -> Iterator[dict[str, Any]]:
        for path in log_files(folder):
            match = FILE_PATTERN.match(path.name)
            if match and match.group(1) < start_day:
                continue
            with open(path, encoding="utf-8") as handle:
                for line in handle:
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue
                    if start_text and str(record.get("time", "")) < start_text:
                        continue
                    yield record

    if window is None:
        yield from records()
    else:
        yield from deque(records(), maxlen=window)
