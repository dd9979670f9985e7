"""Explanations of served predictions: the fraud example's explain cell through the library, the
CLI, nb2prod's server and the package's own server, and SHAP's contributions for a model that
has no explain cell; POST /explain on real servers on loopback, off the predict path."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from nbtest_helpers import cell, write_notebook

from nb2prod import api
from nb2prod.runs.predicting import load_run
from nb2prod.runs.store import RunStore
from nb2prod.runs.trainer import train_target
from nb2prod.serve import ServeOptions, create_app

from .conftest import RISKY, TRANSACTION, Server, call
from .test_cli_serve import Process

ROWS = [TRANSACTION, RISKY, {**RISKY, "hour": 13, "card_present": 1}]
NO_SHAP = "import sys\nsys.modules['shap'] = None  # `import shap` fails, find_spec('shap') is None\n"


def fraud_features() -> list[str]:
    """FEATURES of the fraud package (imported with the run's code by load_run)."""
    return list(importlib.import_module("fraud_detection.core").FEATURES)


def added_up(explanation: dict) -> float:
    return explanation["base_value"] + sum(c["contribution"] for c in explanation["contributions"])


def test_fraud_explanations_name_features_and_add_up_to_the_score(fraud_runs) -> None:
    """TreeSHAP (shap is installed here): every feature of FEATURES once, largest first, with its
    value; base value plus contributions is the fraud probability predict returns."""
    loaded = load_run(RunStore(fraud_runs.store), "production")
    explanations = loaded.explain_rows(ROWS)
    scores = loaded.predict_rows(ROWS)
    features = fraud_features()
    assert len(explanations) == len(ROWS)
    for explanation, score in zip(explanations, scores):
        assert explanation["method"] == "shap-tree"
        named = [c["feature"] for c in explanation["contributions"]]
        assert sorted(named) == sorted(features)
        sizes = [abs(c["contribution"]) for c in explanation["contributions"]]
        assert sizes == sorted(sizes, reverse=True)
        assert abs(added_up(explanation) - score) < 1e-6 and abs(explanation["value"] - score) < 1e-9
        top = [c for c in explanation["contributions"] if c["contribution"] > 0][:3]
        assert [r.split(" = ")[0] for r in explanation["reasons"]] == [c["feature"] for c in top]
    risky = explanations[1]
    night = next(c for c in risky["contributions"] if c["feature"] == "is_night")
    assert night["value"] == 1.0  # RISKY is at 3 am: the feature's value, not the raw hour
    assert explanations[1]["value"] > explanations[0]["value"]


def test_without_shap_the_cell_uses_the_trees_path_contributions(fraud_runs) -> None:
    """The explain cell's documented fallback: also one contribution per feature, also adding up."""
    script = NO_SHAP + (
        "import json\nfrom nb2prod.runs.predicting import load_run\n"
        f"loaded = load_run({str(fraud_runs.store)!r}, 'production')\n"
        f"rows = {ROWS!r}\n"
        "print(json.dumps([loaded.explain_rows(rows), loaded.predict_rows(rows), 'shap' in sys.modules and sys.modules['shap'] is not None]))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    explanations, scores, imported = json.loads(done.stdout)
    assert imported is False
    features = fraud_features()
    for explanation, score in zip(explanations, scores):
        assert explanation["method"] == "tree-path"
        assert sorted(c["feature"] for c in explanation["contributions"]) == sorted(features)
        assert abs(added_up(explanation) - score) < 1e-6 and abs(explanation["value"] - score) < 1e-9
        assert len(explanation["reasons"]) <= 3


def test_the_explain_cell_answers_the_same_through_package_cli_and_servers(fraud_runs, tmp_path: Path) -> None:
    """LoadedRun.explain_rows, `nb2prod explain --format json`, POST /explain on nb2prod's server and
    on the package's own NAME-serve (its _runtime and _serve) give the same explanations."""
    library = load_run(RunStore(fraud_runs.store), "production").explain_rows(ROWS)
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    cli = subprocess.run(
        [sys.executable, "-m", "nb2prod", "explain", "production", str(rows), "--store", str(fraud_runs.store)]
        + ["--format", "json"],
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 0, cli.stderr
    printed = json.loads(cli.stdout)
    assert printed == {"run": fraud_runs.a, "explanations": library}
    table = subprocess.run(
        [sys.executable, "-m", "nb2prod", "explain", "production", str(rows), "--store", str(fraud_runs.store)],
        capture_output=True,
        text=True,
    )
    assert table.returncode == 0, table.stderr
    top = library[1]["contributions"][0]
    assert f"row 2: score {library[1]['value']:.6g}" in table.stdout
    assert top["feature"] in table.stdout.split("row 2:")[1].split("row 3:")[0]
    assert table.stdout.count("... 7 more") == 3  # --top 3 of the ten features
    with Server(create_app(fraud_runs.store, "production", ServeOptions())) as server:
        server.wait_ready()
        served = server.call("POST", "/explain", {"instances": ROWS})
    assert served.status == 200, served.text
    assert served.json["explanations"] == library
    assert served.json["run"] == fraud_runs.a
    assert served.json["model_sha256"] == RunStore(fraud_runs.store).get(fraud_runs.a).manifest.model.sha256
    package = Process(
        [sys.executable, "-m", "fraud_detection.serve", str(fraud_runs.store), "--port", "0"],
        env={**os.environ, "PYTHONPATH": str(fraud_runs.build / "src")},
    )
    try:
        port = package.port()
        package.wait_for(port, "/readyz", lambda a: a.status == 200)
        own = call(port, "POST", "/explain", {"instances": ROWS})
    finally:
        code = package.stop()
    assert code in (0, -signal.SIGTERM) and "Traceback" not in "".join(package.lines)
    assert own.status == 200, own.text
    assert own.json["explanations"] == library and own.json["run"] == fraud_runs.a


def test_post_explain_checks_the_contract_and_stays_off_the_predict_path(fraud_runs) -> None:
    """Same body and contract checks as /predict; /predict never calls explain, and its answers are
    the same before and after explanations."""
    with Server(create_app(fraud_runs.store, "production", ServeOptions(max_instances=5))) as server:
        server.wait_ready()
        runtime = server.app.state.runtime
        calls: list[int] = []
        explain = runtime.current.explain

        def counted(records):
            calls.append(len(records))
            return explain(records)

        runtime.current = dataclasses.replace(runtime.current, explain=counted)
        before = [server.call("POST", "/predict", {"instances": ROWS}).json["predictions"] for _ in range(3)]
        assert calls == []
        explained = server.call("POST", "/explain", {"instances": ROWS})
        assert explained.status == 200 and calls == [3]
        after = server.call("POST", "/predict", {"instances": ROWS}).json["predictions"]
        assert before == [after] * 3
        single = server.call("POST", "/explain", {"instances": RISKY})
        assert single.status == 200 and single.json["explanations"] == [explained.json["explanations"][1]]
        bad = server.call("POST", "/explain", {"instances": [{**TRANSACTION, "amount": "abc"}]})
        assert bad.status == 422 and (bad.json["field"], bad.json["rule"]) == ("amount", "not-a-number")
        missing = server.call("POST", "/explain", {"rows": ROWS})
        assert missing.status == 422 and missing.json["rule"] == "missing"
        many = server.call("POST", "/explain", {"instances": [TRANSACTION] * 6})
        assert many.status == 413 and many.json["rule"] == "batch-size"
        assert calls == [3, 1]  # refused requests never reach explain
        text = server.call("GET", "/metrics").text
        assert 'route="/explain"' in text
        assert "/explain" in server.call("GET", "/openapi.json").json["paths"]


# ---- a model without an explain cell: SHAP's contributions, or the sentence naming the extra ----

PLAIN = [
    ("n_rows = 200  # rows of synthetic data", ("parameters",)),
    (
        "import numpy as np\nimport pandas as pd\n"
        "from sklearn.ensemble import RandomForestClassifier\n\n\n"
        "def make_data(n):\n"
        "    rng = np.random.default_rng(0)\n"
        "    X = pd.DataFrame({'size': rng.normal(size=n), 'age': rng.normal(size=n), 'noise': rng.normal(size=n)})\n"
        "    return X, (X['size'] + 0.5 * X['age'] > 0).astype(int)",
        ("export",),
    ),
    (
        "X, y = make_data(n_rows)\nmodel = RandomForestClassifier(n_estimators=20, max_depth=4, random_state=0).fit(X, y)",
        ("train",),
    ),
]


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("plain")
    notebook = write_notebook(root / "plain_forest.ipynb", [cell(source, *tags) for source, tags in PLAIN])
    build = Path(api.build(notebook).output_dir)
    run = train_target(build, [], engine="python", store=root / "runs")
    assert run.manifest.succeeded
    return root / "runs", run.run_id


def test_a_forest_without_an_explain_cell_gets_shap_contributions_built_once(plain_run) -> None:
    store, run = plain_run
    loaded = load_run(RunStore(store), run)
    rows = [{"size": 1.2, "age": -0.3, "noise": 0.1}, {"size": -2.0, "age": 0.5, "noise": 0.0}]
    first = loaded.explain_rows(rows)
    runtime = sys.modules[loaded.explain_function.__module__.rsplit(".", 1)[0] + "._runtime"]
    explainer = runtime._EXPLAINERS[loaded.model][3]
    again = loaded.explain_rows(rows)
    assert runtime._EXPLAINERS[loaded.model][3] is explainer  # built on the first call, then cached
    assert first == again
    probabilities = loaded.model.predict_proba(loaded.shape(rows))[:, 1]
    for explanation, probability, row in zip(first, probabilities, rows):
        assert explanation["method"] == "shap-tree" and explanation["output"] == "probability of class 1"
        assert {c["feature"]: c["value"] for c in explanation["contributions"]} == row
        assert abs(added_up(explanation) - probability) < 1e-6
        assert abs(explanation["value"] - probability) < 1e-9
    assert first[0]["contributions"][0]["feature"] == "size"  # the feature the label depends on most


def test_without_shap_the_sentence_names_the_extra(plain_run, tmp_path: Path) -> None:
    """shap missing (blocked in the child processes): `nb2prod explain` exits 2 with one sentence,
    POST /explain answers 501 with it, and /predict is untouched."""
    store, run = plain_run
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps({"instances": [{"size": 1.0, "age": 0.0, "noise": 0.0}]}))
    launcher = NO_SHAP + "from nb2prod.cli import main\nmain(sys.argv[1:])\n"
    cli = subprocess.run(
        [sys.executable, "-c", launcher, "explain", run, str(rows), "--store", str(store)],
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 2 and cli.stdout == ""
    (line,) = [x for x in cli.stderr.strip().splitlines() if not x.startswith("store: ")]  # the store rule's line
    assert "pip install nb2prod[explain]" in line and line.startswith(f"error: {run}: explanations of this model")
    server = Process([sys.executable, "-c", launcher, "serve", str(store), "--model", run, "--port", "0"])
    try:
        port = server.port()
        server.wait_for(port, "/readyz", lambda a: a.status == 200)
        refused = call(port, "POST", "/explain", {"instances": [{"size": 1.0, "age": 0.0, "noise": 0.0}]})
        predicted = call(port, "POST", "/predict", {"instances": [{"size": 1.0, "age": 0.0, "noise": 0.0}]})
    finally:
        server.stop()
    assert refused.status == 501 and refused.json["rule"] == "explain-unavailable"
    assert "pip install nb2prod[explain]" in refused.json["error"]
    assert predicted.status == 200 and len(predicted.json["predictions"]) == 1
