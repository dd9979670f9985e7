"""The drift report: one self-contained HTML page (plots embedded) and a PNG per drifted column."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from nb2prod.monitor.drift import ColumnDrift, DriftReport


def _plot(column: ColumnDrift) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 3.2), dpi=100)
    positions = range(len(column.bin_labels))
    width = 0.4
    axes.bar(
        [p - width / 2 for p in positions], column.baseline_bins, width, label="baseline (training)", color="#4c72b0"
    )
    axes.bar([p + width / 2 for p in positions], column.current_bins, width, label="current", color="#dd8452")
    axes.set_xticks(list(positions))
    axes.set_xticklabels(column.bin_labels, rotation=35, ha="right", fontsize=7)
    axes.set_ylabel("share of rows")
    axes.set_title(f"{column.name} ({column.section})")
    axes.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def _number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def write_report(report: DriftReport, path: Path) -> list[Path]:
    """Write the HTML page at `path` and the PNGs beside it (`STEM-COLUMN.png`); returns the PNGs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pngs: list[Path] = []
    figures = []
    for column in report.drifted:
        if not column.bin_labels:
            continue
        data = _plot(column)
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in f"{column.section}-{column.name}")
        png = path.with_name(f"{path.stem}-{safe}.png")
        png.write_bytes(data)
        pngs.append(png)
        encoded = base64.b64encode(data).decode()
        figures.append(
            f'<figure><img alt="{html.escape(column.name)}: baseline and current distributions" '
            f'src="data:image/png;base64,{encoded}"><figcaption>{html.escape(column.name)}</figcaption></figure>'
        )
    rows = []
    for c in report.columns:
        verdict = "drift" if c.drifted else "ok"
        rows.append(
            f'<tr class="{verdict}"><td>{html.escape(c.name)}</td><td>{c.section}</td><td>{c.kind}</td><td>{c.test}</td>'
            f"<td>{_number(c.statistic)}</td><td>{_number(c.p_adjusted, 3)}</td><td>{_number(c.psi, 3)}</td>"
            f"<td>{c.n_current}</td><td>{c.missing_rate_baseline:.3f} / {c.missing_rate_current:.3f}</td>"
            f"<td>{verdict}</td></tr>"
        )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in report.notes)
    missing = ", ".join(html.escape(m) for m in report.missing_columns) or "none"
    verdict = f"{len(report.drifted)} of {len(report.columns)} columns drifted" if report.drifted else "no drift"
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Drift report: run {html.escape(report.run_id)}</title>
<style>
body {{ font-family: sans-serif; margin: 2rem; color: #1a1a1a; background: #ffffff; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #999; padding: 0.25rem 0.6rem; text-align: left; }}
tr.drift td {{ background: #fde2e1; }} figure {{ display: inline-block; margin: 1rem; }}
</style></head><body>
<h1>Drift report: run {html.escape(report.run_id)}</h1>
<p id="verdict"><strong>{verdict}</strong> on {report.rows} rows; a column drifts when its Bonferroni-corrected
p-value is below {report.alpha:g}{f" or its PSI above {report.psi_threshold:g}" if report.psi_threshold is not None else ""}.
Baseline columns missing from the data: {missing}.</p>
<ul>{notes}</ul>
<table><thead><tr><th>column</th><th>section</th><th>kind</th><th>test</th><th>statistic</th><th>p (corrected)</th>
<th>PSI</th><th>rows</th><th>missing (baseline / current)</th><th>verdict</th></tr></thead>
<tbody>{"".join(rows)}</tbody></table>
<section id="plots">{"".join(figures)}</section>
</body></html>
"""
    path.write_text(page, encoding="utf-8")
    return pngs
