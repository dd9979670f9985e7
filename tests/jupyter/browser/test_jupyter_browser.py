"""The nb2prod JupyterLab extension in a real browser, as a data scientist uses it: tag a cell
with a command, press "Export to production", read the dialog, find the package on disk; on a
broken notebook, follow a finding's link to the cell that must change."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from conftest import REPO, Lab
from playwright.sync_api import expect

FRAUD = REPO / "examples" / "fraud" / "fraud_detection.ipynb"
BROKEN = REPO / "tests" / "fixtures" / "broken_dependency.ipynb"
PANEL = ".jp-NotebookPanel"  # each test opens its notebook in a workspace of its own
EXPORT_BUTTON = f"{PANEL} .jp-nb2prod-export-button"
ACTIVE_CELL = f"{PANEL} .jp-Notebook .jp-Cell.jp-mod-active"
DIALOG = ".jp-Dialog.jp-nb2prod-dialog"


def cell(index: int) -> str:
    return f"{PANEL} .jp-Notebook .jp-Cell[data-windowed-list-index='{index}']"


def open_notebook(page, lab: Lab, path: str, workspace: str) -> None:
    """Open the notebook alone, in a fresh workspace (no tabs restored from another test)."""
    page.goto(f"{lab.url}lab/workspaces/{workspace}/tree/{path}?reset&token={lab.token}")
    page.wait_for_selector(EXPORT_BUTTON, state="visible")
    page.wait_for_selector(f"{PANEL} .jp-Notebook .jp-Cell", state="visible")
    expect(page.locator(PANEL)).to_have_count(1)


def run_command(page, label: str) -> None:
    """Run a command from the command palette (opened from the View menu), as a person would."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    search = page.locator(".lm-CommandPalette-input")
    # The modal palette closes when the focus moves (JupyterLab focuses the notebook when its
    # kernel connects): then open it again, as a person would.
    for attempt in range(5):
        page.locator(".lm-MenuBar-item", has_text="View").click()
        page.locator(".lm-Menu-item[data-command='apputils:activate-command-palette']").click()
        try:
            search.fill(label, timeout=5000)
            page.locator(".lm-CommandPalette-item", has_text=label).first.click(timeout=5000)
            break
        except PlaywrightTimeout:
            if attempt == 4:
                raise
            page.keyboard.press("Escape")
    search.wait_for(state="hidden")


def wait_for_file(condition, page, attempts: int = 100) -> None:
    """Poll the disk (the server writes it after the browser's request) until `condition()`."""
    for _ in range(attempts):
        if condition():
            return
        page.wait_for_timeout(100)
    assert condition()


def saved_tags(path: Path, cell_id: str) -> list[str]:
    notebook = json.loads(path.read_text())
    [found] = [c for c in notebook["cells"] if c.get("id") == cell_id]
    return found["metadata"].get("tags", [])


def test_tag_a_cell_export_and_find_the_package_on_disk(page, lab: Lab, artifacts: Path) -> None:
    # The fraud example with the train cell's tag taken away: the user tags it in JupyterLab.
    notebook = json.loads(FRAUD.read_text())
    cells = notebook["cells"]
    train_index = next(i for i, c in enumerate(cells) if c.get("id") == "train")
    del cells[train_index]["metadata"]["tags"]
    target = lab.root / "fraud" / "fraud_detection.ipynb"
    target.parent.mkdir()
    target.write_text(json.dumps(notebook, indent=1))

    open_notebook(page, lab, "fraud/fraud_detection.ipynb", "export-fraud")
    train_cell = page.locator(cell(train_index))
    # Tagged cells carry a badge once the notebook is drawn; the untagged train cell has none.
    expect(page.locator(cell(1)).locator(".jp-nb2prod-badge-parameters")).to_have_text("parameters")
    expect(train_cell.locator(".jp-nb2prod-badge")).to_have_count(0)

    train_cell.scroll_into_view_if_needed()
    train_cell.locator(".jp-InputPrompt").click()
    page.keyboard.press("Escape")
    run_command(page, "nb2prod: set role → train")
    badge = train_cell.locator(".jp-nb2prod-badge-train")
    expect(badge).to_have_text("train")

    page.locator(EXPORT_BUTTON).click()
    dialog = page.locator(f"{DIALOG}.jp-nb2prod-dialog-ok")
    dialog.wait_for(state="visible")
    assert "Exported to production" in dialog.locator(".jp-Dialog-header").inner_text()
    assert dialog.locator(".jp-nb2prod-output-dir").inner_text() == "fraud/build/fraud-detection"
    files = dialog.locator(".jp-nb2prod-file").all_inner_texts()
    assert "src/fraud_detection/train.py" in files and "job/train.ipynb" in files
    dialog.screenshot(path=str(artifacts / "export-ok-dialog.png"))

    # The button saved the notebook first: the tag is on disk, written as the CLI reads it ...
    assert saved_tags(target, "train") == ["train"]
    # ... and the package is on disk, every listed file of it.
    output = lab.root / "fraud" / "build" / "fraud-detection"
    assert (output / "nb2prod.json").is_file()
    for name in files:
        assert (output / name).is_file(), name
    train_source = (output / "src" / "fraud_detection" / "_job.py").read_text()
    assert "RandomForestClassifier" in train_source

    dialog.locator(".jp-Dialog-button.jp-mod-accept").click()
    dialog.wait_for(state="detached")


def test_a_broken_dependency_links_to_its_cells(page, lab: Lab, artifacts: Path) -> None:
    shutil.copy(BROKEN, lab.root / "broken_dependency.ipynb")
    open_notebook(page, lab, "broken_dependency.ipynb", "export-broken")
    # Start elsewhere, so that following a link visibly moves the selection.
    page.locator(cell(0)).locator(".jp-InputPrompt").click()
    page.keyboard.press("Escape")

    page.locator(EXPORT_BUTTON).click()
    dialog = page.locator(f"{DIALOG}.jp-nb2prod-dialog-failed")
    dialog.wait_for(state="visible")
    assert "error" in dialog.locator(".jp-Dialog-header").inner_text()
    finding = dialog.locator(".jp-nb2prod-finding.jp-nb2prod-severity-error").first
    assert "load_points" in finding.inner_text()
    dialog.screenshot(path=str(artifacts / "export-errors-dialog.png"))
    assert not (lab.root / "build").exists()

    # The finding's link: the train cell that uses `load_points` (index 3) becomes the active cell.
    finding.locator(".jp-nb2prod-finding-link").click()
    dialog.wait_for(state="detached")
    active = page.locator(ACTIVE_CELL)
    expect(active).to_have_attribute("data-windowed-list-index", "3")
    expect(active).to_have_count(1)
    assert "load_points(n_points)" in active.inner_text()
    # The finding is also shown on that cell.
    expect(page.locator(cell(3)).locator(".jp-nb2prod-cell-findings")).to_contain_text("load_points")

    # The related link lands on the untagged cell that defines it: the one that needs a tag.
    page.locator(EXPORT_BUTTON).click()
    dialog.wait_for(state="visible")
    dialog.locator(".jp-nb2prod-related-link").first.click()
    dialog.wait_for(state="detached")
    expect(active).to_have_attribute("data-windowed-list-index", "2")
    assert "def load_points" in active.inner_text()


def cell_context_menu(page, index: int, *path: str) -> None:
    """Right-click a cell and follow the menu items named in `path`."""
    page.locator(cell(index)).locator(".jp-InputPrompt").click(button="right")
    for label in path:
        item = page.locator(".lm-Menu:visible .lm-Menu-item", has_text=label).last
        item.wait_for(state="visible")
        item.click()


def test_roles_from_the_cell_menu_and_inspect_findings_on_cells(page, lab: Lab) -> None:
    target = lab.root / "tagging.ipynb"
    shutil.copy(BROKEN, target)
    open_notebook(page, lab, "tagging.ipynb", "tagging")
    helpers, train = page.locator(cell(2)), page.locator(cell(3))

    # inspect puts the error on the train cell that uses the untagged helper ...
    train.locator(".jp-InputPrompt").click()
    page.keyboard.press("Escape")
    run_command(page, "nb2prod: inspect")
    expect(train.locator(".jp-nb2prod-cell-finding.jp-nb2prod-severity-error")).to_contain_text("load_points")
    expect(train).to_have_class(re.compile(r"\bjp-nb2prod-has-error\b"))

    # ... tagging the helper cell from its context menu fixes it.
    cell_context_menu(page, 2, "nb2prod role", "export")
    expect(helpers.locator(".jp-nb2prod-badge-export")).to_have_text("export")
    run_command(page, "nb2prod: inspect")
    expect(train.locator(".jp-nb2prod-cell-findings")).to_have_count(0)
    expect(train).not_to_have_class(re.compile(r"\bjp-nb2prod-has-error\b"))
    assert saved_tags(target, "helpers") == ["export"]  # inspect saved the notebook first

    # Removing the roles takes the tag and the badge away; other tags stay.
    page.locator(cell(2)).locator(".jp-InputPrompt").click()
    run_command(page, "nb2prod: set role → test")
    expect(helpers.locator(".jp-nb2prod-badge")).to_have_count(2)
    cell_context_menu(page, 2, "nb2prod role", "remove nb2prod roles")
    expect(helpers.locator(".jp-nb2prod-badge")).to_have_count(0)
    page.locator(f"{PANEL} .jp-Toolbar [data-command='docmanager:save']").click()
    wait_for_file(lambda: saved_tags(target, "helpers") == [], page)
