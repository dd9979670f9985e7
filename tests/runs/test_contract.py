from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nb2prod.runs.contract import describe_data, find_fit_call, rows_for_model, to_jsonable


def test_fit_call_on_the_model_variable_wins():
    sources = [
        "scaler.fit(raw)\nmodel = Forest()\nmodel.fit(X_train, y_train)\nother.fit(Z)",
    ]
    call = find_fit_call(sources, "model")
    assert (call.expression, call.receiver, call.line) == ("X_train", "model", 3)


def test_fit_call_assigned_to_the_model_and_keyword_X():
    call = find_fit_call(["clf = make_pipeline(a, b).fit(X=features[cols], y=y)"], "clf")
    assert call.expression == "features[cols]"


def test_fit_call_falls_back_to_the_last_one_and_skips_broken_cells():
    call = find_fit_call(["%%time\nnot python", "a.fit(first)", "b.fit(build_features(df), y)"], "model")
    assert call.expression == "build_features(df)" and call.cell == 2
    assert find_fit_call(["x = 1"], "model") is None


def test_dataframe_contract_has_names_dtypes_and_examples():
    frame = pd.DataFrame({"amount": [1.5, np.nan, 3.0], "n": [1, 2, 3], "city": ["a", "b", "c"]})
    contract = describe_data(frame, "X")
    assert contract.kind == "dataframe" and contract.n_rows == 3
    assert [(f.name, f.dtype) for f in contract.features][:2] == [("amount", "float64"), ("n", "int64")]
    assert contract.examples[1] == {"amount": None, "n": 2, "city": "b"}


def test_array_and_list_contracts():
    contract = describe_data(np.arange(6, dtype="float32").reshape(3, 2), "X")
    assert contract.kind == "ndarray" and [f.name for f in contract.features] == ["x0", "x1"]
    assert contract.examples[2] == {"x0": 4.0, "x1": 5.0}
    texts = describe_data(["good", "bad"], "docs")
    assert texts.kind == "sequence" and texts.features[0].dtype == "str"


def test_rows_are_shaped_like_the_fitted_data():
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [1, 2]})
    contract = describe_data(frame, "X")
    shaped = rows_for_model([{"b": "3", "a": 1, "extra": 0}], contract)
    assert list(shaped.columns) == ["a", "b"] and str(shaped["b"].dtype) == "int64"
    with pytest.raises(ValueError, match="row 1 has no column 'b'"):
        rows_for_model([{"a": 1}], contract)


def test_to_jsonable_handles_numpy_and_pandas_values():
    value = {"i": np.int64(3), "f": np.float32(0.5), "t": pd.Timestamp("2026-01-01"), "n": float("nan")}
    assert to_jsonable(value) == {"i": 3, "f": 0.5, "t": "2026-01-01T00:00:00", "n": None}
