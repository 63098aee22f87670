-- An append-only journal (issue 13). A transaction was one row written twice: the write-ahead
-- INSERT, then the outcome UPDATE of the whole 470-byte row a few milliseconds later. To keep
-- that update HOT the partitions were packed at fillfactor 50, so the heap stayed half empty
-- (about 1,180 B of heap per transaction for a 470 B row), and every outcome left a dead
-- version for vacuum. Now nothing is written twice:
--
--  * txn_request (the old txn table, renamed; partitions txn_pYYYYMMDD) is the write-ahead
--    record, INSERTed once and never updated, packed at fillfactor 100. A request decided by
--    the switch (a decline, a duplicate answer) is written whole there and has no outcome row.
--  * txn_outcome (partitions txn_oYYYYMMDD) is what happened after: one small row per
--    transaction that went on (the issuer's answer, a timeout), and what changes later (voided,
--    reversed, refunded). Every column but the key may be NULL: NULL is "as the request row
--    says".
--  * txn_reversal (partitions txn_rYYYYMMDD) holds the sealed prepared reversal while it can
--    still be needed; it is DELETEd when the transaction can no longer be reversed (declined,
--    reversed, the reversal acknowledged, the batch settled), so a year of history carries
--    none of them.
--  * txn is a view joining the three, with the columns txn always had: readers do not change.
--    The commonest values are written as NULL and shown by the view: the decision of a request
--    that passed every check (journal.PassedRule), the reason of an issuer's approval
--    (journal.IssuerApproved), a request row's updated_at and refunded (the outcome's).
--
-- All nodes must be stopped for it: an older switch writes txn as a table, which is now a view.
--
-- Measured with `shoudan bench --phases journal,journal-append` (the same group commit, HOT
-- update against append-only): append-only wrote 1,348 B of WAL per transaction against 1,525,
-- left no dead tuples and ran 9% faster (docs/journal.md).

ALTER TABLE txn RENAME TO txn_request;

CREATE TABLE txn_outcome (
    id            bigint NOT NULL,
    local_day     date NOT NULL,
    at            timestamptz,      -- updated_at
    refunded      bigint,
    issuer_us     bigint,
    via           smallint,
    went_upstream boolean,
    state         character(1),
    resp_code     text,
    issuer_code   text,
    auth_code     text,
    rule          text,
    reason        text,
    balance       text,
    PRIMARY KEY (id, local_day)
) PARTITION BY RANGE (local_day);

CREATE TABLE txn_reversal (
    id        bigint NOT NULL,
    local_day date NOT NULL,
    sealed    bytea NOT NULL,
    PRIMARY KEY (id, local_day)
) PARTITION BY RANGE (local_day);

-- the three partitions of one day, created when missing (several nodes may ask at once)
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
            ' autovacuum_analyze_scale_factor = 0.05, autovacuum_analyze_threshold = 1000)', name, d, d + 1);
    EXCEPTION WHEN duplicate_table THEN
        NULL;
    END;
    BEGIN
        EXECUTE format('CREATE TABLE %I PARTITION OF txn_outcome FOR VALUES FROM (%L) TO (%L) WITH (fillfactor = 100,'
            ' autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 20000,'
            ' autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 200000,'
            ' autovacuum_analyze_scale_factor = 0.05, autovacuum_analyze_threshold = 1000)', 'txn_o' || day, d, d + 1);
    EXCEPTION WHEN duplicate_table THEN
        NULL;
    END;
    -- deleted from as reversals stop being needed: vacuum often, it is small
    BEGIN
        EXECUTE format('CREATE TABLE %I PARTITION OF txn_reversal FOR VALUES FROM (%L) TO (%L) WITH ('
            ' autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 20000,'
            ' autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 200000,'
            ' autovacuum_analyze_scale_factor = 0.05, autovacuum_analyze_threshold = 1000)', 'txn_r' || day, d, d + 1);
    EXCEPTION WHEN duplicate_table THEN
        NULL;
    END;
    RETURN name;
END $$;

-- an outcome and a reversal partition for every day the journal has (restored days included)
DO $$
DECLARE
    p record;
BEGIN
    FOR p IN SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = 'txn_request'::regclass LOOP
        IF p.relname ~ '^txn_p[0-9]{8}$' THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF txn_outcome %s', 'txn_o' || substr(p.relname, 6), p.bound);
            EXECUTE format('CREATE TABLE %I PARTITION OF txn_reversal %s', 'txn_r' || substr(p.relname, 6), p.bound);
        END IF;
    END LOOP;
END $$;

INSERT INTO txn_reversal (id, local_day, sealed) SELECT id, local_day, reversal FROM txn_request WHERE reversal IS NOT NULL;
ALTER TABLE txn_request DROP COLUMN reversal;
-- the decision of a request that passed every check and went upstream is written as NULL (the
-- view shows it; journal.PassedRule): 43 bytes less in most request rows
ALTER TABLE txn_request ALTER COLUMN rule DROP NOT NULL, ALTER COLUMN reason DROP NOT NULL;
-- and what a request row never knows when it is written (the outcome says it): NULL
ALTER TABLE txn_request ALTER COLUMN updated_at DROP NOT NULL, ALTER COLUMN updated_at DROP DEFAULT,
    ALTER COLUMN refunded DROP NOT NULL, ALTER COLUMN refunded DROP DEFAULT;

-- today's and the days ahead: new pages packed full, analysed early (txn_ensure_partition)
DO $$
DECLARE
    p record;
BEGIN
    FOR p IN SELECT inhrelid::regclass AS rel FROM pg_inherits WHERE inhparent = 'txn_request'::regclass
            AND inhrelid::regclass::text >= 'txn_p' || to_char(current_date, 'YYYYMMDD') LOOP
        EXECUTE format('ALTER TABLE %s SET (fillfactor = 100, autovacuum_analyze_scale_factor = 0.05, autovacuum_analyze_threshold = 1000)', p.rel);
    END LOOP;
END $$;

-- The transaction as it stands. The outcome is joined on its primary key; the reversal is a
-- subquery, computed only for a reader that selects it (PostgreSQL 15 does not remove an unused
-- outer join to a partitioned table, so a reader of request columns alone, max(id) for one,
-- reads txn_request).
CREATE VIEW txn AS
SELECT w.checks, w.id, w.created_at, coalesce(o.at, w.updated_at, w.created_at) AS updated_at, w.amount, w.orig_id,
       coalesce(o.refunded, w.refunded, 0) AS refunded, coalesce(o.issuer_us, w.issuer_us) AS issuer_us,
       w.local_day, w.settle_date, coalesce(o.went_upstream, w.went_upstream) AS went_upstream, w.has_pin,
       w.env, w.mid, w.tid, w.batch, w.stan, w.mti, w.kind, w.proc_code, w.entry_mode, w.type_code,
       w.pan_masked, w.pan_hash, w.card_org, w.mcc, w.rrn,
       coalesce(o.auth_code, w.auth_code) AS auth_code, coalesce(o.resp_code, w.resp_code) AS resp_code,
       coalesce(o.issuer_code, w.issuer_code) AS issuer_code, w.up_trace, w.up_time,
       coalesce(o.state, w.state) AS state,
       coalesce(o.rule, w.rule, 'acquirer-checks') AS rule,
       coalesce(o.reason, CASE WHEN o.rule = 'issuer' THEN 'issuer answered Approved' END, w.reason, 'passed every acquirer check') AS reason,
       w.req_hash, (SELECT r.sealed FROM txn_reversal r WHERE r.id = w.id AND r.local_day = w.local_day) AS reversal, w.operator, w.req_mcc, w.dev_serial, w.dev_sdk, w.dev_check,
       coalesce(o.balance, w.balance) AS balance, coalesce(o.via, w.via) AS via
FROM txn_request w
LEFT JOIN txn_outcome o ON o.id = w.id AND o.local_day = w.local_day;
