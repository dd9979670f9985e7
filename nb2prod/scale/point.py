"""One sweep point, in its own process: `python -m nb2prod.scale.point` reads a PointTask as JSON
on stdin, trains it with `nb2prod.runs.trainer` (as `nb2prod train` does) and prints the outcome
as one marked JSON line."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path


def main() -> int:
    from nb2prod.errors import Nb2prodError
    from nb2prod.runs.trainer import train_target
    from nb2prod.scale.sweep import ERRORED, MARKER

    task = json.loads(sys.stdin.read())
    with tempfile.TemporaryDirectory(prefix="nb2prod-point-") as tmp:
        params_file = Path(tmp) / "point.json"
        params_file.write_text(json.dumps(task["params"]))
        try:
            run = train_target(
                Path(task["build_dir"]),
                [tuple(p) for p in task["pairs"]],
                [params_file],
                engine=task["runner"],
                store=Path(task["store"]),
            )
        except Nb2prodError as exc:
            print(MARKER + json.dumps({"run_id": None, "status": ERRORED, "failure": exc.message}))
            return 0
    manifest = run.manifest
    failure = manifest.failure.describe() if manifest.failure else None
    print(
        MARKER
        + json.dumps(
            {"run_id": run.run_id, "status": manifest.status, "metrics": manifest.metrics, "failure": failure},
            default=str,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
