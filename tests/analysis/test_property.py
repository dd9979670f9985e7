"""Property: whenever `build` succeeds, the generated job computes what the notebook computed.

Random small programs (assignments, arithmetic, lists and dicts changed in place, functions that
read globals, classes, stdlib imports, star imports, names read before they are rebound, a module
name shadowed by a value) that run top to bottom are split into random cells with random roles.
Either the build refuses the notebook with a finding, or the job, run as the generated `train.run`
(the python engine) and as the job notebook's cells in one namespace (what the papermill kernel
does), gives the notebook's value for every name the last metrics cell binds.

CI runs a fixed, derandomized set of examples; NB2PROD_PROPERTY_EXAMPLES=500 runs more.
"""

from __future__ import annotations

import ast
import importlib
import itertools
import json
import os
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, assume, event, given, note, settings
from hypothesis import strategies as st
from nbtest_helpers import cell, write_notebook

from nb2prod import api
from nb2prod.errors import NotebookErrors
from nb2prod.runs.engines import package_on_path

EXAMPLES = int(os.environ.get("NB2PROD_PROPERTY_EXAMPLES", "60"))
INTS = ("a", "b", "c")
ROLES = ("export", "train", "metrics", None, None, "parameters")
COUNTER = itertools.count()


class Program:
    """A program built statement by statement; `kinds` tracks what each name holds, so every
    statement drawn can run."""

    def __init__(self, data: Any):
        self.data = data
        self.kinds: dict[str, str] = {}
        self.statements: list[str] = []

    def draw(self, strategy: Any) -> Any:
        return self.data.draw(strategy)

    def of(self, kind: str) -> list[str]:
        return sorted(n for n, k in self.kinds.items() if k == kind)

    def int_expr(self, depth: int = 0) -> str:
        options = ["literal"]
        if self.of("int"):
            options += ["name", "name", "binary"]
        if self.of("list"):
            options += ["len"]
        if self.of("dict"):
            options += ["item"]
        if self.kinds.get("math") == "module":
            options += ["math"]
        if self.kinds.get("floor") == "function":
            options += ["floor"]
        if self.kinds.get("st") == "module" and self.of("list"):
            options += ["mean"]
        if self.of("func"):
            options += ["call"]
        if self.of("class"):
            options += ["method"]
        choice = self.draw(st.sampled_from(options)) if depth < 2 else "literal"
        if choice == "literal":
            return str(self.draw(st.integers(0, 9)))
        if choice == "name":
            return self.draw(st.sampled_from(self.of("int")))
        if choice == "binary":
            op = self.draw(st.sampled_from(["+", "-", "*"]))
            return f"({self.int_expr(depth + 1)} {op} {self.int_expr(depth + 1)})"
        if choice == "len":
            return f"len({self.draw(st.sampled_from(self.of('list')))})"
        if choice == "item":
            return f'{self.draw(st.sampled_from(self.of("dict")))}["k"]'
        if choice == "math":
            return f"math.floor({self.int_expr(depth + 1)} / 2)"
        if choice == "floor":
            return f"floor({self.int_expr(depth + 1)} / 3)"
        if choice == "mean":
            return f"round(st.mean({self.draw(st.sampled_from(self.of('list')))}))"
        if choice == "call":
            return f"{self.draw(st.sampled_from(self.of('func')))}({self.int_expr(depth + 1)})"
        return f"{self.draw(st.sampled_from(self.of('class')))}().get()"

    def statement(self) -> str:
        options = ["int", "int", "list", "dict", "import", "def", "class"]
        if self.of("int"):
            options += ["global-def", "class-reads-own"]
        if self.of("list"):
            options += ["list-change", "list-change"]
        if self.of("dict"):
            options += ["dict-change"]
        if self.kinds.get("math") == "module":
            options += ["shadow-math"]
        if self.kinds.get("st") == "module" and self.of("list"):
            options += ["shadow-st"]
        choice = self.draw(st.sampled_from(options))
        if choice == "int":
            name = self.draw(st.sampled_from(INTS))
            text = f"{name} = {self.int_expr()}"  # may read `name` before rebinding it
            self.kinds[name] = "int"
            return text
        if choice == "list":
            name = self.draw(st.sampled_from(["lst", "items"]))
            text = f"{name} = [{self.int_expr()}, {self.int_expr()}]"
            self.kinds[name] = "list"
            return text
        if choice == "dict":
            text = f'dct = {{"k": {self.int_expr()}}}'
            self.kinds["dct"] = "dict"
            return text
        if choice == "list-change":
            name = self.draw(st.sampled_from(self.of("list")))
            form = self.draw(st.sampled_from(["append", "item", "augmented", "sort", "extend"]))
            value = self.int_expr()
            return {
                "append": f"{name}.append({value})",
                "item": f"{name}[0] = {value}",
                "augmented": f"{name} += [{value}]",
                "sort": f"{name}.sort()",
                "extend": f"{name}.extend([{value}, 1])",
            }[form]
        if choice == "dict-change":
            form = self.draw(st.sampled_from(["item", "update", "augmented"]))
            value = self.int_expr()
            return {"item": f'dct["k2"] = {value}', "update": f"dct.update(k3={value})", "augmented": 'dct["k"] += 1'}[
                form
            ]
        if choice == "import":
            form = self.draw(st.sampled_from(["math", "st", "floor", "star"]))
            if form == "math":
                self.kinds["math"] = "module"
                return "import math"
            if form == "st":
                self.kinds["st"] = "module"
                return "import statistics as st"
            self.kinds["floor"] = "function"
            return "from math import floor" if form == "floor" else "from math import *"
        if choice == "shadow-math":
            self.kinds["math"] = "dict"
            return 'math = {"v": math.floor(2.5)}'
        if choice == "shadow-st":
            self.kinds["st"] = "int"
            return f"st = round(st.mean({self.draw(st.sampled_from(self.of('list')))}))"
        if choice == "global-def":
            name = self.draw(st.sampled_from(self.of("int")))
            return f"def bump():\n    global {name}\n    {name} = {name} + 1\n\n\nbump()"
        if choice == "class-reads-own":
            name = self.draw(st.sampled_from(self.of("int")))
            self.kinds["K"] = "class"
            return (
                f"class K:\n    {name} = {name} + 1\n    base = {name}\n\n    def get(self):\n        return self.base"
            )
        if choice == "def":
            name = self.draw(st.sampled_from(["f", "g"]))
            body = self.int_expr()  # reads globals when called, as notebook functions do
            self.kinds[name] = "func"
            return f"def {name}(p):\n    return p + {body}"
        body = self.int_expr()
        self.kinds["K"] = "class"
        return f"class K:\n    base = {body}\n\n    def get(self):\n        return self.base + 1"


def _plain(value: Any) -> bool:
    return isinstance(value, (int, float, str, list, dict, tuple)) and not callable(value)


def _run_cells(sources: list[str]) -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    for source in sources:
        exec(compile(source, "<cell>", "exec"), namespace)  # noqa: S102 - generated test programs
    return namespace


def _job_notebook_namespace(out: Path, package: str) -> dict[str, Any]:
    """The job notebook's cells in one namespace, as the papermill kernel runs them."""
    nb = json.loads((out / "job" / "train.ipynb").read_text())
    sources = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    with package_on_path(out / "src", package):
        return _run_cells(sources)


def _train_run_namespace(out: Path, package: str) -> dict[str, Any]:
    with package_on_path(out / "src", package):
        return importlib.import_module(f"{package}.train").run()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
@given(st.data())
def test_a_successful_build_computes_what_the_notebook_computes(tmp_path_factory: Any, data: Any) -> None:
    program = Program(data)
    count = data.draw(st.integers(2, 9))
    statements = [program.statement() for _ in range(count)]
    model_at = data.draw(st.integers(0, count))
    source = program.of("int") + program.of("list")
    model = data.draw(st.sampled_from(source)) if source else "0"
    statements.insert(model_at, f"model = {model}")
    plain = program.of("int") + program.of("list") + program.of("dict")
    try:
        _run_cells(statements)  # the whole program runs
    except Exception:  # noqa: BLE001 - e.g. a function reading a name rebound to another kind
        assume(False)

    # random cells, random roles; the model's cell is a train cell, a final metrics cell records everything
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(statements) - 1), max_size=len(statements)))))
    groups = [statements[i:j] for i, j in zip([0, *cuts], [*cuts, len(statements)])]
    cells = []
    for group in groups:
        role = data.draw(st.sampled_from(ROLES))
        if role == "parameters" and not all(_is_literal_assignment(s) for s in group):
            role = "train"
        if any(s.startswith("model = ") for s in group):
            role = "train"
        cells.append(("\n".join(group), role))
    recorded = ["model", *data.draw(st.lists(st.sampled_from(plain), unique=True))] if plain else ["model"]
    record = ", ".join(f"{name!r}: {name}" for name in recorded)
    cells.append((f"metrics = {{{record}}}\nchecked = len(metrics)", "metrics"))

    note("cells: " + json.dumps(cells, indent=1))
    folder = tmp_path_factory.mktemp("prop")
    path = write_notebook(folder / f"p{next(COUNTER)}.ipynb", [cell(src, *([r] if r else [])) for src, r in cells])
    expected = _run_cells([src for src, _ in cells])
    try:
        result = api.build(path)
    except NotebookErrors as refused:
        errors = [f for f in refused.findings if f.severity == "error"]
        assert errors and all(f.location is not None for f in errors)
        event(f"refused: {errors[0].code}")  # shown by --hypothesis-show-statistics
        return
    event("built")
    out, package = Path(result.output_dir), result.package
    compared = _bound_names(cells[-1][0])
    for namespace in (_train_run_namespace(out, package), _job_notebook_namespace(out, package)):
        for name in compared:
            if _plain(expected[name]):
                assert namespace[name] == expected[name], (name, cells)


def _is_literal_assignment(statement: str) -> bool:
    tree = ast.parse(statement).body
    return (
        len(tree) == 1
        and isinstance(tree[0], ast.Assign)
        and isinstance(tree[0].value, ast.Constant)
        and all(isinstance(t, ast.Name) for t in tree[0].targets)
    )


def _bound_names(source: str) -> list[str]:
    return sorted(
        {t.id for node in ast.parse(source).body if isinstance(node, ast.Assign) for t in node.targets}  # type: ignore[attr-defined]
    )
