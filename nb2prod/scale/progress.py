"""A one-line progress bar (rows, rows/s, ETA) for a terminal; nothing at all otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


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
        self.stream.write("\r" + text.ljust(78))
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
