"""The engine interface: where scoring chunks and sweep points run.

An engine does two things: `map_chunks` runs one function over many small tasks (scoring) and
yields each result as it completes, with a bounded number in flight so memory stays bounded;
`run_each` runs one function per item (sweep points) with at most `max_parallel` at a time and
yields `(index, result or exception)`. One module per engine, imported only when chosen.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

from nb2prod.errors import InputError

ENGINES = ("local", "dask", "spark")
_MODULES = {"local": "nb2prod.scale.local", "dask": "nb2prod.scale.dask", "spark": "nb2prod.scale.spark"}
EXTRAS = {"dask": ("dask", "distributed"), "spark": ("pyspark",)}


class Engine(Protocol):
    name: str
    workers: int  # how many tasks run at once
    address: str | None  # the scheduler or master it is connected to (None: in this process)
    startup_s: float  # time taken to start or connect
    in_process: bool  # tasks run in this process (no need to serialise them)

    def map_chunks(self, function: Callable[[Any], Any], tasks: Iterable[Any]) -> Iterator[Any]: ...

    def run_each(
        self, function: Callable[[Any], Any], items: Sequence[Any], max_parallel: int
    ) -> Iterator[tuple[int, Any]]: ...

    def close(self) -> None: ...


def open_engine(name: str, address: str | None = None, workers: int | None = None) -> Engine:
    """Start (or connect to) the engine `name`; `address` is a Dask scheduler or a Spark master URL."""
    if name not in _MODULES:
        raise InputError(f"unknown engine {name!r}: use {', '.join(ENGINES)}.")
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be a positive number, not {workers}.")
    for module in EXTRAS.get(name, ()):
        try:
            importlib.import_module(module)
        except ImportError:
            raise InputError(
                f"the {name} engine needs {' and '.join(EXTRAS[name])}, which are not installed: "
                f"pip install nb2prod[{name}]"
            ) from None
    started = time.perf_counter()
    engine = importlib.import_module(_MODULES[name]).start(address, workers)
    engine.startup_s = round(time.perf_counter() - started, 4)
    return engine
