"""Names a cell binds and the free names it uses, from `symtable` (Python's own scoping) and the AST."""

from __future__ import annotations

import ast
import builtins
import symtable
from dataclasses import dataclass

BUILTINS = frozenset(dir(builtins)) | {
    "__file__",
    "__name__",
    "__doc__",
    "__builtins__",
    "__spec__",
    "__loader__",
    "__package__",
}


@dataclass(frozen=True)
class ImportBinding:
    name: str  # the name the import binds ("*" for a star import)
    statement: str  # a one-name import statement that binds exactly `name`
    module: str  # the module imported from ("" for a relative import)
    level: int  # relative import level
    line: int


@dataclass(frozen=True)
class CellNames:
    binds: frozenset[str]  # top-level names bound by anything but an import
    imports: tuple[ImportBinding, ...]  # top-level imports (hoisted into the module's import block)
    nested_imports: tuple[ImportBinding, ...]  # imports inside functions or blocks (requirements only)
    uses: tuple[tuple[str, int], ...]  # free names with the first line that uses them
    defines_callables: bool
    hoistable_lines: frozenset[int]  # lines of top-level imports that can be moved out of the code
    # Scoping that differs when the cell's code runs inside a function (the job's `run`, a test):
    declared_global: tuple[tuple[str, int], ...] = ()  # `global NAME` in a def (name, line of the def)
    class_reads_own: tuple[tuple[str, int], ...] = ()  # a class body reads a name it also assigns
    callable_globals: frozenset[str] = frozenset()  # globals read inside the cell's defs and classes


def analyse_names(code: str, filename: str = "<cell>") -> CellNames:
    tree = ast.parse(code, filename)
    table = symtable.symtable(code, filename, "exec")
    imports, hoistable = _top_level_imports(tree)
    imported = {b.name for b in imports}
    binds: set[str] = set()
    referenced: set[str] = set()
    for symbol in table.get_symbols():
        name = symbol.get_name()
        if symbol.is_assigned() or (symbol.is_imported() and name not in imported):
            binds.add(name)
        if symbol.is_referenced():
            referenced.add(name)
    top_level = set(binds)
    global_reads: set[str] = set()
    for child in table.get_children():
        _collect_nested(child, referenced, binds, global_reads)
    # `global x` in a def that also reads x: unless the cell's top level binds x, x comes from outside.
    referenced.update(global_reads - top_level)
    read_outside = global_reads - top_level
    declared, callable_globals = _scope_hazards(table)
    hoistable = _keep_rebound_imports_in_place(imports, hoistable, binds)
    first_use = _first_loads(tree)
    read_before_bound, class_reads = _read_before_bound(tree)
    uses: list[tuple[str, int]] = []
    for name in sorted(referenced | read_before_bound):
        if name in BUILTINS and name not in binds and name not in imported:
            continue
        if name in imported:
            continue
        if name in binds and name not in read_before_bound and name not in read_outside:
            continue
        uses.append((name, first_use.get(name, 1)))
    uses.sort(key=lambda item: (item[1], item[0]))
    nested = tuple(_all_imports(tree, exclude=set(id(n) for n in tree.body)))
    defines_callables = any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) for n in tree.body)
    return CellNames(
        frozenset(binds),
        tuple(imports),
        nested,
        tuple(uses),
        defines_callables,
        frozenset(hoistable),
        tuple(declared),
        tuple(class_reads),
        frozenset(callable_globals),
    )


def _scope_hazards(table: symtable.SymbolTable) -> tuple[list[tuple[str, int]], set[str]]:
    declared: list[tuple[str, int]] = []
    reads: set[str] = set()
    stack = list(table.get_children())
    while stack:
        child = stack.pop()
        for symbol in child.get_symbols():
            name = symbol.get_name()
            if child.get_type() == "function" and symbol.is_declared_global():
                declared.append((name, child.get_lineno()))
            if symbol.is_referenced() and symbol.is_global():
                reads.add(name)
        stack.extend(child.get_children())
    return sorted(set(declared), key=lambda x: (x[1], x[0])), reads


def _collect_nested(table: symtable.SymbolTable, referenced: set[str], binds: set[str], global_reads: set[str]) -> None:
    for symbol in table.get_symbols():
        if symbol.is_declared_global() and symbol.is_assigned():
            binds.add(symbol.get_name())
            if symbol.is_referenced():
                global_reads.add(symbol.get_name())
        elif symbol.is_global() and symbol.is_referenced():
            referenced.add(symbol.get_name())
    for child in table.get_children():
        _collect_nested(child, referenced, binds, global_reads)


def _first_loads(tree: ast.AST) -> dict[str, int]:
    first: dict[str, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if node.id not in first or node.lineno < first[node.id]:
                first[node.id] = node.lineno
    return first


class _ModuleLevelOrder(ast.NodeVisitor):
    """Records, at module level only (not inside defs, classes or lambdas), whether a name is
    read before it is first bound."""

    def __init__(self) -> None:
        self.bound: set[str] = set()
        self.read_first: set[str] = set()
        self.class_reads_own: list[tuple[str, int]] = []  # a class body reads a name before assigning it

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            if node.id not in self.bound:
                self.read_first.add(node.id)
        else:
            self.bound.add(node.id)

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        for target in node.targets:
            self.visit(target)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
        self.visit(node.target)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if isinstance(node.target, ast.Name) and node.target.id not in self.bound:
            self.read_first.add(node.target.id)
        self.visit(node.value)
        self.visit(node.target)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)
        self.visit(node.args)
        self.bound.add(node.name)

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_arguments(self, node: ast.arguments) -> None:
        for default in [*node.defaults, *[d for d in node.kw_defaults if d is not None]]:
            self.visit(default)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for expr in [*node.decorator_list, *node.bases, *[k.value for k in node.keywords]]:
            self.visit(expr)
        # The class body runs now, in its own namespace: what it reads first comes from outside.
        body = _ModuleLevelOrder()
        for statement in node.body:
            body.visit(statement)
        self.read_first |= body.read_first - self.bound
        self.class_reads_own.extend((name, node.lineno) for name in sorted(body.read_first & body.bound))
        self.class_reads_own.extend(body.class_reads_own)
        self.bound.add(node.name)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self.visit(node.args)

    def _visit_comprehension(self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp) -> None:
        # Only the first iterable is evaluated in the enclosing scope; the rest is the comprehension's own.
        self.visit(node.generators[0].iter)

    visit_ListComp = visit_SetComp = visit_GeneratorExp = visit_DictComp = _visit_comprehension  # type: ignore[assignment]

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        for alias in node.names:
            self.bound.add((alias.asname or alias.name).split(".")[0])

    visit_ImportFrom = visit_Import  # type: ignore[assignment]


def _read_before_bound(tree: ast.Module) -> tuple[set[str], list[tuple[str, int]]]:
    visitor = _ModuleLevelOrder()
    for statement in tree.body:
        visitor.visit(statement)
    return visitor.read_first, visitor.class_reads_own


def _import_bindings(node: ast.Import | ast.ImportFrom) -> list[ImportBinding]:
    bindings = []
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.asname:
                statement = f"import {alias.name} as {alias.asname}"
                bound = alias.asname
            else:
                statement = f"import {alias.name}"
                bound = alias.name.split(".")[0]
            bindings.append(ImportBinding(bound, statement, alias.name, 0, node.lineno))
    else:
        module = node.module or ""
        prefix = "." * node.level + module
        for alias in node.names:
            if alias.name == "*":
                bindings.append(ImportBinding("*", f"from {prefix} import *", module, node.level, node.lineno))
                continue
            bound = alias.asname or alias.name
            suffix = f" as {alias.asname}" if alias.asname else ""
            bindings.append(
                ImportBinding(bound, f"from {prefix} import {alias.name}{suffix}", module, node.level, node.lineno)
            )
    return bindings


def _top_level_imports(tree: ast.Module) -> tuple[list[ImportBinding], set[int]]:
    bindings: list[ImportBinding] = []
    hoistable: set[int] = set()
    statement_lines: dict[int, int] = {}
    for statement in tree.body:
        for line in range(statement.lineno, (statement.end_lineno or statement.lineno) + 1):
            statement_lines[line] = statement_lines.get(line, 0) + 1
    for statement in tree.body:
        if isinstance(statement, (ast.Import, ast.ImportFrom)):
            bindings.extend(_import_bindings(statement))
            span = range(statement.lineno, (statement.end_lineno or statement.lineno) + 1)
            if all(statement_lines[line] == 1 for line in span):  # alone on its lines
                hoistable.update(span)
    return bindings, hoistable


def _keep_rebound_imports_in_place(imports: list[ImportBinding], hoistable: set[int], binds: set[str]) -> set[int]:
    """An import whose name the cell also binds otherwise (`from sklearn import metrics` then
    `metrics = {...}`), or imports twice differently, stays where it is: moved to the top of the
    generated code it would bind the name at another moment than in the notebook. Star imports
    always move (Python allows them only at module level)."""
    statements: dict[str, set[str]] = {}
    for binding in imports:
        statements.setdefault(binding.name, set()).add(binding.statement)
    kept = set()
    for binding in imports:
        if binding.name != "*" and (binding.name in binds or len(statements[binding.name]) > 1):
            kept.add(binding.line)
    if not kept:
        return hoistable
    return hoistable - {line for line in hoistable if _statement_starting(imports, line) in kept}


def _statement_starting(imports: list[ImportBinding], line: int) -> int | None:
    """The first line of the import statement that covers `line` (import bindings carry their first line)."""
    starts = sorted({b.line for b in imports if b.line <= line})
    return starts[-1] if starts else None


def _all_imports(tree: ast.AST, exclude: set[int]) -> list[ImportBinding]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in exclude:
            found.extend(_import_bindings(node))
    return found


def blank_lines(code: str, lines: frozenset[int]) -> str:
    """Replace the given 1-based lines by empty lines, keeping every other line where it was."""
    if not lines:
        return code
    out = code.split("\n")
    for line in lines:
        if 0 < line <= len(out):
            out[line - 1] = ""
    return "\n".join(out)


def drop_display_statements(code: str) -> str:
    """Blank top-level statements that only display a value in Jupyter (`metrics`, `df.shape`):
    in a module they do nothing. Line numbers are kept."""
    tree = ast.parse(code)
    lines: set[int] = set()
    for statement in tree.body:
        if isinstance(statement, ast.Expr) and isinstance(statement.value, (ast.Name, ast.Attribute, ast.Constant)):
            if isinstance(statement.value, ast.Constant) and isinstance(statement.value.value, str):
                continue  # a docstring-like string stays
            lines.update(range(statement.lineno, (statement.end_lineno or statement.lineno) + 1))
    return blank_lines(code, frozenset(lines))


def drop_display_calls(code: str) -> tuple[str, list[int]]:
    """Blank top-level `display(...)` calls (IPython's output function, absent outside Jupyter)."""
    tree = ast.parse(code)
    lines: set[int] = set()
    starts = []
    for statement in tree.body:
        value = statement.value if isinstance(statement, ast.Expr) else None
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "display":
            starts.append(statement.lineno)
            lines.update(range(statement.lineno, (statement.end_lineno or statement.lineno) + 1))
    return blank_lines(code, frozenset(lines)), starts
