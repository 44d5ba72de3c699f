-- The serving instance renews a row here periodically. SQLite serves one instance per file,
-- so nobody reads it to take over runs; the write is what matters: it tells the server
-- whether the storage takes writes again after failing (a full disk freed).
CREATE TABLE instances (
    id TEXT PRIMARY KEY,
    started_at INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL
);
