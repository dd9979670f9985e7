"""The local engine: scoring chunks in this process, one after the other; sweep points as
separate processes started from a thread pool. Needs nothing beyond nb2prod."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any


class LocalEngine:
    name = "local"
    in_process = True  # chunks are handed over as they are, not serialised
    address = None

    def __init__(self, workers: int):
        self.workers = workers
        self.startup_s = 0.0

    def map_chunks(self, function: Callable[[Any], Any], tasks: Iterable[Any]) -> Iterator[Any]:
        for task in tasks:
            yield function(task)

    def run_each(
        self, function: Callable[[Any], Any], items: Sequence[Any], max_parallel: int
    ) -> Iterator[tuple[int, Any]]:
        with ThreadPoolExecutor(max_workers=max(1, min(max_parallel, len(items) or 1))) as pool:
            futures = {pool.submit(function, item): index for index, item in enumerate(items)}
            for future in as_completed(futures):
                error = future.exception()
                yield futures[future], (error if error is not None else future.result())

    def close(self) -> None:
        pass


def start(address: str | None, workers: int | None) -> LocalEngine:
    from nb2prod.errors import InputError

    if address:
        raise InputError("the local engine runs in this process: --scheduler and --master need --engine dask or spark.")
    return LocalEngine(workers or 1)
