"""`nb2prod drift`: a run's baseline against current data."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from nb2prod.commands.runs import FORMAT, _open_store, _store_option


@click.command()
@click.argument("run")
@click.argument("data", type=click.Path(path_type=Path))
@_store_option()
@click.option(
    "--threshold",
    "alpha",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.001,
    show_default=True,
    help="A column drifts when its Bonferroni-corrected test p-value is below this.",
)
@click.option(
    "--psi-threshold", type=float, default=None, help="Also call drift when a column's PSI is above this (e.g. 0.2)."
)
@click.option("--since", default=None, help="Prediction-log folder: only records at or after this ISO time.")
@click.option("--window", type=click.IntRange(1), default=None, help="Only the last N rows.")
@click.option("--no-score", is_flag=True, help="Do not score the rows with the model (no score-drift check).")
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write an HTML report (and PNGs beside it).",
)
@FORMAT
def drift(
    run: str,
    data: Path,
    store: Path | None,
    alpha: float,
    psi_threshold: float | None,
    since: str | None,
    window: int | None,
    no_score: bool,
    report_path: Path | None,
    fmt: str,
) -> None:
    """Compare DATA (CSV, parquet, JSON lines or a prediction-log folder) with RUN's baseline.

    Exit 0 when no column drifted, 1 when one did, 2 for bad input.
    """
    from nb2prod.monitor import drift as compute
    from nb2prod.monitor import write_report

    report = compute(
        _open_store(store),
        run,
        data,
        alpha=alpha,
        psi_threshold=psi_threshold,
        since=since,
        window=window,
        score=not no_score,
    )
    if report_path is not None:
        write_report(report, report_path)
    if fmt == "json":
        click.echo(json.dumps(report.to_dict(), indent=2, sort_keys=True))
    else:
        click.echo(
            f"run {report.run_id}: {report.rows} rows, {len(report.drifted)} of {len(report.columns)} columns drifted"
        )
        click.echo(f"  {'column':<24} {'test':<5} {'statistic':>10} {'p (corr.)':>10} {'PSI':>8}  verdict")
        for c in report.columns:
            stat = f"{c.statistic:.4f}" if c.statistic is not None else "-"
            p = f"{c.p_adjusted:.2g}" if c.p_adjusted is not None else "-"
            psi = f"{c.psi:.3f}" if c.psi is not None else "-"
            click.echo(f"  {c.name:<24} {c.test:<5} {stat:>10} {p:>10} {psi:>8}  {'DRIFT' if c.drifted else 'ok'}")
        for name in report.missing_columns:
            click.echo(f"  note: input {name!r} is not in the data")
        for note in report.notes:
            click.echo(f"  note: {note}")
        if report_path is not None:
            click.echo(f"  report: {report_path}")
    if report.drifted:
        sys.exit(1)
