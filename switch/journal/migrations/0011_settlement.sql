-- Settlement (package switch/settlement). Its own tables: txn is only read.
-- settle_day: one row per settlement date being or having been closed, with the terms it was
-- closed under (so a re-run after a crash computes exactly what the first run did).
CREATE TABLE IF NOT EXISTS settle_day (
    settle_date date PRIMARY KEY,
    state       text NOT NULL CHECK (state IN ('running', 'closed')),
    snapshot    jsonb NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    closed_at   timestamptz,
    txns        bigint NOT NULL DEFAULT 0,
    merchants   int NOT NULL DEFAULT 0,
    takings     bigint NOT NULL DEFAULT 0,
    fees        bigint NOT NULL DEFAULT 0,
    refunds     bigint NOT NULL DEFAULT 0,
    paid        bigint NOT NULL DEFAULT 0
);

-- settle_merchant: a merchant's settlement of one date, written in the same transaction as
-- every balance movement it causes: it exists (complete) or not at all.
CREATE TABLE IF NOT EXISTS settle_merchant (
    settle_date     date NOT NULL REFERENCES settle_day,
    mid             text NOT NULL,
    grp             text NOT NULL DEFAULT '',   -- 集团号 at the close
    fee_group       text NOT NULL DEFAULT '',
    rate_ppm        bigint NOT NULL,
    cap             bigint NOT NULL,
    cycle           text NOT NULL,
    payout_date     date NOT NULL,
    purchases       int NOT NULL, purchase_amount bigint NOT NULL,
    voids           int NOT NULL, void_amount bigint NOT NULL,
    reversals       int NOT NULL, reversal_amount bigint NOT NULL,  -- signed: -purchase, +void reversed
    refunds         int NOT NULL, refund_amount bigint NOT NULL,    -- refunds of this date (cleared or pending)
    takings         bigint NOT NULL,  -- purchases - voids + reversal_amount
    fee             bigint NOT NULL,  -- net fee (voided and reversed purchases' fees returned)
    credit          bigint NOT NULL,  -- takings - fee: what this date adds to the balance
    refunds_cleared bigint NOT NULL,  -- refunds (of any date) cleared at this close
    refunds_pending bigint NOT NULL,  -- refunds still waiting after this close
    paid            bigint NOT NULL,  -- pay-outs instructed at this close
    unpaid          bigint NOT NULL,  -- what is left of this credit (refunds and pay-outs take it oldest first)
    balance_after   bigint NOT NULL,
    frozen_after    bigint NOT NULL,
    closed_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (settle_date, mid)
);
CREATE INDEX IF NOT EXISTS settle_merchant_unpaid ON settle_merchant (mid, settle_date) WHERE unpaid <> 0;

-- merchant_account: the balance of settled, unpaid funds and the frozen part of it.
CREATE TABLE IF NOT EXISTS merchant_account (
    mid        text PRIMARY KEY,
    balance    bigint NOT NULL DEFAULT 0,   -- settled, not paid out, not taken by refunds
    frozen     bigint NOT NULL DEFAULT 0,   -- sum of active holds
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- refund_clearing: every approved refund, pending until the available balance covers it.
CREATE TABLE IF NOT EXISTS refund_clearing (
    txn_id      bigint PRIMARY KEY,
    mid         text NOT NULL,
    settle_date date NOT NULL,
    at          timestamptz NOT NULL,
    rrn         text NOT NULL,
    amount      bigint NOT NULL,
    state       text NOT NULL CHECK (state IN ('pending', 'cleared')),
    cleared_on  date,
    cleared_by  text NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS refund_clearing_pending ON refund_clearing (mid, at, txn_id) WHERE state = 'pending';

-- payout: a pay-out instruction of (part of) one credit. made_by is the close ('close:DATE') or
-- the release ('release:ID') that made it; unique, so nothing is paid twice.
CREATE TABLE IF NOT EXISTS payout (
    id          bigserial PRIMARY KEY,
    mid         text NOT NULL,
    credit_date date NOT NULL,
    value_date  date NOT NULL,
    amount      bigint NOT NULL,
    made_by     text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (mid, credit_date, made_by)
);
CREATE INDEX IF NOT EXISTS payout_value ON payout (value_date, mid);

-- fund_hold: frozen funds (risk hold), released by an acquirer operator.
CREATE TABLE IF NOT EXISTS fund_hold (
    id             bigserial PRIMARY KEY,
    mid            text NOT NULL,
    amount         bigint NOT NULL CHECK (amount > 0),
    reason         text NOT NULL,
    created_by     text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    released_by    text,
    released_at    timestamptz,
    release_reason text
);

-- balance_entry: every movement of a merchant balance, with the balance after it.
CREATE TABLE IF NOT EXISTS balance_entry (
    id            bigserial PRIMARY KEY,
    mid           text NOT NULL,
    at            timestamptz NOT NULL DEFAULT now(),
    kind          text NOT NULL,   -- credit, refund, payout, freeze, release
    amount        bigint NOT NULL, -- signed effect on the balance (freeze/release: on frozen)
    ref           text NOT NULL,
    balance_after bigint NOT NULL,
    frozen_after  bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS balance_entry_mid ON balance_entry (mid, id);

-- recon_diff: the differences of the last reconciliation of each date with the issuer's file.
CREATE TABLE IF NOT EXISTS recon_diff (
    settle_date date NOT NULL,
    kind        text NOT NULL,   -- issuer_only, journal_only, amount_differs
    rrn         text NOT NULL,
    stan        text NOT NULL DEFAULT '',
    up_trace    text NOT NULL DEFAULT '',
    mid         text NOT NULL DEFAULT '',
    tid         text NOT NULL DEFAULT '',
    txn_kind    text NOT NULL DEFAULT '',
    journal_amount bigint,
    issuer_amount  bigint,
    found_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS recon_diff_date ON recon_diff (settle_date);

-- batch_mismatch: 0320 batch-upload items that do not match the journal (差错 handling).
CREATE TABLE IF NOT EXISTS batch_mismatch (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    mid         text NOT NULL,
    tid         text NOT NULL,
    batch       text NOT NULL,
    stan        text NOT NULL,
    kind        text NOT NULL,   -- missing, amount, card
    uploaded_amount bigint NOT NULL,
    journal_amount  bigint,
    pan_masked  text NOT NULL DEFAULT '',
    UNIQUE (mid, tid, batch, stan, kind)
);

-- the merchant group (集团号) of the registry: merchants of one group get a group statement
ALTER TABLE merchant ADD COLUMN IF NOT EXISTS grp text NOT NULL DEFAULT '';
