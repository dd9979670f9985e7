"""What a cell may do to names it does not own: rebind, change in place, or hand to unknown code.

The analysis uses this for untagged (and `skip`) cells that run, in the notebook, between the
tagged cell that binds a name and the tagged cell that uses it: the package runs without them, so
anything they do to the name is a change of meaning.

The rule (documented in docs/design.md, "Mutations by untagged cells"):
- changes (an error): rebinding the name (assignment, augmented assignment, `for`/`with` target,
  import, def/class), `del` of it or of an item or attribute reached through it, assigning an
  attribute or an item reached through it (`model.coef_ = ...`, `df["x"] = ...`,
  `model.steps[0][1].alpha = ...`), calling a method known to change its receiver (`fit`,
  `append`, `update`, `sort`, ...) on it or on a part of it (`model.steps[0][1].fit(...)`), and any
  method call with `inplace=True`;
- reads (nothing): calling a method known to only read (`predict`, `score`, `transform`,
  `get_params`, `head`, `describe`, `copy`, ...), and passing it to a function or method known to
  only read its arguments (`print`, `display`, `len`, `repr`, `type`, `isinstance`, ... and the
  known methods above, e.g. `other.fit(X)` reads `X`);
- maybe (a note): a call of any other method on it, or passing it to any other function.
Aliases made in the same cell (`m = model`, `step = model.steps[0]`) count as the name itself,
and calling a function the cell defines with `global NAME` changes NAME.
Names bound by imports (modules, functions) are not followed: calling a module's functions is not
taken as changing the module.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

ERROR = "error"
NOTE = "note"

# Methods known to change their receiver.
MUTATING_METHODS = frozenset(
    {
        # scikit-learn and friends
        "fit",
        "partial_fit",
        "fit_transform",
        "fit_predict",
        "fit_resample",
        "set_params",
        "set_output",
        "train",
        "compile",
        "load_state_dict",
        # lists, dicts, sets, arrays, frames
        "append",
        "extend",
        "insert",
        "pop",
        "popitem",
        "remove",
        "clear",
        "update",
        "setdefault",
        "sort",
        "reverse",
        "add",
        "discard",
        "difference_update",
        "intersection_update",
        "symmetric_difference_update",
        "resize",
        "fill",
        "put",
        "itemset",
        "setflags",
        "shuffle",
        "__setitem__",
        "__delitem__",
        "__setattr__",
        "__delattr__",
        "seed",
    }
)

# Methods known only to read their receiver (their result is a new object).
READ_ONLY_METHODS = frozenset(
    {
        # estimators
        "predict",
        "predict_proba",
        "predict_log_proba",
        "decision_function",
        "score",
        "score_samples",
        "transform",
        "inverse_transform",
        "get_params",
        "get_feature_names_out",
        "kneighbors",
        "staged_predict",
        # frames, series, arrays
        "head",
        "tail",
        "describe",
        "info",
        "copy",
        "mean",
        "median",
        "std",
        "var",
        "sum",
        "min",
        "max",
        "count",
        "nunique",
        "unique",
        "value_counts",
        "isna",
        "isnull",
        "notna",
        "notnull",
        "corr",
        "cov",
        "groupby",
        "agg",
        "aggregate",
        "apply",
        "map",
        "astype",
        "to_numpy",
        "to_list",
        "tolist",
        "to_dict",
        "to_frame",
        "to_string",
        "to_csv",
        "to_json",
        "to_parquet",
        "to_markdown",
        "plot",
        "hist",
        "round",
        "abs",
        "all",
        "any",
        "argmax",
        "argmin",
        "idxmax",
        "idxmin",
        "sample",
        "query",
        "filter",
        "select_dtypes",
        "drop",
        "dropna",
        "fillna",
        "rename",
        "merge",
        "join",
        "concat",
        "reset_index",
        "sort_values",
        "sort_index",
        "reshape",
        "ravel",
        "flatten",
        "dot",
        "item",
        "nonzero",
        "memory_usage",
        "equals",
        "isin",
        "between",
        "clip",
        "cumsum",
        "diff",
        "pct_change",
        "quantile",
        "rolling",
        "shift",
        "where",
        "mask",
        "pivot",
        "pivot_table",
        "melt",
        "stack",
        "unstack",
        "transpose",
        # lists, dicts, strings, sets
        "index",
        "keys",
        "values",
        "items",
        "get",
        "startswith",
        "endswith",
        "lower",
        "upper",
        "strip",
        "split",
        "format",
        "encode",
        "decode",
        "union",
        "intersection",
        "difference",
        "issubset",
        "issuperset",
        "isdisjoint",
    }
)

# Functions known only to read their arguments.
READ_ONLY_FUNCTIONS = frozenset(
    {
        "print",
        "display",
        "len",
        "repr",
        "str",
        "type",
        "isinstance",
        "issubclass",
        "id",
        "hash",
        "sorted",
        "sum",
        "min",
        "max",
        "abs",
        "round",
        "any",
        "all",
        "bool",
        "int",
        "float",
        "complex",
        "format",
        "dir",
        "vars",
        "hasattr",
        "getattr",
        "callable",
        "list",
        "tuple",
        "set",
        "frozenset",
        "dict",
        "enumerate",
        "zip",
        "reversed",
        "range",
        "divmod",
        "pow",
        "ascii",
        "bin",
        "hex",
        "oct",
        "ord",
        "chr",
    }
)


@dataclass(frozen=True)
class Effect:
    """What one statement of a cell may do to `name` (a name the cell did not bind first)."""

    name: str
    severity: str  # "error": it changes the name; "note": it may
    line: int
    statement: str  # the statement, shortened, as written
    action: str  # e.g. "calls `.fit()` on it"


def cell_effects(code: str) -> tuple[Effect, ...]:
    """Every effect on names the cell reads from before it, first effect per name and severity."""
    tree = ast.parse(code)
    finder = _Finder(code)
    for statement in tree.body:
        finder.statement(statement)
    return tuple(finder.effects)


def _root(node: ast.AST) -> str | None:
    """The name an expression reaches through attributes and items (`a.b[0].c` -> "a")."""
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Starred)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


class _Finder:
    def __init__(self, code: str):
        self.code = code
        self.effects: list[Effect] = []
        self.seen: set[tuple[str, str]] = set()
        self.aliases: dict[str, str] = {}  # alias made in this cell -> the name it stands for
        self.own: set[str] = set()  # names this cell bound itself (not aliases)
        self.current: ast.stmt | None = None
        self.global_writers: dict[str, set[str]] = {}  # def in this cell -> names it assigns through `global`

    # -- recording ----------------------------------------------------------------------------
    def _owner(self, name: str | None) -> str | None:
        if name is None:
            return None
        if name in self.aliases:
            return self.aliases[name]
        if name in self.own:
            return None
        return name

    def record(self, name: str | None, severity: str, action: str, node: ast.AST) -> None:
        owner = self._owner(name)
        if owner is None or (owner, severity) in self.seen:
            return
        if severity == NOTE and (owner, ERROR) in self.seen:
            return
        self.seen.add((owner, severity))
        statement = self.current if self.current is not None else node
        text = ast.get_source_segment(self.code, statement) or ast.unparse(statement)
        text = " ".join(text.split())
        if len(text) > 80:
            text = text[:77] + "..."
        self.effects.append(Effect(owner, severity, getattr(node, "lineno", 1), text, action))

    # -- statements ---------------------------------------------------------------------------
    def statement(self, node: ast.stmt) -> None:
        self.current = node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for expr in node.decorator_list:
                self.expression(expr)
            if isinstance(node, ast.ClassDef):
                for expr in [*node.bases, *[k.value for k in node.keywords]]:
                    self.expression(expr)
            else:
                for default in [*node.args.defaults, *[d for d in node.args.kw_defaults if d is not None]]:
                    self.expression(default)
                declared = {n for g in ast.walk(node) if isinstance(g, ast.Global) for n in g.names}
                if declared:
                    self.global_writers[node.name] = declared
            self.bind(node.name, "defines it again", node)
            return
        if isinstance(node, ast.Assign):
            self.expression(node.value)
            alias = _root(node.value) if isinstance(node.value, (ast.Name, ast.Attribute, ast.Subscript)) else None
            for target in node.targets:
                self.target(target, node)
                if isinstance(target, ast.Name):
                    owner = self._owner(alias)
                    if owner is not None and target.id != owner:
                        self.aliases[target.id] = owner
            return
        if isinstance(node, ast.AnnAssign):
            if node.value is not None:
                self.expression(node.value)
                self.target(node.target, node)
            return
        if isinstance(node, ast.AugAssign):
            self.expression(node.value)
            root = _root(node.target)
            if isinstance(node.target, ast.Name):
                self.record(root, ERROR, "changes it in place (augmented assignment)", node)
            else:
                self.record(root, ERROR, "changes a part of it in place (augmented assignment)", node)
            return
        if isinstance(node, ast.Delete):
            for target in node.targets:
                root = _root(target)
                action = "deletes it" if isinstance(target, ast.Name) else "deletes a part of it"
                self.record(root, ERROR, action, node)
                if isinstance(target, ast.Name):
                    self.aliases.pop(target.id, None)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for imported in node.names:
                if imported.name != "*":
                    bound = imported.asname or imported.name.split(".")[0]
                    self.bind(bound, "imports over it", node)
            return
        if isinstance(node, (ast.For, ast.AsyncFor)):
            self.expression(node.iter)
            self.target(node.target, node)
            self._block(node.body + node.orelse)
            return
        if isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                self.expression(item.context_expr)
                if item.optional_vars is not None:
                    self.target(item.optional_vars, node)
            self._block(node.body)
            return
        if isinstance(node, (ast.If, ast.While)):
            self.expression(node.test)
            self._block(node.body + node.orelse)
            return
        if isinstance(node, ast.Try) or type(node).__name__ == "TryStar":
            self._block(node.body)  # type: ignore[attr-defined]
            for handler in node.handlers:  # type: ignore[attr-defined]
                if handler.name:
                    self.bind(handler.name, "binds it in an `except` clause", handler)
                self._block(handler.body)
            self._block(node.orelse + node.finalbody)  # type: ignore[attr-defined]
            return
        if isinstance(node, ast.Match):
            self.expression(node.subject)
            for case in node.cases:
                self._block(case.body)
            return
        if isinstance(node, (ast.Global, ast.Nonlocal)):
            return
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                self.expression(child)

    def _block(self, statements: list[ast.stmt]) -> None:
        outer = self.current
        for statement in statements:
            self.statement(statement)
        self.current = outer

    def bind(self, name: str, action: str, node: ast.AST) -> None:
        if name in self.aliases:
            del self.aliases[name]
            self.own.add(name)
            return
        self.record(name, ERROR, action, node)
        self.own.add(name)

    def target(self, target: ast.expr, node: ast.AST) -> None:
        if isinstance(target, ast.Name):
            self.bind(target.id, "assigns it a new value", node)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self.target(element, node)
        elif isinstance(target, ast.Starred):
            self.target(target.value, node)
        elif isinstance(target, ast.Attribute):
            self.expression(target.value)
            self.record(_root(target), ERROR, f"sets its attribute `{target.attr}`", node)
        elif isinstance(target, ast.Subscript):
            self.expression(target.value)
            self.expression(target.slice)
            self.record(_root(target), ERROR, "sets an item of it", node)

    # -- expressions --------------------------------------------------------------------------
    def expression(self, node: ast.expr) -> None:
        local = {
            target.id
            for child in ast.walk(node)
            if isinstance(child, ast.comprehension)
            for target in ast.walk(child.target)
            if isinstance(target, ast.Name)
        }
        for child in _walk_evaluated(node):
            if isinstance(child, ast.NamedExpr):
                self.bind(child.target.id, "assigns it a new value (`:=`)", child)
            elif isinstance(child, ast.Call):
                self.call(child, local)

    def call(self, node: ast.Call, local: set[str]) -> None:
        func = node.func

        def record(name: str | None, severity: str, action: str, where: ast.AST) -> None:
            if name not in local:
                self.record(name, severity, action, where)

        inplace = any(
            k.arg == "inplace" and isinstance(k.value, ast.Constant) and k.value.value is True for k in node.keywords
        )
        known_callee = False
        if isinstance(func, ast.Attribute):
            method = func.attr
            receiver = _root(func.value) if not _through_call(func.value) else None
            if inplace:
                record(receiver, ERROR, f"calls `.{method}(..., inplace=True)` on it", node)
            elif method in MUTATING_METHODS:
                part = "" if isinstance(func.value, ast.Name) else " on a part of it"
                record(receiver, ERROR, f"calls `.{method}()`{part}", node)
            elif method not in READ_ONLY_METHODS:
                record(receiver, NOTE, f"calls `.{method}()`, which nb2prod does not know to only read", node)
            known_callee = method in READ_ONLY_METHODS or method in MUTATING_METHODS
        elif isinstance(func, ast.Name):
            known_callee = func.id in READ_ONLY_FUNCTIONS
            for name in sorted(self.global_writers.get(func.id, ())):
                record(name, ERROR, f"calls `{func.id}()`, which assigns it through `global`", node)
        callee = ast.unparse(func)
        for argument in [*node.args, *[k.value for k in node.keywords]]:
            if isinstance(argument, (ast.Name, ast.Attribute, ast.Subscript, ast.Starred)) and not known_callee:
                record(
                    _root(argument),
                    NOTE,
                    f"passes it to `{callee}()`, which nb2prod does not know to only read its arguments",
                    node,
                )


def _through_call(node: ast.expr) -> bool:
    """True when an attribute/item chain passes through a call (`df.copy().x`): its result is another object."""
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return isinstance(node, ast.Call)


def _walk_evaluated(node: ast.AST):
    """The nodes of an expression that run when it is evaluated (not lambda bodies)."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        if isinstance(current, ast.Lambda):
            continue
        stack.extend(reversed(list(ast.iter_child_nodes(current))))
