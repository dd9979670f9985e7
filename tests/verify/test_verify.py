"""`nb2prod verify` end to end: real papermill kernels for the notebook, a real virtual environment
made from requirements.lock for the package (cached by the lock's hash, shared by these tests)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from nbtest_helpers import EXAMPLES, cell, write_notebook

from nb2prod.verify import verify

# numpy, pandas and scikit-learn, like the examples: one clean environment serves every test
TRAIN = (
    "from sklearn.linear_model import LinearRegression\n\n"
    "rng = np.random.default_rng(0)\n"
    'X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})\n'
    'y = 3 * X["a"] - X["b"] + rng.normal(scale=0.1, size=n)\n'
)
METRICS = 'metrics = {"r2": float(model.score(X, y))}'


def nb2prod(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nb2prod", *args], capture_output=True, text=True, cwd=cwd, timeout=1800
    )


def _project(tmp_path: Path, cells: list[dict], **config) -> Path:
    metadata = {"nb2prod": {"example_inputs": "X", **config}}
    return write_notebook(tmp_path / "fit.ipynb", cells, metadata)


def _cells(*middle: dict, train_tail: str = "model = LinearRegression()\nmodel.fit(X, y)") -> list[dict]:
    return [
        cell("n = 60  # rows of data", "parameters"),
        cell("import numpy as np\nimport pandas as pd", "export"),
        cell(TRAIN + train_tail, "train", cell_id="train"),
        *middle,
        cell(METRICS, "metrics", cell_id="metrics"),
    ]


@pytest.mark.parametrize("example", ["churn/churn.ipynb", "fraud/fraud_detection.ipynb"])
def test_both_examples_verify(tmp_path: Path, example: str):
    source = EXAMPLES / example
    shutil.copytree(source.parent, tmp_path / source.parent.name)
    done = nb2prod("verify", str(tmp_path / example), "--format", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["ok"] and result["differences"] == []
    assert result["metrics"]["notebook"] == result["metrics"]["job"] and result["metrics"]["job"]
    assert "predictions" in result["compared"] and "example inputs" in result["compared"]
    assert Path(result["workdir"]) == (tmp_path / source.parent.name).resolve()


def test_an_untagged_fit_is_caught_even_when_the_static_check_is_allowed(tmp_path: Path):
    """Defect 2 with `allow = ["untagged-mutation"]`: the build goes through, verify does not."""
    notebook = _project(
        tmp_path,
        _cells(cell("model.fit(X, y)", cell_id="fit"), train_tail="model = LinearRegression()"),
        allow=["untagged-mutation"],
    )
    result = verify(notebook)
    assert not result.agree
    text = result.render()
    assert "the package differs from the notebook" in text and "NotFittedError" in text
    assert "fit.ipynb: cell 4 (id fit, untagged), line 1 changes `model`" in text
    assert "tag it `train`" in text
    (difference,) = result.differences
    assert difference.what == "job error" and difference.job == "NotFittedError"
    assert [(s.cell, s.name, s.how, s.in_job) for s in difference.suspects] == [(3, "model", "changes", False)]


def test_a_metric_within_its_tolerance_agrees_and_outside_it_differs(tmp_path: Path):
    nudge = cell('y += 1e-7 * X["a"]', cell_id="nudge")  # the notebook scores on slightly other labels
    notebook = _project(tmp_path, _cells(nudge), allow=["untagged-mutation"])
    strict = nb2prod("verify", str(notebook), "--format", "json")
    assert strict.returncode == 1, strict.stdout + strict.stderr
    result = json.loads(strict.stdout)
    (difference,) = result["differences"]
    assert difference["what"] == "metric" and difference["name"] == "r2"
    assert difference["notebook"] != difference["job"]
    assert [(s["cell"], s["name"], s["how"]) for s in difference["suspects"]] == [(3, "y", "changes")]
    assert "predictions" in result["compared"]  # the models agree: only the metric moved
    loose = nb2prod("verify", str(notebook), "--tolerance", "r2=1e-3")
    assert loose.returncode == 0, loose.stdout + loose.stderr
    assert "the package computes what the notebook computes" in loose.stdout
    assert "clean environment" in loose.stdout and "(cached)" in loose.stdout


def test_a_requirement_the_lock_lacks_fails_in_the_clean_environment(tmp_path: Path):
    """pandas reads CSV with pyarrow only when asked: nothing imports it, so the lock lacks it."""
    (tmp_path / "points.csv").write_text("a,b\n1,2\n3,4\n5,7\n")
    train = 'X = pd.read_csv("points.csv", engine="pyarrow")\ny = X["b"]\nmodel = LinearRegression().fit(X, y)'
    notebook = _project(tmp_path, _cells(train_tail=train))
    result = verify(notebook)
    (difference,) = result.differences
    assert difference.what == "job error" and difference.job == "ImportError"
    assert "pyarrow" in difference.detail and "add it to `requirements`" in difference.detail
    assert result.metrics_notebook is not None and result.metrics_job is None


@pytest.mark.parametrize(
    "source, what",
    [
        ('from sklearn.datasets import fetch_openml\nX, y = fetch_openml("iris", return_X_y=True)', "fetch_openml()"),
        ("!wget https://example.org/data.csv", "wget"),
        ('import urllib.request\nurllib.request.urlretrieve("https://example.org/x.csv", "x.csv")', "urllib.request"),
        ('import pandas as pd\ndf = pd.read_csv("https://example.org/x.csv")', "network address"),
        ('device = "cuda"', "GPU"),
    ],
)
def test_cells_that_download_or_need_a_gpu_are_refused_before_anything_runs(tmp_path: Path, source: str, what: str):
    notebook = _project(tmp_path, _cells(cell(source, cell_id="load")))
    done = nb2prod("verify", str(notebook))
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("error: fit.ipynb: cell 4 (id load, untagged), line ")
    assert what in done.stderr and "tag the cell `skip`" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "build").exists()  # refused before building or running anything


def test_skip_cells_are_left_out_of_the_run(tmp_path: Path):
    from nb2prod.notebook import read_notebook
    from nb2prod.verify.cells import notebook_cells

    notebook = _project(tmp_path, _cells(cell("!wget https://example.org/data.csv", "skip", cell_id="load")))
    assert [c.id for c in notebook_cells(read_notebook(notebook))] == ["c0", "c1", "train", "metrics"]


def test_a_notebook_that_fails_on_its_own_names_the_cell(tmp_path: Path):
    notebook = _project(tmp_path, _cells(cell("raise RuntimeError('stale cell')", cell_id="broken")))
    done = nb2prod("verify", str(notebook))
    assert done.returncode == 2
    assert done.stderr.startswith("error: fit.ipynb: cell 4 (id broken, untagged): the notebook itself fails here")
    assert "RuntimeError: stale cell" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("value", ["r2", "r2=-1", "=1", "r2=many"])
def test_a_bad_tolerance_is_a_usage_error(tmp_path: Path, value: str):
    notebook = _project(tmp_path, _cells())
    done = nb2prod("verify", str(notebook), "--tolerance", value)
    assert done.returncode == 2 and "--tolerance" in done.stderr and "METRIC=NUMBER" in done.stderr
