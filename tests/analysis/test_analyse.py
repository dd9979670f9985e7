"""Analysis: names across roles, magics, parameters, requirements, identifiers."""

from __future__ import annotations

from pathlib import Path

import pytest
from nbtest_helpers import FIXTURES, cell, write_notebook

from nb2prod.analysis.analyse import Analysis, analyse
from nb2prod.analysis.names import analyse_names
from nb2prod.config import load_config
from nb2prod.notebook import read_notebook
from nb2prod.roles import resolve_roles


def run_analysis(path: Path, **flags: str) -> Analysis:
    nb = read_notebook(path)
    cells, notes = resolve_roles(nb)
    return analyse(nb, cells, load_config(nb.path, nb.nb2prod_metadata, flags), notes)


def errors(analysis: Analysis) -> list[str]:
    return [f.render() for f in analysis.errors]


def test_complete_notebook_has_no_errors(small_notebook: Path) -> None:
    analysis = run_analysis(small_notebook)
    assert errors(analysis) == []
    assert [p.name for p in analysis.parameters] == ["n", "scale"]
    assert analysis.modules[0].public == ("grow",)
    assert analysis.job_needs.sorted_package() == (("core", ("grow",)),)
    assert analysis.example_inputs == "[1, 2]"


def test_name_only_in_untagged_cell_names_everything() -> None:
    analysis = run_analysis(FIXTURES / "broken_dependency.ipynb")
    (finding,) = analysis.errors
    assert finding.code == "undefined-name"
    assert finding.location.cell_index == 3 and finding.location.cell_id == "train"
    assert finding.location.role == "train" and finding.location.line == 1
    assert finding.related.cell_index == 2
    text = finding.render()
    assert "'load_points'" in text and "untagged cell 3" in text and "tag cell 3 `export`" in text


def test_untagged_import_is_carried_with_a_note(tmp_path: Path) -> None:
    path = write_notebook(
        tmp_path / "nb.ipynb", [cell("from fractions import Fraction as F"), cell("model = F(1, 3)", "train")]
    )
    analysis = run_analysis(path)
    assert errors(analysis) == []
    assert "from fractions import Fraction as F" in analysis.job_needs.imports
    assert any(f.code == "import-carried" for f in analysis.findings)


@pytest.mark.parametrize(
    ("cells", "fragment"),
    [
        ([cell("model = later", "train"), cell("later = 1", "train")], "defined later, in train cell 2"),
        (
            [cell("x = 1", "train"), cell("def f():\n    return x", "export"), cell("model = 1", "train")],
            "which export code cannot see",
        ),
        ([cell("model = nowhere", "train")], "'nowhere' is not defined in any cell"),
        ([cell("hidden = 1", "skip"), cell("model = hidden", "train")], "tagged `skip`"),
        ([cell("model = 1\nx = y + 1", "train")], "'y' is not defined"),
    ],
)
def test_unresolved_names(tmp_path: Path, cells: list, fragment: str) -> None:
    analysis = run_analysis(write_notebook(tmp_path / "nb.ipynb", cells))
    assert any(fragment in e for e in errors(analysis)), errors(analysis)


def test_model_variable_is_required_and_configurable(tmp_path: Path) -> None:
    path = write_notebook(tmp_path / "nb.ipynb", [cell("logreg = 1", "train")])
    assert any("model variable 'model'" in e for e in errors(run_analysis(path)))
    assert errors(run_analysis(path, model_variable="logreg")) == []


def test_shell_escape_in_tagged_cell_is_an_error() -> None:
    analysis = run_analysis(FIXTURES / "shell_escape.ipynb")
    assert any(
        f.code == "shell-escape" and f.location.line == 1 and "!rm -rf data" in f.message for f in analysis.errors
    )


def test_magics_policy(tmp_path: Path) -> None:
    source = "%pip install tqdm\n%matplotlib inline\n%time model = sum([1, 2])\n!pip install pyyaml==6.0"
    analysis = run_analysis(write_notebook(tmp_path / "nb.ipynb", [cell(source, "train")]))
    assert errors(analysis) == []
    specs = {r.name: r.spec for r in analysis.requirements}
    assert specs["pyyaml"] == "pyyaml==6.0" and specs["tqdm"].startswith("tqdm")
    assert "model = sum([1, 2])" in analysis.job_cells[0].code
    assert "matplotlib" not in analysis.job_cells[0].code
    assert any(f.code == "magic-dropped" for f in analysis.findings)


def test_syntax_error_names_cell_and_line() -> None:
    analysis = run_analysis(FIXTURES / "syntax_error.ipynb")
    (finding,) = analysis.errors
    assert finding.code == "syntax-error" and finding.location.line == 2


def test_parameters_must_be_literals() -> None:
    analysis = run_analysis(FIXTURES / "bad_parameters.ipynb")
    assert any(f.code == "bad-parameter" and "compute()" in f.message and f.location.line == 2 for f in analysis.errors)


def test_parameter_types_and_help(tmp_path: Path) -> None:
    source = (
        "rate: float = 1  # learning rate\nname = 'x'\nflags = [1, 2]  # a list\n"
        "opts = {'a': 1}\non = True\nlimit: int | None = None  # optional"
    )
    analysis = run_analysis(
        write_notebook(tmp_path / "nb.ipynb", [cell(source, "parameters"), cell("model = rate", "train")])
    )
    schema = {p.name: (p.type, p.default, p.help, p.nullable) for p in analysis.parameters}
    assert schema == {
        "rate": ("float", 1.0, "learning rate", False),
        "name": ("str", "x", "", False),
        "flags": ("list", [1, 2], "a list", False),
        "opts": ("dict", {"a": 1}, "", False),
        "on": ("bool", True, "", False),
        "limit": ("int", None, "optional", True),
    }


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("x: int = 'a'", "annotated int"),
        ("x: set = 1", "nb2prod knows int"),
        ("_x = 1", "underscore"),
        ("a, b = 1, 2", "one name"),
        ("import os", "not a literal assignment"),
    ],
)
def test_bad_parameters(tmp_path: Path, source: str, fragment: str) -> None:
    analysis = run_analysis(
        write_notebook(tmp_path / "nb.ipynb", [cell(source, "parameters"), cell("model = 1", "train")])
    )
    assert any(fragment in e for e in errors(analysis)), errors(analysis)


def test_requirements_are_pinned_and_exclude_stdlib(small_notebook: Path) -> None:
    import joblib

    analysis = run_analysis(small_notebook)
    assert [r.spec for r in analysis.requirements] == [f"joblib=={joblib.__version__}"]


def test_sklearn_import_maps_to_its_distribution(tmp_path: Path) -> None:
    import sklearn

    path = write_notebook(
        tmp_path / "nb.ipynb",
        [cell("from sklearn.linear_model import LinearRegression\nmodel = LinearRegression()", "train")],
    )
    specs = [r.spec for r in run_analysis(path).requirements]
    assert f"scikit-learn=={sklearn.__version__}" in specs


def test_unknown_import_is_an_error_unless_pinned(tmp_path: Path) -> None:
    path = write_notebook(tmp_path / "nb.ipynb", [cell("import surely_not_installed_pkg\nmodel = 1", "train")])
    assert any("'surely_not_installed_pkg'" in e for e in errors(run_analysis(path)))
    (tmp_path / "pyproject.toml").write_text('[tool.nb2prod]\nrequirements = ["surely-not-installed-pkg==1.0"]\n')
    analysis = run_analysis(path)
    assert errors(analysis) == []
    assert "surely-not-installed-pkg==1.0" in [r.spec for r in analysis.requirements]


def test_names_are_normalised(tmp_path: Path) -> None:
    path = write_notebook(tmp_path / "My Fraud Model (v2).ipynb", [cell("x = 1", "export: Feature Eng")])
    analysis = run_analysis(path)
    assert analysis.dist == "my-fraud-model-v2" and analysis.package == "my_fraud_model_v2"
    assert [m.name for m in analysis.modules] == ["feature_eng"]
    reserved = write_notebook(tmp_path / "r.ipynb", [cell("x = 1", "export: train")])
    assert any("used by the generated package" in e for e in errors(run_analysis(reserved)))


def test_kale_notebook_builds_without_edits() -> None:
    assert errors(run_analysis(FIXTURES / "kale_style.ipynb")) == []


def test_nbdev_notebook_builds_without_edits() -> None:
    analysis = run_analysis(FIXTURES / "nbdev_style.ipynb")
    assert errors(analysis) == []
    assert "_clean" not in analysis.modules[0].public


def test_scopes_from_symtable() -> None:
    names = analyse_names(
        "import numpy as np\ndef f(a):\n    return np.log(a) + b\nclass C:\n    z = q\nx = [i for i in data]\ncount += 1\n"
    )
    assert dict(names.uses).keys() == {"b", "q", "data", "count"}
    assert names.binds == {"f", "C", "x", "count"}
    assert [b.statement for b in names.imports] == ["import numpy as np"]


def test_display_calls_are_dropped_with_a_note(tmp_path: Path) -> None:
    path = write_notebook(tmp_path / "nb.ipynb", [cell("model = 1\ndisplay(model)", "train")])
    analysis = run_analysis(path)
    assert errors(analysis) == []
    assert "display" not in analysis.job_cells[0].code
    assert any(f.code == "display-dropped" and f.location.line == 2 for f in analysis.findings)


def test_predict_cell_cannot_redefine_the_module_entry_points(tmp_path: Path) -> None:
    path = write_notebook(
        tmp_path / "nb.ipynb",
        [
            cell("model = 1", "train"),
            cell("def predict(model, inputs):\n    return inputs\n\ndef main():\n    pass", "predict"),
        ],
    )
    assert any("defines 'main'" in e for e in errors(run_analysis(path)))


def test_timeit_options_are_stripped_and_the_statement_kept(tmp_path: Path) -> None:
    source = "%timeit -n 10 -r 3 -o model = sum([1, 2])"
    analysis = run_analysis(write_notebook(tmp_path / "nb.ipynb", [cell(source, "train")]))
    assert errors(analysis) == []
    assert analysis.job_cells[0].code.strip() == "model = sum([1, 2])"
