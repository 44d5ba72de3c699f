-- The daily sums per end user and per API key, without the feature, project and environment:
-- what a question that names end users or API keys is answered from ("cost per end user",
-- "which API key costs the most", "how much did user-42 cost in October"), kept as rows are
-- imported so that it does not sum every stored row (a million rows is about a second).
-- A query reads it when the only other names it keeps or filters by are the day, provider
-- and model (`totals::source`); any other reads usage_daily. One row per
-- (dimension, name, day, provider, model, billed); the empty name sums the rows without one.
-- The import statement adds its new rows here as it adds them to usage_daily. A delete of a
-- user's usage deletes here too.
CREATE TABLE usage_tag_rollup (
    user_id              TEXT NOT NULL,
    dimension            TEXT NOT NULL,  -- 'user' (end_user) or 'api_key'
    name                 TEXT NOT NULL,
    day                  TEXT NOT NULL,
    provider             TEXT NOT NULL,
    model                TEXT NOT NULL,
    billed               BOOLEAN NOT NULL,
    requests             BIGINT NOT NULL,
    input_tokens         BIGINT NOT NULL,
    output_tokens        BIGINT NOT NULL,
    cached_input_tokens  BIGINT NOT NULL,
    cache_write_tokens   BIGINT NOT NULL,
    reasoning_tokens     BIGINT NOT NULL,
    repeat_requests      BIGINT NOT NULL,
    cost_micros          BIGINT NOT NULL,
    PRIMARY KEY (user_id, dimension, name, day, provider, model, billed)
);

INSERT INTO usage_tag_rollup
SELECT user_id, 'user', end_user, day, provider, model, billed,
       SUM(requests), SUM(input_tokens), SUM(output_tokens), SUM(cached_input_tokens),
       SUM(cache_write_tokens), SUM(reasoning_tokens), SUM(repeat_requests), SUM(cost_micros)
FROM usage_daily
GROUP BY user_id, end_user, day, provider, model, billed;
INSERT INTO usage_tag_rollup
SELECT user_id, 'api_key', api_key, day, provider, model, billed,
       SUM(requests), SUM(input_tokens), SUM(output_tokens), SUM(cached_input_tokens),
       SUM(cache_write_tokens), SUM(reasoning_tokens), SUM(repeat_requests), SUM(cost_micros)
FROM usage_daily
GROUP BY user_id, api_key, day, provider, model, billed;
