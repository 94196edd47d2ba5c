"""The `rendio_rest` role and row-level security for /rest/v1 reads.

`/rest/v1` runs each read as `rendio_rest` with the caller's id in `rendio.rest_user`. The
role may select only the exposed columns (granted one by one, so a column added later stays
hidden until granted), and policies let it see only the caller's rows and the available
models. The service itself connects as the tables' owner, which row-level security does not
restrict (it is enabled, not forced), so nothing else changes.

Roles belong to the whole server: creating it tolerates a concurrent migration of another
database doing the same, and the service's login role is made a member so it may switch to it.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLE = "rendio_rest"
CALLER = "nullif(current_setting('rendio.rest_user', true), '')::uuid"
GRANTS = {
    "users": (
        "id, email, is_guest, tier, credits_remaining, credits_total, initial_grant_claimed, "
        "language, theme_preference, created_at, updated_at"
    ),
    "models": (
        "id, slug, name, category, description, provider, cost_per_generation, "
        "cost_per_second, is_featured, is_available, thumbnail_url, settings, options, "
        "created_at, updated_at"
    ),
    "video_jobs": (
        "job_id, user_id, model_id, prompt, settings, image_url, status, progress, provider, "
        "video_url, thumbnail_url, credits_used, error_code, created_at, updated_at, "
        "completed_at, deleted_at, media_expired_at"
    ),
    "quota_log": "id, user_id, job_id, change, reason, balance_after, created_at",
}
POLICIES = {
    "users": f"id = {CALLER}",
    "models": "is_available",
    "video_jobs": f"user_id = {CALLER} AND deleted_at IS NULL",
    "quota_log": f"user_id = {CALLER}",
}


def upgrade() -> None:
    op.execute(
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}') THEN
                CREATE ROLE {ROLE} NOLOGIN;
            END IF;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- created meanwhile by a migration of another database
        END
        $$
        """
    )
    op.execute(
        f"""
        DO $$
        BEGIN
            IF NOT pg_has_role(current_user, '{ROLE}', 'MEMBER') THEN
                EXECUTE format('GRANT {ROLE} TO %I', current_user);
            END IF;
        END
        $$
        """
    )
    op.execute(f"GRANT USAGE ON SCHEMA public TO {ROLE}")
    for table, columns in GRANTS.items():
        op.execute(f"GRANT SELECT ({columns}) ON {table} TO {ROLE}")
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY rest_read ON {table} FOR SELECT TO {ROLE} USING ({POLICIES[table]})"
        )


def downgrade() -> None:
    for table in GRANTS:
        op.execute(f"DROP POLICY IF EXISTS rest_read ON {table}")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
        op.execute(f"REVOKE ALL ON {table} FROM {ROLE}")
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {ROLE}")
