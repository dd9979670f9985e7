"""An Airflow DAG for a build: train, check the gates, promote, and score a daily batch.

`render_airflow_files(ctx)` is pure and returns `{"airflow/PACKAGE_dag.py": text}`: a DAG whose
tasks run the `nb2prod` command (train, runs show, promote, score) as a subprocess with the job's
working directory (the notebook's folder, or config `data_dir`) as its current folder, so relative
data paths resolve as they did in Jupyter. Airflow's PapermillOperator has no working-directory
option, which is why the tasks call nb2prod rather than papermill.

Every notebook- or config-derived string reaches the DAG only as a Python literal
(`escape.py_literal`); no value is pasted into Python or shell text. Only the score task's input and
output paths are Airflow templates (so `{{ ds }}` gives each day its own folder); every other value
is a module constant that Airflow does not render.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nb2prod import escape
from nb2prod.errors import InputError

if TYPE_CHECKING:
    from nb2prod.analysis.analyse import Analysis
    from nb2prod.render import Rendered

DEFAULT_SCHEDULE = "@daily"
DEFAULT_ALIAS = "production"
DEFAULT_SCORE_OUTPUT = "scores/{{ ds }}"
_AIRFLOW_MACROS = {"@once", "@continuous"}
_DAG_ID = re.compile(r"[A-Za-z0-9_.-]{1,250}\Z")


def check_airflow_schedule(value: str) -> str | None:
    """Why `value` is not a schedule the DAG takes (cron, a cron macro, @once, @continuous), or None."""
    from nb2prod.deploy.cluster_manifests import check_schedule

    if value in _AIRFLOW_MACROS:
        return None
    try:
        check_schedule(value)
    except InputError:
        return "is not an Airflow schedule: five cron fields like '0 3 * * *', or a macro like '@daily' or '@once'"
    return None


def check_command(value: str) -> str | None:
    """Why `value` is not a command line that runs nb2prod (e.g. `/opt/venv/bin/python -m nb2prod`), or None."""
    try:
        words = shlex.split(value)
    except ValueError as exc:
        return f"is not a command line ({exc})"
    if not words:
        return "is empty: give the nb2prod command, e.g. 'nb2prod' or '/opt/venv/bin/python -m nb2prod'"
    if escape.has_line_separator(value):
        return "must be one line"
    return None


@dataclass(frozen=True)
class AirflowContext:
    """What the DAG of one build needs; absolute paths, checked on creation."""

    dag_id: str
    package: str
    notebook: str
    build_dir: str
    workdir: str
    store: str
    command: tuple[str, ...] = ("nb2prod",)
    schedule: str = DEFAULT_SCHEDULE
    alias: str = DEFAULT_ALIAS
    score_input: str | None = None
    score_output: str | None = None

    def __post_init__(self) -> None:
        if not _DAG_ID.match(self.dag_id):
            raise InputError(f"the DAG id {self.dag_id!r} must be letters, digits, '.', '-' or '_' (250 at most).")
        if not self.package.isidentifier():
            raise InputError(f"the package name {self.package!r} is not a Python identifier.")
        problem = check_airflow_schedule(self.schedule)
        if problem:
            raise InputError(f"airflow_schedule {self.schedule!r} {problem}.")
        if not self.command:
            raise InputError("airflow_command is empty: give the nb2prod command, e.g. 'nb2prod'.")
        for what, path in (("the build folder", self.build_dir), ("the job's folder", self.workdir)):
            if not Path(path).is_absolute():
                raise InputError(f"{what} {path!r} must be an absolute path.")


def dag_path(package: str) -> str:
    return f"airflow/{package}_dag.py"


def render_airflow_files(ctx: AirflowContext) -> dict[str, str]:
    """The DAG file, black-formatted; refused with one sentence if a value cannot be written."""
    from nb2prod.formatting import FormatJob, format_jobs
    from nb2prod.resources import jinja_environment

    env = jinja_environment().overlay()
    env.filters["pyrepr"] = escape.py_literal
    env.filters["docstring"] = escape.py_docstring
    try:
        text = env.get_template("airflow/dag.py.j2").render(
            dag_id=ctx.dag_id,
            notebook=ctx.notebook,
            command=list(ctx.command),
            build_dir=ctx.build_dir,
            workdir=ctx.workdir,
            store=ctx.store,
            schedule=ctx.schedule,
            alias=ctx.alias,
            score_input=ctx.score_input,
            score_output=ctx.score_output or DEFAULT_SCORE_OUTPUT,  # relative: in WORKDIR
        )
    except escape.EscapeError as exc:
        raise InputError(f"cannot write {dag_path(ctx.package)}: {exc}") from None
    from nb2prod.validate import check_file

    problem = check_file(dag_path(ctx.package), text.encode())
    if problem is not None:  # before black, which would fail less clearly
        raise InputError(
            f"{problem.path} would not parse ({problem.detail}, line {problem.line}); check the airflow_* settings."
        )
    formatted = format_jobs([FormatJob(text, 0)], 88)[0].text + "\n"
    return {dag_path(ctx.package): formatted}


def with_airflow_dag(rendered: Rendered, analysis: Analysis, output: Path) -> Rendered:
    """`rendered` with the DAG added when config `airflow` is on, so the
    build record lists and hashes it like every generated file."""
    import dataclasses

    files = build_airflow_files(analysis, output)
    return dataclasses.replace(rendered, files={**rendered.files, **files}) if files else rendered


def build_airflow_files(analysis: Analysis, output: Path) -> dict[str, bytes]:
    """The build's DAG when config `airflow` is on (else nothing), parsed before it is returned."""
    config = analysis.config
    if not config.airflow:
        return {}
    from nb2prod.build_record import job_workdir
    from nb2prod.validate import check_files

    notebook_dir = analysis.notebook.path.resolve().parent
    workdir = job_workdir(analysis)
    ctx = AirflowContext(
        dag_id=analysis.dist,
        package=analysis.package,
        notebook=analysis.notebook.name,
        build_dir=str(output.resolve()),
        workdir=str(workdir),
        # the store `nb2prod train NOTEBOOK` uses (config store, else runs/ beside the notebook)
        store=str(Path(config.airflow_store or config.store or notebook_dir / "runs").resolve()),
        command=tuple(shlex.split(config.airflow_command or "nb2prod")),
        schedule=config.airflow_schedule or DEFAULT_SCHEDULE,
        score_input=config.airflow_score_input,
        score_output=config.airflow_score_output or str(workdir / DEFAULT_SCORE_OUTPUT),
    )
    files = {path: text.encode() for path, text in render_airflow_files(ctx).items()}
    problem = check_files(files)  # the formatted file, parsed again as every generated file is
    if problem is not None:
        raise InputError(f"{problem.path} would not parse ({problem.detail}); check the airflow_* settings.")
    return files
