"""`nb2prod train`, `runs list|show|diff|history`, `promote`, `rollback` and `predict`."""

from __future__ import annotations

import contextlib
import json
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from nb2prod.runs.aliases import DEFAULT_ALIAS

STORE_HELP = (
    "Run store folder (default: $NB2PROD_STORE, else config `store` of the nearest pyproject.toml, else ./runs)."
)
TRAIN_STORE_HELP = (
    "Run store folder (default: $NB2PROD_STORE, else the notebook's config `store`, else runs/ beside the notebook)."
)
FORMAT = click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: machine-readable, for CI and scripts.",
)


def _store_option(help_text: str = STORE_HELP):
    return click.option(
        "--store", "store", type=click.Path(file_okay=False, path_type=Path), default=None, help=help_text
    )


SIGNING_KEY_FILE = click.option(
    "--signing-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="HMAC-SHA256 key file: new runs are signed with it, and runs not signed with it are refused "
    "(default: $NB2PROD_SIGNING_KEY, else the file $NB2PROD_SIGNING_KEY_FILE; see docs/security.md).",
)
TRUST_PICKLE = click.option(
    "--trust-pickle",
    is_flag=True,
    help="Load a joblib (pickle) model from an unsigned run: pickles run code, so only if you trust "
    "whoever can write the store.",
)


def _open_store(store: Path | None, signing_key_file: Path | None = None, target: Path | None = None):
    """The run store of the one store rule (nb2prod/runs/location.py: --store, $NB2PROD_STORE, the
    notebook or build `target` names, config `store`, ./runs), with the signing key of
    --signing-key-file (default: from the environment). Says on stderr which store it is."""
    from nb2prod.runs.signing import resolve_signing_key
    from nb2prod.runs.store import RunStore

    location = resolve_store_location(store, target)
    key = resolve_signing_key(signing_key_file) if signing_key_file is not None else None
    return RunStore(location.path, signing_key=key)


def resolve_store_location(store: Path | None, target: Path | None = None):
    """The store rule's answer for this command line, announced as `store: PATH (from ...)` on stderr."""
    from nb2prod.runs.location import resolve_store

    location = resolve_store(store, target)
    announce_store(location)
    return location


def announce_store(location) -> None:
    """One `store: PATH (from SOURCE)` line on stderr (never on stdout, so `--format json` stays JSON);
    none with the global `-q`."""
    from nb2prod.progress import quiet

    if not quiet():
        click.echo(location.describe(), err=True)


def _elsewhere_hint(location) -> str:
    """For an empty store found by the current-folder default: a store beside a notebook below."""
    from nb2prod.runs.ids import is_run_id
    from nb2prod.runs.location import FROM_CURRENT

    if location.source != FROM_CURRENT:
        return ""
    for folder in sorted([*Path().glob("*/runs"), *Path().glob("*/*/runs")]):
        if folder.is_dir() and any(is_run_id(entry.name) for entry in folder.iterdir()):
            return (
                f" (train keeps runs beside the notebook: {folder} holds some; use --store {folder}, or set"
                " store under [tool.nb2prod] in pyproject.toml)"
            )
    return ""


def train_progress():
    """The cell progress of `nb2prod train` on a terminal's stderr, or None (piped, or `-q`)."""
    from nb2prod.progress import CellProgress, terminal

    return CellProgress(sys.stderr) if terminal(sys.stderr) else None


@contextlib.contextmanager
def store_warnings() -> Iterator[None]:
    """Print each skipped store file (StoreWarning) as one `warning:` line on stderr."""
    from nb2prod.runs.errors import StoreWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", StoreWarning)
        try:
            yield
        finally:
            for item in caught:
                if issubclass(item.category, StoreWarning):
                    click.echo(f"warning: {item.message}", err=True)
                else:
                    warnings.showwarning(item.message, item.category, item.filename, item.lineno)


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


# --- train -----------------------------------------------------------------------------------
@click.command()
@click.argument("target", type=click.Path(exists=True, path_type=Path))
@click.option(
    "-p",
    "--param",
    "pairs",
    type=(str, str),
    multiple=True,
    metavar="NAME VALUE",
    help="Override a job parameter; the value is converted with the parameter's declared type.",
)
@click.option(
    "-f",
    "--params-file",
    "files",
    type=click.Path(dir_okay=False, path_type=Path),
    multiple=True,
    help="YAML or JSON mapping of parameter values (applied before -p).",
)
@click.option(
    "--engine",
    type=click.Choice(["papermill", "python"]),
    default="papermill",
    show_default=True,
    help="papermill: execute job/train.ipynb with a real kernel; python: run the package in-process.",
)
@click.option(
    "--model-format",
    type=click.Choice(["auto", "skops", "joblib"]),
    default="auto",
    show_default=True,
    help="auto: skops for scikit-learn estimators that round-trip, else joblib.",
)
@_store_option(TRAIN_STORE_HELP)
@SIGNING_KEY_FILE
@FORMAT
def train(
    target: Path,
    pairs: tuple[tuple[str, str], ...],
    files: tuple[Path, ...],
    engine: str,
    model_format: str,
    store: Path | None,
    signing_key_file: Path | None,
    fmt: str,
) -> None:
    """Train NOTEBOOK (built first if needed) or BUILD_DIR into a new immutable run.

    Exit 0 when the run succeeded, 1 when a quality gate failed or the job raised (the run is
    kept for inspection), 2 for bad input.
    """
    from nb2prod.runs.location import resolve_store
    from nb2prod.runs.signing import resolve_signing_key
    from nb2prod.runs.trainer import execute, prepare

    key = resolve_signing_key(signing_key_file) if signing_key_file is not None else None
    location = resolve_store(store, target)
    request = prepare(target, list(pairs), list(files), engine, location.path, model_format, key)
    announce_store(location)  # once the input is accepted: a refused input stays one sentence
    progress = train_progress()
    try:
        run = execute(request, progress)
    finally:
        if progress is not None:
            progress.close()
    manifest = run.manifest
    if fmt == "json":
        _echo_json({"path": str(run.path), **manifest.to_dict()})
    else:
        click.echo(f"run {manifest.run_id}: {manifest.status}  ({run.path})")
        if manifest.metrics:
            click.echo("  metrics: " + _metrics_line(manifest.metrics))
        if manifest.model:
            click.echo(f"  model: {manifest.model.file} ({manifest.model.format}, sha256 {manifest.model.sha256[:12]})")
        click.echo(
            f"  time: {manifest.timings.total_s:.2f}s (job {manifest.timings.execute_s:.2f}s, "
            f"bookkeeping {manifest.timings.bookkeeping_s:.2f}s)"
        )
    if manifest.failure is not None:
        label = "quality gate failed" if manifest.status == "failed-gate" else "training failed"
        click.echo(f"error: {label} in run {manifest.run_id}: {manifest.failure.describe()}", err=True)
        sys.exit(1)


def _metrics_line(metrics: dict[str, Any]) -> str:
    parts = []
    for key in sorted(metrics):
        value = metrics[key]
        parts.append(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}")
    return " ".join(parts)


# --- runs ------------------------------------------------------------------------------------
@click.group()
def runs() -> None:
    """List, show and compare recorded training runs."""


@runs.command("list")
@_store_option()
@FORMAT
def runs_list(store: Path | None, fmt: str) -> None:
    """Every run in the store, oldest first, with status, aliases and metrics.

    An unreadable run.json or alias file is skipped with a warning naming it."""
    from nb2prod.runs.aliases import AliasStore
    from nb2prod.runs.store import RunStore

    location = resolve_store_location(store)
    run_store = RunStore(location.path)
    aliases = AliasStore(run_store)
    by_run: dict[str, list[str]] = {}
    with store_warnings():
        for state in aliases.all():
            by_run.setdefault(state.run_id, []).append(state.alias)
        items = run_store.list()
    if fmt == "json":
        _echo_json(
            [
                {
                    "run_id": r.run_id,
                    "status": r.manifest.status,
                    "engine": r.manifest.engine,
                    "started_at": r.manifest.timings.started_at,
                    "aliases": sorted(by_run.get(r.run_id, [])),
                    "params": r.manifest.params,
                    "metrics": r.manifest.metrics,
                    "model_sha256": getattr(r.manifest.model, "sha256", None),
                    "path": str(r.path),
                }
                for r in items
            ]
        )
        return
    if not items:
        click.echo(f"no runs in {run_store.root}{_elsewhere_hint(location)}")
        return
    rows = [("RUN", "STATUS", "ENGINE", "STARTED (UTC)", "ALIASES", "METRICS")]
    for r in items:
        m = r.manifest
        rows.append(
            (
                r.run_id,
                m.status,
                m.engine,
                m.timings.started_at[:19].replace("T", " "),
                ",".join(sorted(by_run.get(r.run_id, []))) or "-",
                _metrics_line(m.metrics) or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])


@runs.command("show")
@click.argument("run")
@_store_option()
@SIGNING_KEY_FILE
@FORMAT
def runs_show(run: str, store: Path | None, signing_key_file: Path | None, fmt: str) -> None:
    """Everything recorded about RUN (a run id, id prefix or alias), and whether it still verifies."""
    from nb2prod.runs.aliases import AliasStore

    run_store = _open_store(store, signing_key_file)
    found = run_store.get(run)
    with store_warnings():
        aliases = AliasStore(run_store).aliases_of(found.run_id)
    problems = run_store.problems(found)
    m = found.manifest
    if fmt == "json":
        _echo_json(
            {
                "path": str(found.path),
                "aliases": aliases,
                "verified": not problems,
                "problems": problems,
                "modified_files": [p.split(" ", 1)[0] for p in problems],
                **m.to_dict(),
            }
        )
        return
    out = [f"run       {m.run_id}", f"status    {m.status}"]
    if m.failure:
        out.append(f"failure   {m.failure.describe()}")
    out += [
        f"aliases   {', '.join(aliases) or '-'}",
        f"path      {found.path}",
        f"engine    {m.engine}   by {m.user}   started {m.timings.started_at}",
        f"timings   total {m.timings.total_s:.2f}s, job {m.timings.execute_s:.2f}s, bookkeeping {m.timings.bookkeeping_s:.2f}s",
    ]
    if m.source is not None:
        out.append(
            f"source    {m.source.name} ({m.source.notebook or m.source.build_dir}), code sha256 {m.source.code_sha256[:12]}"
        )
    else:
        out.append("source    - (not recorded)")
    if m.git:
        out.append(f"git       {m.git.commit or '(no commit)'}{' (dirty)' if m.git.dirty else ''} in {m.git.root}")
    out.append("params    " + (", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(m.params.items())) or "-"))
    if m.overrides:
        out.append("overrides " + ", ".join(m.overrides))
    out.append("metrics   " + (_metrics_line(m.metrics) or "-"))
    if m.model:
        out.append(
            f"model     {m.model.file} ({m.model.format}, {m.model.type}, sha256 {m.model.sha256[:12]}, {m.model.size} bytes)"
        )
    for d in m.data:
        out.append(f"data      {d.parameter}={d.path} ({d.kind}, {d.files} file(s), sha256 {d.sha256[:12]})")
    if m.contract:
        feats = ", ".join(f"{f.name}:{f.dtype}" for f in m.contract.features)
        out.append(f"contract  {m.contract.expression} ({m.contract.kind}, {m.contract.n_rows} rows): {feats}")
    out.append(f"python    {m.python} on {m.platform}, {len(m.pins)} packages pinned")
    for note in m.notes:
        out.append(f"note      {note}")
    for problem in problems:
        out.append(f"WARNING   {problem}")
    click.echo("\n".join(out))


@runs.command("diff")
@click.argument("run_a")
@click.argument("run_b")
@_store_option()
@FORMAT
def runs_diff(run_a: str, run_b: str, store: Path | None, fmt: str) -> None:
    """Params, metrics, code hash, data hashes, pins, git and model that differ between two runs."""
    from nb2prod.runs.diff import diff_runs

    run_store = _open_store(store)
    found_a, found_b = run_store.get(run_a), run_store.get(run_b)
    result = diff_runs(found_a.manifest, found_b.manifest, (found_a.path, found_b.path))
    if fmt == "json":
        _echo_json(result.to_dict())
    else:
        click.echo(result.render())


@runs.command("history")
@click.option("--alias", default=None, help="Only this alias (default: all).")
@_store_option()
@FORMAT
def runs_history(alias: str | None, store: Path | None, fmt: str) -> None:
    """Every promote and rollback: who, when, from, to."""
    from nb2prod.runs.aliases import AliasStore

    with store_warnings():
        changes = AliasStore(_open_store(store)).history(alias)
    if fmt == "json":
        _echo_json([c.to_dict() for c in changes])
        return
    for c in changes:
        aborted = "  (aborted: the alias was not changed)" if c.status == "aborted" else ""
        click.echo(f"{c.when}  {c.who}  {c.action} {c.alias}: {c.from_run or '-'} -> {c.to_run}{aborted}")


@runs.command("export")
@click.argument("refs", metavar="[RUN|ALIAS]...", nargs=-1)
@click.option("--all", "all_runs", is_flag=True, help="Export every run of the store.")
@click.option("--to", "target", type=click.Choice(["mlflow"]), required=True, help="Where to export.")
@click.option(
    "--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else ./mlruns)."
)
@click.option("--registered-model", default=None, help="Registered model name (default: the notebook's name).")
@_store_option()
@FORMAT
def runs_export(
    refs: tuple[str, ...],
    all_runs: bool,
    target: str,
    tracking_uri: str | None,
    registered_model: str | None,
    store: Path | None,
    fmt: str,
) -> None:
    """Log runs, their models and the aliases to MLflow; exporting again adds nothing twice."""
    from nb2prod.errors import InputError
    from nb2prod.tracking import export_to_mlflow

    if bool(refs) == all_runs:
        raise InputError("name the runs to export (run ids or aliases) or pass --all, not both.")
    result = export_to_mlflow(
        _open_store(store), list(refs) or None, tracking_uri=tracking_uri, registered_model=registered_model
    )
    if fmt == "json":
        _echo_json(result.to_dict())
        return
    for run in result.runs:
        what = "exported" if run.created else "already exported"
        version = f", version {run.model_version}" if run.model_version else ""
        click.echo(f"{run.run_id}: {what} as MLflow run {run.mlflow_run_id} ({run.status}{version})")
    for alias, version in sorted(result.aliases.items()):
        click.echo(f"alias {alias} -> {result.registered_model} version {version}")


# --- promote / rollback ----------------------------------------------------------------------
@click.command()
@click.argument("run")
@click.option("--alias", default=DEFAULT_ALIAS, show_default=True)
@_store_option()
@SIGNING_KEY_FILE
def promote(run: str, alias: str, store: Path | None, signing_key_file: Path | None) -> None:
    """Point ALIAS at RUN (a run id, id prefix or another alias).

    Refuses a run that did not succeed, whose record is incomplete, whose folder no longer matches
    its run.json, or (with a signing key) that is not signed with the key."""
    from nb2prod.runs.aliases import AliasStore

    with store_warnings():
        change = AliasStore(_open_store(store, signing_key_file)).promote(run, alias)
    if change.from_run == change.to_run:
        click.echo(f"{alias} already points at {change.to_run}")
    else:
        click.echo(f"{alias}: {change.from_run or '-'} -> {change.to_run}")


@click.command()
@click.option("--alias", default=DEFAULT_ALIAS, show_default=True)
@_store_option()
def rollback(alias: str, store: Path | None) -> None:
    """Point ALIAS back at the run it pointed at before its latest promote."""
    from nb2prod.runs.aliases import AliasStore

    with store_warnings():
        change = AliasStore(_open_store(store)).rollback(alias)
    click.echo(f"{alias}: {change.from_run} -> {change.to_run} (rolled back)")


# --- predict ---------------------------------------------------------------------------------
@click.command()
@click.argument("run")
@click.argument("input_path", metavar="INPUT", type=click.Path(allow_dash=True, path_type=Path))
@click.option(
    "--input-format",
    type=click.Choice(["auto", "csv", "jsonl"]),
    default="auto",
    show_default=True,
    help="auto: by extension (.csv, .jsonl/.ndjson/.json); '-' (stdin) defaults to JSON lines.",
)
@_store_option()
@SIGNING_KEY_FILE
@TRUST_PICKLE
def predict(
    run: str, input_path: Path, input_format: str, store: Path | None, signing_key_file: Path | None, trust_pickle: bool
) -> None:
    """Predict with the model of RUN (run id or alias) on INPUT; one JSON prediction per row.

    The whole run is verified first (and its signature, with a signing key)."""
    from nb2prod.runs.predicting import predict_rows, read_rows

    rows = read_rows(input_path, input_format)
    source = "stdin" if str(input_path) == "-" else str(input_path)
    with store_warnings():
        values = predict_rows(_open_store(store, signing_key_file), run, rows, source=source, trust_pickle=trust_pickle)
    for value in values:
        click.echo(json.dumps(value))
