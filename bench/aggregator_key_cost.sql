-- Write cost of the covering primary key (aggregator migration 0004) against the plain key, in the server:
-- the same 1,000-row upsert batches (100 apps x 10 minutes) into two tables, WAL bytes and time.
-- Run in a scratch database: createdb scratch && psql -X -d scratch -f bench/aggregator_key_cost.sql
\set cols 'requests bigint NOT NULL DEFAULT 0, status_2xx bigint NOT NULL DEFAULT 0, status_3xx bigint NOT NULL DEFAULT 0, status_4xx bigint NOT NULL DEFAULT 0, status_5xx bigint NOT NULL DEFAULT 0, denied bigint NOT NULL DEFAULT 0, throttled bigint NOT NULL DEFAULT 0, bytes_in bigint NOT NULL DEFAULT 0, bytes_out bigint NOT NULL DEFAULT 0, latency_ms_sum float8 NOT NULL DEFAULT 0, latency_ms_max float8 NOT NULL DEFAULT 0'
CREATE TABLE plain (app_id text NOT NULL, tenant_id text NOT NULL, minute timestamptz NOT NULL, :cols, PRIMARY KEY (app_id, minute));
CREATE TABLE covering (app_id text NOT NULL, tenant_id text NOT NULL, minute timestamptz NOT NULL, :cols, PRIMARY KEY (app_id, minute) INCLUDE (requests, status_2xx, status_3xx, status_4xx, status_5xx, denied, throttled, bytes_in, bytes_out, latency_ms_sum, latency_ms_max));
CREATE INDEX ON plain USING brin (minute); CREATE INDEX ON covering USING brin (minute);
CREATE FUNCTION upsert_batches(t text, batches int, fresh bool) RETURNS TABLE (wal_bytes numeric, ms numeric) LANGUAGE plpgsql AS $$
DECLARE l0 pg_lsn := pg_current_wal_lsn(); t0 timestamptz := clock_timestamp(); b int;
BEGIN
  FOR b IN 1..batches LOOP
    EXECUTE format($q$INSERT INTO %I AS t (app_id, tenant_id, minute, requests, status_2xx, latency_ms_sum, latency_ms_max, bytes_out)
      SELECT 'app-' || a, 'tenant', timestamptz '2026-11-30' + (m + CASE WHEN $1 THEN $2 * 10 ELSE 0 END) * interval '1 minute', 10, 10, 25.0, 4.0, 1000
      FROM generate_series(0, 99) a, generate_series(0, 9) m
      ON CONFLICT (app_id, minute) DO UPDATE SET requests = t.requests + EXCLUDED.requests, status_2xx = t.status_2xx + EXCLUDED.status_2xx,
        latency_ms_sum = t.latency_ms_sum + EXCLUDED.latency_ms_sum, latency_ms_max = GREATEST(t.latency_ms_max, EXCLUDED.latency_ms_max), bytes_out = t.bytes_out + EXCLUDED.bytes_out$q$, t) USING fresh, b;
  END LOOP;
  RETURN QUERY SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), l0), round(extract(epoch FROM clock_timestamp() - t0)::numeric * 1000, 1);
END $$;
SELECT 'plain updates' AS what, * FROM upsert_batches('plain', 30, false);
SELECT 'covering updates', * FROM upsert_batches('covering', 30, false);
SELECT 'plain inserts', * FROM upsert_batches('plain', 30, true);
SELECT 'covering inserts', * FROM upsert_batches('covering', 30, true);
SELECT 'plain updates', * FROM upsert_batches('plain', 30, false);
SELECT 'covering updates', * FROM upsert_batches('covering', 30, false);
SELECT relname, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables ORDER BY relname;
SELECT relname, pg_size_pretty(pg_relation_size(oid)) FROM pg_class WHERE relname LIKE '%pkey';
