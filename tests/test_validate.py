"""nb2prod.validate: each language's check accepts what nb2prod writes and catches a broken file."""

from __future__ import annotations

import pytest
from generated_checks import tree
from nbtest_helpers import EXAMPLES

from nb2prod import api
from nb2prod.validate import FileProblem, check_file, check_files, culprit


def test_every_file_of_a_real_build_passes(tmp_path) -> None:
    result = api.build(EXAMPLES / "fraud" / "fraud_detection.ipynb", output=tmp_path / "out")
    assert check_files(tree(result.output_dir)) is None


@pytest.mark.parametrize(
    ("path", "text", "language", "line"),
    [
        ("src/p/m.py", '"""a"""b"""\n', "Python", 1),
        ("pyproject.toml", 'name = "a"\nb = "c\n', "TOML", 2),
        ("k8s/job.yaml", "a: [1\n", "YAML", None),
        ("job/train.ipynb", '{"cells": [}', "JSON", 1),
        ("requirements.lock", "# x\nnumpy==1.0\nevil package\n", "requirements", 3),
        ("requirements.lock", "# from a\u2028evil-package==6.6.6\n", "requirements", 1),
        ("requirements.lock", "numpy==1.0 \\\n", "requirements", 1),
        ("Dockerfile", "FROM python\nRUN true\nevil instruction\n", "Dockerfile", 3),
        ("Dockerfile", "RUN true\n", "Dockerfile", 1),
        ("Dockerfile", 'FROM python\nCMD ["a", \n', "Dockerfile", 2),
        ("Dockerfile", 'FROM python\nLABEL a="b" c\n', "Dockerfile", 2),
        ("Dockerfile", "FROM python\nARG A B\n", "Dockerfile", 2),
        ("Dockerfile", "FROM python\r\nRUN true\n", "Dockerfile", 1),
        ("README.md", "# a\nb\u2029c\n", "text", 2),
    ],
)
def test_a_broken_file_is_found_with_its_line(path: str, text: str, language: str, line: int | None) -> None:
    problem = check_file(path, text.encode())
    assert problem is not None and problem.language == language
    if line is not None:
        assert problem.line == line


def test_continued_dockerfile_instructions_with_comments_pass() -> None:
    text = (
        "ARG BASE=python:3.11\nFROM ${BASE} AS x\nRUN set -eu; \\\n    # a comment inside\n    true\n"
        'LABEL a="x \\" y" \\\n      b="\\$HOME"\nHEALTHCHECK --interval=3s CMD ["python", "-c", "1"]\n'
        'ENTRYPOINT ["/bin/python"]\nCMD ["--help"]\n'
    )
    assert check_file("Dockerfile", text.encode()) is None


def test_not_utf8_is_a_problem() -> None:
    assert check_file("README.md", b"\xff\xfe").detail.startswith("it is not UTF-8")


def test_the_culprit_is_the_field_on_the_broken_line() -> None:
    files = {"src/p/__init__.py": b'"""p: built from a"""b.ipynb."""\n'}
    problem = FileProblem("src/p/__init__.py", "Python", 1, "unterminated")
    fields = [("the id of cell 1", "c0"), ("the notebook's file name", 'a"""b.ipynb')]
    assert culprit(problem, files, fields) == "the notebook's file name"


@pytest.mark.parametrize(
    ("path", "text", "detail"),
    [
        ("monitoring/prometheus-rules.yml", "rules: []\n", "no list of rule groups"),
        ("monitoring/prometheus-rules.yml", "groups:\n  - rules: []\n", "no name or no list of rules"),
        ("monitoring/prometheus-rules.yml", "groups:\n  - name: g\n    rules:\n      - alert: A\n", "no expr"),
        (
            "monitoring/prometheus-rules.yml",
            "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up == 0\n        labels: {a: [1]}\n",
            "labels of 'A' are not text",
        ),
        ("monitoring/grafana-dashboard.json", '{"panels": []}', "no title"),
        ("monitoring/grafana-dashboard.json", '{"title": "t", "panels": [{"title": "p"}]}', "no list of queries"),
        ("monitoring/grafana-dashboard.json", '{"title": "t", "panels": [{"title": "p", "targets": [{}]}]}', "no expr"),
    ],
)
def test_monitoring_files_must_have_their_structure(path: str, text: str, detail: str) -> None:
    problem = check_file(path, text.encode())
    assert problem is not None and detail in problem.detail, problem
    assert check_file(path.replace("monitoring/", "elsewhere/"), text.encode()) is None  # other files: only parsed
