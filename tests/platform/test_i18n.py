import re
import string

import pytest
from babel import Locale

from rendio.platform import i18n
from rendio.platform.errors import HTTP_STATUS, ErrorCode


@pytest.mark.parametrize("code", list(ErrorCode))
def test_every_code_has_a_status_and_three_distinct_messages(code: ErrorCode) -> None:
    assert HTTP_STATUS[code] in range(400, 600)
    messages = [i18n.message(code.value, lang, {}) for lang in i18n.LANGUAGES]
    assert all(message.strip() for message in messages)
    assert len(set(messages)) == 3, messages


def _placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def _all_entries() -> list[tuple[str, str, i18n.Entry]]:
    tables = [("", lang, table) for lang, table in i18n.catalogs().items()]
    tables += [("fields.", lang, table) for lang, table in i18n.field_catalogs().items()]
    return [
        (f"{kind}{lang}:{key}", lang, entry) for kind, lang, t in tables for key, entry in t.items()
    ]


@pytest.mark.parametrize(("name", "language", "entry"), _all_entries())
def test_plural_entries_are_well_formed(name: str, language: str, entry: i18n.Entry) -> None:
    """An object entry has `text` and, per count placeholder of its text, phrases keyed by
    CLDR categories of its language, `other` among them; each phrase shows its count."""
    if isinstance(entry, str):
        return
    assert set(entry) == {"text", "plural"}, name
    categories = Locale.parse(language).plural_form.tags | {"other"}
    assert set(entry["plural"]) <= _placeholders(entry["text"]), name
    for count, forms in entry["plural"].items():
        assert "other" in forms, name
        assert set(forms) <= categories, (name, set(forms) - categories)
        for phrase in forms.values():
            assert _placeholders(phrase) == {count}, (name, phrase)


def test_every_language_declares_the_same_counts() -> None:
    """A count that is plural-aware in one language is in all of them."""
    for code in ErrorCode:
        counts = [
            set(entry.get("plural", {})) if isinstance(entry, dict) else set()
            for entry in (i18n.catalogs()[lang][code.value] for lang in i18n.LANGUAGES)
        ]
        assert counts[0] == counts[1] == counts[2], code


# What a person reads for 0, 1, 2 and 5 (CLDR: English and Spanish say "1 credit" but
# "0 credits"; Turkish nouns stay singular after any number).
PLURALS = {
    "en": {
        0: "You need 0 credits, but only have 0 credits.",
        1: "You need 1 credit, but only have 1 credit.",
        2: "You need 2 credits, but only have 2 credits.",
        5: "You need 5 credits, but only have 5 credits.",
    },
    "tr": {
        0: "0 krediye ihtiyacınız var, ancak sadece 0 krediniz var.",
        1: "1 krediye ihtiyacınız var, ancak sadece 1 krediniz var.",
        2: "2 krediye ihtiyacınız var, ancak sadece 2 krediniz var.",
        5: "5 krediye ihtiyacınız var, ancak sadece 5 krediniz var.",
    },
    "es": {
        0: "Necesitas 0 créditos, pero solo tienes 0 créditos.",
        1: "Necesitas 1 crédito, pero solo tienes 1 crédito.",
        2: "Necesitas 2 créditos, pero solo tienes 2 créditos.",
        5: "Necesitas 5 créditos, pero solo tienes 5 créditos.",
    },
}
SECONDS = {
    "en": {0: "0 seconds", 1: "1 second", 2: "2 seconds", 5: "5 seconds"},
    "tr": {0: "0 saniye", 1: "1 saniye", 2: "2 saniye", 5: "5 saniye"},
    "es": {0: "0 segundos", 1: "1 segundo", 2: "2 segundos", 5: "5 segundos"},
}


@pytest.mark.parametrize("language", i18n.LANGUAGES)
@pytest.mark.parametrize("count", [0, 1, 2, 5])
def test_counts_take_their_plural_form(language: str, count: int) -> None:
    credits = i18n.message("ERR_4001", language, {"required": count, "available": count})
    assert credits.startswith(PLURALS[language][count]), credits
    wait = i18n.message("ERR_4004", language, {"retry_after": count})
    assert re.search(rf"\b{SECONDS[language][count]}\b", wait), wait


def test_each_count_is_judged_on_its_own() -> None:
    assert i18n.message("ERR_4001", "en", {"required": 1, "available": 0}).startswith(
        "You need 1 credit, but only have 0 credits."
    )
    assert i18n.message("ERR_4001", "es", {"required": 3, "available": 1}).startswith(
        "Necesitas 3 créditos, pero solo tienes 1 crédito."
    )


def test_plural_categories_come_from_cldr() -> None:
    assert [i18n.plural_category(n, "en") for n in (0, 1, 2, 1.5)] == [
        "other", "one", "other", "other"
    ]  # fmt: skip
    assert i18n.plural_category(1_000_000, "es") == "many"
    # A category an entry leaves out (Spanish `many`) reads as `other`.
    assert "1000000 créditos" in i18n.message("ERR_4001", "es", {"required": 1_000_000})
    # Not a number: `other`, never a crash.
    assert i18n.plural_category("lots", "en") == "other"
    assert i18n.plural_category(True, "en") == "other"
    assert i18n.plural_category(float("nan"), "en") == "other"
    assert i18n.message("ERR_4004", "en", {"retry_after": "soon"}).endswith("in soon seconds.")


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
        # Ours beyond SPEC §3 (docs/decisions.md): refusals of the HTTP server itself, and a
        # missing or wrong apikey told apart from an expired session.
        "ERR_4014": 431, "ERR_4015": 408, "ERR_6004": 503, "ERR_4016": 401,
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
        "You need 5 credits, but only have 2 credits. Please purchase more credits."
    )
    assert "5" in i18n.message("ERR_4001", "tr", {"required": 5, "available": 2})
    assert "{retry_after}" in i18n.message("ERR_4004", "es", {})
