"""nb2prod.escape: each function's output reads back, in its language, as exactly its input (or
stays one line, for comments), and nothing hostile survives as syntax."""

from __future__ import annotations

import ast
import shlex
import subprocess
import tomllib

import pytest
import yaml
from packaging.requirements import Requirement

from nb2prod import escape

SEPARATORS = ["\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]
HOSTILE = [
    'x""";__import__("os").system("touch PWNED");"""y',
    'a"""b',
    "a\\x",
    "a\\N{bogus}",
    "a\\",
    "'''",
    'ends in a quote "',
    '"starts with a quote',
    "$(touch PWNED) `id` ${HOME}",
    "{{ x }} {% if %} %}",
    "key: value\n- item\n---\n...",
    "[table]\nkey = 1",
    "# comment",
    "tab\there",
    "\x00nul\x7fdel",
    "ñ 中文 emoji 🎉",
    "",
] + [f"a{sep}evil-package==6.6.6" for sep in SEPARATORS]


@pytest.mark.parametrize("value", HOSTILE)
def test_python_string_literal_reads_back_on_one_line(value: str) -> None:
    literal = escape.py_str(value)
    assert ast.literal_eval(literal) == value
    assert literal.splitlines() == [literal]
    tree = ast.parse(f"x = {literal}")
    assert isinstance(tree.body[0], ast.Assign) and len(tree.body) == 1


@pytest.mark.parametrize("value", HOSTILE)
def test_docstring_text_reads_back_on_one_line(value: str) -> None:
    text = escape.py_docstring(value)
    tree = ast.parse(f'"""{text}"""\n')
    assert len(tree.body) == 1
    assert ast.get_docstring(tree, clean=False) == value
    assert text.splitlines() == ([text] if text else [])


@pytest.mark.parametrize("value", HOSTILE)
def test_comment_text_stays_one_comment_line(value: str) -> None:
    source = f"# {escape.py_comment(value)}\nx = 1\n"
    tree = ast.parse(source)
    assert [type(node) for node in tree.body] == [ast.Assign]
    assert len(source.splitlines()) == 2


@pytest.mark.parametrize("value", HOSTILE)
def test_toml_string_and_comment(value: str) -> None:
    document = f"# {escape.toml_comment(value)}\nkey = {escape.toml_str(value)}\n"
    assert tomllib.loads(document) == {"key": value}
    assert len(document.splitlines()) == 2


@pytest.mark.parametrize("value", HOSTILE)
def test_yaml_scalar_and_document(value: str) -> None:
    assert yaml.safe_load(f"key: {escape.yaml_scalar(value)}\n") == {"key": value}
    document = escape.yaml_document({"key": value, "list": [value]})
    assert yaml.safe_load(document) == {"key": value, "list": [value]}
    assert not escape.has_line_separator(document.replace("\n", ""))


@pytest.mark.parametrize("value", HOSTILE)
def test_shell_word_is_one_word_or_refused(value: str, tmp_path) -> None:
    if any(not (ch == " " or ch.isprintable()) for ch in value):
        with pytest.raises(escape.EscapeError):
            escape.shell_word(value)
        return
    word = escape.shell_word(value)
    assert shlex.split(f"cmd {word}") == ["cmd", value]
    echoed = subprocess.run(["sh", "-c", f"printf %s {word}"], capture_output=True, text=True, cwd=tmp_path)
    assert echoed.stdout == value
    assert list(tmp_path.iterdir()) == []  # nothing ran


@pytest.mark.parametrize("value", HOSTILE)
def test_dockerfile_word_is_refused_or_one_quoted_word(value: str) -> None:
    if any(not (ch == " " or ch.isprintable()) for ch in value):
        with pytest.raises(escape.EscapeError):
            escape.dockerfile_word(value)
        return
    word = escape.dockerfile_word(value)
    assert word.startswith('"') and word.endswith('"') and "\n" not in word
    inner = word[1:-1]
    assert "$" not in inner.replace("\\$", "")
    assert '"' not in inner.replace('\\"', "")


@pytest.mark.parametrize("value", HOSTILE)
def test_markdown_code_span_is_one_line_and_fenced(value: str) -> None:
    span = escape.md_code(value)
    assert span.splitlines() == [span]
    fence = span[: len(span) - len(span.lstrip("`"))]
    assert fence and span.endswith(fence) and fence not in span[len(fence) : -len(fence)]


def test_markdown_text_escapes_inline_syntax() -> None:
    assert escape.md_text("a*b_c<x>`d`") == "a\\*b\\_c\\<x\\>\\`d\\`"
    assert escape.md_text("a\u2028b") == "a\\\\u2028b"  # Markdown shows the escape `\u2028`


@pytest.mark.parametrize(
    "spec", ["numpy==2.0", "scikit-learn>=1.3,<2", "pkg[extra]==1.0", 'a; python_version < "3.12"']
)
def test_requirement_line_accepts_requirements(spec: str) -> None:
    assert Requirement(escape.requirement_line(spec)).name == Requirement(spec).name


@pytest.mark.parametrize(
    "spec",
    [f"numpy{sep}evil-package==6.6.6" for sep in SEPARATORS]
    + ["--index-url https://evil.example", "numpy #comment", "numpy \\", "-e .", "not a requirement!"],
)
def test_requirement_line_refuses_what_pip_reads_otherwise(spec: str) -> None:
    with pytest.raises(escape.EscapeError):
        escape.requirement_line(spec)


@pytest.mark.parametrize("value", HOSTILE)
def test_requirements_comment_is_one_line_as_pip_splits_lines(value: str) -> None:
    text = f"# {escape.requirements_comment(value)}\nnumpy==2.0\n"
    assert text.splitlines() == text.split("\n")[:-1]
    assert not text.splitlines()[0].endswith("\\")


def test_unpaired_surrogates_are_refused() -> None:
    for function in (escape.py_str, escape.py_docstring, escape.toml_str, escape.md_code, escape.shell_word):
        with pytest.raises(escape.EscapeError, match="not valid Unicode"):
            function("a\udc80b")


def test_python_literals_of_plain_data_only() -> None:
    value = {"a": [1, 2.5, None, True, "x\u2028y"], "b": {"c": "d"}}
    assert ast.literal_eval(escape.py_literal(value)) == value
    for bad in (float("inf"), float("nan"), object(), {1, 2}):
        with pytest.raises(escape.EscapeError):
            escape.py_literal(bad)


def test_identifiers_in_their_nfkc_form_only() -> None:
    assert escape.py_identifier("ñ") == "ñ"
    for bad in ("class", "a-b", "1x", "ﬁ", "x\n"):
        with pytest.raises(escape.EscapeError):
            escape.py_identifier(bad)
