-- Usage summed per user, day, provider, model, feature and project (billed rows apart from
-- unbilled ones), kept up to date by each import: what the analysis reads, so that a
-- question costs hundreds of rows, not millions.
CREATE TABLE usage_daily (
    user_id              TEXT NOT NULL,
    day                  TEXT NOT NULL,
    provider             TEXT NOT NULL,
    model                TEXT NOT NULL,
    feature              TEXT NOT NULL,
    project              TEXT NOT NULL,
    billed               INTEGER NOT NULL,
    requests             INTEGER NOT NULL,
    input_tokens         INTEGER NOT NULL,
    output_tokens        INTEGER NOT NULL,
    cached_input_tokens  INTEGER NOT NULL,
    cost_micros          INTEGER NOT NULL,
    PRIMARY KEY (user_id, day, provider, model, feature, project, billed)
);

INSERT INTO usage_daily
SELECT user_id, day, provider, model, feature, project, cost_micros IS NOT NULL,
       SUM(requests), SUM(input_tokens), SUM(output_tokens), SUM(cached_input_tokens), COALESCE(SUM(cost_micros), 0)
FROM usage_records
GROUP BY user_id, day, provider, model, feature, project, cost_micros IS NOT NULL;
