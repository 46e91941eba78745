"""Apps of external identity providers: the issuer whose tokens act for an app.

Revision ID: 0004_app_issuer
Revises: 0003_keyed_secrets_audit
Create Date: 2026-11-30

An app registered by its external client id carries its provider's issuer URL; the registry
issues it no secret and no token, and gateways accept its tokens only from that issuer.
"""

from alembic import op

revision = "0004_app_issuer"
down_revision = "0003_keyed_secrets_audit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the nullable issuer column; only apps may have one."""
    op.execute(
        "ALTER TABLE oauth_clients ADD COLUMN issuer text, "
        "ADD CONSTRAINT oauth_clients_issuer_only_apps CHECK (issuer IS NULL OR kind = 'app')"
    )


def downgrade() -> None:
    """Drop the column; apps of external issuers go with it, as they cannot work without it."""
    op.execute("DELETE FROM oauth_clients WHERE issuer IS NOT NULL")
    op.execute("ALTER TABLE oauth_clients DROP COLUMN issuer")
