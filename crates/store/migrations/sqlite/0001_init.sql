-- Apex schema for SQLite. Timestamps are milliseconds since the Unix epoch.
CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    created_at  INTEGER NOT NULL
);

CREATE TABLE threads (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id),
    title       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX threads_by_user ON threads(user_id, updated_at DESC);

CREATE TABLE runs (
    id               TEXT PRIMARY KEY,
    user_id          TEXT NOT NULL REFERENCES users(id),
    thread_id        TEXT NOT NULL REFERENCES threads(id),
    user_message_id  TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN
                        ('queued','running','completed','failed','cancelled','timed_out','interrupted')),
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    error_code       TEXT,
    error_message    TEXT
);
CREATE INDEX runs_by_thread ON runs(thread_id, created_at);
CREATE INDEX runs_unfinished ON runs(status) WHERE status IN ('queued', 'running');

CREATE TABLE messages (
    id                 TEXT PRIMARY KEY,
    thread_id          TEXT NOT NULL REFERENCES threads(id),
    user_id            TEXT NOT NULL REFERENCES users(id),
    run_id             TEXT,
    role               TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    content            TEXT NOT NULL,
    client_message_id  TEXT,
    created_at         INTEGER NOT NULL
);
CREATE INDEX messages_by_thread ON messages(thread_id, created_at, id);
-- A client that resends a message after a dropped connection gets the same run back.
CREATE UNIQUE INDEX messages_client_id ON messages(user_id, client_message_id)
    WHERE client_message_id IS NOT NULL;

CREATE TABLE agent_results (
    run_id       TEXT NOT NULL REFERENCES runs(id),
    agent        TEXT NOT NULL,
    output       TEXT NOT NULL,
    duration_ms  INTEGER NOT NULL,
    PRIMARY KEY (run_id, agent)
);

-- Each run's events exactly as sent on the wire, so that resume and the events endpoint
-- work after the run ended and after a restart. A rowid table: rows are appended in
-- commit order (pages fill up), and the small index serves lookups by run. Keyed by
-- (run_id, seq), the interleaved inserts of concurrent runs split pages all over the tree.
CREATE TABLE run_events (
    run_id   TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    type     TEXT NOT NULL,
    payload  TEXT NOT NULL
);
CREATE UNIQUE INDEX run_events_by_run ON run_events(run_id, seq);
