"""The package computes what the notebook computed, or the build says why not (issue 8, part A).

Each test builds a small notebook in code; the job is run by both real engines (a papermill kernel
and the python engine) and compared with the values the notebook's own cells give.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from nbtest_helpers import FIXTURES, cell, write_notebook

from nb2prod import api
from nb2prod.errors import NotebookErrors
from nb2prod.runs.record import SUCCEEDED
from nb2prod.runs.trainer import train_target

ENGINES = ("papermill", "python")


def build(path: Path) -> Path:
    return Path(api.build(path).output_dir)


def train_both(build_dir: Path, store: Path) -> dict[str, dict[str, Any]]:
    """Train with each engine; return the recorded metrics by engine (each run must succeed)."""
    recorded = {}
    for engine in ENGINES:
        run = train_target(build_dir, engine=engine, store=store)
        assert run.manifest.status == SUCCEEDED, (engine, run.manifest.failure)
        recorded[engine] = dict(run.manifest.metrics)
    return recorded


def notebook_metrics(path: Path) -> dict[str, Any]:
    """What the notebook itself computes: every code cell, top to bottom, in one namespace."""
    import json

    namespace: dict[str, Any] = {}
    for item in json.loads(path.read_text())["cells"]:
        if item["cell_type"] == "code" and not item["source"].lstrip().startswith("%"):
            exec(compile(item["source"], "<cell>", "exec"), namespace)  # noqa: S102 - the test's own notebook
    return namespace["metrics"]


def generated_tests(build_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(build_dir / "src")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        cwd=build_dir,
        env=env,
        timeout=300,
    )


def findings(path: Path) -> list:
    return list(api.inspect(path).findings)


def codes(path: Path) -> list[str]:
    return [f.code for f in findings(path)]


# -- defect 1: cells with nothing left once their imports are hoisted ---------------------------
def test_cells_left_empty_after_hoisting_build_check_train_and_show(tmp_path: Path) -> None:
    path = write_notebook(
        tmp_path / "nb.ipynb",
        [
            cell("import statistics", "train"),  # only an import
            cell("model = statistics.mean([1, 2, 3])", "train"),
            cell("# only a comment\n", "train"),
            cell("", "train"),  # empty
            cell("%matplotlib inline", "metrics"),  # only a display magic
            cell("import math\n# and a comment", "metrics"),
            cell('metrics = {"root": math.sqrt(model)}', "metrics"),
            cell("import math", "test"),
            cell("assert math.isclose(model, 2.0)", "test"),
        ],
    )
    out = build(path)
    assert api.check(path).ok
    report = {c.index: c for c in api.inspect(path).cells}
    assert [report[i].roles for i in range(9)] == [("train",)] * 4 + [("metrics",)] * 3 + [("test",)] * 2
    assert report[0].binds == ("statistics",) and report[3].binds == ()
    recorded = train_both(out, tmp_path / "runs")
    assert recorded["papermill"] == recorded["python"] == {"root": pytest.approx(2**0.5)}
    result = generated_tests(out)
    assert result.returncode == 0, result.stdout[-2000:]


# -- defect 2: untagged cells that change a tagged name -----------------------------------------
MUTATIONS = [
    ("model.fit(X, y)", "calls `.fit()`"),
    ("model.steps[0][1].fit(X, y)", "calls `.fit()` on a part of it"),
    ("model.coef_ = [0.0]", "sets its attribute `coef_`"),
    ("model.params['alpha'] = 2", "sets an item of it"),
    ("model += 1", "changes it in place"),
    ("del model.params", "deletes a part of it"),
    ("del model", "deletes it"),
    ("model = make()", "assigns it a new value"),
    ("m = model\nm.params.update(alpha=3)", "calls `.update()` on a part of it"),
    ("frame.fillna(0, inplace=True)", "inplace=True"),
]


@pytest.mark.parametrize(("statement", "action"), MUTATIONS)
def test_untagged_mutation_between_binding_and_use_is_an_error(tmp_path: Path, statement: str, action: str) -> None:
    path = write_notebook(
        tmp_path / "nb.ipynb",
        [
            cell("def make():\n    return object()", "export"),
            cell("X, y, frame = [[1]], [1], None\nmodel = make()", "train", cell_id="bind"),
            cell("print('exploring')\n" + statement, cell_id="explore"),
            cell('metrics = {"m": str(model) + str(frame)}', "metrics", cell_id="use"),
        ],
    )
    (finding,) = [f for f in findings(path) if f.severity == "error"]
    assert finding.code == "untagged-mutation"
    assert finding.location.cell_index == 2 and finding.location.cell_id == "explore"
    assert finding.location.line == statement.count("\n") + 2  # the statement's line in the cell
    assert finding.related.cell_index == 3
    text = finding.render()
    assert action in text and "train cell 2 (id bind)" in text and "metrics cell 4 (id use)" in text
    assert "tag cell 3 `train`" in text
    with pytest.raises(NotebookErrors):
        api.build(path)


def test_untagged_fit_is_refused_and_tagging_it_builds_a_fitted_model(tmp_path: Path) -> None:
    cells = [
        cell("from sklearn.linear_model import LinearRegression\nX, y = [[0], [1], [2]], [0, 2, 4]", "train"),
        cell("model = LinearRegression()", "train"),
        cell("model.fit(X, y)"),
        cell('metrics = {"r2": model.score(X, y)}', "metrics"),
    ]
    path = write_notebook(tmp_path / "nb.ipynb", cells)
    error = next(f for f in findings(path) if f.severity == "error")
    assert error.code == "untagged-mutation" and "`model.fit(X, y)`" in error.message
    cells[2]["metadata"] = {"tags": ["train"]}
    path = write_notebook(tmp_path / "nb.ipynb", cells)
    recorded = train_both(build(path), tmp_path / "runs")
    assert recorded["papermill"] == recorded["python"] == notebook_metrics(path) == {"r2": 1.0}


def test_change_to_the_object_the_model_was_bound_to_is_an_error(tmp_path: Path) -> None:
    path = write_notebook(
        tmp_path / "nb.ipynb",
        [
            cell("steps = [1]\nmodel = steps", "train"),
            cell("steps.append(2)"),
            cell('metrics = {"n": len(model)}', "metrics"),
        ],
    )
    (finding,) = [f for f in findings(path) if f.severity == "error"]
    assert finding.code == "untagged-mutation" and "the object 'model' holds" in finding.message


def test_skipped_cell_that_changes_a_tagged_name_is_an_error(tmp_path: Path) -> None:
    path = write_notebook(
        tmp_path / "nb.ipynb",
        [cell("model = []", "train"), cell("model.append(1)", "skip"), cell('metrics = {"n": len(model)}', "metrics")],
    )
    (finding,) = [f for f in findings(path) if f.severity == "error"]
    assert (
        finding.code == "untagged-mutation" and "remove the `skip` tag of cell 2 and tag it `train`" in finding.render()
    )


@pytest.mark.parametrize(
    "statement",
    [
        "print(model)",
        "display(model)",
        "len(model), repr(model), type(model), isinstance(model, list)",
        "model.score(X, y)",
        "model.predict(X)",
        "model.get_params()",
        "model.copy().append(4)",  # changes a copy
        "other = [m for m in model]\nother.append(1)",  # a new list
        "model",
        "def helper(model):\n    model.append(1)",  # defining a function runs nothing
        "[m.append(1) for m in parts]",  # comprehension variables are the comprehension's own
    ],
)
def test_calls_that_only_read_are_not_mutations(tmp_path: Path, statement: str) -> None:
    path = write_notebook(
        tmp_path / "nb.ipynb",
        [
            cell("X = y = parts = None\nmodel = [3, 1]", "train"),
            cell(statement),
            cell('metrics = {"n": len(model)}', "metrics"),
        ],
    )
    assert [f for f in findings(path) if f.code.startswith("untagged-")] == []


@pytest.mark.parametrize(
    ("statement", "fragment"),
    [("plot_it(model)", "passes it to `plot_it()`"), ("model.tune(3)", "calls `.tune()`")],
)
def test_unknown_calls_are_a_note_not_silence(tmp_path: Path, statement: str, fragment: str) -> None:
    path = write_notebook(
        tmp_path / "nb.ipynb",
        [
            cell("def plot_it(m):\n    pass", "export"),
            cell("model = [3, 1]", "train"),
            cell(statement),
            cell('metrics = {"n": len(model)}', "metrics"),
        ],
    )
    (note,) = [f for f in findings(path) if f.code.startswith("untagged-")]
    assert note.code == "untagged-maybe-mutation" and note.severity == "note"
    assert fragment in note.message and note.location.cell_index == 2
    assert api.build(path).output_dir  # a note does not stop the build


def test_numbers_and_strings_passed_to_unknown_functions_are_not_notes(tmp_path: Path) -> None:
    path = write_notebook(
        tmp_path / "nb.ipynb",
        [
            cell("n = 3  # rows\nname = 'x'", "parameters"),
            cell("frame = make_frame(n, name)"),
            cell("n += 1"),
            cell("model = [name] * n", "train"),
        ],
    )
    found = [f for f in findings(path) if f.code.startswith("untagged-")]
    assert [(f.code, f.location.cell_index) for f in found] == [("untagged-mutation", 2)]  # `n += 1` rebinds


def test_changes_outside_binding_and_use_do_not_matter(tmp_path: Path) -> None:
    path = write_notebook(
        tmp_path / "nb.ipynb",
        [
            cell("model = []"),
            cell("model.append(0)"),  # before the tagged binding: the job rebinds it
            cell("model = [1]", "train"),
            cell('metrics = {"n": len(model)}', "metrics"),
            cell("model.append(2)"),  # after the last tagged use
        ],
    )
    assert [f for f in findings(path) if f.code.startswith("untagged-")] == []


# -- defect 3: star imports ----------------------------------------------------------------------
def test_every_star_import_is_kept_and_the_job_imports_them(tmp_path: Path) -> None:
    path = write_notebook(
        tmp_path / "nb.ipynb",
        [
            cell("from math import *\nfrom statistics import *\nfrom os.path import *", "export"),
            cell("def spread(values):\n    return sqrt(pvariance(values))", "export"),
            cell("model = spread([1, 3]) + len(basename('/a/bc')) + floor(pi)", "train"),
            cell('metrics = {"value": model + fsum([median([1, 2, 3])])}', "metrics"),
        ],
    )
    out = build(path)
    core = (out / "src/nb/core.py").read_text()
    assert all(f"from {m} import *" in core for m in ("math", "statistics", "os.path"))
    imported = subprocess.run(
        [sys.executable, "-c", "import nb.core as c; print(c.spread([1, 3]))"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(out / "src")},
    )
    assert imported.returncode == 0 and imported.stdout.strip() == "1.0", imported.stderr
    recorded = train_both(out, tmp_path / "runs")
    assert recorded["papermill"] == recorded["python"] == notebook_metrics(path) == {"value": 8.0}


def test_a_star_import_does_not_hide_a_name_defined_elsewhere_or_missing(tmp_path: Path) -> None:
    path = write_notebook(
        tmp_path / "nb.ipynb",
        [
            cell("from math import *", "export"),
            cell("values = [1]"),
            cell("model = floor(2.5) + len(values) + unknown_name", "train"),
        ],
    )
    errors = sorted(f.message for f in findings(path) if f.severity == "error")
    assert len(errors) == 2
    assert "'unknown_name' is not defined in any cell" in errors[0]
    assert "'values' is defined only in untagged cell 2" in errors[1]


# -- defect 4: a name read before its cell rebinds it --------------------------------------------
def test_metrics_shadowing_the_sklearn_module_in_the_same_cell(tmp_path: Path) -> None:
    path = write_notebook(
        tmp_path / "nb.ipynb",
        [
            cell("y_true, model = [0, 1, 1, 0], [0, 1, 0, 0]", "train"),
            cell(
                'from sklearn import metrics\nmetrics = {"acc": metrics.accuracy_score(y_true, model)}\n'
                'assert metrics["acc"] > 0.5',
                "metrics",
            ),
            cell(
                'from sklearn import metrics\nmetrics = {"f1": metrics.f1_score(y_true, model)}\n'
                'assert metrics["f1"] > 0.6',
                "test",
            ),
        ],
    )
    assert [f for f in findings(path) if f.severity == "error"] == []
    out = build(path)
    recorded = train_both(out, tmp_path / "runs")
    assert recorded["papermill"] == recorded["python"] == {"acc": 0.75}
    result = generated_tests(out)
    assert result.returncode == 0, result.stdout[-2000:]


def test_metrics_shadowing_a_module_imported_in_an_untagged_cell(tmp_path: Path) -> None:
    path = write_notebook(
        tmp_path / "nb.ipynb",
        [
            cell("from sklearn import metrics"),
            cell("y_true, model = [0, 1, 1, 0], [0, 1, 0, 0]", "train"),
            cell('metrics = {"acc": metrics.accuracy_score(y_true, model)}', "metrics"),
        ],
    )
    found = findings(path)
    assert [f for f in found if f.severity == "error"] == []
    carried = [f for f in found if f.code == "import-carried"]
    assert carried and "from sklearn import metrics" in carried[0].message
    recorded = train_both(build(path), tmp_path / "runs")
    assert recorded["papermill"] == recorded["python"] == notebook_metrics(path) == {"acc": 0.75}


def test_import_in_one_job_cell_and_rebinding_in_another_keeps_the_order(tmp_path: Path) -> None:
    path = write_notebook(
        tmp_path / "nb.ipynb",
        [
            cell("stats = 'not yet the module'\nfirst = stats", "train"),
            cell("import statistics as stats\nmodel = stats.mean([1, 2, 3])", "train"),
            cell('metrics = {"first": first, "mean": model}\nstats = None', "metrics"),
        ],
    )
    assert [f for f in findings(path) if f.severity == "error"] == []
    recorded = train_both(build(path), tmp_path / "runs")
    assert recorded["papermill"] == recorded["python"] == notebook_metrics(path)
    assert recorded["python"] == {"first": "not yet the module", "mean": 2}


def test_name_read_before_its_cell_binds_it_needs_an_earlier_binding(tmp_path: Path) -> None:
    path = write_notebook(tmp_path / "nb.ipynb", [cell("model = 1", "train"), cell("total = total + model", "train")])
    (error,) = [f for f in findings(path) if f.severity == "error"]
    assert error.code == "undefined-name" and "'total'" in error.message and error.location.cell_index == 1


# -- what function scope would change is refused ------------------------------------------------
@pytest.mark.parametrize(
    ("cells", "code", "cell_index"),
    [
        (
            [
                cell("model = 1", "train"),
                cell("a = 1\ndef bump():\n    global a\n    a = a + 1\nbump()\nassert a == 2", "test"),
            ],
            "global-in-job",
            1,
        ),
        (
            [cell("model = 1", "train"), cell("a = 1\nclass K:\n    a = a + 1\nassert K.a == 2", "test")],
            "class-reads-job-name",
            1,
        ),
        (
            [cell("a = 1\ndef f(p):\n    return p + a", "export"), cell("a = 5\nmodel = f(1)", "train")],
            "rebinds-exported-global",
            1,
        ),
        (
            [cell("a = 0\nmodel = a", "train"), cell("a = 4", "export"), cell('metrics = {"a": a}', "metrics")],
            "export-rebinds-job-name",
            2,
        ),
    ],
)
def test_code_whose_meaning_changes_inside_a_function_is_refused(
    tmp_path: Path, cells: list, code: str, cell_index: int
) -> None:
    path = write_notebook(tmp_path / "nb.ipynb", cells)
    (error,) = [f for f in findings(path) if f.severity == "error"]
    assert error.code == code and error.location.cell_index == cell_index and error.fix


def test_exported_global_statement_reading_a_job_name_is_an_undefined_name(tmp_path: Path) -> None:
    path = write_notebook(
        tmp_path / "nb.ipynb",
        [cell("a = 1\nmodel = a", "train"), cell("def bump():\n    global a\n    a = a + 1\n\n\nbump()", "export")],
    )
    (error,) = [f for f in findings(path) if f.severity == "error"]
    assert error.code == "undefined-name" and "'a'" in error.message and error.location.cell_index == 1


# -- defect 5: Kubeflow Kale notebooks, unedited -------------------------------------------------
def test_kale_notebook_with_step_tags_continuations_and_printed_metrics_trains(tmp_path: Path) -> None:
    import shutil

    path = Path(shutil.copy(FIXTURES / "kale_style.ipynb", tmp_path / "kale_style.ipynb"))
    assert [f for f in findings(path) if f.severity == "error"] == []
    assert "no-metrics-dict" not in codes(path)
    recorded = train_both(build(path), tmp_path / "runs")
    assert recorded["papermill"] == recorded["python"]
    assert set(recorded["python"]) == {"accuracy", "value-spread"}  # Kale's metric names: `_` becomes `-`
    assert recorded["python"]["accuracy"] == 0.5


# -- defect 10: one error per cause, one numbering ------------------------------------------------
def test_syntax_error_in_a_tagged_cell_is_the_only_error(tmp_path: Path) -> None:
    path = write_notebook(
        tmp_path / "nb.ipynb",
        [
            cell("import math\ndef area(r:\n    return math.pi * r ** 2", "export"),
            cell("model = (area(2)", "train"),
            cell('metrics = {"area": model}', "metrics"),
            cell("def predict(model, inputs:\n    return inputs", "predict"),
        ],
    )
    errors = [f for f in findings(path) if f.severity == "error"]
    assert [(f.code, f.location.cell_index) for f in errors] == [("syntax-error", 0), ("syntax-error", 1)] + [
        ("syntax-error", 3)
    ]


def test_syntax_error_in_an_untagged_cell_is_named_instead_of_a_missing_name(tmp_path: Path) -> None:
    path = write_notebook(tmp_path / "nb.ipynb", [cell("def area(r:\n    return 3"), cell("model = area(2)", "train")])
    (error,) = [f for f in findings(path) if f.severity == "error"]
    assert error.code == "undefined-name" and error.related.cell_index == 0
    assert "untagged cell 1 (id c0), which is not valid Python" in error.message


def test_cell_numbers_and_synthesized_ids_are_both_1_based(tmp_path: Path) -> None:
    import json

    cells = [cell("helper = 1"), cell("model = helper", "train")]
    nb = {"cells": cells, "metadata": {"kernelspec": {"name": "python3"}}, "nbformat": 4, "nbformat_minor": 4}
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(nb))  # nbformat 4.4: cells have no ids, nb2prod names them
    (error,) = [f for f in findings(path) if f.severity == "error"]
    assert error.render().startswith("nb.ipynb: cell 2 (id cell-2, train), line 1:")
    assert "untagged cell 1 (id cell-1)" in error.render()
