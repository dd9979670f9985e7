"""A real server on loopback: predictions, the contract's 422s, health, OpenAPI, metrics, v2, token."""

from __future__ import annotations

import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from nb2prod.runs.predicting import load_run
from nb2prod.serve import ServeOptions, create_app

from .conftest import RISKY, TRANSACTION, Server

STRICT = ServeOptions(strict_ranges=True, model_name="fraud-detection")


@pytest.fixture(scope="module")
def server(fraud_runs):
    options = ServeOptions(model_name="fraud-detection", max_instances=50, max_body_bytes=20_000)
    with Server(create_app(fraud_runs.store, "production", options)) as running:
        running.wait_ready()
        yield running


def test_predict_one_and_many(server, fraud_runs):
    one = server.call("POST", "/predict", {"instances": [TRANSACTION]})
    assert one.status == 200, one.text
    body = one.json
    assert len(body["predictions"]) == 1 and 0.0 <= body["predictions"][0] <= 1.0
    assert body["model"]["run"] == fraud_runs.a and body["model"]["alias"] == "production"
    assert len(body["model"]["sha256"]) == 64
    assert one.headers["x-request-id"] == body["request_id"] and body["ids"] == [f"{body['request_id']}-0"]

    many = server.call("POST", "/predict", {"instances": [TRANSACTION, RISKY, TRANSACTION]})
    assert many.status == 200
    assert len(many.json["predictions"]) == 3 and len(set(many.json["ids"])) == 3
    assert many.json["predictions"][0] == many.json["predictions"][2] == body["predictions"][0]
    assert many.json["request_id"] != body["request_id"]


def test_served_scores_equal_the_in_process_ones(server, fraud_runs):
    """The same exported build_features and predict: over HTTP, through `nb2prod predict`, and called directly."""
    loaded = load_run(fraud_runs.store, fraud_runs.a)
    rows = [dict(r) for r in loaded.run.manifest.predict_inputs.examples] + [TRANSACTION, RISKY]
    served = server.call("POST", "/predict", {"instances": rows}).json["predictions"]
    assert served == loaded.predict_rows(rows)
    direct = loaded.predict_function(loaded.model, pd.DataFrame(rows))
    assert served == [float(p) for p in direct]
    assert len(set(served)) > 1  # the rows get different scores: the comparison can fail


@pytest.mark.parametrize(
    "change, field, rule",
    [
        ({"amount": "abc"}, "amount", "not-a-number"),
        ({"hour": "14"}, "hour", "type"),
        ({"hour": 3.5}, "hour", "type"),
        ({"card_present": True}, "card_present", "type"),
        ({"amount": None}, "amount", "null"),
        ({"channel": "web"}, "channel", "unknown"),
        ({"velocity_1h": [1]}, "velocity_1h", "type"),
    ],
)
def test_each_contract_rule_gives_its_422(server, change, field, rule):
    answer = server.call("POST", "/predict", {"instances": [TRANSACTION, {**TRANSACTION, **change}]})
    assert answer.status == 422, answer.text
    body = answer.json
    assert (body["field"], body["rule"], body["row"]) == (field, rule, 1)
    assert field in body["error"] and "Traceback" not in answer.text


def test_a_missing_field_gives_422(server):
    record = {k: v for k, v in TRANSACTION.items() if k != "distance_from_home"}
    body = server.call("POST", "/predict", {"instances": [record]}).json
    assert (body["field"], body["rule"]) == ("distance_from_home", "missing")


def test_out_of_range_is_a_warning_by_default_and_an_error_when_strict(server, fraud_runs):
    odd = {**TRANSACTION, "amount": 1e9, "merchant_category": 42}
    answer = server.call("POST", "/predict", {"instances": [odd]})
    assert answer.status == 200
    assert "amount: range" in answer.headers["x-contract-warnings"]
    assert "merchant_category: category" in answer.headers["x-contract-warnings"]
    assert 'nb2prod_contract_warnings_total{field="amount",rule="range"}' in server.call("GET", "/metrics").text
    with Server(create_app(fraud_runs.store, "production", STRICT)) as strict:
        strict.wait_ready()
        refused = strict.call("POST", "/predict", {"instances": [odd]})
        assert refused.status == 422 and (refused.json["field"], refused.json["rule"]) == ("amount", "range")
        assert strict.call("POST", "/predict", {"instances": [TRANSACTION]}).status == 200


def test_malformed_too_large_and_wrong_shape(server):
    bad = server.call("POST", "/predict", raw=b'{"instances": [')
    assert bad.status == 400 and bad.json["rule"] == "json" and set(bad.json) == {"error", "field", "rule"}
    big = server.call("POST", "/predict", raw=b'{"instances": [' + b" " * 30_000 + b"]}")
    assert big.status == 413 and big.json["rule"] == "body-size"
    many = server.call("POST", "/predict", {"instances": [TRANSACTION] * 51})
    assert many.status == 413 and (many.json["field"], many.json["rule"]) == ("instances", "batch-size")
    shape = server.call("POST", "/predict", {"rows": [TRANSACTION]})
    assert shape.status == 422 and shape.json["field"] == "instances"
    lost = server.call("GET", "/nowhere")
    assert lost.status == 404 and lost.json["rule"] == "not-found"


def test_health_metadata_and_openapi(server, fraud_runs):
    assert server.call("GET", "/healthz").json == {"status": "alive"}
    assert server.call("GET", "/readyz").json["run"] == fraud_runs.a
    meta = server.call("GET", "/metadata").json
    assert meta["run"] == fraud_runs.a and meta["alias"] == "production" and meta["ready"] is True
    assert len(meta["model_sha256"]) == 64 and len(meta["code_sha256"]) == 64 and meta["reloads"] == 0
    assert meta["n_jobs"]["set_to_1"] == []  # the notebook already fits with n_jobs=1
    names = [f["name"] for f in meta["contract"]["fields"]]
    assert names == ["amount", "hour", "merchant_category", "distance_from_home", "card_present", "velocity_1h"]
    spec = server.call("GET", "/openapi.json").json
    record = spec["components"]["schemas"]["Record"]
    assert list(record["properties"]) == names and record["additionalProperties"] is False
    assert record["properties"]["amount"]["type"] == "number" and record["properties"]["hour"]["type"] == "integer"
    assert set(record["required"]) == set(names)
    assert {"/predict", "/healthz", "/readyz", "/metadata", "/metrics", "/v2/models/{model_name}/infer"} <= set(
        spec["paths"]
    )
    docs = server.call("GET", "/docs")
    assert docs.status == 200 and "swagger" in docs.text.lower()


def test_prometheus_metrics_count_requests_errors_and_latency(server):
    before = _samples(server.call("GET", "/metrics").text)
    for _ in range(3):
        assert server.call("POST", "/predict", {"instances": [TRANSACTION]}).status == 200
    assert server.call("POST", "/predict", {"instances": [{**TRANSACTION, "amount": "x"}]}).status == 422
    after = _samples(server.call("GET", "/metrics").text)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew("nb2prod_requests_total", route="/predict", code="200") == 3
    assert grew("nb2prod_requests_total", route="/predict", code="422") == 1
    assert grew("nb2prod_request_errors_total", route="/predict", code="422", rule="not-a-number") == 1
    assert grew("nb2prod_request_duration_seconds_count", route="/predict") == 4
    assert grew("nb2prod_request_duration_seconds_sum", route="/predict") > 0
    assert after[("nb2prod_ready", ())] == 1
    info = [k for k in after if k[0] == "nb2prod_model_info"]
    assert len(info) == 1 and dict(info[0][1])["alias"] == "production"


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_open_inference_v2_routes(server):
    """A v2 client's requests, as KServe's and Seldon's clients send them (plain HTTP JSON)."""
    assert server.call("GET", "/v2/health/live").json == {"live": True}
    assert server.call("GET", "/v2/health/ready").json == {"ready": True}
    assert server.call("GET", "/v2/models/fraud-detection/ready").json["ready"] is True
    meta = server.call("GET", "/v2/models/fraud-detection").json
    assert meta["name"] == "fraud-detection" and meta["platform"] == "nb2prod"
    assert {i["name"]: i["datatype"] for i in meta["inputs"]}["amount"] == "FP64"
    rows = [TRANSACTION, RISKY]
    types = {"amount": "FP64", "distance_from_home": "FP64"}
    request = {
        "id": "client-42",
        "inputs": [
            {"name": n, "shape": [2, 1], "datatype": types.get(n, "INT64"), "data": [[r[n]] for r in rows]}
            for n in TRANSACTION
        ],
    }
    answer = server.call("POST", "/v2/models/fraud-detection/infer", request)
    assert answer.status == 200, answer.text
    body = answer.json
    assert body["model_name"] == "fraud-detection" and body["id"] == "client-42"
    output = body["outputs"][0]
    assert output["shape"] == [2] and output["datatype"] == "FP64"
    assert output["data"] == server.call("POST", "/predict", {"instances": rows}).json["predictions"]
    versioned = server.call("POST", f"/v2/models/fraud-detection/versions/{body['model_version']}/infer", request)
    assert versioned.json["outputs"] == body["outputs"]
    wrong = server.call("POST", "/v2/models/other/infer", request)
    assert wrong.status == 404 and "fraud-detection" in wrong.json["error"]
    bad = dict(request, inputs=[dict(request["inputs"][0], data=[["abc"], [1.0]])] + request["inputs"][1:])
    refused = server.call("POST", "/v2/models/fraud-detection/infer", bad)
    assert refused.status == 422 and (refused.json["field"], refused.json["rule"]) == ("amount", "not-a-number")


def test_bearer_token_guards_all_but_health(fraud_runs, monkeypatch):
    monkeypatch.setenv("SERVE_TEST_TOKEN", "s3cret-token")
    options = ServeOptions(token_env="SERVE_TEST_TOKEN", model_name="fraud-detection")
    with Server(create_app(fraud_runs.store, "production", options)) as guarded:
        guarded.wait_ready()
        for method, path, body in [
            ("POST", "/predict", {"instances": [TRANSACTION]}),
            ("GET", "/metadata", None),
            ("GET", "/metrics", None),
            ("GET", "/v2/models/fraud-detection", None),
        ]:
            refused = guarded.call(method, path, body)
            assert refused.status == 401 and refused.json["rule"] == "auth", path
            wrong = guarded.call(method, path, body, {"authorization": "Bearer nope"})
            assert wrong.status == 401
            ok = guarded.call(method, path, body, {"authorization": "Bearer s3cret-token"})
            assert ok.status == 200, (path, ok.text)
        assert guarded.call("GET", "/healthz").status == 200
        assert guarded.call("GET", "/readyz").status == 200
        assert guarded.call("GET", "/v2/health/ready").status == 200


def test_missing_token_variable_is_refused(fraud_runs, monkeypatch):
    from nb2prod.serve import ServeError

    monkeypatch.delenv("SERVE_TEST_ABSENT", raising=False)
    with pytest.raises(ServeError, match="SERVE_TEST_ABSENT"):
        create_app(fraud_runs.store, "production", ServeOptions(token_env="SERVE_TEST_ABSENT"))


def test_not_ready_until_the_target_exists(fraud_runs, store_copy):
    """/healthz at once, 503 on /readyz and /predict until the alias names a run, then ready."""
    from nb2prod.runs.aliases import AliasStore
    from nb2prod.runs.store import RunStore

    options = ServeOptions(wait=True, reload_interval=0.2)
    with Server(create_app(store_copy, "staging", options)) as waiting:
        assert waiting.call("GET", "/healthz").status == 200
        ready = waiting.call("GET", "/readyz")
        assert ready.status == 503 and ready.json["rule"] == "not-ready" and "staging" in ready.json["error"]
        refused = waiting.call("POST", "/predict", {"instances": [TRANSACTION]})
        assert refused.status == 503 and refused.json["rule"] == "not-ready"
        assert waiting.call("GET", "/v2/health/ready").status == 503
        AliasStore(RunStore(store_copy)).promote(fraud_runs.b, "staging")
        waiting.wait_ready(120)
        answer = waiting.call("POST", "/predict", {"instances": [TRANSACTION]})
        assert answer.status == 200 and answer.json["model"]["run"] == fraud_runs.b


def test_batching_merges_concurrent_requests_with_the_same_answers(fraud_runs):
    import threading

    options = ServeOptions(batching=True, batch_window_ms=2.0)
    with Server(create_app(fraud_runs.store, "production", options)) as batched:
        batched.wait_ready()
        expected = batched.call("POST", "/predict", {"instances": [TRANSACTION, RISKY]}).json["predictions"]
        answers: list = []

        def client() -> None:
            for i in range(10):
                rows = [TRANSACTION, RISKY] if i % 2 == 0 else [RISKY]
                answers.append((rows, batched.call("POST", "/predict", {"instances": rows})))

        threads = [threading.Thread(target=client) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(answers) == 160 and all(a.status == 200 for _, a in answers)
        for rows, answer in answers:
            assert answer.json["predictions"] == (expected if len(rows) == 2 else expected[1:])
        samples = _samples(batched.call("GET", "/metrics").text)
        calls = samples[("nb2prod_batch_rows_count", ())]
        rows_predicted = samples[("nb2prod_batch_rows_sum", ())]
        assert rows_predicted >= 240 and calls < 161 - 20  # concurrent requests shared predict calls
        assert batched.call("GET", "/metadata").json["batching"]["enabled"] is True
