"""Training jobs of the Jupyter server: `nb2prod train` run as a child process of the server.

The child is the command line itself (`python -m nb2prod train NOTEBOOK --format json ...`), so a
run trained from JupyterLab is exactly a run trained from a terminal, and a job the user cancels
cannot leave the server's own process in a half-changed state (working folder, imported package
modules, a kernel). Progress is read from what the run writes while it is staged: papermill saves
the executed notebook as each cell starts, with the running cell marked.

A cancelled job is interrupted (SIGINT, as Ctrl-C would), then killed if it does not stop; the run
store is consistent either way: a run appears only by the final rename into the store, and a
staging folder left by a killed job is removed here.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STOP_GRACE_S = 20.0  # after SIGINT, before SIGKILL
RUNNING, SUCCEEDED, FAILED, CANCELLED, ERROR = "running", "succeeded", "failed", "cancelled", "error"
FINISHED = (SUCCEEDED, FAILED, CANCELLED, ERROR)


@dataclass
class TrainingJob:
    """One training of one notebook, as the server tracks it (mutable: it progresses)."""

    id: str
    notebook: str  # real path
    api_path: str  # relative to the server root
    store: Path
    params: dict[str, Any]
    engine: str
    cell_roles: dict[int, tuple[str, ...]] = field(default_factory=dict)  # notebook cell index -> roles
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    state: str = RUNNING
    run_id: str | None = None
    result: dict[str, Any] | None = None  # the run (`nb2prod train --format json`)
    message: str | None = None
    process: asyncio.subprocess.Process | None = None
    cancelled: bool = False
    task: asyncio.Task | None = None

    def elapsed(self) -> float:
        return round((self.finished_at or time.time()) - self.started_at, 3)

    def to_dict(self, progress: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "job": self.id,
            "path": self.api_path,
            "state": self.state,
            "engine": self.engine,
            "params": self.params,
            "started_at": self.started_at,
            "elapsed_s": self.elapsed(),
            "run_id": self.run_id,
            "current": progress,
            "result": self.result,
            "message": self.message,
        }


def command(job: TrainingJob) -> list[str]:
    argv = [sys.executable, "-m", "nb2prod", "train", job.notebook, "--store", str(job.store), "--format", "json"]
    argv += ["--engine", job.engine]
    for name, value in job.params.items():
        argv += ["-p", name, value if isinstance(value, str) else json.dumps(value)]
    return argv


async def run_job(job: TrainingJob) -> None:
    """Start the child, wait for it, and record how it ended."""
    try:
        job.process = await asyncio.create_subprocess_exec(
            *command(job),
            cwd=os.path.dirname(job.notebook),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group: cancel reaches everything it started
        )
        stdout, stderr = await job.process.communicate()
    except OSError as exc:
        job.state, job.message = ERROR, f"nb2prod train could not start ({exc.strerror or exc})."
        job.finished_at = time.time()
        return
    code = job.process.returncode
    job.finished_at = time.time()
    if job.cancelled:
        job.state, job.message = CANCELLED, "Training was cancelled; no run was recorded."
        discard_staging(job)
        return
    try:
        data = json.loads(stdout.decode("utf-8", "replace")) if stdout.strip() else None
    except ValueError:
        data = None
    if isinstance(data, dict) and data.get("run_id"):
        job.run_id = str(data["run_id"])
        job.result = data
        job.state = SUCCEEDED if code == 0 else FAILED
        failure = data.get("failure")
        if failure:
            job.message = str(failure.get("message") or failure.get("type") or "")
        return
    job.state = ERROR
    lines = [line for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    job.message = lines[-1].removeprefix("error: ") if lines else f"nb2prod train exited with {code}."


async def cancel_job(job: TrainingJob) -> None:
    """Interrupt the job's process group, then kill it if it has not stopped after the grace time."""
    process = job.process
    job.cancelled = True
    if process is None or process.returncode is not None:
        return
    _signal_group(process.pid, signal.SIGINT)
    try:
        await asyncio.wait_for(asyncio.shield(job.task), STOP_GRACE_S) if job.task else None
    except TimeoutError:
        _signal_group(process.pid, signal.SIGKILL)
        if job.task:
            await job.task


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def staging_folder(job: TrainingJob) -> Path | None:
    """The staging folder the job's process writes its run into, found by the owner file."""
    process = job.process
    staging = job.store / ".staging"
    if process is None or not staging.is_dir():
        return None
    for owner in staging.glob("*.owner"):
        try:
            _host, pid = owner.read_text().split()
        except (OSError, ValueError):
            continue
        if pid == str(process.pid):
            return staging / owner.name[: -len(".owner")]
    return None


def discard_staging(job: TrainingJob) -> None:
    """Remove what a stopped job left in the store's staging area (never a committed run)."""
    folder = staging_folder(job)
    if folder is not None:
        from nb2prod.runs.store import RunStore

        RunStore(job.store).discard(folder)


def progress(job: TrainingJob) -> dict[str, Any] | None:
    """The cell being executed: its index in the notebook, its role and its first line."""
    if job.state != RUNNING:
        return None
    folder = staging_folder(job)
    if folder is None:
        return {"cell": None, "role": None, "source": None, "run_id": None, "step": "building"}
    info: dict[str, Any] = {"cell": None, "role": None, "source": None, "run_id": folder.name, "step": "starting"}
    try:
        notebook = json.loads((folder / "notebook.ipynb").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return info
    cells = notebook.get("cells", []) if isinstance(notebook, dict) else []
    for cell in cells:
        meta = cell.get("metadata", {}) if isinstance(cell, dict) else {}
        if meta.get("papermill", {}).get("status") == "running":
            nb2prod_meta = meta.get("nb2prod", {}) if isinstance(meta.get("nb2prod"), dict) else {}
            source = cell.get("source", "")
            source = "".join(source) if isinstance(source, list) else str(source)
            code = [line for line in source.splitlines() if line.strip() and not line.lstrip().startswith("#")]
            tags = [t for t in meta.get("tags", []) if isinstance(t, str)]
            index = nb2prod_meta.get("cell")
            roles = list(job.cell_roles.get(index, ())) if isinstance(index, int) else []
            if "parameters" in tags or "injected-parameters" in tags:
                roles.append("parameters")
            if "nb2prod-collect" in tags:
                roles.append("collect")
            info.update(
                cell=index if isinstance(index, int) else None,
                role=next((r for r in ("train", "metrics", "parameters", "collect") if r in roles), None)
                or (roles[0] if roles else None),
                source=code[0][:120] if code else "",
                step="executing",
            )
            break
    return info


def new_job_id() -> str:
    return uuid.uuid4().hex[:12]
