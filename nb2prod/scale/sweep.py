"""`sweep`: every point of a parameter grid trained as a normal, immutable run, on an engine.

Each point runs in its own process (`python -m nb2prod.scale.point`) on one of the engine's
workers, through the same library call as `nb2prod train` (`nb2prod.runs.trainer`); a point that
fails its gates or raises is recorded and does not stop the others. The best run that passed its
gates can be promoted, through the same alias store as `nb2prod promote`.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nb2prod.errors import InputError
from nb2prod.runs.store import RunStore
from nb2prod.scale.engine import open_engine

MAX_POINTS = 1000
RUNNERS = ("papermill", "python")
MARKER = "nb2prod-sweep-point: "
SUCCEEDED = "succeeded"
ERRORED = "errored"


@dataclass(frozen=True)
class PointTask:
    index: int
    build_dir: str
    store: str
    params: dict[str, Any]  # the grid values of this point (typed)
    pairs: tuple[tuple[str, str], ...]  # -p NAME VALUE given for every point
    runner: str  # the training engine: papermill or python


@dataclass(frozen=True)
class SweepPoint:
    index: int
    params: dict[str, Any]
    run_id: str | None  # None only when the point died before its run was recorded
    status: str  # succeeded | failed-gate | errored
    metrics: dict[str, Any]
    failure: str | None
    seconds: float
    worker: str

    @property
    def succeeded(self) -> bool:
        return self.status == SUCCEEDED

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SweepResult:
    build_dir: Path
    store: Path
    engine: str
    workers: int
    metric: str | None
    maximize: bool
    points: tuple[SweepPoint, ...]  # sorted by the metric, best first; failed points last
    best: SweepPoint | None  # the best point that passed its gates
    promoted: dict[str, Any] | None  # the alias change, when --promote-best was given
    startup_s: float
    total_s: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "build_dir": str(self.build_dir),
            "store": str(self.store),
            "engine": self.engine,
            "workers": self.workers,
            "metric": self.metric,
            "maximize": self.maximize,
            "points": [p.to_dict() for p in self.points],
            "best": self.best.to_dict() if self.best else None,
            "promoted": self.promoted,
            "startup_s": self.startup_s,
            "total_s": self.total_s,
        }


def parse_grid(texts: list[str] | tuple[str, ...]) -> dict[str, list[str]]:
    """`NAME=V1,V2` (or `NAME=[V1, V2]`) → {NAME: [text, ...]}, in the order given."""
    grid: dict[str, list[str]] = {}
    for text in texts:
        name, sep, values = text.partition("=")
        name = name.strip()
        if not sep or not name or not values.strip():
            raise InputError(f"--grid {text!r}: expected NAME=V1,V2,... (for example n_estimators=50,100).")
        if name in grid:
            raise InputError(f"--grid {name}: the parameter is given twice; list all its values in one --grid.")
        stripped = values.strip()
        if stripped.startswith("["):
            try:
                items = json.loads(stripped)
            except ValueError:
                raise InputError(f"--grid {name}: {stripped!r} is not a JSON list.") from None
            grid[name] = [v if isinstance(v, str) else json.dumps(v) for v in items]
        else:
            grid[name] = [v.strip() for v in stripped.split(",")]
        if not grid[name] or any(v == "" for v in grid[name]):
            raise InputError(f"--grid {name}: a value is empty in {stripped!r}.")
    return grid


def expand_grid(build: Any, grid: dict[str, list[Any]], from_config: bool) -> list[dict[str, Any]]:
    """Every combination of the grid's values, each value converted and checked with its parameter's type."""
    from nb2prod.runs.params import check_value, convert_text

    typed: dict[str, list[Any]] = {}
    for name, values in grid.items():
        spec = build.parameters.get(name)
        if spec is None:
            known = ", ".join(sorted(build.parameters)) or "none"
            place = "the config's sweep" if from_config else f"--grid {name}"
            raise InputError(f"{place}: unknown parameter {name!r} (the job's parameters are: {known}).")
        if spec.secret:
            place = "the config's sweep" if from_config else f"--grid {name}"
            raise InputError(
                f"{place}: parameter {name!r} is secret, so a sweep cannot vary it; pass it once with"
                f" `-p {name} env:VARIABLE` or `-p {name} file:PATH`."
            )
        if from_config:
            typed[name] = [check_value(spec, v, f"the config's sweep for {name!r}") for v in values]
        else:
            typed[name] = [convert_text(spec, v, f"--grid {name}") for v in values]
    names = list(typed)
    points = [dict(zip(names, combo)) for combo in itertools.product(*(typed[n] for n in names))]
    if len(points) > MAX_POINTS:
        raise InputError(f"the grid has {len(points)} points; at most {MAX_POINTS} are allowed.")
    return points


def run_point(task: PointTask) -> SweepPoint:
    """Train one point in a fresh process (on whichever worker runs this); never raises for a failed point."""
    started = time.perf_counter()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    request = json.dumps(asdict(task))
    try:
        done = subprocess.run(
            [sys.executable, "-m", "nb2prod.scale.point"],
            input=request,
            capture_output=True,
            text=True,
            cwd=task.build_dir,
        )
    except OSError as exc:
        return SweepPoint(task.index, task.params, None, ERRORED, {}, f"cannot start the point: {exc}", 0.0, worker)
    seconds = round(time.perf_counter() - started, 3)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(MARKER):
            data = json.loads(line[len(MARKER) :])
            return SweepPoint(
                task.index,
                task.params,
                data.get("run_id"),
                data["status"],
                data.get("metrics") or {},
                data.get("failure"),
                seconds,
                worker,
            )
    tail = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
    return SweepPoint(task.index, task.params, None, ERRORED, {}, tail, seconds, worker)


def _sort_key(point: SweepPoint, metric: str | None, maximize: bool) -> tuple[Any, ...]:
    value = point.metrics.get(metric) if metric else None
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    return (
        0 if point.succeeded else 1,
        0 if number is not None else 1,
        -(number or 0.0) if maximize else (number or 0.0),
        point.index,
    )


def sweep(
    target: Path | str,
    grid: dict[str, list[Any]] | None = None,
    *,
    pairs: list[tuple[str, str]] | tuple[tuple[str, str], ...] = (),
    store: RunStore | Path | str | None = None,
    engine: str = "local",
    address: str | None = None,
    workers: int | None = None,
    max_parallel: int | None = None,
    runner: str = "papermill",
    metric: str | None = None,
    maximize: bool = True,
    promote_best: bool = False,
    alias: str = "production",
) -> SweepResult:
    """Train every point of `grid` (NAME → values as text; default: the build's config `sweep`).

    Everything that can be refused (unknown parameter, a value of the wrong type, an unknown
    engine, --promote-best without a metric) is refused before any point starts.
    """
    from nb2prod.runs.aliases import AliasStore, check_alias_name
    from nb2prod.runs.trainer import prepare

    t0 = time.perf_counter()
    if runner not in RUNNERS:
        raise InputError(f"unknown training engine {runner!r}: use papermill or python.")
    if max_parallel is not None and max_parallel < 1:
        raise InputError(f"--max-parallel must be a positive number, not {max_parallel}.")
    if promote_best:
        check_alias_name(alias)
        if not metric:
            raise InputError("--promote-best needs a METRIC to choose the best run by.")
    store_root = store.root if isinstance(store, RunStore) else (Path(store) if store is not None else None)
    request = prepare(Path(target), list(pairs), [], runner, store_root)
    build = request.build
    from_config = grid is None
    if grid is None:
        config = build.raw.get("config") if isinstance(build.raw.get("config"), dict) else {}
        grid = (config or {}).get("sweep") or {}
        if not isinstance(grid, dict):
            raise InputError(
                f"{build.build_dir / 'nb2prod.json'}: the config's `sweep` must map parameter names to lists."
            )
        if not grid:
            raise InputError("no grid: pass --grid NAME=V1,V2 or set `sweep` in the notebook's nb2prod configuration.")
    clash = sorted(set(grid) & {name for name, _ in pairs})
    if clash:
        raise InputError(f"-p {clash[0]}: the parameter is also swept by the grid; give it one way only.")
    points = expand_grid(build, grid, from_config)
    tasks = [
        PointTask(i, str(build.build_dir), str(request.store.root), point, tuple(pairs), runner)
        for i, point in enumerate(points)
    ]
    runner_engine = open_engine(engine, address, workers)
    try:
        parallel = max_parallel or runner_engine.workers
        outcomes: list[SweepPoint] = []
        for index, outcome in runner_engine.run_each(run_point, tasks, parallel):
            if isinstance(outcome, BaseException):
                outcome = SweepPoint(
                    index, points[index], None, ERRORED, {}, f"{type(outcome).__name__}: {outcome}", 0.0, "?"
                )
            outcomes.append(outcome)
    finally:
        runner_engine.close()
    ordered = tuple(sorted(outcomes, key=lambda p: _sort_key(p, metric, maximize)))
    candidates = [
        p
        for p in ordered
        if p.succeeded and p.run_id and (not metric or isinstance(p.metrics.get(metric), (int, float)))
    ]
    best = candidates[0] if candidates else None
    promoted = None
    if promote_best:
        if best is None:
            raise InputError(f"no point passed its gates with a numeric {metric!r} metric: nothing to promote.")
        promoted = AliasStore(request.store).promote(str(best.run_id), alias).to_dict()
    return SweepResult(
        build_dir=build.build_dir,
        store=request.store.root,
        engine=runner_engine.name,
        workers=runner_engine.workers,
        metric=metric,
        maximize=maximize,
        points=ordered,
        best=best,
        promoted=promoted,
        startup_s=runner_engine.startup_s,
        total_s=round(time.perf_counter() - t0, 3),
    )
