"""`verify`: run the notebook as its author did and its package's job in a clean environment,
then compare metrics and predictions on the example inputs.

The notebook runs top to bottom under papermill (its `skip` cells left out, its own parameter
defaults, the job's working directory), in the environment nb2prod runs in. The job runs from the
built package installed in a virtual environment made from `requirements.lock` alone. Both end
with the same probe (`probe.py`), which records metrics, the first rows of the example inputs and
the model's predictions on them; the package's model also predicts on the notebook's rows, so the
two models are compared on the same inputs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from nb2prod.errors import InputError
from nb2prod.verify.cells import NotebookCell, changes, executable_source, notebook_cells, offline_problem, reads

DEFAULT_TIMEOUT = 600.0
NOTEBOOK_REPORT = "notebook-report.json"
JOB_REPORT = "job-report.json"


@dataclass(frozen=True)
class Suspect:
    """A cell that binds or changes a name a difference depends on."""

    cell: int  # 0-based index in the notebook
    cell_id: str
    role: str  # "untagged" for exploration cells
    name: str
    line: int
    how: str  # "binds" | "changes"
    in_job: bool

    def describe(self, notebook: str) -> str:
        where = f"{notebook}: cell {self.cell + 1} (id {self.cell_id}, {self.role}), line {self.line}"
        text = f"{where} {self.how} `{self.name}`"
        if not self.in_job:
            text += "; the notebook runs this cell but the job does not: tag it `train` (or move the statement into a train cell)"
        return text


@dataclass(frozen=True)
class Difference:
    what: str  # "metric" | "predictions" | "example inputs" | "job error" | "model"
    name: str
    notebook: Any
    job: Any
    detail: str = ""
    suspects: tuple[Suspect, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "name": self.name,
            "notebook": self.notebook,
            "job": self.job,
            "detail": self.detail,
            "suspects": [s.__dict__ for s in self.suspects],
        }


@dataclass(frozen=True)
class Timings:
    notebook_s: float
    environment_s: float
    environment_cached: bool
    job_s: float
    total_s: float


@dataclass(frozen=True)
class VerifyResult:
    notebook: str
    build_dir: Path
    workdir: Path
    metrics_notebook: Mapping[str, Any] | None
    metrics_job: Mapping[str, Any] | None
    compared: tuple[str, ...]  # what was compared: metric names, "predictions", "example inputs"
    differences: tuple[Difference, ...]
    tolerances: Mapping[str, float]
    timings: Timings
    notes: tuple[str, ...] = ()
    kept: Path | None = None  # the working folder (executed notebook, reports) with --keep
    environment: Path | None = field(default=None)

    @property
    def agree(self) -> bool:
        return not self.differences

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.agree,
            "notebook": self.notebook,
            "build_dir": str(self.build_dir),
            "workdir": str(self.workdir),
            "metrics": {"notebook": self.metrics_notebook, "job": self.metrics_job},
            "compared": list(self.compared),
            "tolerances": dict(self.tolerances),
            "differences": [d.to_dict() for d in self.differences],
            "notes": list(self.notes),
            "timings": self.timings.__dict__,
            "kept": str(self.kept) if self.kept else None,
            "environment": str(self.environment) if self.environment else None,
        }

    def render(self) -> str:
        t = self.timings
        env = "cached" if t.environment_cached else "made"
        lines = []
        if self.agree:
            lines.append(
                f"{self.notebook}: the package computes what the notebook computes"
                f" ({', '.join(self.compared) or 'nothing to compare'})"
            )
        else:
            count = len(self.differences)
            lines.append(
                f"{self.notebook}: the package differs from the notebook ({count} difference{'s' * (count > 1)})"
            )
            rows = [("WHAT", "NOTEBOOK", "PACKAGE (clean environment)")]
            for d in self.differences:
                rows.append((f"{d.what} {d.name}".strip(), _short(d.notebook), _short(d.job)))
            widths = [max(len(r[i]) for r in rows) for i in range(2)]
            for row in rows:
                lines.append(f"  {row[0].ljust(widths[0])}  {row[1].ljust(widths[1])}  {row[2]}")
            for d in self.differences:
                if d.detail:
                    lines.append(f"{d.what} {d.name}: {d.detail}".replace("  ", " "))
                if d.suspects:
                    lines.append(f"probably caused by (cells that bind or change what {d.what} {d.name} depends on):")
                    lines.extend(f"  {s.describe(self.notebook)}" for s in d.suspects)
        for note in self.notes:
            lines.append(f"note: {note}")
        lines.append(
            f"time: notebook {t.notebook_s:.1f}s, clean environment {t.environment_s:.1f}s ({env}),"
            f" job {t.job_s:.1f}s, total {t.total_s:.1f}s"
        )
        if self.kept:
            lines.append(f"kept: {self.kept}")
        return "\n".join(lines)


def _short(value: Any, width: int = 40) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


def verify(
    notebook: str | Path,
    *,
    tolerances: Mapping[str, float] | None = None,
    keep: bool = False,
    data_dir: str | Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    overrides: Mapping[str, Any] | None = None,
) -> VerifyResult:
    """Run the notebook and its built package, compare; raise InputError for what cannot be verified."""
    from nb2prod import api
    from nb2prod.config import load_config
    from nb2prod.notebook import read_notebook
    from nb2prod.runs.build import read_build

    started = time.perf_counter()
    settings = dict(overrides or {})
    if data_dir is not None:
        settings["data_dir"] = str(data_dir)
    nb = read_notebook(notebook)
    config = load_config(nb.path, nb.nb2prod_metadata, settings)
    allowed = {**(config.verify_tolerance or {}), **dict(tolerances or {})}
    cells = notebook_cells(nb)
    for cell in cells:  # refuse before anything runs
        problem = offline_problem(cell)
        if problem is not None:
            what, line = problem
            raise InputError(
                f"{cell.location(nb.name, line).describe()}: this cell {what}, and `nb2prod verify` runs the notebook"
                " offline on a CPU within a time limit; tag the cell `skip` and pass its data as a parameter"
                " (e.g. a file path in the parameters cell), then verify again."
            )
    build = read_build(api.build(nb.path, overrides=settings).output_dir)
    has_predict = any("predict" in roles for roles in build.cell_roles.values())
    work = Path(tempfile.mkdtemp(prefix="nb2prod-verify-"))
    try:
        t0 = time.perf_counter()
        notebook_report = _run_notebook(nb, cells, build, has_predict, work, timeout)
        notebook_s = time.perf_counter() - t0
        job_report, environment_s, cached, job_s, venv = _run_job(build, notebook_report, work, timeout)
        differences, compared, notes = _compare(nb.name, cells, build, notebook_report, job_report, allowed)
        timings = Timings(notebook_s, environment_s, cached, job_s, time.perf_counter() - started)
        return VerifyResult(
            nb.name,
            build.build_dir,
            build.workdir,
            notebook_report.get("metrics"),
            job_report.get("metrics"),
            compared,
            differences,
            allowed,
            timings,
            notes,
            work if keep else None,
            venv,
        )
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


# --- the notebook, as its author ran it -----------------------------------------------------------
def _probe_source(script: bool = False) -> str:
    """probe.py's source; as a notebook cell, without its `__main__` block (a kernel is `__main__`)."""
    from nb2prod.verify import probe

    text = Path(probe.__file__).read_text(encoding="utf-8")
    return text if script else text.split('\nif __name__ == "__main__":')[0]


def _run_notebook(
    nb: Any, cells: tuple[NotebookCell, ...], build: Any, has_predict: bool, work: Path, timeout: float
) -> dict[str, Any]:
    import nbformat
    import papermill

    from nb2prod.runs.engines import ipc_kernel_manager, papermill_parameters_source

    out = work / NOTEBOOK_REPORT
    document = nbformat.v4.new_notebook()
    kernel = "python3"
    document.metadata["kernelspec"] = {"name": kernel, "display_name": "Python 3", "language": "python"}
    for cell in cells:
        source = executable_source(cell)
        node = nbformat.v4.new_code_cell(papermill_parameters_source(source) if "parameters" in cell.roles else source)
        node.metadata["tags"] = ["parameters"] if "parameters" in cell.roles else []
        node.metadata["nb2prod"] = {"cell": cell.index, "id": cell.id}
        document.cells.append(node)
    probe = nbformat.v4.new_code_cell(
        _probe_source()
        + "\n\nreport(globals(), {out!r}, {model!r}, {inputs!r}, {predict})\n".format(
            out=str(out),
            model=build.model_variable,
            inputs=build.example_inputs,
            predict="predict" if has_predict else "None",
        )
    )
    probe.metadata["nb2prod"] = {"probe": True}
    document.cells.append(probe)
    source_copy, executed = work / "notebook.ipynb", work / "notebook.executed.ipynb"
    nbformat.write(document, source_copy)
    try:
        papermill.execute_notebook(
            str(source_copy),
            str(executed),
            cwd=str(build.workdir),
            kernel_name=kernel,
            progress_bar=False,
            log_output=False,
            execution_timeout=timeout,
            kernel_manager_class=ipc_kernel_manager(),
        )
    except Exception as exc:  # noqa: BLE001 - the notebook itself does not run: say where
        raise InputError(_notebook_failure(nb.name, cells, executed, exc, timeout)) from None
    try:
        return json.loads(out.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise InputError(f"{nb.name}: the notebook ran but its results could not be read back.") from None


def _notebook_failure(
    name: str, cells: tuple[NotebookCell, ...], executed: Path, exc: Exception, timeout: float
) -> str:
    by_index = {c.index: c for c in cells}
    cell, message = None, f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
    try:
        document = json.loads(executed.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        document = {"cells": []}
    for node in document.get("cells", []):
        meta = node.get("metadata", {})
        index = meta.get("nb2prod", {}).get("cell")
        status = meta.get("papermill", {}).get("status")
        errors = [o for o in node.get("outputs", []) if o.get("output_type") == "error"]
        if errors or status == "running":
            cell = by_index.get(index)
            if errors:
                message = f"{errors[0].get('ename')}: {errors[0].get('evalue')}"
            break
    timed_out = "timeout" in type(exc).__name__.lower() or "timed out" in str(exc).lower()
    where = cell.location(name).describe() if cell else name
    if timed_out:
        return (
            f"{where}: did not finish within {timeout:.0f} s when the notebook ran top to bottom; pass a longer"
            " --timeout, or tag slow cells that the job does not need `skip`."
        )
    return (
        f"{where}: the notebook itself fails here when run top to bottom ({message}); fix the cell, or tag it"
        " `skip` if the job does not need it, then verify again."
    )


# --- the job, in a clean environment ------------------------------------------------------------
def _run_job(
    build: Any, notebook_report: dict[str, Any], work: Path, timeout: float
) -> tuple[dict[str, Any], float, bool, float, Path]:
    from nb2prod.verify.environment import clean_env, clean_environment

    package_copy = work / "package"
    shutil.copytree(build.build_dir, package_copy, ignore=shutil.ignore_patterns("wheelhouse", "k8s", "kubeflow"))
    probe_path = work / "nb2prod_verify_probe.py"
    probe_path.write_text(_probe_source(script=True), encoding="utf-8")
    out = work / JOB_REPORT
    spec = {
        "package": build.package,
        "workdir": str(build.workdir),
        "model_variable": build.model_variable,
        "inputs_expression": build.example_inputs,
        "given": notebook_report.get("inputs"),
        "out": str(out),
    }
    spec_path = work / "job-spec.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    t0 = time.perf_counter()
    with clean_environment(build.build_dir / "requirements.lock", package_copy, build.name, timeout) as (
        python,
        cached,
    ):
        environment_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        try:
            done = subprocess.run(
                [str(python), str(probe_path), str(spec_path)],
                cwd=str(work),
                env=clean_env(),
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise InputError(
                f"the job of {build.name} did not finish within {timeout:.0f} s in the clean environment; pass a longer --timeout."
            ) from None
        job_s = time.perf_counter() - t1
    (work / "job.log").write_text(done.stdout + done.stderr, encoding="utf-8")
    try:
        report = json.loads(out.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        report = {"error": {"type": "JobCrashed", "message": last, "cell": None}}
    return report, environment_s, cached, job_s, python.parent.parent


# --- comparing ------------------------------------------------------------------------------------
def _close(a: Any, b: Any, tolerance: float) -> bool:
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) and not isinstance(b, bool):
        return a == b or abs(a - b) <= tolerance
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y, tolerance) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], tolerance) for k in a)
    return a == b


def _suspects(names: set[str], cells: tuple[NotebookCell, ...]) -> tuple[Suspect, ...]:
    """Cells that bind or change `names`, imports aside; cells the job leaves out first, and only
    those when there are any (a job cell binding its own names is what it should do)."""
    found: dict[tuple[int, str], Suspect] = {}
    for cell in cells:
        for name, events in changes(cell.code).items():
            if name not in names:
                continue
            for line, how in events:
                key = (cell.index, name)
                if key not in found and not _is_import(cell.code, line):
                    found[key] = Suspect(cell.index, cell.id, cell.role or "untagged", name, line, how, cell.in_job)
    items = sorted(found.values(), key=lambda s: (s.in_job, s.cell, s.name))
    outside = [s for s in items if not s.in_job]
    return tuple((outside or items)[:6])


def _is_import(code: str, line: int) -> bool:
    text = code.split("\n")[line - 1].strip() if 0 < line <= len(code.split("\n")) else ""
    return text.startswith(("import ", "from "))


def _names_of(cells: tuple[NotebookCell, ...], role: str) -> set[str]:
    names: set[str] = set()
    for cell in cells:
        if role in cell.roles:
            names |= reads(cell.code)
    return names


def _compare(
    name: str,
    cells: tuple[NotebookCell, ...],
    build: Any,
    nb: dict[str, Any],
    job: dict[str, Any],
    tolerances: Mapping[str, float],
) -> tuple[tuple[Difference, ...], tuple[str, ...], tuple[str, ...]]:
    model = build.model_variable
    differences: list[Difference] = []
    notes = [f"notebook: {p}" for p in nb.get("problems", [])]
    error = job.get("error")
    if error:
        failing = next((c for c in cells if c.index == error.get("cell")), None)
        names = (reads(failing.code) if failing else set()) | {model}
        detail = error.get("message", "")
        if error.get("type") in ("ModuleNotFoundError", "ImportError"):
            detail += (
                "; requirements.lock lacks a distribution the code needs: add it to `requirements` ([tool.nb2prod])"
            )
        elif failing is not None:
            detail += f" (the notebook ran {failing.location(name).describe()} without error)"
        differences.append(
            Difference("job error", "", "ran", error.get("type", "error"), detail, _suspects(names, cells))
        )
        return tuple(differences), (), tuple(notes)
    notes += [f"package: {p}" for p in job.get("problems", [])]
    compared: list[str] = []
    metrics_nb, metrics_job = nb.get("metrics") or {}, job.get("metrics") or {}
    metric_names = {"metrics", model} | _names_of(cells, "metrics")
    for key in sorted(set(metrics_nb) | set(metrics_job)):
        compared.append(f"metric {key}")
        a, b = metrics_nb.get(key, "(absent)"), metrics_job.get(key, "(absent)")
        tolerance = float(tolerances.get(key, 0.0))
        if not _close(a, b, tolerance):
            detail = (
                f"differs by {abs(a - b):.3g}" if isinstance(a, (int, float)) and isinstance(b, (int, float)) else ""
            )
            if detail and tolerance:
                detail += f", more than the tolerance {tolerance:g}"
            differences.append(Difference("metric", key, a, b, detail, _suspects(metric_names, cells)))
    inputs = build.example_inputs
    if not inputs:
        notes.append("no example inputs to compare predictions on: set `example_inputs` in the configuration")
    else:
        mine, theirs = nb.get("predictions") or {}, job.get("given") or {}
        if mine or theirs:
            compared.append("predictions")
            tolerance = float(tolerances.get("predictions", 0.0))
            a, b = mine.get("values", mine.get("error")), theirs.get("values", theirs.get("error"))
            if not _close(a, b, tolerance):
                names = {model} | _names_of(cells, "train")
                differences.append(
                    Difference(
                        "predictions",
                        f"on {inputs}",
                        a,
                        b,
                        "the two models predict differently on the same example rows",
                        _suspects(names, cells),
                    )
                )
        if nb.get("inputs") is not None and job.get("inputs") is not None:
            compared.append("example inputs")
            if not _close(nb["inputs"], job["inputs"], 0.0):
                differences.append(
                    Difference(
                        "example inputs",
                        inputs,
                        "notebook rows",
                        "other rows",
                        "the job's data differs from the notebook's",
                        _suspects(reads(inputs), cells),
                    )
                )
    return tuple(differences), tuple(compared), tuple(notes)
