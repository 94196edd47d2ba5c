"""The README's command-line walkthroughs, run as written against a live server."""

import re
import subprocess
from pathlib import Path

from tests.conftest import LiveServer

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_block(marker: str) -> str:
    """The first ```sh block after `<!-- marker -->` in the README."""
    text = README.read_text()
    found = re.search(rf"<!-- {marker} -->\s*```sh\n(.*?)```", text, re.DOTALL)
    assert found, f"README has no block marked {marker}"
    return found.group(1)


def run_block(block: str, server: LiveServer, workdir: Path) -> list[str]:
    script = block.replace("BASE=http://127.0.0.1:8000", f"BASE={server.base_url}")
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def expected_outputs(block: str) -> list[str]:
    """Each command that prints is annotated with `# <what it prints>` in the README."""
    return [
        match.group(1)
        for line in block.splitlines()
        if (match := re.search(r"#\s+(\S+)\s*$", line)) and not line.lstrip().startswith("#")
    ]


def test_guest_flow(live_server: LiveServer, tmp_path: Path) -> None:
    block = readme_block("guest-flow")
    expected = expected_outputs(block)
    assert expected == ["10", "True", "tr", "0", "204", "ERR_4005"]
    assert run_block(block, live_server, tmp_path) == expected
