"""The injection corpus: every field a notebook controls, filled with hostile values, builds into
files that parse in their language and say what the notebook said; importing the generated
package and running its training entry point's --help in a sandbox folder has no side effect."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from generated_checks import assert_every_file_parses, assert_strings_read_back, tree
from nbtest_helpers import cell, write_notebook

from nb2prod import api, escape, render
from nb2prod.errors import InputError

PWN = '__import__("os").system("touch PWNED")'
SEPARATORS = ["\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]

# File names (no "/" and no NUL: the file system's only limits)
HOSTILE_NAMES = [
    f'x""";{PWN};"""y.ipynb',
    'a"""b.ipynb',
    "a\\x.ipynb",
    "a\\N{bogus}.ipynb",
    "a\\.ipynb",
    f"x');{PWN.replace(chr(34), chr(39))};('.ipynb",
    "$(touch PWNED) `touch PWNED`.ipynb",
    "{{ x }} {% raw %} %}.ipynb",
    "key: [v] # c --- ....ipynb",
    "'''.ipynb",
    "a`b``c.ipynb",
    "ñandú 中文 🎉.ipynb",
    "-rf.ipynb",
] + [f"a{sep}evil-package==6.6.6.ipynb" for sep in SEPARATORS]

# Parameter defaults and help comments (a comment cannot hold \n or \r: they would end it)
HOSTILE_TEXT = [
    f'x""";{PWN};"""y',
    f"x\n{PWN}\n",
    "$(touch PWNED)",
    "`touch PWNED`",
    'number of "trees"',
    "ends with a backslash \\",
    "\\N{bogus} \\x \\u12",
    "{{ 7 * 7 }} {% if %}",
    "key: value\n- item",
    '[tool]\nx = "1"',
    "a\u2028evil-package==6.6.6",
    "a\x85b\x0cc\x1cd",
]
HOSTILE_HELP = [t for t in HOSTILE_TEXT if "\n" not in t and "\r" not in t]


def hostile_cells() -> tuple[list[dict], dict[str, tuple[object, str]]]:
    lines, expected = [], {}
    for index, text in enumerate(HOSTILE_TEXT):
        name = f"s{index}"
        help_text = HOSTILE_HELP[index % len(HOSTILE_HELP)]
        lines.append(f"{name} = {text!r}  # {help_text}")
        expected[name] = (text, help_text)
    lines.append("ñ = 3  # a Unicode name")
    expected["ñ"] = (3, "a Unicode name")
    lines.append(f"nested = {{'k': [{HOSTILE_TEXT[0]!r}, {{'q\"': 'x'}}]}}  # hostile keys")
    expected["nested"] = ({"k": [HOSTILE_TEXT[0], {'q"': "x"}]}, "hostile keys")
    cells = [
        cell("\n".join(lines), "parameters", cell_id="params"),
        cell("def grow(x):\n    return x * 2", "export", cell_id="x-1_"),
        cell("model = grow(ñ)\nsecond = len(s0)", "train", cell_id="train\n"),
        cell('metrics = {"m": model}\nassert metrics["m"] > 0', "metrics"),
        cell("def predict(model, inputs):\n    return [model for _ in inputs]", "predict"),
        cell("assert grow(1) == 2", "test", cell_id="t" * 64),
    ]
    return cells, expected


def run_sandboxed(out: Path, package: str, sandbox: Path) -> None:
    """Import every generated module, run the job (`train.run` executes `_job.py`, the job's cells)
    and `-train --help`, with the sandbox as working folder."""
    env = {**os.environ, "PYTHONPATH": f"{out / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    modules = sorted(p.stem for p in (out / "src" / package).glob("*.py") if p.stem not in ("__init__", "_job"))
    script = (
        f"import importlib\nfor m in {modules!r}:\n    importlib.import_module({package!r} + '.' + m)\n"
        f"importlib.import_module({package!r} + '.train').run()\n"
    )
    for argv in ([sys.executable, "-c", script], [sys.executable, "-m", f"{package}.train", "--help"]):
        result = subprocess.run(argv, cwd=sandbox, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
    assert "--help" in argv
    assert "usage" in result.stdout.lower() or "--output" in result.stdout


def no_side_effects(*folders: Path) -> None:
    for folder in folders:
        assert not [p for p in folder.rglob("PWNED*")], f"a side effect appeared in {folder}"


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=[repr(n)[:40] for n in HOSTILE_NAMES])
def test_hostile_notebook_names_build_parse_and_run_nothing(tmp_path: Path, name: str) -> None:
    notebook_dir, sandbox = tmp_path / "nb", tmp_path / "sandbox"
    notebook_dir.mkdir()
    sandbox.mkdir()
    cells, expected = hostile_cells()
    path = write_notebook(notebook_dir / name, cells)
    result = api.build(path, output=tmp_path / "out")
    out = result.output_dir
    assert_every_file_parses(out)
    assert_strings_read_back(out, name, expected)
    run_sandboxed(out, result.package, sandbox)
    no_side_effects(tmp_path)


def test_hostile_fields_everywhere_a_notebook_controls(tmp_path: Path) -> None:
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    cells, expected = hostile_cells()
    cells.append(cell("!pip install 'requests>=2' \"packaging\"\n%pip install six", "export: extra $(x)"))
    metadata = {
        "nb2prod": {
            "name": f'evil""" {PWN}',
            "version": "1.0.post1+local.7",
            "schedule": "@daily",
            "sweep": {"s0": [HOSTILE_TEXT[1], HOSTILE_TEXT[10]], "ñ": [1, 2]},
            "requirements": ['packaging>=20; python_version >= "3"'],
        }
    }
    path = write_notebook(tmp_path / f'x""";{PWN};"""y.ipynb', cells, metadata)
    result = api.build(path, output=tmp_path / "out")
    out = result.output_dir
    files = assert_every_file_parses(out)
    assert_strings_read_back(out, path.name, expected)
    import yaml

    sweep = yaml.safe_load(files["k8s/sweep-job.yaml"])
    grid = next(
        e["value"]
        for c in sweep["spec"]["template"]["spec"]["containers"]
        for e in c.get("env", [])
        if e["name"] == "NB2PROD_SWEEP_GRID"
    )
    assert {p["s0"] for p in json.loads(grid.replace("$$", "$"))} == {HOSTILE_TEXT[1], HOSTILE_TEXT[10]}
    assert yaml.safe_load(files["k8s/retrain-cronjob.yaml"])["spec"]["schedule"] == "@daily"
    run_sandboxed(out, result.package, sandbox)
    no_side_effects(tmp_path)


def test_readme_shell_line_quotes_for_the_shell_not_html(tmp_path: Path) -> None:
    path = write_notebook(
        tmp_path / "nb.ipynb",
        [cell('s = "$(touch PWNED) <b>&\'"  # a string', "parameters"), cell("model = len(s)", "train")],
    )
    result = api.build(path, output=tmp_path / "out")
    readme = (result.output_dir / "README.md").read_text()
    line = next(line for line in readme.splitlines() if line.startswith("nb-train "))
    import shlex

    assert shlex.split(line) == ["nb-train", "--output", "model/", "--s", "$(touch PWNED) <b>&'"]
    assert "&lt;" not in readme and "\\u003c" not in readme
    echoed = subprocess.run(
        ["sh", "-c", "printf '%s\\n' " + line.split(" ", 1)[1]], cwd=tmp_path, capture_output=True, text=True
    )
    assert echoed.stdout.splitlines() == ["--output", "model/", "--s", "$(touch PWNED) <b>&'"]
    no_side_effects(tmp_path)


def test_a_file_that_does_not_parse_is_never_reported_built(tmp_path: Path, monkeypatch) -> None:
    """With the docstring escaping bypassed, the build stops before the swap, naming the file and
    the notebook field; the previous output stays as it was."""
    notebook_dir = tmp_path / "nb"
    notebook_dir.mkdir()
    safe = write_notebook(notebook_dir / "plain.ipynb", [cell("model = 1", "train")])
    out = tmp_path / "out"
    api.build(safe, output=out)
    before = tree(out)
    hostile = write_notebook(notebook_dir / 'a"""b.ipynb', [cell("model = 1", "train")])
    monkeypatch.setattr(escape, "py_docstring", lambda text: text)
    render.environment.cache_clear()
    try:
        with pytest.raises(InputError) as info:
            api.build(hostile, output=out, force=True)
    finally:
        monkeypatch.undo()
        render.environment.cache_clear()
    message = info.value.message
    assert "is not valid Python" in message and "__init__.py" in message
    assert "the notebook's file name" in message
    assert "\n" not in message
    assert tree(out) == before
    assert not [p for p in tmp_path.iterdir() if "nb2prod-" in p.name]


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("version", " 1.0", "version ' 1.0' is not a version"),
        ("schedule", "0  3 * * *", "schedule '0  3 * * *' is not a cron schedule"),
        ("requirements", ["numpy\u2028evil-package==6.6.6"], "requirements"),
        ("model_variable", "ﬁt", "'fit'"),
    ],
)
def test_config_values_that_would_fail_later_are_refused_at_config_time(
    tmp_path: Path, field: str, value: object, fragment: str
) -> None:
    path = write_notebook(tmp_path / "nb.ipynb", [cell("model = 1", "train")], {"nb2prod": {field: value}})
    with pytest.raises(InputError) as info:
        api.build(path, output=tmp_path / "out")
    assert "metadata.nb2prod" in info.value.message and fragment in info.value.message
    assert not (tmp_path / "out").exists()
