"""`nb2prod runs export --to mlflow` against a real MLflow tracking store (sqlite), read back with
MLflow's own client, and the exported model loaded through `mlflow.pyfunc.load_model`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from nb2prod import api
from nb2prod.runs.predicting import load_run
from nb2prod.runs.store import RunStore

REPO = Path(__file__).resolve().parents[2]
FAST = [
    "-p",
    "n_transactions",
    "4000",
    "-p",
    "n_estimators",
    "10",
    "-p",
    "min_recall",
    "0.0",
    "-p",
    "min_precision",
    "0.0",
]


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nb2prod", *args], capture_output=True, text=True, timeout=900, cwd=cwd
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The fraud example trained twice (both succeed) and once with a failing gate; v2 promoted."""
    root = tmp_path_factory.mktemp("mlflow")
    notebook = root / "fraud_detection.ipynb"
    notebook.write_bytes((REPO / "examples" / "fraud" / "fraud_detection.ipynb").read_bytes())
    build = Path(api.build(notebook).output_dir)
    store = root / "runs"
    ids = []
    for extra in ([], ["-p", "seed", "7"], ["-p", "min_recall", "1.01"]):
        result = cli("train", str(build), "--engine", "python", "--store", str(store), *FAST, *extra)
        assert result.returncode in (0, 1), result.stderr
        ids.append(sorted(p.name for p in store.iterdir() if p.name[0].isdigit())[-1])
    assert cli("promote", ids[0], "--store", str(store)).returncode == 0
    assert cli("promote", ids[1], "--store", str(store)).returncode == 0
    assert cli("promote", ids[0], "--alias", "staging", "--store", str(store)).returncode == 0
    return {"root": root, "store": store, "ids": ids, "uri": f"sqlite:///{root / 'mlflow.db'}"}


def _export(trained: dict[str, object], *args: str) -> dict:
    result = cli(
        "runs",
        "export",
        *args,
        "--to",
        "mlflow",
        "--tracking-uri",
        str(trained["uri"]),
        "--store",
        str(trained["store"]),
        "--format",
        "json",
        cwd=Path(str(trained["root"])),  # MLflow puts a sqlite store's artifacts in ./mlruns
    )
    assert result.returncode == 0, result.stderr
    assert (Path(str(trained["root"])) / "mlruns").is_dir()
    return json.loads(result.stdout)


def test_export_logs_runs_registers_versions_and_mirrors_aliases(trained: dict[str, object]) -> None:
    from mlflow.tracking import MlflowClient

    ids: list[str] = trained["ids"]  # type: ignore[assignment]
    exported = _export(trained, "--all")
    assert [r["run_id"] for r in exported["runs"]] == ids
    assert [r["status"] for r in exported["runs"]] == ["FINISHED", "FINISHED", "FAILED"]
    assert exported["runs"][2]["model_version"] is None

    client = MlflowClient(tracking_uri=str(trained["uri"]))
    experiment = client.get_experiment_by_name("fraud-detection")
    runs = {r.data.tags["nb2prod.run_id"]: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == set(ids)
    store = RunStore(trained["store"])  # type: ignore[arg-type]
    for run_id, mlflow_run in runs.items():
        manifest = store.get(run_id).manifest
        assert mlflow_run.data.tags["nb2prod.code_sha256"] == manifest.source.code_sha256
        assert mlflow_run.data.tags["nb2prod.notebook_sha256"] == manifest.source.notebook_sha256
        assert mlflow_run.data.params["n_estimators"] == "10"
        for name, value in manifest.metrics.items():
            if isinstance(value, float):
                assert mlflow_run.data.metrics[name] == pytest.approx(value)
        artifacts = {a.path for a in client.list_artifacts(mlflow_run.info.run_id, "nb2prod")}
        assert {"nb2prod/contract.json", "nb2prod/params.json", "nb2prod/metrics.json"} <= artifacts
    assert runs[ids[2]].info.status == "FAILED"

    versions = {
        v.tags.get("nb2prod.run_id"): v.version for v in client.search_model_versions("name = 'fraud-detection'")
    }
    assert set(versions) == {ids[0], ids[1]}
    assert client.get_model_version_by_alias("fraud-detection", "production").version == versions[ids[1]]
    assert client.get_model_version_by_alias("fraud-detection", "staging").version == versions[ids[0]]

    again = _export(trained, "--all")
    assert not any(r["created"] for r in again["runs"])
    assert len(client.search_runs([experiment.experiment_id])) == 3
    assert len(client.search_model_versions("name = 'fraud-detection'")) == 2


def test_exported_model_predicts_what_nb2prod_predicts(
    trained: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    _export(trained, "production")
    mlflow.set_tracking_uri(str(trained["uri"]))
    monkeypatch.chdir(Path(str(trained["root"])))  # where the artifacts are, relative to the store
    model = mlflow.pyfunc.load_model("models:/fraud-detection@production")
    loaded = load_run(RunStore(trained["store"]), "production")  # type: ignore[arg-type]
    rows = [dict(r) for r in (loaded.run.manifest.predict_inputs or loaded.run.manifest.contract).examples]
    assert rows
    from_mlflow = model.predict(pd.DataFrame.from_records(rows))
    values = from_mlflow.tolist() if hasattr(from_mlflow, "tolist") else list(from_mlflow)
    assert values == loaded.predict_rows(rows)


def test_export_without_runs_or_with_both_selections_is_refused(trained: dict[str, object], tmp_path: Path) -> None:
    empty = cli(
        "runs",
        "export",
        "--all",
        "--to",
        "mlflow",
        "--store",
        str(tmp_path / "none"),
        "--tracking-uri",
        f"sqlite:///{tmp_path}/x.db",
    )
    assert empty.returncode == 2 and "has no runs to export" in empty.stderr
    both = cli("runs", "export", "production", "--all", "--to", "mlflow", "--store", str(trained["store"]))
    assert both.returncode == 2 and "not both" in both.stderr
