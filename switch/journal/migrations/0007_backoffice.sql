-- The back office's users, their sessions and the audit log (PCI DSS 8 and 10). Passwords are
-- argon2id hashes (PHC string); a session is kept as the SHA-256 of its cookie token, never the
-- token itself.
CREATE TABLE IF NOT EXISTS console_user (
    id            bigserial PRIMARY KEY,
    login         text NOT NULL UNIQUE,
    name          text NOT NULL DEFAULT '',
    role          text NOT NULL CHECK (role IN ('acquirer_admin', 'acquirer_ops', 'merchant_admin', 'merchant_operator', 'refund_reviewer')),
    mid           text NOT NULL DEFAULT '',        -- '' for the acquirer's roles
    tids          text[] NOT NULL DEFAULT '{}',    -- merchant operator: assigned terminals ('{}': all of the merchant's)
    operator      text NOT NULL DEFAULT '',        -- merchant operator: F63.1 operator code ('': any)
    pw_hash       text NOT NULL,
    disabled      boolean NOT NULL DEFAULT false,
    failed        int NOT NULL DEFAULT 0,          -- consecutive failed logins
    locked_until  timestamptz,
    pw_changed_at timestamptz NOT NULL DEFAULT now(),
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text NOT NULL DEFAULT '',
    CHECK ((role LIKE 'acquirer_%') = (mid = ''))
);

CREATE TABLE IF NOT EXISTS console_session (
    token_hash bytea PRIMARY KEY,
    user_id    bigint NOT NULL REFERENCES console_user(id) ON DELETE CASCADE,
    csrf       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    seen_at    timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,               -- absolute expiry; idle expiry is seen_at + idle
    ip         text NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS console_session_user ON console_session (user_id);

CREATE TABLE IF NOT EXISTS audit_log (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    login   text NOT NULL,           -- who (as typed, for a failed login)
    user_id bigint,
    mid     text NOT NULL DEFAULT '', -- the merchant the actor belongs to ('' = acquirer)
    action  text NOT NULL,            -- login, login_failed, logout, export, config_change, password_change, user_add, ...
    detail  text NOT NULL DEFAULT '', -- what (never a password, PAN or key)
    ip      text NOT NULL DEFAULT '', -- from where
    ok      boolean NOT NULL DEFAULT true
);
CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (at DESC);
