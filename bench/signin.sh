#!/usr/bin/env bash
# bench/signin.sh: does password checking slow everyone else down? Starts the release console, then
# measures the health check's latency (median and 95th percentile of 300 requests) alone and while six
# clients sign in as fast as they can. Prints a table row per case.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p backend --bin imds-console >/dev/null 2>&1
dir=$(mktemp -d)
trap 'kill $pid $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT
./target/release/imds-console serve --listen 127.0.0.1:0 --data-dir "$dir" --sandbox-fleet 10 2>"$dir/log" &
pid=$!
for _ in $(seq 100); do grep -q " is at " "$dir/log" 2>/dev/null && break; sleep 0.2; done
base=$(grep -o 'http://[0-9.:]*' "$dir/log" | head -1)

health() {
  for _ in $(seq 300); do curl -s -o /dev/null -w '%{time_total}\n' "$base/api/v1/health"; done |
    sort -n | awk '{a[NR]=$1} END {printf "%.2f ms median, %.2f ms p95", a[int(NR/2)]*1000, a[int(NR*0.95)]*1000}'
}
echo "| health check, alone | $(health) |"
password=$(cat "$dir/first-admin-password")
for _ in $(seq 6); do
  # Right-password sign-ins: each one runs the full argon2 check, and none is ever throttled.
  ( while :; do curl -s -o /dev/null -H 'content-type: application/json' \
      -d "{\"username\":\"admin\",\"password\":\"$password\"}" "$base/api/v1/auth/login"; done ) &
done
sleep 1
echo "| health check, six sign-in streams | $(health) |"
