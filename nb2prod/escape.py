"""One escaping function per target language: every notebook-derived string (the notebook's file
name, cell ids, parameter names, defaults and help, config values, requirement strings) reaches a
generated file only through one of these.

Each function either returns text that reads back, in its language, as exactly the value it was
given, or refuses the value with `EscapeError` (a `ValueError` naming what is wrong). Comments
cannot be read back exactly, so the comment functions only guarantee that the value stays one line
of comment text.

Line separators: Python's tokenizer ends a line at `\\n` and `\\r`; `str.splitlines` (which pip uses
to read requirement files) also at `\\x0b`, `\\x0c`, `\\x1c`-`\\x1e`, `\\x85`, U+2028 and U+2029.
Every function here escapes or refuses all of them.
"""

from __future__ import annotations

import keyword
import re
import shlex
import unicodedata
from typing import Any

LINE_SEPARATORS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


class EscapeError(ValueError):
    """A value that cannot be written into its target language at all (it is refused, not escaped)."""


def has_line_separator(value: str) -> bool:
    return any(ch in LINE_SEPARATORS for ch in value)


def _printable(ch: str) -> bool:
    """Safe to write as itself: printable (no control, format, separator or surrogate character),
    or a plain space."""
    return ch == " " or ch.isprintable()


def _check_text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise EscapeError(f"{what} must be text, not {type(value).__name__}")
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in value):
        raise EscapeError(f"{what} {value.encode('utf-8', 'backslashreplace').decode()!r} is not valid Unicode")
    return value


def _unicode_escape(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def one_line(value: str) -> str:
    """`value` with every character that is not printable (line separators, tabs, controls) written
    as a backslash escape: always one line of text, for comments and prose."""
    _check_text(value, "the text")
    return "".join(ch if _printable(ch) else _unicode_escape(ch) for ch in value)


# ---------------------------------------------------------------------------------------------
# Python
# ---------------------------------------------------------------------------------------------


def py_str(value: str) -> str:
    """A Python string literal equal to `value`, on one line."""
    _check_text(value, "the text")
    body = "".join(
        "\\\\" if ch == "\\" else '\\"' if ch == '"' else ch if _printable(ch) else _unicode_escape(ch) for ch in value
    )
    return f'"{body}"'


def py_literal(value: Any) -> str:
    """A Python literal for plain data (str, int, float, bool, None, lists and dicts of those);
    refuses anything else, so nothing from a notebook becomes code."""
    if isinstance(value, str):
        return py_str(value)
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        return repr(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise EscapeError(f"{value!r} is not a finite number")
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(py_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{py_literal(k)}: {py_literal(v)}" for k, v in value.items()) + "}"
    raise EscapeError(f"not plain data: {type(value).__name__}")


def py_docstring(value: str) -> str:
    """Text for the inside of a `\"\"\"...\"\"\"` docstring (not raw) that reads back as `value`:
    backslashes and quotes escaped, non-printable characters as escapes, one line."""
    _check_text(value, "the text")
    out = []
    for ch in value:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif _printable(ch):
            out.append(ch)
        else:
            out.append(_unicode_escape(ch))
    return "".join(out)


def py_comment(value: str) -> str:
    """Text for a `# ...` comment: one line, whatever `value` holds."""
    return one_line(value)


def py_identifier(value: str) -> str:
    """`value` if it is a Python identifier in its NFKC form (PEP 3131) and not a keyword."""
    _check_text(value, "the name")
    if not value.isidentifier() or keyword.iskeyword(value) or unicodedata.normalize("NFKC", value) != value:
        raise EscapeError(f"{value!r} is not a Python identifier")
    return value


# ---------------------------------------------------------------------------------------------
# TOML, YAML, JSON
# ---------------------------------------------------------------------------------------------


def toml_str(value: str) -> str:
    """A TOML basic string equal to `value`."""
    _check_text(value, "the text")
    out = []
    for ch in value:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif _printable(ch):
            out.append(ch)
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def toml_comment(value: str) -> str:
    """Text for a TOML `# ...` comment: one line, no control characters."""
    return one_line(value)


def yaml_document(data: Any) -> str:
    """A YAML document for plain data: every scalar quoted and escaped by PyYAML's safe dumper
    (non-ASCII written as escapes, so no line separator survives unescaped)."""
    import yaml

    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=False, width=100)


def yaml_scalar(value: str) -> str:
    """A YAML double-quoted scalar equal to `value`."""
    import yaml

    _check_text(value, "the text")
    text = yaml.safe_dump(value, default_style='"', allow_unicode=False, width=float("inf"))
    return text.removesuffix("\n...\n").rstrip("\n")


def json_text(data: Any, **kwargs: Any) -> str:
    """JSON for plain data, ASCII only (U+2028 and friends escaped)."""
    import json

    return json.dumps(data, ensure_ascii=True, **kwargs)


# ---------------------------------------------------------------------------------------------
# Prometheus (PromQL, alert templates)
# ---------------------------------------------------------------------------------------------


def promql_str(value: str) -> str:
    """A PromQL double-quoted string literal (a label matcher's value) equal to `value`: backslash
    and quote escaped, every non-printable character as a Go escape (`\\xNN`, `\\uNNNN`)."""
    _check_text(value, "the text")
    out = []
    for ch in value:
        if ch in '\\"':
            out.append("\\" + ch)
        elif _printable(ch):
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def prom_template_text(value: str) -> str:
    """Text for a Prometheus alert label or annotation (Go text/template) that expands to exactly
    `value`: every `{{` becomes the action `{{ "{{" }}`, so nothing in `value` is run as a template."""
    _check_text(value, "the text")
    return value.replace("{{", '{{ "{{" }}')


# ---------------------------------------------------------------------------------------------
# Dockerfile, shell
# ---------------------------------------------------------------------------------------------


def dockerfile_word(value: str) -> str:
    """`value` as a double-quoted Dockerfile word (an ARG default, a LABEL value): no variable
    expansion, no line break, no escape. Refuses what a Dockerfile line cannot hold."""
    _check_text(value, "the value")
    if any(not _printable(ch) for ch in value):
        raise EscapeError(f"{value!r} contains a line break or control character and cannot go into a Dockerfile")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def dockerfile_comment(value: str) -> str:
    """Text for a Dockerfile `# ...` comment: one line (a backslash can't continue a comment)."""
    return one_line(value)


def percent_encode_unprintable(value: str) -> str:
    """`value` with backslashes and non-printable characters percent-encoded (UTF-8): for label
    values that must be one printable line without backslashes."""
    _check_text(value, "the value")
    out = []
    for ch in value:
        if ch == "\\" or ch == "%" or not _printable(ch):
            out.append("".join(f"%{b:02X}" for b in ch.encode("utf-8")))
        else:
            out.append(ch)
    return "".join(out)


_SHELL_SAFE = re.compile(r"[A-Za-z0-9_@%+=:,./-]+\Z")


def shell_word(value: str) -> str:
    """`value` as one POSIX shell word (`shlex.quote`): no expansion, no substitution. Refuses
    values with line separators or control characters, which a copy-paste line cannot hold."""
    _check_text(value, "the value")
    if any(not _printable(ch) for ch in value):
        raise EscapeError(f"{value!r} contains a line break or control character and cannot be one shell line")
    return shlex.quote(value)


# ---------------------------------------------------------------------------------------------
# Markdown, requirements
# ---------------------------------------------------------------------------------------------


def md_text(value: str) -> str:
    """Markdown prose (within a line) showing `value` literally: one line, the punctuation that
    Markdown or HTML reads inside a line backslash-escaped."""
    text = one_line(value)
    return re.sub(r"([\\`*_{}\[\]<>!|~&$#])", r"\\\1", text)


def md_code(value: str) -> str:
    """A Markdown code span showing `value` (one line; non-printable characters as escapes)."""
    text = one_line(value)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    if text.startswith("`") or text.endswith("`") or (text.startswith(" ") and text.endswith(" ") and text.strip()):
        text = f" {text} "
    return f"{fence}{text}{fence}"


def requirement_line(spec: str) -> str:
    """`spec` as one line of a requirements file: a PEP 508 requirement, on one line, that pip
    reads as exactly this requirement (no option, no comment, no continuation)."""
    from packaging.requirements import InvalidRequirement, Requirement

    _check_text(spec, "the requirement")
    if any(not _printable(ch) for ch in spec):
        raise EscapeError(f"the requirement {spec!r} contains a line break or control character")
    if spec.lstrip().startswith("-") or " #" in spec or "\t#" in spec or spec.rstrip().endswith("\\"):
        raise EscapeError(f"the requirement {spec!r} would be read by pip as an option, comment or continuation")
    try:
        Requirement(spec)
    except InvalidRequirement as exc:
        raise EscapeError(f"{spec!r} is not a requirement like name==1.0 ({exc})") from None
    return spec.strip()


def requirements_comment(value: str) -> str:
    """Text for a `# ...` line of a requirements file: one line as pip splits lines, and no
    trailing backslash."""
    text = one_line(value)
    return f"{text}." if text.endswith("\\") else text
