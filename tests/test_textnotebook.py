"""Jupytext text notebooks (`py:percent`): read like .ipynb, with cell ids stable across reads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest
from nbtest_helpers import SMALL_CELLS, cell, write_notebook

from nb2prod import api
from nb2prod.notebook import CELL_ID, read_notebook


def nb2prod(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nb2prod", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def percent_notebook(folder: Path, name: str = "small") -> Path:
    """SMALL_CELLS written by jupytext itself as a py:percent file."""
    ipynb = write_notebook(folder / f"{name}.ipynb", [cell(src, *tags) for src, tags in SMALL_CELLS])
    text = jupytext.writes(jupytext.read(ipynb), fmt="py:percent")
    ipynb.unlink()
    path = folder / f"{name}.py"
    path.write_text(text)
    return path


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_percent_file_reads_with_tags_and_stable_ids(tmp_path: Path) -> None:
    path = percent_notebook(tmp_path)
    assert '# %% tags=["train"]' in path.read_text()
    first, second = read_notebook(path), read_notebook(path)
    assert [c.id for c in first.cells] == [c.id for c in second.cells]
    assert len({c.id for c in first.cells}) == len(first.cells)
    assert all(CELL_ID.match(c.id) for c in first.cells)
    code = [c for c in first.cells if c.cell_type == "code"]
    assert [c.tags for c in code] == [tags for _, tags in SMALL_CELLS]
    assert code[2].source == SMALL_CELLS[2][0]


def test_equal_cells_get_distinct_ids(tmp_path: Path) -> None:
    path = tmp_path / "twice.py"
    path.write_text("# %%\nx = 1\n\n# %%\nx = 1\n")
    ids = [c.id for c in read_notebook(path).cells]
    assert len(ids) == 2 and ids[1] == f"{ids[0]}-2"


def test_percent_notebook_builds_byte_identically_twice(tmp_path: Path) -> None:
    path = percent_notebook(tmp_path)
    a = api.build(path, output=tmp_path / "a")
    api.build(path, output=tmp_path / "b")
    assert a.package == "small"
    assert tree(tmp_path / "a") == tree(tmp_path / "b")
    assert not api.build(path, output=tmp_path / "a").changed
    assert api.check(path, output=tmp_path / "a").ok
    path.write_text(path.read_text().replace("math.sqrt(x) * 2", "math.sqrt(x) * 3"))
    check = api.check(path, output=tmp_path / "a")
    assert check.stale and not check.errors


def test_directives_in_a_percent_file(tmp_path: Path) -> None:
    path = tmp_path / "directives.py"
    path.write_text(
        "# %%\n#| export\ndef double(x):\n    return 2 * x\n\n"
        "# %%\n#| train\nmodel = double(21)\n\n"
        "# %%\n#| metrics\nmetrics = {'value': model}\n"
    )
    inspection = api.inspect(path)
    roles = [c.roles for c in inspection.cells]
    assert roles == [("export",), ("train",), ("metrics",)]


def test_cli_build_inspect_and_train_a_percent_file(tmp_path: Path) -> None:
    path = percent_notebook(tmp_path)
    built = nb2prod("build", str(path))
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "build" / "small" / "src" / "small" / "core.py").is_file()
    inspected = nb2prod("inspect", str(path), "--format", "json")
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["package"] == "small"
    trained = nb2prod("train", str(path), "--engine", "python", "--store", str(tmp_path / "runs"), "-p", "n", "5")
    assert trained.returncode == 0, trained.stderr
    (run,) = [p for p in (tmp_path / "runs").iterdir() if p.name[0].isdigit()]
    assert json.loads((run / "metrics.json").read_text()) == {"top": pytest.approx(4.0 * 2)}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("print('hello')\n", "plain.py is not a jupytext notebook"),
        ('# %% tags=["export"]\nx = (\n', "cell 1 (id "),
    ],
)
def test_text_files_that_are_not_buildable_notebooks(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "plain.py"
    path.write_text(text)
    result = nb2prod("build", str(path), "-o", str(tmp_path / "out"))
    assert result.returncode == 2
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
