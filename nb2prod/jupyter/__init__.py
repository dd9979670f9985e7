"""nb2prod inside Jupyter: a server extension with build/check/inspect endpoints, and the
JupyterLab front end (built from `labextension/` into `nb2prod/jupyter/labextension/`).

Nothing here is imported by the command line; Jupyter imports it when the server starts.
"""

from __future__ import annotations

from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "nb2prod.jupyter"}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "nb2prod"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from nb2prod.jupyter.handlers import setup_handlers

    setup_handlers(serverapp)
    serverapp.log.info(
        "nb2prod: server extension loaded (/nb2prod/build, check, inspect, runs, train, jobs, promote, rollback)"
    )
