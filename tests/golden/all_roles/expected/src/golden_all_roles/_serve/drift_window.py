"""Live drift: the server's recent requests compared with the served run's baseline.

The monitor named "drift" keeps the last `window` rows of requests (their inputs and the
model's score) counted into the bins of the served run's `baseline.json`, and every `every`
new rows recomputes, per raw input and for the score, the same statistics as `nb2prod drift`
(nb2prod/monitor/drift.py): numeric columns a Kolmogorov-Smirnov test on the baseline's
percentile edges and PSI over its deciles, categorical ones a chi-squared test of homogeneity
and PSI over the categories; p-values Bonferroni-corrected for the columns compared. A column
drifts when its corrected p-value is below `alpha`; the alarm fires, once the window is full,
while any column drifts. Each change of the alarm's state is logged, counted and, with a
webhook, posted as JSON from a daemon thread (never from a request).

All the work happens in `observe`, on the prediction writer's thread; a request only pays
for handing its records to that thread. A run without a baseline is reported as such and
exports nothing. When the served run changes (promote, rollback, reload) the baseline is read
again and the window starts empty.

Standard library only: nb2prod and the packages it generates ship this same file.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import threading
import time
import urllib.parse
from bisect import bisect_left
from collections import deque
from datetime import datetime, timezone
from typing import Any, Callable

from .metrics import Counter

DEFAULT_WINDOW = (
    500  # rows: PSI and the tests are steady from 500 rows (docs/monitoring.md)
)
DEFAULT_ALPHA = 0.001  # Bonferroni-corrected, as `nb2prod drift`
DEFAULT_EVERY = 50  # new rows between two evaluations of the window
WEBHOOK_TIMEOUT = 5.0
PSI_BINS = 10
BASELINE_FILE = "baseline.json"
_EPS = 1e-4
_TINY = 1e-300

log = logging.getLogger("nb2prod.serve")


# ---- p-values (pure Python) -------------------------------------------------------------


def ks_sf(x: float) -> float:
    """P(K > x) for Kolmogorov's limiting distribution (scipy's `kstwobign.sf`)."""
    if x <= 0.0:
        return 1.0
    if x < 1.0:  # the theta-function form of the CDF converges fast for small x
        total = 0.0
        factor = -(math.pi**2) / (8.0 * x * x)
        for k in range(1, 40):
            term = math.exp(factor * (2 * k - 1) ** 2)
            total += term
            if term < 1e-17 * total:
                break
        return max(0.0, 1.0 - math.sqrt(2.0 * math.pi) / x * total)
    total = 0.0
    for k in range(1, 100):
        term = math.exp(-2.0 * k * k * x * x)
        total += term if k % 2 else -term
        if term < 1e-17 * abs(total) or term == 0.0:
            break
    return min(1.0, max(0.0, 2.0 * total))


def gamma_q(a: float, x: float) -> float:
    """The regularised upper incomplete gamma function Q(a, x), a > 0."""
    if x <= 0.0:
        return 1.0
    log_front = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1.0:  # the series of P(a, x)
        term = total = 1.0 / a
        n = 0
        while abs(term) > abs(total) * 1e-17 and n < 10_000:
            n += 1
            term *= x / (a + n)
            total += term
        return max(0.0, 1.0 - total * math.exp(log_front))
    b = x + 1.0 - a  # the continued fraction of Q(a, x) (modified Lentz)
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = _TINY if abs(d) < _TINY else d
        c = b + an / c
        c = _TINY if abs(c) < _TINY else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    return min(1.0, math.exp(log_front) * h)


def chi2_sf(statistic: float, dof: int) -> float:
    """P(X > statistic) for a chi-squared variable with `dof` degrees of freedom."""
    return gamma_q(dof / 2.0, statistic / 2.0)


MIN_EXPECTED = 5.0


def pool_rare(base: list[int], current: list[int]) -> tuple[list[int], list[int]]:
    """Pool the categories whose expected count in the current sample is under 5 (Cochran's
    rule; the chi-squared approximation fails on them: a category seen 6 times in 5,000
    training rows, met once in a 100-row window, alone gave a p-value near 0.001) into one
    cell, growing it with the next rarest until its own expectation reaches 5; returns the
    two count vectors over the cells kept and the pool (last)."""
    n_base, n_current = sum(base), sum(current)
    total = n_base + n_current
    if not n_base or not n_current:
        return base, current
    expected = [n_current * (b + c) / total for b, c in zip(base, current)]
    order = sorted(range(len(base)), key=lambda i: (expected[i], i))
    pooled: list[int] = []
    pooled_expected = 0.0
    for i in order:
        if expected[i] >= MIN_EXPECTED and (
            not pooled or pooled_expected >= MIN_EXPECTED
        ):
            break
        pooled.append(i)
        pooled_expected += expected[i]
    if len(pooled) < 2:
        return base, current
    kept = [i for i in range(len(base)) if i not in set(pooled)]
    return (
        [base[i] for i in kept] + [sum(base[i] for i in pooled)],
        [current[i] for i in kept] + [sum(current[i] for i in pooled)],
    )


def chi2_homogeneity(base: list[int], current: list[int]) -> tuple[float, float]:
    """Pearson's chi-squared test of a 2 x k table (scipy's `chi2_contingency`, no
    continuity correction): (statistic, p-value)."""
    n_base, n_current = sum(base), sum(current)
    total = n_base + n_current
    statistic = 0.0
    for b, c in zip(base, current):
        column = b + c
        for observed, row in ((b, n_base), (c, n_current)):
            expected = row * column / total
            statistic += (observed - expected) ** 2 / expected
    return statistic, chi2_sf(statistic, len(base) - 1)


def psi(baseline: list[float], current: list[float]) -> float:
    total = 0.0
    for b, c in zip(baseline, current):
        b, c = max(b, _EPS), max(c, _EPS)
        total += (c - b) * math.log(c / b)
    return total


def decile_groups(counts: list[int]) -> list[int]:
    """Which of PSI_BINS bins each baseline interval falls in (as `nb2prod drift`)."""
    total = sum(counts) or 1
    groups, before = [], 0
    for c in counts:
        groups.append(min(PSI_BINS - 1, int(PSI_BINS * before / total + 1e-9)))
        before += c
    return groups


# ---- values as `nb2prod drift` counts them ----------------------------------------------


def score_of(output: Any) -> Any:
    """The score of one output: the last element of a list (the positive class), a dict's
    score, probability or prediction, else the output."""
    if isinstance(output, list) and output:
        return output[-1]
    if isinstance(output, dict):
        for key in ("score", "probability", "prediction"):
            if key in output:
                return output[key]
    return output


def _number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def category_key(value: Any) -> str | None:
    """A categorical value as the baseline counts it: the same text for 1 and 1.0."""
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))
    return str(value)


class Column:
    """One baseline column and the counts of the window's values in its bins."""

    def __init__(self, section: str, profile: dict[str, Any]) -> None:
        self.section = section  # "input" | "score"
        self.name = str(profile["name"])
        self.kind = str(profile.get("kind", "numeric"))
        self.categorical = self.kind == "categorical"
        self.n_base = int(profile.get("count", 0)) - int(profile.get("missing", 0))
        self.edges = [float(e) for e in profile.get("edges") or ()]
        self.base_counts = [int(c) for c in profile.get("counts") or ()]
        self.base_categories = {
            str(k): int(v) for k, v in (profile.get("categories") or {}).items()
        }
        self.groups = decile_groups(self.base_counts)
        self.counts = [0] * (len(self.edges) + 1)
        self.categories: dict[str, int] = {}
        self.valid = 0

    @property
    def tested(self) -> bool:
        return self.kind == "categorical" or bool(self.edges)

    def key(self, value: Any) -> Any:
        """The window's key for a value: a bin index, a category, or None (missing)."""
        if self.categorical:
            return category_key(value)
        if type(value) is float:  # the common case, fast
            return bisect_left(self.edges, value) if value - value == 0 else None
        number = _number(value)
        return None if number is None else bisect_left(self.edges, number)

    def add(self, key: Any) -> None:
        if key is None:
            return
        self.valid += 1
        if self.kind == "categorical":
            self.categories[key] = self.categories.get(key, 0) + 1
        else:
            self.counts[key] += 1

    def remove(self, key: Any) -> None:
        if key is None:
            return
        self.valid -= 1
        if self.kind == "categorical":
            left = self.categories[key] - 1
            if left:
                self.categories[key] = left
            else:
                del self.categories[key]
        else:
            self.counts[key] -= 1

    def compare(self, tests: int, alpha: float) -> dict[str, Any]:
        n_base, n_cur = self.n_base, self.valid
        statistic = p_value = value_psi = None
        test = "none"
        if self.kind == "categorical":
            test = "chi2"
            keys = sorted(set(self.base_categories) | set(self.categories))
            base = [self.base_categories.get(k, 0) for k in keys]
            cur = [self.categories.get(k, 0) for k in keys]
            if n_base:
                value_psi = psi([b / n_base for b in base], [c / n_cur for c in cur])
            pooled_base, pooled_cur = pool_rare(base, cur)
            if len(pooled_base) > 1 and n_base:
                statistic, p_value = chi2_homogeneity(pooled_base, pooled_cur)
        elif self.edges:
            test = "ks"
            base_bins = [0.0] * PSI_BINS
            cur_bins = [0.0] * PSI_BINS
            for i, g in enumerate(self.groups):
                base_bins[g] += self.base_counts[i] / n_base
                cur_bins[g] += self.counts[i] / n_cur
            used = sorted(set(self.groups))
            value_psi = psi([base_bins[g] for g in used], [cur_bins[g] for g in used])
            cum_b = cum_c = d = 0.0
            for b, c in zip(self.base_counts[:-1], self.counts[:-1]):
                cum_b += b / n_base
                cum_c += c / n_cur
                d = max(d, abs(cum_b - cum_c))
            statistic = d
            p_value = ks_sf(d * math.sqrt(n_base * n_cur / (n_base + n_cur)))
        adjusted = min(1.0, p_value * tests) if p_value is not None else None
        return {
            "section": self.section,
            "feature": self.name,
            "test": test,
            "statistic": statistic,
            "pvalue": adjusted,
            "pvalue_raw": p_value,
            "psi": value_psi,
            "rows": n_cur,
            "drifted": adjusted is not None and adjusted < alpha,
        }


# ---- the monitor ------------------------------------------------------------------------


def check_webhook(url: str | None) -> str | None:
    """The webhook URL, or a ValueError with one sentence saying what is wrong with it."""
    if url is None:
        return None
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"--drift-webhook {url!r}: expected an http:// or https:// URL with a host"
        )
    return url


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Webhook:
    """Posts JSON bodies to a URL, in order, from one daemon thread; a failed call is logged
    and tried once more, never raised."""

    def __init__(self, url: str, timeout: float = WEBHOOK_TIMEOUT) -> None:
        self.url = url
        self.timeout = timeout
        self.retry_after = 1.0  # seconds before the second try
        self.sent = 0
        self.failed = 0
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        parts = urllib.parse.urlsplit(url)
        self.shown = f"{parts.scheme}://{parts.hostname}" + (
            f":{parts.port}" if parts.port else ""
        )

    def post(self, body: dict[str, Any]) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="nb2prod-drift-webhook", daemon=True
                )
                self._thread.start()
        self._queue.put(body)

    def _run(self) -> None:
        import urllib.request

        while True:
            body = self._queue.get()
            data = json.dumps(body, separators=(",", ":")).encode()
            for attempt in (1, 2):
                try:
                    request = urllib.request.Request(
                        self.url,
                        data=data,
                        method="POST",
                        headers={"content-type": "application/json"},
                    )
                    with urllib.request.urlopen(
                        request, timeout=self.timeout
                    ) as answer:
                        answer.read()
                    self.sent += 1
                    break
                except Exception as exc:  # noqa: BLE001 - logged, never raised
                    log.warning(
                        "drift webhook %s: %s call failed (%s: %s)%s",
                        self.shown,
                        body.get("state"),
                        type(exc).__name__,
                        exc,
                        ", trying once more" if attempt == 1 else ", given up",
                    )
                    if attempt == 2:
                        self.failed += 1
                    else:
                        time.sleep(self.retry_after)


class _Window:
    """The served run's baseline columns and the last rows counted into them."""

    def __init__(self, run: str, sha: str, columns: list[Column] | None, note: str):
        self.run = run
        self.model_sha256 = sha
        self.columns = columns  # None: no usable baseline
        self.note = note  # "ok", "no baseline", "baseline unreadable: ..."
        self.rows: deque[list[Any]] = deque()
        self.new_rows = 0
        self.features: list[dict[str, Any]] = []
        self.evaluated_rows = 0
        self.evaluated_at: str | None = None


def read_columns(run_dir: str | None) -> tuple[list[Column] | None, str]:
    if not run_dir:
        return None, "no baseline"
    path = os.path.join(run_dir, BASELINE_FILE)
    if not os.path.isfile(path):
        return None, "no baseline"
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        columns = [Column("input", p) for p in data.get("inputs") or ()]
        if data.get("score"):
            columns.append(Column("score", data["score"]))
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        return None, f"baseline unreadable: {type(exc).__name__}: {exc}"
    return columns, "ok"


class DriftMonitor:
    """The server monitor "drift" (see `main.build_app` for the monitor protocol)."""

    name = "drift"

    def __init__(
        self,
        window: int = DEFAULT_WINDOW,
        alpha: float = DEFAULT_ALPHA,
        every: int = DEFAULT_EVERY,
        webhook: str | None = None,
        on_change: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.window = max(int(window), 1)
        self.alpha = float(alpha)
        self.every = max(int(every), 1)
        url = check_webhook(webhook)
        self.webhook = Webhook(url) if url else None
        self.on_change = on_change
        self.runtime: Any = None
        self.observed = 0
        self.changes = 0
        self.alarm = False
        self.changed_at: str | None = None
        self.reason = ""
        self._state: _Window | None = None
        self._lock = threading.Lock()

    # ---- protocol ----
    def attach(self, runtime: Any) -> None:
        self.runtime = runtime

    def routers(self) -> list[Any]:
        return []

    def observe(self, records: list[dict[str, Any]]) -> None:
        try:
            with self._lock:
                state = self._sync()
                if state is None or state.columns is None:
                    return
                columns = state.columns
                window = state.rows
                for record in records:
                    if record.get("run") != state.run:
                        continue  # predicted by the run served before a reload
                    inputs = record.get("inputs")
                    inputs = inputs if isinstance(inputs, dict) else {}
                    score = score_of(record.get("output"))
                    keys = []
                    for column in columns:  # Column.add, inlined: this loop is the cost
                        key = column.key(
                            score
                            if column.section == "score"
                            else inputs.get(column.name)
                        )
                        keys.append(key)
                        if key is not None:
                            column.valid += 1
                            if column.categorical:
                                found = column.categories
                                found[key] = found.get(key, 0) + 1
                            else:
                                column.counts[key] += 1
                    window.append(keys)
                    if len(window) > self.window:
                        for column, key in zip(columns, window.popleft()):
                            if key is not None:
                                column.remove(key)
                    state.new_rows += 1
                    self.observed += 1
                if state.new_rows >= self.every:
                    self._evaluate(state)
        except Exception as exc:  # noqa: BLE001 - drift must never stop the log
            log.error("drift monitor: %s: %s", type(exc).__name__, exc)

    def metrics_text(self) -> str:
        with self._lock:
            state = self._sync()
            if state is None or state.columns is None:
                return ""
            pvalue = Counter(
                "nb2prod_drift_pvalue",
                "Bonferroni-corrected p-value of the drift test over the window.",
                "gauge",
            )
            value_psi = Counter(
                "nb2prod_drift_psi",
                "Population stability index of the window against the baseline.",
                "gauge",
            )
            for item in state.features:
                labels = (("section", item["section"]), ("feature", item["feature"]))
                if item["pvalue"] is not None:
                    pvalue.set(labels, item["pvalue"])
                if item["psi"] is not None:
                    value_psi.set(labels, item["psi"])
            rows = Counter(
                "nb2prod_drift_window_rows", "Rows in the drift window.", "gauge"
            )
            rows.set((), float(len(state.rows)))
            alarm = Counter(
                "nb2prod_drift_alarm", "1 while the drift alarm fires.", "gauge"
            )
            alarm.set((), 1.0 if self.alarm else 0.0)
            changes = Counter(
                "nb2prod_drift_alarm_changes", "Changes of the drift alarm's state."
            )
            changes.set((), float(self.changes))
            lines: list[str] = []
            for metric in (pvalue, value_psi, rows, alarm, changes):
                lines.extend(metric.lines())
            return "\n".join(lines) + "\n"

    def metadata(self) -> dict[str, Any]:
        with self._lock:
            state = self._sync()
            return {
                "status": state.note if state is not None else "no model",
                "run": state.run if state is not None else None,
                "window": self.window,
                "every": self.every,
                "alpha": self.alpha,
                "correction": "bonferroni",
                "rows": len(state.rows) if state is not None else 0,
                "observed": self.observed,
                "evaluated_rows": state.evaluated_rows if state is not None else 0,
                "evaluated_at": state.evaluated_at if state is not None else None,
                "alarm": self.alarm,
                "changed_at": self.changed_at,
                "changes": self.changes,
                "webhook": self.webhook.shown if self.webhook is not None else None,
                "features": list(state.features) if state is not None else [],
            }

    def alarms(self) -> list[dict[str, Any]]:
        with self._lock:
            self._sync()
            if not self.alarm:
                return []
            return [
                {
                    "name": "drift",
                    "state": "firing",
                    "reason": self.reason,
                    "since": self.changed_at,
                    "run": self._state.run if self._state is not None else None,
                }
            ]

    # ---- inside the lock ----
    def _sync(self) -> _Window | None:
        """The window of the run served now; a new, empty one when the run changed."""
        loaded = getattr(self.runtime, "current", None)
        if loaded is None:
            return self._state
        if self._state is not None and self._state.run == loaded.run:
            return self._state
        if self.alarm:  # the alarm was about the run served before
            self._change(False, f"the served run changed to {loaded.run}", [])
        columns, note = read_columns(getattr(loaded, "run_dir", None))
        self._state = _Window(loaded.run, loaded.model_sha256, columns, note)
        if note != "ok":
            log.info("drift: run %s: %s, live drift is off for it", loaded.run, note)
        return self._state

    def _evaluate(self, state: _Window) -> None:
        columns = [c for c in state.columns or () if c.valid > 0]
        tests = max(1, sum(1 for c in columns if c.tested))
        state.features = [c.compare(tests, self.alpha) for c in columns]
        state.new_rows = 0
        state.evaluated_rows = len(state.rows)
        state.evaluated_at = _now()
        drifted = [f for f in state.features if f["drifted"]]
        firing = bool(drifted) and len(state.rows) >= self.window
        if firing == self.alarm:
            if firing:
                self.reason = _reason(drifted)
            return
        self._change(firing, _reason(drifted) if firing else "", drifted)

    def _change(self, firing: bool, reason: str, drifted: list[dict[str, Any]]):
        self.alarm = firing
        self.changed_at = _now()
        self.changes += 1
        self.reason = reason
        if firing:
            log.warning("drift alarm firing: %s", reason)
        else:
            log.info("drift alarm cleared%s", f": {reason}" if reason else "")
        state = self._state
        body = {
            "alarm": "drift",
            "state": "firing" if firing else "cleared",
            "run": state.run if state is not None else None,
            "model_sha256": state.model_sha256 if state is not None else None,
            "time": self.changed_at,
            "reason": reason,
            "features": [
                {k: f[k] for k in ("section", "feature", "test", "pvalue", "psi")}
                for f in drifted
            ],
        }
        if self.webhook is not None:
            self.webhook.post(body)
        if self.on_change is not None:
            self.on_change(body)


def _reason(drifted: list[dict[str, Any]]) -> str:
    return ", ".join(
        f"{f['feature']} (p={_short(f['pvalue'])}, psi={_short(f['psi'])})"
        for f in drifted
    )


def _short(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"
