"""Checks shared by the injection corpus and the property tests: every generated file parses in
its language, and the notebook-derived strings in it read back equal to what the notebook said."""

from __future__ import annotations

import ast
import json
import shlex
import tomllib
import urllib.parse
from pathlib import Path
from typing import Any

from nb2prod.validate import check_file, dockerfile_instructions


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_every_file_parses(out: Path) -> dict[str, bytes]:
    files = tree(out)
    assert files, f"{out} is empty"
    for path, data in files.items():
        problem = check_file(path, data)
        assert problem is None, problem
        if path.endswith(".py"):
            ast.parse(data.decode(), path)
    return files


def _assigned(module: ast.Module, name: str) -> Any:
    for node in module.body:
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        if any(isinstance(t, ast.Name) and t.id == name for t in targets) and node.value is not None:
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} is not assigned")


def assert_strings_read_back(out: Path, notebook_name: str, parameters: dict[str, tuple[Any, str]]) -> None:
    """`parameters`: name -> (default, help) as the notebook's parameters cell says them."""
    files = tree(out)
    manifest = json.loads(files["nb2prod.json"])
    package = manifest["package"]["import"]
    dist = manifest["package"]["name"]
    assert manifest["source"]["notebook"] == notebook_name
    src = f"src/{package}"

    init = ast.parse(files[f"{src}/__init__.py"].decode())
    assert ast.get_docstring(init, clean=False) == f"{dist}: built by nb2prod from {notebook_name}."
    for module in ("train", "params", "predict"):
        if f"{src}/{module}.py" in files:
            docstring = ast.get_docstring(ast.parse(files[f"{src}/{module}.py"].decode()), clean=False) or ""
            assert notebook_name in docstring, module

    project = tomllib.loads(files["pyproject.toml"].decode())["project"]
    assert project["description"] == f"Package built by nb2prod from {notebook_name}"

    label = next(
        args
        for word, args in [(w, a) for _, w, a in dockerfile_instructions(files["Dockerfile"].decode())]
        if word == "LABEL"
    )
    encoded = shlex.split(label.replace("\\$", "$"))
    labels = dict(item.split("=", 1) for item in encoded)
    assert urllib.parse.unquote(labels["io.nb2prod.source.notebook"]) == notebook_name

    if parameters:
        assert {n: (s["default"], s["help"]) for n, s in manifest["parameters"].items()} == parameters
    if parameters and f"{src}/params.py" in files:  # the job's files exist when there is a train cell
        params = ast.parse(files[f"{src}/params.py"].decode())
        schema = _assigned(params, "PARAMETER_SCHEMA")
        assert {n: (s["default"], s["help"]) for n, s in schema.items()} == parameters
        cls = next(n for n in params.body if isinstance(n, ast.ClassDef) and n.name == "Params")
        docs = {}
        for first, second in zip(cls.body, cls.body[1:]):
            if isinstance(first, ast.AnnAssign) and isinstance(second, ast.Expr):
                docs[first.target.id] = second.value.value  # type: ignore[attr-defined]
        assert {n: d.rstrip() for n, d in docs.items()} == {n: (h or "(no help)") for n, (_, h) in parameters.items()}
        job = json.loads(files["job/train.ipynb"])
        cell = next(c for c in job["cells"] if "parameters" in c["metadata"].get("tags", []))
        assigned = {
            node.targets[0].id: ast.literal_eval(node.value)  # type: ignore[attr-defined]
            for node in ast.parse("".join(cell["source"])).body
            if isinstance(node, ast.Assign)
        }
        assert assigned == {n: d for n, (d, _) in parameters.items()}
    for line in files["requirements.lock"].decode().splitlines():
        assert line.startswith("#") or "evil" not in line, line
