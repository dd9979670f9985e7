"""A failure that depends on the process (its stack, recursion limit or memory) and not on the
code is never cached: a server thread that ran out of depth must not make the command line fail
on the same notebook later."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.nbtest_helpers import SMALL_CELLS, cell, write_notebook


def test_nested_too_deeply_in_one_process_is_not_cached_for_the_next(tmp_path: Path, monkeypatch) -> None:
    from nb2prod.analysis.cells import prepare_cell_cached

    cache = tmp_path / "cache" / "format"
    monkeypatch.setenv("NB2PROD_CACHE_DIR", str(cache))
    code = "total = " + " + ".join(["1"] * 1200) + "\n"
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(400)  # an environment with less depth than the command line has
    try:
        prepared = prepare_cell_cached(code, frozenset({"export"}), True)
    finally:
        sys.setrecursionlimit(limit)
    assert [event.code for event in prepared.events] == ["too-complex"]

    cells = [cell(src, *tags) for src, tags in SMALL_CELLS]
    cells.insert(2, cell(code, "export"))
    notebook = write_notebook(tmp_path / "deep.ipynb", cells)
    outcome = subprocess.run(
        [sys.executable, "-m", "nb2prod", "inspect", str(notebook)],
        capture_output=True,
        text=True,
        env={**os.environ, "NB2PROD_CACHE_DIR": str(cache)},
        timeout=600,
    )
    assert outcome.returncode == 0, outcome.stderr
    assert "nested too deeply" not in outcome.stdout + outcome.stderr
