"""HTTP endpoints of the nb2prod server extension.

`POST /nb2prod/build`, `/nb2prod/check` and `/nb2prod/inspect`, each with the JSON body
`{"path": "<notebook path relative to the server root>"}`. They call the same library API as the
command line (`nb2prod.api`). Problems in the notebook are an answer, not an HTTP error: the reply
is 200 with `ok: false` and the findings, each naming its cell. HTTP errors are kept for requests
that cannot be served: 400 malformed body, 403 a path outside the server root, 404 no such notebook.

Work runs in nb2prod's own threads (`nb2prod.jupyter.workers`): quick work (inspect, check) and
long work (builds) in separate pools, so an inspect never waits behind builds. The output folder
of a build or check is resolved once, checked to lie inside the server root, and that checked
folder is what the library is given: a notebook that changes its `output` setting meanwhile cannot
move the write.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import tornado.web
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import ensure_async, url_path_join

from nb2prod.jupyter.workers import WorkerPool

BUILD_WORKERS = 2  # builds and other long work
QUICK_WORKERS = 2  # inspect and check: never queued behind builds
MAX_BODY_DEPTH = 64  # JSON nesting accepted in a request body


@dataclass
class ExtensionState:
    """What the handlers share within one server: the worker pools and a lock per notebook."""

    builds: Executor
    quick: Executor
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    jobs: dict[str, Any] = field(default_factory=dict)  # training jobs by id (nb2prod.jupyter.training)

    def training_of(self, notebook: str) -> Any:
        """The running training job of one notebook (by its real path), if any."""
        return next((j for j in self.jobs.values() if j.notebook == notebook and j.state == "running"), None)

    def stop_jobs(self) -> None:
        """Kill the process groups of running training jobs (the server is stopping)."""
        import signal

        for job in self.jobs.values():
            if job.state == "running" and job.process is not None and job.process.returncode is None:
                try:
                    os.killpg(job.process.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass

    def lock_for(self, notebook: str) -> asyncio.Lock:
        """The lock of one notebook (by its real path): builds of it run one at a time."""
        lock = self.locks.get(notebook)
        if lock is None:
            lock = self.locks[notebook] = asyncio.Lock()
        return lock


@dataclass(frozen=True)
class ResolvedNotebook:
    api_path: str  # relative to the server root, '/'-separated, symlinks resolved
    os_path: str  # absolute real path on disk
    root: str  # the server root's real path


def _jsonable(value: Any) -> Any:
    """Round-trip through JSON so that Paths and tuples in `to_dict()` output become JSON types."""
    return json.loads(json.dumps(value, default=str))


def _finding_dicts(findings: Any) -> list[dict[str, Any]]:
    return [_jsonable(f.to_dict() if hasattr(f, "to_dict") else f) for f in findings or ()]


def _error_kind(exc: Exception) -> str:
    from nb2prod.errors import InputError, NotebookErrors, OutputConflict

    if isinstance(exc, NotebookErrors):
        return "notebook"
    if isinstance(exc, InputError):
        return "input"
    if isinstance(exc, OutputConflict):
        return "output-conflict"
    return "error"


class Refused(tornado.web.HTTPError):
    """A request this extension will not serve, with one sentence saying why."""

    def __init__(self, status_code: int, message: str):
        super().__init__(status_code)
        self.message = message


class Nb2prodHandler(APIHandler):
    """Common parts: body parsing, path confinement, reading through the contents manager."""

    auth_resource = "contents"

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        error = exc_info[1] if exc_info else None
        if isinstance(error, Refused):
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"message": error.message, "reason": None}))
            return
        super().write_error(status_code, **kwargs)

    @property
    def state(self) -> ExtensionState:
        return self.settings["nb2prod"]

    def request_body(self) -> dict[str, Any]:
        """The JSON object of the request body; 400 with one sentence for anything else."""
        raw = self.request.body or b""
        if _nesting_depth(raw) > MAX_BODY_DEPTH:
            raise Refused(400, f"The request body nests JSON more than {MAX_BODY_DEPTH} levels deep.")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise Refused(400, 'The request body is not JSON; send {"path": "NOTEBOOK.ipynb"}.') from exc
        if not isinstance(body, dict):
            raise Refused(400, 'The request body must be a JSON object such as {"path": "NOTEBOOK.ipynb"}.')
        return body

    def request_path(self, body: dict[str, Any] | None = None) -> str:
        body = self.request_body() if body is None else body
        path = body.get("path")
        if not isinstance(path, str) or not path.strip():
            raise Refused(400, 'The request body needs "path": the notebook\'s path relative to the server root.')
        if "\x00" in path:
            raise Refused(400, "The notebook path contains a NUL character.")
        return path

    def resolve(self, path: str) -> ResolvedNotebook:
        """The notebook's real path, refused (403) when it lies outside the server root."""
        root = os.path.realpath(self.contents_manager.root_dir)
        relative = path.replace("\\", "/").lstrip("/")
        full = os.path.realpath(os.path.join(root, *relative.split("/")))
        if os.path.commonpath([root, full]) != root:
            raise Refused(403, f"{path!r} is outside the server root.")
        if not os.path.isfile(full):
            raise Refused(404, f"No notebook at {path!r}.")
        api_path = os.path.relpath(full, root).replace(os.sep, "/")
        return ResolvedNotebook(api_path=api_path, os_path=full, root=root)

    async def read_notebook(self, notebook: ResolvedNotebook) -> str | None:
        """Read the notebook through the contents manager (its hidden-file and permission rules
        apply). Returns a message when the contents manager cannot read it as a notebook."""
        try:
            await ensure_async(self.contents_manager.get(notebook.api_path, content=True, type="notebook"))
        except tornado.web.HTTPError as exc:
            if exc.status_code == 404:
                raise Refused(404, f"No notebook at {notebook.api_path!r}.") from exc
            if exc.status_code == 400:
                return None  # unreadable as a notebook: nb2prod says why, naming the place
            raise
        return None

    async def run(self, function: Callable[[], Any], *, quick: bool = False) -> Any:
        """Run blocking work in the extension's threads, keeping the event loop free: `quick`
        work (inspect, check) in its own pool, so that it never waits behind builds."""
        pool = self.state.quick if quick else self.state.builds

        def work() -> Any:
            _import_once()
            return function()

        return await asyncio.get_running_loop().run_in_executor(pool, work)

    def reply(self, data: dict[str, Any]) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(_jsonable(data)))

    def failure(self, notebook: ResolvedNotebook, exc: Exception) -> dict[str, Any]:
        message = str(getattr(exc, "message", str(exc)))
        # Paths as the user sees them in JupyterLab: relative to the server root.
        message = message.replace(notebook.root + os.sep, "")
        return {
            "ok": False,
            "path": notebook.api_path,
            "error": {"kind": _error_kind(exc), "message": message},
            "findings": _finding_dicts(getattr(exc, "findings", ())),
        }

    def relative_to_root(self, notebook: ResolvedNotebook, target: str) -> str | None:
        return relative_to_root(notebook.root, target)


_imports = threading.Lock()
_imported = False


def _import_once() -> None:
    """Import what the library imports lazily, once, one thread at a time: a module imported by
    two threads at once can be seen half-initialised by one of them (black is)."""
    global _imported
    if _imported:
        return
    with _imports:
        if not _imported:
            import black  # noqa: F401

            import nb2prod.analysis.analyse
            import nb2prod.build_record
            import nb2prod.plan
            import nb2prod.render
            import nb2prod.writer  # noqa: F401

            _imported = True


def _nesting_depth(raw: bytes) -> int:
    """How deeply `raw` nests JSON arrays and objects (brackets inside strings not counted),
    measured without parsing so that a hostile body cannot exhaust the parser's stack."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_BODY_DEPTH:
                    return deepest
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


def relative_to_root(root: str, target: str) -> str | None:
    """`target` relative to the server root (its real path), or None when it lies outside."""
    full = os.path.realpath(target)
    if os.path.commonpath([root, full]) != root:
        return None
    return os.path.relpath(full, root).replace(os.sep, "/")


def confined_output(notebook: ResolvedNotebook) -> str:
    """Where `nb2prod build` writes this notebook's output (configuration included), resolved
    once to a real path and checked to lie inside the server root. Callers pass this folder
    down to the library, which then does not read the notebook's `output` setting again."""
    from nb2prod.api import output_dir

    output = os.path.realpath(output_dir(notebook.os_path))
    if relative_to_root(notebook.root, output) is None:
        # A notebook's `output` setting (or a symlinked build folder) must not make the server
        # read or write outside the folder it serves.
        raise Refused(
            403, f"The build output folder {output} is outside the server root; set `output` to a folder inside it."
        )
    return output


class BuildHandler(Nb2prodHandler):
    @tornado.web.authenticated
    @authorized("write")
    async def post(self) -> None:
        body = self.request_body()
        notebook = self.resolve(self.request_path(body))
        force = body.get("force", False)
        if not isinstance(force, bool):
            raise Refused(400, '"force" must be true or false.')
        await self.read_notebook(notebook)
        from nb2prod import api
        from nb2prod.errors import Nb2prodError

        async with self.state.lock_for(notebook.os_path):
            try:
                result = await self.run(
                    lambda: api.build(notebook.os_path, output=confined_output(notebook), force=force)
                )
            except Nb2prodError as exc:
                self.log.info("nb2prod: build of %s: %s", notebook.api_path, exc.message)
                self.reply(self.failure(notebook, exc))
                return
        data = result.to_dict()
        self.reply(
            {
                "ok": True,
                "path": notebook.api_path,
                "result": data,
                "output_path": self.relative_to_root(notebook, str(result.output_dir)),
                "findings": _finding_dicts(result.notes),
            }
        )


class CheckHandler(Nb2prodHandler):
    @tornado.web.authenticated
    @authorized("read")
    async def post(self) -> None:
        notebook = self.resolve(self.request_path())
        await self.read_notebook(notebook)
        from nb2prod import api
        from nb2prod.errors import Nb2prodError

        # Check only reads: it does not wait for a build of the same notebook to finish.
        try:
            result = await self.run(lambda: api.check(notebook.os_path, output=confined_output(notebook)), quick=True)
        except Nb2prodError as exc:
            self.reply(self.failure(notebook, exc))
            return
        self.reply(
            {
                "ok": bool(result.ok),
                "path": notebook.api_path,
                "result": result.to_dict(),
                "findings": _finding_dicts(result.findings),
            }
        )


class InspectHandler(Nb2prodHandler):
    @tornado.web.authenticated
    @authorized("read")
    async def post(self) -> None:
        notebook = self.resolve(self.request_path())
        await self.read_notebook(notebook)
        from nb2prod import api
        from nb2prod.errors import Nb2prodError

        try:
            inspection = await self.run(lambda: api.inspect(notebook.os_path), quick=True)
        except Nb2prodError as exc:
            self.reply(self.failure(notebook, exc))
            return
        data = inspection.to_dict()
        self.reply(
            {
                "ok": True,
                "path": notebook.api_path,
                "result": data,
                "findings": _finding_dicts(getattr(inspection, "findings", ())),
            }
        )


def setup_handlers(serverapp: Any) -> None:
    """Register the endpoints under the server's base URL."""
    import atexit

    from nb2prod.jupyter.lifecycle import ROUTES

    web_app = serverapp.web_app
    state = ExtensionState(
        builds=WorkerPool(BUILD_WORKERS, name="nb2prod-build"), quick=WorkerPool(QUICK_WORKERS, name="nb2prod-quick")
    )
    web_app.settings["nb2prod"] = state
    atexit.register(state.stop_jobs)
    base = web_app.settings["base_url"]
    routes = [("build", BuildHandler), ("check", CheckHandler), ("inspect", InspectHandler), *ROUTES]
    web_app.add_handlers(".*$", [(url_path_join(base, "nb2prod", route), handler) for route, handler in routes])
