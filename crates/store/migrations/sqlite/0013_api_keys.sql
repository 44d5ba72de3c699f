-- API keys: a user's credential for scripts and other services (`apex ingest`, `apex chat`,
-- REST and WebSocket), kept as its SHA-256 with a short prefix to recognise it by, and the
-- scopes it grants (comma-separated: ingest, read, chat).
CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    account_id   TEXT NOT NULL,
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,
    scopes       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
);
CREATE INDEX api_keys_account ON api_keys (account_id);
CREATE INDEX api_keys_revoked ON api_keys (revoked_at);
