-- The end users and API keys a user's usage names, kept as rows are imported: a question is
-- read against them (is "user-42" an end user of theirs?), and listing them from usage_daily
-- means reading every stored row.
CREATE TABLE usage_names (
    user_id    TEXT NOT NULL,
    dimension  TEXT NOT NULL,  -- 'user' or 'api_key'
    name       TEXT NOT NULL,
    PRIMARY KEY (user_id, dimension, name)
);

INSERT OR IGNORE INTO usage_names SELECT DISTINCT user_id, 'user', end_user FROM usage_daily WHERE end_user <> '';
INSERT OR IGNORE INTO usage_names SELECT DISTINCT user_id, 'api_key', api_key FROM usage_daily WHERE api_key <> '';

CREATE TRIGGER usage_names_on_insert AFTER INSERT ON usage_daily BEGIN
    INSERT OR IGNORE INTO usage_names SELECT NEW.user_id, 'user', NEW.end_user WHERE NEW.end_user <> '';
    INSERT OR IGNORE INTO usage_names SELECT NEW.user_id, 'api_key', NEW.api_key WHERE NEW.api_key <> '';
END;
