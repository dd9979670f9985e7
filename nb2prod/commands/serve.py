"""`nb2prod serve TARGET`: serve a run's model over HTTP (nb2prod routes and Open Inference v2)."""

from __future__ import annotations

from pathlib import Path

import click

from nb2prod.errors import InputError
from nb2prod.serve.shipped.drift_window import DEFAULT_ALPHA, DEFAULT_EVERY, DEFAULT_WINDOW


def resolve_store(target: Path, store: Path | None) -> Path:
    """The run store a notebook, a build folder or a run store names (`--store` wins)."""
    if store is not None:
        return store
    if target.is_dir() and (target / "nb2prod.json").is_file() or target.suffix == ".ipynb":
        from nb2prod.runs.build import locate_build
        from nb2prod.runs.trainer import default_store

        return default_store(locate_build(target)).root
    if target.is_dir():
        return target
    raise InputError(f"{target}: expected a notebook (.ipynb), a build folder or a run store folder.")


@click.command()
@click.argument("target", type=click.Path(exists=True, path_type=Path))
@click.option("--model", "ref", default="production", show_default=True, help="Run id, id prefix or alias to serve.")
@click.option("--store", type=click.Path(file_okay=False, path_type=Path), default=None, help="Run store folder.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback by default).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="0 picks a free port.")
@click.option(
    "--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="Processes, each with its own model."
)
@click.option(
    "--token-env", default=None, metavar="NAME", help="Require `Authorization: Bearer $NAME` on all but health."
)
@click.option("--strict-ranges", is_flag=True, help="Refuse (422) values outside the training range or categories.")
@click.option(
    "--log",
    "--log-dir",
    "log_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Prediction log folder (JSON lines).",
)
@click.option(
    "--log-sample", default=1.0, show_default=True, type=click.FloatRange(0, 1), help="Share of requests logged."
)
@click.option(
    "--log-max-mb", default=64, show_default=True, type=click.IntRange(1), help="Rotate log files past this size."
)
@click.option(
    "--batching/--no-batching", default=False, show_default=True, help="Merge concurrent requests into one predict."
)
@click.option(
    "--batch-window-ms",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 50),
    help="Extra wait to fill a batch.",
)
@click.option(
    "--max-batch-rows", default=1000, show_default=True, type=click.IntRange(1), help="Rows per merged predict call."
)
@click.option(
    "--max-body-mb", default=10.0, show_default=True, type=click.FloatRange(0.001), help="Request body limit (413)."
)
@click.option(
    "--max-instances", default=10000, show_default=True, type=click.IntRange(1), help="Records per request (413)."
)
@click.option(
    "--timeout",
    "timeout_s",
    default=30.0,
    show_default=True,
    type=click.FloatRange(0.001),
    help="Seconds per request (504).",
)
@click.option(
    "--reload-interval",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0.1),
    help="Seconds between target checks.",
)
@click.option("--model-name", default=None, help="Name on the v2 routes (default: the package name).")
@click.option("--wait", is_flag=True, help="Start even if the target names no run yet; /readyz says 503 until it does.")
@click.option(
    "--drift/--no-drift", default=True, show_default=True, help="Live drift of recent requests against the baseline."
)
@click.option(
    "--drift-window",
    default=DEFAULT_WINDOW,
    show_default=True,
    type=click.IntRange(1),
    help="Rows in the live drift window.",
)
@click.option(
    "--drift-alpha",
    default=DEFAULT_ALPHA,
    show_default=True,
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    help="Bonferroni-corrected p-value below which a column drifts.",
)
@click.option(
    "--drift-every",
    default=DEFAULT_EVERY,
    show_default=True,
    type=click.IntRange(1),
    help="New rows between two drift checks.",
)
@click.option("--drift-webhook", default=None, metavar="URL", help="POST each change of the drift alarm here (JSON).")
@click.option(
    "--feedback-window",
    default=1000,
    show_default=True,
    type=click.IntRange(1),
    help="Labelled predictions (POST /feedback) the live metrics cover.",
)
@click.option(
    "--feedback-min-labels",
    default=50,
    show_default=True,
    type=click.IntRange(1),
    help="Labels in the window before quality gates are judged live.",
)
@click.option(
    "--decision-threshold",
    default=0.5,
    show_default=True,
    type=float,
    help="Binary models: a score at or above this is class 1 for live metrics.",
)
def serve(
    target: Path,
    ref: str,
    store: Path | None,
    host: str,
    port: int,
    workers: int,
    token_env: str | None,
    strict_ranges: bool,
    log_dir: str | None,
    log_sample: float,
    log_max_mb: int,
    batching: bool,
    batch_window_ms: float,
    max_batch_rows: int,
    max_body_mb: float,
    max_instances: int,
    timeout_s: float,
    reload_interval: float,
    model_name: str | None,
    wait: bool,
    drift: bool,
    drift_window: int,
    drift_alpha: float,
    drift_every: int,
    drift_webhook: str | None,
    feedback_window: int,
    feedback_min_labels: int,
    decision_threshold: float,
) -> None:
    """Serve the model of a run (default: the production alias) of TARGET's run store.

    TARGET is a notebook, a build folder or a run store. The model is verified and warmed on the
    contract's examples before /readyz says yes, and swapped live when the alias moves.
    """
    from nb2prod import __version__
    from nb2prod.serve import ServeError, ServeOptions
    from nb2prod.serve import serve as run

    root = resolve_store(target, store)
    if model_name is None:
        model_name = _package_name(root, ref) or "model"
    options = ServeOptions(
        host=host,
        port=port,
        workers=workers,
        token_env=token_env,
        strict_ranges=strict_ranges,
        log_dir=log_dir,
        log_sample=log_sample,
        log_max_bytes=log_max_mb * 1024 * 1024,
        batching=batching,
        batch_window_ms=batch_window_ms,
        max_batch_rows=max_batch_rows,
        max_body_bytes=int(max_body_mb * 1024 * 1024),
        max_instances=max_instances,
        timeout_s=timeout_s,
        reload_interval=reload_interval,
        model_name=model_name,
        wait=wait,
        version=__version__,
        drift=drift,
        drift_window=drift_window,
        drift_alpha=drift_alpha,
        drift_every=drift_every,
        drift_webhook=drift_webhook,
        feedback_window=feedback_window,
        feedback_min_labels=feedback_min_labels,
        decision_threshold=decision_threshold,
    )
    try:
        code = run(root, ref, options)
    except ServeError as exc:
        raise InputError(str(exc)) from None
    raise SystemExit(code)


def _package_name(store: Path, ref: str) -> str | None:
    from nb2prod.runs.store import RunStore

    try:
        return RunStore(store).get(ref).manifest.source.name
    except Exception:
        return None
