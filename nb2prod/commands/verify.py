"""`nb2prod verify NOTEBOOK`: a thin layer over `nb2prod.verify.verify`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from nb2prod.errors import InputError


def _tolerances(pairs: tuple[str, ...]) -> dict[str, float]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if not sep or not name.strip() or number < 0:
            raise InputError(
                f"--tolerance {pair!r}: expected METRIC=NUMBER with a number of 0 or more, e.g. accuracy=1e-6."
            )
        out[name.strip()] = number
    return out


@click.command()
@click.argument("notebook", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--tolerance",
    "tolerances",
    multiple=True,
    metavar="METRIC=X",
    help="Allowed absolute difference for a metric (or 'predictions'); default exact. Config: verify_tolerance.",
)
@click.option("--keep", is_flag=True, help="Keep the working folder (executed notebook, reports, job log).")
@click.option(
    "--data-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="The job's working directory (default: config data_dir, else the notebook's folder).",
)
@click.option(
    "--timeout", type=click.FloatRange(min=1), default=600.0, show_default=True, help="Seconds each run may take."
)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def verify(
    notebook: Path, tolerances: tuple[str, ...], keep: bool, data_dir: Path | None, timeout: float, fmt: str
) -> None:
    """Run NOTEBOOK top to bottom and its package's job in a clean environment; compare metrics and predictions.

    Exit 0 when they agree, 1 with a table of the differences and the cells that probably caused
    them, 2 for a notebook that cannot be verified (it downloads data, needs a GPU, fails, or times out).
    """
    from nb2prod.verify import verify as run_verify

    result = run_verify(notebook, tolerances=_tolerances(tolerances), keep=keep, data_dir=data_dir, timeout=timeout)
    if fmt == "json":
        click.echo(json.dumps(result.to_dict(), indent=2, sort_keys=True, default=str))
    else:
        click.echo(result.render())
    if not result.agree:
        sys.exit(1)
