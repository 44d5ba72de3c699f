-- Tags and token kinds that usage exports carry beyond 0001 (the SQLite backend's 0005):
-- the end user the requests were made for, the API key, the deployment environment ('' when
-- the source does not say), the cache-write and reasoning parts of the input and output
-- tokens, and a hash of the request itself ('' when unknown), by which identical requests
-- are counted as repeats.
ALTER TABLE usage_records
    ADD COLUMN end_user TEXT NOT NULL DEFAULT '',
    ADD COLUMN api_key TEXT NOT NULL DEFAULT '',
    ADD COLUMN environment TEXT NOT NULL DEFAULT '',
    ADD COLUMN cache_write_tokens BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN reasoning_tokens BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN request_hash TEXT NOT NULL DEFAULT '',
    -- Requests of the row whose hash the user had already sent (0 or `requests`).
    ADD COLUMN repeat_requests BIGINT NOT NULL DEFAULT 0;
CREATE INDEX usage_records_request_hash ON usage_records (user_id, request_hash) WHERE request_hash <> '';

-- The daily sums gain the same tags in their key, so that summaries can group by them.
ALTER TABLE usage_daily
    ADD COLUMN end_user TEXT NOT NULL DEFAULT '',
    ADD COLUMN api_key TEXT NOT NULL DEFAULT '',
    ADD COLUMN environment TEXT NOT NULL DEFAULT '',
    ADD COLUMN cache_write_tokens BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN reasoning_tokens BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN repeat_requests BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_daily DROP CONSTRAINT usage_daily_pkey;
ALTER TABLE usage_daily ADD PRIMARY KEY (user_id, day, provider, model, feature, project, end_user, api_key, environment, billed);
