"""Fixtures for batch scoring and sweeps: the fraud example trained for real, raw transactions to
score, and real engines (a Dask LocalCluster of 2 worker processes, Spark local[2])."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nb2prod import api
from nb2prod.runs.store import RunStore

REPO = Path(__file__).resolve().parents[2]
# small, fast settings; the gates keep their defaults (the sweep test relies on them)
FRAUD_SETTINGS = ["-p", "n_transactions", "4000", "-p", "n_estimators", "10"]
RAW_COLUMNS = ["amount", "hour", "merchant_category", "distance_from_home", "card_present", "velocity_1h"]


def cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`nb2prod ARGS` in a subprocess, as a user runs it (stdin closed, so no progress bar)."""
    return subprocess.run(
        [sys.executable, "-m", "nb2prod", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def transactions(n: int, seed: int = 7) -> pd.DataFrame:
    """Raw transactions as the payment system sends them, with an id column `txn_id`."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "txn_id": np.arange(10_000, 10_000 + n, dtype="int64"),
            "amount": rng.lognormal(3.6, 1.1, n).round(2),
            "hour": rng.integers(0, 24, n),
            "merchant_category": rng.integers(0, 10, n),
            "distance_from_home": rng.exponential(12.0, n).round(1),
            "card_present": rng.integers(0, 2, n),
            "velocity_1h": rng.poisson(1.0, n),
        }
    )


@pytest.fixture(scope="session")
def fraud(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | str]:
    """The fraud example built and trained once (python engine), its run promoted to production."""
    root = tmp_path_factory.mktemp("fraud")
    notebook = root / "fraud_detection.ipynb"
    notebook.write_bytes((REPO / "examples" / "fraud" / "fraud_detection.ipynb").read_bytes())
    build = Path(api.build(notebook).output_dir)
    store = root / "runs"
    trained = cli("train", str(build), "--engine", "python", "--store", str(store), "--format", "json", *FRAUD_SETTINGS)
    assert trained.returncode == 0, trained.stderr
    run_id = json.loads(trained.stdout)["run_id"]
    promoted = cli("promote", run_id, "--store", str(store))
    assert promoted.returncode == 0, promoted.stderr
    return {"root": root, "notebook": notebook, "build": build, "store": store, "run_id": run_id}


@pytest.fixture(scope="session")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same 12,000 transactions as parquet, a folder of parquet parts, CSV and JSON lines."""
    root = tmp_path_factory.mktemp("inputs")
    frame = transactions(12_000)
    frame.to_parquet(root / "txns.parquet", index=False)
    frame.to_csv(root / "txns.csv", index=False)
    frame.to_json(root / "txns.jsonl", orient="records", lines=True)
    parts = root / "parts"
    parts.mkdir()
    for i, start in enumerate(range(0, len(frame), 5_000)):
        frame.iloc[start : start + 5_000].to_parquet(parts / f"part-{i}.parquet", index=False)
    return {"parquet": root / "txns.parquet", "csv": root / "txns.csv", "jsonl": root / "txns.jsonl", "parts": parts}


@pytest.fixture(scope="session")
def expected(fraud: dict[str, Path | str]) -> list[float]:
    """What the run's own predict says in this process for every row of `data`, via nb2prod predict's library call."""
    from nb2prod.runs.predicting import predict_rows

    rows = transactions(12_000)[RAW_COLUMNS].to_dict(orient="records")
    return predict_rows(RunStore(fraud["store"]), "production", rows)


@pytest.fixture(scope="session")
def dask_cluster():
    """A real Dask scheduler with 2 worker processes on 127.0.0.1, for the whole session."""
    import logging

    from distributed import LocalCluster

    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    yield cluster
    cluster.close()


@pytest.fixture(scope="session")
def spark():
    """One Spark local[2] session for every Spark test (it takes 20-40 s to start)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("nb2prod-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def read_scores(folder: Path) -> pd.DataFrame:
    """An output folder's parts, in part order."""
    parts = sorted(folder.glob("part-*.parquet"))
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
