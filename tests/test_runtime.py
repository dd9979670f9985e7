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
