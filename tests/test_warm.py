"""The cache warm-up must compute exactly what the build then needs (a mismatch only costs time,
so only this test can notice it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from nbtest_helpers import cell, write_notebook

from nb2prod import api
from nb2prod.notebook import read_notebook
from nb2prod.roles import resolve_roles
from nb2prod.warm import MIN_CELLS, warm_caches


def big_notebook(path: Path) -> Path:
    cells = [cell("n = 10  # size\nfactor: float = 1.5", "parameters")]
    for i in range(MIN_CELLS):
        cells.append(cell(f"def f{i}(x):\n    '''f{i}'''\n    return x * {i}\n\n\nC{i} = f{i}(2)", "export"))
    cells.append(cell("%time model = sum(f1(i) for i in range(n))\nmodel", "train"))
    cells.append(cell("metrics = {'m': model * factor}\nassert metrics['m'] > 0\nmetrics", "metrics"))
    cells.append(cell("def predict(model, inputs):\n    return [model for _ in inputs]", "predict"))
    cells.append(cell("assert f2(3) == 6", "test"))
    cells.append(cell("def test_f3():\n    assert f3(1) == 3", "test"))
    return write_notebook(path, cells)


def test_after_warming_the_build_prepares_and_formats_no_tagged_cell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NB2PROD_CACHE_DIR", str(tmp_path / "cache" / "format"))
    notebook = big_notebook(tmp_path / "big.ipynb")
    cells, _ = resolve_roles(read_notebook(notebook))
    warm_caches(cells, 88)

    import nb2prod.analysis.cells as cells_module
    import nb2prod.formatting as formatting

    prepared: list[str] = []
    formatted: list[str] = []
    real_prepare, real_format = cells_module.prepare_cell, formatting.format_chunk
    monkeypatch.setattr(
        cells_module,
        "prepare_cell",
        lambda code, roles, tagged: prepared.append(code) or real_prepare(code, roles, tagged),
    )
    monkeypatch.setattr(
        formatting, "format_chunk", lambda job, length: formatted.append(job.code) or real_format(job, length)
    )
    api.build(notebook, output=tmp_path / "out")
    assert prepared == []
    assert [code for code in formatted if code.startswith("# Notebook cell")] == []
    assert (tmp_path / "out" / "src" / "big" / "core.py").read_text().count("# Notebook cell") == MIN_CELLS


def test_warming_from_a_thread_uses_spawned_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Jupyter server builds from an executor thread: the workers must not be forked then."""
    import threading

    from nb2prod import formatting

    monkeypatch.setenv("NB2PROD_CACHE_DIR", str(tmp_path / "cache" / "format"))
    methods: list[str] = []
    real_pool = formatting.process_pool

    def spy(workers: int):  # type: ignore[no-untyped-def]
        pool = real_pool(workers)
        methods.append(pool._mp_context.get_start_method())
        return pool

    monkeypatch.setattr(formatting, "process_pool", spy)
    notebook = big_notebook(tmp_path / "big.ipynb")
    errors: list[BaseException] = []

    def build() -> None:
        try:
            api.build(notebook, output=tmp_path / "out")
        except BaseException as exc:  # reported below
            errors.append(exc)

    worker = threading.Thread(target=build)
    worker.start()
    worker.join(timeout=300)
    assert not worker.is_alive() and errors == []
    assert methods and set(methods) == {"spawn"}
    assert (tmp_path / "out" / "src" / "big" / "core.py").is_file()
