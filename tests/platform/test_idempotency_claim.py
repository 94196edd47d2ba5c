"""The idempotency claim's SQL function (migration 0014), called as generate-video calls it: as
one step of a larger statement, whose own snapshot is older than the claim's lock."""

import threading

import psycopg

from rendio.platform.db import libpq_url

_KEY = "key-1"
_USER = "INSERT INTO users (credits_remaining) VALUES (0) RETURNING id"
# The claim runs after a second's sleep, inside one statement whose snapshot was taken before
# the sleep: the shape of generate-video's start, stretched so that another request's answer
# can be committed in between.
_CLAIM_AFTER_SLEEP = (
    "SELECT c.outcome FROM (SELECT pg_sleep(1)::text AS slept) s, "
    "LATERAL rendio_claim_idempotency_key(%(user)s, %(key)s || s.slept, 'f') c"
)
_LOOKUP_AFTER_SLEEP = (
    "SELECT count(*) FROM (SELECT pg_sleep(1)::text AS slept) s, LATERAL (SELECT 1 "
    "FROM idempotency_log WHERE user_id = %(user)s AND idempotency_key = %(key)s || s.slept) l"
)
_ANSWER = (
    "INSERT INTO idempotency_log (user_id, idempotency_key, operation, request_fingerprint, "
    "status_code, response_body, expires_at) "
    "VALUES (%(user)s, %(key)s, 'generate-video', 'f', 200, '{}', now() + interval '1 day')"
)


def _while_another_answers(url: str, statement: str) -> object:
    """`statement`'s result when another request commits the key's answer during its sleep."""
    with psycopg.connect(url, autocommit=True) as setup:
        user = setup.execute(_USER).fetchone()
        assert user is not None
    params = {"user": user[0], "key": _KEY}
    result: list[object] = []

    def run() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(statement, params).fetchone()
            result.append(row[0] if row else None)

    claimer = threading.Thread(target=run)
    claimer.start()
    with psycopg.connect(url, autocommit=True) as other:
        other.execute("SELECT pg_sleep(0.3)")
        other.execute(_ANSWER, params)
    claimer.join(10)
    return result[0]


def test_the_claim_sees_an_answer_committed_after_its_statement_began(
    clean_database: str,
) -> None:
    """The claim's lookup reads with its own, fresh snapshot: a request that committed just
    before the lock was taken is replayed, never charged again."""
    assert _while_another_answers(libpq_url(clean_database), _CLAIM_AFTER_SLEEP) == "replay"


def test_a_plain_lookup_in_that_statement_would_not(clean_database: str) -> None:
    """Why the claim is a VOLATILE function: the same lookup written into the statement reads
    the statement's snapshot, older than the answer."""
    assert _while_another_answers(libpq_url(clean_database), _LOOKUP_AFTER_SLEEP) == 0
