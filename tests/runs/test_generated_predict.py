"""The generated package's predict loads a model by run folder, run id (or prefix) or alias of
an nb2prod run store, checks its sha256 first, and refuses a tampered file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from nbtest_helpers import EXAMPLES


def run(
    *args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def test_generated_predict_by_alias_and_run_id(tmp_path: Path) -> None:
    shutil.copy(EXAMPLES / "churn" / "churn.ipynb", tmp_path / "churn.ipynb")
    store = tmp_path / "runs"
    trained = run(
        sys.executable,
        "-m",
        "nb2prod",
        "train",
        tmp_path / "churn.ipynb",
        "--engine",
        "python",
        "--store",
        store,
        "--format",
        "json",
    )
    assert trained.returncode == 0, trained.stderr
    run_id = json.loads(trained.stdout)["run_id"]
    assert run(sys.executable, "-m", "nb2prod", "promote", run_id, "--store", store).returncode == 0

    build = tmp_path / "build" / "churn"
    assert "skops==" in (build / "pyproject.toml").read_text()  # scikit-learn models are saved with skops
    inputs = tmp_path / "customers.jsonl"
    rows = [
        {"tenure_months": 2, "monthly_charges": 110.0, "support_calls": 6, "contract": 0},
        {"tenure_months": 70, "monthly_charges": 25.0, "support_calls": 0, "contract": 2},
    ]
    inputs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    env = {**os.environ, "PYTHONPATH": str(build / "src")}
    by_alias = run(sys.executable, "-m", "churn.predict", store / "production", inputs, env=env)
    by_prefix = run(sys.executable, "-m", "churn.predict", store / run_id[:18], inputs, env=env)
    assert by_alias.returncode == 0, by_alias.stderr
    scores = [json.loads(line) for line in by_alias.stdout.splitlines()]
    assert len(scores) == 2 and scores[0] > scores[1]
    assert by_prefix.stdout == by_alias.stdout
    reference = run(sys.executable, "-m", "nb2prod", "predict", "production", inputs, "--store", store)
    assert [round(json.loads(v), 9) for v in reference.stdout.splitlines()] == [round(v, 9) for v in scores]

    # the package's predict verifies the whole run, as nb2prod does: an added file is refused
    (store / run_id).chmod(0o755)
    (store / run_id / "model").chmod(0o755)
    extra = store / run_id / "model" / "extra.joblib"
    extra.write_bytes(b"not recorded")
    added = run(sys.executable, "-m", "churn.predict", store / "production", inputs, env=env)
    assert added.returncode == 2 and "model/extra.joblib was added" in added.stderr and added.stdout == ""
    extra.unlink()
    # an alias leading out of the store is refused (its run_id is not a run id)
    (store / "aliases" / "escape.json").write_text(json.dumps({"alias": "escape", "run_id": f"../runs/{run_id}"}))
    escape = run(sys.executable, "-m", "churn.predict", store / "escape", inputs, env=env)
    assert escape.returncode == 2 and "is not a run id" in escape.stderr
    # with a signing key configured, the unsigned run is refused
    unsigned = run(
        sys.executable, "-m", "churn.predict", store / "production", inputs, env={**env, "NB2PROD_SIGNING_KEY": "k"}
    )
    assert unsigned.returncode == 2 and "run.json.sig is missing" in unsigned.stderr

    model = store / run_id / json.loads((store / run_id / "run.json").read_text())["model"]["file"]
    model.chmod(0o644)
    model.write_bytes(model.read_bytes() + b"tampered")
    refused = run(sys.executable, "-m", "churn.predict", store / "production", inputs, env=env)
    assert refused.returncode == 2 and "sha256" in refused.stderr and refused.stdout == ""
