"""Golden-file tests: each tests/golden/CASE/notebook.ipynb and the tree it must build
(tests/golden/CASE/expected/). After an intended change, regenerate with
`pytest tests/test_golden.py --update-golden` and review the diff."""

from __future__ import annotations

import difflib
import shutil
from pathlib import Path

import pytest

from nb2prod import api

GOLDEN = Path(__file__).resolve().parent / "golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "notebook.ipynb").is_file())


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    work = tmp_path / case
    work.mkdir()
    shutil.copy(GOLDEN / case / "notebook.ipynb", work / "notebook.ipynb")
    api.build(work / "notebook.ipynb", output=work / "expected")
    actual = tree(work / "expected")
    expected_dir = GOLDEN / case / "expected"
    if request.config.getoption("--update-golden"):
        shutil.rmtree(expected_dir, ignore_errors=True)
        shutil.copytree(work / "expected", expected_dir)
        return
    expected = tree(expected_dir)
    assert sorted(actual) == sorted(expected), "the set of generated files changed"
    for path in sorted(expected):
        if actual[path] != expected[path]:
            diff = "\n".join(
                difflib.unified_diff(
                    expected[path].decode().splitlines(),
                    actual[path].decode().splitlines(),
                    f"expected/{path}",
                    f"actual/{path}",
                    lineterm="",
                )
            )
            pytest.fail(f"{path} differs from the golden file:\n{diff}")
