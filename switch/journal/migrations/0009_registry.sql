-- The merchant and terminal registry: the one source of truth every switch node reads. Each
-- node holds an immutable snapshot built from these tables and rebuilds it when a change commits
-- (NOTIFY registry, payload the new version); the snapshot is safe to lose. Changes come from
-- the registry API (console, `shoudan terminals`) and from imports of the config file.
CREATE TABLE IF NOT EXISTS registry_change (
    version  bigserial PRIMARY KEY,          -- the registry's version after this change
    at       timestamptz NOT NULL DEFAULT now(),
    who      text NOT NULL,                  -- console user, "file /path", "cli import FILE"
    changes  text[] NOT NULL                 -- in words; never a key
);

CREATE TABLE IF NOT EXISTS registry_rules (
    singleton          boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    cash_mccs          text[] NOT NULL,
    qps_limit          bigint NOT NULL,      -- fen
    min_sdk_version    text NOT NULL,
    refund_window_days int NOT NULL
);

CREATE TABLE IF NOT EXISTS merchant (
    mid            text PRIMARY KEY,
    name           text NOT NULL DEFAULT '',
    name_en        text NOT NULL DEFAULT '',
    mcc            text NOT NULL,
    enabled        boolean NOT NULL,
    direct         boolean NOT NULL,          -- 直联 configured
    qps            boolean NOT NULL,          -- 小额双免 enabled
    qps_limit      bigint,                    -- fen; NULL: registry_rules.qps_limit
    qps_registered date,                      -- 双免 whitelist registration, effective the next day
    refund         boolean NOT NULL,
    acquirer       text NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Terminal master keys are sealed under the journal key (AES-GCM, like terminal_state's working
-- keys), never stored in clear.
CREATE TABLE IF NOT EXISTS terminal (
    mid        text NOT NULL REFERENCES merchant(mid),
    tid        text NOT NULL,
    env        text NOT NULL,
    serial     text NOT NULL,
    tmk_enc    bytea NOT NULL,
    qps        boolean NOT NULL,
    enabled    boolean NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mid, tid)
);
CREATE INDEX IF NOT EXISTS terminal_tid ON terminal (tid);

-- load_terminals: generated terminals for `shoudan pos load` (one row, not one per terminal).
CREATE TABLE IF NOT EXISTS terminal_load (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    count     int NOT NULL,
    mid       text NOT NULL,
    env       text NOT NULL,
    tmk_enc   bytea NOT NULL,
    qps       boolean NOT NULL
);

-- The registry sections of the config file as last imported (TMKs sealed): a file edit imports
-- only what differs from this, so it never undoes changes made through the API.
CREATE TABLE IF NOT EXISTS registry_import (
    source  text PRIMARY KEY,                -- 'config file'
    spec    jsonb NOT NULL,
    version bigint NOT NULL,
    at      timestamptz NOT NULL DEFAULT now()
);
