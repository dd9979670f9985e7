"""The build a run trains from: read from its `nb2prod.json` manifest."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nb2prod.errors import InputError
from nb2prod.runs.params import ParameterSpec, specs_from_schema

MANIFEST = "nb2prod.json"
JOB = Path("job") / "train.ipynb"


@dataclass(frozen=True)
class BuildInfo:
    build_dir: Path
    name: str  # distribution name
    package: str  # import name
    notebook: Path | None  # absolute path of the source notebook, when known
    notebook_sha256: str | None
    workdir: Path  # the notebook's folder (the job's working directory)
    model_variable: str
    contract_expression: str | None  # what the model is fitted on, when the build knows
    example_inputs: str | None  # what predict is fed in the contract test
    parameters: dict[str, ParameterSpec]
    nb2prod_version: str
    raw: dict[str, Any]
    cell_roles: dict[int, tuple[str, ...]] = field(default_factory=dict)  # notebook cell index → roles

    @property
    def src_dir(self) -> Path:
        return self.build_dir / "src"

    @property
    def job_notebook(self) -> Path:
        return self.build_dir / JOB


def _get(data: dict[str, Any], *paths: str) -> Any:
    for path in paths:
        node: Any = data
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                node = None
                break
            node = node[part]
        if node is not None:
            return node
    return None


def read_build(build_dir: Path) -> BuildInfo:
    """Read `build_dir/nb2prod.json`; refuse a folder that is not a build with a training job."""
    build_dir = build_dir.resolve()
    manifest = build_dir / MANIFEST
    if not manifest.is_file():
        raise InputError(f"{build_dir} is not an nb2prod build: it has no {MANIFEST} (run `nb2prod build NOTEBOOK`).")
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputError(f"{manifest} is not valid JSON ({exc}).") from None
    if not (build_dir / JOB).is_file():
        raise InputError(
            f"{build_dir} has no {JOB.as_posix()}: the notebook has no train cells, so there is no job to run."
        )
    name = _get(data, "package.name", "name", "dist", "config.name")
    package = _get(data, "package.import", "package.import_name", "import_name", "package")
    if isinstance(package, dict):
        package = None
    if not package:
        src = [p.name for p in (build_dir / "src").iterdir() if p.is_dir() and (p / "__init__.py").exists()]
        package = src[0] if len(src) == 1 else None
    if not package:
        raise InputError(f"{manifest} does not name the package and src/ holds no single package.")
    name = str(name or str(package).replace("_", "-"))
    notebook_text = _get(data, "source.path", "notebook.path", "source.notebook", "notebook")
    notebook: Path | None = None
    if isinstance(notebook_text, str):
        candidate = Path(notebook_text)
        notebook = (candidate if candidate.is_absolute() else (build_dir / candidate)).resolve()
    workdir = notebook.parent if notebook is not None and notebook.parent.is_dir() else build_dir
    recorded = data.get("workdir")  # the notebook's folder or config data_dir, relative to the build
    if isinstance(recorded, str) and (build_dir / recorded).resolve().is_dir():
        workdir = (build_dir / recorded).resolve()
    schema = _get(data, "parameter_schema", "parameters", "params")
    cell_roles: dict[int, tuple[str, ...]] = {}
    for cell in data.get("cells", []) if isinstance(data.get("cells"), list) else []:
        if isinstance(cell, dict) and isinstance(cell.get("index"), int):
            cell_roles[cell["index"]] = tuple(str(r) for r in cell.get("roles", ()))
    return BuildInfo(
        build_dir=build_dir,
        name=name,
        package=str(package),
        notebook=notebook,
        notebook_sha256=_get(data, "source.sha256", "notebook.sha256", "source_sha256", "notebook_sha256"),
        workdir=workdir,
        model_variable=str(_get(data, "config.model_variable", "model_variable") or "model"),
        contract_expression=_get(data, "fit_inputs"),
        example_inputs=_get(data, "example_inputs", "config.example_inputs"),
        parameters=specs_from_schema(schema or {}),
        nb2prod_version=str(_get(data, "nb2prod_version", "nb2prod.version", "generator.version") or ""),
        raw=data,
        cell_roles=cell_roles,
    )


def locate_build(target: Path) -> BuildInfo:
    """A build folder as is; a notebook is built first (a no-op when its build is up to date)."""
    target = target.resolve()
    if target.is_dir():
        return read_build(target)
    from nb2prod.textnotebook import is_notebook_path

    if not is_notebook_path(target):
        raise InputError(f"{target} is neither a notebook (.ipynb, or a jupytext .py) nor a build folder.")
    from nb2prod import api

    result = api.build(target)
    return read_build(Path(result.output_dir))
