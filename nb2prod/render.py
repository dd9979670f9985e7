"""Step 5: render the planned files from jinja2 templates and format them.

Scaffolds (the template text around the cells' code) are rendered with one marker comment per
chunk and formatted with black; each chunk of cell code is formatted on its own (cached, in
parallel, see formatting.py) and put in place of its marker. The result is the same as
formatting the whole file, which the tests check, at a fraction of the cost on rebuilds.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nb2prod.analysis.parameters import Parameter
from nb2prod.formatting import FormatJob, Formatted, format_jobs
from nb2prod.plan import Chunk, Plan, PlannedFile
from nb2prod.resources import jinja_environment

MARKER = re.compile(r"^(?P<indent> *)# nb2prod:chunk (?P<key>\d+)$")


@dataclass(frozen=True)
class Placement:
    """Where a cell's code landed: file, first and last line, and statement line pairs."""

    path: str
    start: int
    end: int
    cell_index: int
    cell_id: str
    role: str
    lines: tuple[tuple[int, int], ...]  # (line in file, line in cell)


@dataclass(frozen=True)
class Rendered:
    files: dict[str, bytes]  # relative path -> content (nb2prod.json excluded)
    placements: tuple[Placement, ...]


@functools.lru_cache(maxsize=1)
def environment() -> Any:
    env = jinja_environment().overlay()
    env.filters["pyrepr"] = _pyrepr
    env.filters["toml"] = lambda value: json.dumps(str(value), ensure_ascii=False)
    env.filters["add1"] = lambda value: value + 1
    env.filters["annotation"] = _annotation
    env.filters["default_expr"] = _default_expr
    env.filters["docstring"] = lambda text: (text or "(no help)").replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    return env


def _pyrepr(value: Any) -> str:
    """A Python literal for plain data; refuses anything else (nothing from a notebook becomes code)."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return repr(value)
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_pyrepr(v) for v in value)
        return f"[{inner}]"
    if isinstance(value, dict):
        inner = ", ".join(f"{_pyrepr(k)}: {_pyrepr(v)}" for k, v in value.items())
        return "{" + inner + "}"
    raise TypeError(f"not plain data: {type(value).__name__}")


_ANNOTATIONS = {
    "int": "int",
    "float": "float",
    "str": "str",
    "bool": "bool",
    "list": "list[Any]",
    "dict": "dict[str, Any]",
    "any": "Any",
}


def _annotation(parameter: Parameter) -> str:
    annotation = _ANNOTATIONS[parameter.type]
    if parameter.nullable and parameter.type != "any":
        annotation += " | None"
    return annotation


def _default_expr(parameter: Parameter) -> str:
    if isinstance(parameter.default, (list, dict)):
        return f"_dataclasses.field(default_factory=lambda: {_pyrepr(parameter.default)})"
    return _pyrepr(parameter.default)


def render(plan: Plan) -> Rendered:
    analysis = plan.analysis
    line_length = analysis.config.line_length
    env = environment()
    scaffolds: dict[str, str] = {}
    for planned in plan.files:
        if planned.template is not None:
            text = env.get_template(planned.template).render(**planned.context, chunks=planned.chunks)
            scaffolds[planned.path] = text
    python_paths = [p for p in scaffolds if p.endswith(".py")]
    chunk_list = [chunk for planned in plan.files for chunk in planned.chunks] + list(plan.job_chunks)
    chunk_jobs, offsets = zip(*[chunk.format_job() for chunk in chunk_list]) if chunk_list else ((), ())
    job_sources = _job_cell_sources(plan) if analysis.has_job else ()
    jobs = (
        [FormatJob(scaffolds[p], 0) for p in python_paths]
        + list(chunk_jobs)
        + [FormatJob(text, 0) for text in job_sources]
    )
    formatted = format_jobs(jobs, line_length)
    generated_job_cells = tuple(formatted[len(formatted) - len(job_sources) :]) if job_sources else ()
    formatted = formatted[: len(formatted) - len(job_sources)]
    formatted_scaffolds = {p: f.text + "\n" for p, f in zip(python_paths, formatted)}
    by_key = {
        chunk.key: (chunk, result, offset)
        for chunk, result, offset in zip(chunk_list, formatted[len(python_paths) :], offsets)
    }

    files: dict[str, bytes] = {}
    placements: list[Placement] = []
    for planned in plan.files:
        if planned.path in formatted_scaffolds:
            text, placed = _assemble(planned, formatted_scaffolds[planned.path], by_key)
            placements.extend(placed)
            files[planned.path] = text.encode()
        elif planned.path in scaffolds:
            files[planned.path] = scaffolds[planned.path].encode()
    src = f"src/{analysis.package}"
    files[f"{src}/_runtime.py"] = (Path(__file__).with_name("runtime.py")).read_bytes()
    files[f"{src}/py.typed"] = b""
    if analysis.has_job:
        files["job/train.ipynb"] = _job_notebook(plan, by_key, generated_job_cells)
    files.update(_image_files(plan))
    files[f"{src}/_sourcemap.json"] = _source_map(placements)
    return Rendered(files, tuple(placements))


def _assemble(
    planned: PlannedFile, scaffold: str, by_key: dict[int, tuple[Chunk, Formatted, int]]
) -> tuple[str, list[Placement]]:
    out: list[str] = []
    placements: list[Placement] = []
    for line in scaffold.split("\n"):
        match = MARKER.match(line)
        if not match:
            out.append(line)
            continue
        chunk, result, lead = by_key[int(match.group("key"))]
        start = len(out) + 1
        chunk_lines = result.text.split("\n")
        out.extend(chunk_lines)
        # statement pairs are (line in chunk, line in chunk source); the source has the header line first
        pairs = tuple((start + a - 1, b - 1 + lead) for a, b in result.statement_lines if b > 1)
        placements.append(
            Placement(
                planned.path, start, start + len(chunk_lines) - 1, chunk.cell.index, chunk.cell.id, chunk.role, pairs
            )
        )
    return "\n".join(out), placements


def _job_cell_sources(plan: Plan) -> tuple[str, str, str]:
    """The generated cells of job/train.ipynb (parameters, imports, save), before formatting."""
    analysis = plan.analysis
    package = analysis.package
    parameter_lines = [
        f"{p.name} = {_pyrepr(p.default)}" + (f"  # {p.help}" if p.help else "") for p in analysis.parameters
    ]
    imports = list(analysis.job_needs.sorted_imports())
    imports += [
        f"from {package}.{module} import {', '.join(names)}" for module, names in analysis.job_needs.sorted_package()
    ]
    imports.append(f"from {package} import _runtime as _nb2prod")
    saved = "{" + ", ".join(f"{p.name!r}: {p.name}" for p in analysis.parameters) + "}"
    save = (
        "import os\n\n"
        'if os.environ.get("NB2PROD_OUTPUT_DIR"):\n'
        f'    _nb2prod.save_outputs(os.environ["NB2PROD_OUTPUT_DIR"], globals(), {analysis.config.model_variable!r}, {saved})\n'
    )
    return "\n".join(parameter_lines) + "\n", "\n".join(imports) + "\n", save


def _notebook_cell(
    cell_id: str, source: str, cell_type: str = "code", metadata: dict[str, Any] | None = None
) -> dict[str, Any]:
    cell: dict[str, Any] = {
        "cell_type": cell_type,
        "id": cell_id,
        "metadata": metadata or {},
        "source": source.splitlines(keepends=True),
    }
    if cell_type == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def _job_notebook(
    plan: Plan, by_key: dict[int, tuple[Chunk, Formatted, int]], generated: tuple[Formatted, ...]
) -> bytes:
    """job/train.ipynb as nbformat 4.5 JSON, written directly (the layout nbformat writes)."""
    analysis = plan.analysis
    parameters, imports, save = (f.text for f in generated)
    about = (
        f"# Training job of {analysis.dist}\n\nGenerated by nb2prod from `{analysis.notebook.name}`: its parameters, train and "
        "metrics cells. Run it with papermill, e.g. `papermill job/train.ipynb out.ipynb -p NAME VALUE`, "
        "from the notebook's folder, with the package installed."
    )
    cells = [
        _notebook_cell("nb2prod-about", about, "markdown"),
        _notebook_cell("parameters", parameters if analysis.parameters else "", metadata={"tags": ["parameters"]}),
        _notebook_cell("nb2prod-imports", imports),
    ]
    for chunk in plan.job_chunks:
        _, result, _ = by_key[chunk.key]
        cells.append(
            _notebook_cell(
                chunk.cell.id, result.text, metadata={"nb2prod": {"cell": chunk.cell.index, "id": chunk.cell.id}}
            )
        )
    cells.append(_notebook_cell("nb2prod-save", save))
    notebook = {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
            "nb2prod": {"source": analysis.notebook.name, "source_sha256": analysis.notebook.sha256},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    return (json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _image_files(plan: Plan) -> dict[str, bytes]:
    from nb2prod.deploy.image import ImageContext, render_image_files

    analysis = plan.analysis
    context = ImageContext(
        dist_name=analysis.dist,
        package=analysis.package,
        version=analysis.config.version,
        python_version=analysis.config.python,
        base_image=analysis.config.base_image,
        source_sha256=analysis.notebook.sha256,
        notebook=analysis.notebook.name,
        has_predict=True,
    )
    files = render_image_files(context)
    from nb2prod.deploy.cluster_manifests import render_build_manifests

    files.update(
        render_build_manifests(
            dist_name=analysis.dist,
            version=analysis.config.version,
            parameter_schema={p.name: p.schema() for p in analysis.parameters},
            source_sha256=analysis.notebook.sha256,
            grid=analysis.config.sweep,
            schedule=analysis.config.schedule,
        )
    )
    return {path: text.encode() for path, text in sorted(files.items())}


def _source_map(placements: list[Placement]) -> bytes:
    data: dict[str, list[Any]] = {}
    for placement in placements:
        if placement.path.endswith(".py"):
            name = placement.path.rsplit("/", 1)[-1]
            data.setdefault(name, []).append(
                [
                    placement.start,
                    placement.end,
                    placement.cell_index,
                    placement.cell_id,
                    placement.role,
                    [list(p) for p in placement.lines],
                ]
            )
    return (json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n").encode()
