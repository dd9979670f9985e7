"""The explain role: `explain(model, inputs)` cells are checked like predict cells, and the build
writes the package's explain module (the cell, else SHAP's contributions for the model)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from nbtest_helpers import cell, write_notebook

from nb2prod import api
from nb2prod.analysis.analyse import analyse
from nb2prod.config import load_config
from nb2prod.notebook import read_notebook
from nb2prod.roles import resolve_roles

TRAIN = (
    "import pandas as pd\n"
    "from sklearn.ensemble import RandomForestRegressor\n"
    "X = pd.DataFrame({'a': [float(i % 7) for i in range(60)], 'b': [float(i % 5) for i in range(60)]})\n"
    "y = X['a'] * 2 + X['b']\n"
    "model = RandomForestRegressor(n_estimators=5, random_state=0).fit(X, y)"
)
FEATURES = "def double(frame):\n    return frame * 2"
PREDICT = "def predict(model, inputs):\n    features = double(inputs)\n    return list(model.predict(features))"


def analysis_of(path: Path):
    notebook = read_notebook(path)
    cells, notes = resolve_roles(notebook)
    return analyse(notebook, cells, load_config(notebook.path, notebook.nb2prod_metadata, {}), notes)


def errors_of(tmp_path: Path, explain_source: str, *, directive: bool = False) -> list:
    tags = () if directive else ("explain",)
    source = f"#| explain\n{explain_source}" if directive else explain_source
    path = write_notebook(
        tmp_path / "nb.ipynb",
        [cell(TRAIN, "train"), cell("threshold = 3"), cell(source, *tags, cell_id="why")],
    )
    return list(analysis_of(path).errors)


def test_an_explain_cell_is_checked_like_predict(tmp_path: Path) -> None:
    (missing,) = errors_of(tmp_path, "def reasons(model, inputs):\n    return []")
    assert missing.code == "no-explain-function"
    assert (missing.location.cell_id, missing.location.role) == ("why", "explain")
    assert "explain(model, inputs)" in missing.message
    (shape,) = errors_of(tmp_path, "def explain(model):\n    return []")
    assert shape.code == "explain-signature" and shape.location.cell_id == "why" and shape.location.line == 1


def test_an_explain_cell_sees_only_exported_code(tmp_path: Path) -> None:
    """Its free names must be bound by exported cells: a job variable or an untagged cell is an error
    naming the name, the explain cell and the defining cell, also for a `#| explain` directive."""
    (job,) = errors_of(tmp_path, "def explain(model, inputs):\n    return [X] * len(inputs)", directive=True)
    assert job.code == "undefined-name" and "'X'" in job.message
    assert (job.location.cell_id, job.location.role, job.location.line) == ("why", "explain", 3)
    assert job.related is not None and job.related.cell_id == "c0"
    assert "explain sees only exported code" in job.fix
    (untagged,) = errors_of(tmp_path, "def explain(model, inputs):\n    return [threshold] * len(inputs)")
    assert untagged.code == "undefined-name" and "untagged cell 2" in untagged.message
    assert untagged.fix == "Tag cell 2 `export` so the explain code can use it."


def test_the_build_exports_the_explain_cell_and_tests_it(tmp_path: Path) -> None:
    path = write_notebook(
        tmp_path / "why.ipynb",
        [
            cell(FEATURES, "export"),
            cell(TRAIN, "train"),
            cell(PREDICT, "predict"),
            cell(
                "def explain(model, inputs):\n    return [{'doubled': float(v)} for v in double(inputs)['a']]",
                "explain",
                cell_id="why",
            ),
            cell("predict(model, X.head(3))"),
        ],
    )
    result = api.build(path)
    package = Path(result.output_dir) / "src" / "why"
    assert "from .explain import explain" in (package / "__init__.py").read_text()
    assert "Notebook cell 4 (id why)" in (package / "explain.py").read_text()
    contract = (Path(result.output_dir) / "tests" / "test_contract.py").read_text()
    assert "def test_explain_returns_one_explanation_per_row" in contract
    script = (
        "import json, why, pandas as pd\n"
        "from why.explain import explain_rows\n"
        "print(json.dumps([why.__all__, explain_rows(None, pd.DataFrame({'a': [1.5, 2.0]}))]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={"PYTHONPATH": str(package.parent), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    exported, explained = json.loads(done.stdout)
    assert "explain" in exported
    assert explained == [{"doubled": 3.0}, {"doubled": 4.0}]  # the cell's own value, as is


def test_without_a_cell_the_features_predict_builds_are_explained(tmp_path: Path) -> None:
    """No explain cell: explain.py explains the model's features, which predict builds through the
    exported `double`, and says so in each explanation."""
    path = write_notebook(
        tmp_path / "plain.ipynb",
        [cell(FEATURES, "export"), cell(TRAIN, "train"), cell(PREDICT, "predict"), cell("predict(model, X)")],
    )
    analysis = analysis_of(path)
    assert (analysis.explain_features, analysis.explain_parameter) == ("double(inputs)", "inputs")
    result = api.build(path)
    package = Path(result.output_dir) / "src"
    assert "from .core import double" in (package / "plain" / "explain.py").read_text()
    script = TRAIN + (
        "\nimport json\nfrom plain.explain import explain_rows\nfrom plain.predict import predict\n"
        "rows = X.head(2)\nprint(json.dumps([explain_rows(model, rows), predict(model, rows)]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env={"PYTHONPATH": str(package)}, capture_output=True, text=True, check=True
    )
    explained, predicted = json.loads(done.stdout)
    for explanation, score, row in zip(explained, predicted, [{"a": 0.0, "b": 0.0}, {"a": 1.0, "b": 1.0}]):
        assert explanation["method"] == "shap-tree"
        assert explanation["features"] == "the model's features, from double(inputs)"
        assert {c["feature"]: c["value"] for c in explanation["contributions"]} == {k: 2 * v for k, v in row.items()}
        total = explanation["base_value"] + sum(c["contribution"] for c in explanation["contributions"])
        assert abs(total - score) < 1e-6 and abs(explanation["value"] - score) < 1e-9
