"""The input contract of what predict receives, and the one validator serving, scoring and drift use."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nb2prod import api
from nb2prod.runs.contract import (
    CONTRACT_RULES,
    InputContract,
    Violation,
    as_input_contract,
    describe_data,
    population_expression,
    serving_contract,
    validate_records,
)
from nb2prod.runs.store import RunStore

from .conftest import cli, copy_example

FRAME = pd.DataFrame(
    {
        "amount": [1.5, 2.0, np.nan, 10.0] * 10,
        "count": [1, 2, 3, 4] * 10,
        "city": ["a", "b", "c", "a"] * 10,
        "flag": [True, False] * 20,
        "score": np.linspace(-1.0, 1.0, 40),
    }
)
GOOD = {"amount": 2.5, "count": 3, "city": "b", "flag": False, "score": 0.0}


@pytest.fixture(scope="module")
def contract():
    return describe_data(FRAME.head(), "FRAME.head()", population=FRAME)


def rules(violations: list[Violation]) -> list[tuple[int, str, str, str]]:
    return [(v.row, v.field, v.rule, v.severity) for v in violations]


def test_fields_record_kind_nullability_range_and_categories(contract):
    by_name = {f.name: f for f in contract.features}
    assert (by_name["amount"].kind, by_name["amount"].nullable) == ("float", True)
    assert (by_name["amount"].min, by_name["amount"].max, by_name["amount"].categories) == (1.5, 10.0, None)
    assert (by_name["count"].kind, by_name["count"].nullable, by_name["count"].categories) == (
        "int",
        False,
        (1, 2, 3, 4),
    )
    assert by_name["city"].categories == ("a", "b", "c") and by_name["city"].kind == "str"
    assert by_name["flag"].kind == "bool" and by_name["score"].categories is None
    # stats from the 40 rows the examples were cut from, examples from the 5 rows
    assert contract.n_rows == 40 and contract.stats_expression == "FRAME" and len(contract.examples) == 5


def test_a_good_record_and_the_examples_pass(contract):
    assert validate_records([GOOD], contract) == []
    assert validate_records(list(contract.examples), contract) == []


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"amount": None}, []),  # amount had missing values in training
        ({"count": None}, [(0, "count", "null", "error")]),
        ({"amount": "abc"}, [(0, "amount", "not-a-number", "error")]),
        ({"amount": float("inf")}, [(0, "amount", "not-a-number", "error")]),
        ({"amount": "2.5"}, [(0, "amount", "type", "error")]),
        ({"amount": True}, [(0, "amount", "type", "error")]),
        ({"count": 2.5}, [(0, "count", "type", "error")]),
        ({"count": 2.0}, []),
        ({"city": 3}, [(0, "city", "type", "error")]),
        ({"flag": 1}, [(0, "flag", "type", "error")]),
        ({"extra": 1}, [(0, "extra", "unknown", "error")]),
        ({"score": 5.0}, [(0, "score", "range", "warning")]),
        ({"city": "z"}, [(0, "city", "category", "warning")]),
        ({"count": 9}, [(0, "count", "category", "warning")]),
    ],
)
def test_each_rule(contract, change, expected):
    assert rules(validate_records([{**GOOD, **change}], contract)) == expected


def test_missing_field_and_row_numbers(contract):
    record = dict(GOOD)
    del record["score"]
    violations = validate_records([GOOD, record, "not a record"], contract)
    assert rules(violations) == [(1, "score", "missing", "error"), (2, "", "type", "error")]
    assert "score" in violations[0].message and violations[0].to_dict()["rule"] == "missing"


def test_strict_ranges_make_range_and_category_errors(contract):
    records = [{**GOOD, "score": -3.0}, {**GOOD, "city": "q"}]
    assert rules(validate_records(records, contract, strict_ranges=True)) == [
        (0, "score", "range", "error"),
        (1, "city", "category", "error"),
    ]
    assert {v.rule for v in validate_records(records, contract)} <= set(CONTRACT_RULES)


def test_the_contract_round_trips_through_json(contract):
    from dataclasses import asdict

    recorded = json.loads(json.dumps(asdict(contract)))
    as_dict = as_input_contract(recorded)
    assert isinstance(as_dict, InputContract) and as_dict == as_input_contract(contract)
    assert as_input_contract(as_dict.to_dict()) == as_dict
    bad = {**GOOD, "count": "x"}
    assert validate_records([bad], recorded) == validate_records([bad], contract)


def test_population_expression():
    assert population_expression("test_df[RAW_COLUMNS].head()") == "test_df[RAW_COLUMNS]"
    assert population_expression("X[:5]") == "X"
    assert population_expression("X.iloc[:3]") == "X"
    assert population_expression("X.sample(5, random_state=0)") == "X"
    assert population_expression("X") is None and population_expression("not python (") is None


def test_the_shipped_runtime_validates_alone(tmp_path, monkeypatch, contract):
    """The generated package's `_runtime.py` (standard library only) gives the same violations."""
    source = Path(__file__).resolve().parents[2] / "nb2prod" / "runtime.py"
    shipped = tmp_path / "_runtime.py"
    shipped.write_bytes(source.read_bytes())
    spec = importlib.util.spec_from_file_location("shipped_runtime", shipped)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "shipped_runtime", module)
    spec.loader.exec_module(module)
    records = [{**GOOD, "amount": "abc", "extra": 2}, {**GOOD, "score": 9.0}]
    from dataclasses import asdict

    recorded = json.loads(json.dumps(asdict(contract)))
    theirs = [v.to_dict() for v in module.validate_records(records, recorded)]
    ours = [v.to_dict() for v in validate_records(records, contract)]
    assert theirs == ours and len(ours) == 3


def test_training_records_the_contract_of_what_predict_receives(tmp_path):
    """The fraud example: predict receives raw transaction columns, not the model's features."""
    notebook = copy_example("fraud", tmp_path / "fraud")
    build = Path(api.build(notebook).output_dir)
    store = tmp_path / "store"
    settings = ["-p", "n_transactions", "3000", "-p", "n_estimators", "5", "-p", "min_recall", "0", "-p"]
    result = cli(
        "train",
        str(build),
        "--engine",
        "python",
        "--store",
        str(store),
        "--format",
        "json",
        *settings,
        "min_precision",
        "0",
    )
    assert result.returncode == 0, result.stderr
    run = RunStore(store).get(json.loads(result.stdout)["run_id"])
    contract = serving_contract(run.manifest)
    assert contract.names == (
        "amount",
        "hour",
        "merchant_category",
        "distance_from_home",
        "card_present",
        "velocity_1h",
    )
    fields = {f.name: f for f in contract.fields}
    assert fields["amount"].kind == "float" and fields["amount"].min > 0 and fields["amount"].max > fields["amount"].min
    assert fields["card_present"].categories == (0, 1) and fields["merchant_category"].categories == tuple(range(10))
    assert not any(f.nullable for f in contract.fields)
    assert (
        run.manifest.predict_inputs.n_rows == 750
        and run.manifest.predict_inputs.stats_expression == "test_df[RAW_COLUMNS]"
    )
    assert validate_records(list(contract.examples), contract) == []
    bad = rules(validate_records([{**contract.examples[0], "amount": "abc"}], contract))
    assert bad == [(0, "amount", "not-a-number", "error")]
    # the fitted contract is the model's features, also with ranges
    assert "log_amount" in {f.name for f in run.manifest.contract.features}
    assert all(f.kind is not None for f in run.manifest.contract.features)
