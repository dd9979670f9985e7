"""The bundled examples trained for real: both engines agree, and the whole promote/rollback story."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nb2prod import api
from nb2prod.runs.hashing import sha256_file
from nb2prod.runs.predicting import predict_rows
from nb2prod.runs.record import SUCCEEDED, RunManifest
from nb2prod.runs.store import RunStore

from .conftest import cli, copy_example

# small, fast settings; the gates are lowered because the data are small
SETTINGS = {
    "fraud": [
        "-p",
        "n_transactions",
        "6000",
        "-p",
        "n_estimators",
        "15",
        "-p",
        "min_recall",
        "0.0",
        "-p",
        "min_precision",
        "0.0",
    ],
    "churn": ["-p", "n_customers", "1500", "-p", "C", "0.5"],
}


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("examples")
    return {name: Path(api.build(copy_example(name, root / name)).output_dir) for name in SETTINGS}


def _train(build: Path, store: Path, engine: str, *extra: str) -> RunManifest:
    result = cli(
        "train",
        str(build),
        "--engine",
        engine,
        "--store",
        str(store),
        "--format",
        "json",
        *SETTINGS[build.parent.parent.name],
        *extra,
    )
    assert result.returncode == 0, result.stderr
    return RunManifest.from_dict(json.loads(result.stdout))


@pytest.mark.parametrize("example", ["fraud", "churn"])
def test_papermill_and_python_engines_give_the_same_model(builds: dict[str, Path], tmp_path: Path, example: str):
    store = tmp_path / "store"
    kernel = _train(builds[example], store, "papermill")
    in_process = _train(builds[example], store, "python")
    assert kernel.status == in_process.status == SUCCEEDED
    assert (kernel.engine, in_process.engine) == ("papermill", "python")
    assert kernel.params == in_process.params
    assert kernel.metrics and kernel.metrics == pytest.approx(in_process.metrics, rel=1e-12, abs=1e-15)
    assert kernel.source.code_sha256 == in_process.source.code_sha256
    assert kernel.contract == in_process.contract and kernel.contract is not None
    assert kernel.predict_inputs == in_process.predict_inputs and kernel.predict_inputs is not None

    # the same predictions on the rows the notebook fed predict, and on more rows
    rows = [dict(r) for r in kernel.predict_inputs.examples]
    run_store = RunStore(store)
    a = predict_rows(run_store, kernel.run_id, rows)
    b = predict_rows(run_store, in_process.run_id, rows)
    assert len(a) == len(rows) and a == pytest.approx(b, rel=1e-12, abs=1e-15)

    run_dir = store / kernel.run_id
    executed = json.loads((run_dir / "notebook.ipynb").read_text())
    assert executed["metadata"]["papermill"]["exception"] is None or not executed["metadata"]["papermill"]["exception"]
    assert {p.name for p in run_dir.iterdir()} == {
        "run.json",
        "params.json",
        "metrics.json",
        "contract.json",
        "baseline.json",
        "environment.txt",
        "notebook.ipynb",
        "model",
        "code",
    }
    assert json.loads((run_dir / "params.json").read_text()) == kernel.params
    assert json.loads((run_dir / "metrics.json").read_text()) == kernel.metrics
    assert kernel.model is not None and sha256_file(run_dir / kernel.model.file) == kernel.model.sha256
    assert kernel.model.format == "skops" and kernel.model.type.startswith("sklearn.")
    assert kernel.data == ()  # the examples make their data: no path parameters
    assert any(pin.startswith("scikit-learn==") for pin in kernel.pins) and kernel.timings.cells_s > 0
    assert len(kernel.contract.examples) == 5 and kernel.contract.kind == "dataframe"
    assert RunStore(store).problems(RunStore(store).load(kernel.run_id)) == []


def test_train_twice_diff_promote_predict_rollback(builds: dict[str, Path], tmp_path: Path):
    """The story of the issue: two runs, a diff, promote one, predict, promote the other, roll back."""
    store = tmp_path / "store"
    s = ["--store", str(store)]
    first = _train(builds["fraud"], store, "papermill", "-p", "max_depth", "3")
    second = _train(builds["fraud"], store, "papermill", "-p", "max_depth", "12")

    diff = cli("runs", "diff", first.run_id, second.run_id, *s, "--format", "json")
    assert diff.returncode == 0
    changes = json.loads(diff.stdout)
    assert changes["params"] == {"max_depth": {"a": 3, "b": 12}}
    assert "contents" in changes["model"] and changes["code"] == {} and changes["pins"] == {}

    rows = tmp_path / "transactions.jsonl"
    rows.write_text(
        '{"amount": 12.5, "hour": 14, "merchant_category": 0, "distance_from_home": 1.5, "card_present": 1, "velocity_1h": 0}\n'
        '{"amount": 2400.0, "hour": 3, "merchant_category": 8, "distance_from_home": 420.0, "card_present": 0, "velocity_1h": 6}\n'
        '{"amount": 80.0, "hour": 22, "merchant_category": 7, "distance_from_home": 35.0, "card_present": 0, "velocity_1h": 2}\n'
    )

    def predictions() -> list[float]:
        result = cli("predict", "production", str(rows), *s)
        assert result.returncode == 0, result.stderr
        return [json.loads(line) for line in result.stdout.splitlines()]

    assert cli("promote", first.run_id, *s).returncode == 0
    with_first = predictions()
    assert len(with_first) == 3 and with_first[1] > with_first[0]
    assert cli("promote", second.run_id, *s).returncode == 0
    with_second = predictions()
    assert with_second != with_first
    rolled = cli("rollback", *s)
    assert rolled.returncode == 0 and f"{second.run_id} -> {first.run_id}" in rolled.stdout
    assert predictions() == with_first

    no_hour = cli("predict", "production", "-", *s, stdin='{"amount": 3.0}\n')
    assert no_hour.returncode == 2
    assert "stdin: predict of run" in no_hour.stderr and "KeyError" in no_hour.stderr
    assert "predict was fed columns amount, hour, merchant_category" in no_hour.stderr

    listing = cli("runs", "list", *s)
    assert f"{first.run_id}  succeeded  papermill" in listing.stdout and "production" in listing.stdout
