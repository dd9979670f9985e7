"""Robustness against real-world notebooks (SPEC "Bad input").

The corpus is the 176 notebooks that peer projects (nbformat, papermill, jupytext, nbconvert,
nbclient) ship in their source distributions: old formats, broken files, R/Julia/... kernels,
magics, odd metadata. `shared/corpus/get_peer_notebooks.sh` (beside the checkout) downloads
them from PyPI into pytest's cache folder.

For every notebook, as found and with its code cells tagged, `nb2prod build` either succeeds
(and writes code that compiles) or exits 2 with one `error:` line that names the notebook, with
no traceback, and writes nothing: neither a new output folder nor into an existing build.
The CLI is called in-process (nb2prod.cli.main) for speed; a few subprocess calls check the
installed command itself.
"""

from __future__ import annotations

import contextlib
import io
import json
import keyword
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from nbtest_helpers import cell, write_notebook

from nb2prod.cli import main

CHECKOUT = Path(__file__).resolve().parent.parent
CORPUS_SCRIPT = CHECKOUT.parent / "shared" / "corpus" / "get_peer_notebooks.sh"
CORPUS_SIZE = 176  # the script pins the sdists, so the count is fixed
HANG_SECONDS = 60  # a hang guard, not a speed check: the slowest corpus notebook takes ~1 s


# -- running the CLI in-process -------------------------------------------------------------------


class Hang(BaseException):
    """Raised by the alarm when one CLI call runs for longer than HANG_SECONDS."""


@contextlib.contextmanager
def hang_guard(seconds: int) -> Iterator[None]:
    def on_alarm(signum: int, frame: Any) -> None:
        raise Hang()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass(frozen=True)
class Outcome:
    argv: tuple[str, ...]
    code: int | str  # exit code, or "hang" / "raised <Exception>"
    stdout: str
    stderr: str

    def describe(self) -> str:
        return f"`nb2prod {' '.join(self.argv)}` -> {self.code}\n{self.stderr.strip()[-1500:]}"


def run_cli(*argv: str) -> Outcome:
    out, err = io.StringIO(), io.StringIO()
    code: int | str
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            with hang_guard(HANG_SECONDS):
                main(list(argv))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else f"exit {exc.code!r}"
        except Hang:
            code = f"still running after {HANG_SECONDS} s"
        except BaseException as exc:  # noqa: BLE001 - anything escaping main() is a finding
            code = f"raised {type(exc).__name__}: {exc}"
    return Outcome(tuple(argv), code, out.getvalue(), err.getvalue())


def cli_problem(outcome: Outcome, notebook_name: str) -> str | None:
    """None if the outcome is a success or a clean input error (exit 2, one line naming the notebook)."""
    err = outcome.stderr
    if "Traceback (most recent call last)" in err or "internal error" in err:
        return "traceback or internal error"
    if outcome.code == 0:
        return None
    if outcome.code != 2:
        return f"exit code {outcome.code!r}, expected 0 or 2"
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    if len(error_lines) != 1:
        return f"{len(error_lines)} lines start with `error:`, expected exactly one"
    if notebook_name not in error_lines[0]:
        return f"the error does not name {notebook_name}"
    return None


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def output_problem(output: Path) -> str | None:
    """A successful build must leave a manifest, Python that compiles and valid job notebooks."""
    import nbformat

    if not (output / "nb2prod.json").is_file():
        return "no nb2prod.json in the output"
    for path in sorted(output.rglob("*.py")):
        try:
            compile(path.read_text(encoding="utf-8"), str(path), "exec")
        except SyntaxError as exc:
            return f"generated {path.relative_to(output)} does not compile: {exc}"
    for path in sorted(output.rglob("*.ipynb")):
        try:
            nbformat.validate(nbformat.read(path, as_version=4))
        except Exception as exc:  # noqa: BLE001 - any validation failure is the finding
            return f"generated {path.relative_to(output)} is not a valid notebook: {str(exc)[:300]}"
    return None


# -- the corpus ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def corpus(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    if not CORPUS_SCRIPT.is_file():
        pytest.fail(
            f"{CORPUS_SCRIPT} is missing: the corpus tests need the shared/ folder beside the checkout "
            f"(expected at {CORPUS_SCRIPT.parent.parent}); copy it there before running the tests"
        )
    cache = getattr(request.config, "cache", None)
    dest = cache.mkdir("nb-corpus") if cache is not None else tmp_path_factory.mktemp("nb-corpus")
    done = subprocess.run(
        ["bash", str(CORPUS_SCRIPT), str(dest)],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHON": sys.executable},
    )
    if done.returncode != 0:
        pytest.fail(f"{CORPUS_SCRIPT} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    inventory = (dest / "A" / "inventory.tsv").read_text(encoding="utf-8").splitlines()[1:]
    notebooks = [dest / "A" / row.split("\t")[0] / row.split("\t")[1] for row in inventory]
    assert len(notebooks) == CORPUS_SIZE, f"expected {CORPUS_SIZE} corpus notebooks, the script listed {len(notebooks)}"
    assert all(p.is_file() for p in notebooks)
    return notebooks


def tag_every_code_cell(tags: Callable[[int], str]) -> Callable[[dict[str, Any]], bool]:
    """A notebook transform: the n-th code cell gets the tag tags(n); False if nothing was tagged."""

    def transform(data: dict[str, Any]) -> bool:
        count = 0
        for item in data.get("cells") or []:
            if (
                isinstance(item, dict)
                and item.get("cell_type") == "code"
                and isinstance(item.get("metadata", {}), dict)
            ):
                item.setdefault("metadata", {})["tags"] = [tags(count)]
                count += 1
        return count > 0

    return transform


ROTATING_ROLES = ("export", "train", "metrics", "test")
VARIANTS: dict[str, Callable[[dict[str, Any]], bool] | None] = {
    "as-is": None,
    "all-export": tag_every_code_cell(lambda n: "export"),
    "mixed-roles": tag_every_code_cell(lambda n: ROTATING_ROLES[n % len(ROTATING_ROLES)]),
}


def place_notebook(source: Path, folder: Path, variant: Callable[[dict[str, Any]], bool] | None) -> Path | None:
    """Copy `source` alone into `folder` (applying `variant` to its JSON); None if the variant does not apply."""
    folder.mkdir(parents=True)
    target = folder / source.name
    if variant is None:
        shutil.copyfile(source, target)
        return target
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except ValueError:
        return None  # unreadable notebooks are covered as-is
    if not isinstance(data, dict) or not variant(data):
        return None
    target.write_text(json.dumps(data), encoding="utf-8")
    return target


@pytest.fixture(scope="module")
def previous_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A good build that failing builds are pointed at: it must come out byte-identical."""
    folder = tmp_path_factory.mktemp("previous")
    notebook = write_notebook(
        folder / "good.ipynb",
        [
            cell("import math\n\n\ndef grow(x):\n    return math.sqrt(x)\n", "export"),
            cell("model = grow(4)\n", "train"),
        ],
    )
    outcome = run_cli("build", str(notebook), "-o", str(folder / "out"), "--quiet")
    assert outcome.code == 0, outcome.describe()
    return folder / "out"


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_corpus_notebook_builds_or_fails_cleanly(
    variant: str, corpus: list[Path], previous_build: Path, tmp_path: Path
) -> None:
    before = tree_bytes(previous_build)
    classes: Counter[str] = Counter()
    problems: list[str] = []
    for index, source in enumerate(corpus):
        folder = tmp_path / f"{index:03d}"
        notebook = place_notebook(source, folder, VARIANTS[variant])
        if notebook is None:
            continue
        output = tmp_path / f"{index:03d}-out"
        outcome = run_cli("build", str(notebook), "-o", str(output))
        problem = cli_problem(outcome, notebook.name)
        if problem is None and outcome.code == 0:
            problem = output_problem(output)
        if problem is None and outcome.code != 0:
            if output.exists():
                problem = "the failed build created its output folder"
            elif run_cli("build", str(notebook)).code == 0 or sorted(p.name for p in folder.iterdir()) != [
                notebook.name
            ]:
                problem = f"the failed build wrote beside the notebook: {sorted(p.name for p in folder.iterdir())}"
            else:
                again = run_cli("build", str(notebook), "-o", str(previous_build))
                if again.code == 0 or tree_bytes(previous_build) != before:
                    problem = f"building it into an existing build changed that build (exit {again.code})"
        classes["ok" if outcome.code == 0 else "exit 2" if problem is None else "problem"] += 1
        if problem is not None:
            problems.append(f"{source}: {problem}\n  {outcome.describe()}")
        if outcome.code == 0:
            shutil.rmtree(output)
    assert not problems, f"{len(problems)} of {sum(classes.values())} notebooks ({variant}):\n" + "\n".join(problems)
    assert tree_bytes(previous_build) == before
    # the sweep must exercise both paths: clean refusals, and builds whose output is checked
    assert classes["exit 2"] > 0
    if variant != "as-is":
        assert classes["ok"] >= 20, classes


def test_inspect_json_on_every_corpus_notebook(corpus: list[Path]) -> None:
    problems = []
    for source in corpus:
        outcome = run_cli("inspect", str(source), "--format", "json")
        problem = cli_problem(outcome, source.name)
        if problem is None and outcome.code == 0:
            report = json.loads(outcome.stdout)
            if not isinstance(report.get("cells"), list) or not isinstance(report.get("findings"), list):
                problem = "the JSON report has no cells or findings list"
        if problem is not None:
            problems.append(f"{source}: {problem}\n  {outcome.describe()}")
    assert not problems, "\n".join(problems)


CLI_SAMPLES = {
    "papermill-2.7.0/papermill/tests/notebooks/simple_execute.ipynb": 0,  # a parameters cell
    "jupytext-1.19.6/tests/data/notebooks/inputs/ipynb_R/ir_notebook.ipynb": 2,  # R kernel
    "nbformat-5.11.1/tests/test3_no_worksheets.ipynb": 2,  # broken nbformat 3
    "nbformat-5.11.1/tests/invalid.ipynb": 2,  # a `heading` cell in nbformat 4
    "jupytext-1.19.6/demo/World population.ipynb": 2,  # no roles at all
}


def test_the_installed_command_on_corpus_samples(corpus: list[Path], tmp_path: Path) -> None:
    by_path = {str(p).split("/A/", 1)[1]: p for p in corpus}
    for relative, expected in CLI_SAMPLES.items():
        notebook = by_path[relative]
        output = tmp_path / notebook.stem
        done = subprocess.run(
            [sys.executable, "-m", "nb2prod", "build", str(notebook), "-o", str(output)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        outcome = Outcome(("build", relative), done.returncode, done.stdout, done.stderr)
        assert done.returncode == expected, outcome.describe()
        assert cli_problem(outcome, notebook.name) is None, outcome.describe()
        assert output.exists() == (expected == 0)
        if expected:
            assert done.stdout == ""


# -- huge notebooks --------------------------------------------------------------------------------


def test_a_20000_cell_notebook_builds(tmp_path: Path) -> None:
    """A long exploration: 20,000 cells, half markdown, every tenth code cell exported."""
    cells = [cell("import math\n", "export")]
    for i in range(1, 20_000 - 2):
        if i % 2 == 0:
            cells.append(cell(f"## Step {i}\nLooking at the data again.", cell_type="markdown"))
        elif i % 20 == 1:
            cells.append(cell(f"def f{i}(x):\n    return math.sqrt(x) + {i}\n", "export"))
        else:
            cells.append(cell(f"value_{i} = {i} * 2\nprint(value_{i})\n"))
    cells.append(cell("model = f1\n", "train"))
    cells.append(cell("def predict(model, inputs):\n    return [model(x) for x in inputs]\n", "predict"))
    notebook = write_notebook(tmp_path / "huge.ipynb", cells)
    assert len(json.loads(notebook.read_text())["cells"]) == 20_000

    outcome = run_cli("build", str(notebook), "-o", str(tmp_path / "out"), "--quiet")

    assert outcome.code == 0, outcome.describe()
    core = (tmp_path / "out" / "src" / "huge" / "core.py").read_text()
    assert core.count("\ndef f") == 1000
    assert "def f19981(x):" in core and "value_" not in core
    assert output_problem(tmp_path / "out") is None


def test_a_notebook_over_256_mib_is_refused_without_being_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    notebook = tmp_path / "enormous.ipynb"
    with notebook.open("wb") as handle:  # sparse: 257 MiB on paper, a few bytes on disk
        handle.write(b'{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [')
        handle.truncate(257 * 2**20)
    assert notebook.stat().st_size > 256 * 2**20
    opened: list[str] = []
    real_open = io.open

    def spying_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        if str(file) == str(notebook):
            opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(io, "open", spying_open)
    monkeypatch.setattr("builtins.open", spying_open)
    output = tmp_path / "out"

    outcome = run_cli("build", str(notebook), "-o", str(output))

    assert outcome.code == 2, outcome.describe()
    assert cli_problem(outcome, notebook.name) is None, outcome.describe()
    assert "256 MiB" in outcome.stderr
    assert opened == [], "the notebook was opened although its size alone refuses it"
    assert not output.exists()


def test_the_size_limit_applies_to_inspect_and_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nb2prod.notebook

    notebook = write_notebook(
        tmp_path / "small.ipynb", [cell("import math\n", "export"), cell("model = math.pi\n", "train")]
    )
    monkeypatch.setattr(nb2prod.notebook, "MAX_NOTEBOOK_BYTES", notebook.stat().st_size - 1)
    for argv in (("inspect", str(notebook)), ("check", str(notebook), "-o", str(tmp_path / "out"))):
        outcome = run_cli(*argv)
        assert outcome.code == 2, outcome.describe()
        assert cli_problem(outcome, notebook.name) is None, outcome.describe()
        assert "larger than" in outcome.stderr


# -- names that are not Python identifiers ---------------------------------------------------------

GOOD_CELLS = [
    ("import math\n\n\ndef grow(x):\n    return math.sqrt(x)\n", ("export",)),
    ("model = grow(16)\n", ("train",)),
]


def good_cells() -> list[dict[str, Any]]:
    return [cell(src, *tags) for src, tags in GOOD_CELLS]


def built_package(output: Path) -> str:
    packages = [p.name for p in (output / "src").iterdir() if p.is_dir()]
    assert len(packages) == 1, packages
    return packages[0]


def assert_importable(output: Path, package: str) -> None:
    assert package.isidentifier() and not keyword.iskeyword(package), package
    imported = subprocess.run(
        [sys.executable, "-c", f"import {package}.core as m; print(m.grow(9))"],
        env={**os.environ, "PYTHONPATH": str(output / "src")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == "3.0"


@pytest.mark.parametrize("file_name", ["123 bad-name!.ipynb", "class.ipynb", "données.ipynb", "-.ipynb"])
def test_notebook_names_become_importable_packages(file_name: str, tmp_path: Path) -> None:
    notebook = write_notebook(tmp_path / file_name, good_cells())
    output = tmp_path / "out"

    outcome = run_cli("build", str(notebook), "-o", str(output), "--quiet")

    assert outcome.code == 0, outcome.describe()
    assert_importable(output, built_package(output))


def test_a_configured_name_that_is_no_identifier_is_normalised(tmp_path: Path) -> None:
    notebook = write_notebook(tmp_path / "nb.ipynb", good_cells(), metadata={"nb2prod": {"name": "123 bad-name!"}})
    output = tmp_path / "out"

    outcome = run_cli("build", str(notebook), "-o", str(output), "--quiet")

    assert outcome.code == 0, outcome.describe()
    package = built_package(output)
    assert "123_bad_name" in package
    assert_importable(output, package)


@pytest.mark.parametrize(
    ("module", "reason"),
    [("9lives", "starts with a digit"), ("class", "is a Python keyword"), ("predict", "used by the generated package")],
)
@pytest.mark.parametrize("how", ["directive", "tag"])
def test_an_export_module_that_is_no_identifier_is_a_clear_error(
    module: str, reason: str, how: str, tmp_path: Path
) -> None:
    source = "def grow(x):\n    return x * 2\n"
    first = cell(f"#| export: {module}\n{source}") if how == "directive" else cell(source, f"export: {module}")
    notebook = write_notebook(tmp_path / "names.ipynb", [first, cell("model = grow(2)\n", "train")])

    outcome = run_cli("build", str(notebook), "-o", str(tmp_path / "out"))

    assert outcome.code == 2, outcome.describe()
    assert cli_problem(outcome, notebook.name) is None, outcome.describe()
    error = next(line for line in outcome.stderr.splitlines() if line.startswith("error:"))
    assert "cell 1" in error and repr(module) in error and reason in error
    assert not (tmp_path / "out").exists()


def test_an_export_target_that_looks_like_a_path_stays_inside_the_package(tmp_path: Path) -> None:
    notebook = write_notebook(
        tmp_path / "paths.ipynb",
        [cell("#| export: ../../evil\ndef grow(x):\n    return x\n"), cell("model = grow(2)\n", "train")],
    )

    outcome = run_cli("build", str(notebook), "-o", str(tmp_path / "out"))

    assert outcome.code == 0, outcome.describe()
    assert "becomes module 'evil'" in outcome.stderr
    assert (tmp_path / "out" / "src" / "paths" / "evil.py").is_file()
    assert [p for p in tmp_path.rglob("evil*") if (tmp_path / "out" / "src" / "paths") not in p.parents] == []


# -- nbformat oddities from the SPEC's list ---------------------------------------------------------


def test_duplicate_and_missing_cell_ids_build_with_notes(tmp_path: Path) -> None:
    cells = [
        cell("import math\n", "export", cell_id="same"),
        cell("model = math.pi\n", "train", cell_id="same"),
        cell("x = 1\n"),
    ]
    data = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    notebook = tmp_path / "ids.ipynb"
    notebook.write_text(json.dumps(data))

    outcome = run_cli("build", str(notebook), "-o", str(tmp_path / "out"))

    assert outcome.code == 0, outcome.describe()
    assert "repeats the id 'same'" in outcome.stderr
    assert "have no id" in outcome.stderr


def test_non_literal_parameters_are_an_error_naming_the_line(tmp_path: Path) -> None:
    notebook = write_notebook(
        tmp_path / "params.ipynb", [cell("seed = 42\nlr = float('0.1')\n", "parameters"), *good_cells()]
    )

    outcome = run_cli("build", str(notebook), "-o", str(tmp_path / "out"))

    assert outcome.code == 2, outcome.describe()
    assert cli_problem(outcome, notebook.name) is None, outcome.describe()
    assert "cell 1" in outcome.stderr and "line 2" in outcome.stderr and "literal" in outcome.stderr


@pytest.mark.parametrize("where", ["under-a-file", "unwritable"])
def test_an_output_that_cannot_be_created_is_a_clear_error(where: str, tmp_path: Path) -> None:
    notebook = write_notebook(tmp_path / "nb.ipynb", good_cells())
    (tmp_path / "a-file").write_text("mine")
    output = tmp_path / "a-file" / "out" if where == "under-a-file" else Path("/proc/nb2prod-out")

    outcome = run_cli("build", str(notebook), "-o", str(output))

    assert outcome.code == 2, outcome.describe()
    assert "internal error" not in outcome.stderr and "Traceback" not in outcome.stderr, outcome.describe()
    assert str(output) in outcome.stderr or output.name in outcome.stderr
    assert (tmp_path / "a-file").read_text() == "mine"


def test_a_failed_rebuild_keeps_the_previous_build(tmp_path: Path) -> None:
    notebook = write_notebook(tmp_path / "nb.ipynb", good_cells())
    output = tmp_path / "out"
    assert run_cli("build", str(notebook), "-o", str(output), "--quiet").code == 0
    before = tree_bytes(output)
    good = notebook.read_text()
    for broken in (
        good[: len(good) // 2],
        good.replace('"nbformat": 4', '"nbformat": 5'),
        good.replace("model = grow(16)", "model = grow(16"),
    ):
        notebook.write_text(broken)
        outcome = run_cli("build", str(notebook), "-o", str(output))
        assert outcome.code == 2, outcome.describe()
        assert cli_problem(outcome, notebook.name) is None, outcome.describe()
        assert tree_bytes(output) == before


# -- known nb2prod bugs found with the corpus sweep and crafted notebooks ---------------------------


def test_deeply_nested_json_is_an_input_error(tmp_path: Path) -> None:
    notebook = tmp_path / "nested.ipynb"
    depth = 100_000
    notebook.write_text(
        '{"nbformat": 4, "nbformat_minor": 5, "metadata": {"x": ' + "[" * depth + "]" * depth + '}, "cells": []}'
    )

    outcome = run_cli("build", str(notebook), "-o", str(tmp_path / "out"))

    assert outcome.code == 2, outcome.describe()
    assert cli_problem(outcome, notebook.name) is None, outcome.describe()


@pytest.mark.parametrize("tags", [("export",), ()], ids=["exported", "untagged"])
def test_a_long_expression_is_analysed_or_refused_naming_its_cell(tags: tuple[str, ...], tmp_path: Path) -> None:
    total = " + ".join(["1"] * 600)  # a 600-term sum: deep for a recursive AST walk
    notebook = write_notebook(tmp_path / "long.ipynb", [*good_cells(), cell(f"total = {total}\n", *tags)])
    # A fresh `nb2prod` process has Python's default recursion limit; importing IPython (done by
    # earlier tests, and by nb2prod itself for cells with magics) raises it to 3000.
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        outcome = run_cli("build", str(notebook), "-o", str(tmp_path / "out"))
    finally:
        sys.setrecursionlimit(limit)

    assert cli_problem(outcome, notebook.name) is None, outcome.describe()
    if outcome.code == 2:
        assert "cell 3" in outcome.stderr


@pytest.mark.parametrize(("key", "value"), [("version", "not a version"), ("python", "banana")])
def test_invalid_settings_in_notebook_metadata_name_the_notebook(key: str, value: str, tmp_path: Path) -> None:
    notebook = write_notebook(tmp_path / "settings.ipynb", good_cells(), metadata={"nb2prod": {key: value}})

    outcome = run_cli("build", str(notebook), "-o", str(tmp_path / "out"))

    assert outcome.code == 2, outcome.describe()
    assert cli_problem(outcome, notebook.name) is None, outcome.describe()


@pytest.mark.parametrize(
    ("source", "role"),
    [("return 1\n", "export"), ("import asyncio\nawait asyncio.sleep(0)\n", "train")],
    ids=["return-in-export", "await-in-train"],
)
def test_code_that_only_fails_at_compile_time_is_not_exported_silently(source: str, role: str, tmp_path: Path) -> None:
    notebook = write_notebook(tmp_path / "compile.ipynb", [cell(source, role), *good_cells()])
    output = tmp_path / "out"

    outcome = run_cli("build", str(notebook), "-o", str(output))

    assert cli_problem(outcome, notebook.name) is None, outcome.describe()
    if outcome.code == 0:
        assert output_problem(output) is None
    else:
        assert "cell 1" in outcome.stderr


def test_pip_installs_become_valid_requirements_or_a_clear_error(tmp_path: Path) -> None:
    from packaging.requirements import InvalidRequirement, Requirement

    installs = (
        "%pip install -r requirements.txt\n!pip install ./local.whl\n!pip install git+https://example.org/x/y.git\n"
    )
    notebook = write_notebook(
        tmp_path / "pips.ipynb", [cell(installs + "import math\n", "export"), cell("model = math.pi\n", "train")]
    )
    output = tmp_path / "out"

    outcome = run_cli("build", str(notebook), "-o", str(output))

    assert cli_problem(outcome, notebook.name) is None, outcome.describe()
    if outcome.code == 0:
        import tomllib

        dependencies = tomllib.loads((output / "pyproject.toml").read_text())["project"]["dependencies"]
        invalid = []
        for spec in dependencies:
            try:
                Requirement(spec)
            except InvalidRequirement:
                invalid.append(spec)
        assert invalid == [], f"pyproject.toml lists invalid requirements {invalid}"


@pytest.mark.parametrize(
    "worksheets",
    [None, [{"cells": "x"}], [{}]],
    ids=["worksheets-null", "cells-not-a-list", "worksheet-without-cells"],
)
def test_broken_nbformat_3_gets_a_sentence_not_an_exception_text(worksheets: Any, tmp_path: Path) -> None:
    notebook = tmp_path / "old.ipynb"
    notebook.write_text(json.dumps({"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "worksheets": worksheets}))

    outcome = run_cli("build", str(notebook), "-o", str(tmp_path / "out"))

    assert outcome.code == 2, outcome.describe()
    assert cli_problem(outcome, notebook.name) is None, outcome.describe()
    error = next(line for line in outcome.stderr.splitlines() if line.startswith("error:"))
    for jargon in ("NoneType", "object has no attribute", "object is not iterable"):
        assert jargon not in error
    assert not error.rstrip().endswith((": cells", ": worksheets")), error
