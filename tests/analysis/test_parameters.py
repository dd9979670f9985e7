"""The parameters cell as nb2prod reads it: help comments, Unicode names, literal limits."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from nbtest_helpers import cell, write_notebook

from nb2prod import api
from nb2prod.analysis.parameters import MAX_DEPTH, ParameterError, parse_parameters
from nb2prod.errors import NotebookErrors


def build(tmp_path: Path, parameters: str, train: str = "model = 1") -> api.BuildResult:
    path = write_notebook(tmp_path / "nb.ipynb", [cell(parameters, "parameters"), cell(train, "train")])
    return api.build(path, output=tmp_path / "out")


@pytest.mark.parametrize("help_text", ['number of "trees"', "a quote '", 'triple """', "ends in \\", "\\N{bogus}"])
def test_help_comments_ending_in_quotes_build_and_read_back(tmp_path: Path, help_text: str) -> None:
    result = build(tmp_path, f"n_estimators = 100  # {help_text}")
    params = (result.output_dir / "src" / "nb" / "params.py").read_text()
    tree = ast.parse(params)
    schema = next(n for n in tree.body if isinstance(n, ast.AnnAssign) and n.target.id == "PARAMETER_SCHEMA")
    assert ast.literal_eval(schema.value)["n_estimators"]["help"] == help_text
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef))
    docstring = cls.body[2].value.value  # the attribute's docstring after `n_estimators: int = 100`
    assert docstring.rstrip() == help_text


def test_unicode_parameter_names_are_accepted(tmp_path: Path) -> None:
    result = build(tmp_path, "ñ = 3  # eñe\nβeta: float = 0.5", "model = ñ * βeta")
    manifest = json.loads((result.output_dir / "nb2prod.json").read_text())
    assert manifest["parameters"]["ñ"]["default"] == 3
    assert "--ñ" in (result.output_dir / "k8s" / "train-job.yaml").read_text().encode().decode("unicode_escape")


def test_nfkc_names_are_the_ones_python_binds(tmp_path: Path) -> None:
    result = build(tmp_path, "ﬁle_count = 2", "model = file_count")  # PEP 3131: ﬁ is fi
    assert [p for p in json.loads((result.output_dir / "nb2prod.json").read_text())["parameters"]] == ["file_count"]


def test_a_literal_nested_deeper_than_the_parser_allows_is_refused_with_its_place(tmp_path: Path) -> None:
    with pytest.raises(NotebookErrors) as info:
        build(tmp_path, "x = 1\nn = " + "[" * 200 + "]" * 200)
    assert "cell 1 (id c0, parameters), line 2" in info.value.message and "200 deep" in info.value.message
    build(tmp_path, "n = " + "[" * MAX_DEPTH + "]" * MAX_DEPTH)  # the limit itself builds


@pytest.mark.parametrize("literal", ["1e999", "-1e999", "[1, 1e999]", "{'a': {'b': 1e400}}"])
def test_an_overflowing_float_gets_a_message_with_its_place(tmp_path: Path, literal: str) -> None:
    with pytest.raises(NotebookErrors) as info:
        build(tmp_path, f"a = 1\nx = {literal}")
    message = info.value.message
    assert "cell 1 (id c0, parameters), line 2" in message and "not a finite number" in message


def test_parse_errors_carry_their_line() -> None:
    with pytest.raises(ParameterError) as info:
        parse_parameters("a = 1\nb = 2\nc = 1e999", 0)
    assert info.value.line == 3
