-- Apex schema for PostgreSQL: the same tables as the SQLite backend (its migrations
-- 0001-0004), in PostgreSQL's types. Timestamps are milliseconds since the Unix epoch.
CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    created_at  BIGINT NOT NULL
);

CREATE TABLE threads (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id),
    title       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX threads_by_user ON threads(user_id, updated_at DESC);

CREATE TABLE runs (
    id               TEXT PRIMARY KEY,
    user_id          TEXT NOT NULL REFERENCES users(id),
    thread_id        TEXT NOT NULL REFERENCES threads(id),
    user_message_id  TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN
                        ('queued','running','completed','failed','cancelled','timed_out','interrupted')),
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT,
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
    created_at         BIGINT NOT NULL
);
CREATE INDEX messages_by_thread ON messages(thread_id, created_at, id);
-- A client that resends a message after a dropped connection gets the same run back.
CREATE UNIQUE INDEX messages_client_id ON messages(user_id, client_message_id)
    WHERE client_message_id IS NOT NULL;

CREATE TABLE agent_results (
    run_id       TEXT NOT NULL REFERENCES runs(id),
    agent        TEXT NOT NULL,
    output       TEXT NOT NULL,
    duration_ms  BIGINT NOT NULL,
    -- The order agents finished in (SQLite reads its rowid for this).
    ord          BIGINT GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (run_id, agent)
);

-- Each run's events exactly as sent on the wire, for resume and the events endpoint.
CREATE TABLE run_events (
    run_id   TEXT NOT NULL,
    seq      BIGINT NOT NULL,
    type     TEXT NOT NULL,
    payload  TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);

-- Imported LLM usage, per user. `key` identifies a row across imports (the source's
-- request id, or a hash of the row's content), so re-importing never double counts.
CREATE TABLE usage_records (
    user_id              TEXT NOT NULL,
    key                  TEXT NOT NULL,
    day                  TEXT NOT NULL,
    provider             TEXT NOT NULL,
    model                TEXT NOT NULL,
    feature              TEXT NOT NULL,
    project              TEXT NOT NULL,
    requests             BIGINT NOT NULL,
    input_tokens         BIGINT NOT NULL,
    output_tokens        BIGINT NOT NULL,
    cached_input_tokens  BIGINT NOT NULL,
    -- What the source billed, in micro-dollars; NULL when it did not say.
    cost_micros          BIGINT,
    imported_at          BIGINT NOT NULL,
    PRIMARY KEY (user_id, key)
);

-- Usage summed per user, day, provider, model, feature and project (billed rows apart
-- from unbilled ones), kept up to date by each import: what the analysis reads.
CREATE TABLE usage_daily (
    user_id              TEXT NOT NULL,
    day                  TEXT NOT NULL,
    provider             TEXT NOT NULL,
    model                TEXT NOT NULL,
    feature              TEXT NOT NULL,
    project              TEXT NOT NULL,
    billed               BOOLEAN NOT NULL,
    requests             BIGINT NOT NULL,
    input_tokens         BIGINT NOT NULL,
    output_tokens        BIGINT NOT NULL,
    cached_input_tokens  BIGINT NOT NULL,
    cost_micros          BIGINT NOT NULL,
    PRIMARY KEY (user_id, day, provider, model, feature, project, billed)
);

-- The version of each user's dataset: every import that adds rows, and every delete,
-- moves it on. It keys cached analyses.
CREATE TABLE usage_versions (
    user_id  TEXT PRIMARY KEY,
    version  BIGINT NOT NULL
);
