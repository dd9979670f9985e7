"""nb2prod's own worker threads inside the Jupyter server.

A thread's stack is fixed when it starts, and a platform's default for threads can be far smaller
than the main thread's (512 KiB on macOS, 128 KiB with musl), while analysing and formatting a
deeply nested cell recurses deeply. `WorkerPool` starts its threads with at least the stack the
command line's main thread has (`ulimit -s`), without changing the stack of any other thread of
the server. While any of its threads works it also holds Python's recursion limit at the level the
command line analyses with: the limit is shared by all threads, so one call restoring it must not
cut another call's analysis short.
"""

from __future__ import annotations

import queue
import resource
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

MIN_STACK_BYTES = 64 * 1024 * 1024
MAX_STACK_BYTES = 1024 * 1024 * 1024
RECURSION_LIMIT = 3000  # what nb2prod.api analyses with


def worker_stack_bytes() -> int:
    """The stack size of nb2prod's worker threads: the main thread's limit, at least 64 MiB."""
    soft, _ = resource.getrlimit(resource.RLIMIT_STACK)
    wanted = soft if soft != resource.RLIM_INFINITY and soft > 0 else MIN_STACK_BYTES
    wanted = min(max(wanted, MIN_STACK_BYTES), MAX_STACK_BYTES)
    return wanted - wanted % 4096


_stack_guard = threading.Lock()  # threading.stack_size is process-wide: set it, start, restore
_limit_guard = threading.Lock()
_working = 0
_limit_before: int | None = None


def _start_thread(target: Callable[[], None], name: str) -> threading.Thread:
    with _stack_guard:
        previous = threading.stack_size(worker_stack_bytes())
        try:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
        finally:
            threading.stack_size(previous)
    return thread


def _enter_work() -> None:
    global _working, _limit_before
    with _limit_guard:
        if _working == 0:
            _limit_before = sys.getrecursionlimit()
            sys.setrecursionlimit(max(_limit_before, RECURSION_LIMIT))
        _working += 1


def _leave_work() -> None:
    global _working, _limit_before
    with _limit_guard:
        _working -= 1
        if _working == 0 and _limit_before is not None:
            if sys.getrecursionlimit() == max(_limit_before, RECURSION_LIMIT):
                sys.setrecursionlimit(_limit_before)
            _limit_before = None


class WorkerPool(Executor):
    """A fixed number of worker threads with a large stack, started on first use."""

    def __init__(self, workers: int, *, name: str) -> None:
        self._workers = workers
        self._name = name
        self._queue: queue.SimpleQueue[tuple[Future, Callable[..., Any], tuple, dict] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError(f"{self._name}: the worker pool is shut down")
            self._queue.put((future, fn, args, kwargs))
            if len(self._threads) < self._workers:
                self._threads.append(_start_thread(self._work, f"{self._name}-{len(self._threads)}"))
        return future

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn, args, kwargs = item
            if not future.set_running_or_notify_cancel():
                continue
            _enter_work()
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # handed to the awaiting request, which decides
                future.set_exception(exc)
            else:
                future.set_result(result)
            finally:
                _leave_work()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)
        if wait:
            for thread in threads:
                thread.join()
