"""Reading notebooks: versions, kernels, broken files, cell ids."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from nbtest_helpers import FIXTURES, cell, write_notebook

from nb2prod.errors import InputError
from nb2prod.notebook import read_notebook


def test_reads_nbformat_4_cells_and_tags(small_notebook: Path) -> None:
    nb = read_notebook(small_notebook)
    assert nb.nbformat == (4, 5)
    assert [c.id for c in nb.cells][:2] == ["c0", "c1"]
    assert nb.cells[1].tags == ("export",)
    assert "def grow" in nb.cells[1].source


def test_v3_is_upgraded_with_stable_ids() -> None:
    first = read_notebook(FIXTURES / "v3_notebook.ipynb")
    second = read_notebook(FIXTURES / "v3_notebook.ipynb")
    assert (
        [c.id for c in first.cells]
        == [c.id for c in second.cells]
        == [f"cell-{i + 1}" for i in range(len(first.cells))]
    )
    assert any(n.code == "upgraded-nbformat" for n in first.notes)
    assert any("alpha = 0.5" in c.source for c in first.cells)


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("v2_notebook.ipynb", "uses nbformat 2, which nb2prod does not read"),
        ("invalid_json.ipynb", "is not valid JSON: "),
        ("r_kernel.ipynb", "is written for the R kernel"),
    ],
)
def test_unusable_notebooks_get_one_sentence(fixture: str, expected: str) -> None:
    with pytest.raises(InputError) as info:
        read_notebook(FIXTURES / fixture)
    assert expected in info.value.message
    assert fixture in info.value.message
    assert "\n" not in info.value.message


def test_invalid_json_names_line_and_column() -> None:
    with pytest.raises(InputError, match=r"line \d+, column \d+"):
        read_notebook(FIXTURES / "invalid_json.ipynb")


def test_duplicate_ids_are_renamed_with_a_note() -> None:
    nb = read_notebook(FIXTURES / "duplicate_ids.ipynb")
    ids = [c.id for c in nb.cells]
    assert len(ids) == len(set(ids))
    assert any(n.code == "duplicate-cell-id" for n in nb.notes)


def test_missing_ids_are_numbered(tmp_path: Path) -> None:
    path = write_notebook(tmp_path / "old.ipynb", [cell("x = 1"), cell("y = 2")])
    data = json.loads(path.read_text())
    data["nbformat_minor"] = 4
    for item in data["cells"]:
        del item["id"]
    path.write_text(json.dumps(data))
    nb = read_notebook(path)
    assert [c.id for c in nb.cells] == ["cell-1", "cell-2"]
    assert any(n.code == "missing-cell-ids" for n in nb.notes)


def test_injected_cell_id_is_not_trusted(tmp_path: Path) -> None:
    path = write_notebook(tmp_path / "evil.ipynb", [cell("x = 1", "export", cell_id="a\nimport os; os.system('x')")])
    nb = read_notebook(path)
    assert nb.cells[0].id == "cell-1"


@pytest.mark.parametrize("content", ['{"nbformat": 4, "cells": 3}', "[]", '{"cells": []}'])
def test_json_that_is_not_a_notebook(tmp_path: Path, content: str) -> None:
    path = tmp_path / "odd.ipynb"
    path.write_text(content)
    with pytest.raises(InputError):
        read_notebook(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such notebook"):
        read_notebook(tmp_path / "nope.ipynb")


# --- crashes and refusals on the notebook side (each one an internal error or a hang before) ----


def test_a_device_or_pipe_is_refused_without_reading_it(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="/dev/zero is not a regular file"):
        read_notebook("/dev/zero")
    fifo = tmp_path / "pipe.ipynb"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        read_notebook(fifo)  # opening a pipe with no writer would block


def test_a_notebook_over_the_size_limit_is_refused_from_its_size(tmp_path: Path, monkeypatch) -> None:
    import nb2prod.notebook as notebook_module

    path = write_notebook(tmp_path / "big.ipynb", [cell("x = 1")])
    monkeypatch.setattr(notebook_module, "MAX_NOTEBOOK_BYTES", path.stat().st_size - 1)
    with pytest.raises(InputError, match="big.ipynb is larger than"):
        read_notebook(path)


def test_a_cell_without_source_is_refused_with_its_place(tmp_path: Path) -> None:
    path = write_notebook(tmp_path / "nb.ipynb", [cell("x = 1"), cell("y = 2")])
    data = json.loads(path.read_text())
    del data["cells"][1]["source"]
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"nb.ipynb: cell 2: the cell has no `source` field"):
        read_notebook(path)


def test_a_cell_id_ending_in_a_newline_is_not_trusted(tmp_path: Path) -> None:
    path = write_notebook(tmp_path / "nb.ipynb", [cell("x = 1", "export", cell_id="abc\n")])
    nb = read_notebook(path)
    assert nb.cells[0].id == "cell-1"  # synthesized ids count cells from 1, as messages do
    assert any(n.code == "invalid-cell-id" for n in nb.notes)


@pytest.mark.parametrize("ending", ["\r", "\r\n"])
def test_carriage_return_line_endings_read_as_newlines(tmp_path: Path, ending: str) -> None:
    source = ending.join(["import math", "def f(x):", "    return math.sqrt(x)", ""])
    path = write_notebook(tmp_path / "nb.ipynb", [cell(source, "export"), cell(f"a = 1{ending}model = f(a)", "train")])
    nb = read_notebook(path)
    assert nb.cells[0].source == "import math\ndef f(x):\n    return math.sqrt(x)\n"
    from nb2prod import api

    result = api.build(path, output=tmp_path / "out")
    job = (result.output_dir / "src" / "nb" / "_job.py").read_text()  # the job's cells, at module level
    assert "\r" not in job and "\nmodel = f(a)\n" in job


def test_unpaired_surrogates_in_a_cell_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "nb.ipynb"
    write_notebook(path, [cell("x = 1")])
    path.write_text(path.read_text().replace('"x = 1"', "\"x = '\\udc80'\""))
    with pytest.raises(InputError, match="cell 1: the cell source holds an unpaired surrogate"):
        read_notebook(path)
