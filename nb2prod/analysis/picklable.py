"""A model must be loadable outside the job: refuse classes and functions of train cells in it.

A saved model (pickle, joblib, skops) refers to its classes, and to functions it holds (a
`FunctionTransformer(func=...)`, a `key=`), by module and name. A class defined in a train or
metrics cell lives in the job's `__main__` only while the job runs, so the run would save a model
that `predict`, `serve` and `score` cannot load. This check follows, on the syntax tree, what flows
into the model variable: a class of a job cell instantiated or referenced into it, or a job-cell
function passed as a value into it (an argument of a call that is not a builtin, an element of a
container), also through the job-cell functions called on the way. The run-time side is in
`nb2prod/runs/collect.py`, for what static analysis cannot see.
"""

from __future__ import annotations

import ast
import builtins
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nb2prod.errors import Finding
from nb2prod.notebook import Notebook

if TYPE_CHECKING:
    from nb2prod.analysis.analyse import CodeCell as _JobCell

_BUILTINS = frozenset(dir(builtins))
# methods that store their arguments in the object they are called on
_STORING_METHODS = frozenset({"append", "extend", "insert", "add", "update", "set_params", "setdefault"})


@dataclass(frozen=True)
class _Definition:
    name: str
    kind: str  # "class" | "function"
    cell: _JobCell
    line: int
    node: ast.AST


def unloadable_model_findings(notebook: Notebook, job_cells: Iterable[_JobCell], model_variable: str) -> list[Finding]:
    """Errors for each class or function of a job cell that the model would refer to."""
    cells = list(job_cells)
    trees = []
    for cell in cells:
        try:
            trees.append((cell, ast.parse(cell.code)))
        except (SyntaxError, ValueError, RecursionError):
            continue
    definitions: dict[str, _Definition] = {}
    for cell, tree in trees:
        for node in _flow_statements(tree.body):
            if isinstance(node, ast.ClassDef):
                definitions[node.name] = _Definition(node.name, "class", cell, node.lineno, node)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                definitions[node.name] = _Definition(node.name, "function", cell, node.lineno, node)
    if not definitions:
        return []
    flows: dict[str, set[str]] = {}  # variable -> variables and definitions whose values it may hold
    for _, tree in trees:
        for statement in _flow_statements(tree.body):
            for target, sources in _statement_flows(statement, definitions):
                flows.setdefault(target, set()).update(sources)
    reached: set[str] = set()
    pending = [model_variable]
    while pending:
        name = pending.pop()
        for source in flows.get(name, ()):
            if source not in reached:
                reached.add(source)
                pending.append(source)
    findings = []
    for name in sorted(
        reached & set(definitions), key=lambda n: (definitions[n].cell.roled.index, definitions[n].line)
    ):
        definition = definitions[name]
        roled = definition.cell.roled
        what = "class" if definition.kind == "class" else "function"
        findings.append(
            Finding(
                "error",
                "model-refers-to-job-code",
                f"the model {model_variable!r} refers to the {what} {name!r} defined in this {roled.primary_role} cell; "
                "a saved model refers to it by module and name, and it exists only while the job runs, "
                "so predict could not load the model",
                notebook.location(roled.cell, roled.primary_role, definition.line),
                f"Move `{name}` to an `export` cell (it then ships in the package and the model can be loaded).",
            )
        )
    return findings


def _flow_statements(statements: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The statements of the cell's own flow, also inside its blocks, not inside functions or classes."""
    for statement in statements:
        yield statement
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for name in ("body", "orelse", "finalbody"):
            yield from _flow_statements(getattr(statement, name, None) or [])
        for handler in getattr(statement, "handlers", None) or []:
            yield from _flow_statements(handler.body)
        for case in getattr(statement, "cases", None) or []:
            yield from _flow_statements(case.body)


def _root(node: ast.expr) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Starred)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _target_names(target: ast.expr) -> list[str]:
    if isinstance(target, (ast.Tuple, ast.List)):
        return [n for element in target.elts for n in _target_names(element)]
    root = _root(target)
    return [root] if root else []


def _statement_flows(statement: ast.stmt, definitions: dict[str, _Definition]) -> list[tuple[str, set[str]]]:
    flows: list[tuple[str, set[str]]] = []
    for node in ast.walk(statement) if not isinstance(statement, (ast.FunctionDef, ast.ClassDef)) else ():
        if isinstance(node, ast.NamedExpr):
            flows.append((node.target.id, _sources(node.value, definitions)))
    if isinstance(statement, ast.Assign):
        sources = _sources(statement.value, definitions)
        flows += [(name, sources) for target in statement.targets for name in _target_names(target)]
    elif isinstance(statement, (ast.AnnAssign, ast.AugAssign)) and statement.value is not None:
        flows += [(name, _sources(statement.value, definitions)) for name in _target_names(statement.target)]
    elif isinstance(statement, (ast.For, ast.AsyncFor)):
        flows += [(name, _sources(statement.iter, definitions)) for name in _target_names(statement.target)]
    elif isinstance(statement, (ast.With, ast.AsyncWith)):
        for item in statement.items:
            if item.optional_vars is not None:
                sources = _sources(item.context_expr, definitions)
                flows += [(name, sources) for name in _target_names(item.optional_vars)]
    elif isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call):
        call = statement.value
        if isinstance(call.func, ast.Attribute) and call.func.attr in _STORING_METHODS:
            root = _root(call.func.value)
            if root:
                stored: set[str] = set()
                for argument in [*call.args, *(k.value for k in call.keywords)]:
                    stored |= _sources(argument, definitions)
                flows.append((root, stored))
    return flows


def _sources(expression: ast.expr, definitions: dict[str, _Definition], seen: frozenset[str] = frozenset()) -> set[str]:
    """Variables and job-cell definitions whose values `expression` may carry."""
    found: set[str] = set()
    called: set[int] = set()
    builtin_arguments: set[int] = set()
    for node in ast.walk(expression):
        if isinstance(node, ast.Call):
            called.add(id(node.func))
            if isinstance(node.func, ast.Name) and node.func.id in _BUILTINS and node.func.id not in definitions:
                builtin_arguments.update(id(a) for a in [*node.args, *(k.value for k in node.keywords)])
    for node in ast.walk(expression):
        if not isinstance(node, ast.Name) or not isinstance(node.ctx, ast.Load):
            continue
        definition = definitions.get(node.id)
        if definition is None:
            found.add(node.id)
        elif definition.kind == "class":
            found.add(node.id)  # an instance, or the class itself
        elif id(node) in called:
            if node.id not in seen:  # what the function builds may end up in the value
                found |= _function_sources(definition, definitions, seen | {node.id})
        elif id(node) not in builtin_arguments:
            found.add(node.id)  # the function itself, held by the value
    return found


def _function_sources(definition: _Definition, definitions: dict[str, _Definition], seen: frozenset[str]) -> set[str]:
    """Job-cell classes a called job-cell function instantiates, and job-cell functions it passes on."""
    found: set[str] = set()
    for node in ast.walk(definition.node):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            inner = definitions.get(node.func.id)
            if inner is not None and inner.kind == "class":
                found.add(inner.name)
            elif inner is not None and inner.name not in seen:
                found |= _function_sources(inner, definitions, seen | {inner.name})
            for argument in [*node.args, *(k.value for k in node.keywords)]:
                if isinstance(argument, ast.Name) and argument.id in definitions and node.func.id not in _BUILTINS:
                    found.add(argument.id)
    return {name for name in found if name in definitions}
