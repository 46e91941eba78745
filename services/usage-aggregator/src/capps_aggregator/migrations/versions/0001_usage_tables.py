"""Usage counters by minute and day, last seen per app, and the per-partition watermarks."""

from collections.abc import Sequence

from alembic import op

revision: str = "0001_usage_tables"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the four usage tables."""
    op.execute(
        """
        CREATE TABLE usage_minute (
            app_id text NOT NULL,
            tenant_id text NOT NULL,
            minute timestamptz NOT NULL,
            requests bigint NOT NULL,
            PRIMARY KEY (app_id, minute)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE usage_day (
            app_id text NOT NULL,
            tenant_id text NOT NULL,
            day date NOT NULL,
            requests bigint NOT NULL,
            PRIMARY KEY (app_id, day)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE app_last_seen (
            app_id text PRIMARY KEY,
            tenant_id text NOT NULL,
            last_seen timestamptz NOT NULL
        )
        """
    )
    op.execute(
        """
        CREATE TABLE usage_offsets (
            topic text NOT NULL,
            partition integer NOT NULL,
            next_offset bigint NOT NULL,
            PRIMARY KEY (topic, partition)
        )
        """
    )
    # The registry lists a tenant's usage; the primary keys lead with app_id, so add tenant.
    op.execute("CREATE INDEX usage_day_tenant_day ON usage_day (tenant_id, day)")


def downgrade() -> None:
    """Drop the four usage tables."""
    for table in ("usage_offsets", "app_last_seen", "usage_day", "usage_minute"):
        op.execute(f"DROP TABLE {table}")
