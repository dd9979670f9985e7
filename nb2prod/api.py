"""The library API: the CLI and the Jupyter server extension both call these functions.

`build` reads as the whole pipeline: read → roles → analyse → plan → render → write.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from nb2prod.errors import Finding, NotebookErrors


@dataclass(frozen=True)
class BuildResult:
    output_dir: Path
    package: str
    files: tuple[str, ...]
    notes: tuple[Finding, ...]
    changed: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": True,
            "output_dir": str(self.output_dir),
            "package": self.package,
            "files": list(self.files),
            "notes": [n.to_dict() for n in self.notes],
            "changed": self.changed,
        }


@dataclass(frozen=True)
class CheckResult:
    output_dir: Path
    stale: bool
    reasons: tuple[str, ...]
    findings: tuple[Finding, ...]

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "error")

    @property
    def ok(self) -> bool:
        return not self.stale and not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "output_dir": str(self.output_dir),
            "stale": self.stale,
            "reasons": list(self.reasons),
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass(frozen=True)
class CellReport:
    index: int
    id: str
    cell_type: str
    roles: tuple[str, ...]
    module: str | None
    binds: tuple[str, ...]
    uses: tuple[str, ...]


@dataclass(frozen=True)
class Inspection:
    notebook: str
    package: str
    cells: tuple[CellReport, ...]
    parameters: tuple[dict[str, Any], ...]
    requirements: tuple[str, ...]
    findings: tuple[Finding, ...]
    example_inputs: str | None = None
    gates: tuple[dict[str, Any], ...] = ()  # the metrics cell's simple comparisons, checked on live labels
    gates_not_monitored: tuple[dict[str, Any], ...] = ()  # its other asserts (they gate training only)

    def to_dict(self) -> dict[str, Any]:
        return {
            "gates": list(self.gates),
            "gates_not_monitored": list(self.gates_not_monitored),
            "ok": not any(f.severity == "error" for f in self.findings),
            "notebook": self.notebook,
            "package": self.package,
            "cells": [asdict(c) for c in self.cells],
            "parameters": list(self.parameters),
            "requirements": list(self.requirements),
            "findings": [f.to_dict() for f in self.findings],
            "example_inputs": self.example_inputs,
        }


@dataclass(frozen=True)
class _Prepared:
    analysis: Any  # nb2prod.analysis.analyse.Analysis
    output: Path


@contextlib.contextmanager
def _recursion_limit(limit: int = 3000) -> Iterator[None]:
    """Deeply nested cell code needs more than Python's default 1000 frames to analyse and format
    (IPython, which users run these cells in, raises it the same way)."""
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(max(previous, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)


def _prepare(
    notebook: str | Path, output: str | Path | None, overrides: Mapping[str, Any] | None, warm: bool = False
) -> _Prepared:
    with _recursion_limit():
        return _prepare_inner(notebook, output, overrides, warm)


def _prepare_inner(
    notebook: str | Path, output: str | Path | None, overrides: Mapping[str, Any] | None, warm: bool
) -> _Prepared:
    from nb2prod.analysis.analyse import analyse
    from nb2prod.analysis.requirements import add_hidden_requirements
    from nb2prod.config import load_config
    from nb2prod.notebook import read_notebook
    from nb2prod.roles import resolve_roles

    nb = read_notebook(notebook)
    config = load_config(nb.path, nb.nb2prod_metadata, dict(overrides or {}))
    cells, role_notes = resolve_roles(nb)
    if warm:
        from nb2prod.warm import warm_caches

        warm_caches(cells, config.line_length)
    analysis = allow_findings(add_hidden_requirements(analyse(nb, cells, config, role_notes)), config.allow)
    return _Prepared(analysis, _output_dir(nb.path, analysis.dist, output, config.output))


def allow_findings(analysis: Any, allowed: tuple[str, ...]) -> Any:
    """Config `allow`: error findings with these codes become notes, said to be allowed by configuration."""
    if not allowed or not any(f.severity == "error" and f.code in allowed for f in analysis.findings):
        return analysis
    import dataclasses

    findings = tuple(
        (
            dataclasses.replace(f, severity="note", message=f"{f.message} (allowed by configuration: `allow`)")
            if f.severity == "error" and f.code in allowed
            else f
        )
        for f in analysis.findings
    )
    return dataclasses.replace(analysis, findings=findings)


def _output_dir(notebook: Path, dist: str, output: str | Path | None, configured: str | None) -> Path:
    if output is not None:
        return Path(output).resolve()
    if configured:
        return Path(configured)
    return (notebook.resolve().parent / "build" / dist).resolve()


def _render_tree(prepared: _Prepared) -> dict[str, bytes]:
    from nb2prod.build_record import make_manifest
    from nb2prod.plan import plan_build
    from nb2prod.render import render
    from nb2prod.writer import MANIFEST

    with _recursion_limit():
        rendered = render(plan_build(prepared.analysis))
    files = dict(rendered.files)
    files[MANIFEST] = make_manifest(prepared.analysis, rendered, prepared.output)
    return files


def build(
    notebook: str | Path,
    *,
    output: str | Path | None = None,
    force: bool = False,
    overrides: Mapping[str, Any] | None = None,
) -> BuildResult:
    """Build `notebook` into its output folder; raise NotebookErrors if the notebook has errors."""
    from nb2prod.writer import write_tree

    prepared = _prepare(notebook, output, overrides, warm=True)
    analysis = prepared.analysis
    if analysis.errors:
        raise NotebookErrors(analysis.findings)
    files = _render_tree(prepared)
    changed = write_tree(prepared.output, files, force=force)
    notes = tuple(f for f in analysis.findings if f.severity != "error")
    return BuildResult(prepared.output, analysis.package, tuple(sorted(files)), notes, changed)


def check(
    notebook: str | Path, *, output: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> CheckResult:
    """Is the build output up to date with the notebook, and is the notebook free of errors?"""
    fast = _check_fast(notebook, output, overrides)
    if fast is not None:
        return fast
    prepared = _prepare(notebook, output, overrides)
    analysis = prepared.analysis
    if analysis.errors:
        return CheckResult(prepared.output, True, ("the notebook has errors",), analysis.findings)
    from nb2prod.writer import MANIFEST, read_manifest

    files = _render_tree(prepared)
    reasons = []
    if read_manifest(prepared.output) is None:
        reasons.append(f"{prepared.output} has not been built")
    else:
        for path, data in sorted(files.items()):
            if path == MANIFEST:
                continue
            target = prepared.output / path
            if not target.is_file():
                reasons.append(f"{path} is missing")
            elif target.read_bytes() != data:
                reasons.append(f"{path} differs from what the notebook builds")
    return CheckResult(prepared.output, bool(reasons), tuple(reasons), analysis.findings)


def _locate(
    notebook: str | Path, output: str | Path | None, overrides: Mapping[str, Any] | None
) -> tuple[Any, Any, Path]:
    """The notebook, its configuration and its output folder, without analysing it."""
    from nb2prod.analysis.identifiers import distribution_name
    from nb2prod.config import load_config
    from nb2prod.notebook import read_notebook

    nb = read_notebook(notebook)
    config = load_config(nb.path, nb.nb2prod_metadata, dict(overrides or {}))
    return nb, config, _output_dir(nb.path, distribution_name(config.name or nb.path.stem), output, config.output)


def output_dir(
    notebook: str | Path, *, output: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> Path:
    """Where `build` writes this notebook's output (configuration included)."""
    return _locate(notebook, output, overrides)[2]


def _check_fast(
    notebook: str | Path, output: str | Path | None, overrides: Mapping[str, Any] | None
) -> CheckResult | None:
    """Unchanged notebook, config and nb2prod, and untouched output: fresh, without analysing."""
    from nb2prod.build_record import input_hash
    from nb2prod.writer import hand_edits, read_manifest

    nb, config, out = _locate(notebook, output, overrides)
    manifest = read_manifest(out)
    if manifest is None or manifest.get("input_hash") != input_hash(nb.sha256, config.to_dict()):
        return None
    if _pins_moved(manifest.get("requirements") or []):
        return None  # the environment changed: compare what a build would write now
    edited = hand_edits(out, manifest)
    missing = [p for p in manifest.get("files", {}) if not (out / p).is_file()]
    if edited or missing:
        reasons = tuple(f"{p} was edited by hand" for p in edited) + tuple(f"{p} is missing" for p in missing)
        return CheckResult(out, True, reasons, ())
    return CheckResult(out, False, (), ())


def _pins_moved(specs: list[str]) -> bool:
    """Does an installed distribution no longer have the version the build pinned?"""
    from nb2prod.analysis.requirements import installed_version

    for spec in specs:
        name, _, version = spec.partition("==")
        if version and installed_version(name) not in (None, version):
            return True
    return False


def inspect(notebook: str | Path, *, overrides: Mapping[str, Any] | None = None) -> Inspection:
    prepared = _prepare(notebook, None, overrides)
    analysis = prepared.analysis
    cells = []
    analysed = {
        c.index: c
        for group in (analysis.job_cells, analysis.predict_cells, analysis.explain_cells, analysis.test_cells)
        for c in group
    }
    for module in analysis.modules:
        analysed.update({c.index: c for c in module.cells})
    for roled in analysis.all_cells:
        code_cell = analysed.get(roled.index)
        binds = tuple(sorted(code_cell.names.binds | {b.name for b in code_cell.names.imports})) if code_cell else ()
        uses = tuple(name for name, _ in analysis.uses.get(roled.index, ()))
        cells.append(
            CellReport(
                roled.index, roled.cell.id, roled.cell.cell_type, tuple(sorted(roled.roles)), roled.module, binds, uses
            )
        )
    parameters = tuple(
        {"name": p.name, **p.schema(), "cell": p.cell_index, "line": p.line} for p in analysis.parameters
    )
    from nb2prod.analysis.gates import notebook_gates

    gates, unmonitored = notebook_gates(analysis.all_cells, (p.name for p in analysis.parameters))
    return Inspection(
        analysis.notebook.name,
        analysis.package,
        tuple(cells),
        parameters,
        tuple(r.spec for r in analysis.requirements),
        analysis.findings,
        analysis.example_inputs,
        tuple(g.to_dict() for g in gates),
        tuple(u.to_dict() for u in unmonitored),
    )
