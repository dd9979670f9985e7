"""Running the server: options, the app with its model runtime and prediction log, uvicorn.

`serve(source_spec, options)` is what `nb2prod serve` and a generated package's `NAME-serve`
both call. `source_spec` names a factory (`"module:function"`, our own code) and its keyword
arguments, so each worker process (`workers` > 1) builds its own model source and its own model
copy. Log lines go to stderr as `TIME nb2prod.serve LEVEL message` (UTC).
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

from .drift_window import (
    DEFAULT_ALPHA,
    DEFAULT_EVERY,
    DEFAULT_WINDOW,
    DriftMonitor,
    check_webhook,
)
from .feedback import DEFAULT_MEMORY, DEFAULT_MIN_LABELS, DEFAULT_THRESHOLD, LiveMonitor
from .feedback import DEFAULT_WINDOW as FEEDBACK_WINDOW
from .metrics import Metrics
from .model import ModelRuntime
from .predlog import DEFAULT_MAX_BYTES, BackgroundWriter, PredictionLog

SPEC_ENV = "NB2PROD_SERVE_SPEC"
log = logging.getLogger("nb2prod.serve")


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    token_env: str | None = None
    strict_ranges: bool = False
    log_dir: str | None = None
    log_sample: float = 1.0
    log_max_bytes: int = DEFAULT_MAX_BYTES
    batching: bool = False
    batch_window_ms: float = 0.0
    max_batch_rows: int = 1000
    max_body_bytes: int = 10 * 1024 * 1024
    max_instances: int = 10_000
    timeout_s: float = 30.0
    reload_interval: float = 5.0
    model_name: str = "model"
    wait: bool = False
    title: str = "nb2prod model server"
    version: str = ""
    feedback_window: int = (
        FEEDBACK_WINDOW  # labelled predictions the live metrics cover
    )
    feedback_min_labels: int = (
        DEFAULT_MIN_LABELS  # labels needed before gates are judged
    )
    feedback_memory: int = DEFAULT_MEMORY  # predictions remembered for joining labels
    decision_threshold: float = DEFAULT_THRESHOLD  # binary scores >= this are class 1
    extra: dict[str, Any] = field(default_factory=dict)
    drift: bool = True  # live drift of the window against the run's baseline
    drift_window: int = DEFAULT_WINDOW
    drift_alpha: float = DEFAULT_ALPHA
    drift_every: int = DEFAULT_EVERY
    drift_webhook: str | None = None


class ServeError(Exception):
    """A server that cannot start as asked (one sentence)."""


def setup_logging() -> None:
    logger = logging.getLogger("nb2prod.serve")
    if logger.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    formatter = logging.Formatter(
        "%(asctime)s nb2prod.serve %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%SZ"
    )
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def token_from(options: ServeOptions) -> str | None:
    if not options.token_env:
        return None
    token = os.environ.get(options.token_env, "")
    if not token:
        raise ServeError(
            f"--token-env {options.token_env}: the environment variable {options.token_env} is not set or empty"
        )
    return token


def option_monitors(options: ServeOptions) -> list[Any]:
    """The monitors `options` ask for (live drift unless `drift` is off)."""
    if not options.drift:
        return []
    if options.drift_window < 1 or options.drift_every < 1:
        raise ServeError(
            f"--drift-window {options.drift_window} / --drift-every "
            f"{options.drift_every}: both must be at least 1 row"
        )
    if not 0.0 < options.drift_alpha < 1.0:
        raise ServeError(
            f"--drift-alpha {options.drift_alpha}: expected a probability between 0 and 1"
        )
    try:
        check_webhook(options.drift_webhook)
    except ValueError as exc:
        raise ServeError(str(exc)) from None
    return [
        DriftMonitor(
            options.drift_window,
            options.drift_alpha,
            options.drift_every,
            options.drift_webhook,
        )
    ]


def make_source(spec: dict[str, Any]) -> Any:
    module_name, _, function = str(spec["factory"]).partition(":")
    factory = getattr(importlib.import_module(module_name), function)
    return factory(**spec.get("args", {}))


def build_app(
    source: Any,
    options: ServeOptions = ServeOptions(),
    *,
    routers: Iterable[Any] = (),
    observers: Iterable[Any] = (),
    collectors: Iterable[Any] = (),
    monitors: Iterable[Any] = (),
) -> Any:
    """The ASGI app for `source`: runtime, metrics, prediction log and routes.

    A monitor watches the served model's traffic. It has a `name`, and:
    `attach(runtime)` (called once; `runtime.current` is the LoadedModel now served, with its
    verified `run_dir`), `observe(records)` (every prediction record, on the writer thread),
    `metrics_text()` (Prometheus lines), `metadata()` (a JSON object for `/metadata`),
    `alarms()` (a list of `{"name", "state", "reason", ...}` objects now firing) and
    `routers()` (FastAPI routers it adds, may be empty)."""
    from .app import ServeConfig, create_app

    monitors = [*option_monitors(options), *monitors]
    if not any(m.name == LiveMonitor.name for m in monitors):
        monitors.append(LiveMonitor.from_options(options, token_from(options)))
    observers = [*observers, *(m.observe for m in monitors)]
    routers = [*routers, *(r for m in monitors for r in m.routers())]
    metrics = Metrics()
    metrics.collectors.extend(collectors)
    metrics.collectors.extend(m.metrics_text for m in monitors)
    runtime = ModelRuntime(
        source,
        batching=options.batching,
        max_batch_rows=options.max_batch_rows,
        batch_window_ms=options.batch_window_ms,
        reload_interval=options.reload_interval,
        wait=options.wait,
        metrics=metrics,
    )
    prediction_log = (
        PredictionLog(options.log_dir, options.log_max_bytes)
        if options.log_dir
        else None
    )
    writer = BackgroundWriter(
        prediction_log,
        observers,
        sample=options.log_sample,
        on_error=lambda message: log.error("%s", message),
    )
    config = ServeConfig(
        model_name=options.model_name,
        token=token_from(options),
        strict_ranges=options.strict_ranges,
        max_body_bytes=options.max_body_bytes,
        max_instances=options.max_instances,
        timeout_s=options.timeout_s,
        workers=options.workers,
    )
    return create_app(
        runtime,
        config,
        metrics=metrics,
        writer=writer,
        routers=routers,
        monitors=monitors,
        title=options.title,
        version=options.version,
    )


def app_from_environment() -> Any:
    """The app of one worker process (uvicorn factory), from the spec in NB2PROD_SERVE_SPEC."""
    setup_logging()
    data = json.loads(os.environ[SPEC_ENV])
    return build_app(make_source(data["source"]), ServeOptions(**data["options"]))


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServeError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc})"
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(source_spec: dict[str, Any], options: ServeOptions = ServeOptions()) -> int:
    """Serve until SIGINT/SIGTERM. `port` 0 picks a free port (printed)."""
    try:
        import uvicorn
    except ImportError:
        raise ServeError(
            "serving needs FastAPI and uvicorn: pip install fastapi uvicorn (nb2prod: pip install nb2prod[serve])"
        ) from None
    setup_logging()
    token_from(options)  # refuse a missing token before anything starts
    option_monitors(options)  # and a webhook that is not an http(s) URL
    source = make_source(source_spec)
    if not options.wait:
        try:
            source.resolve()
        except Exception as exc:
            raise ServeError(f"{source.target}: {exc}") from None
    sock = bind(options.host, options.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    if options.workers > 1:
        os.environ[SPEC_ENV] = json.dumps(
            {"source": source_spec, "options": asdict(options)}
        )
        config = uvicorn.Config(
            f"{__name__}:app_from_environment",
            factory=True,
            workers=options.workers,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=10,
        )
        log.info(
            "serving on http://%s:%s with %d workers", shown, port, options.workers
        )
        from uvicorn.supervisors import Multiprocess

        if (
            "target" in inspect.signature(Multiprocess).parameters
        ):  # uvicorn before 0.30
            server = uvicorn.Server(config)
            Multiprocess(config, target=server.run, sockets=[sock]).run()  # type: ignore[call-arg]
        else:
            Multiprocess(config, sockets=[sock]).run()
        return 0
    app = build_app(source, options)
    runtime = app.state.runtime
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, timeout_graceful_shutdown=10
    )
    server = uvicorn.Server(config)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda *_: runtime.request_reload())
    log.info("serving on http://%s:%s", shown, port)
    server.run(sockets=[sock])
    return 0
