"""The command line of a generated package's `NAME-serve` (argparse, the same options as
`nb2prod serve`). Errors are one sentence and exit code 2."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from .drift_window import DEFAULT_ALPHA, DEFAULT_EVERY, DEFAULT_WINDOW
from .main import ServeError, ServeOptions, serve


def parser(program: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"{program}-serve",
        description="Serve the model of a run (default: the production alias) of a run store.",
    )
    p.add_argument(
        "store",
        nargs="?",
        default=os.environ.get("NB2PROD_STORE", "runs"),
        help="run store folder (default: $NB2PROD_STORE, else ./runs)",
    )
    p.add_argument("--model", default="production", help="run id, id prefix or alias")
    p.add_argument(
        "--host",
        default=os.environ.get("NB2PROD_SERVE_HOST", "127.0.0.1"),
        help="address to bind (default: $NB2PROD_SERVE_HOST, else 127.0.0.1)",
    )
    p.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("NB2PROD_PORT", "8000")),
        help="port (default: $NB2PROD_PORT, else 8000; 0 picks a free one)",
    )
    p.add_argument(
        "--workers", type=int, default=1, help="processes, each with its own model"
    )
    p.add_argument(
        "--token-env", default=None, metavar="NAME", help="bearer token variable"
    )
    p.add_argument(
        "--strict-ranges", action="store_true", help="refuse out-of-range values"
    )
    p.add_argument(
        "--log",
        "--log-dir",
        dest="log",
        default=None,
        metavar="DIR",
        help="prediction log folder",
    )
    p.add_argument(
        "--log-sample", type=float, default=1.0, help="share of requests logged"
    )
    p.add_argument(
        "--log-max-mb", type=int, default=64, help="rotate log files past this"
    )
    p.add_argument("--batching", action="store_true", help="merge concurrent requests")
    p.add_argument(
        "--batch-window-ms", type=float, default=0.0, help="extra wait for a batch"
    )
    p.add_argument(
        "--max-batch-rows", type=int, default=1000, help="rows per merged call"
    )
    p.add_argument("--max-body-mb", type=float, default=10.0, help="request body limit")
    p.add_argument(
        "--max-instances", type=int, default=10_000, help="records per request"
    )
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    p.add_argument(
        "--reload-interval", type=float, default=5.0, help="seconds between checks"
    )
    p.add_argument("--model-name", default=program, help="name on the v2 routes")
    p.add_argument("--wait", action="store_true", help="start before the target exists")
    p.add_argument(
        "--no-drift", action="store_true", help="no live drift against the baseline"
    )
    p.add_argument(
        "--drift-window", type=int, default=DEFAULT_WINDOW, help="rows in the window"
    )
    p.add_argument(
        "--drift-alpha",
        type=float,
        default=DEFAULT_ALPHA,
        help="corrected p-value below which a column drifts",
    )
    p.add_argument(
        "--drift-every", type=int, default=DEFAULT_EVERY, help="rows between checks"
    )
    p.add_argument(
        "--drift-webhook",
        default=None,
        metavar="URL",
        help="POST the drift alarm's changes here",
    )
    p.add_argument(
        "--feedback-window", type=int, default=1000, help="labels in live metrics"
    )
    p.add_argument(
        "--feedback-min-labels", type=int, default=50, help="labels before gates"
    )
    p.add_argument(
        "--decision-threshold", type=float, default=0.5, help="binary score cut"
    )
    return p


def serve_main(
    argv: Sequence[str] | None, factory: str, program: str, version: str = ""
) -> int:
    args = parser(program).parse_args(list(sys.argv[1:] if argv is None else argv))
    if not 0 <= args.port <= 65535 or args.workers < 1:
        print(
            f"error: --port {args.port} / --workers {args.workers} out of range",
            file=sys.stderr,
        )
        return 2
    if not os.path.isdir(args.store):
        print(f"error: {args.store}: no run store folder there", file=sys.stderr)
        return 2
    options = ServeOptions(
        host=args.host,
        port=args.port,
        workers=args.workers,
        token_env=args.token_env,
        strict_ranges=args.strict_ranges,
        log_dir=args.log,
        log_sample=min(max(args.log_sample, 0.0), 1.0),
        log_max_bytes=max(args.log_max_mb, 1) * 1024 * 1024,
        batching=args.batching,
        batch_window_ms=min(max(args.batch_window_ms, 0.0), 50.0),
        max_batch_rows=max(args.max_batch_rows, 1),
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        max_instances=max(args.max_instances, 1),
        timeout_s=args.timeout,
        reload_interval=max(args.reload_interval, 0.1),
        model_name=args.model_name,
        wait=args.wait,
        title=f"{program} model server",
        version=version,
        drift=not args.no_drift,
        drift_window=args.drift_window,
        drift_alpha=args.drift_alpha,
        drift_every=args.drift_every,
        drift_webhook=args.drift_webhook,
        feedback_window=max(args.feedback_window, 1),
        feedback_min_labels=max(args.feedback_min_labels, 1),
        decision_threshold=args.decision_threshold,
    )
    spec = {"factory": factory, "args": {"store": args.store, "ref": args.model}}
    try:
        return serve(spec, options)
    except ServeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
