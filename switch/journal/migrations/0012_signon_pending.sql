-- A sign-on (0800) carries no MAC, so it no longer replaces a terminal's keys: it is pending until
-- the terminal's first request MACed with the new keys proves it holds them (issue 18). Only the
-- newest few per terminal are kept. Keys sealed under the journal key, never in clear.
CREATE TABLE IF NOT EXISTS signon_pending (
    id        bigserial PRIMARY KEY,
    mid       text        NOT NULL,
    tid       text        NOT NULL,
    batch     text        NOT NULL,
    keys_enc  bytea       NOT NULL,
    operator  text        NOT NULL DEFAULT '',
    source    text        NOT NULL,           -- the address the sign-on came from
    at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS signon_pending_terminal ON signon_pending (mid, tid, id DESC);
-- the address of the request that proved the current keys: a sign-off is honoured from there
ALTER TABLE terminal_state ADD COLUMN IF NOT EXISTS proven_from text NOT NULL DEFAULT '';
