#!/usr/bin/env bash
# Language-model benchmarks (crates/llm/benches/model.rs), built in release mode:
#   local  Apex's embedded model (APEX_LLM=local, candle) against llama.cpp (llama-cpp-python)
#          on the same GGUF in the same run, alternating: time to first token, tokens/s,
#          peak RSS, ratios Apex ÷ llama.cpp
#   sse    what Apex's OpenAI-compatible client adds per streamed token (a stand-in
#          provider on loopback streams timestamped chunks)
# Both parts by default; the load average is printed before and after each.
#
#   benches/model.sh [local] [sse] [--model GGUF] [--reps N] [--max-tokens N] [--as-stored] ...
#
# Needs llama-cpp-python and the reference model for `local` (scripts/llm-test-deps).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --quiet -p apex-llm --bench model -- "$@"
