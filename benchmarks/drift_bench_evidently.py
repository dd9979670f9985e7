"""Evidently's side of benchmarks/drift_bench.py; runs in the benchmark's own virtual environment.

    python drift_bench_evidently.py file COLUMNS.json REFERENCE.parquet DATA.parquet
        one DataDriftPreset report of the whole file; prints {"seconds", "rows", "drifted", "dataset_drift"}
    python drift_bench_evidently.py windows COLUMNS.json REFERENCE.parquet WINDOWS.parquet
        one report per (window, rep, case) group; prints one JSON object per window

Drift per column is the preset's own verdict (its per-column test status with include_tests), with
the stattest and threshold the preset picks by default.
"""

from __future__ import annotations

import json
import sys
import time

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset


def verdict(snapshot) -> tuple[list[str], bool]:
    drifted, dataset = [], False
    for test in snapshot.dict()["tests"]:
        failed = test["status"] == "FAIL"
        params = test["metric_config"]["params"]
        if params["type"].endswith("ValueDrift"):
            if failed:
                drifted.append(params["column"])
        elif params["type"].endswith("DriftedColumnsCount"):
            dataset = failed
    return drifted, dataset


def run(definition: DataDefinition, reference: pd.DataFrame, current: pd.DataFrame) -> tuple[list[str], bool]:
    report = Report([DataDriftPreset()], include_tests=True)
    snapshot = report.run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    return verdict(snapshot)


def main() -> None:
    mode, columns_path, reference_path, data_path = sys.argv[1:5]
    with open(columns_path, encoding="utf-8") as handle:
        columns = json.load(handle)
    definition = DataDefinition(numerical_columns=columns["numeric"], categorical_columns=columns["categorical"])
    names = columns["numeric"] + columns["categorical"]
    if mode == "file":
        start = time.perf_counter()
        reference = pd.read_parquet(reference_path)[names]
        current = pd.read_parquet(data_path)[names]
        drifted, dataset = run(definition, reference, current)
        seconds = time.perf_counter() - start
        print(json.dumps({"seconds": seconds, "rows": len(current), "drifted": drifted, "dataset_drift": dataset}))
        return
    reference = pd.read_parquet(reference_path)[names]
    windows = pd.read_parquet(data_path)
    for (size, rep, case), frame in windows.groupby(["window", "rep", "case"], sort=True):
        current = frame[names].reset_index(drop=True)
        start = time.perf_counter()
        drifted, dataset = run(definition, reference, current)
        seconds = time.perf_counter() - start
        row = {"window": int(size), "rep": int(rep), "case": case, "seconds": seconds}
        print(json.dumps({**row, "drifted": drifted, "dataset_drift": dataset}), flush=True)


if __name__ == "__main__":
    main()
