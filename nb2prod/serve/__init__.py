"""Serving a run's model over HTTP: `create_app(store, ref)` for an ASGI app, `serve(...)` to run it.

The server's code lives in `nb2prod/serve/shipped/` and is copied into every generated package as
`PKG/_serve/` (standard library, FastAPI and uvicorn only), so `nb2prod serve` and a package's
`NAME-serve` are one implementation; this module adds the run store source (`load_run`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nb2prod.serve.shipped.main import ServeError, ServeOptions

__all__ = [
    "ServeError",
    "ServeOptions",
    "create_app",
    "append_feedback",
    "evaluate_labels",
    "read_feedback",
    "read_prediction_log",
    "serve",
    "source_spec",
]


def read_prediction_log(folder: str | Path, since: Any = None, window: int | None = None) -> Any:
    """The records of a server's prediction log folder, in time order: from `since` (an ISO time,
    a datetime or a timedelta ago) and, with `window`, only the last `window` of them."""
    from nb2prod.serve.shipped.predlog import iter_records

    return iter_records(folder, since=since, window=window)


def read_feedback(folder: str | Path, since: Any = None) -> Any:
    """The labels of a prediction log folder's `feedback-*.jsonl` files ({"id", "label", "time",
    "run"}), in time order, from `since` (an ISO time, a datetime or a timedelta ago)."""
    from nb2prod.serve.shipped.feedback import iter_feedback

    return iter_feedback(folder, since=since)


def append_feedback(folder: str | Path, labels: Iterable[tuple[str, Any]], runs: dict[str, Any] | None = None) -> int:
    """Append (id, label) pairs to the folder's feedback files, each with the run that made the
    prediction (from `runs`, else null), as the server's POST /feedback does; the count written."""
    from nb2prod.serve.shipped.feedback import FeedbackLog, feedback_record

    records = [feedback_record(str(pid), label, (runs or {}).get(str(pid))) for pid, label in labels]
    FeedbackLog(folder).write(records)
    return len(records)


def evaluate_labels(
    labels: list[Any],
    outputs: list[Any],
    run_dir: str | Path,
    *,
    run: str | None = None,
    window: int | None = None,
    min_labels: int | None = None,
    threshold: float | None = None,
) -> dict[str, Any]:
    """Live metrics of labelled predictions (oldest first) against the run folder's recorded
    metrics and quality gates: the server's own computation (`/metadata` `monitoring.live`)."""
    from nb2prod.serve.shipped import feedback

    return feedback.evaluate(
        labels,
        outputs,
        feedback.RunTargets.from_run_dir(run, run_dir),
        window=window,
        min_labels=feedback.DEFAULT_MIN_LABELS if min_labels is None else min_labels,
        threshold=feedback.DEFAULT_THRESHOLD if threshold is None else threshold,
    )


def source_spec(store: str | Path, ref: str) -> dict[str, Any]:
    return {"factory": "nb2prod.serve.source:run_store_source", "args": {"store": str(store), "ref": ref}}


def create_app(
    store: str | Path,
    ref: str = "production",
    options: ServeOptions = ServeOptions(),
    *,
    routers: Iterable[Any] = (),
    observers: Iterable[Any] = (),
    collectors: Iterable[Any] = (),
    monitors: Iterable[Any] = (),
) -> Any:
    """The FastAPI app serving run `ref` of `store`. `routers` add routes, `observers` receive
    every prediction record (on the background writer thread), `collectors` add metrics text,
    `monitors` watch the traffic (besides those `options` ask for, such as live drift; the
    live-accuracy monitor is always there)."""
    from nb2prod.serve.shipped.main import build_app, make_source

    return build_app(
        make_source(source_spec(store, ref)),
        options,
        routers=routers,
        observers=observers,
        collectors=collectors,
        monitors=monitors,
    )


def serve(store: str | Path, ref: str = "production", options: ServeOptions = ServeOptions()) -> int:
    """Serve run `ref` of `store` until interrupted."""
    from nb2prod.serve.shipped.main import serve as run

    return run(source_spec(store, ref), options)
