"""The two engines are one job: papermill (a real kernel) and python (the generated package in this
process) must agree on status, metrics and the failing cell for every notebook that builds.

The last test is the guard: hypothesis generates small notebooks (global, walrus, comprehensions,
functions, classes, match, lambdas, asserts as gates, `;`-joined statements) and trains each with
both engines. CI runs a fixed, small number of examples; `NB2PROD_FUZZ_EXAMPLES=200` runs more.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from nbtest_helpers import cell, write_notebook

from nb2prod import api
from nb2prod.errors import NotebookErrors
from nb2prod.runs.record import ERRORED, FAILED_GATE, SUCCEEDED, RunManifest
from nb2prod.runs.trainer import train_target

ENGINES = ("papermill", "python")


def train_both(build_dir: Path, store: Path, pairs: list[tuple[str, str]] | None = None) -> dict[str, RunManifest]:
    return {
        engine: train_target(build_dir, list(pairs or []), engine=engine, store=store).manifest for engine in ENGINES
    }


def outcome(manifest: RunManifest) -> dict[str, Any]:
    """What both engines must agree on."""
    failure = manifest.failure
    return {
        "status": manifest.status,
        "metrics": manifest.metrics,
        "model": manifest.model is not None,
        "error": None if failure is None else failure.error_type,
        "message": None if failure is None else failure.message,
        "cell": None if failure is None or failure.cell is None else failure.cell.notebook_cell,
        "role": None if failure is None or failure.cell is None else failure.cell.role,
        "line": None if failure is None or failure.cell is None else failure.cell.line,
    }


def assert_agree(manifests: dict[str, RunManifest]) -> dict[str, Any]:
    papermill, python = (outcome(manifests[e]) for e in ENGINES)
    assert papermill == python
    return python


def build(folder: Path, cells: list[dict], name: str = "job", metadata: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    notebook = write_notebook(folder / f"{name}.ipynb", cells, metadata)
    return Path(api.build(notebook).output_dir)


# --- regressions ------------------------------------------------------------------------------
GLOBAL_CELLS = [
    cell("n = 3  # rounds\nmin_a = 0.0  # gate on a", "parameters"),
    cell(
        "counter = 0\n\n\ndef bump():\n    global counter, model\n    counter += 1\n    model = counter * 10\n\n\n"
        "for _ in range(n):\n    bump()\nx = 1\n\n\nclass Config:\n    x = x + 1\n\n\n"
        'seen = sorted(k for k in ("counter", "x") if k in globals())',
        "train",
    ),
    cell(
        'metrics = {"a": float(counter)}; assert metrics["a"] > min_a, "a too small"; metrics["b"] = Config.x\n'
        'assert True; metrics["c"] = model; metrics["seen"] = len(seen)',
        "metrics",
    ),
    cell('metrics["later"] = 4', "metrics"),
]


def test_global_and_class_bodies_mean_in_both_engines_what_they_meant_in_the_notebook(tmp_path: Path) -> None:
    """`global` inside a train cell's function: the python engine failed with NameError."""
    build_dir = build(tmp_path / "project", GLOBAL_CELLS)
    result = assert_agree(train_both(build_dir, tmp_path / "runs"))
    assert result["status"] == SUCCEEDED
    assert result["metrics"] == {"a": 3.0, "b": 2, "c": 30, "seen": 2, "later": 4}


def test_a_gate_after_a_statement_on_one_line_fails_the_run_in_both_engines(tmp_path: Path) -> None:
    """`metrics = {...}; assert ...` did not build; a statement after `assert ...;` was dropped."""
    build_dir = build(tmp_path / "project", GLOBAL_CELLS)
    result = assert_agree(train_both(build_dir, tmp_path / "runs", [("min_a", "5")]))
    assert result["status"] == FAILED_GATE and result["error"] == "QualityGateError"
    assert (result["cell"], result["role"], result["line"], result["message"]) == (2, "metrics", 1, "a too small")
    # the later metrics cell still ran, as the kernel runs it; the statements after the gate did not
    assert result["metrics"] == {"a": 3.0, "later": 4}


def test_a_model_of_a_job_class_fails_the_run_in_both_engines(tmp_path: Path) -> None:
    """Papermill "succeeded" and promoted a model predict could not load; python could not save it."""
    cells = [
        cell(
            "class Wrapper:\n    def predict(self, rows):\n        return [1 for _ in rows]\n\n\n"
            'model = globals()["Wrap" + "per"]()',
            "train",
        ),
        cell('metrics = {"n": 1}', "metrics"),
    ]
    build_dir = build(tmp_path / "project", cells)  # hidden from the build's analysis: caught at run time
    result = assert_agree(train_both(build_dir, tmp_path / "runs"))
    assert result["status"] == ERRORED and result["error"] == "UnloadableModelError"
    assert result["role"] == "collect" and not result["model"]
    assert "`Wrapper`" in result["message"] and "export" in result["message"]
    # the package's own command refuses it too, and saves nothing
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(build_dir / "src"), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "job.train", "--output", str(tmp_path / "out")]
    trained = subprocess.run(
        command, check=False, capture_output=True, text=True, env=env, cwd=tmp_path / "project", timeout=300
    )
    assert trained.returncode == 1 and "`Wrapper`" in trained.stderr and "Traceback" not in trained.stderr
    assert not (tmp_path / "out" / "model.joblib").exists()


def test_names_of_the_generated_code_are_free_for_the_notebook(tmp_path: Path) -> None:
    """Parameters and train names like `dict`, `run`, `schema` built, then failed at import or train."""
    names = ["dict", "dataclasses", "field", "Params", "run", "main", "os", "Any", "PARAMETER_SCHEMA"]
    parameters = "\n".join(f"{name} = {i}  # a parameter" for i, name in enumerate(names, 1))
    parameters += '\nfeatures = ["a"]  # a list after `dataclasses`\nsettings = {"k": 1}  # a dict'
    cells = [
        cell(parameters, "parameters"),
        cell(
            f"total = {' + '.join(names)}\n"
            "to_dict = schema = train = MODEL_VARIABLE = QualityGateError = _Params = 'taken'\n"
            "globals = locals = 'shadowed'\n"
            "model = total",
            "train",
        ),
        cell('metrics = {"total": model, "taken": len(to_dict + schema + train)}', "metrics"),
    ]
    build_dir = build(tmp_path / "project", cells, name="names")
    result = assert_agree(train_both(build_dir, tmp_path / "runs"))
    assert result["status"] == SUCCEEDED and result["metrics"] == {"total": 45, "taken": 15}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(build_dir / "src"), os.environ.get("PYTHONPATH", "")])}
    # the package's own command and its generated tests (import, parameters, train, predict)
    command = [sys.executable, "-m", "names.train", "--dict", "2", "--output", str(tmp_path / "out")]
    trained = subprocess.run(
        command, check=False, capture_output=True, text=True, env=env, cwd=tmp_path / "project", timeout=300
    )
    assert trained.returncode == 0, trained.stderr
    assert json.loads(trained.stdout)["metrics"] == {"total": 46, "taken": 15}
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        cwd=build_dir,
        timeout=600,
    )
    assert tests.returncode == 0, tests.stdout[-2000:]


# --- the guard --------------------------------------------------------------------------------
FUZZ_EXAMPLES = int(os.environ.get("NB2PROD_FUZZ_EXAMPLES", "12"))

EXPORT = (
    "import math\n\n\ndef helper(x):\n    return math.floor(x) + 1\n\n\n"
    "class Box:\n    def __init__(self, value):\n        self.value = value\n\n"
    "    def predict(self, rows):\n        return [self.value for _ in rows]"
)
SIMPLE = [  # simple statements: may be joined with `;`
    "total += len(acc) * {c}",
    "ratio = total / (n - {c})",
    "total += (w := {c}) * 2",
    "squares = {{v: v * v for v in range({c})}}",
    "f = lambda v: v + {c}; total = f(total)",
    "del acc",
    "total = helper(total)",
    "items = sorted(acc, key=lambda v: -v)",
    "assert total >= {c}, 'train check'",
    "label = 'big' if total > {c} else 'small'",
    "print(total, {c})",
    'total = globals().get("total", 0) + {c}',
    'g = globals(); g["total"] = total + {c}',
    "total = float(total)",
    "evens = [y for v in range({c} + 1) if (y := v * 2) % 4 == 0]; total += len(evens)",
]
COMPOUND = [  # blocks: each on its own lines
    "counter = {c}\n\n\ndef bump():\n    global counter\n    counter = counter + 1\n    return counter\n\n\nbump()\ntotal += counter",
    "def setg():\n    global made\n    made = {c}\n\n\nsetg()\ntotal += made",
    "match n:\n    case 0:\n        total += 1\n    case {c}:\n        total += 2\n    case _:\n        total += 3",
    "class Acc:\n    base = {c}\n\n    def add(self, v):\n        return v + self.base\n\n\ntotal = Acc().add(total)",
    "limit = {c}\n\n\nclass Cfg:\n    limit = limit + 1\n\n\ntotal += Cfg.limit",
    "class Kept:\n    vals = [total for _ in range({c})]\n\n\ntotal += len(Kept.vals)",
    "try:\n    total += 1 / (n - {c})\nexcept ZeroDivisionError:\n    total -= 1",
    "for v in range({c}):\n    if (w := v * 2) > 2:\n        total += w",
    "i = 0\nwhile i < {c}:\n    i += 1\ntotal += i",
]
MODELS = [
    "model = total",
    'model = {{"total": total, "n": n}}',
    "model = Box(total)",
    "model = helper",
    "model = lambda rows: [total for _ in rows]",
]
GATES = [
    'assert metrics["total"] >= {c}, "total below {c}"',
    'metrics["x"] = {c}; assert n >= {c}',
    'assert total < 100 + {c}; metrics["y"] = 1',
    'metrics["r"] = 1 / (n - {c})',
    "assert n != {c}",
    'if n > {c}: assert metrics["n"] > 0; metrics["z"] = 2',
]


@st.composite
def statements(draw: Any, pool: list[str]) -> str:
    return draw(st.sampled_from(pool)).format(c=draw(st.integers(0, 4)))


def simple_line(draw: Any) -> str:
    parts = draw(st.lists(statements(SIMPLE), min_size=1, max_size=3))
    return "; ".join(parts) if draw(st.booleans()) else "\n".join(parts)


@st.composite
def notebooks(draw: Any) -> list[dict]:
    train = ["acc = [i * scale for i in range(n)]", "total = 0.0"]
    for _ in range(draw(st.integers(1, 4))):
        train.append(simple_line(draw) if draw(st.booleans()) else draw(statements(COMPOUND)))
    train.append(draw(statements(MODELS)))
    metrics = ['metrics = {"total": float(total), "n": n}']
    metrics += draw(st.lists(statements(GATES), max_size=3))
    cells = [
        cell(f"n = {draw(st.integers(0, 4))}  # rows\nscale = {draw(st.integers(0, 3))}.5  # multiplier", "parameters"),
        cell(EXPORT, "export"),
        cell("\n".join(train), "train"),
        cell("\n".join(metrics), "metrics"),
    ]
    if draw(st.booleans()):
        cells.append(cell(draw(statements(GATES)), "metrics"))
    return cells


@settings(
    max_examples=FUZZ_EXAMPLES,
    derandomize=True,  # a fixed seed: CI runs the same notebooks every time
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
@given(cells=notebooks())
def test_both_engines_agree_on_generated_notebooks(cells: list[dict], tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    try:
        build_dir = build(folder / "project", cells, name="fuzz")
    except NotebookErrors:
        reject()  # the property is about notebooks that build
    manifests = train_both(build_dir, folder / "runs")
    sources = "\n---\n".join(c["source"] for c in cells)
    papermill, python = (outcome(manifests[e]) for e in ENGINES)
    assert papermill == python, f"the engines disagree on:\n{sources}"
