-- A journal that holds for a year (issue 13): txn becomes a table partitioned by day
-- (local_day), with compact rows.
--
--  * Partitions: txn_pYYYYMMDD, one per local_day, created ahead by the switch
--    (txn_ensure_partition) and detached + archived after journal.retention_days. Unique keys
--    include the partition key: the duplicate key (MID, TID, batch, STAN, MTI, day) and the
--    primary key (id, local_day).
--  * Ids carry their day: id = (local_day - 2000-01-01) * 10^12 + nextval('txn_id_seq'), so a
--    lookup by id alone (an outcome, an original, a queued reversal, the recovery floor) knows
--    its partition (txn_day(id)), and ids stay increasing with the day.
--  * Compact: no stored response (rebuilt from the columns and the retransmitted request;
--    the balance (F54) of an inquiry is a column), the passed checks as a bitmask (checks), the
--    request and PAN hashes truncated to 128 bits, the sealed reversal as packed ISO 8583
--    (new rows) and dropped once the transaction can no longer be reversed.
--
-- Rows already in txn are moved (re-numbered into the new id scheme; orig_id, saf.txn_id and any
-- other column with a foreign key to txn.id are re-mapped). All nodes must be stopped for it.

-- the acquirer checks in bit order (append only: a bit never changes meaning); the switch
-- keeps the same list (journal.CheckNames)
CREATE TABLE txn_check_names (bit int PRIMARY KEY, name text NOT NULL UNIQUE);
INSERT INTO txn_check_names (bit, name) SELECT i - 1, n FROM unnest(ARRAY['frame', 'terminal', 'signed-on', 'mac', 'device',
    'merchant-trading', 'merchant-english-name', 'mcc-matches', 'cash-mcc', 'qps-enabled', 'qps-whitelist', 'qps-limit',
    'void-original', 'refund-original', 'refund-allowed', 'refund-window', 'refund-amount']) WITH ORDINALITY AS t(n, i);

CREATE FUNCTION txn_day(id bigint) RETURNS date LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT date '2000-01-01' + (id / 1000000000000)::int $$;
CREATE FUNCTION txn_id_base(d date) RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT (d - date '2000-01-01')::bigint * 1000000000000 $$;

-- the partition of one day, created when missing (several nodes may ask at once)
CREATE FUNCTION txn_ensure_partition(d date) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    name text := 'txn_p' || to_char(d, 'YYYYMMDD');
BEGIN
    IF to_regclass(name) IS NOT NULL THEN
        RETURN name;
    END IF;
    PERFORM pg_advisory_xact_lock(8584);
    -- fillfactor 80: room on each page for the outcome update (HOT: no new index entries).
    -- Vacuum by absolute counts, not by a fraction of a table that grows all day; the insert
    -- threshold keeps the visibility map current (and freezes) while the day fills.
    BEGIN
        EXECUTE format('CREATE TABLE %I PARTITION OF txn FOR VALUES FROM (%L) TO (%L) WITH (fillfactor = 80,'
            ' autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 20000,'
            ' autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 200000,'
            ' autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 200000)', name, d, d + 1);
    EXCEPTION WHEN duplicate_table THEN
        NULL; -- another node made it first
    END;
    RETURN name;
END $$;

-- free the id sequence from the old table, which is dropped below
ALTER SEQUENCE txn_id_seq OWNED BY NONE;
ALTER TABLE txn RENAME TO txn_old;
ALTER INDEX txn_pkey RENAME TO txn_old_pkey;
ALTER TABLE txn_old RENAME CONSTRAINT txn_local_day_mid_tid_batch_stan_mti_key TO txn_old_key;
DROP INDEX IF EXISTS txn_rrn, txn_terminal, txn_batch, txn_merchant_day;

DO $$
DECLARE
    fk record;
BEGIN
    -- foreign keys into txn (saf.txn_id, txn.orig_id, and whatever else was added since) cannot
    -- point at a partitioned table's id alone: drop them; their values are re-mapped below
    CREATE TEMP TABLE txn_fk ON COMMIT DROP AS
        SELECT c.conrelid::regclass AS tbl, a.attname AS col, c.conname
        FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
        WHERE c.contype = 'f' AND c.confrelid = 'txn_old'::regclass AND array_length(c.conkey, 1) = 1;
    FOR fk IN SELECT * FROM txn_fk LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', fk.tbl, fk.conname);
    END LOOP;
END $$;

-- The new table: the old one's columns (including any added by later features), re-ordered
-- widest first so that rows carry no alignment padding, minus what the compact row drops.
DO $$
DECLARE
    cols text;
BEGIN
    SELECT string_agg(format('%I %s%s%s', a.attname, format_type(a.atttypid, a.atttypmod),
               CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END,
               CASE WHEN d.adbin IS NOT NULL AND a.attname <> 'id' THEN ' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid) ELSE '' END),
               ', ' ORDER BY CASE WHEN a.attlen = 8 THEN 0 WHEN a.attlen = 4 THEN 1 WHEN a.attlen > 0 THEN 2 ELSE 3 END, a.attnum)
    INTO cols
    FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE a.attrelid = 'txn_old'::regclass AND a.attnum > 0 AND NOT a.attisdropped
      AND a.attname NOT IN ('response', 'trace');
    EXECUTE 'CREATE TABLE txn (checks bigint NOT NULL DEFAULT 0, ' || cols || ', balance text) PARTITION BY RANGE (local_day)';
END $$;
ALTER TABLE txn ALTER COLUMN created_at SET DEFAULT now();
ALTER TABLE txn ADD PRIMARY KEY (id, local_day);
-- the duplicate key (rule 13), ordered so that it also serves a batch's totals, voids' and
-- reversals' originals and status queries by batch + STAN
ALTER TABLE txn ADD CONSTRAINT txn_key UNIQUE (mid, tid, batch, stan, mti, local_day);
CREATE INDEX txn_rrn ON txn (rrn);
CREATE INDEX txn_terminal ON txn (mid, tid, id);
-- a merchant's day, newest first (the console's pages; migration 0015)
CREATE INDEX txn_merchant_day ON txn (mid, local_day, id);

SELECT txn_ensure_partition(d) FROM (SELECT DISTINCT local_day AS d FROM txn_old) days;

-- old id → new id
CREATE TEMP TABLE txn_idmap ON COMMIT DROP AS SELECT id AS old_id, txn_id_base(local_day) + id AS new_id FROM txn_old;
CREATE UNIQUE INDEX ON txn_idmap (old_id);

DO $$
DECLARE
    cols text;
    vals text;
    fk record;
BEGIN
    SELECT string_agg(format('%I', a.attname), ', ' ORDER BY a.attnum),
           string_agg(CASE a.attname
               WHEN 'id' THEN 'txn_id_base(o.local_day) + o.id'
               WHEN 'orig_id' THEN '(SELECT m.new_id FROM txn_idmap m WHERE m.old_id = o.orig_id)'
               WHEN 'pan_hash' THEN 'substring(o.pan_hash FROM 1 FOR 16)'
               WHEN 'req_hash' THEN 'substring(o.req_hash FROM 1 FOR 16)'
               ELSE format('o.%I', a.attname) END, ', ' ORDER BY a.attnum)
    INTO cols, vals
    FROM pg_attribute a
    WHERE a.attrelid = 'txn_old'::regclass AND a.attnum > 0 AND NOT a.attisdropped AND a.attname NOT IN ('response', 'trace');
    EXECUTE 'INSERT INTO txn (' || cols || ', checks, balance) SELECT ' || vals || ','
        || ' coalesce((SELECT bit_or(1::bigint << c.bit) FROM unnest(string_to_array(o.trace, '','')) n JOIN txn_check_names c ON c.name = n), 0),'
        || ' nullif(o.response->>''Balance'', '''')'
        || ' FROM txn_old o';
    FOR fk IN SELECT * FROM txn_fk WHERE tbl <> 'txn_old'::regclass LOOP
        EXECUTE format('UPDATE %s t SET %I = m.new_id FROM txn_idmap m WHERE t.%I = m.old_id', fk.tbl, fk.col, fk.col);
    END LOOP;
    -- transaction ids kept without a foreign key (settlement's refund clearing)
    IF to_regclass('refund_clearing') IS NOT NULL THEN
        UPDATE refund_clearing t SET txn_id = m.new_id FROM txn_idmap m WHERE t.txn_id = m.old_id;
    END IF;
    -- back-office refunds (issue 16): their originals, outcomes and the notifier's cursor
    IF to_regclass('bo_refund') IS NOT NULL THEN
        UPDATE bo_refund t SET orig_id = m.new_id FROM txn_idmap m WHERE t.orig_id = m.old_id;
        UPDATE bo_refund t SET txn_id = m.new_id FROM txn_idmap m WHERE t.txn_id = m.old_id;
    END IF;
    IF to_regclass('notify_cursor') IS NOT NULL THEN
        UPDATE notify_cursor SET after = coalesce((SELECT max(new_id) FROM txn_idmap WHERE old_id <= after), after);
    END IF;
    -- and the issuer route each transaction took (issue 12)
    IF to_regclass('txn_route') IS NOT NULL THEN
        UPDATE txn_route t SET txn_id = m.new_id FROM txn_idmap m WHERE t.txn_id = m.old_id;
    END IF;
END $$;

DROP TABLE txn_old;
-- recovery floors are old ids: forget them (the next start scans every partition once)
DELETE FROM journal_floor;
