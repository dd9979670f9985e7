"""Property test: notebooks generated at random (sources with magics, Unicode, strings that look
like magics, decorators, `global`, walrus, match, comprehensions, top-level await; random tags,
cell ids, file names and parameter help comments; hostile strings everywhere) either build or are
refused with NotebookErrors/InputError, never an internal error; every file of a build parses in
its language and says what the notebook said; two builds are byte-identical.

Fixed seed and a bounded number of examples in CI; NB2PROD_FUZZ_EXAMPLES=N runs N examples,
NB2PROD_FUZZ_SEED=S another seed, NB2PROD_FUZZ_SHRINK=1 shrinks a failure to a small notebook.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from generated_checks import assert_every_file_parses, assert_strings_read_back, tree
from hypothesis import HealthCheck, Phase, event, given, seed, settings
from hypothesis import strategies as st
from nbtest_helpers import cell, write_notebook

from nb2prod import api
from nb2prod.errors import InputError, NotebookErrors

EXAMPLES = int(os.environ.get("NB2PROD_FUZZ_EXAMPLES", "25"))
SEED = os.environ.get("NB2PROD_FUZZ_SEED")  # another fixed seed on demand; CI runs the derandomized one
# Shrinking a failure can take minutes; on demand (NB2PROD_FUZZ_SHRINK=1) it finds the smallest notebook.
PHASES = [Phase.explicit, Phase.reuse, Phase.generate] + (
    [Phase.shrink] if os.environ.get("NB2PROD_FUZZ_SHRINK") else []
)

HOSTILE = [
    '"""',
    "'''",
    '"',
    "'",
    "\\",
    "\\N{",
    "\\x",
    "\\u12",
    "$(touch PWNED)",
    "`id`",
    "${HOME}",
    "{{ x }}",
    "{% if %}",
    "%}",
    "#}",
    ": ",
    "- ",
    "---",
    "...",
    "[x]",
    "= ",
    "#",
    "&*!|>",
    "ñ",
    "中文",
    "🎉",
    "\u200b",
    "\x00",
    "\x7f",
    "\t",
    "\n",
    "\r",
    "\x0b",
    "\x0c",
    "\x1c",
    "\x1d",
    "\x1e",
    "\x85",
    "\u2028",
    "\u2029",
    'x""";__import__("os").system("touch PWNED");"""y',
]
LINE_BREAKS = {"\n", "\r"}

hostile_text = st.lists(
    st.one_of(st.sampled_from(HOSTILE), st.text(min_size=1, max_size=6)), min_size=0, max_size=5
).map("".join)
comment_text = hostile_text.map(lambda t: "".join(ch for ch in t if ch not in LINE_BREAKS))
file_stem = st.lists(st.one_of(st.sampled_from(HOSTILE), st.text(min_size=1, max_size=8)), min_size=1, max_size=4).map(
    lambda parts: "".join(ch for ch in "".join(parts) if ch not in "/\x00")[:60] or "nb"
)
identifier = st.sampled_from(["n", "rate", "ñ", "βeta", "名前", "x_1", "ﬁle", "_private", "class", "model"])
scalar = st.one_of(
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    hostile_text,
)
literal = st.recursive(
    scalar, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(hostile_text, inner, max_size=3), max_leaves=6
)

# Snippets that any tagged cell may hold (they bind what they use) ...
SNIPPETS = [
    "%matplotlib inline",
    "%time y = 1",
    "%timeit -n 1 -r 1 y = 2",
    "%pip install packaging",
    "s = '%not a magic'",
    "t = '!not a shell'",
    'u = """\n%magic-looking line\n!shell-looking line\n"""',
    "import functools\n\n@functools.lru_cache\ndef cached(x):\n    return x",
    "g = 0\n\ndef bump():\n    global g\n    g += 1\n    return g",
    "if (w := 3) > 2:\n    w2 = w",
    "match [1, 2]:\n    case [a, b]:\n        m = a + b\n    case _:\n        m = 0",
    "squares = [i * i for i in range(3)]\nd = {k: v for k, v in zip('ab', [1, 2])}",
    "ñ = 3\nβ = ñ * 2",
    "class Box:\n    size = 1",
]
# ... and ones that are often refused (a syntax error, a shell command, a name bound nowhere, await)
RISKY = [
    "import asyncio\nawait asyncio.sleep(0)",
    "!ls -la",
    "!pip install six",
    "x = (",
    "def f(:\n    pass",
    "print(undefined_name)",
    "global q\nq = 1",
]
body = st.lists(
    st.one_of(
        st.sampled_from(SNIPPETS),
        st.sampled_from(SNIPPETS),
        st.sampled_from(SNIPPETS),
        literal.map(lambda v: f"v = {v!r}"),
        st.sampled_from(RISKY),
    ),
    min_size=1,
    max_size=3,
).map("\n".join)
TAGS = [
    "parameters",
    "export",
    "export: extra",
    "export: $(x)",
    "train",
    "metrics",
    "predict",
    "test",
    "skip",
    "explain",
    "random",
]


@st.composite
def notebooks(draw: st.DrawFn) -> tuple[str, list[dict], dict | None]:
    cells: list[dict] = []
    expected: dict | None = None
    if draw(st.booleans()):
        entries = draw(st.lists(st.tuples(identifier, literal, comment_text), max_size=4, unique_by=lambda e: e[0]))
        lines = [
            f"{name} = {value!r}" + (f"  # {help_text}" if help_text else "") for name, value, help_text in entries
        ]
        cells.append(
            cell("\n".join(lines), "parameters", cell_id=draw(st.sampled_from(["params", "p\n", "a" * 65, "ok_1"])))
        )
        expected = {name: (value, f"# {h}".lstrip("#").strip() if h else "") for name, value, h in entries}
    ids = st.one_of(st.none(), st.sampled_from(["c", "x-1_", "id\n", "bad id", "z" * 64]), hostile_text)
    if draw(st.integers(0, 4)):  # mostly a notebook that can build: an export, a train binding model, predict
        cells.append(cell(draw(body) + "\n\ndef helper(x):\n    return x", "export", cell_id=draw(ids)))
        cells.append(cell(draw(body) + "\nmodel = helper(1)", "train", cell_id=draw(ids)))
        cells.append(cell("metrics = {'m': 1.0}\nassert metrics['m'] > 0", "metrics", cell_id=draw(ids)))
        cells.append(cell("def predict(model, inputs):\n    return [model for _ in inputs]", "predict"))
    for _ in range(draw(st.integers(0, 3))):
        tags = draw(st.lists(st.sampled_from(TAGS), max_size=2, unique=True))
        cell_type = draw(st.sampled_from(["code"] * 6 + ["markdown", "raw"]))
        cells.append(cell(draw(body), *tags, cell_id=draw(ids), cell_type=cell_type))
    if expected is not None and any("parameters" in c["metadata"].get("tags", []) for c in cells[1:]):
        expected = None  # a second parameters cell: what reads back depends on both
    return draw(file_stem) + ".ipynb", cells, expected


@settings(
    max_examples=EXAMPLES,
    derandomize=SEED is None,
    deadline=None,
    database=None,
    phases=PHASES,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@seed(int(SEED or 0))
@given(notebooks())
def test_random_notebooks_build_or_are_refused_and_every_file_parses(case: tuple[str, list[dict], dict | None]) -> None:
    name, cells, expected = case
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "nb").mkdir()
        try:
            path = write_notebook(root / "nb" / name, cells)
        except OSError:
            return  # a name the file system refuses (too long in bytes)
        try:
            result = api.build(path, output=root / "a")
        except (NotebookErrors, InputError) as exc:
            assert exc.message and "Traceback" not in exc.message
            event(f"refused: {type(exc).__name__}")
            return
        event("built")
        assert_every_file_parses(result.output_dir)
        parameters = expected
        if parameters is not None:
            import json

            recorded = json.loads((result.output_dir / "nb2prod.json").read_text())["parameters"]
            if set(recorded) != set(parameters):
                parameters = None  # names changed by NFKC normalisation: compare what was recorded
        if parameters:
            assert_strings_read_back(result.output_dir, name, parameters)
        assert_strings_read_back_name_only(result.output_dir, name)
        again = api.build(path, output=root / "b")
        assert tree(result.output_dir) == tree(again.output_dir)
        for item in root.rglob("PWNED*"):
            raise AssertionError(f"side effect {item}")


def assert_strings_read_back_name_only(out: Path, name: str) -> None:
    """The notebook name reads back everywhere even without a parameters cell to compare."""
    import json

    manifest = json.loads((out / "nb2prod.json").read_text())
    assert manifest["source"]["notebook"] == name
    assert_strings_read_back(out, name, {n: (s["default"], s["help"]) for n, s in manifest["parameters"].items()})
