-- Tags and token kinds that usage exports carry beyond 0002: the end user the requests were
-- made for, the API key, the deployment environment ('' when the source does not say), the
-- cache-write and reasoning parts of the input and output tokens, and a hash of the request
-- itself ('' when unknown), by which identical requests are counted as repeats.
-- `end_user`, not `user`: `user` is a reserved word in PostgreSQL, whose backend mirrors
-- this schema.
ALTER TABLE usage_records ADD COLUMN end_user TEXT NOT NULL DEFAULT '';
ALTER TABLE usage_records ADD COLUMN api_key TEXT NOT NULL DEFAULT '';
ALTER TABLE usage_records ADD COLUMN environment TEXT NOT NULL DEFAULT '';
ALTER TABLE usage_records ADD COLUMN cache_write_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_records ADD COLUMN reasoning_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_records ADD COLUMN request_hash TEXT NOT NULL DEFAULT '';
-- Requests of the row whose hash the user had already sent (0 or `requests`).
ALTER TABLE usage_records ADD COLUMN repeat_requests INTEGER NOT NULL DEFAULT 0;
CREATE INDEX usage_records_request_hash ON usage_records (user_id, request_hash) WHERE request_hash <> '';

-- The daily sums gain the same tags in their key, so that summaries can group by them.
-- A primary key cannot be altered in SQLite: the table is rebuilt, its sums kept.
CREATE TABLE usage_daily_new (
    user_id              TEXT NOT NULL,
    day                  TEXT NOT NULL,
    provider             TEXT NOT NULL,
    model                TEXT NOT NULL,
    feature              TEXT NOT NULL,
    project              TEXT NOT NULL,
    end_user             TEXT NOT NULL,
    api_key              TEXT NOT NULL,
    environment          TEXT NOT NULL,
    billed               INTEGER NOT NULL,
    requests             INTEGER NOT NULL,
    input_tokens         INTEGER NOT NULL,
    output_tokens        INTEGER NOT NULL,
    cached_input_tokens  INTEGER NOT NULL,
    cache_write_tokens   INTEGER NOT NULL,
    reasoning_tokens     INTEGER NOT NULL,
    repeat_requests      INTEGER NOT NULL,
    cost_micros          INTEGER NOT NULL,
    PRIMARY KEY (user_id, day, provider, model, feature, project, end_user, api_key, environment, billed)
);

INSERT INTO usage_daily_new
SELECT user_id, day, provider, model, feature, project, '', '', '', billed,
       requests, input_tokens, output_tokens, cached_input_tokens, 0, 0, 0, cost_micros
FROM usage_daily;

DROP TABLE usage_daily;
ALTER TABLE usage_daily_new RENAME TO usage_daily;
