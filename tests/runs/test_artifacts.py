from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from nb2prod.runs.artifacts import load_model, save_model
from nb2prod.runs.errors import IntegrityError
from nb2prod.runs.hashing import sha256_file
from nb2prod.runs.store import RunStore

from .conftest import record_run, small_data


def shift(X):
    return X + 1.0


class Doubler:
    """Not a scikit-learn estimator: stored with joblib."""

    def predict(self, X):
        return np.asarray(X)[:, 0] * 2


def test_sklearn_model_is_stored_with_skops_and_loads_back(tmp_path):
    X, y = small_data()
    model = make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=5, random_state=0)).fit(X, y)
    artifact = save_model(model, tmp_path, "model", probe=X)
    assert artifact.format == "skops" and artifact.file == "model/model.skops"
    assert artifact.sha256 == sha256_file(tmp_path / artifact.file)
    assert (tmp_path / "model" / "model.sha256").read_text() == f"{artifact.sha256}  model.skops\n"
    assert artifact.type == "sklearn.pipeline.Pipeline"
    again = load_model(tmp_path, artifact)
    assert (again.predict(X) == model.predict(X)).all()


def test_other_models_fall_back_to_joblib(tmp_path):
    artifact = save_model(Doubler(), tmp_path, "m")
    assert artifact.format == "joblib" and artifact.variable == "m"
    with pytest.raises(IntegrityError, match="pickle"):  # a pickle runs code: loaded only when trusted
        load_model(tmp_path, artifact)
    assert load_model(tmp_path, artifact, trust_pickle=True).predict(np.ones((2, 1))).tolist() == [2.0, 2.0]


def test_sklearn_model_with_a_custom_function_records_its_types(tmp_path):
    X, y = small_data()
    model = make_pipeline(FunctionTransformer(shift), StandardScaler()).fit(X, y)
    artifact = save_model(model, tmp_path, "model", probe=X)
    assert artifact.format == "skops"
    assert artifact.trusted_types == (f"{__name__}.shift",)
    assert np.allclose(load_model(tmp_path, artifact).transform(X), model.transform(X))


def test_forced_joblib_format(tmp_path):
    X, y = small_data()
    model = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y)
    artifact = save_model(model, tmp_path, "model", probe=X, fmt="joblib")
    assert artifact.format == "joblib"
    assert (load_model(tmp_path, artifact, trust_pickle=True).predict(X) == model.predict(X)).all()


def test_a_tampered_model_is_refused_before_unpickling(store: RunStore):
    run = record_run(store)
    path = run.path / run.manifest.model.file
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="was modified after the run was recorded"):
        load_model(run.path, run.manifest.model)


def test_a_missing_model_is_one_clear_error(store: RunStore):
    run = record_run(store)
    path = run.path / run.manifest.model.file
    run.path.joinpath("model").chmod(0o755)
    path.unlink()
    with pytest.raises(IntegrityError, match="is missing"):
        load_model(run.path, run.manifest.model)
