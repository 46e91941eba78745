-- Grafana's read-only role: the usage tables and the names of apps and tenants, nothing else
-- (no client secret hashes, no signing keys). Idempotent; run after the migrations:
--   psql -v ON_ERROR_STOP=1 -v reader_password="$GRAFANA_DB_PASSWORD" -f grafana-reader.sql
SELECT format('CREATE ROLE grafana_reader LOGIN PASSWORD %L', :'reader_password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'grafana_reader')\gexec
SELECT format('ALTER ROLE grafana_reader LOGIN PASSWORD %L', :'reader_password')\gexec
-- Even a mistaken grant cannot write, and a heavy panel cannot hold the database for long.
ALTER ROLE grafana_reader SET default_transaction_read_only = on;
ALTER ROLE grafana_reader SET statement_timeout = '15s';
SELECT format('GRANT CONNECT ON DATABASE %I TO grafana_reader', current_database())\gexec
GRANT USAGE ON SCHEMA public TO grafana_reader;
-- Tables a later migration adds are granted when this runs again after it.
SELECT format('GRANT SELECT ON %I TO grafana_reader', tablename)
FROM pg_tables
WHERE schemaname = 'public'
  AND tablename IN ('usage_minute', 'usage_day', 'usage_route_day', 'app_last_seen')\gexec
GRANT SELECT (id, tenant_id, kind, name, enabled) ON oauth_clients TO grafana_reader;
GRANT SELECT (id, name) ON tenants TO grafana_reader;
-- Row-level security (registry migration 0006) shows a tenant's rows only to a transaction
-- acting for that tenant; Grafana's panels name every tenant's apps, so this role reads all
-- rows, of the columns granted above alone.
DROP POLICY IF EXISTS grafana_reader_names ON oauth_clients;
CREATE POLICY grafana_reader_names ON oauth_clients FOR SELECT TO grafana_reader USING (true);
DROP POLICY IF EXISTS grafana_reader_names ON tenants;
CREATE POLICY grafana_reader_names ON tenants FOR SELECT TO grafana_reader USING (true);
