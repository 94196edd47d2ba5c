"""Row changes as the clients receive them, and the binding filters that pick them.

A change arrives from PostgreSQL as a NOTIFY payload (migration 0012) and leaves as Supabase
Realtime's `postgres_changes` payload: `{ids, data: {schema, table, commit_timestamp, type,
columns, errors, record, old_record}}`. A binding's filter uses PostgREST's filter grammar
(`user_id=eq.<id>`, `status=in.(a,b)`, `not.`…) and is evaluated here on the record's JSON
values, compared by the column's type as PostgreSQL would.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Integer, String, Text, Uuid
from sqlalchemy.types import TypeEngine

from rendio.rest.exposure import Exposed
from rendio.rest.grammar import Filter

# Realtime filters: no regular expressions (a pattern is run on every change of the user,
# inside the server's event loop).
OPERATORS = frozenset({"eq", "neq", "lt", "lte", "gt", "gte", "in", "like", "ilike", "is"})


class BadChange(Exception):
    """A notice that is not one of ours."""


@dataclass(frozen=True)
class Change:
    table: str
    type: str
    owner: str
    key: str
    at: str
    record: dict[str, Any] | None
    old_record: dict[str, Any] | None
    reread: bool = False


def parse_notice(payload: str) -> Change:
    try:
        data = json.loads(payload)
        change = Change(
            table=str(data["table"]),
            type=str(data["type"]),
            owner=str(data["owner"]).lower(),
            key=str(data["key"]),
            at=str(data["at"]),
            record=data.get("record"),
            old_record=data.get("old_record"),
            reread=bool(data.get("reread", False)),
        )
    except (ValueError, KeyError, TypeError):
        raise BadChange(payload[:200]) from None
    if change.type not in ("INSERT", "UPDATE", "DELETE"):
        raise BadChange(change.type)
    return change


def type_name(engine_type: TypeEngine[Any]) -> str:
    """PostgreSQL's name for a column type (realtime-js converts values by it)."""
    if isinstance(engine_type, Uuid):
        return "uuid"
    if isinstance(engine_type, Boolean):
        return "bool"
    if isinstance(engine_type, BigInteger):
        return "int8"
    if isinstance(engine_type, Integer):
        return "int4"
    if isinstance(engine_type, DateTime):
        return "timestamptz" if engine_type.timezone else "timestamp"
    if isinstance(engine_type, JSON):
        return "jsonb"
    if isinstance(engine_type, Text):
        return "text"
    if isinstance(engine_type, String):
        return "varchar"
    return "text"


def columns_of(exposed: Exposed) -> list[dict[str, str]]:
    return [
        {"name": name, "type": type_name(exposed.column(name).type)} for name in exposed.columns
    ]


def _timestamp(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace(" ", "T"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


_TRUE = {"true", "t", "yes", "y", "on", "1"}
_FALSE = {"false", "f", "no", "n", "off", "0"}


def _boolean(text: str) -> bool:
    lowered = text.lower()
    if lowered in _TRUE or lowered in _FALSE:
        return lowered in _TRUE
    raise ValueError(text)


def _number(text: str) -> Decimal:
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ValueError(text) from None
    if not number.is_finite():
        raise ValueError(f"{text} is not a finite number")
    return number


_READERS: Mapping[str, Callable[[str], Any]] = {
    "uuid": str.lower,
    "bool": _boolean,
    "int4": _number,
    "int8": _number,
    "timestamptz": _timestamp,
    "timestamp": _timestamp,
    "jsonb": json.loads,
}


def read_value(kind: str, text: str) -> Any:
    """A filter's text as a comparable value of the column's type (ValueError if it is not)."""
    return _READERS.get(kind, str)(text)


def _stored(kind: str, value: Any) -> Any:
    """A record's JSON value on the same scale as `read_value`'s."""
    if value is None or kind == "jsonb":
        return value
    if kind in ("int4", "int8"):
        return Decimal(str(value))
    if isinstance(value, str):
        return read_value(kind, value)
    return value


MAX_PATTERN = 256
_ANY_ONE = None  # `_` in a segment


class LikePattern:
    """SQL LIKE (`%` or PostgREST's `*` for any run, `_` for one character, `\\` escapes)
    without regular expressions: the pattern is cut at each run wildcard into fixed-length
    segments, and each is looked for leftmost after the previous one — linear in the text for
    each segment, so no pattern can make a match backtrack."""

    def __init__(self, pattern: str, *, insensitive: bool) -> None:
        if len(pattern) > MAX_PATTERN:
            raise ValueError(f"a like pattern may be at most {MAX_PATTERN} characters")
        self._fold = str.casefold if insensitive else _same
        segments: list[list[str | None]] = [[]]
        chars = iter(self._fold(pattern))
        for char in chars:
            if char == "\\":
                segments[-1].append(next(chars, "\\"))
            elif char in "%*":
                segments.append([])
            else:
                segments[-1].append(_ANY_ONE if char == "_" else char)
        self._segments = segments

    def __call__(self, text: str) -> bool:
        text = self._fold(text)
        if len(self._segments) == 1:
            whole = self._segments[0]
            return len(text) == len(whole) and _fits(whole, text, 0)
        first, *middle, last = self._segments
        if not _fits(first, text, 0):
            return False
        start = len(first)
        for segment in middle:
            found = _find(segment, text, start)
            if found < 0:
                return False
            start = found + len(segment)
        end = len(text) - len(last)
        return end >= start and _fits(last, text, end)


def _same(text: str) -> str:
    return text


def _fits(segment: list[str | None], text: str, at: int) -> bool:
    if at < 0 or at + len(segment) > len(text):
        return False
    return all(wanted is _ANY_ONE or wanted == text[at + i] for i, wanted in enumerate(segment))


def _find(segment: list[str | None], text: str, start: int) -> int:
    """Where `segment` first fits in `text` from `start` on, or -1."""
    if _ANY_ONE not in segment:
        return text.find("".join(segment), start)  # type: ignore[arg-type]
    for at in range(start, len(text) - len(segment) + 1):
        if _fits(segment, text, at):
            return at
    return -1


@dataclass(frozen=True)
class RowFilter:
    """A checked binding filter, ready to be run on records."""

    column: str
    kind: str
    operator: str
    negated: bool
    values: tuple[Any, ...]
    pattern: LikePattern | None = None

    @classmethod
    def of(cls, exposed: Exposed, item: Filter) -> RowFilter:
        """Raises ValueError when the filter cannot apply to the table."""
        if item.column not in exposed.columns:
            raise ValueError(f"unknown column {item.column}")
        if item.operator not in OPERATORS:
            raise ValueError(f"operator {item.operator} is not supported in realtime filters")
        kind = type_name(exposed.column(item.column).type)
        if item.operator in ("like", "ilike"):
            assert isinstance(item.value, str)
            pattern = LikePattern(item.value, insensitive=item.operator == "ilike")
            return cls(item.column, kind, item.operator, item.negated, (), pattern)
        if item.operator == "is":
            return cls(item.column, kind, "is", item.negated, (item.value,))
        texts = item.value if isinstance(item.value, tuple) else (item.value,)
        values = tuple(read_value(kind, text) for text in texts)
        return cls(item.column, kind, item.operator, item.negated, values)

    def __call__(self, record: Mapping[str, Any]) -> bool:
        try:
            result = self._test(record.get(self.column))
        except (TypeError, ValueError, ArithmeticError):
            result = False
        return result != self.negated

    def _test(self, raw: Any) -> bool:
        if self.operator == "is":
            wanted = self.values[0]
            if wanted == "not_null":
                return raw is not None
            if wanted in ("null", "unknown"):
                return raw is None
            return raw is (wanted == "true")
        if raw is None:
            return False
        if self.pattern is not None:
            return self.pattern(str(raw))
        value = _stored(self.kind, raw)
        if self.operator == "in":
            return value in self.values
        other = self.values[0]
        match self.operator:
            case "eq":
                return bool(value == other)
            case "neq":
                return bool(value != other)
            case "lt":
                return bool(value < other)
            case "lte":
                return bool(value <= other)
            case "gt":
                return bool(value > other)
            case "gte":
                return bool(value >= other)
        return False
