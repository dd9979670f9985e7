"""Optional signing: with a key configured, runs are signed at commit (run.json.sig, HMAC-SHA256 of
run.json, which records every file's sha256) and unsigned or wrongly signed runs are refused;
joblib (pickle) models load only from signed runs or with an explicit trust flag."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nb2prod import runtime
from nb2prod.errors import InputError
from nb2prod.runs.aliases import AliasStore
from nb2prod.runs.errors import IntegrityError
from nb2prod.runs.predicting import load_run
from nb2prod.runs.signing import resolve_signing_key
from nb2prod.runs.store import RunStore

from .conftest import record_run, small_data

KEY = b"a signing key of the team"


def nb2prod(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "nb2prod", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(autouse=True)
def no_key_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NB2PROD_SIGNING_KEY", raising=False)
    monkeypatch.delenv("NB2PROD_SIGNING_KEY_FILE", raising=False)


def rows() -> list[dict[str, float]]:
    X, _ = small_data()
    return X.head(2).to_dict(orient="records")


def test_a_signed_run_verifies_and_its_signature_covers_run_json(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs", signing_key=KEY)
    run = record_run(store, with_code=True)
    signature = json.loads((run.path / "run.json.sig").read_text())
    assert signature["algorithm"] == "hmac-sha256" and signature["key_id"] == runtime.signing_key_id(KEY)
    assert store.problems(run) == [] and "run.json.sig" not in run.manifest.files
    AliasStore(store).promote(run.run_id)
    assert len(load_run(store, "production").predict_rows(rows())) == 2
    assert runtime.verify_run(run.path, KEY)["run_id"] == run.run_id


def test_with_a_key_unsigned_and_wrongly_signed_runs_are_refused(tmp_path: Path) -> None:
    unsigned = record_run(RunStore(tmp_path / "runs"), with_code=True)
    other = record_run(RunStore(tmp_path / "runs", signing_key=b"another key"), with_code=True)
    store = RunStore(tmp_path / "runs", signing_key=KEY)
    for run, why in ((unsigned, "run.json.sig is missing"), (other, "run.json.sig was made with another key")):
        with pytest.raises(IntegrityError, match=f"run {run.run_id} failed verification: {why}"):
            store.verify(run)
        with pytest.raises(IntegrityError, match=why):
            AliasStore(store).promote(run.run_id)
        with pytest.raises(IntegrityError, match=why):
            load_run(store, run.run_id)
        with pytest.raises(runtime.ModelIntegrityError, match=why):
            runtime.verify_run(run.path, KEY)
    assert AliasStore(store).state("production") is None


def test_rewriting_run_json_breaks_the_signature(tmp_path: Path) -> None:
    """Switching the model to a joblib file and updating every sha256 is what signing stops."""
    store = RunStore(tmp_path / "runs", signing_key=KEY)
    run = record_run(store, with_code=True)
    run.path.chmod(0o755)
    record = json.loads((run.path / "run.json").read_text())
    record["model"]["format"] = "joblib"
    (run.path / "run.json").chmod(0o644)
    (run.path / "run.json").write_text(json.dumps(record))
    with pytest.raises(IntegrityError, match="run.json.sig does not match run.json"):
        load_run(store, run.run_id)


def test_joblib_models_load_only_from_signed_runs_or_when_trusted(tmp_path: Path, monkeypatch) -> None:
    plain = RunStore(tmp_path / "plain")
    run = record_run(plain, with_code=True, model_format="joblib")
    with pytest.raises(IntegrityError, match="joblib .pickle. file.*--trust-pickle"):
        load_run(plain, run.run_id)
    assert len(load_run(plain, run.run_id, trust_pickle=True).predict_rows(rows())) == 2
    with pytest.raises(runtime.ModelIntegrityError, match="pickle.*not signed"):
        runtime.load_model(run.path)
    assert type(runtime.load_model(run.path, trust_pickle=True)).__name__ == "LogisticRegression"

    signed_store = RunStore(tmp_path / "signed", signing_key=KEY)
    signed = record_run(signed_store, with_code=True, model_format="joblib")
    assert len(load_run(signed_store, signed.run_id).predict_rows(rows())) == 2
    monkeypatch.setenv("NB2PROD_SIGNING_KEY", KEY.decode())
    assert type(runtime.load_model(signed.path)).__name__ == "LogisticRegression"


def test_the_key_comes_from_the_environment_or_a_key_file(tmp_path: Path, monkeypatch) -> None:
    assert RunStore(tmp_path).signing_key is None
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY + b"\n")
    monkeypatch.setenv("NB2PROD_SIGNING_KEY_FILE", str(key_file))
    assert RunStore(tmp_path).signing_key == KEY  # the trailing newline is not part of the key
    monkeypatch.setenv("NB2PROD_SIGNING_KEY", "from env")
    assert RunStore(tmp_path).signing_key == b"from env"
    assert resolve_signing_key(key_file) == KEY  # an explicit file wins
    with pytest.raises(InputError, match=r"cannot read the signing key file .*missing.*--signing-key-file"):
        resolve_signing_key(tmp_path / "missing")
    (tmp_path / "empty").write_bytes(b"\n")
    with pytest.raises(InputError, match="is empty"):
        resolve_signing_key(tmp_path / "empty")


def test_cli_signing_key_file_and_trust_pickle(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY)
    signed = record_run(RunStore(tmp_path / "runs", signing_key=KEY), with_code=True)
    unsigned = record_run(RunStore(tmp_path / "runs"), with_code=True, model_format="joblib")
    s = ["--store", str(tmp_path / "runs")]
    no_key = {"NB2PROD_SIGNING_KEY": "", "NB2PROD_SIGNING_KEY_FILE": ""}

    refused = nb2prod("promote", unsigned.run_id, *s, "--signing-key-file", str(key_file), env=no_key)
    assert refused.returncode == 2 and "run.json.sig is missing" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert len([x for x in refused.stderr.splitlines() if not x.startswith("store: ")]) == 1  # one sentence
    via_env = nb2prod("promote", unsigned.run_id, *s, env={"NB2PROD_SIGNING_KEY_FILE": str(key_file)})
    assert via_env.returncode == 2 and "run.json.sig is missing" in via_env.stderr
    ok = nb2prod("promote", signed.run_id, *s, "--signing-key-file", str(key_file), env=no_key)
    assert ok.returncode == 0, ok.stderr

    rows_file = tmp_path / "rows.jsonl"
    rows_file.write_text("".join(json.dumps(r) + "\n" for r in rows()))
    pickle_refused = nb2prod("predict", unsigned.run_id, str(rows_file), *s, env=no_key)
    assert pickle_refused.returncode == 2 and "--trust-pickle" in pickle_refused.stderr
    trusted = nb2prod("predict", unsigned.run_id, str(rows_file), *s, "--trust-pickle", env=no_key)
    assert trusted.returncode == 0 and len(trusted.stdout.splitlines()) == 2, trusted.stderr
    missing = nb2prod("predict", signed.run_id, str(rows_file), *s, "--signing-key-file", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "cannot read the signing key file" in missing.stderr
