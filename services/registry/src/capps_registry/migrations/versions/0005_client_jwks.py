"""Apps that authenticate with a signed assertion (RFC 7523 private_key_jwt).

Revision ID: 0005_client_jwks
Revises: 0004_app_issuer
Create Date: 2026-11-30

An app may register a public JWKS; it then proves itself at the token endpoint with a JWT
signed by one of those keys. Each assertion's `jti` is used once: `client_assertion_jtis`
keeps it until the assertion expires, and its primary key makes a replay fail even when two
registries receive the same assertion at the same moment.
"""

from alembic import op

revision = "0005_client_jwks"
down_revision = "0004_app_issuer"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add oauth_clients.jwks (apps only) and the table of used assertion ids."""
    op.execute(
        "ALTER TABLE oauth_clients ADD COLUMN jwks jsonb, "
        "ADD CONSTRAINT oauth_clients_jwks_only_apps CHECK (jwks IS NULL OR kind = 'app')"
    )
    op.execute(
        """
        CREATE TABLE client_assertion_jtis (
            tenant_id text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
            client_id text NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
            jti text NOT NULL,
            expires_at timestamptz NOT NULL,
            PRIMARY KEY (client_id, jti)
        )
        """
    )
    # Expired ids are deleted oldest first, a few at each use (see oauth/repository.py).
    op.execute("CREATE INDEX client_assertion_jtis_expiry ON client_assertion_jtis (expires_at)")


def downgrade() -> None:
    """Drop the table and the column; apps keyed only by a JWKS can no longer authenticate."""
    op.execute("DROP TABLE client_assertion_jtis")
    op.execute("ALTER TABLE oauth_clients DROP COLUMN jwks")
