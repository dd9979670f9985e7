"""Progress of long work, drawn on a terminal only: nothing at all when the stream is not a
terminal (a pipe, a file, CI logs) or with the global `nb2prod -q/--quiet`.

- `ProgressBar`: rows done of a total, rows/s and ETA (`nb2prod score`).
- `CellProgress`: the job cell being run, i of n, its role and first line, and the elapsed time
  (`nb2prod train`, each point of `nb2prod sweep` run here), redrawn every second.
- `StepProgress`: the step a multi-step build is at (`nb2prod image`: the Dockerfile's steps).
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, TextIO

WIDTH = 78


def quiet() -> bool:
    """True under `nb2prod -q/--quiet` (the root command's `quiet` setting)."""
    import click

    ctx = click.get_current_context(silent=True)
    while ctx is not None:
        if isinstance(ctx.obj, dict) and ctx.obj.get("quiet"):
            return True
        ctx = ctx.parent
    return False


def terminal(stream: Any = None) -> bool:
    """Whether progress should be drawn on `stream` (default stderr): a terminal, and not quiet."""
    stream = sys.stderr if stream is None else stream
    try:
        tty = bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
    return tty and not quiet()


class ProgressBar:
    def __init__(self, stream: TextIO | None = None, width: int = 24, min_interval: float = 0.2):
        self.stream = stream or sys.stderr
        self.width = width
        self.min_interval = min_interval
        self.started = time.perf_counter()
        self.last = 0.0
        self.shown = False

    def __call__(self, done: int, total: int | None, exact: bool = True) -> None:
        now = time.perf_counter()
        if now - self.last < self.min_interval and not (total and done >= total):
            return
        self.last = now
        elapsed = max(now - self.started, 1e-9)
        rate = done / elapsed
        if total:
            share = min(done / total, 1.0)
            filled = int(share * self.width)
            bar = "#" * filled + "-" * (self.width - filled)
            eta = (total - done) / rate if rate > 0 else 0.0
            approx = "" if exact else "~"
            text = f"[{bar}] {done:,}/{approx}{total:,} rows  {rate:,.0f} rows/s  ETA {_clock(max(eta, 0.0))}"
        else:
            text = f"{done:,} rows  {rate:,.0f} rows/s"
        self.stream.write("\r" + text.ljust(WIDTH))
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


class CellProgress:
    """`cell 3/7 train: model = RandomForestClassifier(...)  0:12` on one redrawn line.

    Call it with (i, n, role, first line) when a cell starts; a background thread redraws the
    elapsed time every `tick` seconds until `close()`, which ends the line.
    """

    def __init__(self, stream: TextIO | None = None, tick: float = 1.0, label: str = "cell"):
        self.stream = stream or sys.stderr
        self.tick = tick
        self.label = label
        self.started = time.perf_counter()
        self.text = ""
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None

    def __call__(self, index: int, total: int, role: str | None, first_line: str) -> None:
        head = f"{self.label} {index}/{total}"
        if role:
            head += f" {role}"
        line = " ".join(first_line.split())
        self.text = f"{head}: {line}" if line else head
        self.draw()
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="nb2prod-progress", daemon=True)
            self.thread.start()

    def draw(self) -> None:
        with self.lock:
            if self.stopped.is_set() or not self.text:
                return
            elapsed = _clock(time.perf_counter() - self.started)
            room = WIDTH - len(elapsed) - 2
            text = self.text if len(self.text) <= room else self.text[: room - 3] + "..."
            self.stream.write("\r" + f"{text.ljust(room)}  {elapsed}")
            self.stream.flush()

    def _run(self) -> None:
        while not self.stopped.wait(self.tick):
            self.draw()

    def close(self) -> None:
        with self.lock:
            shown = bool(self.text) and not self.stopped.is_set()
            self.stopped.set()
        if self.thread is not None:
            self.thread.join()
        if shown:
            self.stream.write("\n")
            self.stream.flush()


class StepProgress:
    """`Step 3/9 : RUN pip install ...  0:41` for builds that announce numbered steps."""

    def __init__(self, stream: TextIO | None = None):
        self.cells = CellProgress(stream, label="step")

    def __call__(self, index: int, total: int, text: str) -> None:
        self.cells(index, total, None, text)

    def close(self) -> None:
        self.cells.close()


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
