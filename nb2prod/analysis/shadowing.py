"""A generated package must not take the name of a module it would hide.

The package's `src/` goes first on the path of the job, its tests and its image, so a notebook
named `pandas.ipynb` would give a package `pandas` that every `import pandas` then finds instead of
pandas (and `nb2prod.ipynb` would hide nb2prod from the job's collect step).
"""

from __future__ import annotations

import sys

from nb2prod.analysis.requirements import _distributions_by_import, normalise
from nb2prod.errors import Finding
from nb2prod.notebook import Notebook

ALWAYS_TAKEN = frozenset({"nb2prod"})  # imported by every training job


def shadowed_module(package: str, dist: str) -> str | None:
    """What `package` would hide, in words, or None when the name is free."""
    if package in sys.stdlib_module_names:
        return f"the standard library module {package!r}"
    if package in ALWAYS_TAKEN:
        return f"nb2prod's own package {package!r}"
    providers = [d for d in _distributions_by_import().get(package, ()) if normalise(d) != normalise(dist)]
    if providers:
        return f"the module {package!r} of the installed distribution {sorted(providers)[0]!r}"
    return None


def shadowing_findings(notebook: Notebook, dist: str, package: str, configured: bool) -> list[Finding]:
    hidden = shadowed_module(package, dist)
    if hidden is None:
        return []
    source = "the configured `name`" if configured else f"the notebook's file name {notebook.name!r}"
    return [
        Finding(
            "error",
            "package-name-taken",
            f"the package name {package!r} (from {source}) is {hidden}, which the generated package would hide "
            "wherever it is imported",
            notebook.location(),
            f"Set another `name` in [tool.nb2prod] or the notebook's metadata.nb2prod (e.g. {dist + '-model'!r}).",
        )
    ]
