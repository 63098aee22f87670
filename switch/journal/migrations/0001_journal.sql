-- The transaction journal. Card data rules: no PIN block, track, CVV or full ICC data is ever
-- stored; a PAN is kept masked (first 6 + last 4) plus a keyed hash for lookups, and encrypted
-- only where a reversal must carry it upstream (saf.payload).
CREATE SEQUENCE rrn_seq;

CREATE TABLE txn (
    id           bigserial PRIMARY KEY,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    local_day    date        NOT NULL,          -- duplicate detection day
    settle_date  date        NOT NULL,
    env          text        NOT NULL,
    mid          text        NOT NULL,
    tid          text        NOT NULL,
    batch        text        NOT NULL,
    stan         text        NOT NULL,
    mti          text        NOT NULL,
    kind         text        NOT NULL,
    proc_code    text        NOT NULL DEFAULT '',
    amount       bigint      NOT NULL DEFAULT 0,
    entry_mode   text        NOT NULL DEFAULT '',
    type_code    text        NOT NULL DEFAULT '',  -- 60.1
    pan_masked   text        NOT NULL DEFAULT '',
    pan_hash     bytea,
    card_org     text        NOT NULL DEFAULT '',
    mcc          text        NOT NULL DEFAULT '',
    rrn          text        NOT NULL DEFAULT lpad(nextval('rrn_seq')::text, 12, '0'),
    auth_code    text        NOT NULL DEFAULT '',
    resp_code    text        NOT NULL DEFAULT '',
    issuer_code  text        NOT NULL DEFAULT '',
    up_trace     text        NOT NULL DEFAULT '',   -- upstream F11 and F7, for F90 of voids and reversals
    up_time      text        NOT NULL DEFAULT '',
    -- P pending (write-ahead, at the issuer), A approved, D declined, V voided, R reversed,
    -- T timed out at the issuer (reversal queued)
    state        char(1)     NOT NULL,
    went_upstream boolean    NOT NULL DEFAULT false,
    rule         text        NOT NULL DEFAULT '',
    reason       text        NOT NULL DEFAULT '',
    req_hash     bytea       NOT NULL,
    response     jsonb,
    orig_id      bigint REFERENCES txn(id),
    refunded     bigint      NOT NULL DEFAULT 0,
    UNIQUE (local_day, mid, tid, batch, stan, mti)
);
CREATE UNIQUE INDEX txn_rrn ON txn (rrn);
CREATE INDEX txn_terminal ON txn (mid, tid, id DESC);
CREATE INDEX txn_batch ON txn (mid, tid, batch);
CREATE INDEX txn_pending ON txn (state) WHERE state IN ('P', 'T');

-- Dynamic terminal state: sign-on, current batch and working keys (encrypted under the
-- journal's key-encryption key, never in clear).
CREATE TABLE terminal_state (
    mid          text NOT NULL,
    tid          text NOT NULL,
    batch        text NOT NULL,
    signed_on    boolean NOT NULL,
    keys_enc     bytea,
    signed_on_at timestamptz,
    PRIMARY KEY (mid, tid)
);

-- Store-and-forward queue of upstream reversals (0420).
CREATE TABLE saf (
    id         bigserial PRIMARY KEY,
    txn_id     bigint NOT NULL UNIQUE REFERENCES txn(id),
    created_at timestamptz NOT NULL DEFAULT now(),
    next_at    timestamptz NOT NULL DEFAULT now(),
    attempts   int NOT NULL DEFAULT 0,
    acked_at   timestamptz,
    last_error text NOT NULL DEFAULT '',
    payload    bytea NOT NULL           -- encrypted upstream reversal data
);
CREATE INDEX saf_due ON saf (next_at) WHERE acked_at IS NULL;
