"""`nb2prod runs export --to mlflow`: nb2prod runs, their models and aliases in an MLflow tracking store.

Each nb2prod run becomes one MLflow run (experiment: the build's distribution name) with the run's
parameters, metrics, provenance tags, its executed notebook and input contract as artifacts, and
its model as a pyfunc model whose predict is the package's own `predict` (from the run's code
snapshot, on the model the run stored, verified by sha256 when MLflow loads it). Succeeded runs are
registered as versions of a registered model, and nb2prod's aliases are mirrored onto them.

Idempotent: a run already exported (tag `nb2prod.run_id`) is found and not logged again, its
version is not registered twice; aliases are set again to where nb2prod's point now.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nb2prod.errors import InputError
from nb2prod.runs.record import SUCCEEDED
from nb2prod.runs.store import RunStore, StoredRun

RUN_ID_TAG = "nb2prod.run_id"
PYFUNC_CODE = Path(__file__).with_name("mlflow_pyfunc.py")
ARTIFACT_FILES = ("notebook.ipynb", "contract.json", "params.json", "metrics.json", "output.log")


@dataclass(frozen=True)
class ExportedRun:
    run_id: str  # nb2prod's
    mlflow_run_id: str
    status: str  # MLflow's: FINISHED or FAILED
    created: bool  # False when the run had been exported before
    model_version: str | None  # registered version, when the run has a model and succeeded


@dataclass(frozen=True)
class MlflowExport:
    tracking_uri: str
    experiment: str
    registered_model: str | None
    runs: tuple[ExportedRun, ...]
    aliases: dict[str, str]  # alias -> registered version, as set in MLflow

    def to_dict(self) -> dict[str, Any]:
        return {
            "tracking_uri": self.tracking_uri,
            "experiment": self.experiment,
            "registered_model": self.registered_model,
            "runs": [r.__dict__ for r in self.runs],
            "aliases": dict(self.aliases),
        }


def _mlflow() -> Any:
    try:
        import mlflow
    except ImportError:
        raise InputError("exporting to MLflow needs MLflow: pip install nb2prod[mlflow]") from None
    return mlflow


def export_to_mlflow(
    store: RunStore,
    refs: list[str] | None,
    *,
    tracking_uri: str | None = None,
    registered_model: str | None = None,
) -> MlflowExport:
    """Export the runs `refs` name (run ids, prefixes or aliases; None: every run) to MLflow."""
    mlflow = _mlflow()
    from mlflow.tracking import MlflowClient

    from nb2prod.runs.aliases import AliasStore

    runs = _select(store, refs)
    if not runs:
        raise InputError(f"the store {store.root} has no runs to export.")
    uri = tracking_uri or mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    experiment = runs[0].manifest.source.name
    experiment_id = _experiment_id(client, experiment)
    model_name = registered_model or experiment
    exported = tuple(_export_run(mlflow, client, experiment_id, run, model_name) for run in runs)
    by_run = {e.run_id: e.model_version for e in exported if e.model_version}
    aliases: dict[str, str] = {}
    for state in AliasStore(store).all():
        version = by_run.get(state.run_id) or _registered_version(client, model_name, state.run_id)
        if version is not None:
            client.set_registered_model_alias(model_name, state.alias, version)
            aliases[state.alias] = version
    return MlflowExport(uri, experiment, model_name if by_run or aliases else None, exported, aliases)


def _select(store: RunStore, refs: list[str] | None) -> list[StoredRun]:
    if not refs:
        return store.list()
    selected: dict[str, StoredRun] = {}
    for ref in refs:
        run = store.get(ref)
        selected.setdefault(run.run_id, run)
    names = {run.manifest.source.name for run in selected.values()}
    if len(names) > 1:
        raise InputError(
            f"the runs named come from different notebooks ({', '.join(sorted(names))}); export them one at a time."
        )
    return sorted(selected.values(), key=lambda r: r.run_id)


def _experiment_id(client: Any, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    return experiment.experiment_id if experiment is not None else client.create_experiment(name)


def _find_exported(client: Any, experiment_id: str, run_id: str) -> Any:
    found = client.search_runs([experiment_id], filter_string=f"tags.`{RUN_ID_TAG}` = '{run_id}'", max_results=1)
    return found[0] if found else None


def _registered_version(client: Any, model_name: str, run_id: str) -> str | None:
    experiment_runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.`{RUN_ID_TAG}` = '{run_id}'",
        max_results=1,
    )
    if not experiment_runs:
        return None
    versions = client.search_model_versions(f"name = '{model_name}' and run_id = '{experiment_runs[0].info.run_id}'")
    return str(versions[0].version) if versions else None


def _millis(iso: str) -> int | None:
    from datetime import datetime

    try:
        return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)
    except (ValueError, AttributeError):
        return None


def _tags(run: StoredRun) -> dict[str, str]:
    m = run.manifest
    tags = {
        RUN_ID_TAG: m.run_id,
        "nb2prod.status": m.status,
        "nb2prod.engine": m.engine,
        "nb2prod.package": m.source.package,
        "nb2prod.code_sha256": m.source.code_sha256,
        "nb2prod.nb2prod_version": m.source.nb2prod_version,
        "mlflow.runName": m.run_id,
        "mlflow.user": m.user,
    }
    if m.source.notebook:
        tags["mlflow.source.name"] = m.source.notebook
    if m.source.notebook_sha256:
        tags["nb2prod.notebook_sha256"] = m.source.notebook_sha256
    if m.model is not None:
        tags["nb2prod.model_sha256"] = m.model.sha256
    if m.git is not None:
        if m.git.commit:
            tags["mlflow.source.git.commit"] = m.git.commit
        tags["nb2prod.git_dirty"] = str(m.git.dirty).lower()
    if m.failure is not None:
        tags["nb2prod.failure"] = m.failure.describe()[:5000]
    return tags


def _export_run(mlflow: Any, client: Any, experiment_id: str, run: StoredRun, model_name: str) -> ExportedRun:
    from mlflow.entities import Metric, Param, RunTag

    manifest = run.manifest
    status = "FINISHED" if manifest.status == SUCCEEDED else "FAILED"
    existing = _find_exported(client, experiment_id, run.run_id)
    if existing is not None:
        version = _registered_version(client, model_name, run.run_id) if manifest.status == SUCCEEDED else None
        return ExportedRun(run.run_id, existing.info.run_id, existing.info.status, False, version)
    _verified(run)
    started = _millis(manifest.timings.started_at)
    created = client.create_run(experiment_id, start_time=started, tags=_tags(run), run_name=run.run_id)
    mlflow_run_id = created.info.run_id
    stamp = _millis(manifest.timings.finished_at) or started or 0
    params = [Param(k, json.dumps(v) if not isinstance(v, str) else v) for k, v in sorted(manifest.params.items())]
    metrics = [
        Metric(k, float(v), stamp, 0)
        for k, v in sorted(manifest.metrics.items())
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    ]
    client.log_batch(
        mlflow_run_id, metrics=metrics, params=params, tags=[RunTag("nb2prod.store", str(run.path.parent))]
    )
    for name in ARTIFACT_FILES:
        if (run.path / name).is_file():
            client.log_artifact(mlflow_run_id, str(run.path / name), artifact_path="nb2prod")
    version = None
    if manifest.model is not None and manifest.status == SUCCEEDED:
        with mlflow.start_run(run_id=mlflow_run_id):
            info = _log_model(mlflow, run)
        registered = mlflow.register_model(info.model_uri, model_name, tags={RUN_ID_TAG: run.run_id})
        version = str(registered.version)
    client.set_terminated(mlflow_run_id, status=status, end_time=_millis(manifest.timings.finished_at))
    return ExportedRun(run.run_id, mlflow_run_id, status, True, version)


def _verified(run: StoredRun) -> None:
    """The whole run folder matches its record (IntegrityError names the first offending path)."""
    RunStore(run.path.parent).verify(run)


def _requirements(run: StoredRun) -> list[str]:
    record = run.path / "code" / "nb2prod.json"
    try:
        data = json.loads(record.read_text())
    except (OSError, ValueError):
        return []
    requirements = data.get("requirements") or []
    skops = run.manifest.model is not None and run.manifest.model.format == "skops"
    return [str(r) for r in requirements if isinstance(r, str)] + (["skops"] if skops else [])


def _log_model(mlflow: Any, run: StoredRun) -> Any:
    """The pyfunc model: the run folder as an artifact, the run's package as code, predict from it."""
    manifest = run.manifest
    package_dir = run.path / "code" / "src" / manifest.source.package
    signature, example = None, None
    examples = manifest.predict_inputs or manifest.contract
    if examples is not None and examples.examples:
        import pandas as pd

        example = pd.DataFrame.from_records(list(examples.examples))
        from mlflow.models import infer_signature

        try:
            signature = infer_signature(example)
        except Exception:  # a signature is a convenience; MLflow infers from odd types unevenly
            signature = None
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=str(PYFUNC_CODE),
        artifacts={"run": str(run.path)},
        code_paths=[str(package_dir)],
        model_config={"package": manifest.source.package},
        pip_requirements=_requirements(run) or None,
        signature=signature,
        input_example=example if signature is not None else None,
        metadata={"nb2prod_run_id": run.run_id},
    )
