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


def _distribution_folders() -> list[str]:
    """Stamps of every sys.path folder that holds distributions (site folders, PYTHONPATH entries,
    `pip install --target` folders): the folder, its modification time and the metadata it holds.
    Installing or removing a package adds or removes a `*.dist-info` folder there."""
    import hashlib
    import os

    stamps = []
    for entry in dict.fromkeys(sys.path):
        folder = entry or "."
        try:
            names = sorted(n for n in os.listdir(folder) if n.endswith((".dist-info", ".egg-info", ".egg-link")))
            mtime = os.stat(folder).st_mtime_ns
        except OSError:
            continue  # not a folder (a zip file, a missing entry): holds no installed metadata to scan
        if not names:
            continue  # no distribution here; one installed later makes it count, changing the key
        listing = hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]
        stamps.append(f"{os.path.abspath(folder)}:{mtime}:{listing}")
    return stamps


@functools.lru_cache(maxsize=1)
def _distributions_by_import() -> dict[str, tuple[str, ...]]:
    """Import name → distributions. Scanning every installed distribution takes most of a second,
    so the map is cached on disk, keyed by every sys.path folder that holds distributions (see
    `_distribution_folders`): a package installed, removed or put on PYTHONPATH changes the key.
    """
    import hashlib
    import json
    import os

    from nb2prod.formatting import cache_dir

    key = hashlib.sha256("\n".join(_distribution_folders()).encode()).hexdigest()[:32]
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
    for spec, cell_index, _line in installs:
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
        if not constraint:  # pinned like `%pip install` lines: to the version installed here
            version = installed_version(name)
            constraint = f"=={version}" if version else ""
        found[key] = Requirement(key, f"{key}{constraint}", "configuration")
    return tuple(sorted(found.values(), key=lambda r: r.name)), tuple(missing)


# Distributions that code needs at run time without importing them: (what the code does, how to
# recognise it, the distributions that provide it, first installed one wins).
HIDDEN_REQUIREMENTS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("as_frame=True", "keyword", "as_frame", ("pandas",)),
    ('set_output(transform="pandas")', "keyword", "transform=pandas", ("pandas",)),
    (".to_frame()", "attribute", "to_frame", ("pandas",)),
    ("read_parquet", "attribute", "read_parquet", ("pyarrow", "fastparquet")),
    ("to_parquet", "attribute", "to_parquet", ("pyarrow", "fastparquet")),
    ("read_feather", "attribute", "read_feather", ("pyarrow",)),
    ("to_feather", "attribute", "to_feather", ("pyarrow",)),
    ("read_orc", "attribute", "read_orc", ("pyarrow",)),
    ("read_excel", "attribute", "read_excel", ("openpyxl",)),
    ("to_excel", "attribute", "to_excel", ("openpyxl",)),
    ("read_xml", "attribute", "read_xml", ("lxml",)),
    ("read_html", "attribute", "read_html", ("lxml",)),
    ("read_hdf", "attribute", "read_hdf", ("tables",)),
    ("to_hdf", "attribute", "to_hdf", ("tables",)),
    ("to_markdown", "attribute", "to_markdown", ("tabulate",)),
)


def hidden_uses(code: str) -> list[tuple[str, tuple[str, ...], int]]:
    """(what the code does, the distributions that provide it, line) for each hidden dependency."""
    import ast

    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return []
    found = []
    for node in ast.walk(tree):
        for label, kind, key, distributions in HIDDEN_REQUIREMENTS:
            if kind == "attribute" and isinstance(node, ast.Attribute) and node.attr == key:
                found.append((label, distributions, node.lineno))
            elif kind == "keyword" and isinstance(node, ast.Call):
                name, _, wanted = key.partition("=")
                for keyword in node.keywords:
                    value = keyword.value
                    if keyword.arg != name or not isinstance(value, ast.Constant):
                        continue
                    if (wanted and value.value == wanted) or (not wanted and value.value is True):
                        found.append((label, distributions, node.lineno))
    return found


def add_hidden_requirements(analysis):  # type: ignore[no-untyped-def]
    """Add (pinned) the distributions that exported, job, predict and test code needs but never imports.

    An Analysis goes in and comes out (a copy with more requirements and notes); a need whose
    distribution is not installed here is a note naming the cell and the fix."""
    import dataclasses

    from nb2prod.errors import Finding

    cells = [*analysis.job_cells, *analysis.predict_cells, *analysis.explain_cells, *analysis.test_cells]
    for module in analysis.modules:
        cells.extend(module.cells)
    found = {r.name: r for r in analysis.requirements}
    notes = []
    for code_cell in sorted({c.index: c for c in cells}.values(), key=lambda c: c.index):
        for label, distributions, line in hidden_uses(code_cell.code):
            if any(normalise(d) in found for d in distributions):
                continue
            installed = [d for d in distributions if installed_version(d)]
            location = code_cell.roled.location(analysis.notebook, line)
            if not installed:
                notes.append(
                    Finding(
                        "note",
                        "hidden-requirement",
                        f"`{label}` needs {' or '.join(distributions)} at run time, which is not installed here",
                        location,
                        fix=f"Install {distributions[0]}, or list it in `requirements` ([tool.nb2prod]).",
                    )
                )
                continue
            key = normalise(installed[0])
            found[key] = Requirement(
                key, f"{key}=={installed_version(installed[0])}", f"{label} (cell {code_cell.index + 1})"
            )
    if len(found) == len(analysis.requirements) and not notes:
        return analysis
    requirements = tuple(sorted(found.values(), key=lambda r: r.name))
    return dataclasses.replace(analysis, requirements=requirements, findings=(*analysis.findings, *notes))
