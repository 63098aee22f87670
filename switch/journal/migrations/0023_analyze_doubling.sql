-- A day's partitions are analysed at 1,000 rows and then each time they have doubled (issue 13),
-- no longer at every 5 %. At 1,000/s, 5 % of a young day is ten seconds of rows: every ten seconds
-- autovacuum analysed the request, outcome and reversal partitions (30,000 sampled rows each),
-- half a core for a second, and the soak's slow seconds were those. The first analyse is what
-- the planner needs (a never-analysed day was read whole for each lookup); after it, it scales
-- the row estimate by the pages the partition has, and the values' spread does not change.
CREATE OR REPLACE FUNCTION txn_ensure_partition(d date) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    day  text := to_char(d, 'YYYYMMDD');
    name text := 'txn_p' || day;
BEGIN
    IF to_regclass(name) IS NOT NULL AND to_regclass('txn_o' || day) IS NOT NULL AND to_regclass('txn_r' || day) IS NOT NULL THEN
        RETURN name;
    END IF;
    PERFORM pg_advisory_xact_lock(8584);
    -- Insert-only: packed full. Vacuum by absolute counts, not by a fraction of a table that
    -- grows all day; the insert threshold keeps the visibility map current (and freezes).
    -- Analyse early and then by a fraction (an analyse samples 30,000 rows whatever the size):
    -- a day's partition that was never analysed made the planner find a transaction by its
    -- duplicate key through the (mid, local_day, id) index, reading the merchant's whole day
    -- for each one (PostgreSQL at 1.4 cores and p50 30 ms in the soak's first minutes, until the
    -- first analyse at 200,000 rows).
    -- each CREATE may still find the table made meanwhile (an advisory lock does not refresh
    -- the catalog snapshot to_regclass read): duplicate_table means another node made it
    BEGIN
        EXECUTE format('CREATE TABLE %I PARTITION OF txn_request FOR VALUES FROM (%L) TO (%L) WITH (fillfactor = 100,'
            ' autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 20000,'
            ' autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 200000,'
            ' autovacuum_analyze_scale_factor = 1, autovacuum_analyze_threshold = 1000)', name, d, d + 1);
    EXCEPTION WHEN duplicate_table THEN
        NULL;
    END;
    BEGIN
        EXECUTE format('CREATE TABLE %I PARTITION OF txn_outcome FOR VALUES FROM (%L) TO (%L) WITH (fillfactor = 100,'
            ' autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 20000,'
            ' autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 200000,'
            ' autovacuum_analyze_scale_factor = 1, autovacuum_analyze_threshold = 1000)', 'txn_o' || day, d, d + 1);
    EXCEPTION WHEN duplicate_table THEN
        NULL;
    END;
    -- deleted from as reversals stop being needed: vacuum often, it is small
    BEGIN
        EXECUTE format('CREATE TABLE %I PARTITION OF txn_reversal FOR VALUES FROM (%L) TO (%L) WITH ('
            ' autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 20000,'
            ' autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 200000,'
            ' autovacuum_analyze_scale_factor = 1, autovacuum_analyze_threshold = 1000)', 'txn_r' || day, d, d + 1);
    EXCEPTION WHEN duplicate_table THEN
        NULL;
    END;
    RETURN name;
END $$;

DO $$
DECLARE
    p record;
BEGIN
    FOR p IN SELECT c.oid::regclass AS rel FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent IN ('txn_request'::regclass, 'txn_outcome'::regclass, 'txn_reversal'::regclass)
            AND substr(c.relname, 6) >= to_char(current_date, 'YYYYMMDD') LOOP
        EXECUTE format('ALTER TABLE %s SET (autovacuum_analyze_scale_factor = 1)', p.rel);
    END LOOP;
END $$;
