"""Roles from tags and `#|` directives, nbdev and Kale markers, near-miss spellings."""

from __future__ import annotations

from pathlib import Path

from nbtest_helpers import FIXTURES, cell, write_notebook

from nb2prod.notebook import read_notebook
from nb2prod.roles import resolve_roles


def roles_of(path: Path) -> list[tuple[frozenset[str], str | None]]:
    cells, _ = resolve_roles(read_notebook(path))
    return [(c.roles, c.module) for c in cells]


def test_tags_and_directives_are_equivalent(tmp_path: Path) -> None:
    path = write_notebook(
        tmp_path / "nb.ipynb",
        [
            cell("x = 1", "export"),
            cell("#| export\nx = 1"),
            cell("#|export: features\ny = 2"),
            cell("z = 3", "export: features"),
            cell("#| train\n#| metrics\nmodel = 1"),
        ],
    )
    assert roles_of(path) == [
        (frozenset({"export"}), "core"),
        (frozenset({"export"}), "core"),
        (frozenset({"export"}), "features"),
        (frozenset({"export"}), "features"),
        (frozenset({"train", "metrics"}), None),
    ]


def test_directive_lines_are_blanked_keeping_line_numbers(tmp_path: Path) -> None:
    path = write_notebook(tmp_path / "nb.ipynb", [cell("#| export\nx = 1\n#| not a directive after code")])
    cells, _ = resolve_roles(read_notebook(path))
    assert cells[0].code.split("\n") == ["", "x = 1", "#| not a directive after code"]


def test_skip_overrides_every_role(tmp_path: Path) -> None:
    path = write_notebook(tmp_path / "nb.ipynb", [cell("x = 1", "export", "train", "skip")])
    assert roles_of(path) == [(frozenset({"skip"}), None)]


def test_nbdev_markers() -> None:
    cells, _ = resolve_roles(read_notebook(FIXTURES / "nbdev_style.ipynb"))
    exported = [c for c in cells if "export" in c.roles]
    assert exported and all(c.module == "core" for c in exported)
    assert any(c.internal for c in exported)
    hidden = [c for c in cells if "pprint" in c.cell.source]
    assert hidden and not hidden[0].roles


def test_kale_markers() -> None:
    cells, _ = resolve_roles(read_notebook(FIXTURES / "kale_style.ipynb"))
    by_id = {c.cell.id: c.roles for c in cells}
    assert by_id["imports"] == {"export"}
    assert by_id["functions"] == {"export"}
    assert by_id["params"] == {"parameters"}
    assert by_id["train"] == {"train"}  # `step:NAME`, Kale's current name for `block:NAME`
    assert by_id["evaluate"] == {"train"}
    assert by_id["metrics"] == {"metrics"}
    assert by_id["scratch"] == {"skip"}
    # Kale merges an untagged cell into the block of the tagged cell before it (markdown cells between too)
    assert by_id["imports-more"] == {"export"}
    assert by_id["train-more"] == {"train"}
    assert by_id["evaluate-more"] == {"train"}


def test_kale_continuation_follows_kale_blocks_only(tmp_path: Path) -> None:
    path = write_notebook(
        tmp_path / "nb.ipynb",
        [
            cell("a = 1", "block:one"),
            cell("b = 2", "skip"),
            cell("c = 3"),  # a skipped cell neither ends the block nor is continued
            cell("d = 4", "train"),  # an nb2prod role ends the Kale block
            cell("e = 5"),
            cell("f = 6", "step:"),  # an empty step name, as the Kale extension may write
            cell("g = 7"),
        ],
    )
    cells, notes = resolve_roles(read_notebook(path))
    assert [sorted(c.roles) for c in cells] == [["train"], ["skip"], ["train"], ["train"], [], ["train"], ["train"]]
    assert not notes


def test_kale_pipeline_metrics_prints_become_the_metrics_record(tmp_path: Path) -> None:
    path = write_notebook(
        tmp_path / "nb.ipynb",
        [
            cell("model = 1\nmean_error = 0.5\nr2 = 0.9", "block:train"),
            cell("print(mean_error)", "pipeline-metrics"),
            cell("print(r2)\n"),  # continues the metrics block
        ],
    )
    cells, _ = resolve_roles(read_notebook(path))
    assert cells[1].code == "print(mean_error)\nmetrics = {'mean-error': mean_error}"
    assert cells[2].code == "print(r2)\nmetrics = {**metrics, 'r2': r2}"
    namespace: dict = {}
    for roled in cells:
        exec(roled.code, namespace)  # noqa: S102 - the test's own cells
    assert namespace["metrics"] == {"mean-error": 0.5, "r2": 0.9}


def test_near_miss_gets_did_you_mean() -> None:
    cells, notes = resolve_roles(read_notebook(FIXTURES / "typo_tag.ipynb"))
    assert any("did you mean 'export'" in n.message and n.location and n.location.cell_index is not None for n in notes)
    assert not any(c.roles for c in cells if "exprot" in c.cell.tags)


def test_unknown_tags_are_ignored_silently(tmp_path: Path) -> None:
    path = write_notebook(tmp_path / "nb.ipynb", [cell("x = 1", "hide-output", "my-own-tag")])
    cells, notes = resolve_roles(read_notebook(path))
    assert not cells[0].roles and not notes
