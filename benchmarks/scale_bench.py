"""Benchmark batch scoring and sweeps of the fraud example (issue 12, "Benchmark").

    python benchmarks/scale_bench.py                    # 1M rows, parquet and CSV, every engine; a 6-point sweep
    python benchmarks/scale_bench.py --rows 10000000    # the 10M-row run (takes a long while on 2 cores)
    python benchmarks/scale_bench.py --engines local,dask --formats parquet --no-sweep --out -

Each measurement is a fresh process as a user starts it: `nb2prod score RUN INPUT OUTPUT --engine E`
(local, dask with a local cluster of --workers processes, spark local[--workers]) and a naive
baseline (`pd.read_csv` / `pd.read_parquet` of the whole file, then the package's predict, then one
parquet file). Reported: wall time, start-up apart (the engine's start, plus loading and verifying the
model: from the job's _manifest.json; for the baseline, loading the model), rows/s over the scoring
alone, and the peak memory of the whole process tree (the driver, the
cluster's workers, Spark's JVM and Python workers), sampled every 50 ms with psutil. The sweep is
`nb2prod sweep` of 6 points, local sequential vs dask on --workers workers. Writes its section of
docs/benchmarks.md (--out - prints only).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "benchmarks.md"
HEADING = "## Batch scoring and sweeps (`benchmarks/scale_bench.py`)"
RAW = ["amount", "hour", "merchant_category", "distance_from_home", "card_present", "velocity_1h"]

NAIVE = """
import sys, time
import pandas as pd
from nb2prod.runs.predicting import load_run
from nb2prod.runs.store import RunStore
store, path, out = sys.argv[1:4]
t0 = time.perf_counter()
loaded = load_run(RunStore(store), "production")
t1 = time.perf_counter()
frame = pd.read_csv(path) if path.endswith(".csv") else pd.read_parquet(path)
ids = frame["txn_id"]
scores = loaded.predict_function(loaded.model, frame[%r])
pd.DataFrame({"txn_id": ids, "prediction": scores}).to_parquet(out, index=False)
print(t1 - t0, time.perf_counter() - t1)
""" % (RAW,)


def tree_peak(cmd: list[str], cwd: Path) -> tuple[float, float, str]:
    """Run `cmd`; (wall seconds, peak RSS in MB of it and all its descendants, stdout)."""
    import psutil

    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
    )
    peak = 0.0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        root = psutil.Process(proc.pid)
        while not stop.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
                total = 0
                for p in procs:
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
    if proc.returncode != 0:
        raise SystemExit(f"benchmark step failed: {' '.join(cmd)}\n{err}")
    return wall, peak, out


def make_inputs(folder: Path, rows: int) -> dict[str, Path]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    paths = {"parquet": folder / f"txns-{rows}.parquet", "csv": folder / f"txns-{rows}.csv"}
    writer_pq = None
    writer_csv = None
    step = 1_000_000
    for start in range(0, rows, step):
        n = min(step, rows - start)
        rng = np.random.default_rng(start)
        table = pa.table(
            {
                "txn_id": np.arange(start, start + n, dtype="int64"),
                "amount": np.round(rng.lognormal(3.6, 1.1, n), 2),
                "hour": rng.integers(0, 24, n),
                "merchant_category": rng.integers(0, 10, n),
                "distance_from_home": np.round(rng.exponential(12.0, n), 1),
                "card_present": rng.integers(0, 2, n),
                "velocity_1h": rng.poisson(1.0, n),
            }
        )
        if writer_pq is None:
            writer_pq = pq.ParquetWriter(paths["parquet"], table.schema)
            writer_csv = pacsv.CSVWriter(paths["csv"], table.schema)
        writer_pq.write_table(table, row_group_size=100_000)
        writer_csv.write_table(table)
    writer_pq.close()
    writer_csv.close()
    return paths


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--formats", default="parquet,csv")
    parser.add_argument("--engines", default="naive,local,dask,spark")
    parser.add_argument("--spark-formats", default="parquet,csv", help="formats spark scores (it starts slowly)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk-rows", type=int, default=100_000)
    parser.add_argument("--trees", type=int, default=100, help="n_estimators of the trained fraud model")
    parser.add_argument("--no-sweep", action="store_true")
    parser.add_argument("--sweep-transactions", type=int, default=8000)
    parser.add_argument("--out", default=str(DOC), help="docs file to write its section into, or - to print only")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="nb2prod-scale-bench-"))
    env = dict(os.environ)
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    nb2prod = [sys.executable, "-m", "nb2prod"]
    try:
        shutil.copy2(REPO / "examples" / "fraud" / "fraud_detection.ipynb", work / "fraud_detection.ipynb")
        subprocess.run([*nb2prod, "build", "fraud_detection.ipynb"], cwd=work, check=True, capture_output=True)
        build = work / "build" / "fraud-detection"
        trained = subprocess.run(
            [
                *nb2prod,
                "train",
                str(build),
                "--engine",
                "python",
                "--format",
                "json",
                "-p",
                "n_estimators",
                str(args.trees),
            ],
            cwd=work,
            check=True,
            capture_output=True,
            text=True,
        )
        run_id = json.loads(trained.stdout)["run_id"]
        store = work / "runs"
        subprocess.run([*nb2prod, "promote", run_id, "--store", str(store)], check=True, capture_output=True)
        print(f"model: run {run_id}, {args.trees} trees; generating {args.rows:,} rows ...", flush=True)
        inputs = make_inputs(work, args.rows)
        results = []
        loads = [load_average()]
        for fmt in args.formats.split(","):
            for engine in args.engines.split(","):
                if engine == "spark" and fmt not in args.spark_formats.split(","):
                    continue
                out = work / f"out-{fmt}-{engine}"
                if engine == "naive":
                    wall, peak, stdout = tree_peak(
                        [sys.executable, "-c", NAIVE, str(store), str(inputs[fmt]), str(out)], work
                    )
                    startup, score_s = (float(x) for x in stdout.split())
                else:
                    cmd = [
                        *nb2prod,
                        "score",
                        "production",
                        str(inputs[fmt]),
                        str(out),
                        "--store",
                        str(store),
                        "--engine",
                        engine,
                        "--chunk-rows",
                        str(args.chunk_rows),
                        "--id-column",
                        "txn_id",
                        "--format",
                        "json",
                    ]
                    if engine != "local":
                        cmd += ["--workers", str(args.workers)]
                    wall, peak, stdout = tree_peak(cmd, work)
                    summary = json.loads(stdout)
                    load = summary["model_load_s"]  # in the first chunk of each worker: start-up, not scoring
                    startup, score_s = summary["startup_s"] + load, summary["score_s"] - load
                row = {
                    "format": fmt,
                    "engine": engine,
                    "wall_s": wall,
                    "startup_s": startup,
                    "score_s": score_s,
                    "rows_per_s": args.rows / score_s,
                    "peak_mb": peak,
                }
                results.append(row)
                print(
                    f"{fmt:8} {engine:6} wall {wall:6.1f}s  start-up {startup:5.1f}s  scoring {score_s:6.1f}s  "
                    f"{row['rows_per_s']:>10,.0f} rows/s  peak {peak:7.0f} MB   (load {load_average()})",
                    flush=True,
                )
                shutil.rmtree(out, ignore_errors=True)
        sweeps = []
        if not args.no_sweep:
            for engine in ("local", "dask"):
                cmd = [
                    *nb2prod,
                    "sweep",
                    str(build),
                    "--grid",
                    "max_depth=4,8",
                    "--grid",
                    "n_estimators=25,50,100",
                    "-p",
                    "n_transactions",
                    str(args.sweep_transactions),
                    "--train-engine",
                    "python",
                    "--store",
                    str(work / f"sweep-{engine}"),
                    "--engine",
                    engine,
                    "--format",
                    "json",
                ]
                if engine == "dask":
                    cmd += ["--workers", str(args.workers)]
                wall, peak, stdout = tree_peak(cmd, work)
                swept = json.loads(stdout)
                sweeps.append(
                    {
                        "engine": engine,
                        "wall_s": wall,
                        "startup_s": swept["startup_s"],
                        "peak_mb": peak,
                        "points": len(swept["points"]),
                        "passed": sum(p["status"] == "succeeded" for p in swept["points"]),
                    }
                )
                print(
                    f"sweep {engine:6} wall {wall:6.1f}s  start-up {swept['startup_s']:.1f}s  peak {peak:.0f} MB",
                    flush=True,
                )
        loads.append(load_average())
    finally:
        shutil.rmtree(work, ignore_errors=True)

    section = render(args, results, sweeps, loads)
    if args.out == "-":
        print(section)
    else:
        sys.path.insert(0, str(REPO / "benchmarks"))
        from docs_section import replace_section

        replace_section(Path(args.out), HEADING, section)
        print(f"wrote {args.out}")
    return 0


def render(args: argparse.Namespace, results: list[dict], sweeps: list[dict], loads: list[str]) -> str:
    lines = [
        HEADING,
        "",
        f"{args.rows:,} rows of raw fraud transactions scored by the fraud example's model ({args.trees} trees, "
        f"depth 8, behind its pandas feature function), chunks of {args.chunk_rows:,} rows, {args.workers} workers "
        f"for dask and spark, on {os.cpu_count()} cores ({platform.processor() or platform.machine()}); load average "
        f"{loads[0]} before and {loads[-1]} after (1, 5, 15 min). Start-up is the engine's start plus loading and verifying the model; scoring rows/s excludes it.",
        "",
        "| input | engine | wall | start-up | scoring | rows/s | peak memory (process tree) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['format']} | {r['engine']} | {r['wall_s']:.1f} s | {r['startup_s']:.1f} s | {r['score_s']:.1f} s | "
            f"{r['rows_per_s']:,.0f} | {r['peak_mb']:,.0f} MB |"
        )
    if sweeps:
        lines += [
            "",
            "A 6-point sweep (`--grid max_depth=4,8 --grid n_estimators=25,50,100`, "
            f"{args.sweep_transactions:,} transactions, python training engine):",
            "",
            "| engine | wall | start-up | points passed | peak memory |",
            "|---|---:|---:|---:|---:|",
        ]
        for s in sweeps:
            lines.append(
                f"| {s['engine']} | {s['wall_s']:.1f} s | {s['startup_s']:.1f} s | {s['passed']}/{s['points']} | {s['peak_mb']:,.0f} MB |"
            )
    lines += ["", *SCALING.strip("\n").splitlines()]
    return "\n".join(lines) + "\n"


SCALING = """
How the figures scale. Scoring is embarrassingly parallel: the driver only reads chunks and hands
them out (for dask and spark it serialises each as Arrow IPC, a few MB per 100,000 rows) and each
worker checks, predicts and writes its own part, so on a cluster the work per worker is the
single-process rate above divided among workers, plus a fixed start-up (the cluster's start, and
each worker loading and verifying the model once). The driver's share is reading the input and
sending chunks (it was not timed apart here); once it, not the workers, is the bottleneck, split
the input into parquet parts and run one job per part. On 2 cores, dask's and spark's 2 workers
compete with the driver and with each other for the same 2 cores, so they cannot beat the local
engine here by much; their gain shows with cores the driver does not need. Memory: the local
engine holds about two chunks at a time whatever the input's size, a dask or spark worker one
chunk, the driver at most twice the workers' count of chunks in flight; the naive baseline holds
the whole file and its features, so its peak grows with the input (10x the rows: roughly 10x its
data memory), while the streaming engines' peak stays where it is.
"""


if __name__ == "__main__":
    sys.exit(main())
