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
    requests             INTEGER NOT NULL,
    input_tokens         INTEGER NOT NULL,
    output_tokens        INTEGER NOT NULL,
    cached_input_tokens  INTEGER NOT NULL,
    -- What the source billed, in micro-dollars; NULL when it did not say.
    cost_micros          INTEGER,
    imported_at          INTEGER NOT NULL,
    PRIMARY KEY (user_id, key)
) WITHOUT ROWID;
-- Reads go to usage_daily (0003); this table only has to answer "is this key new?".
