"""The model runtime of the server: loading, verification, warm-up, micro-batching, hot reload.

A `ModelSource` knows where models come from (nb2prod's run store through `load_run`, or a
generated package's run loader in `_runtime`); this module only drives it:

- the first model is loaded, verified and warmed on the contract's example rows in a background
  thread, so the process answers `/healthz` at once and `/readyz` only once the model is warm;
- estimators' `n_jobs` are set to 1 (parallel predict on a few rows is slower, and workers are
  processes), and what was changed is reported;
- predict runs on one model thread per worker; with batching on, requests that arrive while
  the model is busy are merged into one call (plus an optional window of a few milliseconds);
- the target is watched (file change of the alias, a periodic check, SIGHUP): a new target is
  loaded, verified and warmed in the background and swapped in by one assignment; requests in
  flight finish on the model they started with; a target that fails is refused and the old
  model keeps serving.

Standard library only: nb2prod and the packages it generates ship this same file.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Protocol, Sequence

log = logging.getLogger("nb2prod.serve")


def now_iso() -> str:
    return (
        datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    )


@dataclass(frozen=True)
class LoadedModel:
    """A verified model and the function that predicts with it on a list of records."""

    run: str
    alias: str | None
    model_sha256: str
    code_sha256: str | None
    model: Any
    predict: Callable[
        [list[dict[str, Any]]], list[Any]
    ]  # records -> one JSON value each
    contract: (
        Any  # an InputContract of the shipped runtime, or None when none was recorded
    )
    examples: tuple[dict[str, Any], ...] = ()
    info: dict[str, Any] = field(
        default_factory=dict
    )  # model type, n_jobs changes, ...
    loaded_at: str = ""
    run_dir: str | None = (
        None  # the verified run folder (baseline.json, metrics.json, run.json)
    )
    explain: Callable[[list[dict[str, Any]]], list[Any]] | None = (
        None  # records -> one explanation each, where the run's package can explain
    )


class ModelSource(Protocol):
    """Where the served model comes from."""

    target: str  # what was asked for, for people: "runs/production"
    alias: str | None

    def resolve(self) -> str:
        """The run the target names now (cheap: called by the watcher)."""

    def load(self, run: str) -> LoadedModel:
        """The run's model, verified; raises when it must not be served."""

    def validate(
        self, records: Sequence[Any], contract: Any, strict_ranges: bool
    ) -> list[Any]:
        """Contract violations of `records` (objects with row, field, rule, message, severity)."""

    def watch_files(self) -> list[str]:
        """Files whose change means the target may name another run."""


def limit_n_jobs(model: Any) -> dict[str, Any]:
    """Set every `n_jobs` parameter of a scikit-learn style estimator to 1; return the old values."""
    get_params = getattr(model, "get_params", None)
    set_params = getattr(model, "set_params", None)
    if not callable(get_params) or not callable(set_params):
        return {}
    try:
        params = get_params(deep=True)
    except Exception:
        return {}
    changed = {
        k: v
        for k, v in params.items()
        if (k == "n_jobs" or k.endswith("__n_jobs")) and v not in (1, None)
    }
    if changed:
        set_params(**{k: 1 for k in changed})
    return changed


def warm(loaded: LoadedModel, rounds: int = 2) -> int:
    """Predict on the example rows (one by one and together); returns the rows predicted."""
    rows = [dict(e) for e in loaded.examples]
    if not rows:
        return 0
    done = 0
    for _ in range(max(rounds, 1)):
        for row in rows:
            outputs = loaded.predict([row])
            if len(outputs) != 1:
                raise ValueError(f"predict returned {len(outputs)} values for 1 row")
            done += 1
        outputs = loaded.predict(rows)
        if len(outputs) != len(rows):
            raise ValueError(
                f"predict returned {len(outputs)} values for {len(rows)} rows"
            )
        done += len(rows)
    return done


class PredictError(Exception):
    """The model's predict failed on rows that passed the contract."""


@dataclass
class _Pending:
    records: list[dict[str, Any]]
    model: LoadedModel
    future: asyncio.Future[list[Any]]


class ModelRuntime:
    """Holds the model being served and swaps it for a new target's when the target changes."""

    def __init__(
        self,
        source: ModelSource,
        *,
        batching: bool = False,
        max_batch_rows: int = 1000,
        batch_window_ms: float = 0.0,
        reload_interval: float = 5.0,
        watch_interval: float = 0.25,
        warmup_rounds: int = 2,
        wait: bool = False,
        metrics: Any = None,
    ) -> None:
        self.source = source
        self.batching = batching
        self.max_batch_rows = max_batch_rows
        self.batch_window = batch_window_ms / 1000.0
        self.reload_interval = reload_interval
        self.watch_interval = watch_interval
        self.warmup_rounds = warmup_rounds
        self.wait = wait
        self.metrics = metrics
        self.current: LoadedModel | None = None
        self.started = now_iso()
        self.reloads = 0
        self.last_reload: dict[str, Any] | None = None
        self.reload_error: dict[str, Any] | None = None
        self.load_error: str | None = None
        self._refused: set[str] = set()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="nb2prod-model")
        self._pending: list[_Pending] = []
        self._busy = False
        self._timer: asyncio.TimerHandle | None = None
        self.on_swap: Callable[[], None] | None = None

    # ---- lifecycle ----
    @property
    def ready(self) -> bool:
        return self.current is not None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._watch, name="nb2prod-model-watch", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
        self._executor.shutdown(wait=False, cancel_futures=True)

    def request_reload(self) -> None:
        """Check the target now, and retry a refused one (SIGHUP)."""
        self._refused.clear()
        self._wake.set()

    def _mtimes(self) -> tuple[Any, ...]:
        stamps = []
        for path in self.source.watch_files():
            try:
                info = os.stat(path)
                stamps.append((path, info.st_mtime_ns, info.st_size, info.st_ino))
            except OSError:
                stamps.append((path, -1, -1, -1))
        return tuple(stamps)

    def _watch(self) -> None:
        self.check()
        stamps = self._mtimes()
        next_check = time.monotonic() + self.reload_interval
        while not self._stop.is_set():
            woken = self._wake.wait(self.watch_interval)
            if self._stop.is_set():
                break
            now_stamps = self._mtimes()
            due = time.monotonic() >= next_check
            if woken or due or now_stamps != stamps:
                self._wake.clear()
                stamps = now_stamps
                next_check = time.monotonic() + self.reload_interval
                self.check()

    def check(self) -> None:
        """Load what the target names if it is not the model being served."""
        try:
            run = self.source.resolve()
        except Exception as exc:
            message = _describe(exc)
            if self.current is None:
                if message != self.load_error:
                    log.warning("no model to serve yet: %s", message)
                self.load_error = message
            elif (self.reload_error or {}).get("error") != message:
                self._refuse(None, message, "resolve")
            return
        if self.current is not None and run == self.current.run:
            return
        if run in self._refused:
            return
        self._swap_to(run)

    def _swap_to(self, run: str) -> None:
        started = time.perf_counter()
        previous = self.current
        try:
            loaded = self.source.load(run)
        except Exception as exc:
            self._refuse(run, _describe(exc), "load")
            return
        try:
            warm(loaded, self.warmup_rounds)
        except Exception as exc:
            self._refuse(
                run,
                f"warm-up on the contract's examples failed: {_describe(exc)}",
                "warm-up",
            )
            return
        seconds = time.perf_counter() - started
        self.current = (
            loaded  # one assignment: requests already running keep their model
        )
        if self.on_swap is not None:
            self.on_swap()
        self.load_error = None
        self.reload_error = None
        if self.metrics is not None:
            self.metrics.ready.set((), 1.0)
            self.metrics.model_info.values.clear()
            self.metrics.model_info.set(
                (
                    ("run", loaded.run),
                    ("alias", loaded.alias or ""),
                    ("sha256", loaded.model_sha256),
                ),
                1.0,
            )
        if previous is None:
            log.info(
                "serving run %s (%s, model sha256 %s) after %.2f s",
                loaded.run,
                self.source.target,
                loaded.model_sha256[:12],
                seconds,
            )
            return
        self.reloads += 1
        self.last_reload = {
            "time": now_iso(),
            "from": previous.run,
            "to": loaded.run,
            "seconds": round(seconds, 3),
        }
        if self.metrics is not None:
            self.metrics.reloads.inc()
        log.info(
            "reload: run %s swapped in for run %s (%s) after %.2f s",
            loaded.run,
            previous.run,
            self.source.target,
            seconds,
        )

    def _refuse(self, run: str | None, message: str, stage: str) -> None:
        if run is not None:
            self._refused.add(run)
        serving = self.current.run if self.current is not None else None
        self.reload_error = {
            "time": now_iso(),
            "run": run,
            "stage": stage,
            "error": message,
            "serving": serving,
        }
        if self.current is None:
            self.load_error = message
        if self.metrics is not None:
            self.metrics.reload_failures.inc((("reason", stage),))
        still = f"still serving run {serving}" if serving else "no model is served"
        log.error("reload refused: run %s: %s; %s", run or "?", message, still)

    # ---- predicting ----
    async def predict(
        self, records: list[dict[str, Any]]
    ) -> tuple[LoadedModel, list[Any]]:
        loaded = self.current
        if loaded is None:
            raise RuntimeError("no model is loaded")
        loop = asyncio.get_running_loop()
        if not self.batching:
            outputs = await asyncio.wrap_future(
                self._executor.submit(self._call, loaded, records)
            )
            return loaded, outputs
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._pending.append(_Pending(records, loaded, future))
        if not self._busy and self._timer is None:
            if self.batch_window > 0:
                self._timer = loop.call_later(self.batch_window, self._dispatch)
            else:
                self._dispatch()
        return loaded, await future

    def _call(self, loaded: LoadedModel, records: list[dict[str, Any]]) -> list[Any]:
        try:
            outputs = loaded.predict(records)
        except Exception as exc:
            raise PredictError(
                f"predict of run {loaded.run} failed: {_describe(exc)}"
            ) from exc
        if len(outputs) != len(records):
            raise PredictError(
                f"predict of run {loaded.run} returned {len(outputs)} values for {len(records)} rows"
            )
        if self.metrics is not None:
            self.metrics.batch_rows.observe(len(records))
        return outputs

    def _dispatch(self) -> None:
        self._timer = None
        pending = [p for p in self._pending if not p.future.done()]
        if not pending:
            self._pending = []
            self._busy = False
            return
        model = pending[0].model
        batch: list[_Pending] = []
        rows = 0
        for item in pending:
            if item.model is not model:
                break
            if batch and rows + len(item.records) > self.max_batch_rows:
                break
            batch.append(item)
            rows += len(item.records)
        self._pending = pending[len(batch) :]
        self._busy = True
        done = self._executor.submit(self._call_batch, model, batch)
        loop = asyncio.get_running_loop()
        done.add_done_callback(
            lambda f: loop.call_soon_threadsafe(self._finish, batch, f)
        )

    def _call_batch(self, model: LoadedModel, batch: list[_Pending]) -> list[Any]:
        if len(batch) == 1:
            return [self._call(model, batch[0].records)]
        merged = [r for item in batch for r in item.records]
        try:
            outputs = self._call(model, merged)
        except (
            PredictError
        ):  # find the request that fails: the others still get answers
            results: list[Any] = []
            for item in batch:
                try:
                    results.append(self._call(model, item.records))
                except PredictError as exc:
                    results.append(exc)
            return results
        results, start = [], 0
        for item in batch:
            results.append(outputs[start : start + len(item.records)])
            start += len(item.records)
        return results

    def _finish(self, batch: list[_Pending], done: Future[list[Any]]) -> None:
        try:
            results = done.result()
        except BaseException as exc:
            results = [exc] * len(batch)
        for item, result in zip(batch, results):
            if item.future.done():
                continue
            if isinstance(result, BaseException):
                item.future.set_exception(result)
            else:
                item.future.set_result(result)
        self._busy = False
        if self._pending:
            self._dispatch()

    # ---- reporting ----
    def status(self) -> dict[str, Any]:
        loaded = self.current
        return {
            "target": self.source.target,
            "ready": loaded is not None,
            "run": loaded.run if loaded else None,
            "alias": loaded.alias if loaded else self.source.alias,
            "model_sha256": loaded.model_sha256 if loaded else None,
            "code_sha256": loaded.code_sha256 if loaded else None,
            "loaded_at": loaded.loaded_at if loaded else None,
            "started": self.started,
            "reloads": self.reloads,
            "last_reload": self.last_reload,
            "reload_error": self.reload_error,
            "load_error": self.load_error,
            "batching": {
                "enabled": self.batching,
                "max_rows": self.max_batch_rows,
                "window_ms": self.batch_window * 1000.0,
            },
            **(loaded.info if loaded else {}),
        }


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    name = type(exc).__name__
    return f"{name}: {text}" if text else name
