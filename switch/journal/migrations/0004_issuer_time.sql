-- How long the issuer took to answer this transaction (microseconds; NULL when it never went
-- upstream). With the terminal's round trip it gives the time the switch itself added.
ALTER TABLE txn ADD COLUMN IF NOT EXISTS issuer_us bigint;
