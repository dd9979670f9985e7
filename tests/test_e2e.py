"""End to end, as a new user would: build the examples, install the generated packages into a
fresh virtual environment (dependencies from the package index), run their generated tests and
their train/predict commands there; and use nb2prod itself from a built wheel."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from nbtest_helpers import EXAMPLES, ROOT

from nb2prod import api

pytestmark = pytest.mark.e2e


def run(*args: str | Path, cwd: Path | None = None, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd, timeout=timeout)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("venv") / "env"
    run(sys.executable, "-m", "venv", folder)
    return folder


def test_examples_install_and_pass_their_generated_tests(venv: Path, tmp_path: Path) -> None:
    fraud = api.build(EXAMPLES / "fraud" / "fraud_detection.ipynb", output=tmp_path / "fraud").output_dir
    churn = api.build(EXAMPLES / "churn" / "churn.ipynb", output=tmp_path / "churn").output_dir
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "-q", f"{fraud}[test]", f"{churn}[test]")
    for folder, expected in ((fraud, 9), (churn, 6)):  # fraud: its explain cell has a contract test too
        result = run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=folder)
        assert f"{expected} passed" in result.stdout, result.stdout

    model = tmp_path / "model"
    trained = run(venv / "bin" / "fraud-detection-train", "--output", model, "--n_estimators", "20", "--seed", "3")
    summary = json.loads(trained.stdout)
    assert (model / "model.joblib").is_file() and summary["metrics"]["recall"] >= 0.5
    assert json.loads((model / "params.json").read_text())["n_estimators"] == 20

    inputs = tmp_path / "inputs.csv"
    rows = [
        {
            "amount": 12.5,
            "hour": 14,
            "merchant_category": 0,
            "distance_from_home": 1.5,
            "card_present": 1,
            "velocity_1h": 0,
        },
        {
            "amount": 2400.0,
            "hour": 3,
            "merchant_category": 8,
            "distance_from_home": 420.0,
            "card_present": 0,
            "velocity_1h": 6,
        },
    ]
    with inputs.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    predicted = run(venv / "bin" / "fraud-detection-predict", model, inputs)
    scores = [json.loads(line) for line in predicted.stdout.splitlines()]
    assert len(scores) == 2 and scores[1] > scores[0]

    (model / "model.joblib").write_bytes((model / "model.joblib").read_bytes() + b"x")
    refused = subprocess.run(
        [str(venv / "bin" / "fraud-detection-predict"), str(model), str(inputs)], capture_output=True, text=True
    )
    assert refused.returncode == 2 and "sha256" in refused.stderr


def test_nb2prod_wheel_carries_its_templates(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", dist, ROOT, timeout=1200)
    (wheel,) = dist.glob("nb2prod-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "nb2prod/templates/package/train.py.j2" in names
    env = tmp_path / "env"
    run(sys.executable, "-m", "venv", "--system-site-packages", env)
    run(env / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", wheel)
    where = run(env / "bin" / "python", "-c", "import nb2prod.resources as r; print(r.templates_dir())", cwd=tmp_path)
    assert str(env) in where.stdout
    out = tmp_path / "churn"
    run(env / "bin" / "python", "-m", "nb2prod", "build", EXAMPLES / "churn" / "churn.ipynb", "-o", out, cwd=tmp_path)
    assert (out / "src" / "churn" / "train.py").is_file()
