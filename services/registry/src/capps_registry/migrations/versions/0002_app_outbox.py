"""The app-state outbox, and when an app's tokens start being valid.

Revision ID: 0002_app_outbox
Revises: 0001_initial
Create Date: 2025-01-02

Outbox rows are deleted once published rather than marked: Kafka is the record of what was
published, so the table only ever holds the backlog, needs no partial index and never grows.
"""

from alembic import op

revision = "0002_app_outbox"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add tokens_valid_after, the outbox, its NOTIFY trigger, and enqueue every existing app."""
    # Whole seconds, like a token's `iat`: a token made in the second its app was created has
    # an `iat` below created_at, and must still count as issued after it.
    op.execute("ALTER TABLE oauth_clients ADD COLUMN tokens_valid_after timestamptz")
    op.execute("UPDATE oauth_clients SET tokens_valid_after = date_trunc('second', created_at)")
    op.execute(
        "ALTER TABLE oauth_clients ALTER COLUMN tokens_valid_after SET NOT NULL, "
        "ALTER COLUMN tokens_valid_after SET DEFAULT date_trunc('second', now())"
    )
    # No foreign key to oauth_clients: the row announcing a deletion outlives the app.
    op.execute(
        """
        CREATE TABLE app_outbox (
            id bigserial PRIMARY KEY,
            app_id text NOT NULL,
            kind text NOT NULL CHECK (kind IN ('state', 'deleted')),
            version bigint NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    # One statement-level trigger wakes the relays for every enqueue, whoever wrote it (the API,
    # `registry apps republish`, this migration); PostgreSQL delivers it only on commit.
    op.execute(
        """
        CREATE FUNCTION app_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('capps_app_outbox', '');
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER app_outbox_notify AFTER INSERT ON app_outbox "
        "FOR EACH STATEMENT EXECUTE FUNCTION app_outbox_notify()"
    )
    # Apps that existed before the outbox were never published: announce them once.
    op.execute(
        "INSERT INTO app_outbox (app_id, kind, version) "
        "SELECT id, 'state', version FROM oauth_clients WHERE kind = 'app' ORDER BY created_at, id"
    )


def downgrade() -> None:
    """Drop the outbox and the column."""
    op.execute("DROP TABLE app_outbox")
    op.execute("DROP FUNCTION app_outbox_notify()")
    op.execute("ALTER TABLE oauth_clients DROP COLUMN tokens_valid_after")
