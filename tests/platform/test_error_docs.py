"""docs/errors.md is generated from the catalog and must be current."""

from pathlib import Path

from typer.testing import CliRunner

from rendio.cli import app
from rendio.platform import i18n
from rendio.platform.error_docs import render
from rendio.platform.errors import HTTP_STATUS, ErrorCode
from rendio.platform.openapi import MEANING

DOC = Path(__file__).parents[2] / "docs" / "errors.md"


def test_errors_doc_is_current() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), (
        "docs/errors.md is stale: run `rendio docs errors > docs/errors.md`"
    )


def test_the_command_prints_the_doc() -> None:
    result = CliRunner().invoke(app, ["docs", "errors"])
    assert result.exit_code == 0, result.output
    assert result.output == render()


def test_every_code_has_a_meaning() -> None:
    assert set(MEANING) == set(ErrorCode)


def test_the_doc_lists_every_code_status_and_message() -> None:
    text = render()
    for code in ErrorCode:
        assert f"| [{code.value}](#{code.value.lower()}) | {HTTP_STATUS[code]} |" in text
        assert f"### {code.value}" in text
        for language in i18n.LANGUAGES:
            assert i18n.message(code.value, language, {}) in text
    assert "one: “{required} credit”, other: “{required} credits”" in text
