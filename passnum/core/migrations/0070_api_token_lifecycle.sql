-- Token lifecycle (passnum/edge/tokens.py): a token issued by an operator's request carries that
-- request's id, so that a retried request never issues a second token; rotation and
-- revocation find a tenant's live tokens through the partial index.
ALTER TABLE api_tokens ADD COLUMN IF NOT EXISTS request_id text;
CREATE UNIQUE INDEX IF NOT EXISTS api_tokens_by_request ON api_tokens (request_id);
CREATE INDEX IF NOT EXISTS api_tokens_live_by_tenant ON api_tokens (tenant_kind, tenant_id)
    WHERE revoked_at IS NULL;
