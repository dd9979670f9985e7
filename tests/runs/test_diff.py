"""`runs diff` compares models by what they hold, not by how their archives were written."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import skops.io as sio
from sklearn.linear_model import LinearRegression

from nb2prod import api
from nb2prod.runs.diff import model_content_digest

from .conftest import cli, write_ridge_project


def _rewrite_with_time(path: Path, target: Path, date_time: tuple[int, ...]) -> None:
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(zipfile.ZipInfo(info.filename, date_time=date_time), src.read(info))


def test_equal_models_have_equal_content_digests_whatever_the_archive(tmp_path: Path):
    X = np.arange(12, dtype=float).reshape(6, 2)
    sio.dump(LinearRegression().fit(X, X @ [1.0, 2.0]), tmp_path / "a.skops")
    sio.dump(LinearRegression().fit(X, X @ [1.0, 2.0]), tmp_path / "b0.skops")
    _rewrite_with_time(tmp_path / "b0.skops", tmp_path / "b.skops", (2001, 2, 3, 4, 5, 6))
    sio.dump(LinearRegression().fit(X, X @ [1.0, 3.0]), tmp_path / "c.skops")
    a, b, c = (tmp_path / f"{n}.skops" for n in "abc")
    assert a.read_bytes() != b.read_bytes()
    assert model_content_digest(a, "skops") == model_content_digest(b, "skops")
    assert model_content_digest(a, "skops") != model_content_digest(c, "skops")


def test_runs_diff_reports_no_model_change_for_two_equal_trainings(tmp_path: Path):
    notebook = write_ridge_project(tmp_path / "project")
    api.build(notebook)
    runs = []
    for _ in range(2):
        done = cli("train", str(notebook), "--engine", "python", "--format", "json")
        assert done.returncode == 0, done.stderr
        runs.append(json.loads(done.stdout))
    store = str(tmp_path / "project" / "runs")
    diff = cli("runs", "diff", runs[0]["run_id"], runs[1]["run_id"], "--store", store, "--format", "json")
    assert diff.returncode == 0, diff.stderr
    assert json.loads(diff.stdout)["model"] == {}
    assert "model:" not in cli("runs", "diff", runs[0]["run_id"], runs[1]["run_id"], "--store", store).stdout
