"""Batch scoring on the local engine: same scores as in-process predict, ids kept, the output
folder complete or absent, bad rows named or set aside, memory bounded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nb2prod.errors import InputError
from nb2prod.scale import score
from nb2prod.scale.output import MANIFEST, SUCCESS

from .conftest import cli, read_scores, transactions


@pytest.mark.parametrize("kind", ["parquet", "csv", "jsonl", "parts"])
def test_local_scores_equal_in_process_predict_row_for_row(fraud, data, expected, tmp_path, kind):
    result = score(
        "production", data[kind], tmp_path / "out", store=fraud["store"], chunk_rows=5_000, id_column="txn_id"
    )
    scores = read_scores(tmp_path / "out")
    assert list(scores.columns) == ["txn_id", "prediction", "run_id", "model_sha256"]
    assert scores["txn_id"].tolist() == transactions(12_000)["txn_id"].tolist()
    assert scores["prediction"].tolist() == expected
    assert set(scores["run_id"]) == {fraud["run_id"]}
    assert set(scores["model_sha256"]) == {result.model_sha256}
    assert result.rows == result.scored == 12_000
    assert result.model_loads == 1


def test_output_folder_has_manifest_marker_and_row_numbers(fraud, data, tmp_path):
    out = tmp_path / "scores"
    result = score(fraud["run_id"], data["csv"], out, store=fraud["store"], chunk_rows=4_000)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [MANIFEST, SUCCESS, "part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    )
    manifest = json.loads((out / MANIFEST).read_text())
    run = json.loads((Path(fraud["store"]) / fraud["run_id"] / "run.json").read_text())
    assert manifest["run_id"] == fraud["run_id"] and manifest["alias"] is None
    assert manifest["model_sha256"] == run["model"]["sha256"]
    assert manifest["code_sha256"] == run["source"]["code_sha256"]
    assert manifest["rows"] == 12_000 and manifest["engine"] == "local"
    assert manifest["input"]["format"] == "csv" and len(manifest["input"]["sha256"]) == 64
    assert set(manifest["timings"]) >= {"startup_s", "score_s", "total_s", "started_at", "finished_at"}
    assert read_scores(out)["row"].tolist() == list(range(1, 12_001))
    assert result.input_sha256 == manifest["input"]["sha256"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial folder left


def test_existing_output_is_never_overwritten(fraud, data, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    result = cli("score", "production", str(data["parquet"]), str(out), "--store", str(fraud["store"]))
    assert result.returncode == 2
    assert "already exists" in result.stderr and "Traceback" not in result.stderr
    assert (out / "mine.txt").read_text() == "keep me"


def _bad_input(tmp_path: Path) -> Path:
    frame = transactions(9_000).astype({"amount": object})
    frame.loc[6_500, "amount"] = "abc"  # data row 6,501
    frame.loc[8_000, "hour"] = None  # data row 8,001: the contract saw no missing hours
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    return path


def test_a_bad_row_fails_the_job_naming_the_row_and_the_rule(fraud, tmp_path):
    path = _bad_input(tmp_path)
    out = tmp_path / "out"
    result = cli("score", "production", str(path), str(out), "--store", str(fraud["store"]), "--chunk-rows", "2000")
    assert result.returncode == 2, result.stderr
    assert "row 6501" in result.stderr and "'not-a-number'" in result.stderr and "'amount'" in result.stderr
    assert "--bad-rows" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_bad_rows_are_written_with_their_reason_and_the_rest_scored(fraud, tmp_path):
    path = _bad_input(tmp_path)
    out, bad = tmp_path / "out", tmp_path / "bad.jsonl"
    result = cli(
        "score",
        "production",
        str(path),
        str(out),
        "--store",
        str(fraud["store"]),
        "--chunk-rows",
        "2000",
        "--id-column",
        "txn_id",
        "--bad-rows",
        str(bad),
        "--format",
        "json",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["rows"] == 9_000 and summary["scored"] == 8_998 and summary["bad_rows"] == 2
    lines = [json.loads(line) for line in bad.read_text().splitlines()]
    assert [(b["row"], b["id"], b["field"], b["rule"]) for b in lines] == [
        (6501, 16_500, "amount", "not-a-number"),
        (8001, 18_000, "hour", "null"),
    ]
    assert lines[0]["record"]["amount"] == "abc"
    scores = read_scores(out)
    assert len(scores) == 8_998 and 16_500 not in set(scores["txn_id"]) and 18_000 not in set(scores["txn_id"])


def test_a_type_error_in_json_lines_is_named(fraud, tmp_path):
    path = tmp_path / "in.jsonl"
    records = transactions(3).drop(columns="txn_id").to_dict(orient="records")
    records[1]["card_present"] = "yes"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(InputError, match=r"row 2: 'card_present' must be a number.*'not-a-number'"):
        score("production", path, tmp_path / "out", store=fraud["store"])
    assert not (tmp_path / "out").exists()


def test_unknown_id_column_and_format_are_refused_in_one_sentence(fraud, data, tmp_path):
    result = cli(
        "score",
        "production",
        str(data["parquet"]),
        str(tmp_path / "o"),
        "--store",
        str(fraud["store"]),
        "--id-column",
        "nope",
    )
    assert result.returncode == 2 and "id column 'nope'" in result.stderr and "txn_id" in result.stderr
    (tmp_path / "in.xlsx").write_text("x")
    result = cli("score", "production", str(tmp_path / "in.xlsx"), str(tmp_path / "o"), "--store", str(fraud["store"]))
    assert result.returncode == 2 and "cannot tell the format" in result.stderr
    assert not (tmp_path / "o").exists()


def test_a_killed_job_leaves_no_output_that_looks_complete(fraud, tmp_path):
    path = tmp_path / "big.parquet"
    transactions(150_000).to_parquet(path, index=False)
    out = tmp_path / "out"
    job = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nb2prod",
            "score",
            "production",
            str(path),
            str(out),
            "--store",
            str(fraud["store"]),
            "--chunk-rows",
            "2000",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and job.poll() is None:
            partial = [p for p in tmp_path.glob(".out.partial-*") if list(p.glob("part-*.parquet"))]
            if partial:
                break
            time.sleep(0.05)
        assert job.poll() is None, "the job finished before it could be killed"
        os.kill(job.pid, signal.SIGKILL)
        job.wait()
    finally:
        if job.poll() is None:
            job.kill()
    assert not out.exists()
    assert not list(tmp_path.rglob(SUCCESS)) and not list(tmp_path.rglob(MANIFEST))
    leftovers = list(tmp_path.glob(".out.partial-*"))
    assert leftovers  # the partial folder is hidden, unmarked, and ...
    result = cli("score", "production", str(tmp_path / "big.parquet"), str(out), "--store", str(fraud["store"]))
    assert result.returncode == 0, result.stderr
    assert not any(p.exists() for p in leftovers)  # ... removed by the next job beside it
    assert len(read_scores(out)) == 150_000


def test_memory_stays_bounded_while_streaming(fraud, tmp_path):
    """300k rows with 50k-row chunks: peak RSS is that of one chunk, not of the file (loose bounds)."""
    big = tmp_path / "big.csv"
    transactions(300_000).to_csv(big, index=False)
    small = tmp_path / "small.csv"
    transactions(50_000).to_csv(small, index=False)

    def peak_mb(path: Path, out: Path) -> float:
        probe = (
            "import resource, subprocess, sys\n"
            "done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)\n"
            "assert done.returncode == 0\n"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)\n"
        )
        args = [
            sys.executable,
            "-m",
            "nb2prod",
            "score",
            "production",
            str(path),
            str(out),
            "--store",
            str(fraud["store"]),
            "--chunk-rows",
            "50000",
        ]
        done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        return float(done.stdout.strip())

    one_chunk = peak_mb(small, tmp_path / "o1")
    six_chunks = peak_mb(big, tmp_path / "o2")
    assert len(read_scores(tmp_path / "o2")) == 300_000
    # the whole 300k-row frame with its features would add well over 60 MB; streaming adds little
    assert six_chunks < one_chunk + 60, (one_chunk, six_chunks)
    assert six_chunks < 800, six_chunks


def test_a_tampered_model_is_refused_and_nothing_is_written(fraud, data, tmp_path):
    import shutil

    store = tmp_path / "runs"
    shutil.copytree(fraud["store"], store)
    recorded = json.loads((store / fraud["run_id"] / "run.json").read_text())["model"]["file"]
    model = store / fraud["run_id"] / recorded
    os.chmod(model.parent, 0o755)
    os.chmod(model, 0o644)
    with open(model, "ab") as handle:
        handle.write(b"\0")
    out = tmp_path / "out"
    done = cli("score", "production", str(data["parquet"]), str(out), "--store", str(store))
    assert done.returncode != 0 and "sha256" in done.stderr and "Traceback" not in done.stderr
    assert not out.exists() and not list(tmp_path.glob(".out.partial-*"))
