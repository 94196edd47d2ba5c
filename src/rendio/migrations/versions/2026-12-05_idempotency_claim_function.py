"""Idempotency claim as one function: try the key's lock, then read its stored answer.

The read must see every answer committed before the lock was taken. A plain statement cannot
promise that (its snapshot is taken before its lock), a VOLATILE function's statements each
take a fresh one — so the claim can be one step of a larger statement (generate-video's start,
generation/service.py) instead of two round trips of its own. The lock is the same
`idempotency:<user>:<key>` advisory lock as before, so processes of both versions agree.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION rendio_claim_idempotency_key(
            p_user_id uuid, p_key text, p_fingerprint text
        ) RETURNS TABLE (outcome text, status_code integer, response_body jsonb)
        LANGUAGE plpgsql VOLATILE AS $$
        DECLARE
            stored idempotency_log%ROWTYPE;
        BEGIN
            IF NOT pg_try_advisory_xact_lock(
                hashtextextended('idempotency:' || p_user_id::text || ':' || p_key, 0)
            ) THEN
                RETURN QUERY SELECT 'in_progress', NULL::integer, NULL::jsonb;
                RETURN;
            END IF;
            SELECT * INTO stored FROM idempotency_log l
            WHERE l.user_id = p_user_id AND l.idempotency_key = p_key;
            IF FOUND AND stored.expires_at <= now() THEN
                DELETE FROM idempotency_log WHERE id = stored.id;  -- counts as new
            ELSIF FOUND AND stored.request_fingerprint <> p_fingerprint THEN
                RETURN QUERY SELECT 'reused', NULL::integer, NULL::jsonb;
                RETURN;
            ELSIF FOUND THEN
                RETURN QUERY SELECT 'replay', stored.status_code, stored.response_body;
                RETURN;
            END IF;
            RETURN QUERY SELECT 'new', NULL::integer, NULL::jsonb;
        END
        $$
        """
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS rendio_claim_idempotency_key(uuid, text, text)")
