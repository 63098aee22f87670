-- One statement of write-ahead per transaction. The switch assigns RRNs itself, from blocks of
-- 1000 taken from rrn_block (one round trip per block, unique across nodes), so the write-ahead
-- row can carry the sealed reversal that would undo the request, which includes the RRN (F37).
CREATE SEQUENCE IF NOT EXISTS rrn_block;
SELECT setval('rrn_block', (SELECT coalesce(max(rrn::bigint), 0) FROM txn WHERE rrn ~ '^[0-9]{1,15}$') / 1000 + 1, false);
ALTER TABLE txn ALTER COLUMN rrn DROP DEFAULT;

-- The prepared (dormant) reversal now lives on its transaction; arming it copies it into saf.
ALTER TABLE txn ADD COLUMN IF NOT EXISTS reversal bytea;   -- sealed upstream 0420, never in clear
UPDATE txn SET reversal = saf.payload FROM saf WHERE saf.txn_id = txn.id AND saf.next_at = 'infinity';
DELETE FROM saf WHERE next_at = 'infinity';
