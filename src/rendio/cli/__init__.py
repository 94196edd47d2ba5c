"""The `rendio` command: run the service and operate it."""

from rendio.cli.main import app

__all__ = ["app"]
