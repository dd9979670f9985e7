"""Model artifacts: written with their sha256, loaded only when the sha256 still matches.

scikit-learn estimators are stored with skops (no arbitrary code runs on load) when a round trip
gives back a model that predicts the same on the training examples; anything else, or an
estimator skops cannot round-trip, is stored with joblib. The format is recorded in the run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from nb2prod.runs.errors import IntegrityError
from nb2prod.runs.hashing import sha256_file
from nb2prod.runs.record import ModelArtifact

MODEL_DIR = "model"


def qualified_type(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _is_sklearn_estimator(model: Any) -> bool:
    try:
        from sklearn.base import BaseEstimator
    except ImportError:
        return False
    return isinstance(model, BaseEstimator)


def _same_predictions(a: Any, b: Any, probe: Any) -> bool:
    if probe is None or not hasattr(a, "predict"):
        return type(a) is type(b)
    import numpy as np

    try:
        left = np.asarray(a.predict(probe))
        right = np.asarray(b.predict(probe))
    except Exception:  # a model that cannot predict on its own examples: compare types only
        return type(a) is type(b)
    if left.shape != right.shape:
        return False
    if left.dtype.kind in "fc":
        return bool(np.allclose(left, right, equal_nan=True))
    return bool((left == right).all())


def _try_skops(model: Any, path: Path, probe: Any) -> tuple[str, ...] | None:
    """Dump with skops and check the round trip; the accepted types, or None to fall back."""
    try:
        import skops.io as sio
    except ImportError:
        return None
    try:
        sio.dump(model, path)
        trusted = tuple(sorted(sio.get_untrusted_types(file=path)))
        restored = sio.load(path, trusted=list(trusted))
        if _same_predictions(model, restored, probe):
            return trusted
    except Exception:
        pass
    path.unlink(missing_ok=True)
    return None


def save_model(model: Any, run_dir: Path, variable: str, probe: Any = None, fmt: str = "auto") -> ModelArtifact:
    """Write `model` under `run_dir/model/` with a sha256sum-style `.sha256` file beside it."""
    folder = run_dir / MODEL_DIR
    folder.mkdir(parents=True, exist_ok=True)
    trusted: tuple[str, ...] = ()
    path = folder / "model.skops"
    chosen = None
    if fmt in ("auto", "skops") and _is_sklearn_estimator(model):
        accepted = _try_skops(model, path, probe)
        if accepted is not None:
            chosen, trusted = "skops", accepted
    if chosen is None:
        import joblib

        path = folder / "model.joblib"
        joblib.dump(model, path)
        chosen = "joblib"
    digest = sha256_file(path)
    (folder / "model.sha256").write_text(f"{digest}  {path.name}\n")
    return ModelArtifact(
        file=path.relative_to(run_dir).as_posix(),
        format=chosen,
        sha256=digest,
        size=path.stat().st_size,
        variable=variable,
        type=qualified_type(model),
        trusted_types=trusted,
    )


def verify_model(run_dir: Path, artifact: ModelArtifact) -> Path:
    path = run_dir / artifact.file
    if not path.is_file():
        raise IntegrityError(f"model file {path} is missing.")
    actual = sha256_file(path)
    if actual != artifact.sha256:
        raise IntegrityError(
            f"model file {path} was modified after the run was recorded: its sha256 is {actual[:12]}..., "
            f"the run recorded {artifact.sha256[:12]}...; refusing to load it."
        )
    return path


def load_model(run_dir: Path, artifact: ModelArtifact, *, trust_pickle: bool = False) -> Any:
    """Load a run's model after checking its sha256 (and, for skops, that it holds no new types).

    A joblib file is a pickle, which runs code when loaded: it is loaded only with `trust_pickle`
    (the run is signed with the configured key, or the user said they trust the store)."""
    path = verify_model(run_dir, artifact)
    if artifact.format == "skops":
        import skops.io as sio

        found = set(sio.get_untrusted_types(file=path))
        unexpected = found - set(artifact.trusted_types)
        if unexpected:
            raise IntegrityError(
                f"model file {path} holds types the run did not record ({', '.join(sorted(unexpected))}); refusing to load it."
            )
        return sio.load(path, trusted=sorted(found))
    if artifact.format == "joblib":
        if not trust_pickle:
            raise IntegrityError(
                f"model file {path} is a joblib (pickle) file, which can run code when loaded, and its run is not "
                "signed: configure the signing key the run was signed with (NB2PROD_SIGNING_KEY), or pass "
                "--trust-pickle if you trust whoever can write this store."
            )
        import joblib

        return joblib.load(path)
    raise IntegrityError(f"model file {path} has an unknown format {artifact.format!r}.")


def read_sha256_file(path: Path) -> str:
    return path.read_text().split()[0] if path.is_file() and os.path.getsize(path) else ""
