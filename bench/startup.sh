#!/usr/bin/env bash
# Measures how long `make run` takes to answer get-models: in a fresh clone (venv, install,
# initdb, migrations) and again on the second start. Usage: bench/startup.sh [port]
set -euo pipefail
port="${1:-8765}"
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
git clone -q "$repo" "$work/clone"
cd "$work/clone"

measure() {
    local started now
    started=$(python3 -c 'import time; print(time.time())')
    RENDIO_PORT="$port" make run >"$work/run-$1.log" 2>&1 &
    local pid=$!
    until curl -sf "http://127.0.0.1:$port/functions/v1/get-models" >/dev/null; do
        sleep 0.1
        kill -0 "$pid" 2>/dev/null || { echo "make run died; see $work/run-$1.log"; exit 1; }
    done
    python3 -c "import time; print('$1 start: %.1f s' % (time.time() - $started))"
    pkill -TERM -f "rendio serve" -P "$pid" 2>/dev/null || pkill -TERM -f "$work/clone/.venv/bin/rendio serve"
    wait "$pid" 2>/dev/null || true
}

measure first
measure second
rm -rf "$work"
