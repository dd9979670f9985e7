"""Operators' files of a build: Prometheus alerting rules and a Grafana dashboard for the server.

`render_monitoring_files(ctx)` is pure and returns relative path -> text:

- `monitoring/prometheus-rules.yml`   alerting rules over the server's metrics: drift alarm, a live
  metric failing its gate, 5xx error rate, p99 latency of /predict over the budget, server down
- `monitoring/grafana-dashboard.json` a dashboard of traffic, errors, latency, drift and live metrics

Both come from jinja2 templates (templates/monitoring/). Every value from the notebook or its
configuration passes through nb2prod.escape: `promql_str` where it sits in a PromQL label matcher,
`prom_template_text` where Prometheus expands it as a template (alert labels and annotations), then
`yaml_scalar` or `json_text` for the file itself, so no name can add a rule, a key or a template
action.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

from nb2prod import __version__, escape
from nb2prod.errors import InputError

RULES_PATH = "monitoring/prometheus-rules.yml"
DASHBOARD_PATH = "monitoring/grafana-dashboard.json"
ALERTS = (
    "Nb2prodDriftAlarm",
    "Nb2prodLiveGateFailing",
    "Nb2prodHighErrorRate",
    "Nb2prodLatencyOverBudget",
    "Nb2prodServerDown",
)


@dataclass(frozen=True)
class MonitoringContext:
    """What the rules and the dashboard of one build need.

    `job` is the Prometheus scrape job whose targets are this package's servers (every expression
    selects `job="JOB"`); `alert_for` a Prometheus duration; `max_error_rate` a share in (0, 1];
    `latency_budget_ms` the p99 budget of /predict.
    """

    dist_name: str
    version: str
    job: str
    notebook: str = ""
    max_error_rate: float = 0.01
    latency_budget_ms: float = 100.0
    alert_for: str = "5m"

    def __post_init__(self) -> None:
        for name in ("max_error_rate", "latency_budget_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise InputError(f"monitoring.{name} {value!r} must be a positive number.")
        if self.max_error_rate > 1:
            raise InputError(f"monitoring.max_error_rate {self.max_error_rate!r} must be a share between 0 and 1.")
        if not self.job:
            raise InputError("monitoring.job must not be empty.")


def _number(value: float) -> str:
    """A PromQL number: the shortest text that reads back as `value`."""
    return repr(float(value)) if value != int(value) else str(int(value))


@functools.lru_cache(maxsize=1)
def _environment() -> Any:
    from nb2prod.resources import jinja_environment

    env = jinja_environment().overlay()
    env.filters["yaml"] = lambda value: escape.yaml_scalar(str(value))
    env.filters["json"] = escape.json_text
    env.filters["promql"] = lambda value: escape.promql_str(str(value))
    env.filters["alert_text"] = lambda value: escape.prom_template_text(str(value))
    return env


def render_monitoring_files(ctx: MonitoringContext) -> dict[str, str]:
    """The alerting rules and the dashboard of one build (deterministic)."""
    env = _environment()
    values = {
        "nb2prod_version": __version__,
        "dist_name": ctx.dist_name,
        "version": ctx.version,
        "notebook": ctx.notebook,
        "job": ctx.job,
        "alert_for": ctx.alert_for,
        "max_error_rate": _number(ctx.max_error_rate),
        "latency_budget_s": _number(ctx.latency_budget_ms / 1000),
        "latency_budget_ms": _number(ctx.latency_budget_ms),
        "uid": ("nb2prod-" + ctx.dist_name)[:40],
    }
    try:
        return {
            RULES_PATH: env.get_template("monitoring/prometheus-rules.yml.j2").render(**values),
            DASHBOARD_PATH: env.get_template("monitoring/grafana-dashboard.json.j2").render(**values),
        }
    except escape.EscapeError as exc:
        raise InputError(f"cannot write the monitoring files: {exc}.") from None


def render_build_monitoring(*, dist_name: str, version: str, notebook: str, config: Any) -> dict[str, str]:
    """The monitoring files of a build, for the renderer, from its Config's `monitoring` table."""
    return render_monitoring_files(
        MonitoringContext(
            dist_name=dist_name,
            version=version,
            notebook=notebook,
            job=config.monitoring_setting("job") or dist_name,
            max_error_rate=config.monitoring_setting("max_error_rate"),
            latency_budget_ms=config.monitoring_setting("latency_budget_ms"),
            alert_for=config.monitoring_setting("alert_for"),
        )
    )
