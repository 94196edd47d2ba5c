"""PostgREST's read grammar, parsed into plain values: `select`, filters, `or`/`and` trees,
`order`, `limit` and `offset` (PostgREST's ApiRequest/QueryParams.hs and its URL grammar docs).

Only what the Supabase clients send for reads is accepted; everything else — embedding other
tables, casts, JSON paths, aggregates, full-text operators — is refused with PostgREST's own
error code rather than half-supported. Parsing knows nothing of tables: which columns exist is
the compiler's business. Sizes are bounded so a hostile query string cannot make us build an
unbounded tree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from rendio.rest.problems import RestProblem, parse_error

# Plain comparisons and their SQL meaning live in the compiler; these are the names we accept.
COMPARISONS = frozenset({"eq", "neq", "gt", "gte", "lt", "lte", "like", "ilike", "match", "imatch"})
IS_VALUES = frozenset({"null", "not_null", "true", "false", "unknown"})
# Operators PostgREST has that we recognise but refuse, so the error says "unsupported" and not
# "unparseable".
_UNSUPPORTED = frozenset(
    {"cs", "cd", "ov", "sl", "sr", "nxr", "nxl", "adj", "fts", "plfts", "phfts", "wfts"}
)
RESERVED = frozenset({"select", "order", "limit", "offset", "or", "and", "not.or", "not.and"})
# Parameters that only mean something to writes, and the key some clients send in the query
# rather than a header; a read ignores them as PostgREST does.
IGNORED = frozenset({"columns", "on_conflict", "apikey"})

MAX_CONDITIONS = 64
MAX_DEPTH = 8
MAX_SELECT = 64
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Field:
    """One `select` item: a column, shown under `alias` when given."""

    column: str
    alias: str | None = None


@dataclass(frozen=True)
class Filter:
    column: str
    operator: str  # a COMPARISONS name, "in", "is" or "isdistinct"
    value: str | tuple[str, ...]
    negated: bool = False


@dataclass(frozen=True)
class Group:
    conjunction: Literal["and", "or"]
    items: tuple[Condition, ...]
    negated: bool = False


Condition = Filter | Group


@dataclass(frozen=True)
class Order:
    column: str
    descending: bool = False
    nulls: Literal["first", "last"] | None = None


@dataclass(frozen=True)
class ReadQuery:
    """A parsed read. `fields` is None for `*`; `where` items are combined with AND."""

    fields: tuple[Field, ...] | None
    where: tuple[Condition, ...]
    order: tuple[Order, ...]
    limit: int | None
    offset: int


def parse_read(params: list[tuple[str, str]]) -> ReadQuery:
    """The query of `GET /rest/v1/<table>?<params>` (already form-decoded: `+` is a space)."""
    fields: tuple[Field, ...] | None = None
    where: list[Condition] = []
    order: tuple[Order, ...] = ()
    limit: int | None = None
    offset = 0
    budget = _Budget()
    for key, value in params:
        if "\x00" in key or "\x00" in value:
            # PostgreSQL text cannot hold NUL; refuse it here rather than fail in the driver.
            raise parse_error("query", key, "NUL characters are not allowed")
        if key == "select":
            fields = parse_select(value)
        elif key == "order":
            order = parse_order(value)
        elif key == "limit":
            limit = _count("limit", value)
        elif key == "offset":
            offset = _count("offset", value)
        elif key in ("or", "and", "not.or", "not.and"):
            negated = key.startswith("not.")
            conjunction = key.removeprefix("not.")
            where.append(_group(conjunction, value, negated, 1, budget))
        elif key in IGNORED:
            continue
        else:
            budget.spend()
            where.append(parse_filter(key, value))
    return ReadQuery(fields, tuple(where), order, limit, offset)


class _Budget:
    """Counts conditions across the whole query."""

    def __init__(self) -> None:
        self.left = MAX_CONDITIONS

    def spend(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise RestProblem(
                400,
                "PGRST100",
                '"failed to parse filter"',
                f"A query may hold at most {MAX_CONDITIONS} conditions",
            )


def _count(name: str, value: str) -> int:
    if not re.fullmatch(r"[0-9]{1,9}", value):
        raise parse_error(f"{name} parameter", value, "expecting a non-negative integer")
    return int(value)


def _column(text: str, what: str) -> str:
    """A column name; quoted names lose their quotes. Anything PostgREST would read as a path,
    a cast or an embedded resource is refused."""
    name = text.strip()
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = name[1:-1]
    if "->" in name or "::" in name:
        raise parse_error(what, text, "JSON paths and casts are not supported by this server")
    if "." in name:
        raise RestProblem(
            400,
            "PGRST108",
            f"'{name.split('.')[0]}' is not an embedded resource in this request",
            None,
            "Embedding other tables is not supported by this server",
        )
    if not _IDENTIFIER.fullmatch(name) or len(name) > 63:
        raise parse_error(what, text, "expecting a column name")
    return name


def split_top_level(text: str) -> list[str]:
    """Split on commas outside parentheses and double quotes (a backslash escapes a quote)."""
    parts: list[str] = []
    depth = 0
    quoted = False
    escaped = False
    current: list[str] = []
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
            if depth < 0:
                raise parse_error("logic tree", text, 'unexpected ")"')
        elif not quoted and depth == 0 and char == ",":
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    if depth != 0 or quoted:
        raise parse_error("logic tree", text, "unbalanced parentheses or quotes")
    parts.append("".join(current))
    return parts


def _unquote(text: str) -> str:
    """`"a,b"` → `a,b`, with `\\"` and `\\\\` unescaped; unquoted text is kept as it is."""
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


def parse_filter(key: str, value: str) -> Filter:
    """One `column=[not.]op.value` filter (also the form of a realtime binding's filter)."""
    if "\x00" in key or "\x00" in value:
        raise parse_error("filter", key, "NUL characters are not allowed")
    return _filter(_column(key, "filter"), value, "filter")


def _filter(column: str, text: str, what: str, *, in_tree: bool = False) -> Filter:
    """`[not.]op.value` for `column`."""
    rest = text
    negated = False
    if rest.startswith("not."):
        negated = True
        rest = rest[4:]
    operator, dot, value = rest.partition(".")
    if not dot:
        raise parse_error(what, f"{column}={text}" if not in_tree else text, "expecting op.value")
    if "(" in operator:
        raise parse_error(what, text, "operator modifiers (any)/(all) are not supported")
    if operator in COMPARISONS or operator == "isdistinct":
        shown = _unquote(value) if in_tree else value
        return Filter(column, operator, shown, negated)
    if operator == "is":
        if value.lower() not in IS_VALUES:
            raise parse_error(what, text, "expecting null, not_null, true, false or unknown")
        return Filter(column, "is", value.lower(), negated)
    if operator == "in":
        if not (value.startswith("(") and value.endswith(")")):
            raise parse_error(what, text, 'expecting "(" value list ")"')
        inner = value[1:-1]
        items = tuple(_unquote(item) for item in split_top_level(inner)) if inner else ()
        if len(items) > 1000:
            raise parse_error(what, text, "an in list may hold at most 1000 values")
        return Filter(column, "in", items, negated)
    if operator in _UNSUPPORTED:
        raise parse_error(what, text, f"the operator {operator} is not supported by this server")
    raise parse_error(what, text, f"unknown operator {operator!r}")


def _group(conjunction: str, text: str, negated: bool, depth: int, budget: _Budget) -> Group:
    """`(item,item,…)` where an item is `col.[not.]op.value` or `[not.]and|or(…)`."""
    if depth > MAX_DEPTH:
        raise parse_error("logic tree", text, f"nesting deeper than {MAX_DEPTH} levels")
    if not (text.startswith("(") and text.endswith(")")) or len(text) < 3:
        raise parse_error("logic tree", text, 'expecting "(" conditions ")"')
    items: list[Condition] = []
    for item in split_top_level(text[1:-1]):
        budget.spend()
        items.append(_tree_item(item.strip(), depth, budget))
    return Group("or" if conjunction == "or" else "and", tuple(items), negated)


def _tree_item(item: str, depth: int, budget: _Budget) -> Condition:
    negated = item.startswith("not.")
    body = item[4:] if negated else item
    for conjunction in ("and", "or"):
        if body.startswith(conjunction + "("):
            return _group(conjunction, body[len(conjunction) :], negated, depth + 1, budget)
    column, dot, rest = item.partition(".")
    if not dot:
        raise parse_error("logic tree", item, "expecting column.op.value")
    return _filter(_column(column, "logic tree"), rest, "logic tree", in_tree=True)


def parse_select(text: str) -> tuple[Field, ...] | None:
    """`*`, `col` and `alias:col` items; None means every exposed column."""
    if text.strip() in ("", "*"):
        return None
    items = split_top_level(text)
    if len(items) > MAX_SELECT:
        raise parse_error("select", text[:80], f"at most {MAX_SELECT} items")
    fields: list[Field] = []
    for raw in items:
        item = raw.strip()
        if item == "*":
            fields.append(Field("*"))
            continue
        if item.endswith(")"):
            if item.endswith("()"):
                raise RestProblem(400, "PGRST123", "Use of aggregate functions is not allowed")
            name = item.split("(", 1)[0].split(":")[-1].split("!")[0]
            raise RestProblem(
                400,
                "PGRST200",
                f"Could not find a relationship between this table and '{name}' in the "
                "schema cache",
                None,
                "Embedding other tables is not supported by this server",
            )
        if item.startswith("..."):
            raise parse_error("select", item, "spreading embedded resources is not supported")
        alias, colon, column = item.partition(":")
        if colon and not column.startswith(":"):
            fields.append(Field(_column(column, "select"), _column(alias, "select")))
        else:
            fields.append(Field(_column(item, "select")))
    return tuple(fields)


def parse_order(text: str) -> tuple[Order, ...]:
    """`col[.asc|.desc][.nullsfirst|.nullslast]`, comma-separated."""
    orders: list[Order] = []
    for item in split_top_level(text):
        column, *modifiers = item.strip().split(".")
        if len(modifiers) > 2:
            raise parse_error("order", item, "expecting col[.asc|.desc][.nullsfirst|.nullslast]")
        descending = False
        nulls: Literal["first", "last"] | None = None
        for modifier in modifiers:
            if modifier in ("asc", "desc"):
                descending = modifier == "desc"
            elif modifier in ("nullsfirst", "nullslast"):
                nulls = "first" if modifier == "nullsfirst" else "last"
            else:
                raise parse_error("order", item, f"unexpected {modifier!r}")
        orders.append(Order(_column(column, "order"), descending, nulls))
        if len(orders) > MAX_SELECT:
            raise parse_error("order", text[:80], f"at most {MAX_SELECT} items")
    return tuple(orders)
