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
