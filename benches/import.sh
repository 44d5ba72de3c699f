#!/usr/bin/env bash
# Import benchmark: N generic-CSV usage rows (default 1,000,000) through `apex ingest`,
# then one analysis over WebSocket, against DuckDB reading and aggregating the same file
# in the same run (the baseline). Prints times, peak RSS, the ratios, and the machine's load
# average before and after the import (numbers on a shared machine mean little without it).
#
#   benches/import.sh [ROWS]
#
# Needs a release build (cargo build --release -p apex-cli) and Python 3 with pip (DuckDB
# is installed into a throwaway virtualenv under the work directory).
set -euo pipefail
rows=${1:-1000000}
root=$(cd "$(dirname "$0")/.." && pwd)
apex="$root/target/release/apex"
[ -x "$apex" ] || { echo "build first: cargo build --release -p apex-cli" >&2; exit 1; }
work=$(mktemp -d /tmp/apex-import-bench.XXXXXX)
trap 'kill "${server:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT

echo "== generating $rows rows"
python3 - "$work/usage.csv" "$rows" <<'PY'
import random, sys, datetime
path, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(7)
models = [("gpt-4o", "openai"), ("gpt-4o-mini", "openai"), ("gpt-4.1", "openai"),
          ("claude-sonnet-4-5", "anthropic"), ("claude-haiku-4-5", "anthropic"), ("gemini-2.5-flash", "gemini")]
features = ["support-chat", "ticket-triage", "search", "nightly-summaries", "code-review", "agents"]
start = datetime.date(2026, 9, 1)
with open(path, "w") as f:
    f.write("date,model,provider,input_tokens,cached_input_tokens,output_tokens,requests,feature,project,request_id\n")
    for i in range(n):
        m, p = models[rnd.randrange(len(models))]
        inp = rnd.randrange(100, 8000)
        f.write(f"{start + datetime.timedelta(days=rnd.randrange(90))},{m},{p},{inp},{inp // rnd.randrange(2, 20)},"
                f"{rnd.randrange(5, 1500)},1,{features[rnd.randrange(len(features))]},p{rnd.randrange(4)},req-{i}\n")
PY
ls -la "$work/usage.csv" | awk '{printf "   %.1f MiB\n", $5/1048576}'

echo "== apex ingest (SQLite, 10,000-row transactions)"
echo "   load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
t0=$(date +%s.%N)
/usr/bin/time -f "   peak RSS %M KiB" "$apex" ingest "$work/usage.csv" --user bench --data-dir "$work/data" 2> "$work/time.txt" >/dev/null
t1=$(date +%s.%N)
tail -1 "$work/time.txt" | tr '\r' '\n' | tail -1  # the last line, without the progress before it
ingest=$(echo "$t1 - $t0" | bc)
echo "   ingest $ingest s"
echo "   load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

echo "== one analysis over WebSocket (loads the user's usage, summarizes, recommends)"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
APEX_DATA_DIR="$work/data" RUST_LOG=warn "$apex" serve --bind "127.0.0.1:$port" & server=$!
for _ in $(seq 200); do curl -fs "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.05; done
token=$(APEX_DATA_DIR="$work/data" "$apex" token --user bench)
t0=$(date +%s.%N)
"$apex" chat --url "ws://127.0.0.1:$port/ws" --token "$token" --once "Analyze my AI costs" > "$work/answer.txt"
t1=$(date +%s.%N)
analysis=$(echo "$t1 - $t0" | bc)
echo "   analysis $analysis s ($(head -c 80 < <(grep '^## ' "$work/answer.txt" | head -1)))"

echo "== baseline: DuckDB reads the same CSV and aggregates it the same way"
python3 -m venv "$work/venv" >/dev/null && "$work/venv/bin/pip" install -q duckdb >/dev/null
duck=$("$work/venv/bin/python" - "$work/usage.csv" <<'PY'
import duckdb, sys, time
t = time.perf_counter()
con = duckdb.connect()
con.execute(f"CREATE TABLE u AS SELECT * FROM read_csv_auto('{sys.argv[1]}')")
con.execute("SELECT date, provider, model, feature, project, sum(requests), sum(input_tokens), sum(output_tokens), "
            "sum(cached_input_tokens) FROM u GROUP BY ALL").fetchall()
print(f"{time.perf_counter() - t:.3f}")
PY
)
echo "   duckdb load + aggregate $duck s"
echo "== ratios (lower is better for apex)"
echo "   apex ingest ÷ duckdb: $(echo "scale=1; $ingest / $duck" | bc)"
echo "   apex analysis ÷ duckdb: $(echo "scale=2; $analysis / $duck" | bc)"
