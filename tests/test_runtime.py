"""The runtime shipped in every generated package converts parameters by the same rules as
`nb2prod train -p`, so the package's own train command and nb2prod's agree."""

from __future__ import annotations

from typing import Any

import pytest

from nb2prod import runtime
from nb2prod.errors import InputError
from nb2prod.runs.params import convert_text, specs_from_schema

SCHEMA: dict[str, dict[str, Any]] = {
    "n": {"type": "int", "default": 3, "help": "", "nullable": False},
    "rate": {"type": "float", "default": 0.5, "help": "", "nullable": False},
    "on": {"type": "bool", "default": True, "help": "", "nullable": False},
    "name": {"type": "str", "default": "a", "help": "", "nullable": False},
    "sizes": {"type": "list", "default": [1, 2], "help": "", "nullable": False},
    "labels": {"type": "list", "default": ["x"], "help": "", "nullable": False},
    "opts": {"type": "dict", "default": {"a": 1}, "help": "", "nullable": False},
    "limit": {"type": "int", "default": None, "help": "", "nullable": True},
}
TEXTS = ["7", "-2", "1.5", "abc", "true", "no", "1,2,3", "[4, 5]", "a,b", '{"k": 2}', "null", "", "3.0"]


@pytest.mark.parametrize("parameter", sorted(SCHEMA))
@pytest.mark.parametrize("text", TEXTS)
def test_generated_runtime_agrees_with_nb2prod_train(parameter: str, text: str) -> None:
    spec = specs_from_schema(SCHEMA)[parameter]
    try:
        expected: Any = ("ok", convert_text(spec, text))
    except InputError:
        expected = ("refused", None)
    try:
        actual: Any = ("ok", runtime.coerce(parameter, SCHEMA[parameter], text))
    except runtime.ParameterError:
        actual = ("refused", None)
    assert actual == expected


def test_train_overrides_take_the_forms_of_nb2prod_train(tmp_path) -> None:
    import json as json_module

    params_file = tmp_path / "params.json"
    params_file.write_text(json_module.dumps({"rate": 2, "sizes": [3]}))
    values, options = runtime.parse_overrides(
        ["-p", "n", "5", "--on", "no", "-f", str(params_file), "--rate=0.25", "--output", "out"], SCHEMA
    )
    assert values == {"n": 5, "on": False, "rate": 0.25, "sizes": [3]}
    assert options == {"output": "out"}
    yaml_file = tmp_path / "params.yaml"
    yaml_file.write_text("labels: [a, b]\n")
    assert runtime.parse_overrides(["-f", str(yaml_file)], SCHEMA)[0] == {"labels": ["a", "b"]}
    for bad in (["-p", "nope", "1"], ["-p", "n"], ["-f", str(tmp_path / "missing.json")], ["n", "3"], ["-p", "n", "x"]):
        with pytest.raises(runtime.ParameterError):
            runtime.parse_overrides(bad, SCHEMA)
