"""Configuration keys `allow`, `data_dir` and `verify_tolerance`."""

from __future__ import annotations

from pathlib import Path

import pytest
from nbtest_helpers import cell, write_notebook

from nb2prod import api
from nb2prod.errors import InputError, NotebookErrors

CELLS = [
    cell("def load_points():\n    return [1, 2, 3]", cell_id="helpers"),
    cell("model = sum(load_points())", "train", cell_id="train"),
    cell('metrics = {"total": model}', "metrics"),
]


def _notebook(tmp_path: Path, **config) -> Path:
    return write_notebook(tmp_path / "allow.ipynb", [dict(c) for c in CELLS], {"nb2prod": config} if config else None)


def test_allowed_error_codes_become_notes_and_the_build_goes_through(tmp_path: Path):
    with pytest.raises(NotebookErrors) as caught:
        api.build(_notebook(tmp_path))
    (error,) = [f for f in caught.value.findings if f.severity == "error"]
    allowed = _notebook(tmp_path, allow=[error.code])
    result = api.build(allowed)
    (note,) = [f for f in result.notes if f.code == error.code]
    assert note.severity == "note" and note.location == error.location
    assert note.message == f"{error.message} (allowed by configuration: `allow`)"
    assert api.check(allowed).ok
    other = _notebook(tmp_path, allow=["some-other-code"])
    assert not api.check(other).ok  # only the codes named are allowed


@pytest.mark.parametrize(
    "config, message",
    [
        ({"allow": "untagged-mutation"}, "allow must be a list of finding codes"),
        ({"allow": ["Untagged Mutation"]}, "holds 'Untagged Mutation', which is not a finding code"),
        ({"verify_tolerance": {"r2": "small"}}, "verify_tolerance must be a table of metric names to non-negative"),
        ({"verify_tolerance": {"r2": -1}}, "verify_tolerance must be a table"),
        ({"data_dir": 3}, "data_dir must be a string"),
    ],
)
def test_bad_values_name_their_place(tmp_path: Path, config: dict, message: str):
    with pytest.raises(InputError, match="allow.ipynb metadata.nb2prod: ") as caught:
        api.inspect(_notebook(tmp_path, **config))
    assert message in caught.value.message


def test_verify_tolerance_from_pyproject(tmp_path: Path):
    from nb2prod.config import load_config

    (tmp_path / "pyproject.toml").write_text("[tool.nb2prod]\nverify_tolerance = {r2 = 1e-6, predictions = 0}\n")
    config = load_config(_notebook(tmp_path), {})
    assert config.verify_tolerance == {"r2": 1e-6, "predictions": 0.0}
    assert config.to_dict()["verify_tolerance"] == {"r2": 1e-6, "predictions": 0.0}
    assert "allow" not in config.to_dict()  # unset keys stay out of the build record
