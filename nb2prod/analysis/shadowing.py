"""A generated package must not take the name of a module it would hide.

The package's `src/` goes first on the path of the job, its tests and its image, so a notebook
named `pandas.ipynb` would give a package `pandas` that every `import pandas` then finds instead of
pandas (and `nb2prod.ipynb` would hide nb2prod from the job's collect step).
"""

from __future__ import annotations

from pathlib import Path

from nb2prod.analysis.requirements import _distributions_by_import, installed_version
from nb2prod.errors import Finding
from nb2prod.notebook import Notebook

ALWAYS_TAKEN = frozenset({"nb2prod"})  # imported by every training job


def shadowed_module(package: str, dist: str) -> str | None:
    """What the package (import name `package`, distribution `dist`) would hide, in words, or
    None when the names are free. Standard library names never get here: the package of a
    notebook named `json.ipynb` is `json_pkg`."""
    if package in ALWAYS_TAKEN:
        return f"the import name {package!r}, nb2prod's own package"
    providers = sorted(_distributions_by_import().get(package, ()))
    if providers and not _generated_package(package):
        return f"the import name {package!r}, a module of the installed distribution {providers[0]!r}"
    if installed_version(dist) is not None and not _generated_package(package):
        return f"the distribution name {dist!r}, an installed distribution that installing the package would replace"
    return None


def _generated_package(package: str) -> bool:
    """Whether the installed `package` is one nb2prod generated (an earlier build, installed)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return False
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    return any(
        (Path(folder) / "_runtime.py").is_file() and (Path(folder) / "_sourcemap.json").is_file() for folder in folders
    )


def shadowing_findings(notebook: Notebook, dist: str, package: str, configured: bool) -> list[Finding]:
    hidden = shadowed_module(package, dist)
    if hidden is None:
        return []
    source = "the configured `name`" if configured else f"the notebook's file name {notebook.name!r}"
    return [
        Finding(
            "error",
            "package-name-taken",
            f"the generated package (named from {source}) would take {hidden}, so it would hide that "
            "wherever it is imported or installed",
            notebook.location(),
            f"Set another `name` in [tool.nb2prod] or the notebook's metadata.nb2prod (e.g. {dist + '-model'!r}).",
        )
    ]
