"""Baselines saved by training, and `nb2prod drift` on fresh and shifted data of the fraud example."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from nb2prod.monitor.baseline import read_baseline
from nb2prod.runs.store import RunStore

from .conftest import cli


def _drift(fraud_run, data: Path, *extra: str) -> tuple[int, dict]:
    result = cli(
        "drift", str(fraud_run["run"]), str(data), "--store", str(fraud_run["store"]), "--format", "json", *extra
    )
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def test_every_run_saves_a_hashed_compact_baseline(fraud_run) -> None:
    run = RunStore(fraud_run["store"]).get(str(fraud_run["run"]))
    assert "baseline.json" in run.manifest.files
    size = (run.path / "baseline.json").stat().st_size
    assert size < 64 * 1024  # kilobytes, not the data
    baseline = read_baseline(run.path)
    assert [p.name for p in baseline.inputs] == [
        "amount",
        "hour",
        "merchant_category",
        "distance_from_home",
        "card_present",
        "velocity_1h",
    ]
    kinds = {p.name: p.kind for p in baseline.inputs}
    assert kinds["amount"] == "numeric" and kinds["merchant_category"] == "categorical"
    assert baseline.inputs_expression == "test_df[RAW_COLUMNS]"  # the held-out rows, not their .head()
    assert baseline.inputs[0].count == 2000  # test_size 0.25 of 8,000
    assert "log_amount" in [p.name for p in baseline.features] and baseline.features[0].count == 6000
    assert baseline.score is not None and baseline.score.kind == "numeric" and baseline.score.count == 2000


@pytest.mark.parametrize("seed", [101, 202, 303, 404, 505])
def test_no_alarm_on_fresh_samples_of_the_training_distribution(
    fraud_run, transactions, tmp_path: Path, seed: int
) -> None:
    path = tmp_path / "fresh.csv"
    transactions(2000, seed).to_csv(path, index=False)
    code, report = _drift(fraud_run, path)
    assert code == 0, report["drifted"]
    assert not report["drift"] and report["rows"] == 2000
    assert {c["name"] for c in report["columns"]} >= {"amount", "merchant_category", "score"}


def test_alarm_on_shifted_numeric_and_categorical_inputs(fraud_run, transactions, tmp_path: Path) -> None:
    shifted = transactions(2000, 7).copy()
    shifted["amount"] = shifted["amount"] * 1.6  # numeric: larger amounts
    shifted["card_present"] = 0  # categorical: every transaction card-not-present
    path = tmp_path / "shifted.parquet"
    shifted.to_parquet(path)
    code, report = _drift(fraud_run, path, "--report", str(tmp_path / "report" / "drift.html"))
    assert code == 1
    drifted = set(report["drifted"])
    assert {"amount", "card_present"} <= drifted
    assert not drifted & {"merchant_category", "distance_from_home"}
    by_name = {c["name"]: c for c in report["columns"]}
    assert by_name["amount"]["test"] == "ks" and by_name["card_present"]["test"] == "chi2"
    assert by_name["amount"]["p_adjusted"] < 0.001
    assert (tmp_path / "report" / "drift-inputs-amount.png").read_bytes()[:4] == b"\x89PNG"


def test_a_tampered_baseline_is_refused(fraud_run, transactions, tmp_path: Path) -> None:
    import shutil

    store = tmp_path / "runs"
    shutil.copytree(fraud_run["store"], store)
    run_dir = store / str(fraud_run["run"])
    path = run_dir / "baseline.json"
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    data = json.loads(path.read_text())
    data["inputs"][0]["edges"] = [e * 2 for e in data["inputs"][0]["edges"]]
    path.write_text(json.dumps(data))
    sample = tmp_path / "fresh.csv"
    transactions(500, 1).to_csv(sample, index=False)
    result = cli("drift", str(fraud_run["run"]), str(sample), "--store", str(store))
    assert result.returncode == 2
    assert "baseline.json" in result.stderr and "Traceback" not in result.stderr


def test_prediction_log_folder_with_since_and_window(fraud_run, transactions, tmp_path: Path) -> None:
    """Records in the prediction-log format: inputs and output per prediction, filtered by time."""
    folder = tmp_path / "log"
    folder.mkdir()
    fresh, shifted = transactions(1500, 11), transactions(1500, 12).copy()
    shifted["hour"] = (shifted["hour"] + 8) % 24
    with (folder / "predictions-20261201-0000.jsonl").open("w") as handle:
        for number, (frame, day) in enumerate(((fresh, "2026-12-01T08"), (shifted, "2026-12-01T20"))):
            for i, row in enumerate(frame.to_dict(orient="records")):
                record = {
                    "id": f"{number}-{i}",
                    "request_id": "r",
                    "time": f"{day}:00:{i % 60:02d}Z",
                    "run": fraud_run["run"],
                    "alias": "production",
                    "model_sha256": "0" * 64,
                    "inputs": row,
                    "output": 0.01,
                    "latency_ms": 1.0,
                }
                handle.write(json.dumps(record) + "\n")
    code, morning = _drift(fraud_run, folder, "--window", "1500", "--since", "2026-12-01T00")
    assert code == 1 and "hour" in morning["drifted"]  # the last 1,500 records are the shifted ones
    code, all_day = _drift(fraud_run, folder, "--since", "2026-12-01T20")
    assert all_day["rows"] == 1500 and "hour" in all_day["drifted"]
    code, early = _drift(fraud_run, folder, "--window", "1500", "--since", "2026-12-01T00", "--no-score")
    assert early["rows"] == 1500


def test_bad_data_gets_one_sentence(fraud_run, tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("nothing")
    unknown = cli("drift", str(fraud_run["run"]), str(tmp_path / "x.txt"), "--store", str(fraud_run["store"]))
    assert unknown.returncode == 2 and "unknown data format" in unknown.stderr
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    unrelated = cli(
        "drift", str(fraud_run["run"]), str(tmp_path / "other.csv"), "--store", str(fraud_run["store"]), "--no-score"
    )
    assert unrelated.returncode == 2 and "none of its columns is an input" in unrelated.stderr


def test_two_million_rows_in_bounded_memory(fraud_run, transactions, tmp_path: Path) -> None:
    """Streaming: peak memory stays far below what reading the whole file would take."""
    path = tmp_path / "big.parquet"
    frame = transactions(2_000_000, 99)
    frame.to_parquet(path, row_group_size=100_000)
    whole = frame.memory_usage(deep=True).sum()
    del frame
    code = (
        "import resource, subprocess, sys;"
        f"r = subprocess.run([sys.executable, '-m', 'nb2prod', 'drift', {str(fraud_run['run'])!r}, {str(path)!r},"
        f" '--store', {str(fraud_run['store'])!r}, '--format', 'json']);"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    peak_kb, rc = out.stdout.strip().splitlines()[-1].split()
    assert rc in ("0", "1"), out.stderr
    report = json.loads(out.stdout[: out.stdout.rindex("}") + 1])
    assert report["rows"] == 2_000_000
    peak = int(peak_kb) * 1024
    # the process (python, pandas, scikit-learn, the model) plus one chunk; the data alone is `whole`
    assert peak < 700 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    assert whole > 90 * 2**20


def test_report_opens_in_a_real_browser_with_its_plots(fraud_run, transactions, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    shifted = transactions(1500, 21).copy()
    shifted["hour"] = (shifted["hour"] + 6) % 24
    data = tmp_path / "shifted.csv"
    shifted.to_csv(data, index=False)
    report = tmp_path / "out" / "report.html"
    assert (
        cli(
            "drift", str(fraud_run["run"]), str(data), "--store", str(fraud_run["store"]), "--report", str(report)
        ).returncode
        == 1
    )
    artifacts = Path(__file__).resolve().parents[2] / "test-artifacts" / "monitor"
    artifacts.mkdir(parents=True, exist_ok=True)
    args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--no-first-run",
    ]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=args, headless=True)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(report.as_uri())
            assert "columns drifted" in page.inner_text("#verdict")
            widths = page.eval_on_selector_all("#plots img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
            assert widths and all(w > 100 for w in widths)
            assert page.locator("tr.drift td:first-child", has_text="hour").count() == 1
            page.screenshot(path=str(artifacts / "drift-report.png"), full_page=True)
            assert not errors
        finally:
            browser.close()
