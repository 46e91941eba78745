"""BRIN indexes on the time columns, so retention finds old rows without a full scan.

Rows arrive roughly in time order, so a block-range index is tiny (a few pages per million
rows) and cheap to keep current, unlike a B-tree that every upsert would have to update.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003_retention_indexes"
down_revision: str | None = "0002_usage_breakdowns"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXES = {
    "usage_minute_minute_brin": ("usage_minute", "minute"),
    "usage_day_day_brin": ("usage_day", "day"),
    "usage_route_day_day_brin": ("usage_route_day", "day"),
}


def upgrade() -> None:
    """Create one BRIN index per table on its time column."""
    for name, (table, column) in _INDEXES.items():
        op.execute(f"CREATE INDEX {name} ON {table} USING brin ({column})")


def downgrade() -> None:
    """Drop them."""
    for name in _INDEXES:
        op.execute(f"DROP INDEX {name}")
