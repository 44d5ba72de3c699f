-- The daily sums per end user and per API key, without the feature, project and environment:
-- what a question that names end users or API keys is answered from ("cost per end user",
-- "which API key costs the most", "how much did user-42 cost in October"), kept as rows are
-- imported so that it does not sum every stored row (a million rows is about a second).
-- A query reads it when the only other names it keeps or filters by are the day, provider
-- and model (`totals::source`); any other reads usage_daily. One row per
-- (dimension, name, day, provider, model, billed); the empty name sums the rows without one.
-- Triggers keep it equal to usage_daily summed that way: an insert adds its row, an update
-- (an import adding to an existing daily sum) adds the difference. A delete of a user's usage
-- deletes here too (the store does).
CREATE TABLE usage_tag_rollup (
    user_id              TEXT NOT NULL,
    dimension            TEXT NOT NULL,  -- 'user' (end_user) or 'api_key'
    name                 TEXT NOT NULL,
    day                  TEXT NOT NULL,
    provider             TEXT NOT NULL,
    model                TEXT NOT NULL,
    billed               INTEGER NOT NULL,
    requests             INTEGER NOT NULL,
    input_tokens         INTEGER NOT NULL,
    output_tokens        INTEGER NOT NULL,
    cached_input_tokens  INTEGER NOT NULL,
    cache_write_tokens   INTEGER NOT NULL,
    reasoning_tokens     INTEGER NOT NULL,
    repeat_requests      INTEGER NOT NULL,
    cost_micros          INTEGER NOT NULL,
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

CREATE TRIGGER usage_tag_rollup_on_insert AFTER INSERT ON usage_daily BEGIN
    INSERT INTO usage_tag_rollup VALUES (
        NEW.user_id, 'user', NEW.end_user, NEW.day, NEW.provider, NEW.model, NEW.billed,
        NEW.requests, NEW.input_tokens, NEW.output_tokens, NEW.cached_input_tokens,
        NEW.cache_write_tokens, NEW.reasoning_tokens, NEW.repeat_requests, NEW.cost_micros)
    ON CONFLICT (user_id, dimension, name, day, provider, model, billed) DO UPDATE SET
        requests = requests + excluded.requests,
        input_tokens = input_tokens + excluded.input_tokens,
        output_tokens = output_tokens + excluded.output_tokens,
        cached_input_tokens = cached_input_tokens + excluded.cached_input_tokens,
        cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens,
        reasoning_tokens = reasoning_tokens + excluded.reasoning_tokens,
        repeat_requests = repeat_requests + excluded.repeat_requests,
        cost_micros = cost_micros + excluded.cost_micros;
    INSERT INTO usage_tag_rollup VALUES (
        NEW.user_id, 'api_key', NEW.api_key, NEW.day, NEW.provider, NEW.model, NEW.billed,
        NEW.requests, NEW.input_tokens, NEW.output_tokens, NEW.cached_input_tokens,
        NEW.cache_write_tokens, NEW.reasoning_tokens, NEW.repeat_requests, NEW.cost_micros)
    ON CONFLICT (user_id, dimension, name, day, provider, model, billed) DO UPDATE SET
        requests = requests + excluded.requests,
        input_tokens = input_tokens + excluded.input_tokens,
        output_tokens = output_tokens + excluded.output_tokens,
        cached_input_tokens = cached_input_tokens + excluded.cached_input_tokens,
        cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens,
        reasoning_tokens = reasoning_tokens + excluded.reasoning_tokens,
        repeat_requests = repeat_requests + excluded.repeat_requests,
        cost_micros = cost_micros + excluded.cost_micros;
END;

CREATE TRIGGER usage_tag_rollup_on_update AFTER UPDATE ON usage_daily BEGIN
    UPDATE usage_tag_rollup SET
        requests = requests + NEW.requests - OLD.requests,
        input_tokens = input_tokens + NEW.input_tokens - OLD.input_tokens,
        output_tokens = output_tokens + NEW.output_tokens - OLD.output_tokens,
        cached_input_tokens = cached_input_tokens + NEW.cached_input_tokens - OLD.cached_input_tokens,
        cache_write_tokens = cache_write_tokens + NEW.cache_write_tokens - OLD.cache_write_tokens,
        reasoning_tokens = reasoning_tokens + NEW.reasoning_tokens - OLD.reasoning_tokens,
        repeat_requests = repeat_requests + NEW.repeat_requests - OLD.repeat_requests,
        cost_micros = cost_micros + NEW.cost_micros - OLD.cost_micros
    WHERE user_id = NEW.user_id AND dimension = 'user' AND name = NEW.end_user AND day = NEW.day
      AND provider = NEW.provider AND model = NEW.model AND billed = NEW.billed;
    UPDATE usage_tag_rollup SET
        requests = requests + NEW.requests - OLD.requests,
        input_tokens = input_tokens + NEW.input_tokens - OLD.input_tokens,
        output_tokens = output_tokens + NEW.output_tokens - OLD.output_tokens,
        cached_input_tokens = cached_input_tokens + NEW.cached_input_tokens - OLD.cached_input_tokens,
        cache_write_tokens = cache_write_tokens + NEW.cache_write_tokens - OLD.cache_write_tokens,
        reasoning_tokens = reasoning_tokens + NEW.reasoning_tokens - OLD.reasoning_tokens,
        repeat_requests = repeat_requests + NEW.repeat_requests - OLD.repeat_requests,
        cost_micros = cost_micros + NEW.cost_micros - OLD.cost_micros
    WHERE user_id = NEW.user_id AND dimension = 'api_key' AND name = NEW.api_key AND day = NEW.day
      AND provider = NEW.provider AND model = NEW.model AND billed = NEW.billed;
END;
