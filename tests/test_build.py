"""Building: the written tree, determinism, black stability, atomic writes, hand edits, check."""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import black
import pytest
from nbtest_helpers import EXAMPLES, FIXTURES, cell, write_notebook

from nb2prod import api
from nb2prod.errors import NotebookErrors, OutputConflict


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_build_writes_the_layout(small_notebook: Path, tmp_path: Path) -> None:
    result = api.build(small_notebook, output=tmp_path / "out")
    files = set(tree(tmp_path / "out"))
    for expected in [
        "pyproject.toml",
        "nb2prod.json",
        "requirements.lock",
        "Dockerfile",
        ".dockerignore",
        "job/train.ipynb",
        "src/small/__init__.py",
        "src/small/core.py",
        "src/small/params.py",
        "src/small/train.py",
        "src/small/predict.py",
        "tests/test_notebook.py",
        "tests/test_contract.py",
    ]:
        assert expected in files
    assert result.changed and result.package == "small"
    manifest = json.loads((tmp_path / "out" / "nb2prod.json").read_text())
    assert manifest["parameters"]["scale"] == {"type": "float", "default": 2.0, "help": "multiplier", "nullable": False}
    assert manifest["source"]["sha256"] == __import__("hashlib").sha256(small_notebook.read_bytes()).hexdigest()
    placed = {(p["file"], p["cell"]) for p in manifest["placements"]}
    assert ("src/small/core.py", 1) in placed and ("src/small/_job.py", 2) in placed


def test_default_output_is_beside_the_notebook(small_notebook: Path) -> None:
    result = api.build(small_notebook)
    assert result.output_dir == small_notebook.parent / "build" / "small"


def test_two_builds_are_byte_identical(tmp_path: Path) -> None:
    notebook = EXAMPLES / "fraud" / "fraud_detection.ipynb"
    api.build(notebook, output=tmp_path / "a" / "fraud")
    api.build(notebook, output=tmp_path / "b" / "fraud")
    assert tree(tmp_path / "a" / "fraud") == tree(tmp_path / "b" / "fraud")
    again = api.build(notebook, output=tmp_path / "a" / "fraud")
    assert not again.changed


@pytest.mark.parametrize("example", ["fraud/fraud_detection.ipynb", "churn/churn.ipynb"])
def test_generated_python_parses_and_is_black_stable(tmp_path: Path, example: str) -> None:
    api.build(EXAMPLES / example, output=tmp_path / "out")
    python_files = [p for p in (tmp_path / "out").rglob("*.py")]
    assert len(python_files) >= 8
    for path in python_files:
        text = path.read_text()
        ast.parse(text, str(path))
        assert black.format_str(text, mode=black.Mode()) == text, f"black would change {path.name}"
    job = json.loads((tmp_path / "out" / "job" / "train.ipynb").read_text())
    assert job["cells"][1]["metadata"]["tags"] == ["parameters"]
    for item in job["cells"]:
        if item["cell_type"] == "code":
            ast.parse("".join(item["source"]))


def test_failed_build_leaves_previous_output_intact(tmp_path: Path) -> None:
    path = write_notebook(
        tmp_path / "nb.ipynb",
        [cell("import math\ndef f(x):\n    return math.sqrt(x)", "export"), cell("model = f(4)", "train")],
    )
    out = tmp_path / "out"
    api.build(path, output=out)
    before = tree(out)
    write_notebook(path, [cell("def f(x):\n    return x +", "export"), cell("model = f(4)", "train")])
    with pytest.raises(NotebookErrors):
        api.build(path, output=out)
    assert tree(out) == before
    assert [p.name for p in tmp_path.iterdir() if "nb2prod" in p.name] == []


def test_hand_edit_is_refused_without_force(small_notebook: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    api.build(small_notebook, output=out)
    core = out / "src" / "small" / "core.py"
    core.write_text(core.read_text() + "\nHAND_EDIT = 1\n")
    with pytest.raises(OutputConflict, match="core.py was edited by hand"):
        api.build(small_notebook, output=out)
    assert "HAND_EDIT" in core.read_text()
    api.build(small_notebook, output=out, force=True)
    assert "HAND_EDIT" not in core.read_text()


def test_user_files_in_the_output_are_kept(small_notebook: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    api.build(small_notebook, output=out)
    (out / "NOTES.txt").write_text("mine")
    write_notebook(small_notebook, [cell("model = 2", "train")])
    api.build(small_notebook, output=out)
    assert (out / "NOTES.txt").read_text() == "mine"
    assert not (out / "src" / "small" / "core.py").exists()


def test_foreign_output_folder_is_refused(small_notebook: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("x")
    with pytest.raises(OutputConflict, match="was not written by nb2prod"):
        api.build(small_notebook, output=out)
    assert (out / "precious.txt").read_text() == "x"


def test_check_fresh_stale_and_errors(small_notebook: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert api.check(small_notebook, output=out).stale
    api.build(small_notebook, output=out)
    assert api.check(small_notebook, output=out).ok
    data = json.loads(small_notebook.read_text())
    data["cells"][2]["source"] = "values = [grow(i) for i in range(n)]\nmodel = min(values)"
    small_notebook.write_text(json.dumps(data))
    result = api.check(small_notebook, output=out)
    assert result.stale and any("_job.py" in r for r in result.reasons)
    data["cells"][2]["source"] = "model = undefined_thing"
    small_notebook.write_text(json.dumps(data))
    result = api.check(small_notebook, output=out)
    assert not result.ok and result.errors


def test_generated_code_never_carries_notebook_text_as_code(tmp_path: Path) -> None:
    evil_help = 'x"""; import os; os.system("boom") #'
    path = write_notebook(
        tmp_path / "nb.ipynb",
        [
            cell(f'alpha = 1  # {evil_help}\nname = \'\\"\\"\\"; import os\'', "parameters"),
            cell("model = alpha", "train"),
        ],
        metadata={"nb2prod": {"version": "1.0"}},
    )
    out = tmp_path / "out"
    api.build(path, output=out)
    params = (out / "src" / "nb" / "params.py").read_text()
    module = ast.parse(params)
    imports = [n for n in ast.walk(module) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert all(getattr(n, "module", None) in ("__future__", "typing", None) or n.level == 1 for n in imports)
    assert "os.system" in params  # only inside string literals
    calls = [
        n
        for n in ast.walk(module)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "system"
    ]
    assert calls == []


def test_runtime_errors_point_at_the_notebook_cell(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = write_notebook(
        tmp_path / "fails.ipynb",
        [
            cell("divisor = 0  # makes training fail", "parameters"),
            cell("def ratio(a, b):\n    return a / b", "export"),
            cell("values = [1, 2]\n\nmodel = ratio(sum(values), divisor)", "train", cell_id="fit"),
        ],
    )
    out = tmp_path / "out"
    api.build(path, output=out)
    env = {**os.environ, "PYTHONPATH": str(out / "src")}
    result = subprocess.run(
        [sys.executable, "-m", "fails.train"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
    )
    assert result.returncode == 1
    assert "ZeroDivisionError" in result.stderr
    assert "notebook cell 2 (id c1, export), line 2" in result.stderr  # the innermost generated frame
    ok = subprocess.run(
        [sys.executable, "-m", "fails.train", "--divisor", "2", "--output", str(tmp_path / "m")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "m" / "model.joblib").is_file()


@pytest.mark.parametrize("fixture", ["nbdev_style.ipynb", "kale_style.ipynb", "v3_notebook.ipynb"])
def test_other_tools_notebooks_build_and_their_tests_pass(tmp_path: Path, fixture: str) -> None:
    import subprocess
    import sys

    out = tmp_path / "out"
    api.build(FIXTURES / fixture, output=out)
    env = {**os.environ, "PYTHONPATH": str(out / "src")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        cwd=out,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:]
    assert " passed" in result.stdout


def test_check_notices_an_upgraded_dependency(
    small_notebook: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nb2prod.analysis import requirements

    out = tmp_path / "out"
    api.build(small_notebook, output=out)
    assert api.check(small_notebook, output=out).ok
    real = requirements.installed_version
    monkeypatch.setattr(requirements, "installed_version", lambda name: "999.0" if name == "joblib" else real(name))
    result = api.check(small_notebook, output=out)
    assert result.stale and any("requirements.lock" in r for r in result.reasons)
