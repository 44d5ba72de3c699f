"""DuckDB side of `apex bench --questions`: loads the bench's usage file into a table shaped
like Apex's `usage_daily` and times each aggregation the bench passes (the same SQL text
Apex's store runs on SQLite, `?` parameters). Prints one JSON object per query: rows
returned and the median time in milliseconds.

Usage: duck_timing.py USAGE.csv QUERIES.json REPEAT USER_ID
"""
import json
import statistics
import sys
import time

import duckdb


def main() -> None:
    csv, spec, repeat, user = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    con = duckdb.connect()
    con.execute(
        """
        CREATE TABLE usage_daily AS
        SELECT ?::VARCHAR AS user_id, CAST(date AS VARCHAR) AS day, provider, model, feature, project,
               "user" AS end_user, api_key, environment, cost_usd IS NOT NULL AS billed,
               requests::BIGINT AS requests, input_tokens::BIGINT AS input_tokens,
               output_tokens::BIGINT AS output_tokens, cached_input_tokens::BIGINT AS cached_input_tokens,
               0::BIGINT AS cache_write_tokens, 0::BIGINT AS reasoning_tokens, 0::BIGINT AS repeat_requests,
               CAST(round(coalesce(cost_usd, 0) * 1000000) AS BIGINT) AS cost_micros
        FROM read_csv(?, header = true, all_varchar = false,
                      types = {'date': 'VARCHAR', 'cost_usd': 'DOUBLE'})
        """,
        [user, csv],
    )
    out = []
    for q in json.load(open(spec)):
        times = []
        rows = 0
        for _ in range(max(repeat, 1)):
            started = time.perf_counter()
            rows = len(con.execute(q["sql"], q["params"]).fetchall())
            times.append((time.perf_counter() - started) * 1000)
        out.append({"name": q["name"], "rows": rows, "p50_ms": statistics.median(times)})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
