"""Binding filters as the realtime socket runs them on each change, and the hub's bound on one
user's subscriptions."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from rendio.platform.db import libpq_url, session_factory
from rendio.platform.notices import Notices
from rendio.realtime.changes import MAX_PATTERN, Change, LikePattern, RowFilter
from rendio.realtime.hub import MAX_PER_USER, ChangeHub, TooManySubscriptions
from rendio.rest.exposure import VIDEO_JOBS
from rendio.rest.grammar import parse_filter


def like_by_regex(pattern: str, text: str, insensitive: bool) -> bool:
    """The meaning of SQL LIKE, written as a regex: the reference the matcher must agree with."""
    parts = []
    chars = iter(pattern)
    for char in chars:
        if char == "\\":
            parts.append(re.escape(next(chars, "\\")))
        elif char in "%*":
            parts.append(".*")
        else:
            parts.append("." if char == "_" else re.escape(char))
    flags = re.DOTALL | (re.IGNORECASE if insensitive else 0)
    return re.fullmatch("".join(parts), text, flags) is not None


@given(
    pattern=st.text(alphabet="ab%_*\\A", max_size=8),
    text=st.text(alphabet="abAB%_\\", max_size=10),
    insensitive=st.booleans(),
)
def test_like_agrees_with_its_definition(pattern: str, text: str, insensitive: bool) -> None:
    assert LikePattern(pattern, insensitive=insensitive)(text) == like_by_regex(
        pattern, text, insensitive
    )


def test_a_pattern_that_would_make_a_regex_backtrack_is_answered() -> None:
    """`%a%a…%b` on a long run of `a` takes a backtracking regex exponential time; the matcher
    answers it (this test would hang, not pass, with a regex)."""
    hostile = "%a" * 60 + "%b"
    test = RowFilter.of(VIDEO_JOBS, parse_filter("prompt", "like." + hostile))
    assert test({"prompt": "a" * 4000}) is False
    assert test({"prompt": "a" * 4000 + "b"}) is True


def test_patterns_and_numbers_are_bounded() -> None:
    with pytest.raises(ValueError, match=str(MAX_PATTERN)):
        LikePattern("a" * (MAX_PATTERN + 1), insensitive=False)
    for number in ("NaN", "sNaN", "Infinity", "-inf"):
        with pytest.raises(ValueError, match="finite"):
            RowFilter.of(VIDEO_JOBS, parse_filter("progress", f"eq.{number}"))


def test_a_record_value_that_cannot_compare_does_not_match() -> None:
    test = RowFilter.of(VIDEO_JOBS, parse_filter("progress", "gt.10"))
    assert test({"progress": 50}) is True
    assert test({"progress": "NaN"}) is False  # a NaN in the record compares as nothing
    assert test({"progress": {"nested": 1}}) is False


async def test_one_user_holds_a_bounded_number_of_subscriptions(
    engine: AsyncEngine, clean_database: str
) -> None:
    notices = Notices(libpq_url(clean_database))
    hub = ChangeHub(notices, session_factory(engine))
    received: list[Change] = []

    def new_sink() -> Callable[[Change], None]:
        return lambda change: received.append(change)

    owner = "0f8fad5b-d9cb-469f-a165-70867728950e"
    try:
        for _ in range(MAX_PER_USER):
            await hub.subscribe(["video_jobs"], owner.upper(), new_sink(), wait=0.01)
        assert hub.subscriptions(owner) == MAX_PER_USER
        extra = new_sink()
        with pytest.raises(TooManySubscriptions):
            await hub.subscribe(["video_jobs"], owner, extra, wait=0.01)
        # Another user is not held back by this one.
        await hub.subscribe(["users"], "another", extra, wait=0.01)
        assert hub.subscriptions("another") == 1
        hub.unsubscribe(["users", "video_jobs"], "another", extra)
        assert hub.subscriptions("another") == 0
    finally:
        await hub.aclose()
        await notices.aclose()
