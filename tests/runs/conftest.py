"""Fixtures for the run store tests: real models recorded through the store's own API."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from nb2prod.runs.artifacts import save_model
from nb2prod.runs.contract import describe_data
from nb2prod.runs.ids import utc_now_iso
from nb2prod.runs.record import SUCCEEDED, CellRef, Failure, RunManifest, Source, Timings
from nb2prod.runs.store import RunStore, StoredRun, file_digests, write_json


def small_data(seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.normal(size=60), "b": rng.integers(0, 5, 60)})
    y = pd.Series((X["a"] + 0.3 * X["b"] > 0.5).astype(int), name="label")
    return X, y


DEMO_PREDICT = "def predict(model, inputs):\n    return list(model.predict(inputs))\n"


def write_code_snapshot(folder: Path, predict_source: str = DEMO_PREDICT) -> None:
    """A run's `code/` as training writes it: the package `demo` (src layout) and its nb2prod.json."""
    package = folder / "code" / "src" / "demo"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "core.py").write_text("OFFSET = 0\n")
    (package / "predict.py").write_text(predict_source)
    (folder / "code" / "nb2prod.json").write_text('{"cells": []}\n')


def record_run(
    store: RunStore,
    status: str = SUCCEEDED,
    params: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    C: float = 1.0,
    with_code: bool = False,
    model_format: str = "auto",
) -> StoredRun:
    """Fit a logistic regression and record it as a run with the given status.

    `with_code`: also write the package snapshot, so that `load_run` can predict with the run."""
    X, y = small_data()
    model = LogisticRegression(C=C).fit(X, y)
    run_id, folder = store.staging_dir()
    artifact = save_model(model, folder, "model", probe=X, fmt=model_format)
    if with_code:
        write_code_snapshot(folder)
    contract = describe_data(X, "X")
    params = params if params is not None else {"C": C}
    metrics = metrics if metrics is not None else {"accuracy": float(model.score(X, y))}
    write_json(folder / "params.json", params)
    write_json(folder / "metrics.json", metrics)
    now = utc_now_iso()
    failure = None
    if status != SUCCEEDED:
        failure = Failure("AssertionError", "accuracy below gate", CellRef(job_cell=3, role="metrics"))
    manifest = RunManifest(
        run_id=run_id,
        status=status,
        engine="python",
        source=Source("demo", "demo", "build/demo", "demo.ipynb", "0" * 64, "1" * 64, "0.1.0"),
        params=params,
        overrides=(),
        metrics=metrics,
        model=artifact,
        data=(),
        git=None,
        python="3.11",
        platform="linux",
        pins=("numpy==2.0",),
        timings=Timings(now, now, 0.0, 0.0, 0.0),
        contract=contract,
        failure=failure,
        user="tester@host",
        host="host",
        files=file_digests(folder),
    )
    return store.commit(folder, manifest)


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    return RunStore(tmp_path / "runs")


REPO = Path(__file__).resolve().parents[2]


def cli(*args: str, cwd: Path | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`nb2prod ARGS` in a subprocess, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "nb2prod", *args], capture_output=True, text=True, cwd=cwd, input=stdin, timeout=600
    )


RIDGE_CELLS = (
    (
        "params",
        "parameters",
        'data_path = "data/points.csv"  # CSV with the feature columns and the label\n'
        "n_rows = 200  # rows of the data to train on\n"
        "alpha = 1.0  # ridge regularisation strength\n"
        "fit_intercept = True  # fit an intercept\n"
        'label = "y"  # target column\n'
        'features = ["x1", "x2"]  # columns used as features\n'
        "min_r2 = 0.5  # quality gate: R^2 on the training data",
    ),
    ("imports", "export", "import pandas as pd"),
    (
        "train",
        "train",
        "from sklearn.linear_model import Ridge\n\n"
        "df = pd.read_csv(data_path).head(n_rows)\n"
        "X = df[features]\n"
        "model = Ridge(alpha=alpha, fit_intercept=fit_intercept)\n"
        "model.fit(X, df[label])",
    ),
    (
        "metrics",
        "metrics",
        "metrics = {\n"
        '    "r2": float(model.score(X, df[label])),\n'
        '    "n_features": len(features),\n'
        '    "intercept": float(model.intercept_),\n'
        '    "n_rows": len(df),\n'
        "}\n"
        'assert metrics["r2"] >= min_r2, "R^2 below gate"',
    ),
)


def write_ridge_project(folder: Path) -> Path:
    """A small tagged notebook reading a CSV (a path parameter), in a git repository; returns the notebook."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    folder.mkdir(parents=True, exist_ok=True)
    nb = new_notebook()
    nb.nbformat_minor = 5
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    for cell_id, tag, source in RIDGE_CELLS:
        cell = new_code_cell(source)
        cell["id"] = cell_id
        cell.metadata["tags"] = [tag]
        nb.cells.append(cell)
    notebook = folder / "ridge.ipynb"
    notebook.write_text(nbformat.writes(nb))
    rng = np.random.default_rng(0)
    x1 = rng.normal(size=200).round(4)
    x2 = rng.integers(0, 10, 200)
    y = (2 * x1 - 0.5 * x2 + rng.normal(scale=0.3, size=200)).round(4)
    (folder / "data").mkdir(exist_ok=True)
    pd.DataFrame({"x1": x1, "x2": x2, "y": y}).to_csv(folder / "data" / "points.csv", index=False)
    (folder / ".gitignore").write_text("build/\nruns/\n")
    git = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=folder, check=True)
    subprocess.run([*git, "add", "."], cwd=folder, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "ridge"], cwd=folder, check=True)
    return notebook


def copy_example(name: str, target: Path) -> Path:
    """Copy examples/NAME (the notebook only) into `target`; returns the notebook path."""
    source = REPO / "examples" / name
    target.mkdir(parents=True, exist_ok=True)
    for notebook in source.glob("*.ipynb"):
        shutil.copy2(notebook, target / notebook.name)
    return next(target.glob("*.ipynb"))
