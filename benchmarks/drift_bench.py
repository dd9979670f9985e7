"""Benchmark `nb2prod drift` against Evidently's data-drift preset (issue 11, "Benchmark").

    python benchmarks/drift_bench.py                                   # writes docs/benchmarks.md and docs/monitoring.md
    python benchmarks/drift_bench.py --sizes 100000 --evidently-sizes 100000 --replications 20 --out -

What it measures, on the fraud example's raw inputs (the notebook's own generator, from the built
package; generated once into ~/.cache/nb2prod-bench/drift-data and reused):

- Throughput: `nb2prod drift RUN DATA --no-score` (the CLI, a fresh process as a user starts it) and
  `nb2prod.monitor.drift(..., score=False)` (the library call, timed inside its own process) on 100k,
  1M and 10M rows of parquet; Evidently's `DataDriftPreset` on the same files (100k and 1M: it holds
  the whole file in memory), with the held-out rows nb2prod's baseline was profiled from as its
  reference. Rows/s and the peak memory of the process tree (psutil, sampled every 50 ms, as
  benchmarks/scale_bench.py measures it).
- Rates, on the same windows for both: fresh windows of 100, 500 and 1,000 rows from the training
  distribution (any column flagged is a false alarm) and windows whose `amount` is shifted by 0.25
  standard deviations on the log scale (`amount` flagged is a detection); per-window time (nb2prod:
  the accumulator against the precomputed baseline; Evidently: one report per window, which derives
  the reference again each time).

Evidently is installed only for the benchmark, in its own virtual environment
(~/.cache/nb2prod-bench/evidently, pinned version), and run there by
benchmarks/drift_bench_evidently.py. The machine is shared: the section reports ratios and the load
average.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "benchmarks.md"
MONITORING_DOC = REPO / "docs" / "monitoring.md"
HEADING = "## Drift (`benchmarks/drift_bench.py`)"
MONITORING_HEADING = "## Measured against Evidently (`benchmarks/drift_bench.py`)"
EVIDENTLY_VERSION = "0.7.23"
CACHE = Path.home() / ".cache" / "nb2prod-bench"
EVIDENTLY_VENV = CACHE / "evidently"
DATA_CACHE = CACHE / "drift-data"
WORKER = Path(__file__).resolve().parent / "drift_bench_evidently.py"
SHIFTED = "amount"

# The library call in a process that has already imported what it uses (a service calling drift()
# repeatedly); the CLI row includes the start-up and imports.
LIBRARY = """
import json, sys, time
import pandas, pyarrow.parquet, scipy.special
import nb2prod.monitor.data, nb2prod.monitor.drift, nb2prod.runs.store
from nb2prod.monitor import drift
store, run, path = sys.argv[1:4]
t0 = time.perf_counter()
report = drift(store, run, path, score=False)
print(json.dumps({"seconds": time.perf_counter() - t0, "rows": report.rows, "drifted": [c.name for c in report.drifted]}))
"""


def tree_peak(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Run `cmd`; (wall seconds, peak RSS in MB of it and all its descendants, stdout)."""
    import psutil

    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env
    )
    peak = 0.0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        root = psutil.Process(proc.pid)
        while not stop.is_set():
            try:
                total = 0
                for p in [root, *root.children(recursive=True)]:
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        pass
                peak = max(peak, total / 2**20)
            except psutil.Error:
                pass
            stop.wait(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out, err = proc.communicate()
    stop.set()
    thread.join()
    wall = time.perf_counter() - started
    if proc.returncode not in (0, 1):  # nb2prod drift exits 1 on drift
        raise SystemExit(f"benchmark step failed: {' '.join(cmd)}\n{err}")
    return wall, peak, out


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def ensure_evidently() -> Path:
    """The benchmark's own virtual environment with Evidently pinned; created once."""
    python = EVIDENTLY_VENV / "bin" / "python"
    check = [str(python), "-c", "import evidently, pyarrow; print(evidently.__version__)"]
    if python.exists():
        probe = subprocess.run(check, capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip() == EVIDENTLY_VERSION:
            return python
    print(f"installing evidently=={EVIDENTLY_VERSION} into {EVIDENTLY_VENV} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(EVIDENTLY_VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", f"evidently=={EVIDENTLY_VERSION}", "pandas<3", "pyarrow"],
        check=True,
    )
    subprocess.run(check, check=True, capture_output=True)
    return python


def train(work: Path, trees: int) -> tuple[Path, str, Path]:
    nb2prod = [sys.executable, "-m", "nb2prod"]
    shutil.copy2(REPO / "examples" / "fraud" / "fraud_detection.ipynb", work / "fraud_detection.ipynb")
    subprocess.run([*nb2prod, "build", "fraud_detection.ipynb"], cwd=work, check=True, capture_output=True)
    build = work / "build" / "fraud-detection"
    trained = subprocess.run(
        [*nb2prod, "train", str(build), "--engine", "python", "--format", "json", "-p", "n_estimators", str(trees)],
        cwd=work,
        check=True,
        capture_output=True,
        text=True,
    )
    return work / "runs", json.loads(trained.stdout)["run_id"], build / "src"


def make_inputs(make_transactions, raw: list[str], rows: int) -> Path:
    """`rows` fresh transactions from the training distribution, as parquet (row groups of 100,000)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    DATA_CACHE.mkdir(parents=True, exist_ok=True)
    path = DATA_CACHE / f"fraud-inputs-{rows}.parquet"
    if path.exists() and pq.ParquetFile(path).metadata.num_rows == rows:
        return path
    tmp = path.with_suffix(".tmp")
    writer = None
    step = 1_000_000
    for start in range(0, rows, step):
        frame = make_transactions(min(step, rows - start), 0.02, 10_000 + start // step)[raw]
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if writer is None:
            writer = pq.ParquetWriter(tmp, table.schema)
        writer.write_table(table, row_group_size=100_000)
    writer.close()
    os.replace(tmp, path)
    return path


def reference_rows(make_transactions, raw: list[str], label: str):
    """The held-out rows the run's baseline was profiled from (the notebook's split at its defaults)."""
    from sklearn.model_selection import train_test_split

    transactions = make_transactions(20000, 0.02, 42)
    _, test_df = train_test_split(transactions, test_size=0.25, stratify=transactions[label], random_state=42)
    return test_df[raw].reset_index(drop=True)


def make_windows(make_transactions, raw: list[str], sizes: list[int], replications: int, shift: float):
    """One frame of every window: columns window, rep, case ("none" | "shift") and the raw inputs."""
    import pandas as pd

    parts = []
    seed = 500_000
    for size in sizes:
        for rep in range(replications):
            for case in ("none", "shift"):
                seed += 1
                frame = make_transactions(size, 0.02, seed)[raw].copy()
                if case == "shift":  # 0.25 sd on the log scale, where amounts are roughly normal
                    frame[SHIFTED] = (frame[SHIFTED] * shift).round(2)
                frame.insert(0, "case", case)
                frame.insert(0, "rep", rep)
                frame.insert(0, "window", size)
                parts.append(frame)
    return pd.concat(parts, ignore_index=True)


def nb2prod_windows(baseline, run_id: str, windows) -> list[dict]:
    from nb2prod.monitor.drift import DriftAccumulator

    results = []
    for (size, rep, case), frame in windows.groupby(["window", "rep", "case"], sort=True):
        inputs = frame.drop(columns=["window", "rep", "case"])
        start = time.perf_counter()
        accumulator = DriftAccumulator(baseline, sections=("inputs",))
        accumulator.add(inputs)
        report = accumulator.report(run_id)
        seconds = time.perf_counter() - start
        drifted = [c.name for c in report.drifted]
        results.append({"window": int(size), "rep": int(rep), "case": case, "seconds": seconds, "drifted": drifted})
    return results


def rates(results: list[dict]) -> dict[int, dict[str, float]]:
    """Per window size: false-alarm rate (any column flagged, no shift), detection rate (the shifted
    column flagged), median seconds per window."""
    import statistics

    table: dict[int, dict[str, float]] = {}
    for size in sorted({r["window"] for r in results}):
        none = [r for r in results if r["window"] == size and r["case"] == "none"]
        shift = [r for r in results if r["window"] == size and r["case"] == "shift"]
        table[size] = {
            "false_alarm": sum(bool(r["drifted"]) for r in none) / len(none),
            "detection": sum(SHIFTED in r["drifted"] for r in shift) / len(shift),
            "dataset_false_alarm": sum(bool(r.get("dataset_drift")) for r in none) / len(none),
            "dataset_detection": sum(bool(r.get("dataset_drift")) for r in shift) / len(shift),
            "seconds": statistics.median(r["seconds"] for r in none + shift),
            "n": len(none),
        }
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000,10000000", help="rows for nb2prod drift")
    parser.add_argument("--evidently-sizes", default="100000,1000000", help="rows for Evidently (held in memory)")
    parser.add_argument("--windows", default="100,500,1000")
    parser.add_argument("--replications", type=int, default=100, help="windows per size and case")
    parser.add_argument("--evidently-replications", type=int, default=20, help="of those, how many Evidently runs")
    parser.add_argument("--trees", type=int, default=20, help="n_estimators of the trained fraud model")
    parser.add_argument("--out", default=str(DOC), help="docs file for the benchmark section, or - to print only")
    parser.add_argument("--from-json", type=Path, default=None, help="render a saved result, measure nothing")
    args = parser.parse_args(argv)
    if args.from_json is not None:
        return write(json.loads(args.from_json.read_text()), args.out)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    evidently_sizes = [int(s) for s in args.evidently_sizes.split(",") if s]
    window_sizes = [int(s) for s in args.windows.split(",") if s]

    evidently_python = ensure_evidently()
    work = Path(tempfile.mkdtemp(prefix="nb2prod-drift-bench-"))
    loads = [load_average()]
    try:
        store, run_id, src = train(work, args.trees)
        sys.path.insert(0, str(src))
        from fraud_detection.core import LABEL, RAW_COLUMNS, make_transactions

        from nb2prod.monitor.baseline import read_baseline
        from nb2prod.runs.store import RunStore

        run = RunStore(store).get(run_id)
        baseline = read_baseline(run.path)
        baseline_bytes = (run.path / "baseline.json").stat().st_size
        kinds = {p.name: p.kind for p in baseline.inputs}
        reference = reference_rows(make_transactions, RAW_COLUMNS, LABEL)
        if len(reference) != baseline.inputs[0].count:
            raise SystemExit(f"reference rows {len(reference)} != baseline count {baseline.inputs[0].count}")
        reference_path = work / "reference.parquet"
        reference.to_parquet(reference_path, index=False)
        shift = math.exp(0.25 * float(np.log(reference[SHIFTED]).std()))  # a factor on amounts
        spec = {
            "numeric": [n for n, k in kinds.items() if k == "numeric"],
            "categorical": [n for n, k in kinds.items() if k == "categorical"],
        }
        spec_path = work / "columns.json"
        spec_path.write_text(json.dumps(spec))
        print(f"run {run_id}; baseline {baseline_bytes} bytes; columns {spec}", flush=True)

        throughput = []
        for rows in sorted(set(sizes) | set(evidently_sizes)):
            print(f"data: {rows:,} rows ...", flush=True)
            path = make_inputs(make_transactions, RAW_COLUMNS, rows)
            if rows in sizes:
                cli = [sys.executable, "-m", "nb2prod", "drift", run_id, str(path), "--store", str(store)]
                wall, peak, out = tree_peak([*cli, "--no-score", "--format", "json"], work)
                report = json.loads(out)
                assert report["rows"] == rows, report["rows"]
                throughput.append(_row("nb2prod drift (CLI)", rows, wall, wall, peak, report["drifted"]))
                wall, peak, out = tree_peak([sys.executable, "-c", LIBRARY, str(store), run_id, str(path)], work)
                lib = json.loads(out)
                throughput.append(_row("nb2prod.monitor.drift", rows, wall, lib["seconds"], peak, lib["drifted"]))
            if rows in evidently_sizes:
                cmd = [str(evidently_python), str(WORKER), "file", str(spec_path), str(reference_path), str(path)]
                wall, peak, out = tree_peak(cmd, work)
                ev = json.loads(out)
                throughput.append(
                    _row(f"Evidently {EVIDENTLY_VERSION}", rows, wall, ev["seconds"], peak, ev["drifted"])
                )
            for row in throughput[-3:]:
                if row["rows"] == rows:
                    print(_line(row), f"(load {load_average()})", flush=True)

        print(f"windows: {window_sizes}, {args.replications} replications ...", flush=True)
        windows = make_windows(make_transactions, RAW_COLUMNS, window_sizes, args.replications, shift)
        ours = nb2prod_windows(baseline, run_id, windows)
        theirs_frame = windows[windows["rep"] < args.evidently_replications]
        windows_path = work / "windows.parquet"
        theirs_frame.to_parquet(windows_path, index=False)
        cmd = [str(evidently_python), str(WORKER), "windows", str(spec_path), str(reference_path), str(windows_path)]
        _, _, out = tree_peak(cmd, work)
        theirs = [json.loads(line) for line in out.splitlines() if line.strip()]
        ours_same = [r for r in ours if r["rep"] < args.evidently_replications]
        loads.append(load_average())
    finally:
        shutil.rmtree(work, ignore_errors=True)

    result = {
        "run_id": run_id,
        "trees": args.trees,
        "baseline_bytes": baseline_bytes,
        "shift": shift,
        "throughput": throughput,
        "rates_nb2prod": rates(ours),
        "rates_nb2prod_same": rates(ours_same),
        "rates_evidently": rates(theirs),
        "replications": args.replications,
        "evidently_replications": args.evidently_replications,
        "loads": loads,
        "spec": spec,
    }
    (CACHE / "drift-bench-last.json").write_text(json.dumps(result, indent=1, default=str))
    return write(result, args.out)


def write(result: dict, out: str) -> int:
    for key in ("rates_nb2prod", "rates_nb2prod_same", "rates_evidently"):  # JSON keys are strings
        result[key] = {int(size): row for size, row in result[key].items()}
    section = render(result)
    monitoring = render_monitoring(result)
    print(section)
    if out != "-":
        sys.path.insert(0, str(REPO / "benchmarks"))
        from docs_section import replace_section

        replace_section(Path(out), HEADING, section)
        replace_section(MONITORING_DOC, MONITORING_HEADING, monitoring)
        print(f"wrote {out} and {MONITORING_DOC}")
    return 0 if targets_met(result) else 1


def _row(tool: str, rows: int, wall: float, seconds: float, peak: float, drifted: list[str]) -> dict:
    return {"tool": tool, "rows": rows, "wall_s": wall, "seconds": seconds, "peak_mb": peak, "drifted": drifted}


def _line(row: dict) -> str:
    return (
        f"{row['tool']:<24} {row['rows']:>11,} rows  wall {row['wall_s']:7.1f}s  timed {row['seconds']:7.2f}s  "
        f"{row['rows'] / row['seconds']:>12,.0f} rows/s  peak {row['peak_mb']:7.0f} MB"
    )


def speedups(result: dict) -> dict[int, float]:
    """Evidently's seconds over nb2prod's library seconds, per size both ran."""
    lib = {r["rows"]: r["seconds"] for r in result["throughput"] if r["tool"] == "nb2prod.monitor.drift"}
    ev = {r["rows"]: r["seconds"] for r in result["throughput"] if r["tool"].startswith("Evidently")}
    return {rows: ev[rows] / lib[rows] for rows in sorted(set(lib) & set(ev))}


def window_speedups(result: dict) -> dict[int, float]:
    ours, theirs = result["rates_nb2prod_same"], result["rates_evidently"]
    return {size: theirs[size]["seconds"] / ours[size]["seconds"] for size in sorted(set(ours) & set(theirs))}


def rates_as_good(result: dict) -> dict[int, bool]:
    ours, theirs = result["rates_nb2prod_same"], result["rates_evidently"]
    return {
        size: ours[size]["false_alarm"] <= theirs[size]["false_alarm"]
        and ours[size]["detection"] >= theirs[size]["detection"]
        for size in sorted(set(ours) & set(theirs))
    }


def targets_met(result: dict) -> bool:
    fast = all(x >= 100 for x in [*speedups(result).values(), *window_speedups(result).values()])
    return fast and all(rates_as_good(result).values())


def render(result: dict) -> str:
    loads = result["loads"]
    lines = [
        HEADING,
        "",
        f"The fraud example's six raw inputs ({', '.join(result['spec']['numeric'])} numeric; "
        f"{', '.join(result['spec']['categorical'])} categorical), fresh rows of the training distribution "
        f"from the notebook's own generator, as parquet (row groups of 100,000). nb2prod compares them with "
        f"the run's baseline.json ({result['baseline_bytes']:,} bytes) without scoring them (`--no-score`, "
        f"as Evidently does not score); Evidently {EVIDENTLY_VERSION}'s `DataDriftPreset` gets the 5,000 held-out "
        "rows the baseline was profiled from as its reference and the same column types. "
        f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}), shared with other work: load "
        f"average {loads[0]} before and {loads[-1]} after (1, 5, 15 min). Absolute figures move with the load; "
        "the ratios, measured side by side, are what to compare.",
        "",
        "| tool | rows | wall (process) | timed call | rows/s (timed call) | peak memory (process tree) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["throughput"]:
        lines.append(
            f"| {r['tool']} | {r['rows']:,} | {r['wall_s']:.1f} s | {r['seconds']:.2f} s | "
            f"{r['rows'] / r['seconds']:,.0f} | {r['peak_mb']:,.0f} MB |"
        )
    lines += [
        "",
        "The CLI's timed call is its whole process (start-up and imports, verifying the run, reading, counting, "
        "the report); the library's is the `drift()` call in a process that has imported pandas, pyarrow and "
        "scipy (verifying the run, reading, counting, the report); Evidently's is reading the data and "
        "`Report.run`, after its imports.",
        "",
    ]
    for rows, ratio in speedups(result).items():
        lines.append(f"- {rows:,} rows: nb2prod's library call is {ratio:,.0f}x Evidently's speed.")
    lines += ["", *render_rates(result), ""]
    verdict = "met" if targets_met(result) else "missed"
    files = speedups(result)
    windows = window_speedups(result)
    good = rates_as_good(result)
    lines += [
        f"Target (at least 100x Evidently's speed on the same data, rates at least as good on the same windows): "
        f"**{verdict}**:",
        "",
        f"- per window against the precomputed baseline: {', '.join(f'{x:,.0f}x' for x in windows.values())} "
        f"({'met' if all(x >= 100 for x in windows.values()) else 'missed'});",
        f"- whole files: {', '.join(f'{x:,.0f}x' for x in files.values())} "
        f"({'met' if all(x >= 100 for x in files.values()) else 'missed'}): both are linear in the rows there, "
        "and nb2prod's call also verifies the whole run folder (hashes) before it reads the data;",
        "- rates (false alarms no higher and detection no lower than Evidently's, per window size): "
        + ", ".join(f"{size:,} rows {'met' if ok else 'missed'}" for size, ok in good.items())
        + ". Evidently's higher detection comes with its false alarms: a rule that flags unshifted windows "
        "that often also flags shifted ones.",
    ]
    return "\n".join(lines) + "\n"


def render_rates(result: dict) -> list[str]:
    ours, ours_all, theirs = result["rates_nb2prod_same"], result["rates_nb2prod"], result["rates_evidently"]
    lines = [
        f"Rates on the same windows ({result['evidently_replications']} windows per size and case for both; "
        f"nb2prod also on {result['replications']}): fresh windows from the training distribution, where any "
        f"column flagged is a false alarm, and windows whose `{SHIFTED}` is shifted by 0.25 standard deviations "
        f"on the log scale, where amounts are roughly normal (every amount times {result['shift']:.3f}, the "
        f"reference's sd of log amount being {4 * math.log(result['shift']):.2f}), where `{SHIFTED}` flagged is a "
        "detection. nb2prod: its default "
        "rule (KS / chi-squared, Bonferroni-corrected p < 0.001); Evidently: its preset's defaults (per column "
        "KS, chi-squared or a proportion test at p < 0.05 up to 1,000 reference rows, else Wasserstein / "
        "Jensen-Shannon distance > 0.1; dataset drift when half the columns drift). Time per window: nb2prod "
        "counts the window against the precomputed baseline; Evidently builds one report per window.",
        "",
        "| window | nb2prod false alarms | Evidently false alarms (column / dataset) | nb2prod detection "
        "| Evidently detection (column / dataset) | nb2prod per window | Evidently per window | ratio |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in sorted(theirs):
        o, t = ours[size], theirs[size]
        lines.append(
            f"| {size:,} | {o['false_alarm']:.1%} ({ours_all[size]['false_alarm']:.1%} of {ours_all[size]['n']}) | "
            f"{t['false_alarm']:.1%} / {t['dataset_false_alarm']:.1%} | "
            f"{o['detection']:.1%} ({ours_all[size]['detection']:.1%} of {ours_all[size]['n']}) | "
            f"{t['detection']:.1%} / {t['dataset_detection']:.1%} | {o['seconds'] * 1000:.2f} ms | "
            f"{t['seconds'] * 1000:.0f} ms | {t['seconds'] / o['seconds']:,.0f}x |"
        )
    return lines


def render_monitoring(result: dict) -> str:
    lines = [
        MONITORING_HEADING,
        "",
        "The same rules on the fraud example's own inputs, side by side with Evidently's data-drift preset "
        f"(load average {result['loads'][0]} before, {result['loads'][-1]} after; "
        "[docs/benchmarks.md](benchmarks.md) has the throughput):",
        "",
        *render_rates(result),
        "",
        _monitoring_summary(result),
    ]
    return "\n".join(lines) + "\n"


def _monitoring_summary(result: dict) -> str:
    ours, theirs = result["rates_nb2prod_same"], result["rates_evidently"]
    worst = max(theirs, key=lambda size: theirs[size]["false_alarm"])
    return (
        f"Evidently's per-column verdicts flagged at least one column in {theirs[worst]['false_alarm']:.0%} of "
        f"unshifted {worst:,}-row windows (nb2prod: {ours[worst]['false_alarm']:.0%}). A rule that fires on "
        "unshifted data is one an operator learns to ignore. "
        + " ".join(
            f"At {size:,} rows nb2prod detects the shift in {ours[size]['detection']:.0%} of windows, Evidently in "
            f"{theirs[size]['detection']:.0%}."
            for size in sorted(theirs)
        )
    )


if __name__ == "__main__":
    sys.exit(main())
