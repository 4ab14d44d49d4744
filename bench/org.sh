#!/usr/bin/env bash
# bench/org.sh: the console at an organisation's scale. A standalone sandbox with 50,000 instances in
# 20 accounts and two regions, a console listing the organisation through Organizations and reading
# every account through its member role. Measures the first full inventory, warm page and summary
# times (median of 20), the largest response body, and the console's resident memory (the sandbox runs
# as its own process). Prints table rows for BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
FLEET=${FLEET:-50000}
ACCOUNTS=${ACCOUNTS:-20}
cargo build --release -p backend --bin imds-console >/dev/null 2>&1
bin=./target/release/imds-console
dir=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$dir"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sbport=$(port)
$bin sandbox --listen "127.0.0.1:$sbport" --region us-east-1 --region eu-west-1 \
  --sandbox-fleet "$FLEET" --sandbox-accounts "$ACCOUNTS" 2>"$dir/sandbox.log" &
pids+=($!)
for _ in $(seq 300); do grep -q "listening" "$dir/sandbox.log" 2>/dev/null && break; sleep 0.2; done
$bin serve --listen 127.0.0.1:0 --data-dir "$dir/data" --sandbox-url "http://127.0.0.1:$sbport" \
  --region us-east-1 --region eu-west-1 --organization 2>"$dir/console.log" &
console=$!
pids+=($console)
for _ in $(seq 100); do grep -q " is at " "$dir/console.log" 2>/dev/null && break; sleep 0.2; done
base=$(grep -o 'http://[0-9.:]*' "$dir/console.log" | head -1)
token=$($bin token create --user admin --data-dir "$dir/data" 2>/dev/null)
auth=(-H "authorization: Bearer $token" -H "accept-encoding: gzip")

t0=$(date +%s%3N)
accounts=$(curl -s "${auth[@]}" --compressed "$base/api/v1/accounts")
t1=$(date +%s%3N)
n_accounts=$(echo "$accounts" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(len(d["accounts"]), sum(a["instances"] for a in d["accounts"]))')
echo "| First full inventory (${n_accounts% *} accounts × 2 regions, ${n_accounts#* } instances, with IMDSv1 usage) | $(( t1 - t0 )) ms |"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
timed() {
  for _ in $(seq 20); do
    curl -s -o /dev/null -w '%{time_total}\n' "${auth[@]}" "$base/api/v1/$1"
  done | awk '{printf "%.1f\n", $1*1000}' | median
}
# Warm: the snapshot is reused for 15 s; keep it warm between the measurements.
curl -s -o /dev/null "${auth[@]}" "$base/api/v1/instances"
echo "| \`GET /instances\` (first page of 100), warm, median of 20 | $(timed 'instances') ms |"
echo "| \`GET /instances?compliance=noncompliant&sort=v1&desc=true&q=web\`, warm | $(timed 'instances?compliance=noncompliant&sort=v1&desc=true&q=web') ms |"
echo "| \`GET /fleet/summary?by=account\`, warm | $(timed 'fleet/summary?by=account') ms |"
echo "| \`GET /fleet/summary?by=tag:Team\`, warm | $(timed 'fleet/summary?by=tag:Team') ms |"
raw=$(curl -s "${auth[@]/accept-encoding: gzip/accept-encoding: identity}" "$base/api/v1/instances?limit=500" | wc -c)
gz=$(curl -s "${auth[@]}" "$base/api/v1/instances?limit=500" | wc -c)
echo "| Largest response: \`GET /instances?limit=500\` | $(( raw / 1024 )) KB raw, $(( gz / 1024 )) KB gzip |"
page=$(curl -s "${auth[@]/accept-encoding: gzip/accept-encoding: identity}" "$base/api/v1/instances" | wc -c)
echo "| Default page (100 rows) | $(( page / 1024 )) KB raw |"
rss=$(ps -o rss= -p "$console")
echo "| Console resident memory after the inventory (sandbox in its own process) | $(( rss / 1024 )) MB |"

# After a run the console finished, the next page reads that run's account and region again, alone.
member=$(echo "$accounts" | python3 -c 'import json,sys; print(json.load(sys.stdin)["accounts"][1]["account_id"])')
target=$(curl -s "${auth[@]}" --compressed "$base/api/v1/instances?account=$member&region=eu-west-1&compliance=noncompliant&state=running&limit=1" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["instances"][0]["instance_id"])')
exec_id=$(curl -s "${auth[@]}" --compressed -H 'content-type: application/json' "$base/api/v1/executions" \
  -d "{\"account\":\"$member\",\"region\":\"eu-west-1\",\"parameters\":{\"InstanceId\":\"$target\"},\"override\":{\"reason\":\"benchmark of the incremental inventory\"}}" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["execution_id"])')
for _ in $(seq 600); do
  status=$(curl -s "${auth[@]}" --compressed "$base/api/v1/executions/$exec_id" | python3 -c 'import json,sys; print(json.load(sys.stdin)["summary"]["status"])')
  [ "$status" = Success ] && break
  sleep 0.1
done
t0=$(date +%s%3N)
tokens=$(curl -s "${auth[@]}" --compressed "$base/api/v1/instances?q=$target" | python3 -c 'import json,sys; print(json.load(sys.stdin)["instances"][0]["metadata"]["http_tokens"])')
t1=$(date +%s%3N)
echo "| First page after a run finished in one member account and region (that place read again alone; shows HttpTokens $tokens) | $(( t1 - t0 )) ms |"
