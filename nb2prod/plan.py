"""Step 4: decide which files a build writes and which cell code goes where.

The plan is pure data: each file names its template, its template context, and the chunks of
cell code to place in it (with the indentation they need). Rendering happens in render.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nb2prod import __version__, escape
from nb2prod.analysis.analyse import Analysis, CodeCell, Needs, statement_binds
from nb2prod.formatting import FormatJob


@dataclass(frozen=True)
class Chunk:
    key: int
    cell: CodeCell
    role: str
    indent: int  # 0: module level; 4: inside a function body
    in_module: bool = True  # False for notebook cells (job/train.ipynb), where a bare name displays

    @property
    def code(self) -> str:
        return self.cell.module_code if self.in_module else self.cell.code

    def format_job(self) -> tuple[FormatJob, int]:
        """What black formats for this chunk, and how many leading blank lines were cut."""
        return chunk_format_job(self.cell.index, self.cell.id, self.code, self.indent)


def chunk_format_job(index: int, cell_id: str, code: str, indent: int) -> tuple[FormatJob, int]:
    lines = code.split("\n")
    lead = 0
    while lead < len(lines) and not lines[lead].strip():
        lead += 1
    body = "\n".join(lines[lead:]).rstrip() + "\n"
    if indent and not _has_statements(body):
        # A cell left with nothing to run once its imports are hoisted (only imports, comments or a
        # display magic) still needs a statement inside the function it is placed in.
        body = (body if body.strip() else "") + "pass\n"
    return FormatJob(f"# Notebook cell {index + 1} (id {escape.py_comment(cell_id)}).\n{body}", indent), lead


def _has_statements(code: str) -> bool:
    import ast

    try:
        return bool(ast.parse(code).body)
    except SyntaxError:
        return True  # reported by the analysis; never reached for cells that build


def chunk_shapes(roles: frozenset[str], has_test_functions: bool) -> list[tuple[int, bool]]:
    """(indent, in_module) of every chunk plan_build makes from a cell with these roles."""
    shapes: list[tuple[int, bool]] = []
    if "export" in roles or "predict" in roles or "explain" in roles:
        shapes.append((0, True))
    if roles & {"train", "metrics"}:
        shapes.append((0, False))  # _job.py and job/train.ipynb hold the same code
    if "test" in roles:
        shapes.append((0 if has_test_functions else 4, True))
    return shapes


@dataclass(frozen=True)
class TestPlan:
    chunk: Chunk
    wrap: bool  # plain asserts become `def test_cell_N()`; `def test_*` cells stay as written
    job_names: tuple[str, ...]
    local_imports: tuple[str, ...] = ()  # imports of names the wrapped cell rebinds (see split_imports)


@dataclass(frozen=True)
class PlannedFile:
    path: str  # relative to the output folder, with forward slashes
    template: str | None  # jinja template under templates/, or None for files built in code
    context: dict[str, Any] = field(default_factory=dict)
    chunks: tuple[Chunk, ...] = ()


@dataclass(frozen=True)
class Plan:
    analysis: Analysis
    files: tuple[PlannedFile, ...]
    job_chunks: tuple[Chunk, ...]  # the job's cells at module level, for job/train.ipynb


def plan_build(analysis: Analysis) -> Plan:
    keys = iter(range(1_000_000))
    package = analysis.package
    src = f"src/{package}"
    base = {
        "dist": analysis.dist,
        "package": package,
        "version": analysis.config.version,
        "python": analysis.config.python,
        "notebook_name": analysis.notebook.name,
        "nb2prod_version": __version__,
        "has_job": analysis.has_job,
        "modules": analysis.modules,
        "parameters": analysis.parameters,
        "requirements": analysis.requirements,
        "model_variable": analysis.config.model_variable,
        "serve_requirements": serve_requirements(),
    }
    files: list[PlannedFile] = []
    all_names: list[str] = []
    for module in analysis.modules:
        all_names.extend(module.public)
        chunks = tuple(Chunk(next(keys), cell, "export", 0) for cell in module.cells)
        context = {
            **base,
            "module": module,
            "imports": module.needs.sorted_imports(),
            "package_imports": module.needs.sorted_package(),
        }
        files.append(PlannedFile(f"{src}/{module.name}.py", "package/module.py.j2", context, chunks))
    explain_exported = "explain" not in all_names  # an exported `explain` of the notebook's own wins
    files.append(
        PlannedFile(
            f"{src}/__init__.py",
            "package/__init__.py.j2",
            {**base, "all_names": sorted({*all_names, "explain"}), "explain_exported": explain_exported},
        )
    )
    files.append(PlannedFile(f"{src}/_runtime.py", None))
    files.append(PlannedFile(f"{src}/py.typed", None))
    job_chunks: tuple[Chunk, ...] = ()
    if analysis.has_job:
        schema = {p.name: p.schema() for p in analysis.parameters}
        files.append(PlannedFile(f"{src}/params.py", "package/params.py.j2", {**base, "schema": schema}))
        # the job's cells run at module level, in _job.py as in job/train.ipynb, with the same code
        chunks = tuple(Chunk(next(keys), cell, job_role(cell), 0, in_module=False) for cell in analysis.job_cells)
        context = {
            **base,
            "imports": analysis.job_needs.sorted_imports(),
            "package_imports": analysis.job_needs.sorted_package(),
        }
        files.append(PlannedFile(f"{src}/_job.py", "package/job.py.j2", context, chunks))
        files.append(PlannedFile(f"{src}/train.py", "package/train.py.j2", base))
        job_chunks = tuple(Chunk(next(keys), cell, job_role(cell), 0, in_module=False) for cell in analysis.job_cells)
        files.append(PlannedFile("job/train.ipynb", None))
    predict_chunks = tuple(Chunk(next(keys), cell, "predict", 0) for cell in analysis.predict_cells)
    context = {
        **base,
        "imports": analysis.predict_needs.sorted_imports(),
        "package_imports": analysis.predict_needs.sorted_package(),
    }
    files.append(PlannedFile(f"{src}/predict.py", "package/predict.py.j2", context, predict_chunks))
    explain_chunks = tuple(Chunk(next(keys), cell, "explain", 0) for cell in analysis.explain_cells)
    explain_needs = analysis.explain_needs if analysis.explain_cells else analysis.predict_needs
    context = {
        **base,
        "imports": explain_needs.sorted_imports() if analysis.explain_cells or analysis.explain_features else (),
        "package_imports": explain_package_imports(analysis),
        "features": _one_line_expression(analysis.explain_features),
        "parameter": analysis.explain_parameter,
    }
    files.append(PlannedFile(f"{src}/explain.py", "package/explain.py.j2", context, explain_chunks))
    files.append(PlannedFile(f"{src}/serve.py", "package/serve.py.j2", base))
    files.extend(PlannedFile(f"{src}/_serve/{name}", None) for name in shipped_serve_files())
    tests = []
    for cell in analysis.test_cells:
        wrap = not cell.has_test_functions
        chunk = Chunk(next(keys), cell, "test", 4 if wrap else 0)
        job_names = analysis.test_uses_job.get(cell.index, ())
        local = split_imports(analysis.test_needs, cell.names.binds - set(job_names), f"{package}.")[2] if wrap else ()
        tests.append(TestPlan(chunk, wrap, job_names, local))
    test_needs = analysis.test_needs
    if tests:
        context = {
            **base,
            "tests": tests,
            "imports": test_needs.sorted_imports(),
            "package_imports": test_needs.sorted_package(),
        }
        files.append(
            PlannedFile(
                "tests/test_notebook.py", "package/tests/test_notebook.py.j2", context, tuple(t.chunk for t in tests)
            )
        )
    example_imports = tuple(
        (module, tuple(n for n in names if n in _names_in(analysis.example_inputs)))
        for module, names in test_needs.sorted_package()
    )
    context = {
        **base,
        "module_names": [m.name for m in analysis.modules]
        + (["params", "train"] if analysis.has_job else [])
        + ["predict", "explain"],
        "example_inputs": _one_line_expression(analysis.example_inputs),
        "example_names": analysis.example_names,
        "example_imports": tuple((m, n) for m, n in example_imports if n),
        "has_explain_cell": bool(analysis.explain_cells),
    }
    files.append(PlannedFile("tests/conftest.py", "package/tests/conftest.py.j2", base))
    files.append(PlannedFile("tests/test_contract.py", "package/tests/test_contract.py.j2", context))
    files.append(PlannedFile("pyproject.toml", "package/pyproject.toml.j2", {**base, "pytest_spec": "pytest>=7"}))
    files.append(PlannedFile("README.md", "package/README.md.j2", {**base, "train_example": train_example(analysis)}))
    files.append(PlannedFile("requirements.lock", "package/requirements.lock.j2", base))
    files.append(PlannedFile("Dockerfile", None))
    files.append(PlannedFile(".dockerignore", None))
    files.append(PlannedFile(f"{src}/_sourcemap.json", None))
    files.append(PlannedFile("nb2prod.json", None))
    return Plan(analysis, tuple(files), job_chunks)


def explain_package_imports(analysis: Analysis) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The exported names explain.py imports: the explain cell's, else those of the feature expression."""
    if analysis.explain_cells:
        return analysis.explain_needs.sorted_package()
    used = _names_in(analysis.explain_features)
    found = []
    for module, names in analysis.predict_needs.sorted_package():
        kept = tuple(n for n in names if n in used)
        if kept:
            found.append((module, kept))
    return tuple(found)


def train_example(analysis: Analysis) -> str:
    """The README's copy-paste training command: every word quoted for the shell (`shlex.quote`),
    the first parameter whose default can be spelled on one command line as its example."""
    from nb2prod.deploy.cluster_manifests import cli_value

    words = [escape.shell_word(f"{analysis.dist}-train"), "--output", "model/"]
    for parameter in analysis.parameters:
        try:
            value = escape.shell_word(cli_value(parameter.default))
        except escape.EscapeError:
            continue
        words += [escape.shell_word(f"--{parameter.name}"), value]
        break
    return " ".join(words)


def _one_line_expression(expression: str | None) -> str | None:
    """A Python expression in its normal one-line spelling (comments and line breaks gone)."""
    if not expression:
        return expression
    import ast

    return ast.unparse(ast.parse(expression, mode="eval"))


def split_imports(
    needs: Needs, rebound: frozenset[str] | set[str], package_prefix: str
) -> tuple[tuple[str, ...], tuple[tuple[str, tuple[str, ...]], ...], tuple[str, ...]]:
    """(module-level imports, module-level package imports, imports for the top of the function).

    Cell code placed in a function (`run`, `test_cell_N`) runs in the function's local scope, where a
    name the code assigns anywhere is local everywhere: reading it before the assignment would
    raise UnboundLocalError instead of reading the imported value, as top-level notebook code
    does. So the imports of such names are made at the top of the function, as locals."""
    imports = needs.sorted_imports()
    module_level = tuple(s for s in imports if statement_binds(s) == "*" or statement_binds(s) not in rebound)
    local = [s for s in imports if s not in module_level]
    package: list[tuple[str, tuple[str, ...]]] = []
    for module, names in needs.sorted_package():
        kept = tuple(n for n in names if n not in rebound)
        moved = tuple(n for n in names if n in rebound)
        if kept:
            package.append((module, kept))
        if moved:
            local.append(f"from {package_prefix}{module} import {', '.join(moved)}")
    return module_level, tuple(package), tuple(local)


SERVE_DISTRIBUTIONS = ("fastapi", "uvicorn", "httptools", "uvloop")  # uvicorn uses the last two when present


def serve_requirements() -> tuple[str, ...]:
    """Pins of what `NAME-serve` needs (the package's `serve` extra, and the image)."""
    from nb2prod.analysis.requirements import installed_version

    pins = []
    for name in SERVE_DISTRIBUTIONS:
        version = installed_version(name)
        if version:
            pins.append(f"{name}=={version}")
    return tuple(pins)


def shipped_serve_files() -> tuple[str, ...]:
    """The server's modules copied verbatim into the package as `_serve/`."""
    from pathlib import Path

    folder = Path(__file__).with_name("serve") / "shipped"
    return tuple(sorted(p.name for p in folder.glob("*.py")))


def job_role(cell: CodeCell) -> str:
    """A job cell's role in the source map: `metrics` when it has that role (the engines keep
    running the job after a failing metrics cell, so the failure and the metrics are recorded)."""
    return "metrics" if "metrics" in cell.roles else "train"


def _names_in(expression: str | None) -> set[str]:
    if not expression:
        return set()
    import ast

    return {n.id for n in ast.walk(ast.parse(expression, mode="eval")) if isinstance(n, ast.Name)}
