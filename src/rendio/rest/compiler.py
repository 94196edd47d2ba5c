"""A parsed read → one parameterized SQLAlchemy statement over an exposed table.

Every column name is looked up in the table's allow-list (unknown or hidden: 42703); every
value travels as a bound parameter, cast to the column's type the way PostgREST's untyped
literals are, so `eq.TRUE`, an upper-case UUID from supabase-swift or an ISO date all compare as
PostgreSQL would. Nothing from the request is ever spliced into SQL text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Select,
    String,
    and_,
    cast,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.types import Text

from rendio.rest.exposure import Exposed
from rendio.rest.grammar import Condition, Field, Filter, Group, Order, ReadQuery
from rendio.rest.problems import unknown_column

_PATTERN_OPERATORS = {"like": "LIKE", "ilike": "ILIKE", "match": "~", "imatch": "~*"}


@dataclass(frozen=True)
class Shown:
    """One key of each answered row: its name and the column it shows."""

    key: str
    column: str


@dataclass(frozen=True)
class CompiledRead:
    rows: Select[*tuple[Any, ...]]
    count: Select[int]
    shown: tuple[Shown, ...]


def compile_read(
    exposed: Exposed,
    query: ReadQuery,
    scope: ColumnElement[bool],
    *,
    max_rows: int,
) -> CompiledRead:
    """The rows statement (bounded by `max_rows`) and its count, both limited to `scope`."""
    shown = _shown(exposed, query.fields)
    where = and_(scope, *(condition(exposed, item) for item in query.where))
    limit = max_rows if query.limit is None else min(query.limit, max_rows)
    rows = (
        select(*(exposed.column(item.column) for item in shown))
        .where(where)
        .order_by(*(_order(exposed, item) for item in query.order))
        .limit(limit)
        .offset(query.offset)
    )
    count = select(func.count()).select_from(exposed.table).where(where)
    return CompiledRead(rows, count, shown)


def _known(exposed: Exposed, name: str) -> Column[object]:
    if name not in exposed.columns:
        raise unknown_column(exposed.name, name)
    return exposed.column(name)


def _shown(exposed: Exposed, fields: tuple[Field, ...] | None) -> tuple[Shown, ...]:
    if fields is None:
        return tuple(Shown(name, name) for name in exposed.columns)
    shown: list[Shown] = []
    for item in fields:
        if item.column == "*":
            shown.extend(Shown(name, name) for name in exposed.columns)
        else:
            _known(exposed, item.column)
            shown.append(Shown(item.alias or item.column, item.column))
    return tuple(shown)


def _order(exposed: Exposed, order: Order) -> ColumnElement[object]:
    column = _known(exposed, order.column)
    ordered = column.desc() if order.descending else column.asc()
    if order.nulls == "first":
        return ordered.nulls_first()
    if order.nulls == "last":
        return ordered.nulls_last()
    return ordered


def _typed(column: Column[object], value: str) -> ColumnElement[Any]:
    """`value` as PostgreSQL would read an untyped literal compared with `column`.

    Text columns compare with the text as it is (a cast to `varchar(16)` would truncate);
    others get an explicit cast, so a malformed value is PostgreSQL's 22P02, a 400.
    """
    parameter = literal(value, Text)
    if isinstance(column.type, String):
        return parameter
    return cast(parameter, column.type)


def condition(exposed: Exposed, item: Condition) -> ColumnElement[bool]:
    """One filter or `and`/`or` tree as a SQL condition."""
    if isinstance(item, Group):
        parts = [condition(exposed, part) for part in item.items]
        combined = and_(true(), *parts) if item.conjunction == "and" else or_(false(), *parts)
        return not_(combined) if item.negated else combined
    expression = _filter(_known(exposed, item.column), item)
    return not_(expression) if item.negated else expression


def _filter(column: Column[object], item: Filter) -> ColumnElement[bool]:
    value = item.value
    if item.operator == "in":
        assert isinstance(value, tuple)
        if not value:
            return false()
        return column.in_([_typed(column, v) for v in value])
    assert isinstance(value, str)
    if item.operator == "is":
        if value == "not_null":
            return column.is_not(None)
        if value in ("null", "unknown"):
            return column.is_(None)
        return column.is_(true() if value == "true" else false())
    match item.operator:
        case "eq":
            return column == _typed(column, value)
        case "neq":
            return column != _typed(column, value)
        case "gt":
            return column > _typed(column, value)
        case "gte":
            return column >= _typed(column, value)
        case "lt":
            return column < _typed(column, value)
        case "lte":
            return column <= _typed(column, value)
        case "like" | "ilike" | "match" | "imatch":
            # PostgreSQL's operators as they are, whatever the column's type (a non-text column
            # fails there with 42883, as under PostgREST); `*` is PostgREST's alias for `%`.
            pattern = value.replace("*", "%") if item.operator.endswith("like") else value
            return column.op(_PATTERN_OPERATORS[item.operator], is_comparison=True)(
                literal(pattern, Text)
            )
        case "isdistinct":
            return column.is_distinct_from(_typed(column, value))
    raise AssertionError(f"the grammar let through {item.operator!r}")
