"""Training runs end to end: real papermill + ipykernel runs, the python engine, gates, predict."""

from __future__ import annotations

import json
import stat
import subprocess
from importlib import metadata
from pathlib import Path

import pytest

from nb2prod import api
from nb2prod.runs.hashing import sha256_file
from nb2prod.runs.record import ERRORED, FAILED_GATE, SUCCEEDED, RunManifest
from nb2prod.runs.store import RunStore

from .conftest import cli, write_ridge_project


@pytest.fixture(scope="module")
def ridge(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ridge notebook, built; returns the build folder (the store is runs/ beside the notebook)."""
    notebook = write_ridge_project(tmp_path_factory.mktemp("ridge") / "project")
    return Path(api.build(notebook).output_dir)


def _run_from_output(stdout: str) -> RunManifest:
    return RunManifest.from_dict(json.loads(stdout))


def test_papermill_run_records_every_field(ridge: Path):
    project = ridge.parent.parent
    result = cli(
        "train",
        str(ridge),
        "--format",
        "json",
        "-p",
        "n_rows",
        "150",  # int
        "-p",
        "alpha",
        "0.5",  # float
        "-p",
        "fit_intercept",
        "false",  # bool
        "-p",
        "label",
        "y",  # str
        "-p",
        "features",
        "[x2, x1]",  # list
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    run_dir = Path(data["path"])
    manifest = _run_from_output(result.stdout)
    assert run_dir.parent == project / "runs"  # default store: runs/ beside the notebook
    assert manifest.status == SUCCEEDED and manifest.failure is None and manifest.engine == "papermill"
    assert manifest.notes == ()

    # parameters: typed values reached the job (metrics computed by the job prove it)
    params = json.loads((run_dir / "params.json").read_text())
    assert params == {
        "data_path": "data/points.csv",
        "n_rows": 150,
        "alpha": 0.5,
        "fit_intercept": False,
        "label": "y",
        "features": ["x2", "x1"],
        "min_r2": 0.5,
    }
    assert manifest.overrides == ("n_rows", "alpha", "fit_intercept", "label", "features")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["n_rows"] == 150 and metrics["n_features"] == 2 and metrics["intercept"] == 0.0
    assert metrics == manifest.metrics and metrics["r2"] > 0.9

    # the executed notebook: papermill's injected parameters, outputs of a real kernel
    nb = json.loads((run_dir / "notebook.ipynb").read_text())
    injected = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert len(injected) == 1
    assert "n_rows = 150" in "".join(injected[0]["source"]) and "fit_intercept = False" in "".join(
        injected[0]["source"]
    )
    assert nb["metadata"]["papermill"]["parameters"]["features"] == ["x2", "x1"]
    assert all(c.get("execution_count") for c in nb["cells"] if c["cell_type"] == "code")

    # the model and its sha256
    model = manifest.model
    assert model is not None and model.format == "skops" and model.type.endswith("Ridge")
    assert sha256_file(run_dir / model.file) == model.sha256
    assert (run_dir / "model" / "model.sha256").read_text().split()[0] == model.sha256

    # input data, git, pins, timings, contract
    [data_input] = manifest.data
    assert (data_input.parameter, data_input.path, data_input.kind) == ("data_path", "data/points.csv", "file")
    assert data_input.sha256 == sha256_file(project / "data" / "points.csv")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True).stdout.strip()
    assert manifest.git is not None and manifest.git.commit == head and manifest.git.dirty is False
    pins = (run_dir / "environment.txt").read_text().splitlines()
    assert f"scikit-learn=={metadata.version('scikit-learn')}" in pins and tuple(pins) == manifest.pins
    t = manifest.timings
    assert t.total_s >= t.execute_s > 0 and t.bookkeeping_s >= 0 and t.cells_s is not None and t.cells_s > 0
    contract = manifest.contract
    assert contract is not None and contract.expression == "X" and contract.kind == "dataframe"
    assert [(f.name, f.dtype) for f in contract.features] == [("x2", "int64"), ("x1", "float64")]
    assert contract.n_rows == 150 and len(contract.examples) == 5 and set(contract.examples[0]) == {"x1", "x2"}
    assert json.loads((run_dir / "contract.json").read_text())["fit"]["expression"] == "X"
    assert (run_dir / "code" / "src" / "ridge" / "train.py").is_file()

    # everything is recorded with its digest and read-only
    assert RunStore(run_dir.parent).problems(RunStore(run_dir.parent).load(manifest.run_id)) == []
    assert set(manifest.files) >= {
        "params.json",
        "metrics.json",
        "contract.json",
        "notebook.ipynb",
        "environment.txt",
        "model/model.skops",
        "model/model.sha256",
    }
    assert not (run_dir / "notebook.ipynb").stat().st_mode & stat.S_IWUSR


def test_training_from_the_notebook_records_a_dirty_working_tree(ridge: Path):
    project = ridge.parent.parent
    (project / "notes.txt").write_text("uncommitted\n")
    try:  # the notebook itself: built first (unchanged here), then trained
        result = cli("train", "ridge.ipynb", "--engine", "python", "--format", "json", cwd=project)
    finally:
        (project / "notes.txt").unlink()
    assert result.returncode == 0, result.stderr
    manifest = _run_from_output(result.stdout)
    assert manifest.git is not None and manifest.git.dirty is True and manifest.engine == "python"
    assert Path(json.loads(result.stdout)["path"]).parent == project / "runs"
    assert manifest.source.build_dir == str(ridge) and (project / "runs" / manifest.run_id / "output.log").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["-p", "n_rows", "1.5"],
            "-p n_rows: parameter 'n_rows' expects an int, got '1.5'; the parameter is an int because its default"
            " is written `n_rows = 200`: write `n_rows = 200.0` in the notebook's parameters cell",
        ),
        (["-p", "alpha", "abc"], "parameter 'alpha' expects a float, got 'abc'"),
        (["-p", "fit_intercept", "maybe"], "parameter 'fit_intercept' expects a bool"),
        (["-p", "features", "{a: 1}"], "parameter 'features' expects a list"),
        (["-p", "n_row", "3"], "unknown parameter 'n_row'"),
    ],
)
def test_wrong_parameters_are_refused_before_any_kernel_starts(ridge: Path, tmp_path: Path, args, message):
    store = tmp_path / "store"
    result = cli("train", str(ridge), "--store", str(store), *args)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {message}" or message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not store.exists()  # no run folder, not even a staging one


def test_params_file_is_checked_against_the_schema(ridge: Path, tmp_path: Path):
    good = tmp_path / "good.yaml"
    good.write_text("alpha: 3\nfeatures: [x1]\n")
    result = cli(
        "train", str(ridge), "--engine", "python", "-f", str(good), "--store", str(tmp_path / "s"), "--format", "json"
    )
    assert result.returncode == 0, result.stderr
    manifest = _run_from_output(result.stdout)
    assert manifest.params["alpha"] == 3.0 and manifest.metrics["n_features"] == 1

    bad = tmp_path / "bad.yaml"
    bad.write_text("n_rows: many\n")
    result = cli("train", str(ridge), "-f", str(bad), "--store", str(tmp_path / "s2"))
    assert result.returncode == 2 and f"{bad}: parameter 'n_rows' expects an int" in result.stderr


@pytest.mark.parametrize("engine", ["papermill", "python"])
def test_failed_gate_is_recorded_and_never_promoted(ridge: Path, tmp_path: Path, engine: str):
    store = tmp_path / "store"
    result = cli("train", str(ridge), "--engine", engine, "-p", "min_r2", "1.01", "--store", str(store))
    assert result.returncode == 1
    assert "quality gate failed" in result.stderr
    assert "ridge.ipynb: cell 4 (id metrics, metrics), line 7: QualityGateError: R^2 below gate" in result.stderr
    [run] = RunStore(store).list()
    m = run.manifest
    assert m.status == FAILED_GATE
    assert (m.failure.cell.notebook_cell, m.failure.cell.role, m.failure.cell.line) == (3, "metrics", 7)
    assert m.metrics["r2"] > 0.9  # kept for inspection: the metrics and the model are there
    assert m.model is not None and (run.path / m.model.file).is_file()

    refused = cli("promote", run.run_id, "--store", str(store))
    assert refused.returncode == 2 and "cannot be promoted" in refused.stderr and "failed-gate" in refused.stderr
    assert not (store / "aliases" / "production.json").exists()


@pytest.mark.parametrize("engine", ["papermill", "python"])
def test_an_error_in_a_train_cell_is_recorded_with_its_cell(ridge: Path, tmp_path: Path, engine: str):
    store = tmp_path / "store"
    result = cli("train", str(ridge), "--engine", engine, "-p", "data_path", "data/missing.csv", "--store", str(store))
    assert result.returncode == 1
    assert "training failed" in result.stderr and "FileNotFoundError" in result.stderr
    assert "ridge.ipynb: cell 3 (id train, train), line 3" in result.stderr
    [run] = RunStore(store).list()
    m = run.manifest
    assert m.status == ERRORED and m.model is None and m.data == ()
    assert (m.failure.error_type, m.failure.cell.notebook_cell, m.failure.cell.cell_id) == (
        "FileNotFoundError",
        2,
        "train",
    )
    assert "missing.csv" in m.failure.message and "FileNotFoundError" in m.failure.traceback
    if engine == "papermill":
        assert m.notes == ("the job stopped before its model and metrics were collected",)
        assert (run.path / "notebook.ipynb").is_file()
    else:
        assert (run.path / "output.log").is_file()


def test_predict_with_an_alias_and_refuse_a_tampered_model(ridge: Path, tmp_path: Path):
    store = tmp_path / "store"
    result = cli("train", str(ridge), "--engine", "python", "--store", str(store), "--format", "json")
    assert result.returncode == 0, result.stderr
    run_id = json.loads(result.stdout)["run_id"]
    assert cli("promote", run_id, "--store", str(store)).returncode == 0

    csv_in = tmp_path / "in.csv"
    csv_in.write_text("x2,x1,extra\n5,0.1257,a\n1,-0.1321,b\n")
    jsonl_in = tmp_path / "in.jsonl"
    jsonl_in.write_text('{"x1": 0.1257, "x2": 5}\n\n{"x1": -0.1321, "x2": 1}\n')
    from_csv = cli("predict", "production", str(csv_in), "--store", str(store))
    from_jsonl = cli("predict", run_id, str(jsonl_in), "--store", str(store))
    assert from_csv.returncode == 0, from_csv.stderr
    lines = [json.loads(line) for line in from_csv.stdout.splitlines()]
    assert len(lines) == 2 and all(isinstance(v, float) for v in lines)
    assert lines == [json.loads(line) for line in from_jsonl.stdout.splitlines()]
    # the data follow y = 2*x1 - 0.5*x2 + noise, and the columns were reordered to the fitted order
    assert lines[0] == pytest.approx(2 * 0.1257 - 0.5 * 5, abs=0.2)
    assert lines[1] == pytest.approx(2 * -0.1321 - 0.5 * 1, abs=0.2)

    missing = cli("predict", "production", "-", "--store", str(store), stdin='{"x1": 1.0}\n')
    assert missing.returncode == 2 and "stdin: row 1 has no column 'x2'" in missing.stderr

    model = store / run_id / "model" / "model.skops"
    model.chmod(0o644)
    with open(model, "r+b") as handle:
        handle.seek(100)
        byte = handle.read(1)
        handle.seek(100)
        handle.write(bytes([byte[0] ^ 0xFF]))
    refused = cli("predict", "production", str(csv_in), "--store", str(store))
    assert refused.returncode == 2 and refused.stdout == ""
    assert f"run {run_id} failed verification: model/model.skops changed since the run was recorded" in refused.stderr
