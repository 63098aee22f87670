-- Zone PIN keys sent to the issuers by key changes (issue 17): `shoudan keys rotate-zpk` or
-- issuer.zpk_rotation. A row is written only after every reachable issuer endpoint accepted the
-- key, and the switch's nodes take the newest row as the key they translate PIN blocks to. Both
-- key columns are wrapped (block: under the security module's KEK; under_zmk: under the zone
-- master key, what a connection sends the issuer after signing on), never clear. base names the
-- issuer.zone_key (the key agreed out of band by a ceremony) the rotations started from: a new
-- ceremony starts the chain again at index 0.
CREATE TABLE zone_key (
    id        bigserial PRIMARY KEY,
    key_index smallint NOT NULL CHECK (key_index BETWEEN 1 AND 99),
    kcv       text NOT NULL,
    block     text NOT NULL,
    under_zmk bytea NOT NULL,
    base      text NOT NULL,
    node      text NOT NULL,
    at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX zone_key_base ON zone_key (base, id DESC);
