"""The operators' files a build writes (monitoring/prometheus-rules.yml, monitoring/grafana-dashboard.json),
checked with Debian's promtool, against a real server's /metrics, and with a real Prometheus server
scraping a real `nb2prod serve` on loopback."""

from __future__ import annotations

import json
import re
import shutil
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from nb2prod.config import load_config
from nb2prod.deploy.monitoring import ALERTS, DASHBOARD_PATH, RULES_PATH, MonitoringContext, render_monitoring_files
from nb2prod.errors import InputError

from .conftest import (
    EXAMPLES,
    FAST,
    REPO,
    Process,
    build_example,
    free_port,
    http_get,
    http_post,
    nb2prod,
    promtool,
    wait_until,
)

HERE = Path(__file__).resolve().parent
METRIC = re.compile(r"\b(nb2prod_[a-z0-9_]+|up)\b(?!\s*\()")
SERVING = re.compile(r"serving on http://127\.0\.0\.1:(\d+)")
PANELS = {
    "Traffic",
    "Errors",
    "Latency of /predict (p50, p99)",
    "Drift p-values per feature",
    "Drift PSI per feature",
    "Drift alarm",
    "Live metrics vs recorded",
    "Quality gates failing",
}
# metrics the server exports only while a monitor runs (contract 6), by the monitor's /metadata name
MONITOR_METRICS = {
    "drift": {
        "nb2prod_drift_pvalue",
        "nb2prod_drift_psi",
        "nb2prod_drift_window_rows",
        "nb2prod_drift_alarm",
        "nb2prod_drift_alarm_changes_total",
    },
    "live": {
        "nb2prod_feedback_labels_total",
        "nb2prod_live_labelled_rows",
        "nb2prod_live_metric",
        "nb2prod_recorded_metric",
        "nb2prod_live_gate_threshold",
        "nb2prod_live_gate_failing",
        "nb2prod_live_alarm",
    },
}


def rules_of(build: Path) -> list[dict[str, Any]]:
    data = yaml.safe_load((build / RULES_PATH).read_text(encoding="utf-8"))
    return [rule for group in data["groups"] for rule in group["rules"]]


def dashboard_exprs(build: Path) -> list[str]:
    dashboard = json.loads((build / DASHBOARD_PATH).read_text(encoding="utf-8"))
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (label names and values, functions and keywords left out)."""
    without_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    without_matchers = re.sub(r"\{[^}]*\}", "", without_strings)
    without_groupings = re.sub(r"\b(?:by|without)\s*\([^)]*\)", "", without_matchers)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_groupings)
    return set(METRIC.findall(without_ranges))


def exported_names(text: str) -> set[str]:
    """Metric names in a /metrics page: each sample's name, and each family a `# TYPE` line declares (a
    monitor declares its gauges before it has values; a histogram exports _bucket, _sum and _count)."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            names |= {name + suffix for suffix in ("_bucket", "_sum", "_count")} if kind == "histogram" else {name}
        elif line and not line.startswith("#"):
            names.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
    return names


@pytest.fixture(scope="module")
def example_builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("monitoring-builds")
    return {example: build_example(root / example, example) for example in EXAMPLES}


def test_build_writes_and_records_the_monitoring_files(example_builds: dict[str, Path]) -> None:
    for example, build in example_builds.items():
        manifest = json.loads((build / "nb2prod.json").read_text(encoding="utf-8"))
        assert {RULES_PATH, DASHBOARD_PATH} <= set(manifest["files"]), example
        alerts = [rule["alert"] for rule in rules_of(build)]
        assert alerts == list(ALERTS)
        for rule in rules_of(build):
            assert rule["labels"]["package"] == build.name
            assert rule["for"] == "5m"
            assert f'job="{build.name}"' in rule["expr"]


def test_promtool_checks_the_rules_of_both_examples(example_builds: dict[str, Path]) -> None:
    for example, build in example_builds.items():
        checked = promtool("check", "rules", str(build / RULES_PATH))
        assert checked.returncode == 0, (example, checked.stdout, checked.stderr)
        assert f"SUCCESS: {len(ALERTS)} rules found" in checked.stdout


def test_promtool_unit_tests_fire_each_alert_only_when_it_should(
    example_builds: dict[str, Path], tmp_path: Path
) -> None:
    """prometheus_rules_test.yml: drift, gate, error rate, latency and down alerts fire after 5 minutes of their
    condition, for the failing instance only, and stay silent before, under normal values and for other jobs."""
    shutil.copy2(example_builds["fraud"] / RULES_PATH, tmp_path / "prometheus-rules.yml")
    shutil.copy2(HERE / "prometheus_rules_test.yml", tmp_path / "prometheus_rules_test.yml")
    tested = promtool("test", "rules", "prometheus_rules_test.yml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def _unit_test(rules: str, tests: list[dict[str, Any]], folder: Path) -> Any:
    (folder / "rules.yml").write_text(rules, encoding="utf-8")
    (folder / "test.yml").write_text(
        yaml.safe_dump({"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": tests}), encoding="utf-8"
    )
    return promtool("test", "rules", "test.yml", cwd=folder)


def _slow_and_failing(job: str) -> list[dict[str, str]]:
    """One instance answering 1.96% 5xx with a p99 of 248.5 ms, for 20 minutes."""
    sel = f'job={json.dumps(job)},instance="a:8000",route="/predict"'
    return [
        {"series": f'nb2prod_requests_total{{{sel},code="200"}}', "values": "0+100x20"},
        {"series": f'nb2prod_requests_total{{{sel},code="500"}}', "values": "0+2x20"},
        {"series": f'nb2prod_request_duration_seconds_bucket{{{sel},le="0.1"}}', "values": "0x20"},
        {"series": f'nb2prod_request_duration_seconds_bucket{{{sel},le="0.25"}}', "values": "0+60x20"},
        {"series": f'nb2prod_request_duration_seconds_bucket{{{sel},le="+Inf"}}', "values": "0+60x20"},
    ]


def test_config_moves_the_thresholds_and_the_for_duration(tmp_path: Path) -> None:
    """The same slow, failing instance alerts under the defaults, and not under a 300 ms budget and a 5% limit;
    alert_for 1m makes the alerts fire after one minute instead of five."""

    def alerts_at(ctx: MonitoringContext, minute: int, folder: Path) -> dict[str, list[str]]:
        folder.mkdir()
        rules = render_monitoring_files(ctx)[RULES_PATH]
        fired: dict[str, list[str]] = {}
        for alert in ("Nb2prodHighErrorRate", "Nb2prodLatencyOverBudget"):
            test = {
                "interval": "1m",
                "input_series": _slow_and_failing("fraud-detection"),
                "alert_rule_test": [{"eval_time": f"{minute}m", "alertname": alert, "exp_alerts": []}],
            }
            result = _unit_test(rules, [test], folder)
            fired[alert] = [] if result.returncode == 0 else ["fired"]
            if result.returncode != 0:
                report = result.stdout + result.stderr
                assert "got:" in report and 'instance="a:8000"' in report, report
        return fired

    default = MonitoringContext("fraud-detection", "0.1.0", "fraud-detection", "fraud_detection.ipynb")
    assert alerts_at(default, 10, tmp_path / "default") == {
        "Nb2prodHighErrorRate": ["fired"],
        "Nb2prodLatencyOverBudget": ["fired"],
    }
    assert alerts_at(default, 4, tmp_path / "default-early") == {
        "Nb2prodHighErrorRate": [],
        "Nb2prodLatencyOverBudget": [],
    }
    loose = MonitoringContext("fraud-detection", "0.1.0", "fraud-detection", max_error_rate=0.05, latency_budget_ms=300)
    assert alerts_at(loose, 10, tmp_path / "loose") == {"Nb2prodHighErrorRate": [], "Nb2prodLatencyOverBudget": []}
    quick = MonitoringContext("fraud-detection", "0.1.0", "fraud-detection", alert_for="1m")
    assert alerts_at(quick, 4, tmp_path / "quick") == {
        "Nb2prodHighErrorRate": ["fired"],
        "Nb2prodLatencyOverBudget": ["fired"],
    }


def test_bad_monitoring_settings_are_one_sentence_naming_the_key(tmp_path: Path) -> None:
    notebook = tmp_path / "fraud_detection.ipynb"
    shutil.copy2(REPO / "examples" / "fraud" / "fraud_detection.ipynb", notebook)
    cases = {
        "max_error_rate = 2": "monitoring.max_error_rate 2 must be a share between 0 and 1",
        "latency_budget_ms = -5": "monitoring.latency_budget_ms -5 must be a positive number of milliseconds",
        'alert_for = "five minutes"': "monitoring.alert_for 'five minutes' must be a Prometheus duration",
        'job = ""': "monitoring.job '' must be the name of a Prometheus scrape job",
        "latency_budget = 100": "monitoring.latency_budget is not a monitoring setting",
    }
    for line, expected in cases.items():
        (tmp_path / "pyproject.toml").write_text(f"[tool.nb2prod.monitoring]\n{line}\n", encoding="utf-8")
        with pytest.raises(InputError) as caught:
            load_config(notebook, {})
        assert expected in str(caught.value), str(caught.value)
        assert str(caught.value).count(".") >= 1 and "\n" not in str(caught.value)
        built = nb2prod("build", str(notebook), cwd=tmp_path)
        assert built.returncode == 2 and expected in built.stderr and "Traceback" not in built.stderr, built.stderr
    (tmp_path / "pyproject.toml").write_text(
        '[tool.nb2prod.monitoring]\nmax_error_rate = 0.05\nlatency_budget_ms = 250\nalert_for = "30s"\n',
        encoding="utf-8",
    )
    config = load_config(notebook, {})
    assert config.monitoring_setting("latency_budget_ms") == 250 and config.monitoring_setting("job") is None


def test_names_with_quotes_newlines_and_braces_cannot_break_either_file(tmp_path: Path) -> None:
    """A notebook file name and a scrape job holding quotes, a newline, `{{ }}`, `$` and a backslash: both files
    parse, promtool accepts the rules, and the alert carries both strings exactly as given."""
    notebook_name = 'fraud "q" {{ $labels.instance }}\n}}{{{ end }}.ipynb'
    job = 'prod "fraud"\n{{ $value }} \\ $job'
    build = build_example(
        tmp_path, "fraud", overrides={"name": "fraud-detection", "monitoring": {"job": job}}, name=notebook_name
    )
    checked = promtool("check", "rules", str(build / RULES_PATH))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    dashboard = json.loads((build / DASHBOARD_PATH).read_text(encoding="utf-8"))
    assert notebook_name in dashboard["description"] and job in dashboard["description"]
    assert {panel["title"] for panel in dashboard["panels"]} == PANELS
    # every dashboard query is valid PromQL: promtool reads them as recording rules
    recording = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"panel_query_{i}", "expr": e} for i, e in enumerate(dashboard_exprs(build))],
            }
        ]
    }
    (tmp_path / "dashboard-queries.yml").write_text(yaml.safe_dump(recording), encoding="utf-8")
    queries = promtool("check", "rules", str(tmp_path / "dashboard-queries.yml"))
    assert queries.returncode == 0, queries.stdout + queries.stderr
    # the rules select exactly that job and expand the notebook's name literally
    series = f'job={json.dumps(job)},instance="a:8000"'
    test = {
        "interval": "1m",
        "input_series": [
            {"series": f"up{{{series}}}", "values": "0x10"},
            {"series": f"nb2prod_drift_alarm{{{series}}}", "values": "1x10"},
            {"series": 'up{job="prod",instance="b:8000"}', "values": "0x10"},
        ],
        "alert_rule_test": [
            {
                "eval_time": "8m",
                "alertname": "Nb2prodServerDown",
                "exp_alerts": [
                    {
                        "exp_labels": {
                            "severity": "critical",
                            "package": "fraud-detection",
                            "job": job,
                            "instance": "a:8000",
                        },
                        "exp_annotations": {
                            "summary": "The server of fraud-detection at a:8000 does not answer Prometheus's scrapes",
                            "description": "Prometheus could not scrape /metrics; the server is down or unreachable.",
                            "notebook": notebook_name,
                        },
                    }
                ],
            }
        ],
        "promql_expr_test": [
            {"expr": expr, "eval_time": "8m", "exp_samples": [{"labels": "{}", "value": 1}]}
            for expr in dashboard_exprs(build)
            if expr.startswith("max(nb2prod_drift_alarm")
        ],
    }
    assert len(test["promql_expr_test"]) == 1
    tested = _unit_test((build / RULES_PATH).read_text(encoding="utf-8"), [test], tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr


# ---------------------------------------------------------------------------------------------
# A real server, and a real Prometheus scraping it
# ---------------------------------------------------------------------------------------------

DRIFT_WINDOW = 300


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    """The fraud example (rules built with alert_for 0s) trained small, promoted and served by `nb2prod serve`."""
    root = tmp_path_factory.mktemp("monitoring-served")
    notebook = root / "fraud_detection.ipynb"
    shutil.copy2(REPO / "examples" / "fraud" / "fraud_detection.ipynb", notebook)
    (root / "pyproject.toml").write_text('[tool.nb2prod.monitoring]\nalert_for = "0s"\n', encoding="utf-8")
    store = root / "runs"
    trained = nb2prod("train", str(notebook), "--engine", "python", "--store", str(store), *FAST, cwd=root)
    assert trained.returncode == 0, trained.stderr
    (run_id,) = [p.name for p in store.iterdir() if p.name[0].isdigit()]
    promoted = nb2prod("promote", run_id, "--store", str(store), cwd=root)
    assert promoted.returncode == 0, promoted.stderr
    build = root / "build" / "fraud-detection"
    server = Process(
        [sys.executable, "-m", "nb2prod", "serve", str(notebook), "--store", str(store), "--port", "0",
         "--drift-window", str(DRIFT_WINDOW)]
    )  # fmt: skip
    try:
        port = int(
            wait_until(
                lambda: next((m.group(1) for line in server.lines if (m := SERVING.search(line))), None),
                "serving on",
                server,
            )
        )
        wait_until(lambda: http_get(port, "/readyz")[0] == 200, "/readyz 200", server)
        yield {"root": root, "build": build, "port": port, "server": server, "src": build / "src"}
    finally:
        server.stop()


@pytest.fixture(scope="module")
def transactions(served):
    """`make(n, seed)`: rows of the notebook's own generator (the built package's core module)."""
    sys.path.insert(0, str(served["src"]))
    try:
        from fraud_detection.core import RAW_COLUMNS, make_transactions
    finally:
        sys.path.remove(str(served["src"]))

    def make(n: int, seed: int):
        return make_transactions(n, 0.02, seed)[RAW_COLUMNS]

    return make


def _records(frame) -> list[dict[str, Any]]:
    return json.loads(frame.to_json(orient="records"))


def send(port: int, rows: list[dict[str, Any]], batch: int = 50) -> None:
    for start in range(0, len(rows), batch):
        status, answer = http_post(port, "/predict", {"instances": rows[start : start + batch]})
        assert status == 200, answer


def test_dashboard_queries_only_metrics_a_real_server_exports(served, transactions) -> None:
    port = served["port"]
    send(port, _records(transactions(100, 1)))
    assert http_post(port, "/predict", {"instances": [{"amount": "not a number"}]})[0] == 422
    status, text = http_get(port, "/metrics")
    assert status == 200
    exported = exported_names(text)
    metadata = json.loads(http_get(port, "/metadata")[1])
    running = set((metadata.get("monitoring") or {}).keys())
    queried = {name for expr in dashboard_exprs(served["build"]) for name in metric_names(expr)}
    queried |= {name for rule in rules_of(served["build"]) for name in metric_names(rule["expr"])}
    assert {
        "nb2prod_requests_total",
        "nb2prod_request_errors_total",
        "nb2prod_request_duration_seconds_bucket",
    } <= queried
    assert {"nb2prod_drift_alarm", "nb2prod_drift_pvalue", "nb2prod_drift_psi", "nb2prod_live_metric"} <= queried
    from_monitors = {name for names in MONITOR_METRICS.values() for name in names}
    base = queried - from_monitors - {"up"}  # `up` is Prometheus's own
    assert base <= exported, f"queried but not exported: {sorted(base - exported)}"
    for monitor, names in MONITOR_METRICS.items():
        used = queried & names
        if monitor in running:  # a monitor that runs must export every name the files query
            assert used <= exported, f"{monitor}: queried but not exported: {sorted(used - exported)}"
    assert queried - {"up"} <= exported | from_monitors
    assert "drift" in running, f"the server runs no drift monitor (monitoring: {sorted(running)})"


def _prometheus_config(folder: Path, target_port: int, rules: Path, job: str) -> Path:
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}]}],
    }
    path = folder / "prometheus.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    checked = promtool("check", "config", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    return path


def _api(port: int, path: str) -> Any:
    status, text = http_get(port, path)
    assert status == 200, text
    answer = json.loads(text)
    assert answer["status"] == "success", answer
    return answer["data"]


def _alerts(port: int, name: str) -> list[dict[str, Any]]:
    return [a for a in _api(port, "/api/v1/alerts")["alerts"] if a["labels"]["alertname"] == name]


def _value(port: int, query: str) -> float | None:
    from urllib.parse import quote

    result = _api(port, "/api/v1/query?query=" + quote(query))["result"]
    return float(result[0]["value"][1]) if result else None


def _timestamp(text: str) -> datetime:
    """An RFC 3339 time as Prometheus writes it (nanoseconds, `Z` or an offset)."""
    match = re.fullmatch(r"(.+T[0-9:]{8})(?:\.([0-9]+))?(Z|[+-][0-9]{2}:[0-9]{2})", text)
    assert match, text
    fraction = (match.group(2) or "0")[:6].ljust(6, "0")
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    return datetime.fromisoformat(f"{match.group(1)}.{fraction}{zone}")


def _evaluated_after(port: int, moment: datetime) -> bool:
    """Every rule group has been evaluated since `moment`."""
    stamps = [_timestamp(group["lastEvaluation"]) for group in _api(port, "/api/v1/rules")["groups"]]
    return bool(stamps) and min(stamps) > moment


def test_real_prometheus_fires_the_drift_alert_under_shifted_traffic(served, transactions, tmp_path: Path) -> None:
    build, port = served["build"], served["port"]
    rules = rules_of(build)
    assert {rule["for"] for rule in rules} == {"0s"}
    prom_port = free_port()
    config = _prometheus_config(tmp_path, port, build / RULES_PATH, "fraud-detection")
    prometheus = Process(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"]
    )  # fmt: skip
    try:
        wait_until(lambda: _safe(lambda: http_get(prom_port, "/-/ready")[0] == 200), "Prometheus ready", prometheus)
        wait_until(
            lambda: _safe(lambda: _value(prom_port, 'up{job="fraud-detection"}') == 1), "the server scraped", prometheus
        )
        loaded = {rule["name"] for group in _api(prom_port, "/api/v1/rules")["groups"] for rule in group["rules"]}
        assert loaded == set(ALERTS)

        # normal traffic: a full window from the training distribution, scraped and evaluated -> no drift alert
        send(port, _records(transactions(DRIFT_WINDOW + 100, 21)))
        wait_until(
            lambda: _safe(lambda: (_value(prom_port, "nb2prod_drift_window_rows") or 0) >= DRIFT_WINDOW),
            "a full drift window scraped",
            prometheus,
        )
        seen = datetime.now().astimezone()
        wait_until(lambda: _safe(lambda: _evaluated_after(prom_port, seen)), "a rule evaluation", prometheus)
        assert _value(prom_port, "nb2prod_drift_alarm") == 0
        assert _alerts(prom_port, "Nb2prodDriftAlarm") == []
        assert _alerts(prom_port, "Nb2prodServerDown") == []

        # shifted traffic: larger amounts, card-not-present, night hours -> the drift alert fires
        shifted = transactions(DRIFT_WINDOW + 100, 22).copy()
        shifted["amount"] = shifted["amount"] * 1.6
        shifted["card_present"] = 0
        shifted["hour"] = (shifted["hour"] + 8) % 24
        send(port, _records(shifted))
        firing = wait_until(
            lambda: _safe(lambda: [a for a in _alerts(prom_port, "Nb2prodDriftAlarm") if a["state"] == "firing"]),
            "the drift alert firing",
            prometheus,
        )
        (alert,) = firing
        assert alert["labels"]["package"] == "fraud-detection"
        assert alert["labels"]["job"] == "fraud-detection"
        assert alert["annotations"]["notebook"] == "fraud_detection.ipynb"
        assert _value(prom_port, "nb2prod_drift_alarm") == 1
        assert _alerts(prom_port, "Nb2prodServerDown") == []
    finally:
        prometheus.stop()


def _safe(probe):
    """A probe that treats a refused connection (a server still starting) as 'not yet'."""
    try:
        return probe()
    except (ConnectionError, OSError):
        return None


def test_promql_and_alert_template_escapes_read_back_in_prometheus(tmp_path: Path) -> None:
    """nb2prod.escape.promql_str and prom_template_text on hostile text: promtool matches the series labelled
    with exactly that text, and expands the alert's label and annotation back to exactly that text."""
    from nb2prod import escape

    values = [
        'a"b',
        "a\\",
        "a\\x41",
        '\\"',
        "$job ${job} $value",
        "{{ $labels.instance }}",
        '{{ "{{" }}',
        "{{{{",
        "}}{{",
        "{{- /* c */ -}}",
        "{{ end }}",
        "new\nline",
        "tab\there",
        "cr\rlf",
        "\x00nul\x7fdel\x85",
        "\u2028\u2029",
        "ñ 中文 🎉",
        "key: value\n- item\n---",
        "# comment",
    ]
    rules = [
        {
            "alert": f"Hostile{i}",
            "expr": f"up{{job={escape.promql_str(value)}}} == 0",
            "labels": {"value": escape.prom_template_text(value)},
            "annotations": {"text": escape.prom_template_text(value)},
        }
        for i, value in enumerate(values)
    ]
    test = {
        "interval": "1m",
        "input_series": [
            {"series": f"up{{job={json.dumps(value, ensure_ascii=False)}}}", "values": "0x3"} for value in values
        ]
        + [{"series": 'up{job="unrelated"}', "values": "0x3"}],
        "alert_rule_test": [
            {
                "eval_time": "2m",
                "alertname": f"Hostile{i}",
                "exp_alerts": [{"exp_labels": {"job": value, "value": value}, "exp_annotations": {"text": value}}],
            }
            for i, value in enumerate(values)
        ],
    }
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "hostile", "rules": rules}]}), "utf-8")
    (tmp_path / "test.yml").write_text(yaml.safe_dump({"rule_files": ["rules.yml"], "tests": [test]}), "utf-8")
    tested = promtool("test", "rules", "test.yml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
