-- One secret per collectivité for the beneficiaries' pseudonymous references:
--     reference = hex(HMAC-SHA256(secret, normalised identifier))[:32]
-- The secret lives here and nowhere else: never in the log, never in a response. It is
-- created on first use. Deleting a collectivité's row (crypto-shredding) makes every
-- reference already in the immutable log unlinkable to a person, because nobody can
-- recompute it from an identifier any more; a later use creates a fresh secret, and the
-- references derived from it do not match the old ones.
CREATE TABLE IF NOT EXISTS issuer_beneficiary_secrets (
    siren       text PRIMARY KEY,
    secret      bytea NOT NULL CHECK (octet_length(secret) = 32),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- When secrets were destroyed, and by whom: the fact is kept, the secret is not.
CREATE TABLE IF NOT EXISTS issuer_beneficiary_secret_destructions (
    siren         text NOT NULL,
    destroyed_at  timestamptz NOT NULL DEFAULT now(),
    requested_by  text NOT NULL,
    PRIMARY KEY (siren, destroyed_at)
);
