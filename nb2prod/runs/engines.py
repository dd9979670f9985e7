"""The two ways to execute a build's training job into a run folder.

`papermill` executes the generated `job/train.ipynb` with a real kernel; `python` imports the
generated package and calls `train.run(params)` in this process. Both finish with `collect`, which
saves the model, the metrics and the input contract into the run folder the same way.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nb2prod.runs.collect import OUTPUT_ENV, collect, collect_cell_source
from nb2prod.runs.record import ERRORED, FAILED_GATE, SUCCEEDED, CellRef, Failure
from nb2prod.runtime import JOB_SECRETS_ENV, redact_text, secret_forms

COLLECT_TAG = "nb2prod-collect"
SECRETS_TAG = "nb2prod-secrets"
GATE_ERRORS = ("AssertionError", "QualityGateError")
EXECUTED_NOTEBOOK = "notebook.ipynb"
LOG_FILE = "output.log"
JOB_MODULE = "_job.py"  # the job's cells at module level in the generated package


@dataclass(frozen=True)
class JobSpec:
    """What an engine needs to know about the build it runs."""

    package: str
    src_dir: Path  # the build's src/ (put on the kernel's PYTHONPATH / sys.path)
    job_notebook: Path  # job/train.ipynb
    workdir: Path  # the notebook's folder: relative data paths resolve as in Jupyter
    model_variable: str
    contract_expression: str | None
    model_format: str = "auto"
    kernel_name: str | None = None
    inputs_expression: str | None = None  # example rows for predict (config example_inputs)
    cell_roles: dict[int, tuple[str, ...]] = field(default_factory=dict)  # notebook cell index → roles
    notebook_name: str | None = None
    secrets: tuple[str, ...] = ()  # secret parameters: handed to the job in memory, never written
    on_cell: Any = field(default=None, compare=False)  # progress: (i, n, role, first line) as a cell starts


@dataclass(frozen=True)
class EngineOutcome:
    status: str
    failure: Failure | None
    execute_s: float
    cells_s: float | None
    files: tuple[str, ...]  # files the engine wrote into the run folder besides collect's
    collect_s: float | None = None


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _pythonpath(src_dir: Path) -> str:
    """The build's src/, then the folder this nb2prod is imported from (the collect cell imports it)."""
    import nb2prod

    root = Path(nb2prod.__file__).resolve().parent.parent
    # an installed nb2prod is found by the kernel anyway; never put site-packages before the stdlib
    extra = [] if root.name in ("site-packages", "dist-packages") else [str(root)]
    existing = os.environ.get("PYTHONPATH")
    return os.pathsep.join([str(src_dir), *extra, *([existing] if existing else [])])


def _notebook_cell(cell: Any) -> int | None:
    """The source notebook cell a job cell came from (the build writes `metadata.nb2prod.cell`)."""
    meta = cell.get("metadata", {}).get("nb2prod", {})
    index = meta.get("cell") if isinstance(meta, dict) else None
    return index if isinstance(index, int) and not isinstance(index, bool) else None


def _cell_role(cell: Any, cell_roles: dict[int, tuple[str, ...]]) -> str | None:
    index = _notebook_cell(cell)
    roles = list(cell_roles.get(index, ())) if index is not None else []
    roles += [t for t in cell.get("metadata", {}).get("tags", []) if t in ("parameters", "train", "metrics")]
    if "metrics" in roles:
        return "metrics"
    return roles[0] if roles else None


def _cell_ref(spec: "JobSpec", cell: Any, job_index: int | None, line: int | None = None) -> CellRef:
    meta = cell.get("metadata", {}).get("nb2prod", {})
    cell_id = meta.get("id") if isinstance(meta, dict) else None
    return CellRef(
        job_cell=job_index,
        cell_id=cell_id or cell.get("id"),
        role=_cell_role(cell, spec.cell_roles),
        notebook=spec.notebook_name,
        notebook_cell=_notebook_cell(cell),
        line=line,
    )


def _strip_ansi(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)


def _error_line(traceback_lines: list[str]) -> int | None:
    """The line of the failing cell that was executing when the error was raised (its outermost
    frame in IPython's traceback text; later frames may be in functions of other cells)."""
    import re

    for chunk in traceback_lines:
        clean = _strip_ansi(chunk)
        if "Cell In[" in clean or "<ipython-input" in clean:
            found = re.search(r"line (\d+)", clean)
            if found:
                return int(found.group(1))
    return None


def run_papermill(spec: JobSpec, params: dict[str, Any], run_dir: Path) -> EngineOutcome:
    """Execute the job notebook with a kernel; the executed copy is the run's notebook.ipynb."""
    import tempfile

    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    nb = nbformat.read(spec.job_notebook, as_version=4)
    job_cells = len(nb.cells)
    for cell in nb.cells:
        if cell.cell_type == "code" and _cell_role(cell, spec.cell_roles) == "metrics":
            # a failed gate still lets the collect cell record metrics and model for inspection
            tags = list(cell.metadata.get("tags", []))
            if "raises-exception" not in tags:
                cell.metadata["tags"] = [*tags, "raises-exception"]
    collect_cell = nbformat.v4.new_code_cell(
        collect_cell_source(
            spec.model_variable, spec.contract_expression, spec.model_format, spec.inputs_expression, spec.package
        )
    )
    collect_cell.metadata["tags"] = [COLLECT_TAG]
    nb.cells.append(collect_cell)
    for index, cell in enumerate(nb.cells):
        cell.metadata.setdefault("nb2prod", {})
        if isinstance(cell.metadata["nb2prod"], dict):
            cell.metadata["nb2prod"]["job_cell"] = index

    secret_values = {name: params[name] for name in spec.secrets if params.get(name) not in ("", None)}
    params = {name: value for name, value in params.items() if name not in spec.secrets}
    environ = {OUTPUT_ENV: str(run_dir), "PYTHONPATH": _pythonpath(spec.src_dir)}
    if secret_values:
        environ[JOB_SECRETS_ENV] = json.dumps(secret_values)
        at = next((i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])), 0)
        secrets_cell = nbformat.v4.new_code_cell(secrets_cell_source(tuple(secret_values)))
        secrets_cell.metadata["tags"] = [SECRETS_TAG]
        nb.cells.insert(at + 1, secrets_cell)  # after papermill's injected cell, which follows `parameters`
    output = run_dir / EXECUTED_NOTEBOOK
    started = time.perf_counter()
    failure: Failure | None = None
    status = SUCCEEDED
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            cell.source = papermill_parameters_source(cell.source)
    with tempfile.TemporaryDirectory(prefix="nb2prod-job-") as tmp:
        job_copy = Path(tmp) / "train.ipynb"
        nbformat.write(nb, job_copy)
        kernel = spec.kernel_name or nb.metadata.get("kernelspec", {}).get("name") or "python3"
        progress = {} if spec.on_cell is None else {"engine_name": progress_engine(), ON_CELL_ARG: _cell_reporter(spec)}
        try:
            with _environ(**environ):
                papermill.execute_notebook(
                    str(job_copy),
                    str(output),
                    parameters=params,
                    cwd=str(spec.workdir),
                    kernel_name=kernel,
                    progress_bar=False,
                    log_output=False,
                    report_mode=False,
                    kernel_manager_class=ipc_kernel_manager(),
                    **progress,
                )
        except PapermillExecutionError:
            status, failure = _failure_from_notebook(spec, output, job_cells)
        except Exception as exc:  # kernel failed to start or died: still a recorded run
            status = ERRORED
            failure = Failure(
                type(exc).__name__,
                _first_line(str(exc)) or type(exc).__name__,
                None,
                "".join(traceback.format_exception(exc)),
            )
    execute_s = time.perf_counter() - started
    cells_s, collect_s = _cells_seconds(output)
    return EngineOutcome(
        status, failure, execute_s, cells_s, (EXECUTED_NOTEBOOK,) if output.exists() else (), collect_s
    )


def secrets_cell_source(names: tuple[str, ...]) -> str:
    """A cell binding the secret parameters from the kernel's environment, which it then forgets:
    the executed notebook holds this code, never the values."""
    from nb2prod import escape

    lines = [
        "# secret parameters, from the kernel's environment (their values are never written)",
        "import json as _nb2prod_json",
        "import os as _nb2prod_os",
        "",
        f"_nb2prod_secrets = _nb2prod_json.loads(_nb2prod_os.environ.pop({escape.py_str(JOB_SECRETS_ENV)}))",
    ]
    lines += [f"{escape.py_identifier(name)} = _nb2prod_secrets[{escape.py_str(name)}]" for name in names]
    lines.append("del _nb2prod_json, _nb2prod_os, _nb2prod_secrets")
    return "\n".join(lines)


ON_CELL_ARG = "nb2prod_on_cell"
PROGRESS_ENGINE = "nb2prod-progress"


def progress_engine() -> str:
    """papermill's nbclient engine, also calling `nb2prod_on_cell(notebook, cell, index)` as each cell starts
    (registered on first use under PROGRESS_ENGINE)."""
    from papermill.engines import NBClientEngine, papermill_engines

    class ProgressEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man: Any, kernel_name: Any, **kwargs: Any) -> Any:
            report = kwargs.pop(ON_CELL_ARG, None)
            start = nb_man.cell_start

            def cell_start(cell: Any, cell_index: Any = None, **more: Any) -> Any:
                if report is not None:
                    report(nb_man.nb, cell, cell_index)
                return start(cell, cell_index, **more)

            nb_man.cell_start = cell_start
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    if PROGRESS_ENGINE not in papermill_engines._engines:
        papermill_engines.register(PROGRESS_ENGINE, ProgressEngine)
    return PROGRESS_ENGINE


def _cell_reporter(spec: "JobSpec") -> Any:
    """(notebook, cell, index) -> spec.on_cell(i of n code cells, role, first line)."""

    def report(nb: Any, cell: Any, index: Any) -> None:
        if cell.get("cell_type") != "code":
            return
        code = [i for i, c in enumerate(nb.cells) if c.get("cell_type") == "code"]
        tags = cell.get("metadata", {}).get("tags", [])
        role = "collect" if COLLECT_TAG in tags else "parameters" if "injected-parameters" in tags else None
        role = role or _cell_role(cell, spec.cell_roles)
        lines = [line.strip() for line in cell.get("source", "").splitlines() if line.strip()]
        first = next((line for line in lines if not line.startswith("#")), lines[0] if lines else "")
        number = code.index(index) + 1 if index in code else len(code)
        spec.on_cell(number, len(code), role, first)

    return report


def papermill_parameters_source(source: str) -> str:
    """The parameters cell with each help comment that holds `=` moved onto its own line above.

    papermill reads parameter names line by line and skips any line with two `=`, then warns
    "Passed unknown parameter" for that parameter on every run; comment lines it skips quietly.
    """
    import io as _io
    import tokenize

    comments: dict[int, tuple[int, str]] = {}  # line -> (column, comment)
    try:
        for token in tokenize.generate_tokens(_io.StringIO(source).readline):
            if token.type == tokenize.COMMENT:
                comments[token.start[0]] = (token.start[1], token.string)
    except (tokenize.TokenError, SyntaxError):
        return source
    out = []
    for number, line in enumerate(source.split("\n"), 1):
        found = comments.get(number)
        if found and "=" in found[1] and line[: found[0]].strip():
            code = line[: found[0]].rstrip()
            indent = code[: len(code) - len(code.lstrip())]
            out.extend([f"{indent}{found[1]}", code])
        else:
            out.append(line)
    return "\n".join(out)


def ipc_kernel_manager() -> type:
    """A kernel manager talking to the kernel over local IPC sockets rather than TCP."""
    from jupyter_client.manager import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs: Any):
            kwargs.setdefault("transport", "ipc")
            super().__init__(**kwargs)

        async def _async_interrupt_kernel(self) -> None:
            # jupyter_client sends SIGINT before every shutdown request; a kernel idling in an
            # event loop then prints "KeyboardInterrupt caught in kernel" after a successful job.
            # A finished job needs no interrupt: the shutdown request alone ends the kernel.
            if self.shutting_down:
                return
            await super()._async_interrupt_kernel()

    return IPCKernelManager


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def _failure_from_notebook(spec: JobSpec, path: Path, job_cells: int) -> tuple[str, Failure]:
    """Find the first failing job cell in the executed notebook and classify the failure."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if cell.cell_type != "code" or "papermill-error-cell-tag" in tags or "injected-parameters" in tags:
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") != "error":
                continue
            if out.get("ename") == "SystemExit" and out.get("evalue") in ("", "0"):
                continue
            ename = out.get("ename", "Error")
            evalue = _strip_ansi(out.get("evalue", ""))
            tb = _strip_ansi("\n".join(out.get("traceback", [])))
            job_index = cell.metadata.get("nb2prod", {}).get("job_cell")
            line = _notebook_line(spec, _notebook_cell(cell), cell.source, _error_line(out.get("traceback", [])))
            ref = _cell_ref(
                spec, cell, job_index if isinstance(job_index, int) and job_index < job_cells else None, line
            )
            if COLLECT_TAG in tags:
                ref = CellRef(role="collect")
            gate = ref.role == "metrics" and ename in GATE_ERRORS
            return (FAILED_GATE if gate else ERRORED), Failure(ename, evalue or "(no message)", ref, tb)
    return ERRORED, Failure("CellExecutionError", "the job failed without an error output", None, "")


def _notebook_line(spec: JobSpec, cell_index: int | None, job_source: str, job_line: int | None) -> int | None:
    """Translate a line of a job cell into a line of its notebook cell.

    The job cell holds the same code as the cell's chunk in `_job.py`, so the line goes through
    `_job.py`'s entry in `_sourcemap.json`. When the two differ, no line is reported rather than
    a wrong one.
    """
    import textwrap

    if cell_index is None or job_line is None:
        return None
    try:
        source_map = json.loads((spec.src_dir / spec.package / "_sourcemap.json").read_text())
        train_lines = (spec.src_dir / spec.package / JOB_MODULE).read_text().splitlines()
    except (OSError, ValueError):
        return None
    for entry in source_map.get(JOB_MODULE, []):
        try:
            start, end, cell, _cell_id, _role, lines = entry
        except (TypeError, ValueError):
            continue
        if cell != cell_index:
            continue
        chunk = textwrap.dedent("\n".join(train_lines[start - 1 : end]))
        if chunk.strip() != job_source.strip():
            return None
        offset = len(chunk) - len(chunk.lstrip("\n"))
        out_line = start + chunk[:offset].count("\n") + job_line - 1
        found = None
        for generated, original in lines:
            if generated <= out_line:
                found = original
        return found
    return None


def _cells_seconds(path: Path) -> tuple[float | None, float | None]:
    """Sum of the cells' execution times papermill recorded, and that of the collect cell."""
    if not path.exists():
        return None, None
    nb = json.loads(path.read_text(encoding="utf-8"))  # plain JSON: nbformat imports slowly
    total, collect_s = 0.0, None
    for cell in nb.get("cells", []):
        duration = cell.get("metadata", {}).get("papermill", {}).get("duration")
        if isinstance(duration, (int, float)):
            total += duration
            if COLLECT_TAG in cell.get("metadata", {}).get("tags", []):
                collect_s = float(duration)
    return total, collect_s


# --- python engine ---------------------------------------------------------------------------
def _purge_package(package: str) -> None:
    for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
        del sys.modules[name]


@contextlib.contextmanager
def package_on_path(src_dir: Path, package: str) -> Iterator[None]:
    """Import `package` fresh from `src_dir` (another build of the same name may be loaded)."""
    _purge_package(package)
    sys.path.insert(0, str(src_dir))
    importlib.invalidate_caches()
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(src_dir))


@contextlib.contextmanager
def _chdir(path: Path) -> Iterator[None]:
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


class _Tee(io.TextIOBase):
    def __init__(self, *streams: Any, forms: tuple[str, ...] = ()):
        self.streams = streams
        self.forms = forms  # secret spellings, redacted on the way to a terminal

    def write(self, text: str) -> int:
        shown = redact_text(text, self.forms) if self.forms else text
        for stream in self.streams:
            stream.write(shown)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


def run_python(spec: JobSpec, params: dict[str, Any], run_dir: Path, echo: bool = False) -> EngineOutcome:
    """Call the package's `train.run(params)` in this process, then collect from its namespace."""
    started = time.perf_counter()
    log = io.StringIO()
    status, failure = SUCCEEDED, None
    namespace: dict[str, Any] | None = None
    with package_on_path(spec.src_dir, spec.package):
        train_module = importlib.import_module(f"{spec.package}.train")
        gate_error = getattr(train_module, "QualityGateError", None)
        params_obj = _params_object(spec.package, params)
        if spec.on_cell is not None:  # the package's runtime reports each job cell as it starts
            setattr(importlib.import_module(f"{spec.package}._runtime"), "ON_CELL", spec.on_cell)  # noqa: B010
        forms = tuple(secret_forms(params.get(name) for name in spec.secrets))
        out = _Tee(log, sys.stdout, forms=forms) if echo else log
        err = _Tee(log, sys.stderr, forms=forms) if echo else log
        with _chdir(spec.workdir), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                namespace = train_module.run(params_obj)
            except BaseException as exc:  # noqa: BLE001 - everything the job raises is recorded
                if isinstance(exc, KeyboardInterrupt):
                    raise
                namespace = getattr(exc, "job_namespace", None)
                failure = _python_failure(spec, exc)
                gate = (gate_error is not None and isinstance(exc, gate_error)) or (
                    failure.cell is not None and failure.cell.role == "metrics" and type(exc).__name__ in GATE_ERRORS
                )
                status = FAILED_GATE if gate else ERRORED
            t_collect = time.perf_counter()
            if namespace is not None:
                try:
                    collect(
                        namespace,
                        run_dir,
                        spec.model_variable,
                        spec.contract_expression,
                        spec.model_format,
                        spec.inputs_expression,
                        spec.package,
                    )
                except Exception as exc:  # noqa: BLE001
                    if status == SUCCEEDED:
                        status, failure = ERRORED, Failure(
                            type(exc).__name__,
                            str(exc),
                            CellRef(role="collect"),
                            "".join(traceback.format_exception(exc)),
                        )
            collect_s = time.perf_counter() - t_collect
    (run_dir / LOG_FILE).write_text(log.getvalue())
    return EngineOutcome(status, failure, time.perf_counter() - started, None, (LOG_FILE,), collect_s)


def _params_object(package: str, params: dict[str, Any]) -> Any:
    try:
        module = importlib.import_module(f"{package}.params")
    except ImportError:
        return dict(params)
    cls = getattr(module, "Params", None)
    return cls(**params) if cls is not None else dict(params)


def _python_failure(spec: JobSpec, exc: BaseException) -> Failure:
    """Name the job cell that was executing when the error was raised, as the papermill engine
    does: the outermost frame in `_job.py`, through the package's source map."""
    frames = traceback.extract_tb(exc.__traceback__)
    job_file = str(spec.src_dir / spec.package / JOB_MODULE)
    job_frames = [f for f in frames if str(f.filename) == job_file]
    ref = _locate_in_sourcemap(spec, job_frames[:1]) if job_frames else None
    if ref is None:  # raised before the job's code ran
        ref = _locate_in_sourcemap(spec, frames)
    message = str(exc) or "(no message)"
    return Failure(type(exc).__name__, message, ref, "".join(traceback.format_exception(exc)))


def _locate_in_sourcemap(spec: JobSpec, frames: list[traceback.FrameSummary]) -> CellRef | None:
    """Map the innermost frame in a generated module to its notebook cell (`_sourcemap.json`)."""
    try:
        source_map = json.loads((spec.src_dir / spec.package / "_sourcemap.json").read_text())
    except (OSError, ValueError):
        return None
    package_dir = str(spec.src_dir / spec.package)
    for frame in reversed(frames):
        if not str(frame.filename).startswith(package_dir):
            continue
        entries = source_map.get(Path(frame.filename).name) or []
        lineno = frame.lineno or 0
        for entry in entries:
            try:
                start, end, cell, cell_id, role, lines = entry
            except (TypeError, ValueError):
                continue
            if start <= lineno <= end:
                cell_line = None
                for out_line, src_line in lines:
                    if out_line <= lineno:
                        cell_line = src_line
                return CellRef(None, cell_id, role, spec.notebook_name, cell, cell_line)
    return None
