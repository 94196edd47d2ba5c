import pytest

from rendio.platform import i18n
from rendio.platform.errors import HTTP_STATUS, ErrorCode


@pytest.mark.parametrize("code", list(ErrorCode))
def test_every_code_has_a_status_and_three_distinct_messages(code: ErrorCode) -> None:
    assert HTTP_STATUS[code] in range(400, 600)
    messages = [i18n.catalogs()[lang][code.value] for lang in i18n.LANGUAGES]
    assert all(message.strip() for message in messages)
    assert len(set(messages)) == 3, messages


def test_catalogs_have_no_unknown_codes() -> None:
    known = {code.value for code in ErrorCode}
    for language, table in i18n.catalogs().items():
        assert set(table) == known, language


def test_status_table_matches_spec() -> None:
    assert {c.value: s for c, s in HTTP_STATUS.items()} == {
        "ERR_4001": 402, "ERR_4002": 400, "ERR_4003": 400, "ERR_4004": 429,
        "ERR_4005": 401, "ERR_4006": 403, "ERR_4007": 422, "ERR_4008": 409,
        "ERR_4009": 400, "ERR_4010": 403, "ERR_4011": 404, "ERR_4012": 400,
        "ERR_4013": 422, "ERR_5001": 504, "ERR_5002": 502, "ERR_5003": 502,
        "ERR_6001": 500, "ERR_6002": 500, "ERR_6003": 500,
    } | {
        # Ours beyond SPEC §3 (docs/decisions.md): refusals of the HTTP server itself.
        "ERR_4014": 431, "ERR_4015": 408, "ERR_6004": 503,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "en"),
        ("", "en"),
        ("tr", "tr"),
        ("tr-TR", "tr"),
        ("es-MX,es;q=0.9", "es"),
        ("fr-FR, de;q=0.9", "en"),
        ("fr, es;q=0.3, tr;q=0.8", "tr"),
        ("tr;q=0, es", "es"),
        ("*", "en"),
        ("de, *;q=0.5", "en"),
        ("es;q=abc, tr;q=0.2", "tr"),
        ("EN-gb;q=0.1, TR;q=0.2", "tr"),
        (";;;,,,", "en"),
    ],
)
def test_negotiate(header: str | None, expected: str) -> None:
    assert i18n.negotiate(header) == expected


def test_placeholders_are_filled_from_details() -> None:
    assert i18n.message("ERR_4001", "en", {"required": 5, "available": 2}) == (
        "You need 5 credits, but only have 2. Please purchase more credits."
    )
    assert "5" in i18n.message("ERR_4001", "tr", {"required": 5, "available": 2})
    assert "{retry_after}" in i18n.message("ERR_4004", "es", {})
