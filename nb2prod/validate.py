"""Every generated file is parsed in its own language before a build may be reported as done.

`check_files(files)` returns the first problem found as a `FileProblem` (file, language, line,
detail), or None: Python is compiled, TOML read by tomllib, YAML by `yaml.safe_load_all`, JSON and
notebooks by `json`, requirement files line by line as pip splits them with
`packaging.requirements.Requirement`, and the Dockerfile instruction by instruction. The
monitoring files are checked for their structure too (Prometheus rule groups, Grafana panels). Text files
other than Python and JSON must not hold a line separator other than `\\n`.

`culprit(problem, files, fields)` names the notebook field whose value sits where the file broke,
so the message can say what to change.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Iterable

from nb2prod.escape import LINE_SEPARATORS

DOCKERFILE_INSTRUCTIONS = frozenset(
    "FROM RUN CMD LABEL MAINTAINER EXPOSE ENV ADD COPY ENTRYPOINT VOLUME USER WORKDIR ARG ONBUILD STOPSIGNAL "
    "HEALTHCHECK SHELL".split()
)


@dataclass(frozen=True)
class FileProblem:
    path: str
    language: str
    line: int | None
    detail: str


def language_of(path: str) -> str | None:
    name = path.rsplit("/", 1)[-1]
    if name.endswith(".py"):
        return "Python"
    if name.endswith(".toml"):
        return "TOML"
    if name.endswith((".yaml", ".yml")):
        return "YAML"
    if name.endswith((".json", ".ipynb")):
        return "JSON"
    if name == "Dockerfile":
        return "Dockerfile"
    if name.startswith("requirements") and name.endswith((".lock", ".txt")):
        return "requirements"
    return None


def check_files(files: dict[str, bytes]) -> FileProblem | None:
    for path, data in sorted(files.items()):
        problem = check_file(path, data)
        if problem is not None:
            return problem
    return None


def check_file(path: str, data: bytes) -> FileProblem | None:
    language = language_of(path) or "text"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return FileProblem(path, language, None, f"it is not UTF-8 (byte {exc.start})")
    if language not in ("Python", "JSON"):
        for number, line in enumerate(text.split("\n"), 1):
            bad = next((ch for ch in line if ch in LINE_SEPARATORS), None)
            if bad is not None:
                return FileProblem(path, language, number, f"the line holds the line separator {bad!r}")
    checker = _CHECKERS.get(language)
    problem = checker(path, text) if checker else None
    shape = _SHAPES.get(path)
    return problem or (shape(path, text) if shape else None)


def _prometheus_rules(path: str, text: str) -> FileProblem | None:
    """A Prometheus rule file: `groups`, each a name and rules with an `alert` or `record` and an `expr`."""
    import yaml

    data = yaml.safe_load(text)
    groups = data.get("groups") if isinstance(data, dict) else None
    if not isinstance(groups, list) or not groups:
        return FileProblem(path, "Prometheus rules", None, "it has no list of rule groups")
    for group in groups:
        rules = group.get("rules") if isinstance(group, dict) else None
        if not isinstance(group.get("name") if isinstance(group, dict) else None, str) or not isinstance(rules, list):
            return FileProblem(path, "Prometheus rules", None, "a rule group has no name or no list of rules")
        for rule in rules:
            if (
                not isinstance(rule, dict)
                or not isinstance(rule.get("expr"), str)
                or not (isinstance(rule.get("alert"), str) or isinstance(rule.get("record"), str))
            ):
                return FileProblem(path, "Prometheus rules", None, "a rule has no alert or record name, or no expr")
            for key in ("labels", "annotations"):
                values = rule.get(key, {})
                if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
                    return FileProblem(
                        path, "Prometheus rules", None, f"the {key} of {rule.get('alert')!r} are not text"
                    )
    return None


def _grafana_dashboard(path: str, text: str) -> FileProblem | None:
    """A Grafana dashboard: a title and panels, each with a title and queries (`targets` with an `expr`)."""
    data = json.loads(text)
    panels = data.get("panels") if isinstance(data, dict) else None
    if not isinstance(data.get("title") if isinstance(data, dict) else None, str) or not isinstance(panels, list):
        return FileProblem(path, "Grafana dashboard", None, "it has no title or no list of panels")
    for panel in panels:
        targets = panel.get("targets") if isinstance(panel, dict) else None
        if not isinstance(panel.get("title") if isinstance(panel, dict) else None, str) or not isinstance(
            targets, list
        ):
            return FileProblem(path, "Grafana dashboard", None, "a panel has no title or no list of queries")
        if not all(isinstance(t, dict) and isinstance(t.get("expr"), str) for t in targets):
            return FileProblem(path, "Grafana dashboard", None, f"a query of panel {panel['title']!r} has no expr")
    return None


def _python(path: str, text: str) -> FileProblem | None:
    try:
        compile(text, path, "exec", dont_inherit=True)
    except SyntaxError as exc:
        return FileProblem(path, "Python", exc.lineno, exc.msg)
    except (ValueError, RecursionError, MemoryError) as exc:
        return FileProblem(path, "Python", None, str(exc) or type(exc).__name__)
    return None


def _toml(path: str, text: str) -> FileProblem | None:
    import tomllib

    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        return FileProblem(path, "TOML", int(match.group(1)) if match else None, str(exc))
    return None


def _yaml(path: str, text: str) -> FileProblem | None:
    import yaml

    try:
        list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        return FileProblem(path, "YAML", mark.line + 1 if mark else None, str(getattr(exc, "problem", exc)))
    return None


def _json(path: str, text: str) -> FileProblem | None:
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return FileProblem(path, "JSON", exc.lineno, exc.msg)
    except RecursionError:
        return FileProblem(path, "JSON", None, "it nests too deeply")
    return None


def _requirements(path: str, text: str) -> FileProblem | None:
    from packaging.requirements import InvalidRequirement, Requirement

    for number, line in enumerate(text.splitlines(), 1):  # how pip splits a requirements file
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\") or " #" in stripped:
            return FileProblem(path, "requirements", number, "pip would read a continuation or a comment here")
        try:
            Requirement(stripped)
        except InvalidRequirement as exc:
            return FileProblem(path, "requirements", number, f"{stripped!r} is not a requirement ({exc})")
    return None


def dockerfile_instructions(text: str) -> Iterable[tuple[int, str, str]]:
    """(first line, INSTRUCTION, arguments) of each instruction, continuations joined and
    comment lines skipped, as the Dockerfile parser reads them (default escape `\\`)."""
    lines = text.split("\n")
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        start = index
        parts = []
        while line.rstrip().endswith("\\"):
            parts.append(line.rstrip()[:-1])
            while index < len(lines) and lines[index].lstrip().startswith("#"):
                index += 1  # comment lines inside a continued instruction are dropped
            if index >= len(lines):
                line = ""
                break
            line = lines[index]
            index += 1
        parts.append(line)
        logical = " ".join(p.strip() for p in parts)
        word, _, arguments = logical.partition(" ")
        yield start, word, arguments.strip()


def _dockerfile(path: str, text: str) -> FileProblem | None:
    seen_from = False
    for number, word, arguments in dockerfile_instructions(text):
        instruction = word.upper()
        if instruction not in DOCKERFILE_INSTRUCTIONS:
            return FileProblem(path, "Dockerfile", number, f"{word!r} is not a Dockerfile instruction")
        if not seen_from and instruction not in ("ARG", "FROM"):
            return FileProblem(path, "Dockerfile", number, f"{instruction} comes before the first FROM")
        seen_from = seen_from or instruction == "FROM"
        if not arguments:
            return FileProblem(path, "Dockerfile", number, f"{instruction} has no arguments")
        exec_form = arguments
        if instruction == "HEALTHCHECK":
            match = re.search(r"(?:^|\s)CMD\s+(.*)", arguments)
            exec_form = match.group(1).strip() if match else ""
        if instruction in ("CMD", "ENTRYPOINT", "SHELL", "HEALTHCHECK") and exec_form.startswith("["):
            try:
                form = json.loads(exec_form)
            except json.JSONDecodeError:
                return FileProblem(path, "Dockerfile", number, f"the exec form of {instruction} is not a JSON list")
            if not isinstance(form, list) or not all(isinstance(item, str) for item in form):
                return FileProblem(
                    path, "Dockerfile", number, f"the exec form of {instruction} is not a list of strings"
                )
        if instruction in ("LABEL", "ENV") and "=" in arguments:
            problem = _key_values(arguments)
            if problem:
                return FileProblem(path, "Dockerfile", number, f"{instruction}: {problem}")
        if instruction == "ARG" and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(=\S*|=\"(?:[^\"\\]|\\.)*\")?", arguments):
            return FileProblem(path, "Dockerfile", number, f"ARG {arguments!r} is not NAME or NAME=VALUE")
    if not seen_from:
        return FileProblem(path, "Dockerfile", None, "it has no FROM instruction")
    return None


_PAIR = re.compile(r'\s*([A-Za-z0-9._/-]+|"(?:[^"\\]|\\.)*")=("(?:[^"\\]|\\.)*"|(?:[^\s"\\]|\\.)*)(?=\s|\Z)')


def _key_values(arguments: str) -> str | None:
    """Why `key=value key="value" ...` is not a list of pairs, or None."""
    position = 0
    while position < len(arguments):
        match = _PAIR.match(arguments, position)
        if not match:
            return f"{arguments[position:position + 40]!r} is not key=value"
        position = match.end()
        while position < len(arguments) and arguments[position].isspace():
            position += 1
    return None


_CHECKERS = {
    "Python": _python,
    "TOML": _toml,
    "YAML": _yaml,
    "JSON": _json,
    "requirements": _requirements,
    "Dockerfile": _dockerfile,
}
# files whose structure is checked too, once they parse (nb2prod/deploy/monitoring.py writes them)
_SHAPES = {
    "monitoring/prometheus-rules.yml": _prometheus_rules,
    "monitoring/grafana-dashboard.json": _grafana_dashboard,
}


def culprit(problem: FileProblem, files: dict[str, bytes], fields: Iterable[tuple[str, str]]) -> str | None:
    """Which of `fields` ((description, value) pairs of notebook-derived strings) sits where the
    file broke: on its line first, then near it, then anywhere in the file; the longest value wins."""
    text = files[problem.path].decode("utf-8", "replace")
    lines = text.split("\n")
    candidates = [(what, value) for what, value in fields if isinstance(value, str) and len(value) >= 2]
    windows: list[str] = []
    if problem.line is not None and 1 <= problem.line <= len(lines):
        windows.append(lines[problem.line - 1])
        windows.append("\n".join(lines[max(0, problem.line - 4) : problem.line + 3]))
    windows.append(text)
    for window in windows:
        found = [(len(value), what) for what, value in candidates if value in window or value[:24] in window]
        if found:
            return max(found)[1]
    return None
