"""Breakdowns behind the page: status classes, denied, throttled, latency, bytes, routes.

Columns are added with DEFAULT 0 so rows counted before this revision stay valid (their
breakdowns read as zero); `latency_hist` starts empty for them, which readers treat as no
histogram (capps_usage.latency.quantile_from_histogram counts missing buckets as zero).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002_usage_breakdowns"
down_revision: str | None = "0001_usage_tables"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COUNTER_COLUMNS = (
    "status_2xx",
    "status_3xx",
    "status_4xx",
    "status_5xx",
    "denied",
    "throttled",
    "bytes_in",
    "bytes_out",
)
_LATENCY_COLUMNS = ("latency_ms_sum", "latency_ms_max")


def _add_breakdowns(table: str) -> None:
    columns = [f"ADD COLUMN {name} bigint NOT NULL DEFAULT 0" for name in _COUNTER_COLUMNS]
    columns += [
        f"ADD COLUMN {name} double precision NOT NULL DEFAULT 0" for name in _LATENCY_COLUMNS
    ]
    op.execute(f"ALTER TABLE {table} " + ", ".join(columns))


def upgrade() -> None:
    """Add the breakdown columns, the day histogram and the per-route day counters."""
    _add_breakdowns("usage_minute")
    _add_breakdowns("usage_day")
    op.execute("ALTER TABLE usage_day ADD COLUMN latency_hist bigint[] NOT NULL DEFAULT '{}'")
    op.execute(
        """
        CREATE TABLE usage_route_day (
            app_id text NOT NULL,
            tenant_id text NOT NULL,
            day date NOT NULL,
            method text NOT NULL,
            route text NOT NULL,
            requests bigint NOT NULL,
            errors bigint NOT NULL,
            PRIMARY KEY (app_id, day, method, route)
        )
        """
    )


def downgrade() -> None:
    """Drop what upgrade added."""
    op.execute("DROP TABLE usage_route_day")
    op.execute("ALTER TABLE usage_day DROP COLUMN latency_hist")
    for table in ("usage_minute", "usage_day"):
        drops = [f"DROP COLUMN {name}" for name in (*_COUNTER_COLUMNS, *_LATENCY_COLUMNS)]
        op.execute(f"ALTER TABLE {table} " + ", ".join(drops))
