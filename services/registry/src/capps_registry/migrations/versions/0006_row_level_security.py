"""Row-level security: each tenant's rows are visible only to a transaction acting for it.

Revision ID: 0006_row_level_security
Revises: 0005_client_jwks
Create Date: 2026-11-30

A transaction acts for a tenant after `SELECT set_config('capps.tenant_id', <id>, true)`
(SET LOCAL); without it, a tenant-owned table shows no rows and takes none. The policies are
FORCEd, so they bind the tables' owner too; only a superuser or a BYPASSRLS role passes.

Roles (cluster-wide; created here when missing, which needs CREATEROLE or a superuser):
- capps_registry_app: what the registry service may do (no login; `registry migrate` makes
  the login role of REGISTRY_APP_DATABASE_URL a member). Not an owner, no BYPASSRLS.
- capps_registry_lookup: owns the two SECURITY DEFINER functions through which the service
  crosses tenants, and nothing else: it reads five columns of oauth_clients (never a name,
  permission or secret) and may append to the outbox.
- capps_usage_reader: SELECT on the usage aggregator's read model (granted by its migrations).

The usage tables are the aggregator's and get no policy: it writes every tenant's counts, and
the registry reads them only by app ids it has found under these policies.
"""

from alembic import op

revision = "0006_row_level_security"
down_revision = "0005_client_jwks"
branch_labels = None
depends_on = None

SETTING = "current_setting('capps.tenant_id', true)"
# The tables a tenant owns, and the rows of each that belong to the current tenant.
TENANT_ROWS = {
    "tenants": f"id = {SETTING}",
    "oauth_clients": f"tenant_id = {SETTING}",
    "client_secrets": (
        "EXISTS (SELECT FROM oauth_clients c WHERE c.id = client_secrets.client_id "
        f"AND c.tenant_id = {SETTING})"
    ),
    "audit_events": f"tenant_id = {SETTING}",
    "client_assertion_jtis": f"tenant_id = {SETTING}",
}
ROLES = ("capps_registry_app", "capps_registry_lookup", "capps_usage_reader")
# What the service may do; the audit trail is append-only, tenants are never changed by it.
APP_GRANTS = {
    "tenants": "SELECT, INSERT",
    "oauth_clients": "SELECT, INSERT, UPDATE, DELETE",
    "client_secrets": "SELECT, INSERT, UPDATE, DELETE",
    "audit_events": "SELECT, INSERT",
    "client_assertion_jtis": "SELECT, INSERT, UPDATE, DELETE",
    "app_outbox": "SELECT, INSERT, UPDATE, DELETE",
    "signing_keys": "SELECT, INSERT, UPDATE, DELETE",
}
FUNCTIONS = ("registry_client_tenants(text[])", "registry_enqueue_every_app()")


def _create_roles() -> None:
    for role in ROLES:
        op.execute(
            f"""
            DO $$
            BEGIN
              IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
                IF NOT (SELECT rolsuper OR rolcreaterole FROM pg_roles
                        WHERE rolname = current_user) THEN
                  RAISE EXCEPTION 'role {role} is missing and % may not create it: grant it '
                    'CREATEROLE, or run CREATE ROLE {role} NOLOGIN as a superuser', current_user;
                END IF;
                CREATE ROLE {role} NOLOGIN;
              END IF;
            END
            $$
            """  # noqa: S608 - constant role names
        )


def _create_lookup_functions() -> None:
    # The token endpoint knows only a client id, the outbox relay only app ids: this maps them
    # to tenants, one exact id at a time (it cannot list what it is not asked for).
    op.execute(
        """
        CREATE FUNCTION registry_client_tenants(client_ids text[])
        RETURNS TABLE (client_id text, tenant_id text)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
        AS $$ SELECT c.id, c.tenant_id FROM public.oauth_clients c WHERE c.id = ANY(client_ids) $$
        """
    )
    # `registry apps republish` announces every tenant's apps; it learns nothing back.
    op.execute(
        """
        CREATE FUNCTION registry_enqueue_every_app() RETURNS bigint
        LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
        AS $$
          WITH added AS (
            INSERT INTO public.app_outbox (app_id, kind, version)
            SELECT id, 'state', version FROM public.oauth_clients WHERE kind = 'app'
            ORDER BY created_at, id RETURNING 1)
          SELECT count(*) FROM added
        $$
        """
    )
    op.execute(
        "GRANT SELECT (id, tenant_id, kind, version, created_at) ON oauth_clients "
        "TO capps_registry_lookup"
    )
    op.execute("GRANT INSERT ON app_outbox TO capps_registry_lookup")
    op.execute("GRANT USAGE ON SEQUENCE app_outbox_id_seq TO capps_registry_lookup")
    op.execute(
        "CREATE POLICY registry_lookup ON oauth_clients FOR SELECT TO capps_registry_lookup "
        "USING (true)"
    )
    # Handing a function to another role takes membership in it: held only for that moment,
    # so the owner never inherits the lookup policy.
    alter = "".join(f"ALTER FUNCTION {f} OWNER TO capps_registry_lookup; " for f in FUNCTIONS)
    op.execute(
        f"""
        DO $$
        DECLARE
          was_member boolean := pg_has_role(current_user, 'capps_registry_lookup', 'MEMBER');
        BEGIN
          IF NOT was_member THEN
            EXECUTE format('GRANT capps_registry_lookup TO %I', current_user);
          END IF;
          -- The new owner needs CREATE on the schema for that moment too.
          GRANT CREATE ON SCHEMA public TO capps_registry_lookup;
          {alter}
          REVOKE CREATE ON SCHEMA public FROM capps_registry_lookup;
          IF NOT was_member THEN
            EXECUTE format('REVOKE capps_registry_lookup FROM %I', current_user);
          END IF;
        END
        $$
        """
    )
    for function in FUNCTIONS:
        op.execute(f"REVOKE ALL ON FUNCTION {function} FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION {function} TO capps_registry_app")
        # The owner runs the CLI in some deployments, under the same policies.
        op.execute(
            f"DO $$ BEGIN EXECUTE format('GRANT EXECUTE ON FUNCTION {function} TO %I', "
            "current_user); END $$"
        )


def upgrade() -> None:
    """Create the roles, grant the service its tables, turn on and force the policies."""
    _create_roles()
    for table, privileges in APP_GRANTS.items():
        op.execute(f"GRANT {privileges} ON {table} TO capps_registry_app")
    op.execute(
        "GRANT USAGE, SELECT ON SEQUENCE app_outbox_id_seq, audit_events_id_seq "
        "TO capps_registry_app"
    )
    op.execute("GRANT capps_usage_reader TO capps_registry_app")
    for table, rows in TENANT_ROWS.items():
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY tenant_isolation ON {table} USING ({rows}) WITH CHECK ({rows})")
    _create_lookup_functions()


def downgrade() -> None:
    """Drop the functions and policies and revoke the grants; the roles stay (cluster-wide)."""
    for function in FUNCTIONS:
        op.execute(f"DROP FUNCTION {function}")
    op.execute("DROP POLICY registry_lookup ON oauth_clients")
    op.execute("REVOKE ALL ON oauth_clients FROM capps_registry_lookup")
    op.execute("REVOKE ALL ON app_outbox FROM capps_registry_lookup")
    op.execute("REVOKE ALL ON SEQUENCE app_outbox_id_seq FROM capps_registry_lookup")
    for table in TENANT_ROWS:
        op.execute(f"DROP POLICY tenant_isolation ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    op.execute("REVOKE capps_usage_reader FROM capps_registry_app")
    op.execute(
        "REVOKE ALL ON SEQUENCE app_outbox_id_seq, audit_events_id_seq FROM capps_registry_app"
    )
    for table in APP_GRANTS:
        op.execute(f"REVOKE ALL ON {table} FROM capps_registry_app")
