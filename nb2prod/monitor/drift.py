"""Data drift: current rows compared, column by column, with a run's baseline.

Numeric columns: the population stability index over ten bins of the baseline's deciles, and a
two-sample Kolmogorov-Smirnov test on the baseline's percentile edges. Categorical columns: PSI
over the categories and a chi-squared test of homogeneity. The tests' p-values are
Bonferroni-corrected for the number of columns compared; a column drifts when its corrected
p-value is below the threshold (default 0.001), or, when a PSI threshold is given, its PSI is above
it. PSI alone is noisy on small windows (docs/monitoring.md has the measured rates), so it is
reported but does not decide by default.

Rows arrive in chunks (`DriftAccumulator.add`); memory is the size of the baseline, whatever
the number of rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from nb2prod.monitor.baseline import Baseline, ColumnProfile, category_key

DEFAULT_ALPHA = 0.001
PSI_BINS = 10
_EPS = 1e-4


@dataclass(frozen=True)
class ColumnDrift:
    name: str
    section: str  # "inputs" | "features" | "score"
    kind: str
    test: str  # "ks" | "chi2" | "none"
    statistic: float | None
    p_value: float | None
    p_adjusted: float | None  # Bonferroni-corrected
    psi: float | None
    n_baseline: int
    n_current: int
    missing_rate_baseline: float
    missing_rate_current: float
    drifted: bool
    baseline_bins: tuple[float, ...] = ()  # proportions per PSI bin (for plots)
    current_bins: tuple[float, ...] = ()
    bin_labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class DriftReport:
    run_id: str
    rows: int
    alpha: float
    psi_threshold: float | None
    columns: tuple[ColumnDrift, ...]
    missing_columns: tuple[str, ...]  # baseline inputs absent from the data
    notes: tuple[str, ...] = ()

    @property
    def drifted(self) -> tuple[ColumnDrift, ...]:
        return tuple(c for c in self.columns if c.drifted)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {
            "run_id": self.run_id,
            "rows": self.rows,
            "alpha": self.alpha,
            "psi_threshold": self.psi_threshold,
            "drift": bool(self.drifted),
            "drifted": [c.name for c in self.drifted],
            "columns": [asdict(c) for c in self.columns],
            "missing_columns": list(self.missing_columns),
            "notes": list(self.notes),
        }


@dataclass
class _Counter:
    profile: ColumnProfile
    section: str
    n: int = 0
    missing: int = 0
    interval_counts: list[int] = field(default_factory=list)
    categories: dict[str, int] = field(default_factory=dict)

    def add(self, series: Any) -> None:
        import numpy as np
        import pandas as pd

        self.n += int(len(series))
        present = series.dropna()
        self.missing += int(len(series) - len(present))
        if self.profile.kind == "categorical":
            for value, n in present.value_counts().items():
                key = category_key(value)
                self.categories[key] = self.categories.get(key, 0) + int(n)
            return
        values = pd.to_numeric(present, errors="coerce").to_numpy(dtype=float)
        bad = int((~np.isfinite(values)).sum())
        self.missing += bad
        values = values[np.isfinite(values)]
        # values in (-inf, e0], (e0, e1], ..., (e_last, inf): binary searches of the edges in the sorted
        # values (a sort and 99 searches beat 99-edge searches for every value, about 3x)
        at_or_below = np.searchsorted(np.sort(values), np.asarray(self.profile.edges, dtype=float), side="right")
        counts = np.diff(np.concatenate(([0], at_or_below, [len(values)])))
        if not self.interval_counts:
            self.interval_counts = [0] * (len(self.profile.edges) + 1)
        for i, c in enumerate(counts.tolist()):
            self.interval_counts[i] += c


class DriftAccumulator:
    """Counts current rows into the baseline's bins, chunk by chunk."""

    def __init__(self, baseline: Baseline, sections: Iterable[str] = ("inputs", "score")):
        self.baseline = baseline
        self.counters: dict[tuple[str, str], _Counter] = {}
        for section in sections:
            for profile in baseline.profiles(section):
                self.counters[(section, profile.name)] = _Counter(profile, section)
        self.rows = 0
        self.seen: set[tuple[str, str]] = set()

    def add(self, frame: Any, score: Any = None) -> None:
        """A chunk of rows (a DataFrame of inputs) and, optionally, the model's scores for them."""
        self.rows += int(len(frame))
        for (section, name), counter in self.counters.items():
            if section == "score":
                if score is not None:
                    counter.add(score)
                    self.seen.add((section, name))
            elif name in frame.columns:
                counter.add(frame[name])
                self.seen.add((section, name))

    def report(self, run_id: str, alpha: float = DEFAULT_ALPHA, psi_threshold: float | None = None) -> DriftReport:
        compared = [c for key, c in self.counters.items() if key in self.seen and c.n - c.missing > 0]
        tests = max(1, sum(1 for c in compared if c.profile.kind == "categorical" or c.profile.edges))
        columns = tuple(_compare(c, tests, alpha, psi_threshold) for c in compared)
        missing = tuple(
            name for (section, name) in self.counters if section == "inputs" and (section, name) not in self.seen
        )
        notes = []
        if self.rows and self.rows < 500:
            notes.append(
                f"only {self.rows} rows: the tests have little power on fewer than 500 rows, and PSI is noisy there"
            )
        return DriftReport(run_id, self.rows, alpha, psi_threshold, columns, missing, tuple(notes))


def _psi(baseline: list[float], current: list[float]) -> float:
    total = 0.0
    for b, c in zip(baseline, current):
        b, c = max(b, _EPS), max(c, _EPS)
        total += (c - b) * math.log(c / b)
    return total


def _decile_groups(counts: tuple[int, ...]) -> list[int]:
    """Which of PSI_BINS bins each baseline interval falls in: consecutive intervals, ~10% each."""
    total = sum(counts) or 1
    groups, before = [], 0
    for c in counts:
        groups.append(min(PSI_BINS - 1, int(PSI_BINS * before / total + 1e-9)))
        before += c
    return groups


MIN_EXPECTED = 5.0


def _pool_rare(base: list[int], current: list[int]) -> tuple[list[int], list[int]]:
    """Pool the categories whose expected count in the current sample is under 5 (Cochran's
    rule; the chi-squared approximation fails on them: a category seen 6 times in 5,000
    training rows, met once in a 100-row window, alone gave a p-value near 0.001) into one
    cell, growing it with the next rarest until its own expectation reaches 5; returns the
    two count vectors over the cells kept and the pool (last). The server's live window
    (serve/shipped/drift_window.py, standard library only) pools the same way."""
    n_base, n_current = sum(base), sum(current)
    total = n_base + n_current
    if not n_base or not n_current:
        return base, current
    expected = [n_current * (b + c) / total for b, c in zip(base, current)]
    order = sorted(range(len(base)), key=lambda i: (expected[i], i))
    pooled: list[int] = []
    pooled_expected = 0.0
    for i in order:
        if expected[i] >= MIN_EXPECTED and (not pooled or pooled_expected >= MIN_EXPECTED):
            break
        pooled.append(i)
        pooled_expected += expected[i]
    if len(pooled) < 2:
        return base, current
    kept = [i for i in range(len(base)) if i not in set(pooled)]
    return (
        [base[i] for i in kept] + [sum(base[i] for i in pooled)],
        [current[i] for i in kept] + [sum(current[i] for i in pooled)],
    )


def _chi2_homogeneity(base: list[int], cur: list[int]) -> tuple[float, float]:
    """Pearson's chi-squared test of homogeneity of two count vectors (no continuity correction):
    scipy.stats.chi2_contingency's statistic and p-value, from scipy.special, which imports in a
    fraction of scipy.stats's time."""
    from scipy import special

    n_base, n_cur = sum(base), sum(cur)
    total = n_base + n_cur
    statistic = 0.0
    for b, c in zip(base, cur):
        column = b + c
        for observed, row in ((b, n_base), (c, n_cur)):
            expected = row * column / total
            statistic += (observed - expected) ** 2 / expected
    return statistic, float(special.chdtrc(len(base) - 1, statistic))


def _compare(counter: _Counter, tests: int, alpha: float, psi_threshold: float | None) -> ColumnDrift:
    from scipy import special

    profile = counter.profile
    n_base = profile.count - profile.missing
    n_cur = counter.n - counter.missing
    statistic = p_value = None
    if profile.kind == "categorical":
        keys = sorted(set(profile.categories) | set(counter.categories))
        base = [profile.categories.get(k, 0) for k in keys]
        cur = [counter.categories.get(k, 0) for k in keys]
        psi = _psi([b / n_base for b in base], [c / n_cur for c in cur]) if n_base else None
        test = "chi2"
        pooled_base, pooled_cur = _pool_rare(base, cur)
        if len(pooled_base) > 1 and n_base:
            statistic, p_value = _chi2_homogeneity(pooled_base, pooled_cur)
        labels = tuple(keys)
        base_bins = tuple(b / n_base if n_base else 0.0 for b in base)
        cur_bins = tuple(c / n_cur for c in cur)
    elif profile.edges:
        test = "ks"
        groups = _decile_groups(profile.counts)
        base_bins_l = [0.0] * PSI_BINS
        cur_bins_l = [0.0] * PSI_BINS
        for i, g in enumerate(groups):
            base_bins_l[g] += profile.counts[i] / n_base
            cur_bins_l[g] += counter.interval_counts[i] / n_cur
        used = sorted(set(groups))
        base_bins = tuple(base_bins_l[g] for g in used)
        cur_bins = tuple(cur_bins_l[g] for g in used)
        psi = _psi(list(base_bins), list(cur_bins))
        cum_b = cum_c = 0.0
        d = 0.0
        for b, c in zip(profile.counts[:-1], counter.interval_counts[:-1]):
            cum_b += b / n_base
            cum_c += c / n_cur
            d = max(d, abs(cum_b - cum_c))
        statistic = d
        effective = n_base * n_cur / (n_base + n_cur)
        p_value = float(special.kolmogorov(d * math.sqrt(effective)))  # = scipy.stats.kstwobign.sf
        labels = tuple(_decile_label(profile, groups, g) for g in used)
    else:
        test, psi, base_bins, cur_bins, labels = "none", None, (), (), ()
    p_adjusted = min(1.0, p_value * tests) if p_value is not None else None
    drifted = (p_adjusted is not None and p_adjusted < alpha) or (
        psi_threshold is not None and psi is not None and psi > psi_threshold
    )
    return ColumnDrift(
        profile.name,
        counter.section,
        profile.kind,
        test,
        statistic,
        p_value,
        p_adjusted,
        psi,
        n_base,
        n_cur,
        profile.missing_rate,
        counter.missing / counter.n if counter.n else 0.0,
        bool(drifted),
        base_bins,
        cur_bins,
        labels,
    )


def _decile_label(profile: ColumnProfile, groups: list[int], group: int) -> str:
    members = [i for i, g in enumerate(groups) if g == group]
    lo = profile.edges[members[0] - 1] if members[0] > 0 else None
    hi = profile.edges[members[-1]] if members[-1] < len(profile.edges) else None
    left = f"{lo:.4g}" if lo is not None else "-inf"
    right = f"{hi:.4g}" if hi is not None else "inf"
    return f"({left}, {right}]"
