"""The `nb2prod` command line: a thin layer over the library API.

Subcommands live in `nb2prod.commands.*` and are imported only when invoked, so that
`nb2prod --help` does not pay for papermill, black or docker.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

# name -> (module, attribute, one-line help shown by `nb2prod --help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "build": ("nb2prod.commands.convert", "build", "Build the package, tests, job and image spec."),
    "check": ("nb2prod.commands.convert", "check", "Exit 1 if the build output is stale or the notebook has errors."),
    "inspect": ("nb2prod.commands.convert", "inspect", "Show cells, roles, dependencies, parameters and requirements."),
    "image": (
        "nb2prod.commands.image",
        "image",
        "Build the container image; render Kubernetes and Kubeflow manifests.",
    ),
    "train": (
        "nb2prod.commands.runs",
        "train",
        "Train into a new immutable, versioned run (papermill or python engine).",
    ),
    "runs": ("nb2prod.commands.runs", "runs", "List, show, diff recorded runs and the alias history."),
    "promote": ("nb2prod.commands.runs", "promote", "Point an alias (default production) at a run."),
    "rollback": ("nb2prod.commands.runs", "rollback", "Move an alias back to its previous run."),
    "predict": ("nb2prod.commands.runs", "predict", "Predict with a run's model (id or alias) on CSV or JSON lines."),
    "verify": (
        "nb2prod.commands.verify",
        "verify",
        "Run the notebook and its package in a clean environment; exit 1 if they compute differently.",
    ),
    "serve": ("nb2prod.commands.serve", "serve", "Serve a run's model over HTTP; follows promote and rollback live."),
    "score": (
        "nb2prod.commands.scale",
        "score",
        "Score a large input in chunks with a run's model on local, Dask or Spark; parquet out.",
    ),
    "sweep": (
        "nb2prod.commands.scale",
        "sweep",
        "Train every point of a parameter grid as its own run; promote the best.",
    ),
    "drift": (
        "nb2prod.commands.monitor",
        "drift",
        "Compare current data with a run's training baseline; exit 1 on drift.",
    ),
    "feedback": (
        "nb2prod.commands.live",
        "feedback",
        "Join labels with a prediction log; live metrics against the run's gates, exit 1 on a failed gate.",
    ),
    "monitor": (
        "nb2prod.commands.live",
        "monitor",
        "A run in production: traffic, latency, drift, live metrics, alarms (exit 1 on an alarm).",
    ),
    "explain": (
        "nb2prod.commands.explain",
        "explain",
        "Explain a run's predictions on CSV or JSON rows: each row's largest feature contributions.",
    ),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module, attr, _ = entry
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nb2prod")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Turn a tagged Jupyter notebook into deployable, versioned artifacts."""
    ctx.obj = {"debug": debug}


def _other_findings(exc: Any) -> list[Any]:
    """The findings of an error besides the one its message already says (the first error):
    every note and every further error, in notebook order, each printed once."""
    head = next((f for f in exc.findings if f.severity == "error"), None)
    return [f for f in exc.findings if f is not head]


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the CLI and turn nb2prod errors into one line and an exit code."""
    from nb2prod.errors import Nb2prodError

    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        cli.main(args=args, prog_name="nb2prod", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(2)
    except Nb2prodError as exc:
        if debug:
            raise
        click.echo(f"error: {exc.message}", err=True)
        for finding in _other_findings(exc):
            click.echo(f"  {finding.severity}: {finding.render()}", err=True)
        sys.exit(exc.exit_code)
    except Exception as exc:  # an nb2prod bug: still one line unless --debug
        if debug:
            raise
        click.echo(
            f"error: internal error ({type(exc).__name__}: {exc}); rerun with --debug for the traceback", err=True
        )
        sys.exit(2)
