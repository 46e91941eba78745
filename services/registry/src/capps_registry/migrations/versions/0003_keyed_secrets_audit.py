"""Keyed secret digests, the audit trail, signing-key retirement, the by-name app index.

Revision ID: 0003_keyed_secrets_audit
Revises: 0002_app_outbox
Create Date: 2026-11-30

Secrets stored before this revision are plain SHA-256 digests. They are re-keyed in place as
HMAC-SHA-256(pepper, stored digest), which is exactly what the registry now computes for a
presented secret (see oauth/credentials.py), so every existing secret keeps working and no
row is left unkeyed. The pepper comes from settings (`REGISTRY_SECRET_PEPPER`) through the
alembic config; a downgrade cannot undo the keying, so it refuses while keyed rows exist.
"""

import hashlib
import hmac

import sqlalchemy as sa
from alembic import context, op

revision = "0003_keyed_secrets_audit"
down_revision = "0002_app_outbox"
branch_labels = None
depends_on = None


def _pepper() -> bytes:
    pepper = context.config.attributes.get("secret_pepper")
    if not isinstance(pepper, bytes) or not pepper:
        raise RuntimeError("migration 0003 needs the secret pepper (REGISTRY_SECRET_PEPPER)")
    return pepper


def upgrade() -> None:
    """Re-key secret digests; add audit_events, signing_keys.retired_at and the name index."""
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, secret_hash FROM client_secrets")).fetchall()
    pepper = _pepper() if rows else b""
    for secret_id, digest in rows:
        keyed = hmac.new(pepper, bytes(digest), hashlib.sha256).digest()
        bind.execute(
            sa.text("UPDATE client_secrets SET secret_hash = :keyed WHERE id = :id"),
            {"keyed": keyed, "id": secret_id},
        )
    op.execute(
        """
        CREATE TABLE audit_events (
            id bigserial PRIMARY KEY,
            tenant_id text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
            app_id text,
            actor text NOT NULL,
            action text NOT NULL,
            at timestamptz NOT NULL DEFAULT clock_timestamp(),
            before jsonb,
            after jsonb,
            request_id text
        )
        """
    )
    # No foreign key on app_id: the trail of a deleted app outlives it.
    op.execute("CREATE INDEX audit_events_tenant ON audit_events (tenant_id, id DESC)")
    op.execute("CREATE INDEX audit_events_app ON audit_events (tenant_id, app_id, id DESC)")
    op.execute("ALTER TABLE signing_keys ADD COLUMN retired_at timestamptz")
    op.execute(
        "CREATE INDEX oauth_clients_tenant_name ON oauth_clients (tenant_id, kind, name, id)"
    )


def downgrade() -> None:
    """Drop what upgrade added; keyed digests cannot be turned back into plain ones."""
    op.execute("DROP INDEX oauth_clients_tenant_name")
    op.execute("ALTER TABLE signing_keys DROP COLUMN retired_at")
    op.execute("DROP TABLE audit_events")
    count = op.get_bind().execute(sa.text("SELECT count(*) FROM client_secrets")).scalar()
    if count:
        raise RuntimeError(
            "client secrets are keyed with the pepper and cannot be un-keyed: delete them "
            "(and issue new ones after re-upgrading) before downgrading past 0003"
        )
