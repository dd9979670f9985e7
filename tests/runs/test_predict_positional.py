"""Predict input for a model fitted on a bare array: positional rows (a JSON array per row, a CSV
whose column count matches, with or without a header), and an error that says what is expected."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from nbtest_helpers import cell, write_notebook

from nb2prod.runs.predicting import positional_rows, read_rows
from nb2prod.runs.record import Contract, Feature

ARRAY = Contract("X", "ndarray", tuple(Feature(f"x{i}", "float64") for i in range(3)), 50)


def nb2prod(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nb2prod", *args], capture_output=True, text=True, timeout=600)


def test_json_arrays_and_headerless_csv_are_positional_rows(tmp_path: Path):
    (tmp_path / "rows.jsonl").write_text("[1, 0, 0]\n[0, 1.5, 0]\n")
    assert read_rows(tmp_path / "rows.jsonl") == [[1, 0, 0], [0, 1.5, 0]]
    (tmp_path / "bare.csv").write_text("1,0,0\n0,1.5,0\n")
    assert read_rows(tmp_path / "bare.csv") == [[1, 0, 0], [0, 1.5, 0]]
    (tmp_path / "named.csv").write_text("a,b,c\n1,0,0\n")
    assert read_rows(tmp_path / "named.csv") == [{"a": 1, "b": 0, "c": 0}]
    assert positional_rows([[1, 0, 0], {"a": 1, "b": 2, "c": 3}], ARRAY) == [
        {"x0": 1, "x1": 0, "x2": 0},
        {"x0": 1, "x1": 2, "x2": 3},
    ]
    with pytest.raises(ValueError, match=r"row 2 has 2 values; the model was fitted on 3 values a row \(x0, x1, x2\)"):
        positional_rows([[1, 0, 0], [1, 2]], ARRAY)
    (tmp_path / "scalar.jsonl").write_text("3\n")
    with pytest.raises(Exception, match="JSON array of the values in column order"):
        read_rows(tmp_path / "scalar.jsonl")


@pytest.fixture(scope="module")
def array_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("array")
    notebook = write_notebook(
        folder / "array.ipynb",
        [
            cell("n = 50  # rows", "parameters"),
            cell("import numpy as np", "export"),
            cell(
                "from sklearn.linear_model import LinearRegression\n\n"
                "rng = np.random.default_rng(0)\n"
                "X = rng.normal(size=(n, 3))\n"
                "y = X @ np.array([1.0, 2.0, 3.0])\n"
                "model = LinearRegression().fit(X, y)",
                "train",
            ),
            cell('metrics = {"r2": float(model.score(X, y))}', "metrics"),
        ],
    )
    store = folder / "runs"
    done = nb2prod("train", str(notebook), "--engine", "python", "--store", str(store), "--format", "json")
    assert done.returncode == 0, done.stderr
    return store, json.loads(done.stdout)["run_id"]


@pytest.mark.parametrize(
    "name, text",
    [
        ("rows.jsonl", "[1, 0, 0]\n[0, 1, 0]\n"),
        ("bare.csv", "1,0,0\n0,1,0\n"),
        ("named.csv", "a,b,c\n1,0,0\n0,1,0\n"),
        ("named.jsonl", '{"x0": 1, "x1": 0, "x2": 0}\n{"x0": 0, "x1": 1, "x2": 0}\n'),
    ],
)
def test_predict_accepts_positional_rows_for_an_array_model(array_run, tmp_path: Path, name: str, text: str):
    store, run_id = array_run
    (tmp_path / name).write_text(text)
    done = nb2prod("predict", run_id, str(tmp_path / name), "--store", str(store))
    assert done.returncode == 0, done.stderr
    assert [round(json.loads(line), 6) for line in done.stdout.splitlines()] == [1.0, 2.0]


def test_a_row_of_the_wrong_length_says_what_is_expected(array_run, tmp_path: Path):
    store, run_id = array_run
    (tmp_path / "short.jsonl").write_text("[1, 0]\n")
    done = nb2prod("predict", run_id, str(tmp_path / "short.jsonl"), "--store", str(store))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "row 1 has 2 values; the model was fitted on 3 values a row (x0, x1, x2)" in done.stderr
    assert "JSON array of 3 numbers" in done.stderr
