"""The drift tests' p-values, computed from scipy.special, agree with scipy.stats's own tests."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special, stats

from nb2prod.monitor.drift import _chi2_homogeneity


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("categories", [2, 3, 10])
def test_chi2_homogeneity_matches_chi2_contingency(seed: int, categories: int) -> None:
    rng = np.random.default_rng(seed)
    base = (rng.integers(1, 400, categories)).tolist()
    cur = (rng.integers(0, 100, categories) + 1).tolist()
    statistic, p_value = _chi2_homogeneity(base, cur)
    expected_statistic, expected_p, _, _ = stats.chi2_contingency([base, cur], correction=False)
    assert statistic == pytest.approx(expected_statistic, rel=1e-9)
    assert p_value == pytest.approx(expected_p, rel=1e-9, abs=1e-300)


def test_a_category_unseen_in_the_baseline_counts() -> None:
    statistic, p_value = _chi2_homogeneity([500, 500, 0], [100, 100, 50])
    assert statistic > 100 and p_value < 1e-20


@pytest.mark.parametrize("x", [0.3, 0.8, 1.36, 2.5])
def test_kolmogorov_is_the_ks_limit_distribution(x: float) -> None:
    assert special.kolmogorov(x) == pytest.approx(stats.kstwobign.sf(x), rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_interval_counts_match_a_per_value_search(seed: int) -> None:
    """Values in (-inf, e0], (e0, e1], ..., (e_last, inf), values equal to an edge included."""
    import pandas as pd

    from nb2prod.monitor.baseline import profile_column
    from nb2prod.monitor.drift import _Counter

    rng = np.random.default_rng(seed)
    profile = profile_column("x", pd.Series(rng.normal(size=5000)))
    values = np.concatenate([rng.normal(size=3000), np.asarray(profile.edges[:10]), [np.nan, np.inf]])
    counter = _Counter(profile, "inputs")
    counter.add(pd.Series(values))
    expected = np.bincount(
        np.searchsorted(profile.edges, values[np.isfinite(values)]), minlength=len(profile.edges) + 1
    )
    assert counter.interval_counts == expected.tolist()
    assert counter.n == len(values) and counter.missing == 2


def _false_alarm_rate(pool: bool, windows: int = 2000, rows: int = 100, alpha: float = 0.001) -> float:
    """Share of windows drawn from the baseline's own frequencies that the chi-squared test flags."""
    from nb2prod.monitor.drift import _pool_rare

    base = [3600, 1100, 230, 50, 14, 5, 1]  # a Poisson-like count column: rare high values
    rng = np.random.default_rng(7)
    shares = np.array(base) / sum(base)
    alarms = 0
    for _ in range(windows):
        cur = rng.multinomial(rows, shares).tolist()
        b, c = _pool_rare(base, cur) if pool else (base, cur)
        alarms += _chi2_homogeneity(b, c)[1] < alpha
    return alarms / windows


def test_rare_categories_are_pooled_so_unshifted_windows_rarely_alarm() -> None:
    unpooled, pooled = _false_alarm_rate(pool=False), _false_alarm_rate(pool=True)
    assert unpooled > 0.01  # 2.1% here, 21 times the nominal 0.1%: the rare values decide the test
    assert pooled <= 0.005  # 0.15% here, near the nominal 0.1%


def test_pooling_keeps_a_new_frequent_category_and_a_real_shift_visible() -> None:
    from nb2prod.monitor.drift import _pool_rare

    base, cur = _pool_rare([3600, 1100, 230, 50, 14, 5, 1, 0], [40, 10, 2, 0, 0, 0, 0, 48])
    assert _chi2_homogeneity(base, cur)[1] < 1e-10
    base, cur = _pool_rare([3600, 1100, 230, 50, 14, 5, 1], [20, 40, 30, 10, 0, 0, 0])
    assert _chi2_homogeneity(base, cur)[1] < 1e-10


def test_the_server_pools_as_nb2prod_drift_does() -> None:
    from nb2prod.monitor.drift import _pool_rare
    from nb2prod.serve.shipped.drift_window import pool_rare

    rng = np.random.default_rng(3)
    for _ in range(200):
        k = int(rng.integers(2, 12))
        base = rng.integers(0, 400, k).tolist()
        cur = rng.integers(0, 30, k).tolist()
        assert pool_rare(base, cur) == _pool_rare(base, cur)
