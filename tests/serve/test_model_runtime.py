"""The model runtime's pieces that need no server: n_jobs, metrics text, v2 tensors."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from nb2prod.serve.shipped.app import HTTPProblem, v2_output, v2_records
from nb2prod.serve.shipped.metrics import Metrics
from nb2prod.serve.shipped.model import limit_n_jobs


def test_n_jobs_is_set_to_1_and_reported_without_changing_predictions():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(200, 4)), rng.integers(0, 2, 200)
    model = make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=20, n_jobs=-1, random_state=0)).fit(
        X, y
    )
    before = model.predict_proba(X)
    changed = limit_n_jobs(model)
    assert changed == {"randomforestclassifier__n_jobs": -1}
    assert model.get_params()["randomforestclassifier__n_jobs"] == 1
    assert np.array_equal(model.predict_proba(X), before)
    assert limit_n_jobs(model) == {} and limit_n_jobs(object()) == {}


def test_metrics_text_parses_and_escapes_labels():
    metrics = Metrics()
    metrics.requests.inc((("route", '/odd"\\\nroute'), ("code", "200")), 2)
    metrics.latency.observe(0.003, (("route", "/predict"),))
    metrics.latency.observe(7.0, (("route", "/predict"),))
    metrics.collectors.append(lambda: "# TYPE extra_gauge gauge\nextra_gauge 3")
    families = {f.name: f for f in text_string_to_metric_families(metrics.render(dropped=4, written=9))}
    assert families["nb2prod_requests"].samples[0].labels["route"] == '/odd"\\\nroute'
    buckets = {
        s.labels["le"]: s.value
        for s in families["nb2prod_request_duration_seconds"].samples
        if s.name.endswith("_bucket")
    }
    assert buckets["0.0025"] == 0 and buckets["0.005"] == 1 and buckets["5"] == 1 and buckets["+Inf"] == 2
    assert families["nb2prod_prediction_log_dropped"].samples[0].value == 4
    assert families["extra_gauge"].samples[0].value == 3


def test_v2_tensors_become_records_and_outputs_become_tensors():
    body = {"inputs": [{"name": "a", "shape": [2], "datatype": "FP64", "data": [1.0, 2.0]},
                       {"name": "b", "shape": [2, 1], "datatype": "BYTES", "data": [["x"], ["y"]]}]}  # fmt: skip
    assert v2_records(body) == [{"a": 1.0, "b": "x"}, {"a": 2.0, "b": "y"}]
    with pytest.raises(HTTPProblem) as mismatch:
        v2_records({"inputs": [{"name": "a", "shape": [3], "data": [1.0]}]})
    assert mismatch.value.status == 422 and mismatch.value.field == "a"
    with pytest.raises(HTTPProblem):
        v2_records({"inputs": [{"name": "a", "data": [1]}, {"name": "b", "data": [1, 2]}]})
    assert v2_output("predict", [0.5, 1.0]) == {"name": "predict", "shape": [2], "datatype": "FP64", "data": [0.5, 1.0]}
    assert v2_output("predict", [[0.1, 0.9], [0.8, 0.2]])["shape"] == [2, 2]
    assert v2_output("predict", [1, 0])["datatype"] == "INT64" and v2_output("predict", ["a"])["datatype"] == "BYTES"
