-- the acquirer checks a transaction passed, in order, before the rule that decided it: what
-- `shoudan explain` prints
ALTER TABLE txn ADD COLUMN IF NOT EXISTS trace text NOT NULL DEFAULT '';
