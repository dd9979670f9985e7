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

__all__ = ["ServeError", "ServeOptions", "create_app", "read_prediction_log", "serve", "source_spec"]


def read_prediction_log(folder: str | Path, since: Any = None, window: int | None = None) -> Any:
    """The records of a server's prediction log folder, in time order: from `since` (an ISO time,
    a datetime or a timedelta ago) and, with `window`, only the last `window` of them."""
    from nb2prod.serve.shipped.predlog import iter_records

    return iter_records(folder, since=since, window=window)


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
    `monitors` watch the traffic (besides those `options` ask for, such as live drift)."""
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
