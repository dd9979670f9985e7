from __future__ import annotations

from pathlib import Path

import pytest

from nb2prod.errors import InputError
from nb2prod.runs.params import resolve_params, specs_from_schema

SCHEMA = [
    {"name": "n_estimators", "type": "int", "default": 100, "help": "trees"},
    {"name": "test_size", "type": "float", "default": 0.25, "help": ""},
    {"name": "balanced", "type": "bool", "default": False, "help": ""},
    {"name": "data_path", "type": "str", "default": "data.csv", "help": ""},
    {"name": "depths", "type": "list", "default": [2, 4], "help": ""},
    {"name": "tags", "type": "list", "default": ["a"], "help": ""},
]


@pytest.fixture
def specs():
    return specs_from_schema(SCHEMA)


def test_text_values_are_converted_with_the_declared_type(specs):
    values, overridden = resolve_params(
        specs,
        [
            ("n_estimators", "7"),
            ("test_size", "1"),
            ("balanced", "true"),
            ("data_path", "123"),
            ("depths", "[3, 5]"),
            ("tags", "x,y"),
        ],
    )
    assert values == {
        "n_estimators": 7,
        "test_size": 1.0,
        "balanced": True,
        "data_path": "123",  # a str parameter stays a string even when it looks like a number
        "depths": [3, 5],
        "tags": ["x", "y"],
    }
    assert isinstance(values["test_size"], float)
    assert overridden == ("n_estimators", "test_size", "balanced", "data_path", "depths", "tags")


def test_defaults_when_nothing_is_given(specs):
    values, overridden = resolve_params(specs)
    assert values["n_estimators"] == 100 and overridden == ()


@pytest.mark.parametrize(
    "name, text, expected",
    [
        ("n_estimators", "1.5", "'n_estimators' expects an int, got '1.5'"),
        ("n_estimators", "ten", "expects an int"),
        ("test_size", "big", "'test_size' expects a float"),
        ("balanced", "maybe", "'balanced' expects a bool"),
        ("depths", "[1, 2.5]", "'depths' expects an int"),
        ("depths", "{a: 1}", "'depths' expects a list"),
        ("depths", "1,x", "'depths' expects an int, got 'x'"),
    ],
)
def test_wrong_types_are_refused_naming_the_parameter(specs, name, text, expected):
    with pytest.raises(InputError, match=expected.replace("[", r"\[").replace(".", r"\.")):
        resolve_params(specs, [(name, text)])


def test_unknown_parameter_lists_the_known_ones(specs):
    with pytest.raises(
        InputError, match=r"-p n_trees: unknown parameter 'n_trees' \(the job's parameters are: balanced"
    ):
        resolve_params(specs, [("n_trees", "3")])


def test_params_file_then_command_line(specs, tmp_path: Path):
    path = tmp_path / "params.yaml"
    path.write_text("n_estimators: 5\ntest_size: 0.5\ndepths: [1, 2, 3]\n")
    values, overridden = resolve_params(specs, [("n_estimators", "9")], [path])
    assert (values["n_estimators"], values["test_size"], values["depths"]) == (9, 0.5, [1, 2, 3])
    assert overridden == ("n_estimators", "test_size", "depths")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("n_estimators: '5'\n", "'n_estimators' expects an int"),
        ("balanced: 1\n", "'balanced' expects a bool"),
        ("nope: 1\n", "unknown parameter 'nope'"),
        ("- 1\n", "must be a mapping"),
        ("a: [\n", "not valid YAML/JSON"),
    ],
)
def test_bad_params_files_are_refused(specs, tmp_path: Path, text, expected):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=expected) as info:
        resolve_params(specs, [], [path])
    assert str(path) in info.value.message


def test_schema_as_mapping_and_json_schema_types():
    specs = specs_from_schema(
        {"n": {"type": "integer", "default": 3}, "lr": {"default": 0.1}, "x": {"type": ["null", "string"]}}
    )
    assert (specs["n"].type, specs["lr"].type, specs["x"].type) == ("int", "float", "str")


def test_a_fraction_for_an_int_parameter_hints_the_float_default():
    specs = specs_from_schema([{"name": "C", "type": "int", "default": 30, "help": ""}])
    with pytest.raises(InputError) as caught:
        resolve_params(specs, [("C", "0.5")])
    assert caught.value.message == (
        "-p C: parameter 'C' expects an int, got '0.5'; the parameter is an int because its default is written"
        " `C = 30`: write `C = 30.0` in the notebook's parameters cell to accept non-whole values."
    )
