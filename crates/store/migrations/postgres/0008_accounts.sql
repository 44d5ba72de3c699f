-- Local accounts, their sign-in sessions and invitations (the same tables in both
-- backends; times in ms since the epoch). An account's id is the user id its threads,
-- runs and usage are stored under.
CREATE TABLE accounts (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    disabled_at   BIGINT,
    failed_logins BIGINT NOT NULL DEFAULT 0,
    locked_until  BIGINT
);

-- A signed-in browser or client: the refresh token is kept as its SHA-256 only, and the
-- one it replaced too, so that a stolen, already used token is recognised when replayed.
-- Sessions outlive a deleted account (revoked, emptied): every instance learns from them
-- that the account's sockets must close.
CREATE TABLE auth_sessions (
    id            TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL,
    refresh_hash  TEXT NOT NULL UNIQUE,
    previous_hash TEXT,
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    revoked_at    BIGINT,
    user_agent    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX auth_sessions_account ON auth_sessions (account_id);
CREATE INDEX auth_sessions_previous ON auth_sessions (previous_hash);
CREATE INDEX auth_sessions_revoked ON auth_sessions (revoked_at);

CREATE TABLE invitations (
    code_hash  TEXT PRIMARY KEY,
    role       TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
