"""Requirements from imports: standard library excluded, import names mapped to the distributions
installed here and pinned to their versions; `%pip install` lines and config pins added."""

from __future__ import annotations

import functools
import importlib.metadata
import re
import sys
from dataclasses import dataclass

# Generated packages always need these at run time (model files are saved with joblib).
RUNTIME_REQUIREMENTS = ("joblib",)


@dataclass(frozen=True)
class Requirement:
    name: str  # normalised distribution name
    spec: str  # e.g. "numpy==2.4.6"
    source: str  # why it is needed, for `inspect`


@dataclass(frozen=True)
class MissingImport:
    module: str
    cell_index: int
    line: int


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@functools.lru_cache(maxsize=1)
def _distributions_by_import() -> dict[str, tuple[str, ...]]:
    """Import name → distributions. Scanning every installed distribution takes most of a second,
    so the map is cached on disk, keyed by the site folders on sys.path and their modification times (installing or removing a package changes its site folder).
    """
    import hashlib
    import json
    import os

    from nb2prod.formatting import cache_dir

    stamp = []
    for entry in sys.path:
        if not entry or ("site-packages" not in entry and "dist-packages" not in entry):
            continue  # distributions are installed into site folders; other entries change too often
        try:
            stamp.append(f"{entry}:{os.stat(entry or '.').st_mtime_ns}")
        except OSError:
            stamp.append(f"{entry}:-")
    key = hashlib.sha256("\n".join(stamp).encode()).hexdigest()[:32]
    path = cache_dir().parent / f"distributions-{key}.json"
    try:
        return {k: tuple(v) for k, v in json.loads(path.read_text(encoding="utf-8")).items()}
    except (OSError, ValueError):
        pass
    found = {k: tuple(v) for k, v in importlib.metadata.packages_distributions().items()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(found, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass
    return found


@functools.lru_cache(maxsize=None)
def installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _split_spec(spec: str) -> tuple[str, str]:
    match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*(.*)$", spec)
    if not match:
        return spec.strip(), ""
    return match.group(1), (match.group(2) or "") + match.group(3).strip()


def infer_requirements(
    imports: list[tuple[str, int, int]],  # (top-level module, cell index, line)
    installs: list[tuple[str, int, int]],  # (pip spec, cell index, line)
    configured: tuple[str, ...],
    own_package: str,
) -> tuple[tuple[Requirement, ...], tuple[MissingImport, ...]]:
    by_import = _distributions_by_import()
    found: dict[str, Requirement] = {}
    missing: list[MissingImport] = []
    configured_names = {normalise(_split_spec(spec)[0]): spec for spec in configured}
    for module, cell_index, line in imports:
        if module in sys.stdlib_module_names or module == own_package or module == "__future__":
            continue
        distributions = by_import.get(module)
        if not distributions:
            if normalise(module) in configured_names:
                continue
            missing.append(MissingImport(module, cell_index, line))
            continue
        distribution = sorted(distributions, key=normalise)[0]
        key = normalise(distribution)
        if key not in found:
            version = installed_version(distribution)
            spec = f"{key}=={version}" if version else key
            found[key] = Requirement(key, spec, f"import {module} (cell {cell_index + 1})")
    for spec, cell_index, line in installs:
        name, constraint = _split_spec(spec)
        key = normalise(name)
        if not constraint:
            version = installed_version(name)
            constraint = f"=={version}" if version else ""
        found[key] = Requirement(key, f"{key}{constraint}", f"pip install in cell {cell_index + 1}")
    if "scikit-learn" in found and "skops" not in found and installed_version("skops"):
        # nb2prod saves scikit-learn models with skops (no pickle), so their package must read it
        found["skops"] = Requirement(
            "skops", f"skops=={installed_version('skops')}", "nb2prod runtime (scikit-learn model files)"
        )
    for name in RUNTIME_REQUIREMENTS:
        if name not in found:
            version = installed_version(name)
            found[name] = Requirement(name, f"{name}=={version}" if version else name, "nb2prod runtime (model files)")
    for key, spec in configured_names.items():
        name, constraint = _split_spec(spec)
        found[key] = Requirement(key, f"{key}{constraint}", "configuration")
    return tuple(sorted(found.values(), key=lambda r: r.name)), tuple(missing)
