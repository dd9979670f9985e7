"""Live accuracy offline: labels joined with a server's prediction log through the prediction id.

`feedback(...)` reads a labels file (CSV or JSON lines), joins it with the prediction log of a
server's `--log-dir`, computes the live metrics with the server's own code
(`nb2prod.serve.evaluate_labels`) against the run's recorded metrics and quality gates, and appends
the labels to the folder's `feedback-*.jsonl` files. `monitor_summary(...)` is what
`nb2prod monitor` shows: from a running server (`/metadata`, `/metrics`) or from a log folder.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nb2prod.errors import InputError


@dataclass(frozen=True)
class Join:
    """Labels matched with the predictions of one run (oldest label first)."""

    labels: tuple[Any, ...]
    outputs: tuple[Any, ...]
    matched: int
    unmatched: tuple[str, ...]  # ids with no prediction in the log
    other_run: int  # labels of predictions another run made (not counted)


@dataclass(frozen=True)
class FeedbackReport:
    run: str
    log_dir: str
    labels: int
    join: Join
    live: dict[str, Any]
    appended: int

    @property
    def failing(self) -> list[dict[str, Any]]:
        return [g for g in self.live["gates"] if g["failing"]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "log_dir": self.log_dir,
            "labels": self.labels,
            "matched": self.join.matched,
            "unmatched": list(self.join.unmatched),
            "other_run": self.join.other_run,
            "appended": self.appended,
            "live": self.live,
        }


def read_labels(path: Path, id_column: str = "id", label_column: str = "label") -> list[tuple[str, Any]]:
    """(id, label) pairs of a CSV or JSON lines file, in file order; InputError names the file, row
    and column of the first problem."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no labels file there.")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(path, id_column, label_column)
    if suffix in (".jsonl", ".ndjson", ".json"):
        return _read_jsonl(path, id_column, label_column)
    raise InputError(f"{path}: labels must be a .csv or a .jsonl file.")


def _read_csv(path: Path, id_column: str, label_column: str) -> list[tuple[str, Any]]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            for column in (id_column, label_column):
                if column not in columns:
                    raise InputError(
                        f"{path}: no column {column!r} (columns: {', '.join(columns) or 'none'}); "
                        f"name it with --{'id' if column == id_column else 'label'}-column."
                    )
            pairs = []
            for row_number, row in enumerate(reader, start=2):
                pairs.append(
                    _pair(path, row_number, row.get(id_column), row.get(label_column), id_column, label_column)
                )
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text.") from None
    except csv.Error as exc:
        raise InputError(f"{path}: not a readable CSV file ({exc}).") from None
    return pairs


def _read_jsonl(path: Path, id_column: str, label_column: str) -> list[tuple[str, Any]]:
    pairs = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text.") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise InputError(f"{path}: line {number} is not valid JSON ({exc}).") from None
        if not isinstance(row, dict):
            raise InputError(f"{path}: line {number} is not a JSON object.")
        pairs.append(_pair(path, number, row.get(id_column), row.get(label_column), id_column, label_column, "line"))
    return pairs


def _pair(
    path: Path, row: int, pid: Any, label: Any, id_column: str, label_column: str, unit: str = "row"
) -> tuple[str, Any]:
    if pid is None or str(pid).strip() == "":
        raise InputError(f"{path}: {unit} {row} has no {id_column!r}.")
    if label is None or (isinstance(label, str) and label.strip() == ""):
        raise InputError(f"{path}: {unit} {row} has no {label_column!r}.")
    if isinstance(label, float) and not math.isfinite(label) or isinstance(label, (dict, list)):
        raise InputError(f"{path}: {unit} {row}: {label_column!r} must be a class or a number.")
    return str(pid).strip(), label


def join_labels(log_dir: Path, labels: list[tuple[str, Any]], run: str) -> Join:
    """Match labels with the prediction log; a later label for the same id replaces the earlier."""
    from nb2prod.serve import read_prediction_log

    latest: dict[str, Any] = {}
    for pid, label in labels:
        latest.pop(pid, None)
        latest[pid] = label
    found: dict[str, tuple[Any, Any]] = {}
    for record in read_prediction_log(log_dir):
        pid = str(record.get("id"))
        if pid in latest:
            found[pid] = (record.get("run"), record.get("output"))
    ys, outputs, unmatched, other = [], [], [], 0
    for pid, label in latest.items():
        if pid not in found:
            unmatched.append(pid)
        elif found[pid][0] != run:
            other += 1
        else:
            ys.append(label)
            outputs.append(found[pid][1])
    return Join(tuple(ys), tuple(outputs), len(latest) - len(unmatched), tuple(unmatched), other)


def _run_folder(store: Any, ref: str) -> tuple[Any, Any]:
    """The store and its verified run `ref` (run id, prefix or alias)."""
    from nb2prod.runs.store import RunStore

    run_store = store if isinstance(store, RunStore) else RunStore(Path(str(store)))
    run = run_store.get(ref)
    run_store.verify(run)
    return run_store, run


def _check_log_dir(log_dir: Path) -> None:
    from nb2prod.serve import read_prediction_log

    if not Path(log_dir).is_dir():
        raise InputError(f"--log-dir {log_dir}: no prediction log folder there.")
    if next(iter(read_prediction_log(log_dir)), None) is None:
        raise InputError(f"--log-dir {log_dir}: the folder holds no predictions-*.jsonl records.")


def feedback(
    store: Any,
    ref: str,
    labels_path: Path,
    log_dir: Path,
    *,
    id_column: str = "id",
    label_column: str = "label",
    window: int | None = None,
    min_labels: int | None = None,
    threshold: float | None = None,
    append: bool = True,
) -> FeedbackReport:
    """Join `labels_path` with the log of `log_dir`, judge run `ref`, append the labels."""
    from nb2prod.serve import append_feedback, evaluate_labels

    _, run = _run_folder(store, ref)
    pairs = read_labels(Path(labels_path), id_column, label_column)
    if not pairs:
        raise InputError(f"{labels_path}: no labels in the file.")
    _check_log_dir(Path(log_dir))
    join = join_labels(Path(log_dir), pairs, run.run_id)
    labels, outputs = list(join.labels), list(join.outputs)
    if window is not None:
        labels, outputs = labels[-window:], outputs[-window:]
    live = evaluate_labels(
        labels, outputs, run.path, run=run.run_id, window=window, min_labels=min_labels, threshold=threshold
    )
    appended = append_feedback(log_dir, pairs, _runs_of(Path(log_dir), pairs)) if append else 0
    return FeedbackReport(run.run_id, str(log_dir), len(pairs), join, live, appended)


def _runs_of(log_dir: Path, pairs: list[tuple[str, Any]]) -> dict[str, str | None]:
    from nb2prod.serve import read_prediction_log

    wanted = {pid for pid, _ in pairs}
    return {str(r.get("id")): r.get("run") for r in read_prediction_log(log_dir) if str(r.get("id")) in wanted}


def live_from_log(
    store: Any, ref: str, log_dir: Path, *, window: int | None = None, min_labels: int | None = None, threshold=None
) -> dict[str, Any]:
    """The live metrics of the labels in the folder's feedback files (what the server would show)."""
    from nb2prod.serve import evaluate_labels, read_feedback

    _, run = _run_folder(store, ref)
    pairs = [(str(r["id"]), r.get("label")) for r in read_feedback(log_dir)]
    join = join_labels(Path(log_dir), pairs, run.run_id)
    labels, outputs = list(join.labels), list(join.outputs)
    if window is not None:
        labels, outputs = labels[-window:], outputs[-window:]
    live = evaluate_labels(
        labels, outputs, run.path, run=run.run_id, window=window, min_labels=min_labels, threshold=threshold
    )
    live["labels"] = {"matched": join.matched, "unmatched": len(join.unmatched)}
    return live


# ---- nb2prod monitor ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """What `nb2prod monitor` shows."""

    source: str  # the URL or the log folder
    run: str | None
    alias: str | None
    model_sha256: str | None
    traffic: dict[str, Any]
    latency: dict[str, Any]
    drift: dict[str, Any] | None  # None: not monitored
    live: dict[str, Any] | None
    alarms: tuple[dict[str, Any], ...]
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "run": self.run,
            "alias": self.alias,
            "model_sha256": self.model_sha256,
            "traffic": self.traffic,
            "latency": self.latency,
            "drift": self.drift,
            "live": self.live,
            "alarms": list(self.alarms),
            "notes": list(self.notes),
        }


def summary_from_server(url: str, ref: str, token: str | None = None) -> Summary:
    """`/metadata` and `/metrics` of a running server."""
    metadata = json.loads(_get(url, "/metadata", token))
    samples = parse_prometheus(_get(url, "/metrics", token))
    requests = sum(v for labels, v in samples.get("nb2prod_requests_total", []) if labels.get("route") == "/predict")
    errors = sum(
        v for labels, v in samples.get("nb2prod_request_errors_total", []) if labels.get("route") == "/predict"
    )
    buckets = [
        (float("inf") if labels["le"] == "+Inf" else float(labels["le"]), v)
        for labels, v in samples.get("nb2prod_request_duration_seconds_bucket", [])
        if labels.get("route") == "/predict"
    ]
    latency = {
        "p50_ms": _ms(histogram_quantile(0.5, buckets)),
        "p99_ms": _ms(histogram_quantile(0.99, buckets)),
        "from": "histogram",
    }
    monitoring = metadata.get("monitoring") or {}
    notes = []
    served = metadata.get("run")
    if ref not in (served, metadata.get("alias")) and not (served or "").startswith(ref):
        notes.append(f"the server at {url} serves run {served} (alias {metadata.get('alias')}), not {ref}")
    return Summary(
        url,
        served,
        metadata.get("alias"),
        metadata.get("model_sha256"),
        {"requests": int(requests), "errors": int(errors)},
        latency,
        monitoring.get("drift"),
        monitoring.get("live"),
        tuple(metadata.get("alarms") or ()),
        tuple(notes),
    )


def summary_from_log(
    store: Any, ref: str, log_dir: Path, *, window: int | None = None, min_labels: int | None = None
) -> Summary:
    """The same summary computed from a server's log folder (prediction log and feedback files)."""
    from nb2prod.serve import read_prediction_log

    run_store, run = _run_folder(store, ref)
    _check_log_dir(Path(log_dir))
    requests: dict[str, float] = {}
    rows = 0
    for record in read_prediction_log(log_dir, window=window):
        if record.get("run") != run.run_id:
            continue
        rows += 1
        requests[str(record.get("request_id"))] = float(record.get("latency_ms") or 0.0)
    latencies = sorted(requests.values())
    latency = {"p50_ms": _quantile(latencies, 0.5), "p99_ms": _quantile(latencies, 0.99), "from": "prediction log"}
    notes: list[str] = []
    drift_state: dict[str, Any] | None = None
    alarms: list[dict[str, Any]] = []
    try:
        from nb2prod.monitor import drift

        report = drift(run_store, run.run_id, Path(log_dir), window=window)
        drift_state = {
            "window": window,
            "rows": report.rows,
            "alarm": bool(report.drifted),
            "features": [
                {
                    "feature": c.name,
                    "test": c.test,
                    "statistic": c.statistic,
                    "pvalue": c.p_adjusted,
                    "psi": c.psi,
                    "drifted": c.drifted,
                }
                for c in report.columns
            ],
        }
        if report.drifted:
            names = ", ".join(c.name for c in report.drifted)
            alarms.append({"name": "drift", "state": "firing", "reason": f"drift in {names}", "since": None})
    except InputError as exc:
        notes.append(f"drift not computed: {exc.message}")
    live = live_from_log(run_store, run.run_id, Path(log_dir), window=window, min_labels=min_labels)
    if live["alarm"]:
        alarms.append({"name": "live-gate", "state": "firing", "reason": live["reason"], "since": None})
    model = run.manifest.model
    return Summary(
        str(log_dir),
        run.run_id,
        ref if ref != run.run_id else None,
        model.sha256 if model else None,
        {"requests": len(requests), "predictions": rows, "errors": None},
        latency,
        drift_state,
        live,
        tuple(alarms),
        tuple(notes),
    )


def _get(url: str, path: str, token: str | None) -> str:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url.rstrip("/") + path)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        raise InputError(f"--url {url}: GET {path} answered {exc.code} ({exc.reason}).") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise InputError(f"--url {url}: cannot reach the server ({reason}).") from None


def parse_prometheus(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Samples of the Prometheus text format: name -> [(labels, value)]."""
    import re

    pattern = re.compile(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)")
    label = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = pattern.match(line)
        if not match:
            continue
        try:
            value = float(match.group(3))
        except ValueError:
            continue
        labels = {k: v.replace('\\"', '"').replace("\\\\", "\\") for k, v in label.findall(match.group(2) or "")}
        samples.setdefault(match.group(1), []).append((labels, value))
    return samples


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """The q-quantile of cumulative histogram buckets (upper bound, count), interpolated linearly
    inside the bucket as Prometheus' histogram_quantile does."""
    merged: dict[float, float] = {}
    for bound, count in buckets:
        merged[bound] = merged.get(bound, 0.0) + count
    points = sorted(merged.items())
    if not points or points[-1][1] == 0:
        return None
    total = points[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, count in points:
        if count >= rank:
            if math.isinf(bound):
                return lower
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, count
    return lower


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    position = q * (len(values) - 1)
    low = int(math.floor(position))
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0
