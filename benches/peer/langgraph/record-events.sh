#!/usr/bin/env bash
# Records the events of one Apex golden-path run ("Analyze my AI costs", demo data, the
# built-in writer: what `apex bench` runs) into events.json, which graph.py replays. The
# per-run fields (run_id, thread_id, seq, ts) are left out; the graph adds its own.
#
#   benches/peer/langgraph/record-events.sh   (needs a release build of apex-cli)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
apex="$root/target/release/apex"
[ -x "$apex" ] || { echo "build first: cargo build --release -p apex-cli" >&2; exit 1; }
work=$(mktemp -d /tmp/apex-record-events.XXXXXX)
trap 'kill "${server:-0}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
APEX_DATA_DIR="$work" DEMO_MODE=1 APEX_LLM=builtin RUST_LOG=warn "$apex" serve --bind "127.0.0.1:$port" >"$work/log" 2>&1 &
server=$!
for _ in $(seq 200); do curl -fs "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.05; done
"$apex" chat --url "ws://127.0.0.1:$port/ws" --json --once "Analyze my AI costs" >"$work/frames.jsonl"
python3 - "$work/frames.jsonl" "$here/events.json" <<'PY'
import json, sys
events = []
for line in open(sys.argv[1]):
    frame = json.loads(line)
    if "seq" not in frame or "run_id" not in frame:
        continue  # message_accepted and other frames that are not run events
    for key in ("run_id", "thread_id", "seq", "ts"):
        frame.pop(key, None)
    events.append(frame)
assert events and events[-1]["type"] == "final_response", "the run did not end with final_response"
with open(sys.argv[2], "w") as f:
    json.dump(events, f, indent=1)
    f.write("\n")
kinds = {}
for e in events:
    kinds[e["type"]] = kinds.get(e["type"], 0) + 1
print(f"{len(events)} events, {sum(len(json.dumps(e)) for e in events)} bytes: {kinds}")
PY
