"""`nb2prod explain RUN INPUT`: why a run's model scored each row as it did."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from nb2prod.commands.runs import FORMAT, SIGNING_KEY_FILE, TRUST_PICKLE, _open_store, _store_option, store_warnings
from nb2prod.errors import InputError


def read_explain_input(path: Path) -> list[dict[str, Any] | list[Any]]:
    """Rows of INPUT: CSV, JSON lines, or a .json file holding a list of rows, one row, or
    {"instances": [...]} (the body /predict and /explain take)."""
    from nb2prod.runs.predicting import read_rows

    if not str(path).lower().endswith(".json"):
        return read_rows(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: cannot read the input ({exc.strerror}).") from None
    except ValueError as exc:
        raise InputError(f"{path}: not valid JSON ({exc}).") from None
    if isinstance(data, dict) and set(data) == {"instances"}:
        data = data["instances"]
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not all(isinstance(row, (dict, list)) for row in data):
        raise InputError(f'{path}: expected a JSON list of rows, one row object, or {{"instances": [...]}}.')
    return data


def format_explanations(explanations: list[Any], top: int) -> str:
    """A readable table per row: the score, the base value and the `top` largest contributions."""
    lines: list[str] = []
    for number, explanation in enumerate(explanations, 1):
        contributions = explanation.get("contributions") if isinstance(explanation, dict) else None
        if not isinstance(contributions, list):
            lines.append(f"row {number}: {json.dumps(explanation, sort_keys=True)}")
            continue
        head = f"row {number}:"
        if isinstance(explanation.get("value"), (int, float)):
            head += f" score {explanation['value']:.6g}"
        if isinstance(explanation.get("base_value"), (int, float)):
            head += f" (base value {explanation['base_value']:.6g}"
            head += f", {explanation['method']})" if explanation.get("method") else ")"
        lines.append(head)
        lines.append(f"  {'feature':<28} {'value':>14} {'contribution':>14}")
        for item in contributions[:top]:
            if not isinstance(item, dict):
                continue
            value = item.get("value")
            shown = f"{value:.6g}" if isinstance(value, float) else str(value)
            contribution = item.get("contribution")
            signed = f"{contribution:+.6g}" if isinstance(contribution, (int, float)) else str(contribution)
            lines.append(f"  {str(item.get('feature')):<28} {shown:>14} {signed:>14}")
        rest = len(contributions) - top
        if rest > 0:
            lines.append(f"  ... {rest} more")
        for reason in explanation.get("reasons") or ():
            lines.append(f"  reason: {reason}")
    return "\n".join(lines)


@click.command()
@click.argument("run")
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@_store_option()
@click.option("--top", type=click.IntRange(1), default=3, show_default=True, help="Contributions shown per row.")
@FORMAT
@SIGNING_KEY_FILE
@TRUST_PICKLE
def explain(
    run: str,
    input_path: Path,
    store: Path | None,
    top: int,
    fmt: str,
    signing_key_file: Path | None,
    trust_pickle: bool,
) -> None:
    """Explain the model of RUN (run id or alias) on INPUT (.csv, .jsonl or .json): per row, the
    features that contributed most to its score.

    The notebook's explain cell decides what an explanation is; without one, a scikit-learn tree
    ensemble or linear model is explained by SHAP (pip install nb2prod[explain])."""
    from nb2prod.runs.predicting import explain_rows
    from nb2prod.runtime import ExplainUnavailable

    rows = read_explain_input(input_path)
    try:
        with store_warnings():
            loaded, explanations = explain_rows(
                _open_store(store, signing_key_file), run, rows, str(input_path), trust_pickle=trust_pickle
            )
    except Exception as exc:
        if type(exc).__name__ == "ExplainUnavailable" or isinstance(exc, ExplainUnavailable):
            raise InputError(f"{run}: {exc}.") from None
        raise
    if fmt == "json":
        click.echo(json.dumps({"run": loaded.run.run_id, "explanations": explanations}, indent=2, sort_keys=True))
        return
    click.echo(f"run {loaded.run.run_id}: {len(explanations)} rows explained")
    text = format_explanations(explanations, top)
    if text:
        click.echo(text)
