"""False-alarm and detection rates of `nb2prod drift`'s tests, measured on synthetic data.

Ten independent standard-normal features; a baseline of 10,000 training rows (profiled exactly as
training profiles them); windows of 100, 500 and 1,000 rows drawn either from the same
distribution (any alarm is false) or with one feature shifted by 0.25 standard deviations (an
alarm on that feature is a detection). Reports, per window size, the share of windows that raise
an alarm under: the default rule (Kolmogorov-Smirnov, Bonferroni-corrected p < 0.001), and PSI
above 0.1 and 0.2. Also the accumulator's speed in rows/s.

    python benchmarks/drift_rates.py [--replications 300] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd

from nb2prod.monitor.baseline import Baseline, profile_frame
from nb2prod.monitor.drift import DriftAccumulator

FEATURES = [f"f{i}" for i in range(10)]


def rates(replications: int, seed: int) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    train = pd.DataFrame(rng.normal(size=(10_000, len(FEATURES))), columns=FEATURES)
    baseline = Baseline(profile_frame(train), (), None)
    rows = []
    for window in (100, 500, 1000):
        counts = {("none", rule): 0 for rule in ("ks", "psi>0.1", "psi>0.2")}
        counts.update({("shift", rule): 0 for rule in ("ks", "psi>0.1", "psi>0.2")})
        for _ in range(replications):
            for case in ("none", "shift"):
                sample = pd.DataFrame(rng.normal(size=(window, len(FEATURES))), columns=FEATURES)
                if case == "shift":
                    sample["f0"] += 0.25
                accumulator = DriftAccumulator(baseline, sections=("inputs",))
                accumulator.add(sample)
                report = accumulator.report("bench")
                columns = report.columns if case == "none" else [c for c in report.columns if c.name == "f0"]
                counts[(case, "ks")] += any(c.drifted for c in columns)
                counts[(case, "psi>0.1")] += any((c.psi or 0) > 0.1 for c in columns)
                counts[(case, "psi>0.2")] += any((c.psi or 0) > 0.2 for c in columns)
        for rule in ("ks", "psi>0.1", "psi>0.2"):
            rows.append(
                {
                    "window": window,
                    "rule": rule,
                    "false_alarm": counts[("none", rule)] / replications,
                    "detection": counts[("shift", rule)] / replications,
                }
            )
    return rows


def speed(seed: int) -> float:
    rng = np.random.default_rng(seed)
    train = pd.DataFrame(rng.normal(size=(10_000, len(FEATURES))), columns=FEATURES)
    accumulator = DriftAccumulator(Baseline(profile_frame(train), (), None), sections=("inputs",))
    chunk = pd.DataFrame(rng.normal(size=(100_000, len(FEATURES))), columns=FEATURES)
    start = time.perf_counter()
    for _ in range(10):
        accumulator.add(chunk)
    accumulator.report("bench")
    return 1_000_000 / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replications", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"{args.replications} replications per window, seed {args.seed}, load average {load:.1f}")
    print("| window | rule | false alarms (no shift) | detection (0.25 sd on one feature) |")
    print("|---:|---|---:|---:|")
    for row in rates(args.replications, args.seed):
        print(f"| {row['window']} | {row['rule']} | {row['false_alarm']:.1%} | {row['detection']:.1%} |")
    print(f"\naccumulator: {speed(args.seed):,.0f} rows/s (10 numeric features, chunks of 100,000 rows)")


if __name__ == "__main__":
    main()
