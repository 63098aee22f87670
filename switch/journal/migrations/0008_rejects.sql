-- Requests that failed a check up to and including the MAC (protocol.md §7 rows 1-4: 30, 97, 77,
-- A0): answered, but they change no state, so they are not transactions and never take a
-- duplicate key in txn. Kept for operators (`shoudan rejects`), bounded by age and count (the
-- switch prunes it). Masked data only: no frame bytes, a PAN only as first 6 + last 4.
CREATE TABLE IF NOT EXISTS rejects (
    id         bigserial PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    env        text        NOT NULL,
    source     text        NOT NULL,           -- the sender's address (ip:port)
    kind       text        NOT NULL DEFAULT '', -- as identified, '' when the frame did not decode
    mti        text        NOT NULL DEFAULT '',
    mid        text        NOT NULL DEFAULT '', -- as claimed by the frame: unauthenticated
    tid        text        NOT NULL DEFAULT '',
    batch      text        NOT NULL DEFAULT '',
    stan       text        NOT NULL DEFAULT '',
    amount     bigint      NOT NULL DEFAULT 0,
    pan_masked text        NOT NULL DEFAULT '',
    code       text        NOT NULL,
    rule       text        NOT NULL,
    reason     text        NOT NULL,
    frame_len  int         NOT NULL DEFAULT 0,
    frame_hash bytea                            -- keyed hash of the bytes: matches a capture, reveals nothing
);
CREATE INDEX IF NOT EXISTS rejects_terminal ON rejects (tid, id DESC);
CREATE INDEX IF NOT EXISTS rejects_at ON rejects (at);
