"""Step 4: decide which files a build writes and which cell code goes where.

The plan is pure data: each file names its template, its template context, and the chunks of
cell code to place in it (with the indentation they need). Rendering happens in render.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nb2prod import __version__
from nb2prod.analysis.analyse import Analysis, CodeCell
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
    return FormatJob(f"# Notebook cell {index + 1} (id {cell_id}).\n{body}", indent), lead


def chunk_shapes(roles: frozenset[str], has_test_functions: bool) -> list[tuple[int, bool]]:
    """(indent, in_module) of every chunk plan_build makes from a cell with these roles."""
    shapes: list[tuple[int, bool]] = []
    if "export" in roles or "predict" in roles:
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
    files.append(
        PlannedFile(f"{src}/__init__.py", "package/__init__.py.j2", {**base, "all_names": sorted(set(all_names))})
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
    tests = []
    for cell in analysis.test_cells:
        wrap = not cell.has_test_functions
        chunk = Chunk(next(keys), cell, "test", 4 if wrap else 0)
        tests.append(TestPlan(chunk, wrap, analysis.test_uses_job.get(cell.index, ())))
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
        + ["predict"],
        "example_inputs": analysis.example_inputs,
        "example_names": analysis.example_names,
        "example_imports": tuple((m, n) for m, n in example_imports if n),
    }
    files.append(PlannedFile("tests/conftest.py", "package/tests/conftest.py.j2", base))
    files.append(PlannedFile("tests/test_contract.py", "package/tests/test_contract.py.j2", context))
    files.append(PlannedFile("pyproject.toml", "package/pyproject.toml.j2", {**base, "pytest_spec": "pytest>=7"}))
    files.append(PlannedFile("README.md", "package/README.md.j2", base))
    files.append(PlannedFile("requirements.lock", "package/requirements.lock.j2", base))
    files.append(PlannedFile("Dockerfile", None))
    files.append(PlannedFile(".dockerignore", None))
    files.append(PlannedFile(f"{src}/_sourcemap.json", None))
    files.append(PlannedFile("nb2prod.json", None))
    return Plan(analysis, tuple(files), job_chunks)


def job_role(cell: CodeCell) -> str:
    """A job cell's role in the source map: `metrics` when it has that role (the engines keep
    running the job after a failing metrics cell, so the failure and the metrics are recorded)."""
    return "metrics" if "metrics" in cell.roles else "train"


def _names_in(expression: str | None) -> set[str]:
    if not expression:
        return set()
    import ast

    return {n.id for n in ast.walk(ast.parse(expression, mode="eval")) if isinstance(n, ast.Name)}
