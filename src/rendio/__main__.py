"""`python -m rendio` is the `rendio` command."""

from rendio.cli import app

app(prog_name="rendio")
