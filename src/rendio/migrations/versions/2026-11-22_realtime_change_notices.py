"""Change notices for /realtime/v1: every committed change to `video_jobs` and `users` is sent
on the `rendio_changes` channel with NOTIFY, which every API process LISTENs to, whichever
process (a worker on another host) made it.

A notice carries the table, the operation, the owner's id, the row's exposed columns (the
same allow-list `/rest/v1` grants) and, for updates and deletes, the old row's key — what
Supabase Realtime sends without REPLICA IDENTITY FULL. NOTIFY payloads are capped at 8,000
bytes; a row too large for that is sent as its key alone, and the listener reads it afresh.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# table: (key column, owner column, exposed columns) — as in rendio/rest/exposure.py.
WATCHED = {
    "video_jobs": (
        "job_id",
        "user_id",
        "job_id,user_id,model_id,prompt,settings,image_url,status,progress,provider,video_url,"
        "thumbnail_url,credits_used,error_code,created_at,updated_at,completed_at,deleted_at,"
        "media_expired_at",
    ),
    "users": (
        "id",
        "id",
        "id,email,is_guest,tier,credits_remaining,credits_total,initial_grant_claimed,language,"
        "theme_preference,created_at,updated_at",
    ),
}


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION rendio_notify_change() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE
            key_column text := TG_ARGV[0];
            owner_column text := TG_ARGV[1];
            exposed text[] := string_to_array(TG_ARGV[2], ',');
            source jsonb;
            notice jsonb;
            body text;
        BEGIN
            source := to_jsonb(CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END);
            notice := jsonb_build_object(
                'table', TG_TABLE_NAME,
                'type', TG_OP,
                'owner', source ->> owner_column,
                'key', source ->> key_column,
                'at', to_char(clock_timestamp() AT TIME ZONE 'UTC',
                              'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
            );
            IF TG_OP <> 'INSERT' THEN
                notice := notice || jsonb_build_object(
                    'old_record', jsonb_build_object(key_column, to_jsonb(OLD) -> key_column));
            END IF;
            IF TG_OP <> 'DELETE' THEN
                notice := notice || jsonb_build_object('record', (
                    SELECT jsonb_object_agg(item.key, item.value)
                    FROM jsonb_each(source) AS item
                    WHERE item.key = ANY (exposed)));
            END IF;
            body := notice::text;
            IF octet_length(body) > 7900 THEN
                body := (notice - 'record' || '{"reread": true}'::jsonb)::text;
            END IF;
            PERFORM pg_notify('rendio_changes', body);
            RETURN NULL;
        END
        $$
        """
    )
    for table, (key, owner, exposed) in WATCHED.items():
        op.execute(
            f"CREATE TRIGGER realtime_changes AFTER INSERT OR UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION rendio_notify_change('{key}', '{owner}', "
            f"'{exposed}')"
        )


def downgrade() -> None:
    for table in WATCHED:
        op.execute(f"DROP TRIGGER IF EXISTS realtime_changes ON {table}")
    op.execute("DROP FUNCTION IF EXISTS rendio_notify_change()")
