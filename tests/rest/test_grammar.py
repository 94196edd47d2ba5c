"""The PostgREST read grammar on its own: what each form parses to, and the sizes it refuses."""

from __future__ import annotations

import pytest

from rendio.rest.grammar import (
    MAX_CONDITIONS,
    Field,
    Filter,
    Group,
    Order,
    parse_read,
    split_top_level,
)
from rendio.rest.problems import RestProblem


def test_quoted_values_keep_their_commas_and_parentheses() -> None:
    assert split_top_level('a,"b,c",d(e,f)') == ["a", '"b,c"', "d(e,f)"]
    query = parse_read([("prompt", 'in.("a,b","say \\"hi\\"",plain)')])
    assert query.where == (Filter("prompt", "in", ("a,b", 'say "hi"', "plain")),)


def test_a_nested_tree_with_negations() -> None:
    query = parse_read([("not.or", "(status.eq.a,and(progress.gt.5,video_url.not.is.null))")])
    assert query.where == (
        Group(
            "or",
            (
                Filter("status", "eq", "a"),
                Group(
                    "and",
                    (
                        Filter("progress", "gt", "5"),
                        Filter("video_url", "is", "null", negated=True),
                    ),
                ),
            ),
            negated=True,
        ),
    )


def test_select_order_and_paging() -> None:
    query = parse_read(
        [
            ("select", 'id:job_id,"status"'),
            ("order", "created_at.desc.nullslast,job_id"),
            ("limit", "20"),
            ("offset", "40"),
            ("columns", "ignored"),
        ]
    )
    assert query.fields == (Field("job_id", "id"), Field("status"))
    assert query.order == (Order("created_at", True, "last"), Order("job_id"))
    assert (query.limit, query.offset) == (20, 40)


def test_values_keep_dots_and_the_first_dot_splits() -> None:
    query = parse_read([("created_at", "gte.2026-11-22T07:50:00.123Z")])
    assert query.where == (Filter("created_at", "gte", "2026-11-22T07:50:00.123Z"),)


@pytest.mark.parametrize(
    "params",
    [
        [("status", "eq.a")] * (MAX_CONDITIONS + 1),
        [("or", "(" + ",".join(["status.eq.a"] * (MAX_CONDITIONS + 1)) + ")")],
        [("select", ",".join(["id"] * 65))],
        [("limit", "9" * 10)],
        [("status", "in.(" + ",".join(["a"] * 1001) + ")")],
        [("bad name", "eq.1")],
    ],
)
def test_oversized_or_odd_queries_are_refused(params: list[tuple[str, str]]) -> None:
    with pytest.raises(RestProblem) as refused:
        parse_read(params)
    assert refused.value.status == 400
