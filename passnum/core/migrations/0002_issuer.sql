-- Issuer state: one row per collectivité envelope, one row per booklet. This is processor
-- state, rebuildable from the issuer's events; the log stays the source of truth.
CREATE TABLE IF NOT EXISTS issuer_envelopes (
    siren   text PRIMARY KEY,
    state   jsonb NOT NULL
);

CREATE TABLE IF NOT EXISTS issuer_booklets (
    booklet_id        text PRIMARY KEY,
    siren             text   NOT NULL,
    sequence          int    NOT NULL,
    order_id          text   NOT NULL,
    voucher_count     int    NOT NULL,
    face_value_cents  bigint NOT NULL,
    status            text   NOT NULL,
    activated         boolean NOT NULL DEFAULT false,
    distributor       text,
    beneficiary_reference text
);
CREATE INDEX IF NOT EXISTS issuer_booklets_by_siren ON issuer_booklets (siren, sequence);
