"""Prometheus metrics of the server, kept in memory and written in the text exposition format.

Updates happen on the server's event loop thread (one thread per worker process), so they are
plain increments: no lock, no I/O, well under ten microseconds a request.

Standard library only: nb2prod and the packages it generates ship this same file.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Callable, Iterable

LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels, extra: str = "") -> str:
    parts = [f'{k}="{_escape(v)}"' for k, v in labels]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


class Counter:
    def __init__(self, name: str, help_text: str, kind: str = "counter") -> None:
        self.name, self.help, self.kind = name, help_text, kind
        self.values: dict[Labels, float] = {}

    def inc(self, labels: Labels = (), amount: float = 1.0) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def set(self, labels: Labels = (), value: float = 0.0) -> None:
        self.values[labels] = value

    def lines(self) -> Iterable[str]:
        name = self.name + ("_total" if self.kind == "counter" else "")
        yield f"# HELP {name} {self.help}"
        yield f"# TYPE {name} {self.kind}"
        for labels, value in list(self.values.items()):  # other threads may add series
            yield f"{name}{_labels(labels)} {_number(value)}"


class Histogram:
    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...]) -> None:
        self.name, self.help, self.buckets = name, help_text, buckets
        self.series: dict[Labels, list[float]] = {}  # bucket counts..., +Inf count, sum

    def observe(self, value: float, labels: Labels = ()) -> None:
        series = self.series.get(labels)
        if series is None:
            series = self.series[labels] = [0.0] * (len(self.buckets) + 2)
        series[bisect_left(self.buckets, value)] += 1
        series[-1] += value

    def lines(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        for labels, series in list(self.series.items()):
            running = 0.0
            for bound, count in zip(self.buckets, series):
                running += count
                le = _labels(labels, f'le="{_number(bound)}"')
                yield f"{self.name}_bucket{le} {_number(running)}"
            running += series[len(self.buckets)]
            inf = _labels(labels, 'le="+Inf"')
            yield f"{self.name}_bucket{inf} {_number(running)}"
            yield f"{self.name}_sum{_labels(labels)} {series[-1]!r}"
            yield f"{self.name}_count{_labels(labels)} {_number(running)}"


class Metrics:
    """Every metric the server exports; `collectors` add lines of text (other capabilities)."""

    def __init__(self) -> None:
        self.requests = Counter(
            "nb2prod_requests", "HTTP requests by route and status code."
        )
        self.errors = Counter(
            "nb2prod_request_errors",
            "Refused or failed requests by route, code and rule.",
        )
        self.latency = Histogram(
            "nb2prod_request_duration_seconds",
            "Time from request to answer, by route.",
            LATENCY_BUCKETS,
        )
        self.predictions = Counter("nb2prod_predictions", "Predictions made, by run.")
        self.warnings = Counter(
            "nb2prod_contract_warnings",
            "Inputs outside what training saw (range, category), by field and rule.",
        )
        self.batch_rows = Histogram(
            "nb2prod_batch_rows", "Rows per call of the model's predict.", BATCH_BUCKETS
        )
        self.reloads = Counter("nb2prod_model_reloads", "Models swapped in by reload.")
        self.reload_failures = Counter(
            "nb2prod_model_reload_failures",
            "Reload targets refused (failed verification, loading or warm-up), by reason.",
        )
        self.log_dropped = Counter(
            "nb2prod_prediction_log_dropped",
            "Prediction records dropped because the log queue was full.",
        )
        self.log_written = Counter(
            "nb2prod_prediction_log_written", "Prediction records written to the log."
        )
        self.ready = Counter(
            "nb2prod_ready", "1 when a model is loaded and warm.", "gauge"
        )
        self.model_info = Counter(
            "nb2prod_model_info", "The model being served (value 1).", "gauge"
        )
        self.collectors: list[Callable[[], str]] = []

    def render(self, dropped: int = 0, written: int = 0) -> str:
        self.log_dropped.set((), float(dropped))
        self.log_written.set((), float(written))
        lines: list[str] = []
        for metric in (
            self.requests,
            self.errors,
            self.latency,
            self.predictions,
            self.warnings,
            self.batch_rows,
            self.reloads,
            self.reload_failures,
            self.log_dropped,
            self.log_written,
            self.ready,
            self.model_info,
        ):
            lines.extend(metric.lines())
        text = "\n".join(lines) + "\n"
        for collector in self.collectors:
            extra = collector()
            if extra:
                text += extra if extra.endswith("\n") else extra + "\n"
        return text
