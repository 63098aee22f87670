-- The operator code (F63.1) a transaction was taken under: the one the request carries, else the
-- one the terminal signed on with (sign-on 0800 carries it). A merchant operator in the console
-- sees only the transactions of their operator code. Constant defaults: no table rewrite.
ALTER TABLE txn ADD COLUMN IF NOT EXISTS operator text NOT NULL DEFAULT '';
ALTER TABLE terminal_state ADD COLUMN IF NOT EXISTS operator text NOT NULL DEFAULT '';
