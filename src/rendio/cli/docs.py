"""`rendio docs ...`: documents generated from the code, so they cannot drift from it."""

from __future__ import annotations

import typer

docs_app = typer.Typer(help="Print documents generated from the code.", no_args_is_help=True)


@docs_app.command("errors")
def errors() -> None:
    """Every error code with its HTTP status, meaning and messages (docs/errors.md)."""
    from rendio.platform.error_docs import render

    typer.echo(render(), nl=False)
