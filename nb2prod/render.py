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

from nb2prod import escape
from nb2prod.analysis.parameters import Parameter
from nb2prod.errors import InputError
from nb2prod.formatting import FormatJob, Formatted, format_jobs
from nb2prod.plan import Chunk, Plan, PlannedFile, shipped_serve_files
from nb2prod.resources import jinja_environment

SERVE_PORT = 8000  # the image serves on this port (NB2PROD_PORT); `nb2prod serve` defaults to it too
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
    """The templates' environment: every notebook-derived value goes through a filter of
    nb2prod.escape for the file's language; nothing is pasted raw."""
    env = jinja_environment().overlay()
    env.filters["pyrepr"] = escape.py_literal
    env.filters["docstring"] = escape.py_docstring
    env.filters["py_comment"] = escape.py_comment
    env.filters["identifier"] = escape.py_identifier
    env.filters["toml"] = lambda value: escape.toml_str(str(value))
    env.filters["toml_comment"] = escape.toml_comment
    env.filters["md_code"] = lambda value: escape.md_code(str(value))
    env.filters["md_text"] = lambda value: escape.md_text(str(value))
    env.filters["requirement_line"] = escape.requirement_line
    env.filters["requirements_comment"] = escape.requirements_comment
    env.filters["add1"] = lambda value: value + 1
    env.filters["annotation"] = _annotation
    env.filters["default_expr"] = _default_expr
    return env


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
    if parameter.secret:  # kept out of the repr, so printing the parameters never shows it
        return f"_dataclasses.field(default={escape.py_literal(parameter.default)}, repr=False)"
    if isinstance(parameter.default, (list, dict)):
        return f"_dataclasses.field(default_factory=lambda: {escape.py_literal(parameter.default)})"
    return escape.py_literal(parameter.default)


def render(plan: Plan) -> Rendered:
    analysis = plan.analysis
    line_length = analysis.config.line_length
    env = environment()
    scaffolds: dict[str, str] = {}
    for planned in plan.files:
        if planned.template is not None:
            try:
                text = env.get_template(planned.template).render(**planned.context, chunks=planned.chunks)
            except escape.EscapeError as exc:
                raise InputError(f"cannot write {planned.path}: {exc}") from None
            scaffolds[planned.path] = text
    python_paths = [p for p in scaffolds if p.endswith(".py")]
    # the scaffolds (cell code not yet in place) must compile before black reads them
    _refuse_invalid_files(plan, {p: scaffolds[p].encode() for p in python_paths}, [])
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
    shipped = Path(__file__).with_name("serve") / "shipped"
    for name in shipped_serve_files():
        files[f"{src}/_serve/{name}"] = (shipped / name).read_bytes()
    files[f"{src}/py.typed"] = b""
    if analysis.has_job:
        files["job/train.ipynb"] = _job_notebook(plan, by_key, generated_job_cells)
    files.update(_image_files(plan))
    files[f"{src}/_sourcemap.json"] = _source_map(placements)
    _refuse_invalid_files(plan, files, placements)
    return Rendered(files, tuple(placements))


def _refuse_invalid_files(plan: Plan, files: dict[str, bytes], placements: list[Placement]) -> None:
    """Parse every generated file in its language; a file that does not parse is never reported
    as built: one sentence naming the file and the notebook field that broke it."""
    from nb2prod.validate import check_files, culprit

    problem = check_files(files)
    if problem is None:
        return
    where = f"{problem.path}" + (f", line {problem.line}" if problem.line else "")
    cause = None
    if problem.line is not None:
        for placement in placements:
            if placement.path == problem.path and placement.start <= problem.line <= placement.end:
                cause = (
                    f"the code of notebook cell {placement.cell_index + 1} (id {placement.cell_id}, {placement.role})"
                )
    if cause is None:
        cause = culprit(problem, files, notebook_fields(plan.analysis))
    cause = cause or "a value taken from the notebook or its configuration"
    raise InputError(
        f"the generated {where} is not valid {problem.language} ({problem.detail}); it comes from {cause}, so "
        "nb2prod stops before replacing the output: change that value in the notebook"
    )


def notebook_fields(analysis: Any) -> list[tuple[str, str]]:
    """(description, value) of every notebook-derived string a generated file may hold."""
    notebook = analysis.notebook
    fields: list[tuple[str, str]] = [("the notebook's file name", notebook.name)]
    for cell in notebook.cells:
        fields.append((f"the id of cell {cell.index + 1}", cell.id))
    for p in analysis.parameters:
        place = f"cell {p.cell_index + 1}, line {p.line}"
        fields.append((f"the name of parameter {p.name!r} ({place})", p.name))
        fields.append((f"the help comment of parameter {p.name!r} ({place})", p.help))
        if isinstance(p.default, str):
            fields.append((f"the default of parameter {p.name!r} ({place})", p.default))
    for requirement in analysis.requirements:
        fields.append((f"the requirement {requirement.spec!r} ({requirement.source})", requirement.spec))
    for key, value in analysis.config.to_dict().items():
        if isinstance(value, str):
            fields.append((f"the setting {key!r}", value))
        elif isinstance(value, list):
            fields.extend((f"the setting {key!r}", v) for v in value if isinstance(v, str))
    return fields


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
        f"{escape.py_identifier(p.name)} = {escape.py_literal(p.default)}"
        + (f"  # {escape.py_comment(p.help)}" if p.help else "")
        for p in analysis.parameters
    ]
    imports = list(analysis.job_needs.sorted_imports())
    imports += [
        f"from {package}.{module} import {', '.join(names)}" for module, names in analysis.job_needs.sorted_package()
    ]
    imports.append(f"from {package} import _runtime as _nb2prod")
    saved = (
        "{" + ", ".join(f"{escape.py_str(p.name)}: {escape.py_identifier(p.name)}" for p in analysis.parameters) + "}"
    )
    secrets = [escape.py_str(p.name) for p in analysis.parameters if p.secret]
    hidden = f", ({', '.join(secrets)},)" if secrets else ""  # written as "***"
    save = (
        "import os\n\n"
        'if os.environ.get("NB2PROD_OUTPUT_DIR"):\n'
        f'    _nb2prod.save_outputs(os.environ["NB2PROD_OUTPUT_DIR"], globals(), {escape.py_str(analysis.config.model_variable)}, {saved}{hidden})\n'
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
        f"# Training job of {escape.md_text(analysis.dist)}\n\nGenerated by nb2prod from {escape.md_code(analysis.notebook.name)}: "
        "its parameters, train and "
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
        serve_entry=f"{analysis.package}.serve:main",
        serve_port=SERVE_PORT,
        health_path="/readyz",
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
            secret_name=analysis.config.secret_name,
        )
    )
    from nb2prod.deploy.monitoring import render_build_monitoring

    files.update(
        render_build_monitoring(
            dist_name=analysis.dist,
            version=analysis.config.version,
            notebook=analysis.notebook.name,
            config=analysis.config,
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
