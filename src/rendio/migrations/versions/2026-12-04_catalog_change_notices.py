"""Catalog change notices: any statement that changes `models` sends one NOTIFY on
`rendio_catalog`, so every API process drops the get-models answer it keeps in memory
(catalog/cache.py), whoever made the change (an admin call, `rendio models import`, SQL).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION rendio_notify_catalog() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('rendio_catalog', '');
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER catalog_changes AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON models "
        "FOR EACH STATEMENT EXECUTE FUNCTION rendio_notify_catalog()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS catalog_changes ON models")
    op.execute("DROP FUNCTION IF EXISTS rendio_notify_catalog()")
