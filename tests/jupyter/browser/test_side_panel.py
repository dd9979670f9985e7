"""The nb2prod side panel in a real browser, against a real `jupyter lab`: train the fraud example
twice with overrides, compare the runs, promote, roll back and find the alias on disk; fix a
finding with one click and see it disappear on save; directive badges; readable text in the
light and dark themes (WCAG AA on computed styles); no console errors."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from conftest import REPO, Lab
from playwright.sync_api import expect

FRAUD = REPO / "examples" / "fraud" / "fraud_detection.ipynb"
CHURN = REPO / "examples" / "churn" / "churn.ipynb"
BROKEN = REPO / "tests" / "fixtures" / "broken_dependency.ipynb"
NOTEBOOK = ".jp-NotebookPanel"
SIDE = "#nb2prod-side-panel"
TRAINING_LIMIT_MS = 300_000  # a bound for one training of the fraud example (about 20 s here)
expect.set_options(timeout=60_000)  # bounds only: the first inspect of a fresh server imports a lot


def cell(index: int) -> str:
    return f"{NOTEBOOK} .jp-Notebook .jp-Cell[data-windowed-list-index='{index}']"


def watch_console(page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    return errors


def open_with_panel(page, lab: Lab, path: str, workspace: str) -> None:
    page.goto(f"{lab.url}lab/workspaces/{workspace}/tree/{path}?reset&token={lab.token}")
    show_panel(page, path)


def show_panel(page, path: str) -> None:
    page.wait_for_selector(f"{NOTEBOOK} .jp-Notebook .jp-Cell", state="visible")
    tab = page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id='nb2prod-side-panel']")
    if "lm-mod-current" not in (tab.get_attribute("class") or ""):
        tab.click()
    expect(page.locator(SIDE)).to_be_visible()
    expect(page.locator(f"{SIDE} .jp-nb2prod-panel-notebook")).to_have_text(path)


def confirm(page, *names: str) -> str:
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(state="visible")
    text = dialog.locator(".jp-Dialog-body").inner_text()
    for name in names:
        assert name in text, (name, text)
    dialog.locator(".jp-Dialog-button.jp-mod-accept").click()
    dialog.wait_for(state="detached")
    return text


def train_from_panel(page, overrides: dict[str, str]) -> str:
    for name, value in overrides.items():
        page.locator(f"{SIDE} .jp-nb2prod-param[data-param='{name}'] input").fill(value)
    page.locator(f"{SIDE} .jp-nb2prod-train-button").click()
    # Live progress while the job runs: the cell being executed and the elapsed time.
    expect(page.locator(f"{SIDE} .jp-nb2prod-job-progress")).to_contain_text(re.compile(r"\d+\.\d s"))
    result = page.locator(f"{SIDE} .jp-nb2prod-job-result")
    expect(result).to_contain_text("succeeded", timeout=TRAINING_LIMIT_MS)
    return re.search(r"Run (\S+) succeeded", result.inner_text()).group(1)


def alias_on_disk(store: Path, alias: str = "production") -> str:
    return json.loads((store / "aliases" / f"{alias}.json").read_text())["run_id"]


def test_train_twice_compare_promote_and_roll_back(page, lab: Lab, artifacts: Path) -> None:
    errors = watch_console(page)
    target = lab.root / "fraud" / "fraud_detection.ipynb"
    target.parent.mkdir()
    shutil.copy(FRAUD, target)
    open_with_panel(page, lab, "fraud/fraud_detection.ipynb", "panel-fraud")
    expect(page.locator(f"{SIDE} .jp-nb2prod-build-state")).to_have_attribute("data-state", "stale")
    expect(page.locator(f"{SIDE} .jp-nb2prod-param")).to_have_count(9)  # recent_transactions is the ninth
    help_text = page.locator(f"{SIDE} .jp-nb2prod-param[data-param='n_transactions'] .jp-nb2prod-param-help")
    expect(help_text).to_have_text("number of synthetic transactions")

    # A value of the wrong type is refused by the form before anything runs.
    page.locator(f"{SIDE} .jp-nb2prod-param[data-param='n_transactions'] input").fill("many")
    expect(page.locator(f"{SIDE} .jp-nb2prod-train-button")).to_be_disabled()
    expect(page.locator(f"{SIDE} .jp-nb2prod-error-text")).to_contain_text("n_transactions expects an integer")

    first = train_from_panel(page, {"n_transactions": "3000"})
    page.screenshot(path=str(artifacts / "panel-trained-once.png"))
    rows = page.locator(f"{SIDE} .jp-nb2prod-run-row")
    expect(rows).to_have_count(1)
    expect(rows.first.locator(".jp-nb2prod-metric[data-metric='f1']")).to_have_text(re.compile(r"0\.\d+"))
    store = lab.root / "fraud" / "runs"
    recorded = json.loads((store / first / "run.json").read_text())
    assert recorded["params"]["n_transactions"] == 3000 and recorded["overrides"] == ["n_transactions"]

    second = train_from_panel(page, {"n_transactions": "4000", "max_depth": "4"})
    expect(rows).to_have_count(2)
    expect(page.locator(f"{SIDE} .jp-nb2prod-build-state")).to_have_attribute("data-state", "fresh")

    # Sorted by a metric, best first, then the other way round.
    header = page.locator(f"{SIDE} th[data-metric='roc_auc']")
    header.click()
    values = [float(v) for v in page.locator(f"{SIDE} td.jp-nb2prod-metric[data-metric='roc_auc']").all_inner_texts()]
    assert values == sorted(values, reverse=True)
    header.click()
    values = [float(v) for v in page.locator(f"{SIDE} td.jp-nb2prod-metric[data-metric='roc_auc']").all_inner_texts()]
    assert values == sorted(values)

    # The diff of the two runs names the parameters that differ.
    for run in (first, second):
        page.locator(f"{SIDE} .jp-nb2prod-run-row[data-run-id='{run}'] .jp-nb2prod-run-select").check()
    page.locator(f"{SIDE} .jp-nb2prod-diff-button").click()
    diff = page.locator(f"{SIDE} .jp-nb2prod-diff")
    expect(diff).to_contain_text("n_transactions")
    expect(diff).to_contain_text("max_depth")
    page.screenshot(path=str(artifacts / "panel-diff.png"))

    # Promote the first, then the second (the confirmation names both runs), then roll back.
    page.locator(f"{SIDE} .jp-nb2prod-run-row[data-run-id='{first}'] .jp-nb2prod-promote").click()
    confirm(page, first, "production")
    expect(page.locator(f"{SIDE} .jp-nb2prod-run-row[data-run-id='{first}'] .jp-nb2prod-run-aliases")).to_have_text(
        "production"
    )
    assert alias_on_disk(store) == first
    page.locator(f"{SIDE} .jp-nb2prod-run-row[data-run-id='{second}'] .jp-nb2prod-promote").click()
    confirm(page, first, second)
    expect(page.locator(f"{SIDE} .jp-nb2prod-run-row[data-run-id='{second}'] .jp-nb2prod-run-aliases")).to_have_text(
        "production"
    )
    assert alias_on_disk(store) == second
    page.screenshot(path=str(artifacts / "panel-promoted.png"))
    page.locator(f"{SIDE} .jp-nb2prod-rollback-button").click()
    confirm(page, second, first)
    expect(page.locator(f"{SIDE} .jp-nb2prod-run-row[data-run-id='{first}'] .jp-nb2prod-run-aliases")).to_have_text(
        "production"
    )
    assert alias_on_disk(store) == first
    history = page.locator(f"{SIDE} .jp-nb2prod-history li")
    expect(history).to_have_count(3)
    expect(history.first).to_contain_text(f"rollback production {second} → {first}")
    page.screenshot(path=str(artifacts / "panel-rolled-back.png"))
    assert errors == [], errors


def test_a_one_click_tag_fix_and_the_finding_disappears_on_save(page, lab: Lab, artifacts: Path) -> None:
    errors = watch_console(page)
    target = lab.root / "fix_me.ipynb"
    shutil.copy(BROKEN, target)
    open_with_panel(page, lab, "fix_me.ipynb", "panel-fix")
    train = page.locator(cell(3))
    # Findings come from the server when the notebook opens, and again after a reload.
    expect(train.locator(".jp-nb2prod-cell-finding.jp-nb2prod-severity-error")).to_contain_text("load_points")
    page.reload()
    show_panel(page, "fix_me.ipynb")
    expect(train.locator(".jp-nb2prod-cell-finding.jp-nb2prod-severity-error")).to_contain_text("load_points")
    expect(page.locator(f"{SIDE} .jp-nb2prod-build-state")).to_have_attribute("data-state", "errors")
    finding = page.locator(f"{SIDE} .jp-nb2prod-finding.jp-nb2prod-severity-error").first

    # The finding's link goes to the cell and the line.
    finding.locator(".jp-nb2prod-finding-link").click()
    expect(page.locator(f"{NOTEBOOK} .jp-Cell.jp-mod-active")).to_have_attribute("data-windowed-list-index", "3")
    expect(page.locator(f"{NOTEBOOK} .jp-Cell.jp-mod-active")).to_have_attribute("data-nb2prod-line", "1")
    page.screenshot(path=str(artifacts / "panel-finding.png"))

    fix = finding.locator(".jp-nb2prod-fix")
    expect(fix).to_have_text("Tag cell 3 export")
    fix.click()
    # The fix tags cell 3 (index 2) and saves; the re-check on save clears the finding.
    expect(page.locator(cell(2)).locator(".jp-nb2prod-badge-export")).to_have_text("export")
    expect(train.locator(".jp-nb2prod-cell-findings")).to_have_count(0)
    expect(page.locator(f"{SIDE} .jp-nb2prod-finding.jp-nb2prod-severity-error")).to_have_count(0)
    expect(page.locator(f"{SIDE} .jp-nb2prod-build-state")).to_have_attribute("data-state", "stale")
    helpers = [c for c in json.loads(target.read_text())["cells"] if c.get("id") == "helpers"][0]
    assert helpers["metadata"]["tags"] == ["export"]
    page.screenshot(path=str(artifacts / "panel-fixed.png"))
    assert errors == [], errors


def test_directive_roles_show_as_badges(page, lab: Lab, artifacts: Path) -> None:
    errors = watch_console(page)
    target = lab.root / "churn" / "churn.ipynb"
    target.parent.mkdir()
    shutil.copy(CHURN, target)
    open_with_panel(page, lab, "churn/churn.ipynb", "panel-churn")
    expect(page.locator(cell(1)).locator(".jp-nb2prod-badge-parameters")).to_have_text("parameters")
    expect(page.locator(cell(2)).locator(".jp-nb2prod-badge-export")).to_have_text("export")
    expect(page.locator(cell(3)).locator(".jp-nb2prod-badge-export")).to_have_text("export:features")
    expect(page.locator(cell(5)).locator(".jp-nb2prod-badge-train")).to_have_text("train")
    expect(page.locator(cell(4)).locator(".jp-nb2prod-badge")).to_have_count(0)
    # A badge never covers the cell toolbar: it sits in the cell's flow above the input.
    page.locator(cell(5)).locator(".jp-InputPrompt").click()
    badge_box = page.locator(cell(5)).locator(".jp-nb2prod-badges").bounding_box()
    input_box = page.locator(cell(5)).locator(".jp-InputArea").bounding_box()
    assert badge_box["y"] + badge_box["height"] <= input_box["y"] + 1
    toolbar = page.locator(cell(5)).locator(".jp-cell-toolbar")
    if toolbar.count():
        toolbar_box = toolbar.first.bounding_box()
        assert toolbar_box is None or badge_box["y"] + badge_box["height"] <= toolbar_box["y"] + 1
    page.locator(cell(5)).screenshot(path=str(artifacts / "directive-badges.png"))
    assert errors == [], errors


CONTRAST_SCRIPT = """
() => {
  const parse = text => {
    const m = text.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return null;
    const parts = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number);
    return { r: parts[0], g: parts[1], b: parts[2], a: parts.length > 3 ? parts[3] : 1 };
  };
  const over = (top, bottom) => ({
    r: top.r * top.a + bottom.r * (1 - top.a),
    g: top.g * top.a + bottom.g * (1 - top.a),
    b: top.b * top.a + bottom.b * (1 - top.a),
    a: 1
  });
  const background = node => {
    const layers = [];
    for (let n = node; n && n.nodeType === 1; n = n.parentElement) {
      const c = parse(getComputedStyle(n).backgroundColor);
      if (c && c.a > 0) { layers.push(c); if (c.a >= 1) break; }
    }
    let color = { r: 255, g: 255, b: 255, a: 1 };
    for (const layer of layers.reverse()) color = over(layer, color);
    return color;
  };
  const luminance = c => {
    const ch = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * ch(c.r) + 0.7152 * ch(c.g) + 0.0722 * ch(c.b);
  };
  const results = [];
  // nb2prod's own text: the side panel, badges, findings on cells, nb2prod dialogs (not the
  // JupyterLab cells nb2prod marks with a class).
  const owned = ['#nb2prod-side-panel', '.jp-nb2prod-badges', '.jp-nb2prod-cell-findings', '.jp-nb2prod-dialog']
    .flatMap(s => [s, `${s} *`]).join(', ');
  for (const node of document.querySelectorAll(owned)) {
    const own = [...node.childNodes].some(c => c.nodeType === 3 && c.textContent.trim());
    const rect = node.getBoundingClientRect();
    if (!own || rect.width === 0 || rect.height === 0) continue;
    const bg = background(node);
    const fg = over(parse(getComputedStyle(node).color), bg);
    const [l1, l2] = [luminance(fg), luminance(bg)].sort((a, b) => b - a);
    results.push({
      text: node.textContent.trim().slice(0, 40),
      cls: String(node.className).slice(0, 60),
      ratio: (l1 + 0.05) / (l2 + 0.05)
    });
  }
  return results;
}
"""


def set_theme(page, name: str) -> None:
    page.locator(".lm-MenuBar-item", has_text="Settings").click()
    page.locator(".lm-Menu-item", has_text="Theme").first.hover()
    page.locator(".lm-Menu-item", has_text=name).first.click()
    expect(page.locator("body")).to_have_attribute("data-jp-theme-name", name)
    page.wait_for_timeout(500)  # the theme's stylesheet is applied after the attribute changes


def test_text_contrast_in_light_and_dark_themes(page, lab: Lab, artifacts: Path) -> None:
    errors = watch_console(page)
    target = lab.root / "contrast.ipynb"
    shutil.copy(BROKEN, target)
    open_with_panel(page, lab, "contrast.ipynb", "panel-contrast")
    expect(page.locator(cell(3)).locator(".jp-nb2prod-cell-finding")).to_have_count(1)
    expect(page.locator(f"{SIDE} .jp-nb2prod-finding")).not_to_have_count(0)
    seen = {}
    try:
        for theme in ("JupyterLab Light", "JupyterLab Dark"):
            set_theme(page, theme)
            results = page.evaluate(CONTRAST_SCRIPT)
            kinds = {name for r in results for name in r["cls"].split()}
            assert {"jp-nb2prod-badge", "jp-nb2prod-cell-finding", "jp-nb2prod-build-state"} <= kinds, kinds
            low = [r for r in results if r["ratio"] < 4.5]
            assert low == [], (theme, low)
            seen[theme] = min(r["ratio"] for r in results)
            page.screenshot(path=str(artifacts / f"contrast-{theme.split()[-1].lower()}.png"))
    finally:
        set_theme(page, "JupyterLab Light")
    assert len(seen) == 2
    assert errors == [], errors
