"""A joined channel: its `postgres_changes` bindings, the user its token stands for, and the
payloads it is sent.

The join reply must echo each binding the client sent, in order, with an integer `id`
(realtime-js, supabase-swift and realtime-py all check it position by position), and each
change names the ids of the bindings it matches.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rendio.realtime.changes import Change, RowFilter, columns_of
from rendio.rest.exposure import TABLES, USERS, VIDEO_JOBS, Exposed
from rendio.rest.grammar import parse_filter, split_top_level
from rendio.rest.problems import RestProblem

# The tables whose changes are streamed (the rest are read through /rest/v1).
STREAMED: dict[str, Exposed] = {t.name: t for t in (VIDEO_JOBS, USERS)}
EVENTS = ("*", "INSERT", "UPDATE", "DELETE")
MAX_BINDINGS = 32
MAX_FILTERS = 8
MAX_FILTER_CHARS = 1024


class JoinRefused(Exception):
    """Why a join is refused (sent to the client as the reply's `reason`)."""


@dataclass(frozen=True)
class Binding:
    id: int
    event: str
    tables: tuple[str, ...]
    filters: tuple[RowFilter, ...]

    def wants(self, change: Change) -> bool:
        if self.event not in ("*", change.type) or change.table not in self.tables:
            return False
        if change.type == "DELETE":  # old rows hold only their key: not filterable (as RT)
            return True
        return all(test(change.record or {}) for test in self.filters)


def _binding_id(params: dict[str, Any]) -> int:
    """A stable positive id for a binding's parameters (realtime-py ignores id 0)."""
    return zlib.crc32(json.dumps(params, sort_keys=True).encode()) or 1


def _filters(exposed: Exposed, text: str) -> tuple[RowFilter, ...]:
    filters = []
    try:
        parts = split_top_level(text)
        if len(parts) > MAX_FILTERS:
            raise ValueError(f"at most {MAX_FILTERS} filters per binding")
        for part in parts:
            column, equals, condition = part.partition("=")
            if not equals:
                raise ValueError(f"expecting column=op.value in {part!r}")
            filters.append(RowFilter.of(exposed, parse_filter(column.strip(), condition)))
    except RestProblem as problem:
        reason = f"{problem.message}: {problem.details}" if problem.details else problem.message
        raise JoinRefused(f"Error parsing `filter` params: {reason}") from None
    except ValueError as error:
        raise JoinRefused(f"Error parsing `filter` params: {error}") from None
    return tuple(filters)


def parse_bindings(config: Any) -> tuple[list[dict[str, Any]], list[Binding]]:
    """The bindings of a join's `config.postgres_changes`: the reply's echo and the checks."""
    sent = config.get("postgres_changes") if isinstance(config, dict) else None
    if sent is None:
        return [], []
    if not isinstance(sent, list) or len(sent) > MAX_BINDINGS:
        raise JoinRefused(f"postgres_changes must be a list of at most {MAX_BINDINGS} bindings")
    echoed: list[dict[str, Any]] = []
    bindings: list[Binding] = []
    for params in sent:
        if not isinstance(params, dict):
            raise JoinRefused("each postgres_changes binding must be an object")
        event = params.get("event", "*")
        schema = params.get("schema") or "public"
        table = params.get("table") or "*"
        if not all(isinstance(value, str) for value in (event, schema, table)):
            raise JoinRefused("event, schema and table must be text")
        event = event.upper()
        if event not in EVENTS:
            raise JoinRefused(f"unknown event {params.get('event')!r}")
        if schema != "public":
            raise JoinRefused(f"unknown schema {schema!r}")
        if table != "*" and table not in STREAMED:
            raise JoinRefused(
                f"changes of {table!r} are not streamed; these are: {', '.join(STREAMED)}"
            )
        tables = tuple(STREAMED) if table == "*" else (table,)
        filter_text = params.get("filter")
        filters: tuple[RowFilter, ...] = ()
        if filter_text:
            if table == "*" or not isinstance(filter_text, str):
                raise JoinRefused("a filter needs one table and must be text")
            if len(filter_text) > MAX_FILTER_CHARS:
                raise JoinRefused(f"a filter may be at most {MAX_FILTER_CHARS} characters")
            filters = _filters(STREAMED[table], filter_text)
        binding_id = _binding_id(params)
        echoed.append({**params, "id": binding_id})
        bindings.append(Binding(binding_id, event, tables, filters))
    return echoed, bindings


@dataclass
class Channel:
    topic: str
    join_ref: str | None
    user_id: str | None
    expires_at: int | None
    bindings: list[Binding]
    sink: Callable[[Change], None] | None = field(default=None, repr=False)
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.topic.removeprefix("realtime:")

    def tables(self) -> set[str]:
        return {table for binding in self.bindings for table in binding.tables}

    def payload(self, change: Change, present: Callable[[Exposed, dict[str, Any]], Any]) -> Any:
        """The `postgres_changes` payload for `change`, or None if no binding wants it."""
        ids = [binding.id for binding in self.bindings if binding.wants(change)]
        if not ids:
            return None
        exposed = TABLES[change.table]
        data: dict[str, Any] = {
            "schema": "public",
            "table": change.table,
            "commit_timestamp": change.at,
            "type": change.type,
            "columns": columns_of(exposed),
            "errors": None,
        }
        if change.record is not None:
            data["record"] = present(exposed, change.record)
        if change.old_record is not None:
            data["old_record"] = change.old_record
        return {"ids": sorted(set(ids)), "data": data}
