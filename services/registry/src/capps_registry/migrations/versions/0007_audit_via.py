"""How each audited change was made: through the admin API, the page, or the platform's CLI.

Revision ID: 0007_audit_via
Revises: 0006_row_level_security
Create Date: 2026-11-30

A tenant's admin client may be used by a script and by people on the page alike; the trail
tells which. Events recorded before this migration keep no channel (NULL).
"""

from alembic import op

revision = "0007_audit_via"
down_revision = "0006_row_level_security"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add audit_events.via."""
    op.execute(
        "ALTER TABLE audit_events ADD COLUMN via text, "
        "ADD CONSTRAINT audit_events_via CHECK (via IN ('api', 'page', 'cli'))"
    )


def downgrade() -> None:
    """Drop the column; the trail no longer tells how a change was made."""
    op.execute("ALTER TABLE audit_events DROP COLUMN via")
