"""Every run records the build's quality gates in run.json, thresholds resolved to its own
parameters, with either engine."""

from __future__ import annotations

from pathlib import Path

import pytest
from nbtest_helpers import cell, write_notebook

from nb2prod import api
from nb2prod.runs.store import RunStore
from nb2prod.runs.trainer import train_target


@pytest.mark.parametrize("engine", ["python", "papermill"])
def test_run_json_holds_the_gates_with_the_run_parameter_values(tmp_path: Path, engine: str) -> None:
    notebook = write_notebook(
        tmp_path / "gated.ipynb",
        [
            cell("threshold = 0.5  # quality gate: smallest score\nvalue = 3", "parameters"),
            cell("import pickle\nmodel = {'scale': value * 2}", "train"),
            cell(
                'metrics = {"score": model["scale"] / 10}\n'
                'assert metrics["score"] >= threshold\n'
                'assert metrics["score"] < 10',
                "metrics",
            ),
        ],
    )
    build = Path(api.build(notebook).output_dir)
    run = train_target(build, [("threshold", "0.25")], engine=engine, store=tmp_path / "runs")
    assert run.manifest.succeeded, run.manifest.failure
    recorded = RunStore(tmp_path / "runs").get(run.run_id).manifest.gates
    assert [dict(g) for g in recorded] == [
        {"metric": "score", "op": ">=", "value": 0.25, "parameter": "threshold", "cell": 2, "line": 2},
        {"metric": "score", "op": "<", "value": 10.0, "cell": 2, "line": 3},
    ]
