"""Covering primary keys on usage_minute and usage_day, so one app's series is an index-only scan.

Every app's minutes are written interleaved over time, so the 1,440 rows of one app's 24-hour
series sat on 1,440 different heap pages (measured: 1,450 buffers, 7-15 ms in the server with
the data cached). With the counters in the primary key's leaf tuples (INCLUDE) the same read
touches about 30 index pages and no heap page once the visibility map marks the pages
all-visible; the per-table autovacuum settings below keep it marked within minutes instead of
after a fifth of the table changed. Written up in the service README (Speed).

The new index is built CONCURRENTLY and then becomes the primary key, so counting keeps
running while a populated table is migrated; the ON CONFLICT (app_id, minute|day) upserts
infer the same key.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004_covering_series_keys"
down_revision: str | None = "0003_retention_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here rather than imported: a migration must keep meaning what it meant when written.
_COUNTERS = (
    "requests, status_2xx, status_3xx, status_4xx, status_5xx, denied, throttled, "
    "bytes_in, bytes_out, latency_ms_sum, latency_ms_max"
)
_KEYS = {
    "usage_minute": ("minute", _COUNTERS),
    "usage_day": ("day", _COUNTERS + ", latency_hist"),
}
# Vacuum (which sets the visibility map) after 1% of the rows were inserted or changed,
# instead of the default 20%: at 10,000 busy apps that is about 20 minutes of minute rows.
_AUTOVACUUM = (
    "autovacuum_vacuum_insert_scale_factor = 0.01, autovacuum_vacuum_scale_factor = 0.01, "
    "autovacuum_analyze_scale_factor = 0.02"
)
_AUTOVACUUM_NAMES = (
    "autovacuum_vacuum_insert_scale_factor, autovacuum_vacuum_scale_factor, "
    "autovacuum_analyze_scale_factor"
)


def _swap_key(table: str, bucket: str, include: str | None) -> None:
    """Build the new key's index concurrently, then make it the primary key."""
    covering = "" if include is None else f" INCLUDE ({include})"
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {table}_key_new")
        op.execute(
            f"CREATE UNIQUE INDEX CONCURRENTLY {table}_key_new "
            f"ON {table} (app_id, {bucket}){covering}"
        )
    op.execute(
        f"ALTER TABLE {table} DROP CONSTRAINT {table}_pkey, "
        f"ADD CONSTRAINT {table}_pkey PRIMARY KEY USING INDEX {table}_key_new"
    )


def upgrade() -> None:
    """Make the primary keys cover the series columns; vacuum the tables more often."""
    for table, (bucket, include) in _KEYS.items():
        _swap_key(table, bucket, include)
        op.execute(f"ALTER TABLE {table} SET ({_AUTOVACUUM})")


def downgrade() -> None:
    """Back to plain (app_id, bucket) keys and default autovacuum settings."""
    for table, (bucket, _include) in _KEYS.items():
        op.execute(f"ALTER TABLE {table} RESET ({_AUTOVACUUM_NAMES})")
        _swap_key(table, bucket, None)
