"""`python -m rendio` is the `rendio` command."""

from rendio.cli import app

# Guarded: the local renderer's processes are spawned, and a spawned child imports the parent's
# main module (as `__mp_main__`) — it must not run the command again.
if __name__ == "__main__":
    app(prog_name="rendio")
