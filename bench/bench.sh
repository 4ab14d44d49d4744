#!/usr/bin/env bash
# bench/bench.sh: the numbers in BENCHMARKS.md. Builds the release binary, starts a console with a
# 10,000-instance sandbox fleet, and measures the fleet view (cold and cached), history paging over
# thousands of runs, the server's memory, and the frontend bundle. Needs curl; prints a table.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-2000}
cargo build --release -p backend --bin imds-console >/dev/null 2>&1
dir=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
# One account: the runs below are started on the hub's own instances.
./target/release/imds-console serve --listen 127.0.0.1:0 --data-dir "$dir" --sandbox-fleet 10000 --sandbox-accounts 1 \
  --sandbox-speed 1000 --ssm-start-rate 1000 --ssm-read-rate 20 --poll-ms 2000 2>"$dir/log" &
pid=$!
disown "$pid"  # so the `wait`s below wait for the requests only
for _ in $(seq 100); do grep -q " is at " "$dir/log" 2>/dev/null && break; sleep 0.2; done
base=$(grep -o 'http://[0-9.:]*' "$dir/log" | head -1)
token=$(./target/release/imds-console token create --user admin --data-dir "$dir" 2>/dev/null)
auth=(-H "authorization: Bearer $token")
t() { curl -s -o /dev/null -w '%{time_total}' "${auth[@]}" "$@"; }

cold=$(t "$base/api/v1/instances")
warm=0; for _ in $(seq 20); do warm=$(echo "$warm + $(t "$base/api/v1/instances")" | bc -l); done
size=$(curl -s "${auth[@]}" "$base/api/v1/instances" | wc -c)
gzsize=$(curl -s "${auth[@]}" -H 'accept-encoding: identity' "$base/api/v1/instances" | gzip -c | wc -c)

# Thousands of runs, started through the API (EnforceIMDSv2=optional is never gated).
ids=$(curl -s "${auth[@]}" "$base/api/v1/instances?region=us-east-1" | grep -o '"instance_id":"i-[0-9a-f]*"' | cut -d'"' -f4 | head -200 || true)
start_s=$(date +%s.%N)
n=0
for id in $ids; do for _ in $(seq $((RUNS / 200))); do
  curl -s -o /dev/null "${auth[@]}" -H 'content-type: application/json' \
    -d "{\"parameters\":{\"InstanceId\":\"$id\",\"EnforceIMDSv2\":\"optional\"}}" "$base/api/v1/executions" &
  n=$((n + 1)); if (( n % 16 == 0 )); then wait; fi
done; done; wait
start_rate=$(echo "$n / ($(date +%s.%N) - $start_s)" | bc -l)
first=$(t "$base/api/v1/executions?limit=50")
some=$(echo "$ids" | head -1 || true)
byinst=$(t "$base/api/v1/executions?limit=50&instance_id=$some")
cursor=$(curl -s "${auth[@]}" "$base/api/v1/executions?limit=500" | grep -o '"next_cursor":"[^"]*"' | cut -d'"' -f4)
deep=$(t "$base/api/v1/executions?limit=50&cursor=$cursor")
audit=$(t "$base/api/v1/audit?format=csv")
rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
# The main WASM module (the shell every page loads first); the routes' chunks are beside it.
wasm=$(cat frontend/dist/pkg-*/frontend_bg.wasm 2>/dev/null | wc -c)
wasmgz=$(cat frontend/dist/pkg-*/frontend_bg.wasm 2>/dev/null | gzip -9 | wc -c)

printf '| fleet view, 10,000 instances, cold (EC2 paging + 20 GetMetricData) | %.0f ms |\n' "$(echo "$cold * 1000" | bc -l)"
printf '| fleet view, cached (mean of 20) | %.1f ms |\n' "$(echo "$warm * 50" | bc -l)"
printf '| fleet view body | %d KB (%d KB gzip) |\n' $((size / 1024)) $((gzsize / 1024))
printf '| starts through the API (%d runs, 16 in parallel) | %.0f runs/s |\n' "$n" "$start_rate"
printf '| history, first page of 50, %d runs | %.1f ms |\n' "$n" "$(echo "$first * 1000" | bc -l)"
printf '| history filtered by instance | %.1f ms |\n' "$(echo "$byinst * 1000" | bc -l)"
printf '| history page after 500 rows (cursor) | %.1f ms |\n' "$(echo "$deep * 1000" | bc -l)"
printf '| audit CSV export, %d records | %.0f ms |\n' "$n" "$(echo "$audit * 1000" | bc -l)"
printf '| server RSS after all of the above | %d MB |\n' $((rss / 1024))
printf '| frontend wasm | %d KB raw, %d KB gzip |\n' $((wasm / 1024)) $((wasmgz / 1024))
