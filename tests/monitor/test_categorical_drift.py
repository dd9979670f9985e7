"""`nb2prod drift` on categorical inputs (chi-squared over the categories) and numeric ones (KS) of
both examples: the churn example (`contract`, `support_calls`: integer codes with few values) and
the fraud example (`merchant_category`), with data made by each notebook's own generator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nb2prod.monitor.baseline import read_baseline
from nb2prod.runs.store import RunStore

from .conftest import cli

CHURN_INPUTS = ["tenure_months", "monthly_charges", "support_calls", "contract"]


def _drift(run: dict, data: Path) -> tuple[int, dict]:
    result = cli("drift", str(run["run"]), str(data), "--store", str(run["store"]), "--format", "json")
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def _by_name(report: dict) -> dict[str, dict]:
    return {c["name"]: c for c in report["columns"] if c["section"] == "inputs"}


def test_churn_baseline_profiles_codes_as_categories(churn_run) -> None:
    baseline = read_baseline(RunStore(churn_run["store"]).get(str(churn_run["run"])).path)
    kinds = {p.name: p.kind for p in baseline.inputs}
    assert kinds["contract"] == "categorical" and kinds["support_calls"] == "categorical"
    assert kinds["tenure_months"] == "numeric" and kinds["monthly_charges"] == "numeric"
    contract = next(p for p in baseline.inputs if p.name == "contract")
    assert set(contract.categories) == {"0", "1", "2"} and sum(contract.categories.values()) == contract.count


@pytest.mark.parametrize("seed", [11, 22, 33, 44, 55])
def test_churn_no_alarm_on_fresh_customers(churn_run, customers, tmp_path: Path, seed: int) -> None:
    path = tmp_path / "fresh.csv"
    customers(1500, seed)[CHURN_INPUTS].to_csv(path, index=False)
    code, report = _drift(churn_run, path)
    assert code == 0, report["drifted"]
    columns = _by_name(report)
    assert columns["contract"]["test"] == "chi2" and columns["support_calls"]["test"] == "chi2"
    assert columns["tenure_months"]["test"] == "ks" and columns["monthly_charges"]["test"] == "ks"
    assert all(c["p_adjusted"] >= 0.001 for c in columns.values())
    assert any(c["section"] == "score" for c in report["columns"])  # scored by the run's model


def test_churn_alarm_when_contract_mix_shifts(churn_run, customers, tmp_path: Path) -> None:
    """A month-to-month promotion: the contract codes' frequencies move from 50/30/20% to 75/15/10%."""
    frame = customers(1500, 66)[CHURN_INPUTS].copy()
    rng = np.random.default_rng(66)
    frame["contract"] = rng.choice([0, 1, 2], len(frame), p=[0.75, 0.15, 0.10])
    path = tmp_path / "promotion.parquet"
    frame.to_parquet(path)
    code, report = _drift(churn_run, path)
    assert code == 1
    columns = _by_name(report)
    assert columns["contract"]["drifted"] and columns["contract"]["test"] == "chi2"
    assert columns["contract"]["p_adjusted"] < 0.001 and columns["contract"]["psi"] > 0.1
    assert not any(columns[name]["drifted"] for name in ("tenure_months", "monthly_charges", "support_calls"))


def test_churn_alarm_when_support_calls_rise(churn_run, customers, tmp_path: Path) -> None:
    """An outage: support calls per customer go from Poisson(1.5) to Poisson(2.5)."""
    frame = customers(1500, 77)[CHURN_INPUTS].copy()
    frame["support_calls"] = np.random.default_rng(77).poisson(2.5, len(frame))
    path = tmp_path / "outage.csv"
    frame.to_csv(path, index=False)
    code, report = _drift(churn_run, path)
    assert code == 1
    columns = _by_name(report)
    assert columns["support_calls"]["drifted"] and columns["support_calls"]["test"] == "chi2"
    assert not columns["contract"]["drifted"] and not columns["tenure_months"]["drifted"]


def test_churn_alarm_on_a_price_rise(churn_run, customers, tmp_path: Path) -> None:
    """Numeric: every monthly charge 15 higher (uniform 20-120 becomes 35-135)."""
    frame = customers(1500, 88)[CHURN_INPUTS].copy()
    frame["monthly_charges"] = frame["monthly_charges"] + 15.0
    path = tmp_path / "price.csv"
    frame.to_csv(path, index=False)
    code, report = _drift(churn_run, path)
    assert code == 1
    columns = _by_name(report)
    assert columns["monthly_charges"]["drifted"] and columns["monthly_charges"]["test"] == "ks"
    assert not columns["contract"]["drifted"] and not columns["support_calls"]["drifted"]


def test_fraud_alarm_when_the_merchant_mix_shifts(fraud_run, transactions, tmp_path: Path) -> None:
    """Fraud example, categorical: electronics and marketplaces (codes 7, 8) triple their share."""
    frame = transactions(2000, 31).copy()
    mix = np.array([0.13, 0.12, 0.11, 0.10, 0.08, 0.08, 0.06, 0.15, 0.12, 0.05])
    frame["merchant_category"] = np.random.default_rng(31).choice(10, len(frame), p=mix / mix.sum())
    path = tmp_path / "merchants.csv"
    frame.to_csv(path, index=False)
    code, report = _drift(fraud_run, path)
    assert code == 1
    columns = _by_name(report)
    assert columns["merchant_category"]["drifted"] and columns["merchant_category"]["test"] == "chi2"
    assert not any(columns[name]["drifted"] for name in ("amount", "hour", "distance_from_home", "card_present"))


@pytest.mark.parametrize("seed", [61, 62, 63])
def test_fraud_no_alarm_on_fresh_categorical_inputs(fraud_run, transactions, tmp_path: Path, seed: int) -> None:
    path = tmp_path / "fresh.csv"
    transactions(3000, seed).to_csv(path, index=False)
    code, report = _drift(fraud_run, path)
    assert code == 0, report["drifted"]
    columns = _by_name(report)
    categorical = [name for name, c in columns.items() if c["test"] == "chi2"]
    assert {"merchant_category", "card_present"} <= set(categorical)
