-- The auditor's read models: replaced as a whole, in one transaction per replay, so that a
-- reader never sees half a replay. Rebuildable at any time from the log.
CREATE TABLE IF NOT EXISTS audit_runs (
    run_id          bigserial PRIMARY KEY,
    finished_at     timestamptz NOT NULL DEFAULT now(),
    event_count     bigint NOT NULL,
    duplicate_count bigint NOT NULL,
    sound           boolean NOT NULL,
    findings        jsonb NOT NULL
);

CREATE TABLE IF NOT EXISTS audit_collectivites (
    siren                 text PRIMARY KEY,
    received_cents        bigint NOT NULL,
    activated_cents       bigint NOT NULL,
    issued_vouchers       bigint NOT NULL,
    issued_cents          bigint NOT NULL,
    activated_vouchers    bigint NOT NULL,
    redeemed_vouchers     bigint NOT NULL,
    redeemed_cents        bigint NOT NULL,
    blocked_vouchers      bigint NOT NULL,
    blocked_cents         bigint NOT NULL,
    outstanding_vouchers  bigint NOT NULL,
    outstanding_cents     bigint NOT NULL
);

CREATE OR REPLACE VIEW audit_outstanding_liabilities AS
    SELECT siren, outstanding_vouchers, outstanding_cents,
           received_cents - activated_cents AS unallocated_funds_cents
    FROM audit_collectivites ORDER BY outstanding_cents DESC;
