#!/usr/bin/env bash
# Installs the peer of `apex bench --peer langgraph` (LangGraph's server, the versions
# pinned in requirements.txt) into a throwaway virtualenv; a no-op once it is there.
#
#   benches/peer/langgraph/setup.sh [VENV]   (default: $TMPDIR/apex-bench-langgraph-venv)
#
# Needs Python 3.11 or newer with venv and pip, and the package registry.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=${1:-${TMPDIR:-/tmp}/apex-bench-langgraph-venv}
stamp="$venv/.apex-bench-requirements"
if [ -x "$venv/bin/langgraph" ] && cmp -s "$here/requirements.txt" "$stamp"; then
  exit 0
fi
python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed: the graph streams from async nodes")'
echo "installing LangGraph into $venv (once)"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
cp "$here/requirements.txt" "$stamp"
echo "installed: $("$venv/bin/pip" show langgraph-api | grep '^Version')"
