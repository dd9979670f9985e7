"""`nb2prod build`, `check` and `inspect`: thin wrappers over nb2prod.api."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from nb2prod.errors import Finding, Nb2prodError

_notebooks = click.argument("notebooks", nargs=-1, required=True, type=click.Path(path_type=Path))
_output = click.option(
    "-o", "--output", type=click.Path(path_type=Path), help="Output folder (default: build/NAME beside the notebook)."
)
_name = click.option("--name", help="Distribution name (overrides config).")
_model_variable = click.option("--model-variable", help="The train variable holding the model (default: model).")
_base_image = click.option("--base-image", help="Base image of the generated Dockerfile.")


def _overrides(name: str | None, model_variable: str | None, base_image: str | None = None) -> dict[str, str | None]:
    return {"name": name, "model_variable": model_variable, "base_image": base_image}


def _output_for(output: Path | None, notebook: Path, many: bool) -> Path | None:
    if output is None or not many:
        return output
    return output / notebook.stem


def _echo_finding(finding: Finding) -> None:
    click.echo(f"{finding.severity}: {finding.render()}", err=True)


@click.command()
@_notebooks
@_output
@click.option("--force", is_flag=True, help="Overwrite files edited by hand in the output.")
@_name
@_model_variable
@_base_image
@click.option("--quiet", "-q", is_flag=True, help="Print only errors.")
@click.option(
    "--image",
    "with_image",
    is_flag=True,
    help="Then build the container image of each output (as `nb2prod image build`).",
)
@click.option(
    "--wheelhouse",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[DIR]",
    help="With --image: build offline from wheels made on this machine (kept in DIR if given).",
)
def build(
    notebooks: tuple[Path, ...],
    output: Path | None,
    force: bool,
    name: str | None,
    model_variable: str | None,
    base_image: str | None,
    quiet: bool,
    with_image: bool,
    wheelhouse: str | None,
) -> None:
    """Build NOTEBOOKS into packages, tests, a training job and an image spec."""
    from nb2prod import api

    failed: Nb2prodError | None = None
    for notebook in notebooks:
        try:
            result = api.build(
                notebook,
                output=_output_for(output, notebook, len(notebooks) > 1),
                force=force,
                overrides=_overrides(name, model_variable, base_image),
            )
        except Nb2prodError as exc:
            if len(notebooks) == 1:
                raise
            click.echo(f"error: {exc.message}", err=True)
            failed = exc
            continue
        if not quiet:
            for note in result.notes:
                _echo_finding(note)
            state = "built" if result.changed else "unchanged"
            click.echo(f"{state}: {result.output_dir} ({len(result.files)} files, package {result.package})")
        if with_image:
            from nb2prod.commands.image import run_image_build

            run_image_build(Path(result.output_dir), wheelhouse=wheelhouse, quiet=quiet)
    if failed is not None:
        sys.exit(failed.exit_code)


@click.command()
@_notebooks
@_output
@_name
@_model_variable
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def check(
    notebooks: tuple[Path, ...], output: Path | None, name: str | None, model_variable: str | None, fmt: str
) -> None:
    """Exit 1 if a build output is stale or a notebook has errors (for CI)."""
    from nb2prod import api

    results = []
    unreadable: list[tuple[Path, Nb2prodError]] = []
    for notebook in notebooks:
        try:
            result = api.check(
                notebook,
                output=_output_for(output, notebook, len(notebooks) > 1),
                overrides=_overrides(name, model_variable),
            )
        except Nb2prodError as exc:
            if fmt != "json" and len(notebooks) == 1:
                raise
            unreadable.append((notebook, exc))
            continue
        results.append((notebook, result))
    if fmt == "json":
        report = [{"notebook": str(n), **r.to_dict()} for n, r in results]
        report += [{"notebook": str(n), "ok": False, "error": exc.message} for n, exc in unreadable]
        click.echo(json.dumps(report, indent=2, sort_keys=True))
    else:
        for _notebook, failure in unreadable:
            click.echo(f"error: {failure.message}", err=True)
        for notebook, result in results:
            for finding in result.findings:
                if finding.severity == "error":
                    _echo_finding(finding)
            if result.ok:
                click.echo(f"up to date: {result.output_dir}")
            else:
                for reason in result.reasons:
                    click.echo(f"stale: {notebook}: {reason}")
    if unreadable:
        sys.exit(2)
    if not all(r.ok for _, r in results):
        sys.exit(1)


@click.command()
@click.argument("notebook", type=click.Path(path_type=Path))
@_name
@_model_variable
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def inspect(notebook: Path, name: str | None, model_variable: str | None, fmt: str) -> None:
    """Show cells, roles, dependencies, parameters and requirements."""
    from nb2prod import api

    report = api.inspect(notebook, overrides=_overrides(name, model_variable))
    if fmt == "json":
        click.echo(json.dumps(report.to_dict(), indent=2, sort_keys=True))
        return
    click.echo(f"{report.notebook} → package {report.package}")
    click.echo("cells:")
    for cell in report.cells:
        if cell.cell_type != "code":
            continue
        roles = ", ".join(cell.roles) or "untagged"
        module = f" → {cell.module}" if cell.module else ""
        line = f"  {cell.index + 1:>4}  {cell.id:<24} {roles}{module}"
        if cell.binds:
            line += f"  binds: {', '.join(cell.binds)}"
        if cell.uses:
            line += f"  uses: {', '.join(cell.uses)}"
        click.echo(line)
    if report.parameters:
        click.echo("parameters:")
        for p in report.parameters:
            click.echo(f"  {p['name']}: {p['type']} = {p['default']!r}  {p['help']}")
    click.echo("requirements: " + (", ".join(report.requirements) or "none"))
    if report.gates or report.gates_not_monitored:
        click.echo("quality gates:")
    for gate in report.gates:
        threshold = gate["parameter"] if "parameter" in gate else gate["value"]
        click.echo(f"  {gate['metric']} {gate['op']} {threshold}  (cell {gate['cell'] + 1}, line {gate['line']}; live)")
    for other in report.gates_not_monitored:
        click.echo(f"  cell {other['cell'] + 1}, line {other['line']}: assert {other['text']}: not monitored live")
    for finding in report.findings:
        click.echo(f"{finding.severity}: {finding.render()}")
