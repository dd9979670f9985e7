"""`nb2prod feedback` (labels joined with a prediction log, offline) and `nb2prod monitor`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from nb2prod.commands.runs import FORMAT, _open_store, _store_option
from nb2prod.errors import InputError


@click.command()
@click.argument("run")
@click.argument("labels", type=click.Path(path_type=Path))
@click.option(
    "--log-dir",
    "log_dir",
    type=click.Path(path_type=Path),
    required=True,
    help="The server's prediction log folder (its --log-dir).",
)
@_store_option()
@click.option("--id-column", default="id", show_default=True, help="Column of LABELS holding the prediction id.")
@click.option("--label-column", default="label", show_default=True, help="Column of LABELS holding the label.")
@click.option("--window", type=click.IntRange(1), default=None, help="Only the last N labelled predictions.")
@click.option(
    "--min-labels",
    type=click.IntRange(1),
    default=50,
    show_default=True,
    help="Labelled predictions needed before gates are judged.",
)
@click.option(
    "--decision-threshold",
    type=float,
    default=0.5,
    show_default=True,
    help="Binary models: a score at or above this is class 1.",
)
@FORMAT
def feedback(
    run: str,
    labels: Path,
    log_dir: Path,
    store: Path | None,
    id_column: str,
    label_column: str,
    window: int | None,
    min_labels: int,
    decision_threshold: float,
    fmt: str,
) -> None:
    """Join LABELS (.csv or .jsonl: id, label) with the prediction log and judge RUN's live metrics.

    The metrics are the server's own (POST /feedback), compared with RUN's recorded metrics and its
    quality gates; the labels are appended to the folder's feedback files, where `nb2prod monitor`
    finds them. Exit 0 when every gate holds, 1 when one fails, 2 for bad input.
    """
    from nb2prod.monitor.live import feedback as compute

    report = compute(
        _open_store(store),
        run,
        labels,
        log_dir,
        id_column=id_column,
        label_column=label_column,
        window=window,
        min_labels=min_labels,
        threshold=decision_threshold,
    )
    if fmt == "json":
        click.echo(json.dumps(report.to_dict(), indent=2, sort_keys=True))
    else:
        join = report.join
        click.echo(
            f"run {report.run}: {report.labels} labels, {join.matched} matched a logged prediction, "
            f"{len(join.unmatched)} unmatched" + (f", {join.other_run} of another run" if join.other_run else "")
        )
        for pid in join.unmatched[:10]:
            click.echo(f"  unmatched id: {pid}")
        if len(join.unmatched) > 10:
            click.echo(f"  ... and {len(join.unmatched) - 10} more unmatched ids")
        _echo_live(report.live)
        click.echo(f"  appended {report.appended} labels to {report.log_dir}")
    if report.failing:
        sys.exit(1)


@click.command()
@click.argument("run")
@click.option("--url", default=None, help="A running server (http://127.0.0.1:PORT): read its /metadata and /metrics.")
@click.option(
    "--log-dir",
    "log_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Without --url: compute from this prediction log folder.",
)
@_store_option()
@click.option("--token-env", default=None, metavar="NAME", help="With --url: send `Authorization: Bearer $NAME`.")
@click.option("--window", type=click.IntRange(1), default=None, help="Without --url: only the last N predictions.")
@click.option(
    "--min-labels",
    type=click.IntRange(1),
    default=50,
    show_default=True,
    help="Without --url: labelled predictions needed before gates are judged.",
)
@FORMAT
def monitor(
    run: str,
    url: str | None,
    log_dir: Path | None,
    store: Path | None,
    token_env: str | None,
    window: int | None,
    min_labels: int,
    fmt: str,
) -> None:
    """A summary of RUN in production: traffic, latency, drift, live metrics against recorded ones
    and quality gates, alarms.

    With --url it reads a running server; else it computes from the --log-dir folder (drift from
    the prediction log, live metrics from its feedback files). Exit 1 when an alarm fires.
    """
    from nb2prod.monitor.live import summary_from_log, summary_from_server

    if url is None and log_dir is None:
        raise InputError("nb2prod monitor needs --url (a running server) or --log-dir (its prediction log folder).")
    if url is not None:
        token = None
        if token_env:
            token = os.environ.get(token_env)
            if not token:
                raise InputError(f"--token-env {token_env}: the environment variable is not set or empty.")
        summary = summary_from_server(url, run, token)
    else:
        assert log_dir is not None
        summary = summary_from_log(_open_store(store), run, log_dir, window=window, min_labels=min_labels)
    if fmt == "json":
        click.echo(json.dumps(summary.to_dict(), indent=2, sort_keys=True, default=str))
    else:
        _echo_summary(summary)
    if summary.alarms:
        sys.exit(1)


def _fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return "-" if value is None else str(value)


def _echo_live(live: dict[str, Any] | None) -> None:
    if not live:
        click.echo("live metrics: not monitored")
        return
    task = live.get("task")
    threshold = f", decision threshold {live['threshold']:g}" if live.get("threshold") is not None else ""
    click.echo(f"live metrics ({task}{threshold}): {live['labelled']} labelled predictions")
    names = sorted(set(live.get("metrics") or {}) | set(live.get("recorded") or {}))
    if names:
        click.echo(f"  {'metric':<16} {'live':>10} {'recorded':>10}")
        for name in names:
            click.echo(
                f"  {name:<16} {_fmt((live.get('metrics') or {}).get(name)):>10} "
                f"{_fmt((live.get('recorded') or {}).get(name)):>10}"
            )
    gates = live.get("gates") or []
    if gates:
        click.echo("  quality gates:")
    for gate in gates:
        if gate.get("failing"):
            state = f"FAILING (live {_fmt(gate.get('live'))})"
        elif gate.get("failing") is False:
            state = f"holds (live {_fmt(gate.get('live'))})"
        else:
            state = gate.get("note") or "not judged yet"
        click.echo(f"    {gate['metric']} {gate['op']} {_fmt(gate['value'])}: {state}")
    if live.get("note"):
        click.echo(f"  note: {live['note']}")


def _echo_summary(summary: Any) -> None:
    alias = f" ({summary.alias})" if summary.alias else ""
    click.echo(f"run {summary.run}{alias}, model sha256 {summary.model_sha256 or '-'}")
    click.echo(f"  from {summary.source}")
    traffic = summary.traffic
    errors = traffic.get("errors")
    shown = "errors not in the prediction log" if errors is None else f"{errors} errors"
    click.echo(f"traffic: {traffic.get('requests', 0)} requests, {shown}")
    latency = summary.latency
    click.echo(
        f"latency: p50 {_fmt(latency.get('p50_ms'), 3)} ms, p99 {_fmt(latency.get('p99_ms'), 3)} ms"
        f" (from the {latency.get('from')})"
    )
    drift = summary.drift
    if not drift:
        click.echo("drift: not monitored")
    else:
        state = "ALARM" if drift.get("alarm") else "no alarm"
        click.echo(f"drift: {state}, {drift.get('rows', 0)} rows in the window")
        for feature in drift.get("features") or []:
            verdict = "DRIFT" if feature.get("drifted") else "ok"
            section = f"{feature['section']}:" if feature.get("section") else ""
            click.echo(
                f"  {section + str(feature.get('feature')):<28} {str(feature.get('test') or ''):<6}"
                f" p {_fmt(feature.get('pvalue'), 2):>8}  PSI {_fmt(feature.get('psi'), 3):>6}  {verdict}"
            )
    _echo_live(summary.live)
    if summary.alarms:
        click.echo("alarms:")
        for alarm in summary.alarms:
            since = f" since {alarm['since']}" if alarm.get("since") else ""
            click.echo(f"  {alarm['name']}: {alarm.get('state', 'firing')}{since}: {alarm.get('reason')}")
    else:
        click.echo("alarms: none")
    for note in summary.notes:
        click.echo(f"note: {note}")
