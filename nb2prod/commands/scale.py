"""`nb2prod score` (batch scoring on an engine) and `nb2prod sweep` (a parameter grid as runs)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from nb2prod.commands.runs import STORE_HELP, TRAIN_STORE_HELP

ENGINE_HELP = "local (this process, the default), dask, or spark (pip install nb2prod[dask] / nb2prod[spark])."


def _store(store: Path | None, target: Path | None = None) -> Path:
    """The one store rule (nb2prod/runs/location.py), announced on stderr."""
    from nb2prod.commands.runs import resolve_store_location

    return resolve_store_location(store, target).path


@click.command()
@click.argument("run")
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.argument("output", type=click.Path(path_type=Path))
@click.option(
    "--store",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=STORE_HELP,
)
@click.option(
    "--engine", type=click.Choice(["local", "dask", "spark"]), default="local", show_default=True, help=ENGINE_HELP
)
@click.option(
    "--scheduler",
    default=None,
    metavar="ADDRESS",
    help="A running Dask scheduler (tcp://HOST:PORT); default: a local cluster.",
)
@click.option("--master", default=None, metavar="URL", help="A Spark master URL; default: local[N].")
@click.option(
    "--workers",
    type=int,
    default=None,
    help="Worker processes of a local Dask cluster or Spark local[N] (default: the cores).",
)
@click.option(
    "--chunk-rows", type=int, default=100_000, show_default=True, help="Rows per chunk: what one worker holds at once."
)
@click.option(
    "--id-column",
    default=None,
    metavar="COL",
    help="Input column kept in the output to join scores back (default: the row number, column `row`).",
)
@click.option(
    "--bad-rows",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE",
    help="Write rows that break the input contract here (JSON lines, with the reason) and score the rest; without it the first bad row fails the job.",
)
@click.option(
    "--input-format", type=click.Choice(["auto", "csv", "parquet", "jsonl"]), default="auto", show_default=True
)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def score(
    run: str,
    input_path: Path,
    output: Path,
    store: Path | None,
    engine: str,
    scheduler: str | None,
    master: str | None,
    workers: int | None,
    chunk_rows: int,
    id_column: str | None,
    bad_rows: Path | None,
    input_format: str,
    fmt: str,
) -> None:
    """Score INPUT (CSV, parquet file or folder, JSON lines) with RUN's model (run id or alias) into OUTPUT.

    OUTPUT is a new folder of parquet parts with the id (or row number), prediction, run id and
    model sha256 of every row, plus _manifest.json and _SUCCESS; it appears complete or not at all.
    Exit 0 when scored, 2 for bad input (a bad row without --bad-rows names its row and rule).
    """
    from nb2prod.errors import InputError
    from nb2prod.progress import ProgressBar, terminal
    from nb2prod.scale import score as score_input

    if scheduler and engine != "dask":
        raise InputError("--scheduler is the address of a Dask scheduler: add --engine dask.")
    if master and engine != "spark":
        raise InputError("--master is a Spark master URL: add --engine spark.")
    bar = ProgressBar() if terminal(sys.stderr) and fmt == "text" else None
    try:
        result = score_input(
            run,
            input_path,
            output,
            store=_store(store),
            engine=engine,
            address=scheduler or master,
            workers=workers,
            chunk_rows=chunk_rows,
            id_column=id_column,
            bad_rows=bad_rows,
            input_format=input_format,
            progress=bar,
        )
    finally:
        if bar is not None:
            bar.close()
    if fmt == "json":
        click.echo(json.dumps(result.to_dict(), indent=2, sort_keys=True))
    else:
        click.echo(result.summary())
        for field, rule, count in result.warnings:
            click.echo(
                f"  warning: {count:,} row(s) with {field!r} {'outside the training range' if rule == 'range' else 'in a category training never saw'}",
                err=True,
            )


@click.command()
@click.argument("target", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--grid",
    "grid_specs",
    multiple=True,
    metavar="NAME=V1,V2",
    help="Values of a parameter (repeatable: every combination is a point). Default: the config's `sweep`.",
)
@click.option(
    "-p",
    "--param",
    "pairs",
    type=(str, str),
    multiple=True,
    metavar="NAME VALUE",
    help="A parameter value for every point, as for nb2prod train.",
)
@click.option(
    "--store",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=TRAIN_STORE_HELP,
)
@click.option(
    "--engine",
    type=click.Choice(["local", "dask"]),
    default="local",
    show_default=True,
    help="local: processes on this machine; dask: a Dask cluster's workers.",
)
@click.option(
    "--scheduler",
    default=None,
    metavar="ADDRESS",
    help="A running Dask scheduler (tcp://HOST:PORT); default: a local cluster.",
)
@click.option(
    "--workers", type=int, default=None, help="Worker processes of a local Dask cluster (default: the cores)."
)
@click.option(
    "--max-parallel", type=int, default=None, help="Points at once (default: 1 on local, the workers on dask)."
)
@click.option(
    "--train-engine",
    "runner",
    type=click.Choice(["papermill", "python"]),
    default="papermill",
    show_default=True,
    help="How each point trains, as nb2prod train --engine.",
)
@click.option("--metric", default=None, help="Metric to sort the table by (default: the --promote-best metric).")
@click.option(
    "--promote-best",
    "promote_metric",
    default=None,
    metavar="METRIC",
    help="Promote the run with the best METRIC among those that passed their gates.",
)
@click.option("--alias", default="production", show_default=True, help="The alias --promote-best moves.")
@click.option("--lower-is-better", is_flag=True, help="The metric is a loss: smaller values rank first.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def sweep(
    target: Path,
    grid_specs: tuple[str, ...],
    pairs: tuple[tuple[str, str], ...],
    store: Path | None,
    engine: str,
    scheduler: str | None,
    workers: int | None,
    max_parallel: int | None,
    runner: str,
    metric: str | None,
    promote_metric: str | None,
    alias: str,
    lower_is_better: bool,
    fmt: str,
) -> None:
    """Train every point of a parameter grid of NOTEBOOK or BUILD_DIR as its own immutable run.

    A point that fails its gates or raises is recorded and does not stop the others. Exit 0 when
    at least one point passed its gates (and the best was promoted, with --promote-best), 1 when
    none did, 2 for bad input.
    """
    from nb2prod.errors import InputError
    from nb2prod.scale import parse_grid
    from nb2prod.scale import sweep as run_sweep

    if scheduler and engine != "dask":
        raise InputError("--scheduler is the address of a Dask scheduler: add --engine dask.")
    if max_parallel is None and engine == "local":
        max_parallel = 1
    result = run_sweep(
        target,
        parse_grid(grid_specs) if grid_specs else None,
        pairs=pairs,
        store=_store(store, target),
        engine=engine,
        address=scheduler,
        workers=workers,
        max_parallel=max_parallel,
        runner=runner,
        metric=metric or promote_metric,
        maximize=not lower_is_better,
        promote_best=promote_metric is not None,
        alias=alias,
    )
    if fmt == "json":
        click.echo(json.dumps(result.to_dict(), indent=2, sort_keys=True, default=str))
    else:
        click.echo(_table(result))
        failed = [p for p in result.points if not p.succeeded]
        passed = len(result.points) - len(failed)
        click.echo(
            f"{len(result.points)} point(s) on {result.engine} ({result.workers} worker(s)) in {result.total_s:.1f}s: "
            f"{passed} passed, {len(failed)} failed; runs in {result.store}"
        )
        if result.promoted:
            change = result.promoted
            click.echo(f"{change['alias']}: {change['from'] or '-'} -> {change['to']} (best {result.metric})")
    if result.best is None:
        sys.exit(1)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value) if not isinstance(value, str) else value


def _table(result: Any) -> str:
    names = list(result.points[0].params) if result.points else []
    metrics = sorted({k for p in result.points for k in p.metrics})
    if result.metric in metrics:
        metrics.remove(result.metric)
        metrics.insert(0, result.metric)
    header = ["#", "STATUS", "RUN", *names, *metrics]
    rows = [header]
    for p in result.points:
        rows.append(
            [
                str(p.index),
                p.status,
                p.run_id or "-",
                *(_cell(p.params[n]) for n in names),
                *(_cell(p.metrics[m]) if m in p.metrics else "-" for m in metrics),
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    for p in result.points:
        if p.failure:
            lines.append(f"  point {p.index}: {p.failure}")
    return "\n".join(lines)
