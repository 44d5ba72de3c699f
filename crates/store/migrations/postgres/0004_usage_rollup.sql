-- The daily sums without the end user and the API key, which can number thousands a day:
-- what most questions are answered from (`UsageQuery::rollup`), kept as rows are imported
-- (the import statement adds its new rows here as it adds them to usage_daily) so that no
-- question has to sum every stored row. A delete of a user's usage deletes here too.
CREATE TABLE usage_rollup (
    user_id              TEXT NOT NULL,
    day                  TEXT NOT NULL,
    provider             TEXT NOT NULL,
    model                TEXT NOT NULL,
    feature              TEXT NOT NULL,
    project              TEXT NOT NULL,
    environment          TEXT NOT NULL,
    billed               BOOLEAN NOT NULL,
    requests             BIGINT NOT NULL,
    input_tokens         BIGINT NOT NULL,
    output_tokens        BIGINT NOT NULL,
    cached_input_tokens  BIGINT NOT NULL,
    cache_write_tokens   BIGINT NOT NULL,
    reasoning_tokens     BIGINT NOT NULL,
    repeat_requests      BIGINT NOT NULL,
    cost_micros          BIGINT NOT NULL,
    PRIMARY KEY (user_id, day, provider, model, feature, project, environment, billed)
);

INSERT INTO usage_rollup
SELECT user_id, day, provider, model, feature, project, environment, billed,
       SUM(requests), SUM(input_tokens), SUM(output_tokens), SUM(cached_input_tokens),
       SUM(cache_write_tokens), SUM(reasoning_tokens), SUM(repeat_requests), SUM(cost_micros)
FROM usage_daily
GROUP BY user_id, day, provider, model, feature, project, environment, billed;
