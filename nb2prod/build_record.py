"""The build record (`nb2prod.json`): what a build was made from and what it wrote."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from nb2prod import __version__
from nb2prod.analysis.analyse import Analysis
from nb2prod.analysis.gates import notebook_gates
from nb2prod.render import Rendered
from nb2prod.writer import MANIFEST, sha256_bytes


def input_hash(notebook_sha256: str, config: dict[str, Any]) -> str:
    """What decides a build's output besides the environment: notebook, config, nb2prod version."""
    settings = {k: v for k, v in config.items() if k != "output"}
    text = json.dumps({"notebook": notebook_sha256, "config": settings, "nb2prod": __version__}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def job_workdir(analysis: Analysis) -> Path:
    """The job's working directory: config `data_dir`, else the notebook's folder (one rule for
    `nb2prod train`, the generated tests and entry points, and `nb2prod verify`)."""
    if analysis.config.data_dir:
        return Path(analysis.config.data_dir).resolve()
    return analysis.notebook.path.resolve().parent


def make_manifest(analysis: Analysis, rendered: Rendered, output: Path) -> bytes:
    config = analysis.config.to_dict()
    config.pop("output", None)
    gates, unmonitored = notebook_gates(analysis.all_cells, (p.name for p in analysis.parameters))
    notebook_path = os.path.relpath(analysis.notebook.path.resolve(), output.resolve())
    data = {
        "nb2prod_version": __version__,
        "input_hash": input_hash(analysis.notebook.sha256, analysis.config.to_dict()),
        "source": {
            "notebook": analysis.notebook.name,
            "path": Path(notebook_path).as_posix(),
            "sha256": analysis.notebook.sha256,
        },
        "package": {"name": analysis.dist, "import": analysis.package, "version": analysis.config.version},
        "config": config,
        "model_variable": analysis.config.model_variable,
        "workdir": Path(os.path.relpath(job_workdir(analysis), output.resolve())).as_posix(),
        "parameters": {p.name: p.schema() for p in analysis.parameters},
        "requirements": [r.spec for r in analysis.requirements],
        "example_inputs": analysis.example_inputs,
        "gates": [g.to_dict() for g in gates],  # the metrics cell's simple comparisons, checked live
        "gates_not_monitored": [u.to_dict() for u in unmonitored],
        "fit_inputs": analysis.fit_inputs,
        "cells": [
            {"index": c.index, "id": c.cell.id, "roles": sorted(c.roles), **({"module": c.module} if c.module else {})}
            for c in analysis.all_cells
            if c.roles
        ],
        "placements": [
            {"file": p.path, "start": p.start, "end": p.end, "cell": p.cell_index, "id": p.cell_id, "role": p.role}
            for p in rendered.placements
        ],
        "files": {path: sha256_bytes(data) for path, data in sorted(rendered.files.items()) if path != MANIFEST},
    }
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()
