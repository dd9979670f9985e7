"""Hot reload under continuous requests: promote and rollback swap models with no failed request;
a target that fails verification is refused while the old model keeps serving."""

from __future__ import annotations

import json
import time

from nb2prod.runs.aliases import AliasStore
from nb2prod.runs.store import RunStore
from nb2prod.serve import ServeOptions, create_app

from .conftest import TRANSACTION, LoadGenerator, Server

SWITCH_BOUND_S = 30.0  # generous: loading imports the run's code and verifies it on a busy machine


def test_promote_and_rollback_under_load_fail_no_request(fraud_runs, store_copy):
    aliases = AliasStore(RunStore(store_copy))
    options = ServeOptions(reload_interval=1.0)
    with Server(create_app(store_copy, "production", options)) as server:
        server.wait_ready()
        with LoadGenerator(server.port, {"instances": [TRANSACTION]}) as load:
            time.sleep(0.5)
            promoted = time.monotonic()
            aliases.promote(fraud_runs.b, "production")
            switch = load.wait_for_run(fraud_runs.b, promoted, SWITCH_BOUND_S)
            time.sleep(0.5)
            rolled = time.monotonic()
            aliases.rollback("production")
            back = load.wait_for_run(fraud_runs.a, rolled, SWITCH_BOUND_S)
            time.sleep(0.5)
        statuses = [status for _, status, _ in load.results]
        assert len(statuses) > 20 and set(statuses) == {200}, f"failed requests: {statuses.count(-1)}"
        assert switch < SWITCH_BOUND_S and back < SWITCH_BOUND_S
        # after each switch every answer comes from the new model: no flapping back
        after_promote = [run for moment, _, run in load.results if promoted + switch <= moment < rolled]
        assert after_promote and set(after_promote) == {fraud_runs.b}
        after_rollback = [run for moment, _, run in load.results if moment >= rolled + back]
        assert after_rollback and set(after_rollback) == {fraud_runs.a}
        meta = server.call("GET", "/metadata").json
        assert meta["reloads"] == 2 and meta["last_reload"]["from"] == fraud_runs.b
        assert meta["last_reload"]["to"] == fraud_runs.a and meta["run"] == fraud_runs.a
        assert "nb2prod_model_reloads_total 2" in server.call("GET", "/metrics").text


def test_a_tampered_target_is_refused_and_the_old_model_keeps_serving(fraud_runs, store_copy, caplog):
    store = RunStore(store_copy)
    model_file = store_copy / fraud_runs.b / store.load(fraud_runs.b).manifest.model.file
    with Server(create_app(store_copy, "production", ServeOptions(reload_interval=0.5))) as server:
        server.wait_ready()
        with LoadGenerator(server.port, {"instances": [TRANSACTION]}) as load:
            # the alias is moved onto a run whose model file changed after it was recorded
            model_file.write_bytes(model_file.read_bytes() + b"tampered")
            alias_file = store_copy / "aliases" / "production.json"
            state = json.loads(alias_file.read_text())
            state["run_id"] = fraud_runs.b
            alias_file.write_text(json.dumps(state))
            deadline = time.monotonic() + SWITCH_BOUND_S
            meta = server.call("GET", "/metadata").json
            while meta["reload_error"] is None and time.monotonic() < deadline:
                time.sleep(0.1)
                meta = server.call("GET", "/metadata").json
            time.sleep(1.0)
        assert meta["reload_error"] is not None, "the tampered run was not noticed"
        assert meta["reload_error"]["run"] == fraud_runs.b and meta["reload_error"]["serving"] == fraud_runs.a
        assert "sha256" in meta["reload_error"]["error"]
        assert meta["run"] == fraud_runs.a and meta["reloads"] == 0
        assert {status for _, status, _ in load.results} == {200}
        assert {run for _, _, run in load.results} == {fraud_runs.a}
        metrics = server.call("GET", "/metrics").text
        assert 'nb2prod_model_reload_failures_total{reason="load"} 1' in metrics
        assert any("reload refused" in r.getMessage() and fraud_runs.b in r.getMessage() for r in caplog.records)
