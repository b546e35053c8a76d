-- Per-tenant API tokens (collectivités on the issuer, venues on the redeemer). Only a
-- SHA-256 of the token is stored: a database dump does not give access.
CREATE TABLE IF NOT EXISTS api_tokens (
    token_sha256  text PRIMARY KEY,
    tenant_kind   text NOT NULL CHECK (tenant_kind IN ('collectivite', 'venue', 'operator')),
    tenant_id     text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);
