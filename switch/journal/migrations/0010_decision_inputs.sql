-- The inputs of the acquirer checks that read the config (protocol §7 rows 2-12 and 18-20), kept
-- with every transaction so that `shoudan whatif` can re-decide it under a draft config. The rest
-- (entry mode, amount, terminal, merchant, kind) was already journaled. No card secrets:
-- req_mcc is F18 as sent, has_pin only says whether F52 was present, dev_* come from F59 A2.
ALTER TABLE txn ADD COLUMN IF NOT EXISTS req_mcc    text    NOT NULL DEFAULT '';
ALTER TABLE txn ADD COLUMN IF NOT EXISTS has_pin    boolean NOT NULL DEFAULT false;
ALTER TABLE txn ADD COLUMN IF NOT EXISTS dev_serial text    NOT NULL DEFAULT '';
ALTER TABLE txn ADD COLUMN IF NOT EXISTS dev_sdk    text    NOT NULL DEFAULT '';
-- the device check value (A2 tag 04): '' none sent, G verified good, B verified bad, ? sent but not
-- verified (an earlier check declined), - A2 missing or malformed
ALTER TABLE txn ADD COLUMN IF NOT EXISTS dev_check  text    NOT NULL DEFAULT '';
