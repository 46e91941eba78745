"""Tenants, OAuth clients, client secrets and signing keys.

Revision ID: 0001_initial
Revises:
Create Date: 2025-01-01
"""

from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the registry's tables."""
    op.execute(
        """
        CREATE TABLE tenants (
            id text PRIMARY KEY,
            name text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE oauth_clients (
            id text PRIMARY KEY,
            tenant_id text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
            kind text NOT NULL CHECK (kind IN ('admin', 'app')),
            name text NOT NULL,
            description text NOT NULL DEFAULT '',
            enabled boolean NOT NULL DEFAULT true,
            permissions text[] NOT NULL DEFAULT '{}',
            rate_limit_per_minute bigint NOT NULL DEFAULT 100 CHECK (rate_limit_per_minute > 0),
            rate_limit_per_hour bigint NOT NULL DEFAULT 1500,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            version bigint NOT NULL DEFAULT 1,
            CHECK (rate_limit_per_hour >= rate_limit_per_minute)
        )
        """
    )
    op.execute("CREATE INDEX oauth_clients_tenant ON oauth_clients (tenant_id, kind, created_at)")
    op.execute(
        """
        CREATE TABLE client_secrets (
            id text PRIMARY KEY,
            client_id text NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
            secret_hash bytea NOT NULL,
            hint text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz,
            last_used_at timestamptz
        )
        """
    )
    op.execute("CREATE INDEX client_secrets_client ON client_secrets (client_id)")
    op.execute(
        """
        CREATE TABLE signing_keys (
            kid text PRIMARY KEY,
            private_key bytea NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            active boolean NOT NULL DEFAULT true
        )
        """
    )


def downgrade() -> None:
    """Drop the registry's tables."""
    op.execute("DROP TABLE signing_keys")
    op.execute("DROP TABLE client_secrets")
    op.execute("DROP TABLE oauth_clients")
    op.execute("DROP TABLE tenants")
