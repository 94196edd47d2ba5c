"""The README's command-line walkthroughs, run as written against a live server."""

import re
import subprocess
from pathlib import Path

from tests.helpers.processes import LiveServer, service_env, start_server

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


def test_first_video(clean_database: str, tmp_path: Path) -> None:
    """The walkthrough against `rendio serve` with its in-process worker."""
    env = service_env(
        RENDIO_DATABASE_URL=clean_database,
        RENDIO_DATA_DIR=str(tmp_path / "data"),
        RENDIO_POLL_INITIAL="0.2",
        RENDIO_POLL_MAX="0.5",
    )
    server = start_server([], env, tmp_path / "server.log")
    try:
        block = readme_block("first-video")
        expected = expected_outputs(block)
        assert expected == ["pending", "completed", "ftyp"]
        assert run_block(block, server, tmp_path) == expected
        assert (tmp_path / "first-video.jpg").read_bytes()[:2] == b"\xff\xd8"
    finally:
        server.stop()
