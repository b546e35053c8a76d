-- Redeemer state. `redeemer_booklets` is a projection of the issuer's booklet facts that
-- only ever moves forward (insert if absent, flags that only turn on), so duplicated or
-- re-published issuer events are harmless.
CREATE TABLE IF NOT EXISTS redeemer_booklets (
    booklet_id        text PRIMARY KEY,
    siren             text    NOT NULL,
    voucher_count     int     NOT NULL,
    face_value_cents  bigint  NOT NULL,
    perimeter         text[]  NOT NULL,
    valid_from        date    NOT NULL,
    valid_until       date    NOT NULL,
    grace_until       date    NOT NULL,
    activated         boolean NOT NULL DEFAULT false,
    blocked           boolean NOT NULL DEFAULT false
);

-- One row per redeemed voucher. The primary key is the last line of defence against a
-- double redemption: even a bug in the decider cannot insert a second row.
CREATE TABLE IF NOT EXISTS redemptions (
    voucher_id        text PRIMARY KEY,
    booklet_id        text        NOT NULL,
    siren             text        NOT NULL,
    siret             text        NOT NULL,
    face_value_cents  bigint      NOT NULL,
    redeemed_at       timestamptz NOT NULL,
    event_id          text        NOT NULL UNIQUE,
    settlement_month  text
);
CREATE INDEX IF NOT EXISTS redemptions_by_booklet ON redemptions (booklet_id);
CREATE INDEX IF NOT EXISTS redemptions_by_siret ON redemptions (siret, redeemed_at);

CREATE TABLE IF NOT EXISTS providers (
    siret         text PRIMARY KEY,
    name          text NOT NULL,
    iban          text NOT NULL,
    address_code  text NOT NULL,
    status        text NOT NULL
);
