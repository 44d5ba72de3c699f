-- The daily sums without the end user and the API key, which can number thousands a day:
-- what most questions are answered from (`UsageQuery::rollup`), kept as rows are imported so
-- that no question has to sum every stored row. Triggers keep it equal to usage_daily summed
-- over those two names: an insert adds its row, an update (an import adding to an existing
-- daily sum) adds the difference. A delete of a user's usage deletes here too (the store does).
CREATE TABLE usage_rollup (
    user_id              TEXT NOT NULL,
    day                  TEXT NOT NULL,
    provider             TEXT NOT NULL,
    model                TEXT NOT NULL,
    feature              TEXT NOT NULL,
    project              TEXT NOT NULL,
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
    PRIMARY KEY (user_id, day, provider, model, feature, project, environment, billed)
);

INSERT INTO usage_rollup
SELECT user_id, day, provider, model, feature, project, environment, billed,
       SUM(requests), SUM(input_tokens), SUM(output_tokens), SUM(cached_input_tokens),
       SUM(cache_write_tokens), SUM(reasoning_tokens), SUM(repeat_requests), SUM(cost_micros)
FROM usage_daily
GROUP BY user_id, day, provider, model, feature, project, environment, billed;

CREATE TRIGGER usage_rollup_on_insert AFTER INSERT ON usage_daily BEGIN
    INSERT INTO usage_rollup VALUES (
        NEW.user_id, NEW.day, NEW.provider, NEW.model, NEW.feature, NEW.project, NEW.environment, NEW.billed,
        NEW.requests, NEW.input_tokens, NEW.output_tokens, NEW.cached_input_tokens,
        NEW.cache_write_tokens, NEW.reasoning_tokens, NEW.repeat_requests, NEW.cost_micros)
    ON CONFLICT (user_id, day, provider, model, feature, project, environment, billed) DO UPDATE SET
        requests = requests + excluded.requests,
        input_tokens = input_tokens + excluded.input_tokens,
        output_tokens = output_tokens + excluded.output_tokens,
        cached_input_tokens = cached_input_tokens + excluded.cached_input_tokens,
        cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens,
        reasoning_tokens = reasoning_tokens + excluded.reasoning_tokens,
        repeat_requests = repeat_requests + excluded.repeat_requests,
        cost_micros = cost_micros + excluded.cost_micros;
END;

CREATE TRIGGER usage_rollup_on_update AFTER UPDATE ON usage_daily BEGIN
    UPDATE usage_rollup SET
        requests = requests + NEW.requests - OLD.requests,
        input_tokens = input_tokens + NEW.input_tokens - OLD.input_tokens,
        output_tokens = output_tokens + NEW.output_tokens - OLD.output_tokens,
        cached_input_tokens = cached_input_tokens + NEW.cached_input_tokens - OLD.cached_input_tokens,
        cache_write_tokens = cache_write_tokens + NEW.cache_write_tokens - OLD.cache_write_tokens,
        reasoning_tokens = reasoning_tokens + NEW.reasoning_tokens - OLD.reasoning_tokens,
        repeat_requests = repeat_requests + NEW.repeat_requests - OLD.repeat_requests,
        cost_micros = cost_micros + NEW.cost_micros - OLD.cost_micros
    WHERE user_id = NEW.user_id AND day = NEW.day AND provider = NEW.provider AND model = NEW.model
      AND feature = NEW.feature AND project = NEW.project AND environment = NEW.environment
      AND billed = NEW.billed;
END;
