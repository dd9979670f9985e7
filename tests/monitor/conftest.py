"""A fraud-example run (small, python engine) shared by the monitoring tests, and data made by the
example's own generator: fresh samples of the training distribution, and shifted ones."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FAST = ["-p", "n_transactions", "8000", "-p", "n_estimators", "20", "-p", "min_recall", "0", "-p", "min_precision", "0"]


def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nb2prod", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=900
    )


@pytest.fixture(scope="session")
def fraud_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | str]:
    root = tmp_path_factory.mktemp("monitor")
    notebook = root / "fraud_detection.ipynb"
    notebook.write_bytes((REPO / "examples" / "fraud" / "fraud_detection.ipynb").read_bytes())
    store = root / "runs"
    trained = cli("train", str(notebook), "--engine", "python", "--store", str(store), *FAST)
    assert trained.returncode == 0, trained.stderr
    (run_id,) = [p.name for p in store.iterdir() if p.name[0].isdigit()]
    return {"root": root, "store": store, "run": run_id, "src": root / "build" / "fraud-detection" / "src"}


@pytest.fixture(scope="session")
def transactions(fraud_run: dict[str, Path | str]):
    """`make_transactions(n, fraud_rate, seed)` of the built package (the notebook's generator)."""
    sys.path.insert(0, str(fraud_run["src"]))
    try:
        from fraud_detection.core import RAW_COLUMNS, make_transactions
    finally:
        sys.path.remove(str(fraud_run["src"]))

    def make(n: int, seed: int, fraud_rate: float = 0.02):
        return make_transactions(n, fraud_rate, seed)[RAW_COLUMNS]

    return make


@pytest.fixture(scope="session")
def churn_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | str]:
    """The churn example (`#|` directives, logistic regression) trained at its defaults."""
    root = tmp_path_factory.mktemp("monitor-churn")
    notebook = root / "churn.ipynb"
    notebook.write_bytes((REPO / "examples" / "churn" / "churn.ipynb").read_bytes())
    store = root / "runs"
    trained = cli("train", str(notebook), "--engine", "python", "--store", str(store))
    assert trained.returncode == 0, trained.stderr
    (run_id,) = [p.name for p in store.iterdir() if p.name[0].isdigit()]
    return {"root": root, "store": store, "run": run_id, "src": root / "build" / "churn" / "src"}


@pytest.fixture(scope="session")
def customers(churn_run: dict[str, Path | str]):
    """`make_customers(n, seed)` of the built churn package (the notebook's generator), raw columns."""
    sys.path.insert(0, str(churn_run["src"]))
    try:
        from churn.core import make_customers
    finally:
        sys.path.remove(str(churn_run["src"]))

    def make(n: int, seed: int):
        return make_customers(n, seed)

    return make
