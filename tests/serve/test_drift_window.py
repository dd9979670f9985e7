"""The live drift window's pure-Python statistics against scipy, and its counting against
`nb2prod drift`'s accumulator on the same rows."""

from __future__ import annotations

import math
import random

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from nb2prod.monitor.baseline import build_baseline
from nb2prod.monitor.drift import DriftAccumulator
from nb2prod.serve.shipped.drift_window import (
    Column,
    category_key,
    check_webhook,
    chi2_homogeneity,
    chi2_sf,
    gamma_q,
    ks_sf,
)


def test_kolmogorov_survival_matches_scipy_from_no_evidence_to_overwhelming() -> None:
    xs = [0.0, 1e-3, 0.05, 0.2, 0.5, 0.8, 0.99, 1.0, 1.01, 1.2, 1.5, 2.0, 3.0, 4.0, 5.5, 7.0]
    xs += [random.Random(1).uniform(0, 6) for _ in range(500)]
    for x in xs:
        expected = float(stats.kstwobign.sf(x))
        assert ks_sf(x) == pytest.approx(expected, rel=1e-9, abs=1e-15), x
    assert ks_sf(-1.0) == 1.0 and ks_sf(30.0) == 0.0


@pytest.mark.parametrize("dof", [1, 2, 3, 5, 9, 19, 50, 150])
def test_chi_squared_survival_matches_scipy_in_the_tails_and_the_body(dof: int) -> None:
    rng = random.Random(dof)
    points = [0.0, 1e-6, 0.5, dof - 1.0, dof, dof + 1.0, 2.0 * dof, 4.0 * dof + 40]
    points += [rng.uniform(0, 3 * dof + 30) for _ in range(300)]
    for x in points:
        x = max(0.0, x)
        expected = float(stats.chi2.sf(x, dof))
        assert chi2_sf(x, dof) == pytest.approx(expected, rel=1e-9, abs=1e-15), (x, dof)


def test_regularised_gamma_matches_scipy_for_fractional_shapes() -> None:
    from scipy import special

    rng = random.Random(7)
    for _ in range(1000):
        a, x = rng.uniform(0.05, 80), rng.uniform(0, 160)
        assert gamma_q(a, x) == pytest.approx(float(special.gammaincc(a, x)), rel=1e-9, abs=1e-15)


def test_homogeneity_test_matches_scipy_contingency_without_correction() -> None:
    rng = random.Random(3)
    for _ in range(300):
        k = rng.randint(2, 12)
        base = [rng.randint(1, 5000) for _ in range(k)]
        current = [rng.randint(0, 400) for _ in range(k)]
        if sum(current) == 0:
            current[0] = 1
        statistic, p = chi2_homogeneity(base, current)
        expected_statistic, expected_p, _, _ = stats.chi2_contingency([base, current], correction=False)
        assert statistic == pytest.approx(float(expected_statistic), rel=1e-9)
        assert p == pytest.approx(float(expected_p), rel=1e-8, abs=1e-15)


def test_window_counts_and_statistics_equal_the_offline_accumulator() -> None:
    rng = np.random.default_rng(11)
    train = pd.DataFrame(
        {
            "x": rng.normal(0, 1, 5000),
            "kind": rng.choice(["a", "b", "c"], 5000),
            "flag": rng.integers(0, 2, 5000),
        }
    )
    baseline = build_baseline(train, None, rng.uniform(0, 1, 5000), "train", None)
    rows = pd.DataFrame(
        {
            "x": rng.normal(0.3, 1.2, 400),
            "kind": rng.choice(["a", "b", "c", "d"], 400),
            "flag": rng.integers(0, 2, 400).astype(float),
        }
    )
    rows.loc[::37, "x"] = np.nan  # missing values count as missing on both sides
    scores = pd.Series(rng.uniform(0, 1, 400) ** 1.5, name="score")
    offline = DriftAccumulator(baseline)
    offline.add(rows, scores)
    report = {c.name: c for c in offline.report("r").columns}
    from dataclasses import asdict

    columns = [Column("input", asdict(p)) for p in baseline.inputs] + [Column("score", asdict(baseline.score))]
    for record, score in zip(rows.to_dict(orient="records"), scores):
        for column in columns:
            value = score if column.section == "score" else record[column.name]
            column.add(column.key(None if isinstance(value, float) and math.isnan(value) else value))
    tests = sum(1 for c in columns if c.tested)
    for column in columns:
        live, expected = column.compare(tests, 0.001), report[column.name]
        assert live["test"] == expected.test and live["rows"] == expected.n_current
        assert live["statistic"] == pytest.approx(expected.statistic, rel=1e-12)
        assert live["pvalue"] == pytest.approx(expected.p_adjusted, rel=1e-9, abs=1e-15)
        assert live["psi"] == pytest.approx(expected.psi, rel=1e-12)
        assert live["drifted"] == expected.drifted
    assert report["x"].drifted and report["kind"].drifted  # the shift is real, so the check can fail


def test_removing_rows_restores_the_counts() -> None:
    column = Column("input", {"name": "c", "kind": "categorical", "count": 3, "missing": 0, "categories": {"1": 3}})
    for value in (1, 1.0, "1", 2, None):
        column.add(column.key(value))
    assert column.categories == {"1": 3, "2": 1} and column.valid == 4
    for value in (1, 2):
        column.remove(column.key(value))
    assert column.categories == {"1": 2} and column.valid == 2
    assert category_key(float("nan")) is None and category_key(True) == "True"


@pytest.mark.parametrize(
    "url", ["ftp://example.org/x", "file:///etc/passwd", "localhost:9000", "http://", "hooks", "http://h:port/x"]
)
def test_a_webhook_must_be_an_http_url_with_a_host(url: str) -> None:
    with pytest.raises(ValueError, match="expected an http:// or https:// URL"):
        check_webhook(url)
    assert check_webhook("https://hooks.example.org/drift?k=1") == "https://hooks.example.org/drift?k=1"


def test_a_failed_webhook_call_is_logged_and_tried_once_more_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    import json
    import socket
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from nb2prod.serve.shipped.drift_window import Webhook

    caplog.set_level("WARNING", logger="nb2prod.serve")
    answers = [500, 204]  # the receiver fails once, then accepts
    bodies: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            bodies.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(answers.pop(0))
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        dead_port = closed.getsockname()[1]
    try:
        retried = Webhook(f"http://127.0.0.1:{receiver.server_address[1]}/hook")
        retried.post({"alarm": "drift", "state": "firing"})
        dead = Webhook(f"http://127.0.0.1:{dead_port}/hook", timeout=2)
        dead.post({"alarm": "drift", "state": "cleared"})
        deadline = time.monotonic() + 60
        while retried.sent + retried.failed < 1 or dead.sent + dead.failed < 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        receiver.shutdown()
        receiver.server_close()
    assert (retried.sent, retried.failed, dead.sent, dead.failed) == (1, 0, 0, 1)
    assert bodies == [{"alarm": "drift", "state": "firing"}] * 2
    messages = [r.getMessage() for r in caplog.records]
    assert sum("firing call failed (HTTPError" in m and "trying once more" in m for m in messages) == 1
    assert sum("cleared call failed" in m and "given up" in m for m in messages) == 1
    assert sum("cleared call failed" in m and "trying once more" in m for m in messages) == 1
