"""Fixtures for the run store tests: real models recorded through the store's own API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from nb2prod.runs.artifacts import save_model
from nb2prod.runs.contract import describe_data
from nb2prod.runs.ids import utc_now_iso
from nb2prod.runs.manifest import CellRef, Failure, RunManifest, Source, Timings, SUCCEEDED
from nb2prod.runs.store import RunStore, StoredRun, file_digests, write_json


def small_data(seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.normal(size=60), "b": rng.integers(0, 5, 60)})
    y = pd.Series((X["a"] + 0.3 * X["b"] > 0.5).astype(int), name="label")
    return X, y


def record_run(
    store: RunStore,
    status: str = SUCCEEDED,
    params: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    C: float = 1.0,
) -> StoredRun:
    """Fit a logistic regression and record it as a run with the given status."""
    X, y = small_data()
    model = LogisticRegression(C=C).fit(X, y)
    run_id, folder = store.staging_dir()
    artifact = save_model(model, folder, "model", probe=X)
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
