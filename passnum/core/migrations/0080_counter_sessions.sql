-- Sessions of the venues' counter page (services/redeemer/counter/sessions.py). A venue signs
-- in with its API token once; the browser then holds only a random session id in an
-- HttpOnly cookie. Only SHA-256 digests are stored (of the session id and of the token), so
-- a database dump gives neither. A session lives while its token is not revoked and until
-- `expires_at`; each form carries `csrf_token`, which a POST must send back.
CREATE TABLE IF NOT EXISTS counter_sessions (
    session_sha256  text PRIMARY KEY,
    token_sha256    text        NOT NULL REFERENCES api_tokens (token_sha256) ON DELETE CASCADE,
    siret           text        NOT NULL,
    csrf_token      text        NOT NULL,
    language        text        NOT NULL DEFAULT 'fr' CHECK (language IN ('fr', 'en')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL
);
-- Expired sessions are deleted at each sign-in (services/redeemer/counter/sessions.py).
CREATE INDEX IF NOT EXISTS counter_sessions_by_expiry ON counter_sessions (expires_at);
