"""Requirements: hidden dependencies, pinned configured requirements, the distribution cache."""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

import pytest
from nbtest_helpers import cell, write_notebook

from nb2prod import api
from nb2prod.analysis import requirements as reqs
from nb2prod.errors import NotebookErrors


def _inspect(tmp_path: Path, train: str, **config) -> dict[str, str]:
    notebook = write_notebook(
        tmp_path / "hidden.ipynb",
        [cell(train, "train"), cell('metrics = {"n": 1}', "metrics")],
        {"nb2prod": config} if config else None,
    )
    return {re.split(r"[=<>!~]", spec)[0]: spec for spec in api.inspect(notebook).requirements}


def test_pandas_behind_as_frame_is_a_pinned_requirement(tmp_path: Path):
    found = _inspect(
        tmp_path,
        "from sklearn.datasets import load_iris\n\nX, y = load_iris(return_X_y=True, as_frame=True)\nmodel = 1",
    )
    assert found["pandas"] == f"pandas=={metadata.version('pandas')}"
    assert found["scikit-learn"] == f"scikit-learn=={metadata.version('scikit-learn')}"


def test_pyarrow_behind_read_parquet_is_a_pinned_requirement(tmp_path: Path):
    found = _inspect(tmp_path, 'import pandas as pd\n\ndf = pd.read_parquet("data.parquet")\nmodel = len(df)')
    assert found["pyarrow"] == f"pyarrow=={metadata.version('pyarrow')}"


def test_a_hidden_dependency_that_is_not_installed_is_a_note_naming_the_cell(tmp_path: Path):
    assert reqs.installed_version("openpyxl") is None  # the premise of this test
    notebook = write_notebook(
        tmp_path / "excel.ipynb",
        [cell('import pandas as pd\n\ndf = pd.read_excel("x.xlsx")\nmodel = len(df)', "train", cell_id="load")],
    )
    notes = [f for f in api.inspect(notebook).findings if f.code == "hidden-requirement"]
    assert len(notes) == 1 and notes[0].severity == "note"
    assert notes[0].render().startswith("excel.ipynb: cell 1 (id load, train), line 3: `read_excel` needs openpyxl")


def test_configured_requirements_are_pinned_to_the_installed_version(tmp_path: Path):
    found = _inspect(tmp_path, "model = 1", requirements=["PyYAML", "requests>=2"])
    assert found["pyyaml"] == f"pyyaml=={metadata.version('PyYAML')}"
    assert found["requests"] == "requests>=2"  # a constraint the user wrote is kept


def _fake_distribution(folder: Path, name: str) -> None:
    (folder / f"{name}.py").write_text("VALUE = 1\n")
    info = folder / f"{name}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n")
    (info / "top_level.txt").write_text(f"{name}\n")
    (info / "RECORD").write_text(f"{name}.py,,\n")


def test_the_distribution_cache_sees_pythonpath_folders_and_removed_packages(tmp_path: Path, monkeypatch):
    folder = tmp_path / "extra"
    folder.mkdir()
    _fake_distribution(folder, "nbtestpkg")
    notebook = write_notebook(
        tmp_path / "uses.ipynb", [cell("import nbtestpkg\n\nmodel = nbtestpkg.VALUE", "train", cell_id="t")]
    )
    reqs._distributions_by_import.cache_clear()
    assert "nbtestpkg" not in reqs._distributions_by_import()  # the disk cache is filled without it
    monkeypatch.syspath_prepend(str(folder))  # as PYTHONPATH would
    for cached in (False, True):  # the first look fills the disk cache; the second reads it
        reqs._distributions_by_import.cache_clear()
        reqs.installed_version.cache_clear()
        assert "nbtestpkg==1.2.3" in api.inspect(notebook).requirements, cached
    for path in folder.iterdir():  # uninstall it
        if path.is_dir():
            for inner in path.iterdir():
                inner.unlink()
            path.rmdir()
        else:
            path.unlink()
    reqs._distributions_by_import.cache_clear()
    reqs.installed_version.cache_clear()
    sys.modules.pop("nbtestpkg", None)
    with pytest.raises(NotebookErrors, match="no installed distribution provides the module 'nbtestpkg'"):
        api.build(notebook, output=tmp_path / "out")
