-- Back-office refunds and voids, review, batch uploads, the merchant API and notifications to
-- merchant systems (issue 16, package switch/refunds). New tables only: txn is written through
-- the journal's own Insert (the outcome row of each refund) and its refunded column reserved.

-- merchant_backoffice: a merchant's back-office settings (not decision inputs of the terminal
-- path, and no YAML: callback URLs and keys are integration data of the merchant's systems).
CREATE TABLE IF NOT EXISTS merchant_backoffice (
    mid             text PRIMARY KEY,
    review          boolean NOT NULL DEFAULT false,  -- refunds are applications a reviewer decides
    totp_required   boolean NOT NULL DEFAULT false,  -- console refunds need the operator's dynamic password
    callbacks       text[]  NOT NULL DEFAULT '{}',   -- up to three URLs, tried in order
    notify_payments boolean NOT NULL DEFAULT false,  -- also notify approved purchases
    updated_at      timestamptz NOT NULL DEFAULT now(),
    updated_by      text NOT NULL DEFAULT '',
    CHECK (cardinality(callbacks) <= 3)
);

-- merchant_api_key: HMAC keys of the merchant API. The secret is needed to verify a signature,
-- so it is sealed under the journal key (never in clear); it is shown once, at creation.
CREATE TABLE IF NOT EXISTS merchant_api_key (
    key_id     text PRIMARY KEY,
    mid        text NOT NULL,
    secret_enc bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text NOT NULL DEFAULT '',
    revoked_at timestamptz
);
CREATE INDEX IF NOT EXISTS merchant_api_key_mid ON merchant_api_key (mid, created_at DESC);

-- api_nonce: nonces of signed requests within the accepted clock window (replays refused).
CREATE TABLE IF NOT EXISTS api_nonce (
    key_id text NOT NULL,
    nonce  text NOT NULL,
    at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (key_id, nonce)
);
CREATE INDEX IF NOT EXISTS api_nonce_at ON api_nonce (at);

-- refund_batch: an uploaded batch file, identified by the hash of its rows' content (a re-saved
-- or re-uploaded file with the same rows is the same batch). result: the per-row outcome.
CREATE TABLE IF NOT EXISTS refund_batch (
    id           bigserial PRIMARY KEY,
    mid          text NOT NULL,
    content_hash bytea NOT NULL,
    file_name    text NOT NULL DEFAULT '',
    uploaded_by  text NOT NULL,
    at           timestamptz NOT NULL DEFAULT now(),
    rows         int NOT NULL DEFAULT 0,
    result       jsonb,
    UNIQUE (mid, content_hash)
);

-- bo_refund: one back-office refund or void (an application in review mode) and, once accepted,
-- its upstream advice, stored sealed and forwarded until the issuer answers it (the same lease
-- mechanism as the reversal queue, saf).
CREATE TABLE IF NOT EXISTS bo_refund (
    id            bigserial PRIMARY KEY,
    mid           text NOT NULL,
    idem_key      text NOT NULL,          -- per merchant: form token, API out_refund_no, batch row
    kind          text NOT NULL CHECK (kind IN ('refund', 'void')),
    source        text NOT NULL CHECK (source IN ('console', 'api', 'batch')),
    batch_id      bigint REFERENCES refund_batch(id),
    orig_id       bigint NOT NULL,
    orig_rrn      text NOT NULL,
    orig_day      date NOT NULL,
    tid           text NOT NULL,
    amount        bigint NOT NULL CHECK (amount > 0),
    reason        text NOT NULL DEFAULT '',
    state         text NOT NULL CHECK (state IN ('applied', 'approved', 'rejected', 'sent', 'succeeded', 'failed')),
    applied_by    text NOT NULL,
    applied_by_id bigint,
    decided_by    text NOT NULL DEFAULT '',
    decided_by_id bigint,
    decided_at    timestamptz,
    note          text NOT NULL DEFAULT '',   -- the reviewer's note
    rrn           text NOT NULL DEFAULT '',   -- the refund's own RRN (F37), from acceptance on
    resp_code     text NOT NULL DEFAULT '',
    rule          text NOT NULL DEFAULT '',
    why           text NOT NULL DEFAULT '',   -- the decision in words
    auth_code     text NOT NULL DEFAULT '',
    txn_id        bigint,                     -- the journal row of the outcome
    accept_day    date,                       -- the local day it was accepted (its journal key)
    advice        bytea,                      -- sealed upstream 0220 / 0200
    next_at       timestamptz,
    attempts      int NOT NULL DEFAULT 0,
    last_error    text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (mid, idem_key)
);
CREATE INDEX IF NOT EXISTS bo_refund_due ON bo_refund (next_at) WHERE state = 'sent';
CREATE INDEX IF NOT EXISTS bo_refund_mid ON bo_refund (mid, id DESC);
CREATE INDEX IF NOT EXISTS bo_refund_orig ON bo_refund (orig_id);

-- bo_refund_event: the history of each refund (who did what, when).
CREATE TABLE IF NOT EXISTS bo_refund_event (
    id        bigserial PRIMARY KEY,
    refund_id bigint NOT NULL REFERENCES bo_refund(id),
    at        timestamptz NOT NULL DEFAULT now(),
    state     text NOT NULL,
    who       text NOT NULL,
    note      text NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS bo_refund_event_refund ON bo_refund_event (refund_id, id);

-- user_totp: a console user's enrolled authenticator (RFC 6238); the secret sealed.
CREATE TABLE IF NOT EXISTS user_totp (
    user_id      bigint PRIMARY KEY,
    secret_enc   bytea NOT NULL,
    confirmed_at timestamptz,
    last_step    bigint NOT NULL DEFAULT 0,   -- a code is accepted once
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- notification: a signed JSON notification to a merchant's system, delivered to its callback
-- URLs in order until one acknowledges it (2xx), retried on a persisted schedule until expiry.
-- event_key is unique: an event is notified once however often its cause is processed.
CREATE TABLE IF NOT EXISTS notification (
    id            bigserial PRIMARY KEY,
    mid           text NOT NULL,
    event_key     text NOT NULL UNIQUE,
    event         text NOT NULL,              -- refund.succeeded, refund.failed, refund.rejected, payment.approved
    payload       text NOT NULL,              -- the JSON body as signed
    state         text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'expired')),
    rounds        int NOT NULL DEFAULT 0,     -- passes over the URL list
    next_at       timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    delivered_at  timestamptz,
    delivered_url text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS notification_due ON notification (next_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS notification_mid ON notification (mid, id DESC);

CREATE TABLE IF NOT EXISTS notification_attempt (
    id              bigserial PRIMARY KEY,
    notification_id bigint NOT NULL REFERENCES notification(id),
    at              timestamptz NOT NULL DEFAULT now(),
    url             text NOT NULL,
    status          int NOT NULL DEFAULT 0,   -- HTTP status (0: no answer)
    error           text NOT NULL DEFAULT '',
    ms              int NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS notification_attempt_n ON notification_attempt (notification_id, id);

-- notify_cursor: the payment notifier's position in txn (approved purchases of opted-in merchants).
CREATE TABLE IF NOT EXISTS notify_cursor (
    name  text PRIMARY KEY,
    after bigint NOT NULL
);
