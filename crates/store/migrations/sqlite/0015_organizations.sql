-- Organizations: usage data shared by their members (the same tables in both backends;
-- times in ms since the epoch). Usage rows name their organization in `user_id`: a shared
-- organization's id begins with `org:`, anything else is a user's personal space (its id
-- is the user id), so the usage tables are unchanged. Threads and runs stay the user's.
CREATE TABLE organizations (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

-- Who belongs to which organization, as `admin`, `analyst` or `viewer`.
CREATE TABLE memberships (
    org_id    TEXT NOT NULL,
    user_id   TEXT NOT NULL,
    role      TEXT NOT NULL,
    joined_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);

-- An invitation link into an organization: its code kept as its SHA-256, used once.
CREATE TABLE org_invitations (
    code_hash  TEXT PRIMARY KEY,
    org_id     TEXT NOT NULL,
    role       TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    used_by    TEXT
);
CREATE INDEX org_invitations_org ON org_invitations (org_id);

-- An organization's API key reaches that organization's usage only.
ALTER TABLE api_keys ADD COLUMN org_id TEXT;
