"""The Spark engine (pyspark): a master URL (`--master`), or `local[N]` started for the job.

Chunks go to Spark's Python workers in waves of twice the parallelism; Python workers are reused
between tasks, so each loads the model once. The workers run `PYSPARK_PYTHON` (default: this
interpreter). Spark scores only; sweeps run on local or dask.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from nb2prod.errors import InputError


class SparkEngine:
    name = "spark"
    in_process = False

    def __init__(self, session: Any, owned: bool, address: str):
        self.session = session
        self.owned = owned  # stop the session at the end only if this engine started it
        self.address = address
        self.startup_s = 0.0
        self.workers = max(1, int(session.sparkContext.defaultParallelism))

    def map_chunks(self, function: Callable[[Any], Any], tasks: Iterable[Any]) -> Iterator[Any]:
        context = self.session.sparkContext
        window = 2 * self.workers
        wave: list[Any] = []
        for task in tasks:
            wave.append(task)
            if len(wave) >= window:
                yield from context.parallelize(wave, len(wave)).map(function).collect()
                wave = []
        if wave:
            yield from context.parallelize(wave, len(wave)).map(function).collect()

    def run_each(
        self, function: Callable[[Any], Any], items: Sequence[Any], max_parallel: int
    ) -> Iterator[tuple[int, Any]]:
        raise InputError("sweeps run on the local or dask engine; Spark scores batches only.")

    def close(self) -> None:
        if self.owned:
            self.session.stop()


def start(address: str | None, workers: int | None) -> SparkEngine:
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    active = SparkSession.getActiveSession()
    master = address or f"local[{workers or os.cpu_count() or 2}]"
    if active is not None and (address is None or active.sparkContext.master == address):
        return SparkEngine(active, False, str(active.sparkContext.master))
    try:
        session = (
            SparkSession.builder.master(master)
            .appName("nb2prod-score")
            .config("spark.ui.enabled", "false")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.log.level", "ERROR")
            .getOrCreate()
        )
    except Exception as exc:  # Java missing, bad master URL: one sentence
        raise InputError(f"cannot start Spark with master {master} ({str(exc).splitlines()[0]}).") from None
    session.sparkContext.setLogLevel("ERROR")
    return SparkEngine(session, True, master)
