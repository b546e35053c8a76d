-- The auditor's read models (services/auditor/projections.py). Replaced as a whole in one
-- transaction per replay, so a reader never sees half a replay; rebuildable at any time
-- from the log. Supersedes the first audit_collectivites of 0004.
DROP VIEW IF EXISTS audit_outstanding_liabilities;
DROP TABLE IF EXISTS audit_collectivites;

CREATE TABLE audit_collectivites (
    siren                  text PRIMARY KEY,
    name                   text   NOT NULL,
    committed_cents        bigint NOT NULL,
    received_cents         bigint NOT NULL,
    fees_received_cents    bigint NOT NULL,
    activated_cents        bigint NOT NULL,
    issued_vouchers        bigint NOT NULL,
    issued_cents           bigint NOT NULL,
    activated_vouchers     bigint NOT NULL,
    redeemed_vouchers      bigint NOT NULL,
    redeemed_cents         bigint NOT NULL,
    outstanding_vouchers   bigint NOT NULL,
    outstanding_cents      bigint NOT NULL,
    blocked_vouchers       bigint NOT NULL,
    blocked_cents          bigint NOT NULL,
    expired_vouchers       bigint NOT NULL,
    expired_cents          bigint NOT NULL,
    inactive_vouchers      bigint NOT NULL,
    inactive_cents         bigint NOT NULL,
    redeemed_pic_vouchers  bigint NOT NULL,
    redeemed_pic_cents     bigint NOT NULL,
    booklets_issued        bigint NOT NULL,
    booklets_distributed   bigint NOT NULL,
    booklets_started       bigint NOT NULL
);

CREATE TABLE IF NOT EXISTS audit_venues (
    siret             text PRIMARY KEY,
    redeemed_vouchers bigint NOT NULL,
    redeemed_cents    bigint NOT NULL
);

-- Months are French calendar months (the settlement calendar).
CREATE TABLE IF NOT EXISTS audit_venue_months (
    siret             text   NOT NULL,
    month             text   NOT NULL,
    redeemed_vouchers bigint NOT NULL,
    redeemed_cents    bigint NOT NULL,
    PRIMARY KEY (siret, month)
);

CREATE TABLE IF NOT EXISTS audit_collectivite_months (
    siren              text   NOT NULL,
    month              text   NOT NULL,
    activated_vouchers bigint NOT NULL,
    activated_cents    bigint NOT NULL,
    redeemed_vouchers  bigint NOT NULL,
    redeemed_cents     bigint NOT NULL,
    PRIMARY KEY (siren, month)
);

CREATE TABLE IF NOT EXISTS audit_booklets (
    booklet_id         text PRIMARY KEY,
    siren              text    NOT NULL,
    order_id           text    NOT NULL,
    voucher_count      int     NOT NULL,
    face_value_cents   bigint  NOT NULL,
    target_group       text    NOT NULL,
    valid_until        date    NOT NULL,
    grace_until        date    NOT NULL,
    activated          boolean NOT NULL,
    blocked            boolean NOT NULL,
    distributed        boolean NOT NULL,
    redeemed_vouchers  int     NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_booklets_by_siren ON audit_booklets (siren);

CREATE TABLE IF NOT EXISTS audit_findings (
    code       text   NOT NULL,
    siren      text   NOT NULL,
    detail     text   NOT NULL,
    event_ids  text[] NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_findings_by_code ON audit_findings (code);

ALTER TABLE audit_runs ADD COLUMN IF NOT EXISTS as_of date;
ALTER TABLE audit_runs ADD COLUMN IF NOT EXISTS report jsonb;

-- What an auditor asks first.
CREATE OR REPLACE VIEW audit_outstanding_liabilities AS
    SELECT siren, name, outstanding_vouchers, outstanding_cents,
           received_cents - activated_cents AS unallocated_funds_cents
    FROM audit_collectivites ORDER BY outstanding_cents DESC;

CREATE OR REPLACE VIEW audit_venue_payments AS
    SELECT siret, month, redeemed_vouchers, redeemed_cents
    FROM audit_venue_months ORDER BY month, siret;

CREATE OR REPLACE VIEW audit_balance AS
    SELECT siren, issued_vouchers, issued_cents,
           redeemed_vouchers + outstanding_vouchers + blocked_vouchers + expired_vouchers
               + inactive_vouchers AS accounted_vouchers,
           redeemed_cents + outstanding_cents + blocked_cents + expired_cents
               + inactive_cents AS accounted_cents,
           activated_cents <= received_cents AS funded
    FROM audit_collectivites ORDER BY siren;

CREATE OR REPLACE VIEW audit_latest_run AS
    SELECT run_id, finished_at, as_of, event_count, duplicate_count, sound,
           jsonb_array_length(findings) AS finding_count
    FROM audit_runs ORDER BY run_id DESC LIMIT 1;
