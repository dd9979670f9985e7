"""A run is trusted only whole: every file and folder must match run.json, nothing added or linked.

The same refusal comes from `RunStore.verify`, `promote`, `load_run` (predict, serve, score) and the
runtime shipped in generated packages (`nb2prod.runtime`, the package's `_runtime.py`).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from nb2prod import runtime
from nb2prod.runs.aliases import AliasStore
from nb2prod.runs.errors import IntegrityError
from nb2prod.runs.predicting import load_run
from nb2prod.runs.store import RunStore, StoredRun

from .conftest import record_run, small_data


def _writable(run: StoredRun, *parts: str) -> Path:
    """Make the run folder and the folders down to `parts` writable again (as an attacker would)."""
    folder = run.path
    folder.chmod(0o755)
    for part in parts:
        folder = folder / part
        if folder.is_dir():
            folder.chmod(0o755)
    return folder


def edit_code(run: StoredRun) -> str:
    path = _writable(run, "code", "src", "demo") / "predict.py"
    path.chmod(0o644)
    path.write_text("import os\ndef predict(model, inputs):\n    return ['edited'] * len(inputs)\n")
    return "code/src/demo/predict.py changed"


def shadow_module(run: StoredRun) -> str:
    """`core/__init__.py` beside `core.py`: Python imports the package, not the module."""
    folder = _writable(run, "code", "src", "demo") / "core"
    folder.mkdir()
    (folder / "__init__.py").write_text("OFFSET = 1000\n")
    return "code/src/demo/core/__init__.py was added"


def add_pycache(run: StoredRun) -> str:
    folder = _writable(run, "code", "src", "demo") / "__pycache__"
    folder.mkdir()
    (folder / "predict.cpython-311.pyc").write_bytes(b"\0" * 16)
    return "code/src/demo/__pycache__/predict.cpython-311.pyc was added"


def add_model_file(run: StoredRun) -> str:
    (_writable(run, "model") / "extra.joblib").write_bytes(b"not recorded")
    return "model/extra.joblib was added"


def remove_file(run: StoredRun) -> str:
    (_writable(run) / "metrics.json").unlink()
    return "metrics.json is missing"


def link_code_src(run: StoredRun) -> str:
    """`code/src` replaced by a symlink to an identical copy elsewhere: same bytes, other place."""
    code = _writable(run, "code")
    elsewhere = run.path.parent.parent / "elsewhere-src"
    shutil.copytree(code / "src", elsewhere)
    _thaw_tree(code / "src")
    shutil.rmtree(code / "src")
    os.symlink(elsewhere, code / "src")
    return "code/src is a symbolic link"


def link_file(run: StoredRun) -> str:
    folder = _writable(run)
    copy = run.path.parent.parent / "params-copy.json"
    shutil.copy(folder / "params.json", copy)
    (folder / "params.json").unlink()
    os.symlink(copy, folder / "params.json")
    return "params.json is a symbolic link"


def _thaw_tree(folder: Path) -> None:
    for current, _dirs, _files in os.walk(folder):
        os.chmod(current, 0o755)


TAMPERING: dict[str, Callable[[StoredRun], str]] = {
    "edited code": edit_code,
    "module shadowed by a new package": shadow_module,
    "bytecode added": add_pycache,
    "file added under model/": add_model_file,
    "file removed": remove_file,
    "code/src replaced by a symlink": link_code_src,
    "file replaced by a symlink": link_file,
}


@pytest.mark.parametrize("tamper", TAMPERING.values(), ids=TAMPERING.keys())
def test_every_kind_of_tampering_is_refused_everywhere(store: RunStore, tamper: Callable[[StoredRun], str]) -> None:
    run = record_run(store, with_code=True)
    assert load_run(store, run.run_id).predict_rows([{"a": 0.1, "b": 2}]) in ([0], [1])  # intact: it predicts
    expected = tamper(run)

    assert any(p.startswith(expected) for p in store.problems(run)), store.problems(run)
    with pytest.raises(IntegrityError, match=f"failed verification: {expected}"):
        store.verify(run)
    with pytest.raises(IntegrityError, match=f"cannot be promoted to 'production': run {run.run_id} failed"):
        AliasStore(store).promote(run.run_id)
    with pytest.raises(IntegrityError, match=expected):
        load_run(store, run.run_id)
    with pytest.raises(runtime.ModelIntegrityError, match=expected):
        runtime.load_model(run.path)  # the generated package's loader, by run folder
    with pytest.raises(runtime.ModelIntegrityError, match=expected):
        runtime.load_model(store.root / run.run_id[:18])  # ... and by run id prefix


def test_an_intact_run_predicts_and_writes_nothing_into_its_folder(store: RunStore) -> None:
    """Importing the run's code snapshot leaves no bytecode behind (it would be an added file)."""
    run = record_run(store, with_code=True)
    X, _ = small_data()
    rows = X.head(3).to_dict(orient="records")
    first = load_run(store, run.run_id).predict_rows(rows)
    again = load_run(store, run.run_id).predict_rows(rows)
    assert first == again and len(first) == 3
    assert not list(run.path.rglob("__pycache__"))
    assert store.problems(run) == []


def test_a_folder_holding_another_run_is_refused(store: RunStore) -> None:
    """A run copied whole under another run's id does not pass as that run."""
    a, b = record_run(store, with_code=True), record_run(store, with_code=True)
    _writable(b)
    (b.path / "run.json").chmod(0o644)
    (b.path / "run.json").write_text((a.path / "run.json").read_text())
    with pytest.raises(IntegrityError, match=f"records run id '{a.run_id}', not {b.run_id}"):
        store.get(b.run_id)
    with pytest.raises(runtime.ModelIntegrityError, match=f"records run '{a.run_id}', not {b.run_id}"):
        runtime.load_model(b.path)


def test_runtime_alias_cannot_lead_out_of_the_store(store: RunStore, tmp_path: Path) -> None:
    """An alias whose run_id holds `..` (or a separator) is refused by the shipped runtime."""
    run = record_run(store)
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copytree(run.path, outside / run.run_id)  # a complete, valid run, outside the store
    (store.root / "aliases").mkdir()
    for bad in (f"../outside/{run.run_id}", f"../../{tmp_path.name}/outside/{run.run_id}", f"{run.run_id}\n"):
        (store.root / "aliases" / "production.json").write_text(json.dumps({"alias": "production", "run_id": bad}))
        with pytest.raises(runtime.ModelIntegrityError, match="which is not a run id"):
            runtime.load_model(store.root / "production")
    (store.root / "aliases" / "production.json").write_text(json.dumps({"alias": "production", "run_id": run.run_id}))
    assert runtime.find_run(store.root / "production") == store.root / run.run_id


@pytest.mark.parametrize("name", ["production\n", "prod/../x", "a..b", "", "9lives", "x" * 65, "prod\x00"])
def test_alias_names_are_checked_alike_in_nb2prod_and_the_runtime(store: RunStore, name: str) -> None:
    from nb2prod.errors import InputError
    from nb2prod.runs.ids import is_alias_name

    assert not is_alias_name(name) and not runtime.is_alias_name(name)
    run = record_run(store)
    with pytest.raises(InputError, match="not a valid name"):
        AliasStore(store).promote(run.run_id, alias=name)


def test_run_ids_and_alias_names_refuse_a_trailing_newline(store: RunStore) -> None:
    from nb2prod.runs.errors import RunNotFound
    from nb2prod.runs.ids import is_alias_name, is_run_id

    run = record_run(store)
    AliasStore(store).promote(run.run_id)
    assert is_run_id(run.run_id) and not is_run_id(run.run_id + "\n")
    assert is_alias_name("production") and not is_alias_name("production\n")
    with pytest.raises(RunNotFound):
        store.resolve(run.run_id + "\n")
    with pytest.raises(RunNotFound):
        store.resolve("production\n")
    with pytest.raises(RunNotFound, match="not a run id"):
        store.load(run.run_id + "\n")
