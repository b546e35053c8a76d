-- Settlement (services/redeemer/settlement.py). Closing a month marks every redemption it
-- pays (`redemptions.settlement_month`) in the same transaction as these rows, the outbox
-- rows of its events and the position of the command: a redemption is paid exactly once.
CREATE TABLE IF NOT EXISTS settlement_months (
    month             text PRIMARY KEY,
    closed_at         timestamptz NOT NULL,  -- the command's occurred_at
    event_id          text        NOT NULL UNIQUE,
    statement_count   int         NOT NULL,
    voucher_count     bigint      NOT NULL,
    face_value_cents  bigint      NOT NULL
);

-- One row per statement event (a very busy venue gets several parts in one month).
CREATE TABLE IF NOT EXISTS settlement_statements (
    event_id              text PRIMARY KEY,
    month                 text        NOT NULL REFERENCES settlement_months (month),
    siret                 text        NOT NULL,
    part                  int         NOT NULL,
    voucher_count         int         NOT NULL,
    face_value_cents      bigint      NOT NULL,
    redemption_event_ids  text[]      NOT NULL,
    issued_at             timestamptz NOT NULL,
    UNIQUE (month, siret, part)
);
CREATE INDEX IF NOT EXISTS settlement_statements_by_siret ON settlement_statements (siret, month);

-- What a close reads: the redemptions no statement paid yet, oldest first. Partial, so it
-- stays as small as the unpaid backlog rather than growing with every redemption ever.
CREATE INDEX IF NOT EXISTS redemptions_unsettled ON redemptions (redeemed_at)
    WHERE settlement_month IS NULL;
