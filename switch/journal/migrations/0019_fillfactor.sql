-- Partitions of txn at fillfactor 50 (issue 13). Every transaction is written twice: the
-- write-ahead INSERT, then the outcome UPDATE a few milliseconds later, inside a group commit
-- with the other rows of the same page. At fillfactor 80 a page kept room for about 3 of the 13
-- new versions its rows need, and the old versions could not be pruned yet (their updates were
-- still in flight), so 57% of the outcome updates were not HOT: a new version on another page
-- and a new entry in each of the five indexes. Measured with `shoudan bench --phases journal
-- --duration 40s` (the journal baseline, 128 in flight) on the 2-core machine:
--   fillfactor 80: 43-51% HOT, 1,918-2,036 B of WAL per transaction, 4,200-5,700/s;
--   fillfactor 50: 100% HOT, 1,529 B of WAL per transaction, 5,700-6,800/s.
-- The price is space: the heap stays half empty (1,368 B per transaction in a 40 s run against
-- 1,096 B at 80, where vacuum reuses the dead versions). The WAL, the CPU and the latency under
-- load are what the journal is short of today; the space is won back by an append-only outcome
-- (docs/journal.md, issue 13), not by a denser page.
CREATE OR REPLACE FUNCTION txn_ensure_partition(d date) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    name text := 'txn_p' || to_char(d, 'YYYYMMDD');
BEGIN
    IF to_regclass(name) IS NOT NULL THEN
        RETURN name;
    END IF;
    PERFORM pg_advisory_xact_lock(8584);
    -- Vacuum by absolute counts, not by a fraction of a table that grows all day; the insert
    -- threshold keeps the visibility map current (and freezes) while the day fills.
    BEGIN
        EXECUTE format('CREATE TABLE %I PARTITION OF txn FOR VALUES FROM (%L) TO (%L) WITH (fillfactor = 50,'
            ' autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 20000,'
            ' autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 200000,'
            ' autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 200000)', name, d, d + 1);
    EXCEPTION WHEN duplicate_table THEN
        NULL; -- another node made it first
    END;
    RETURN name;
END $$;

-- partitions that exist already (today's and those made ahead): new pages at 50
DO $$
DECLARE
    p record;
BEGIN
    FOR p IN SELECT inhrelid::regclass AS rel FROM pg_inherits WHERE inhparent = 'txn'::regclass AND inhrelid::regclass::text >= 'txn_p' || to_char(current_date, 'YYYYMMDD') LOOP
        EXECUTE format('ALTER TABLE %s SET (fillfactor = 50)', p.rel);
    END LOOP;
END $$;
