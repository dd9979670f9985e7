"""Where runs are kept: one rule for every command that reads or writes runs.

The first of these that applies names the run store:

1. `--store DIR` on the command line                         (`from --store`)
2. `$NB2PROD_STORE`                                           (`from NB2PROD_STORE`)
3. the notebook or build named on the command line (train, sweep, serve, the JupyterLab panel):
   config `store` of that notebook (its `metadata.nb2prod`, else its nearest pyproject.toml
   `[tool.nb2prod]`)                                          (`from config`),
   else `runs/` beside the notebook                           (`from notebook`)
4. no notebook named: config `store` of the nearest pyproject.toml `[tool.nb2prod]` above the
   current folder                                             (`from config`)
5. `runs/` in the current folder                              (`from current folder`)

The environment comes before the notebook so that a store chosen for a shell or a CI job holds the
runs `train` writes and the runs `promote` reads alike; the notebook's own default comes before the
current folder's, so `nb2prod train NOTEBOOK` writes where it always did. A project whose
pyproject.toml sets `store` gets one store from anywhere inside it, for every command.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nb2prod.errors import InputError

DEFAULT_STORE = "runs"
ENV = "NB2PROD_STORE"
BUILD_RECORD = "nb2prod.json"

FROM_FLAG = "--store"
FROM_ENV = ENV
FROM_CONFIG = "config"
FROM_NOTEBOOK = "notebook"
FROM_CURRENT = "current folder"


@dataclass(frozen=True)
class StoreLocation:
    """A resolved run store folder and which rule chose it."""

    path: Path
    source: str  # one of FROM_FLAG, FROM_ENV, FROM_CONFIG, FROM_NOTEBOOK, FROM_CURRENT

    def describe(self) -> str:
        """The one line commands print on stderr: `store: PATH (from SOURCE)`."""
        return f"store: {self.path} (from {self.source})"


def resolve_store(
    store: Path | str | None = None,
    target: Path | str | None = None,
    *,
    cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> StoreLocation:
    """The run store for `--store` (or None) and the notebook or build folder named (or None).

    `target` may also be a run store folder itself (what `nb2prod serve STORE` accepts): it is used
    as is. Anything else named is not a source of runs and is ignored by the rule.
    """
    environ = os.environ if environ is None else environ
    if store is not None and str(store) != "":
        return StoreLocation(Path(store), FROM_FLAG)
    if environ.get(ENV):
        return StoreLocation(Path(environ[ENV]), FROM_ENV)
    if target is not None:
        found = _store_of_target(Path(target))
        if found is not None:
            return found
    configured = project_store(Path.cwd() if cwd is None else cwd)
    if configured is not None:
        return StoreLocation(configured, FROM_CONFIG)
    return StoreLocation(Path(DEFAULT_STORE) if cwd is None else cwd / DEFAULT_STORE, FROM_CURRENT)


def notebook_store(notebook: Path) -> StoreLocation:
    """The store of one notebook: its config `store`, else `runs/` beside it."""
    from nb2prod.config import load_config
    from nb2prod.notebook import read_notebook

    nb = read_notebook(notebook)
    configured = load_config(nb.path, nb.nb2prod_metadata).store
    if configured:
        return StoreLocation(Path(configured), FROM_CONFIG)
    return StoreLocation(notebook.parent / DEFAULT_STORE, FROM_NOTEBOOK)


def build_store(build_dir: Path) -> StoreLocation:
    """The store of a build folder: its source notebook's store, else `runs/` beside the build."""
    notebook = build_notebook(build_dir)
    if notebook is not None and notebook.is_file():
        return notebook_store(notebook)
    return StoreLocation(build_dir.parent / DEFAULT_STORE, FROM_NOTEBOOK)


def build_notebook(build_dir: Path) -> Path | None:
    """The source notebook recorded in `build_dir/nb2prod.json`, or None."""
    try:
        data = json.loads((build_dir / BUILD_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    source = data.get("source") if isinstance(data, dict) else None
    text = source.get("path") if isinstance(source, dict) else None
    if not isinstance(text, str) or not text:
        return None
    candidate = Path(text)
    return candidate if candidate.is_absolute() else (build_dir / candidate).resolve()


def project_store(start: Path) -> Path | None:
    """Config `store` of the nearest pyproject.toml `[tool.nb2prod]` at or above `start`."""
    from nb2prod.config import find_pyproject, section_settings

    pyproject = find_pyproject(start.resolve())
    if pyproject is None:
        return None
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{pyproject} is not valid TOML: {exc}") from None
    section: Any = data.get("tool", {}).get("nb2prod", {})
    configured = section_settings(section, f"{pyproject} [tool.nb2prod]", pyproject.parent).get("store")
    return Path(configured) if configured else None


def _store_of_target(target: Path) -> StoreLocation | None:
    from nb2prod.textnotebook import is_notebook_path

    if target.is_dir():
        if (target / BUILD_RECORD).is_file():
            return build_store(target)
        return None
    if target.is_file() and is_notebook_path(target):
        return notebook_store(target)
    return None
