"""Quality gates: the `assert`s of a metrics cell become checks that also hold under `python -O`.

The rewrite works on the syntax tree, statement by statement: every other statement of the cell,
and its order, stays as written (also a statement after `assert ...;` on the same line), and the
cell keeps its line count, so the source map still points at the notebook's lines.

- An `assert` alone on its lines becomes `if not (TEST): raise _nb2prod.QualityGateError(MESSAGE)`.
- An `assert` that shares a line with another statement (`metrics = {...}; assert ok`, or the body
  of a one-line `if`) becomes the expression `(TEST) or _nb2prod.quality_gate_failed(MESSAGE)`,
  which can stand wherever a simple statement can.

Both evaluate MESSAGE only when TEST fails, as `assert` does. Asserts inside the functions and
classes a metrics cell defines stay asserts: they run whenever the function is called.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any, Iterable

GATE_ERROR = "_nb2prod.QualityGateError"
GATE_FAILED = "_nb2prod.quality_gate_failed"


def gates_to_errors(code: str) -> str:
    """`code` with every quality-gate `assert` rewritten (see the module's docstring)."""
    tree = ast.parse(code)
    lines = code.split("\n")
    asserts = sorted(_gate_asserts(tree), key=lambda node: (node.lineno, node.col_offset), reverse=True)
    for node in asserts:  # from the end, so earlier positions stay valid
        start_line, end_line = node.lineno - 1, (node.end_lineno or node.lineno) - 1
        start = _char_offset(lines[start_line], node.col_offset)
        end = _char_offset(lines[end_line], node.end_col_offset or 0)
        test = _segment(code, node.test)
        message = _segment(code, node.msg) if node.msg is not None else repr(f"quality gate failed: {_one_line(node)}")
        before, after = lines[start_line][:start], lines[end_line][end:]
        alone = not before.strip() and (not after.strip() or after.lstrip().startswith("#"))
        # the same number of lines: padding goes inside the call's parentheses
        padding = "\n" * ((end_line - start_line) - test.count("\n") - message.count("\n"))
        if alone:
            replacement = f"if not ({test}): raise {GATE_ERROR}({message}{padding})"
        else:
            replacement = f"({test}) or {GATE_FAILED}({message}{padding})"
        new = (before + replacement + after).split("\n")
        lines[start_line : end_line + 1] = new
    return "\n".join(lines)


def _gate_asserts(tree: ast.Module) -> list[ast.Assert]:
    """Asserts that run as part of the cell's own flow: at top level or in its `if`, `for`,
    `while`, `with`, `try` and `match` blocks, not inside a function, class or lambda."""
    found: list[ast.Assert] = []

    def visit(statements: list[ast.stmt]) -> None:
        for statement in statements:
            if isinstance(statement, ast.Assert):
                found.append(statement)
            elif isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            else:
                for name in ("body", "orelse", "finalbody"):
                    visit(getattr(statement, name, None) or [])
                for handler in getattr(statement, "handlers", None) or []:
                    visit(handler.body)
                for case in getattr(statement, "cases", None) or []:
                    visit(case.body)

    visit(tree.body)
    return found


def _char_offset(line: str, byte_offset: int) -> int:
    """The AST's column offsets count UTF-8 bytes; strings index characters."""
    return len(line.encode("utf-8")[:byte_offset].decode("utf-8", errors="ignore"))


def _segment(code: str, node: ast.expr) -> str:
    """The expression's own text (comments and line breaks inside it kept; it goes in parentheses)."""
    segment = ast.get_source_segment(code, node)
    return segment if segment is not None else ast.unparse(node)


def _one_line(node: ast.Assert) -> str:
    return ast.unparse(node.test)


# ---- gates recorded for live monitoring ----------------------------------------------------------

GATE_OPS = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}
FLIPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}


@dataclass(frozen=True)
class Gate:
    """`metric OP value`: a simple comparison the metrics cell asserts (`value` a number, or the
    name of the job parameter that holds it)."""

    metric: str
    op: str
    value: float | None
    parameter: str | None
    cell: int  # notebook cell index (0-based, as in nb2prod.json `cells`)
    line: int  # line in the cell (1-based)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"metric": self.metric, "op": self.op, "cell": self.cell, "line": self.line}
        if self.parameter is not None:
            data["parameter"] = self.parameter
        else:
            data["value"] = self.value
        return data


@dataclass(frozen=True)
class UnmonitoredGate:
    """An assert of the metrics cell that is not a simple comparison of a metric with a number or a
    parameter: it still gates training, but it cannot be checked on live labels."""

    cell: int
    line: int
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"cell": self.cell, "line": self.line, "text": self.text}

    def describe(self) -> str:
        return f"cell {self.cell + 1}, line {self.line}: assert {self.text}: not monitored live"


def quality_gates(
    code: str, cell: int, parameters: Iterable[str]
) -> tuple[tuple[Gate, ...], tuple[UnmonitoredGate, ...]]:
    """The gates a metrics cell's asserts state: `metrics["k"] >= 0.8`, `0.8 <= metrics["k"]`,
    `metrics["k"] < limit` (a job parameter), `x >= 0.8` where the cell bound `x = metrics["k"]`
    before, chains around one metric (`0.8 <= m <= 1`) and `and` of such comparisons. Every other
    assert is returned as unmonitored, never guessed."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return (), ()
    params = set(parameters)
    aliases = _metric_aliases(tree)
    gates: list[Gate] = []
    unmonitored: list[UnmonitoredGate] = []
    for node in sorted(_gate_asserts(tree), key=lambda n: (n.lineno, n.col_offset)):
        found = _simple_gates(node.test, aliases.get(node.lineno, {}), params, cell, node.lineno)
        if found is None:
            unmonitored.append(UnmonitoredGate(cell, node.lineno, _one_line(node)))
        else:
            gates.extend(found)
    return tuple(gates), tuple(unmonitored)


def notebook_gates(
    cells: Iterable[Any], parameters: Iterable[str]
) -> tuple[tuple[Gate, ...], tuple[UnmonitoredGate, ...]]:
    """The gates of every metrics cell (`RoledCell`s, in notebook order)."""
    names = tuple(parameters)
    gates: list[Gate] = []
    unmonitored: list[UnmonitoredGate] = []
    for roled in cells:
        if "metrics" in roled.roles and "skip" not in roled.roles and roled.cell.cell_type == "code":
            found, other = quality_gates(roled.code, roled.index, names)
            gates.extend(found)
            unmonitored.extend(other)
    return tuple(gates), tuple(unmonitored)


def _metric_aliases(tree: ast.Module) -> dict[int, dict[str, str]]:
    """For each assert's line, the names bound by `x = metrics["k"]` at the cell's top level before it
    (a later plain assignment to `x` unbinds it)."""
    events: list[tuple[int, str, str | None]] = []
    for statement in tree.body:
        if (
            isinstance(statement, ast.Assign)
            and len(statement.targets) == 1
            and isinstance(statement.targets[0], ast.Name)
        ):
            events.append((statement.lineno, statement.targets[0].id, _metric_key(statement.value, {})))
    lines = sorted({node.lineno for node in ast.walk(tree) if isinstance(node, ast.Assert)})
    by_line: dict[int, dict[str, str]] = {}
    for line in lines:
        bound: dict[str, str] = {}
        for at, name, key in events:
            if at >= line:
                break
            if key is None:
                bound.pop(name, None)
            else:
                bound[name] = key
        by_line[line] = bound
    return by_line


def _metric_key(node: ast.expr, aliases: dict[str, str]) -> str | None:
    if isinstance(node, ast.Name):
        return aliases.get(node.id)
    if (
        isinstance(node, ast.Subscript)
        and isinstance(node.value, ast.Name)
        and node.value.id == "metrics"
        and isinstance(node.slice, ast.Constant)
        and isinstance(node.slice.value, str)
    ):
        return node.slice.value
    return None


def _threshold(node: ast.expr, params: set[str]) -> tuple[float | None, str | None] | None:
    if isinstance(node, ast.Name) and node.id in params:
        return None, node.id
    sign = 1.0
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        sign = -1.0 if isinstance(node.op, ast.USub) else 1.0
        node = node.operand
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return sign * float(node.value), None
    return None


def _simple_gates(test: ast.expr, aliases: dict[str, str], params: set[str], cell: int, line: int) -> list[Gate] | None:
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
        gates: list[Gate] = []
        for value in test.values:
            found = _simple_gates(value, aliases, params, cell, line)
            if found is None:
                return None
            gates.extend(found)
        return gates
    if not isinstance(test, ast.Compare) or not all(type(op) in GATE_OPS for op in test.ops):
        return None
    operands = [test.left, *test.comparators]
    keys = [_metric_key(node, aliases) for node in operands]
    metric_at = [i for i, key in enumerate(keys) if key is not None]
    if len(metric_at) != 1:
        return None
    where = metric_at[0]
    metric = keys[where]
    assert metric is not None
    gates = []
    for i, op in enumerate(test.ops):
        left, right = i, i + 1
        if where not in (left, right):
            return None  # a comparison between two thresholds
        other = right if where == left else left
        bound = _threshold(operands[other], params)
        if bound is None:
            return None
        symbol = GATE_OPS[type(op)]
        gates.append(Gate(metric, symbol if where == left else FLIPPED[symbol], bound[0], bound[1], cell, line))
    return gates
