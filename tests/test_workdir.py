"""One working-directory rule everywhere: the notebook's folder, or the data folder the user names
(config `data_dir`, `--data-dir`), for `nb2prod train`, the generated tests and `NAME-train`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from nbtest_helpers import cell, write_notebook

from nb2prod import api
from nb2prod.errors import InputError

CELLS = [
    cell('data_path = "data/points.csv"  # the points, relative to the working directory', "parameters"),
    cell("import pandas as pd", "export"),
    cell('df = pd.read_csv(data_path)\nmodel = float(df["x"].mean())', "train"),
    cell('metrics = {"mean": model}', "metrics"),
    cell('assert len(pd.read_csv("data/points.csv")) == 3', "test"),
]


def _project(root: Path, values=(1.0, 2.0, 3.0), **config) -> Path:
    (root / "data").mkdir(parents=True)
    (root / "data" / "points.csv").write_text("x\n" + "\n".join(str(v) for v in values) + "\n")
    return write_notebook(root / "points.ipynb", [dict(c) for c in CELLS], {"nb2prod": config} if config else None)


def _env(build: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NB2PROD_DATA_DIR"}
    env["PYTHONPATH"] = os.pathsep.join([str(build / "src"), env.get("PYTHONPATH", "")])
    return env


def test_generated_tests_run_in_the_notebooks_folder_as_the_readme_says(tmp_path: Path):
    build = Path(api.build(_project(tmp_path / "project")).output_dir)
    assert json.loads((build / "nb2prod.json").read_text())["workdir"] == "../.."
    # the generated README: `pytest` in the build folder
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=build,
        env=_env(build),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "passed" in done.stdout and "FileNotFoundError" not in done.stdout


def test_name_train_resolves_data_against_the_notebooks_folder_from_anywhere(tmp_path: Path):
    build = Path(api.build(_project(tmp_path / "project")).output_dir)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "points.train", "--output", "out"],
        cwd=elsewhere,
        env=_env(build),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((elsewhere / "out" / "metrics.json").read_text()) == {"mean": 2.0}  # output: where it ran
    other = tmp_path / "other"
    (other / "data").mkdir(parents=True)
    (other / "data" / "points.csv").write_text("x\n10\n20\n30\n")
    done = subprocess.run(
        [sys.executable, "-m", "points.train", "--output", "out2", "--data-dir", str(other)],
        cwd=elsewhere,
        env=_env(build),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((elsewhere / "out2" / "metrics.json").read_text()) == {"mean": 20.0}
    missing = subprocess.run(
        [sys.executable, "-m", "points.train", "--data-dir", str(tmp_path / "nowhere")],
        cwd=elsewhere,
        env=_env(build),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert missing.returncode == 2 and "is not a folder" in missing.stderr


def test_config_data_dir_moves_the_working_directory_of_every_job(tmp_path: Path):
    project = tmp_path / "project"
    notebook = _project(project, data_dir="shared")
    (project / "shared" / "data").mkdir(parents=True)
    (project / "shared" / "data" / "points.csv").write_text("x\n4\n5\n6\n")
    build = Path(api.build(notebook).output_dir)
    assert json.loads((build / "nb2prod.json").read_text())["workdir"] == "../../shared"
    done = subprocess.run(
        [sys.executable, "-m", "nb2prod", "train", str(notebook), "--engine", "python", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["metrics"] == {"mean": 5.0}


def test_a_data_dir_that_is_not_a_folder_names_its_place(tmp_path: Path):
    notebook = _project(tmp_path / "project", data_dir="missing")
    with pytest.raises(InputError, match=r"points.ipynb metadata.nb2prod: data_dir .* is not a folder"):
        api.build(notebook)
