"""A model referring to a class or function of a train cell is refused at build time, naming the cell."""

from __future__ import annotations

from pathlib import Path

import pytest
from nbtest_helpers import cell, write_notebook

from nb2prod import api
from nb2prod.errors import Finding, NotebookErrors

WRAPPER = "class Wrapper:\n    def __init__(self, value):\n        self.value = value\n\n    def predict(self, rows):\n        return [self.value for _ in rows]\n"


def build_errors(tmp_path: Path, train: str, export: str | None = None) -> list[Finding]:
    cells = [
        cell(
            "import numpy as np\nfrom sklearn.pipeline import make_pipeline\nfrom sklearn.preprocessing import FunctionTransformer\nfrom sklearn.linear_model import Ridge",
            "export",
        )
    ]
    if export:
        cells.append(cell(export, "export"))
    cells += [cell(train, "train"), cell('metrics = {"n": 1}', "metrics")]
    notebook = write_notebook(tmp_path / "job.ipynb", cells)
    try:
        api.build(notebook, output=tmp_path / "out")
    except NotebookErrors as exc:
        return [f for f in exc.findings if f.code == "model-refers-to-job-code"]
    return []


def test_a_class_of_a_train_cell_instantiated_into_the_model_is_refused(tmp_path: Path) -> None:
    [finding] = build_errors(tmp_path, "x = 1\n" + WRAPPER + "model = Wrapper(3)")
    assert finding.severity == "error"
    assert finding.location.cell_index == 1 and finding.location.role == "train" and finding.location.line == 2
    assert "'Wrapper'" in finding.message and "'model'" in finding.message
    assert "export" in finding.fix and "Wrapper" in finding.fix
    assert "cell 2" in finding.render()


def test_a_class_passed_into_an_estimator_through_variables_is_refused(tmp_path: Path) -> None:
    train = WRAPPER.replace("class Wrapper:", "class Scale:") + (
        "step = Scale(2)\nsteps = []\nsteps.append(step)\nmodel = make_pipeline(*steps, Ridge())"
    )
    [finding] = build_errors(tmp_path, train)
    assert "'Scale'" in finding.message


def test_a_function_passed_by_reference_and_a_class_built_by_a_called_function_are_refused(tmp_path: Path) -> None:
    train = (
        "def double(x):\n    return x * 2\n\n"
        + WRAPPER
        + "\ndef build():\n    return Wrapper(1)\n\n"
        + "pipe = make_pipeline(FunctionTransformer(func=double), Ridge())\n"
        + "model = (pipe, build())"
    )
    names = sorted(f.message.split("the ", 2)[2].split(" ")[1] for f in build_errors(tmp_path, train))
    assert names == ["'Wrapper'", "'double'"]


def test_helpers_the_model_does_not_hold_build(tmp_path: Path) -> None:
    train = (
        WRAPPER
        + "\ndef make_model(alpha):\n    return Ridge(alpha=alpha)\n\n"
        + "def score(v):\n    return -v\n\n"
        + "best = max([1.0, 2.0], key=score)\n"
        + "rows = Wrapper(2).predict([1, 2])\n"
        + "model = make_model(best)\n"
        + "model.fit(np.array([[1.0], [2.0]]), np.array(rows))"
    )
    assert build_errors(tmp_path, train) == []


def test_the_same_class_in_an_export_cell_builds(tmp_path: Path) -> None:
    assert build_errors(tmp_path, "model = Wrapper(3)", export=WRAPPER) == []


@pytest.mark.parametrize("variable", ["model", "logreg"])
def test_the_configured_model_variable_is_followed(tmp_path: Path, variable: str) -> None:
    cells = [
        cell(WRAPPER + f"{variable} = Wrapper(1)\nmodel_unused = 2", "train"),
        cell('metrics = {"n": 1}', "metrics"),
    ]
    notebook = write_notebook(tmp_path / "job.ipynb", cells, {"nb2prod": {"model_variable": variable}})
    with pytest.raises(NotebookErrors) as info:
        api.build(notebook, output=tmp_path / "out")
    assert [f.code for f in info.value.findings if f.severity == "error"] == ["model-refers-to-job-code"]
