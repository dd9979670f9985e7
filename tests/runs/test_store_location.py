"""The one run-store rule (nb2prod/runs/location.py) and the commands that follow it.

Real folders, real notebooks, real pyproject.toml files and real `nb2prod` processes."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from nbtest_helpers import cell, write_notebook

from nb2prod import api
from nb2prod.commands.serve import resolve_store as serve_store
from nb2prod.errors import InputError
from nb2prod.runs.location import resolve_store

from .conftest import REPO, cli, write_ridge_project


def _notebook(folder: Path, metadata: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    cells = [cell("n = 3  # how many", "parameters"), cell("model = n * 2", "train")]
    return write_notebook(folder / "nb.ipynb", cells, {"nb2prod": metadata} if metadata else None)


def test_store_flag_wins_over_everything(tmp_path: Path) -> None:
    notebook = _notebook(tmp_path / "p", {"store": "mine"})
    found = resolve_store(tmp_path / "flag", notebook, cwd=tmp_path, environ={"NB2PROD_STORE": str(tmp_path / "env")})
    assert (found.path, found.source) == (tmp_path / "flag", "--store")
    assert found.describe() == f"store: {tmp_path / 'flag'} (from --store)"


def test_the_environment_comes_before_the_notebook_and_the_config(tmp_path: Path) -> None:
    notebook = _notebook(tmp_path / "p", {"store": "mine"})
    (tmp_path / "pyproject.toml").write_text('[tool.nb2prod]\nstore = "project-runs"\n')
    env = {"NB2PROD_STORE": str(tmp_path / "env")}
    for target in (notebook, None):
        found = resolve_store(None, target, cwd=tmp_path, environ=env)
        assert (found.path, found.source) == (tmp_path / "env", "NB2PROD_STORE")


def test_a_notebook_without_config_keeps_its_runs_beside_it(tmp_path: Path) -> None:
    notebook = _notebook(tmp_path / "project" / "nb")
    found = resolve_store(None, notebook, cwd=tmp_path, environ={})
    assert (found.path, found.source) == (notebook.parent / "runs", "notebook")


def test_a_notebooks_config_store_is_relative_to_where_it_is_set(tmp_path: Path) -> None:
    in_metadata = _notebook(tmp_path / "a", {"store": "../shared-runs"})
    found = resolve_store(None, in_metadata, cwd=tmp_path / "elsewhere", environ={})
    assert (found.path, found.source) == ((tmp_path / "shared-runs").resolve(), "config")

    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "pyproject.toml").write_text('[tool.nb2prod]\nstore = "runs"\n')
    in_pyproject = _notebook(tmp_path / "proj" / "notebooks" / "deep")
    found = resolve_store(None, in_pyproject, cwd=tmp_path, environ={})
    assert (found.path, found.source) == ((tmp_path / "proj" / "runs").resolve(), "config")


def test_a_build_folder_names_its_notebooks_store(tmp_path: Path) -> None:
    notebook = _notebook(tmp_path / "p", {"store": "kept"})
    build = Path(api.build(notebook, output=tmp_path / "out" / "nb").output_dir)
    found = resolve_store(None, build, cwd=tmp_path, environ={})
    assert (found.path, found.source) == ((tmp_path / "p" / "kept").resolve(), "config")
    notebook.unlink()  # the notebook is gone: runs/ beside the build, as train always did
    found = resolve_store(None, build, cwd=tmp_path, environ={})
    assert (found.path, found.source) == (build.parent / "runs", "notebook")


def test_without_a_notebook_the_nearest_pyproject_then_the_current_folder(tmp_path: Path) -> None:
    (tmp_path / "proj" / "sub").mkdir(parents=True)
    (tmp_path / "proj" / "pyproject.toml").write_text('[tool.nb2prod]\nstore = "all-runs"\n')
    found = resolve_store(None, None, cwd=tmp_path / "proj" / "sub", environ={})
    assert (found.path, found.source) == ((tmp_path / "proj" / "all-runs").resolve(), "config")
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "pyproject.toml").write_text('[project]\nname = "x"\n')
    found = resolve_store(None, None, cwd=tmp_path / "bare", environ={})
    assert (found.path, found.source) == (tmp_path / "bare" / "runs", "current folder")


def test_a_store_setting_of_the_wrong_type_names_its_place(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.nb2prod]\nstore = 3\n")
    with pytest.raises(InputError, match=r"pyproject.toml \[tool.nb2prod\]: store must be a string"):
        resolve_store(None, None, cwd=tmp_path, environ={})


def test_the_store_is_not_part_of_what_a_build_writes(tmp_path: Path) -> None:
    plain = Path(api.build(_notebook(tmp_path / "a"), output=tmp_path / "out-a").output_dir)
    stored = Path(api.build(_notebook(tmp_path / "b", {"store": "elsewhere"}), output=tmp_path / "out-b").output_dir)
    configs = [json.loads((out / "nb2prod.json").read_text())["config"] for out in (plain, stored)]
    assert "store" not in configs[1]
    assert configs[0] == configs[1]


def test_serve_takes_a_store_folder_as_is_and_otherwise_follows_the_rule(tmp_path: Path) -> None:
    store = tmp_path / "some-store"
    store.mkdir()
    assert serve_store(store, None) == store
    notebook = _notebook(tmp_path / "p")
    assert serve_store(notebook, None) == notebook.parent / "runs"
    assert serve_store(notebook, tmp_path / "flag") == tmp_path / "flag"


@pytest.fixture(scope="module")
def quick_start(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository laid out as nb2prod's own: its pyproject.toml [tool.nb2prod] section (the real
    one) at the root, a notebook under examples/."""
    root = tmp_path_factory.mktemp("quickstart")
    section = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["nb2prod"]
    lines = [f"{key} = {json.dumps(value)}" for key, value in section.items()]
    (root / "pyproject.toml").write_text("[tool.nb2prod]\n" + "\n".join(lines) + "\n")
    write_ridge_project(root / "examples" / "ridge")
    return root


def test_the_readme_quick_start_finds_the_runs_it_trained(quick_start: Path, tmp_path: Path) -> None:
    """Train from the repository root, then runs list, promote and predict from the same folder."""
    trained = cli("train", "examples/ridge/ridge.ipynb", "--engine", "python", "--format", "json", cwd=quick_start)
    assert trained.returncode == 0, trained.stderr
    store = (quick_start / "runs").resolve()
    assert f"store: {store} (from config)" in trained.stderr.splitlines()
    run = json.loads(trained.stdout)  # the store line is on stderr only: stdout stays JSON
    assert Path(run["path"]).parent == store

    listed = cli("runs", "list", "--format", "json", cwd=quick_start)
    assert listed.returncode == 0, listed.stderr
    assert f"store: {store} (from config)" in listed.stderr.splitlines()
    assert [r["run_id"] for r in json.loads(listed.stdout)] == [run["run_id"]]

    promoted = cli("promote", run["run_id"], cwd=quick_start)
    assert promoted.returncode == 0, promoted.stderr
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"x1": 0.5, "x2": 3}\n')
    predicted = cli("predict", "production", str(rows), cwd=quick_start)
    assert predicted.returncode == 0, predicted.stderr
    assert predicted.stdout.strip()
    assert f"store: {store} (from config)" in predicted.stderr.splitlines()

    quiet = cli("-q", "runs", "list", cwd=quick_start)
    assert quiet.returncode == 0 and "store:" not in quiet.stderr
    assert run["run_id"] in quiet.stdout


def test_without_config_train_and_runs_list_say_which_store_they_used(tmp_path: Path) -> None:
    notebook = write_ridge_project(tmp_path / "examples" / "ridge")
    trained = cli("train", str(notebook.relative_to(tmp_path)), "--engine", "python", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert "store: examples/ridge/runs (from notebook)" in trained.stderr.splitlines()
    listed = cli("runs", "list", cwd=tmp_path)
    assert "store: runs (from current folder)" in listed.stderr.splitlines()
    assert listed.returncode == 0 and listed.stdout.startswith(f"no runs in {tmp_path / 'runs'} (")
    assert "use --store examples/ridge/runs" in listed.stdout  # where train put them
    by_flag = cli("runs", "list", "--store", "examples/ridge/runs", "--format", "json", cwd=tmp_path)
    assert "store: examples/ridge/runs (from --store)" in by_flag.stderr.splitlines()
    assert len(json.loads(by_flag.stdout)) == 1
