"""The `parameters` cell: literal assignments (papermill's convention) become typed job parameters."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass, replace
from typing import Any

SCALAR_TYPES = {"int": int, "float": float, "str": str, "bool": bool}
CONTAINER_TYPES = {"list": list, "dict": dict}

PARAMS_METHODS = frozenset({"schema", "from_dict", "to_dict"})  # methods of the generated Params class


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str  # "int" | "float" | "str" | "bool" | "list" | "dict" | "any"
    default: Any  # JSON-compatible literal
    help: str
    nullable: bool
    cell_index: int
    line: int
    secret: bool = False  # the value comes from env:/file: at training time, never from a literal

    def schema(self) -> dict[str, Any]:
        if self.secret:  # no default: nothing of a secret's literal reaches a generated file
            return {"type": self.type, "help": self.help, "nullable": self.nullable, "secret": True}
        return {"type": self.type, "default": self.default, "help": self.help, "nullable": self.nullable}


_SECRET_HELP = re.compile(r"^secret\b", re.IGNORECASE)


def is_secret_help(help_text: str) -> bool:
    """A help comment starting with the word `secret` (`# secret: the scoring service key`)."""
    return bool(_SECRET_HELP.match(help_text.strip()))


def as_secret(parameter: Parameter) -> tuple[Parameter, bool]:
    """The parameter marked secret, its default replaced by the empty value of its type ("" for a
    string, else None); and whether the notebook's literal held a value that is now dropped."""
    blank: Any = "" if parameter.type == "str" else None
    dropped = parameter.default not in ("", None)
    nullable = parameter.nullable or blank is None
    return replace(parameter, default=blank, nullable=nullable, secret=True), dropped


class ParameterError(Exception):
    def __init__(self, message: str, line: int):
        super().__init__(message)
        self.message = message
        self.line = line


def parse_parameters(code: str, cell_index: int) -> list[Parameter]:
    tree = ast.parse(code)
    comments = _trailing_comments(code)
    found: list[Parameter] = []
    for statement in tree.body:
        line = statement.lineno
        if isinstance(statement, ast.Assign):
            if len(statement.targets) != 1 or not isinstance(statement.targets[0], ast.Name):
                raise ParameterError("a parameter must be one name assigned a literal, e.g. `n_estimators = 100`", line)
            name, annotation, value = statement.targets[0].id, None, statement.value
        elif (
            isinstance(statement, ast.AnnAssign)
            and isinstance(statement.target, ast.Name)
            and statement.value is not None
        ):
            name, annotation, value = statement.target.id, statement.annotation, statement.value
        elif (
            isinstance(statement, ast.Expr)
            and isinstance(statement.value, ast.Constant)
            and isinstance(statement.value.value, str)
        ):
            continue  # a docstring-like note
        else:
            raise ParameterError(
                f"`{_source(code, statement)}` is not a literal assignment; a parameters cell holds only assignments like `seed = 42`, which papermill injects over",
                line,
            )
        if name.startswith("_"):
            raise ParameterError(
                f"parameter name {name!r} starts with an underscore, which nb2prod keeps for generated code", line
            )
        if name in PARAMS_METHODS:
            raise ParameterError(
                f"parameter name {name!r} is taken by the generated `Params.{name}` method, so the parameter would "
                f"hide it; rename the parameter (e.g. {name + '_value'!r})",
                line,
            )
        try:
            default = ast.literal_eval(value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            raise ParameterError(
                f"the value of parameter {name!r} (`{_source(code, value)}`) is not a literal; compute it in a train cell from a literal parameter instead",
                line,
            ) from None
        if not _json_compatible(default):
            raise ParameterError(
                f"the value of parameter {name!r} must be a str, number, bool, None, or a list or dict of those", line
            )
        depth = _depth(default)
        if depth > MAX_DEPTH:
            raise ParameterError(
                f"the value of parameter {name!r} nests lists or dicts {depth} deep; nb2prod accepts at most {MAX_DEPTH} levels (Python's parser stops at 200), so load deeper data from a file in a train cell",
                line,
            )
        infinite = _non_finite(default)
        if infinite is not None:
            raise ParameterError(
                f"the value of parameter {name!r} holds `{_source(code, value) if infinite == 'self' else infinite}`, which is not a finite number (a literal like 1e999 overflows to inf); use float(\"inf\") in a train cell, or a finite value",
                line,
            )
        type_name, nullable = _type_of(name, annotation, default, line, code)
        if type_name == "float" and isinstance(default, int) and not isinstance(default, bool):
            default = float(default)
        if isinstance(default, tuple):
            default = list(default)
        found.append(
            Parameter(
                name, type_name, default, comments.get(statement.end_lineno or line, ""), nullable, cell_index, line
            )
        )
    return found


def _type_of(name: str, annotation: ast.expr | None, default: Any, line: int, code: str) -> tuple[str, bool]:
    if annotation is None:
        if default is None:
            return "any", True
        for guessed, python_type in (
            ("bool", bool),
            ("int", int),
            ("float", float),
            ("str", str),
            ("list", (list, tuple)),
            ("dict", dict),
        ):
            if isinstance(default, python_type):  # type: ignore[arg-type]
                return guessed, False
        return "any", False
    type_name, nullable = _annotation(annotation)
    if type_name is None:
        raise ParameterError(
            f"parameter {name!r} is annotated `{ast.unparse(annotation)}`; nb2prod knows int, float, str, bool, list, dict and `X | None`",
            line,
        )
    if default is None:
        if not nullable:
            raise ParameterError(
                f"parameter {name!r} is None but its annotation `{ast.unparse(annotation)}` does not allow None", line
            )
        return type_name, True
    if not _fits(type_name, default):
        raise ParameterError(
            f"parameter {name!r} is annotated {type_name} but its value {default!r} is a {type(default).__name__}", line
        )
    return type_name, nullable


def _annotation(node: ast.expr) -> tuple[str | None, bool]:
    if isinstance(node, ast.Name) and node.id in {**SCALAR_TYPES, **CONTAINER_TYPES}:
        return node.id, False
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        if node.value.id in CONTAINER_TYPES:
            return node.value.id, False
        if node.value.id == "Optional":
            inner, _ = _annotation(node.slice)
            return inner, True
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        sides = [node.left, node.right]
        nones = [s for s in sides if isinstance(s, ast.Constant) and s.value is None]
        others = [s for s in sides if s not in nones]
        if len(nones) == 1 and len(others) == 1:
            inner, _ = _annotation(others[0])
            return inner, True
    return None, False


def _fits(type_name: str, value: Any) -> bool:
    if type_name == "bool":
        return isinstance(value, bool)
    if type_name == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if type_name == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if type_name == "str":
        return isinstance(value, str)
    if type_name == "list":
        return isinstance(value, (list, tuple))
    if type_name == "dict":
        return isinstance(value, dict)
    return True


MAX_DEPTH = 100


def _depth(value: Any) -> int:
    """How deeply lists and dicts nest in `value` (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend((v, level + 1) for v in item)
            deepest = max(deepest, level + 1)
        elif isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
            deepest = max(deepest, level + 1)
    return deepest


def _non_finite(value: Any) -> str | None:
    """'self' if `value` is inf or nan, the repr of a non-finite number inside it, or None."""
    import math

    if isinstance(value, float) and not math.isfinite(value):
        return "self"
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return repr(item)
        if isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    return None


def _json_compatible(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_json_compatible(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_compatible(v) for k, v in value.items())
    return False


def _trailing_comments(code: str) -> dict[int, str]:
    comments: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(code).readline):
        if token.type == tokenize.COMMENT:
            text = token.string.lstrip("#").strip()
            if token.line[: token.start[1]].strip():  # code before it on the line
                comments[token.start[0]] = text
    return comments


def _source(code: str, node: ast.AST) -> str:
    text = ast.get_source_segment(code, node) or ast.unparse(node)
    text = " ".join(text.split())
    return text if len(text) <= 60 else text[:57] + "..."
