"""HTTP endpoints for what follows a build: runs, training jobs, promote and rollback.

Each takes the notebook's `path` (relative to the server root) and optionally `store` (a run store
folder relative to the root; default `runs/` beside the notebook, as `nb2prod train` uses):

    GET    /nb2prod/runs?path=NB                 runs, aliases and alias history of the store
    GET    /nb2prod/runs/RUN?path=NB             one run (id, id prefix or alias), with its check
    GET    /nb2prod/diff?path=NB&a=RUN&b=RUN     what differs between two runs
    POST   /nb2prod/train     {"path", "params", "engine"}    -> {"job": ID}
    GET    /nb2prod/jobs/ID   state, current cell, elapsed, run id and result
    DELETE /nb2prod/jobs/ID   cancel
    POST   /nb2prod/promote   {"path", "run", "alias"}
    POST   /nb2prod/rollback  {"path", "alias"}

They call the library the command line calls (`nb2prod.runs`); training runs `nb2prod train`
itself as a child process (`nb2prod.jupyter.training`). The store must lie inside the server
root. Requests that cannot be served get an HTTP error with one sentence: 400 bad input, 403
outside the root, 404 no such notebook, run or job, 409 refused in the current state.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import tornado.web
from jupyter_server.auth.decorator import authorized

from nb2prod.jupyter import training
from nb2prod.jupyter.handlers import (
    Nb2prodHandler,
    Refused,
    ResolvedNotebook,
    relative_to_root,
)

DEFAULT_STORE = "runs"
ENGINES = ("papermill", "python")


def _status_for(exc: Exception) -> int:
    from nb2prod.runs.errors import IntegrityError, PromotionRefused, RunNotFound

    if isinstance(exc, RunNotFound):
        return 404
    if isinstance(exc, (IntegrityError, PromotionRefused)):
        return 409
    return 400


class LifecycleHandler(Nb2prodHandler):
    """Notebook and store resolution shared by the run endpoints."""

    def notebook_and_store(self, path: Any, store: Any = None) -> tuple[ResolvedNotebook, Path]:
        if not isinstance(path, str) or not path.strip():
            raise Refused(400, 'The request needs "path": the notebook\'s path relative to the server root.')
        if "\x00" in path:
            raise Refused(400, "The notebook path contains a NUL character.")
        notebook = self.resolve(path)
        if store is None or store == "":
            from nb2prod.errors import Nb2prodError
            from nb2prod.runs.location import resolve_store

            try:  # the one store rule of the command line, for the notebook this request names
                folder = str(resolve_store(None, Path(notebook.os_path), cwd=Path(notebook.root)).path)
            except Nb2prodError as exc:
                raise Refused(400, exc.message) from None
        elif not isinstance(store, str) or "\x00" in store:
            raise Refused(400, '"store" must be a folder path relative to the server root.')
        else:
            folder = os.path.join(notebook.root, *store.replace("\\", "/").lstrip("/").split("/"))
        real = os.path.realpath(folder)
        if relative_to_root(notebook.root, real) is None:
            raise Refused(403, f"The run store {store or folder!r} is outside the server root.")
        if os.path.exists(real) and not os.path.isdir(real):
            raise Refused(400, f"The run store {relative_to_root(notebook.root, real)!r} is a file, not a folder.")
        return notebook, Path(real)

    def query_notebook_and_store(self) -> tuple[ResolvedNotebook, Path]:
        return self.notebook_and_store(self.get_query_argument("path", None), self.get_query_argument("store", None))

    def store_path(self, notebook: ResolvedNotebook, store: Path) -> str | None:
        return relative_to_root(notebook.root, str(store))

    async def library(self, function: Any, *, quick: bool = True) -> Any:
        """Call the library in a worker; its refusals become HTTP errors with its sentence."""
        from nb2prod.errors import Nb2prodError

        try:
            return await self.run(function, quick=quick)
        except Nb2prodError as exc:
            raise Refused(_status_for(exc), getattr(exc, "message", str(exc))) from exc


def _failure(failure: Any) -> dict[str, Any] | None:
    """A run's failure without its traceback: type, message, where (cell, line) and the sentence."""
    if failure is None:
        return None
    cell = failure.cell
    return {
        "type": failure.error_type,
        "message": failure.message,
        "describe": failure.describe(),
        "cell": cell.notebook_cell if cell is not None else None,
        "cell_id": cell.cell_id if cell is not None else None,
        "role": cell.role if cell is not None else None,
        "line": cell.line if cell is not None else None,
    }


def _run_summary(run: Any, aliases: list[str]) -> dict[str, Any]:
    m = run.manifest
    return {
        "run_id": run.run_id,
        "status": m.status,
        "engine": m.engine,
        "started_at": m.timings.started_at,
        "total_s": m.timings.total_s,
        "aliases": sorted(aliases),
        "params": m.params,
        "overrides": list(m.overrides),
        "metrics": m.metrics,
        "model_sha256": m.model.sha256 if m.model else None,
        "failure": _failure(m.failure),
    }


def list_runs(store: Path) -> dict[str, Any]:
    """What `nb2prod runs list` and `runs history` show, as one JSON-ready mapping."""
    from dataclasses import asdict

    from nb2prod.runs.aliases import AliasStore
    from nb2prod.runs.store import RunStore

    run_store = RunStore(store)
    alias_store = AliasStore(run_store)
    states = alias_store.all()
    by_run: dict[str, list[str]] = {}
    for state in states:
        by_run.setdefault(state.run_id, []).append(state.alias)
    return {
        "runs": [_run_summary(r, by_run.get(r.run_id, [])) for r in run_store.list()],
        "aliases": [asdict(s) for s in states],
        "history": [c.to_dict() for c in alias_store.history()],
    }


def show_run(store: Path, ref: str) -> dict[str, Any]:
    """What `nb2prod runs show` shows: the manifest, its aliases and the files that no longer match."""
    from nb2prod.runs.aliases import AliasStore
    from nb2prod.runs.store import RunStore

    run_store = RunStore(store)
    found = run_store.get(ref)
    return {
        "aliases": AliasStore(run_store).aliases_of(found.run_id),
        "modified_files": run_store.problems(found),
        **found.manifest.to_dict(),
    }


def diff(store: Path, a: str, b: str) -> dict[str, Any]:
    from nb2prod.runs.diff import diff_runs
    from nb2prod.runs.store import RunStore

    run_store = RunStore(store)
    result = diff_runs(run_store.get(a).manifest, run_store.get(b).manifest)
    return {**result.to_dict(), "text": result.render()}


def check_params(notebook: str, params: dict[str, Any], engine: str, store: Path) -> dict[int, tuple[str, ...]]:
    """Refuse what `nb2prod train` would refuse before any kernel starts (the notebook is built
    first when needed, as `nb2prod train NOTEBOOK` does): unknown names, values of the wrong type.
    Returns the roles of the notebook's cells, by cell index, to describe the job's progress."""
    from nb2prod.runs.trainer import prepare

    return prepare(Path(notebook), training_pairs(params), [], engine=engine, store=store).build.cell_roles


def training_pairs(params: dict[str, Any]) -> list[tuple[str, str]]:
    """The `-p NAME VALUE` pairs of a JSON mapping: strings as typed, other values as JSON text."""
    import json

    return [(name, value if isinstance(value, str) else json.dumps(value)) for name, value in params.items()]


class RunsHandler(LifecycleHandler):
    @tornado.web.authenticated
    @authorized("read")
    async def get(self) -> None:
        notebook, store = self.query_notebook_and_store()
        data = await self.library(lambda: list_runs(store))
        self.reply({"path": notebook.api_path, "store": self.store_path(notebook, store), **data})


class RunHandler(LifecycleHandler):
    @tornado.web.authenticated
    @authorized("read")
    async def get(self, ref: str) -> None:
        notebook, store = self.query_notebook_and_store()
        data = await self.library(lambda: show_run(store, ref))
        self.reply({"path": notebook.api_path, "store": self.store_path(notebook, store), "run": data})


class DiffHandler(LifecycleHandler):
    @tornado.web.authenticated
    @authorized("read")
    async def get(self) -> None:
        notebook, store = self.query_notebook_and_store()
        a, b = self.get_query_argument("a", ""), self.get_query_argument("b", "")
        if not a or not b:
            raise Refused(400, "A diff needs two runs: ?a=RUN&b=RUN.")
        data = await self.library(lambda: diff(store, a, b))
        self.reply({"path": notebook.api_path, "diff": data})


class TrainHandler(LifecycleHandler):
    @tornado.web.authenticated
    @authorized("write")
    async def post(self) -> None:
        body = self.request_body()
        notebook, store = self.notebook_and_store(body.get("path"), body.get("store"))
        await self.read_notebook(notebook)
        params = body.get("params", {})
        if params is None:
            params = {}
        if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
            raise Refused(400, '"params" must be an object of parameter names to values.')
        engine = body.get("engine") or "papermill"
        if engine not in ENGINES:
            raise Refused(400, f'"engine" must be papermill or python, not {engine!r}.')
        state = self.state
        running = state.training_of(notebook.os_path)
        if running is not None and not body.get("parallel"):
            raise Refused(
                409,
                f"{notebook.api_path} is already training (job {running.id}); cancel it, wait, "
                'or send "parallel": true.',
            )
        async with state.lock_for(notebook.os_path):  # the build a training starts with
            roles = await self.library(lambda: check_params(notebook.os_path, params, engine, store), quick=False)
        job = training.TrainingJob(
            id=training.new_job_id(),
            notebook=notebook.os_path,
            api_path=notebook.api_path,
            store=store,
            params=params,
            engine=engine,
            cell_roles=dict(roles),
        )
        state.jobs[job.id] = job
        job.task = asyncio.ensure_future(training.run_job(job))
        self.log.info("nb2prod: training %s as job %s", notebook.api_path, job.id)
        self.set_status(202)
        self.reply({"job": job.id, "path": notebook.api_path, "store": self.store_path(notebook, store)})


class JobHandler(LifecycleHandler):
    def job(self, job_id: str) -> training.TrainingJob:
        job = self.state.jobs.get(job_id)
        if job is None:
            raise Refused(404, f"No training job {job_id!r} in this server.")
        return job

    @tornado.web.authenticated
    @authorized("read")
    async def get(self, job_id: str) -> None:
        job = self.job(job_id)
        current = await self.run(lambda: training.progress(job), quick=True)
        self.reply(job.to_dict(current))

    @tornado.web.authenticated
    @authorized("write")
    async def delete(self, job_id: str) -> None:
        job = self.job(job_id)
        if job.state in training.FINISHED:
            raise Refused(409, f"Job {job_id} has already finished ({job.state}).")
        await training.cancel_job(job)
        self.reply(job.to_dict())


class PromoteHandler(LifecycleHandler):
    @tornado.web.authenticated
    @authorized("write")
    async def post(self) -> None:
        from nb2prod.runs.aliases import DEFAULT_ALIAS, AliasStore
        from nb2prod.runs.store import RunStore

        body = self.request_body()
        notebook, store = self.notebook_and_store(body.get("path"), body.get("store"))
        run, alias = body.get("run"), body.get("alias") or DEFAULT_ALIAS
        if not isinstance(run, str) or not run:
            raise Refused(400, '"run" must name a run: its id, an id prefix or an alias.')
        if not isinstance(alias, str):
            raise Refused(400, '"alias" must be a name such as "production".')
        change = await self.library(lambda: AliasStore(RunStore(store)).promote(run, alias))
        self.reply({"path": notebook.api_path, "change": change.to_dict()})


class RollbackHandler(LifecycleHandler):
    @tornado.web.authenticated
    @authorized("write")
    async def post(self) -> None:
        from nb2prod.runs.aliases import DEFAULT_ALIAS, AliasStore
        from nb2prod.runs.store import RunStore

        body = self.request_body()
        notebook, store = self.notebook_and_store(body.get("path"), body.get("store"))
        alias = body.get("alias") or DEFAULT_ALIAS
        if not isinstance(alias, str):
            raise Refused(400, '"alias" must be a name such as "production".')
        change = await self.library(lambda: AliasStore(RunStore(store)).rollback(alias))
        self.reply({"path": notebook.api_path, "change": change.to_dict()})


ROUTES = [
    ("runs", RunsHandler),
    (r"runs/([^/]+)", RunHandler),
    ("diff", DiffHandler),
    ("train", TrainHandler),
    (r"jobs/([0-9a-f]+)", JobHandler),
    ("promote", PromoteHandler),
    ("rollback", RollbackHandler),
]
