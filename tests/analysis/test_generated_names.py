"""Names a notebook cannot use because the generated code needs them: refused with the place and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from nbtest_helpers import cell, write_notebook

from nb2prod import api
from nb2prod.errors import NotebookErrors


def job_cells(parameter: str = "n") -> list[dict]:
    return [
        cell(f"{parameter} = 3  # a parameter", "parameters"),
        cell(f"model = {parameter} * 2", "train"),
        cell('metrics = {"m": model}', "metrics"),
    ]


@pytest.mark.parametrize("name", ["schema", "to_dict", "from_dict"])
def test_a_parameter_named_after_a_params_method_is_refused(tmp_path: Path, name: str) -> None:
    notebook = write_notebook(tmp_path / "job.ipynb", job_cells(name))
    with pytest.raises(NotebookErrors) as info:
        api.build(notebook, output=tmp_path / "out")
    [error] = [f for f in info.value.findings if f.severity == "error"]
    assert error.location.cell_index == 0 and error.location.line == 1
    assert f"Params.{name}" in error.message and f"{name}_value" in error.message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("stem", ["pandas", "nb2prod", "scikit-learn"])
def test_a_notebook_named_after_an_importable_module_is_refused(tmp_path: Path, stem: str) -> None:
    notebook = write_notebook(tmp_path / f"{stem}.ipynb", job_cells())
    with pytest.raises(NotebookErrors) as info:
        api.build(notebook, output=tmp_path / "out")
    [error] = [f for f in info.value.findings if f.severity == "error"]
    assert error.code == "package-name-taken"
    assert f"'{stem.replace('-', '_')}'" in error.message or f"'{stem}'" in error.message
    assert f"{stem}.ipynb" in error.message
    assert "name" in error.fix and f"{stem}-model" in error.fix
    assert not (tmp_path / "out").exists()


def test_a_configured_name_frees_the_notebook_name(tmp_path: Path) -> None:
    notebook = write_notebook(tmp_path / "pandas.ipynb", job_cells(), {"nb2prod": {"name": "pandas-job"}})
    result = api.build(notebook, output=tmp_path / "out")
    assert result.package == "pandas_job"


def test_a_configured_name_that_hides_a_module_is_refused_as_configured(tmp_path: Path) -> None:
    notebook = write_notebook(tmp_path / "fine.ipynb", job_cells(), {"nb2prod": {"name": "numpy"}})
    with pytest.raises(
        NotebookErrors, match="configured `name`.*'numpy', a module of the installed distribution 'numpy'"
    ):
        api.build(notebook, output=tmp_path / "out")


def test_a_notebook_named_after_a_standard_module_gets_a_suffixed_package(tmp_path: Path) -> None:
    notebook = write_notebook(tmp_path / "json.ipynb", job_cells())
    assert api.build(notebook, output=tmp_path / "out").package == "json_pkg"
