#!/usr/bin/env bash
# bench/sources.sh: the Sources page at an organisation's scale. A standalone sandbox with 20 accounts
# and 17 Regions (340 places, 2,000 instances) where every AWS call takes LATENCY_MS (default 50 ms,
# about a call to AWS from a nearby host; the sandbox alone answers in about a millisecond, which
# would hide how calls are spread), and a console with --organization over all of them. Measures the
# first listing of GET /api/v1/sources (every place read), a listing once the readings are older than
# --fleet-refresh-secs (a refresh is due), and the calls one full reading makes. Prints table rows
# for BENCHMARKS.md. BIN picks the binary (to compare builds); needs python3.
set -euo pipefail
cd "$(dirname "$0")/.."
ACCOUNTS=${ACCOUNTS:-20}
LATENCY_MS=${LATENCY_MS:-50}
REFRESH_SECS=${REFRESH_SECS:-20}
REGIONS=(us-east-1 us-east-2 us-west-1 us-west-2 ca-central-1 sa-east-1 eu-west-1 eu-west-2 eu-west-3
  eu-central-1 eu-north-1 ap-south-1 ap-northeast-1 ap-northeast-2 ap-northeast-3 ap-southeast-1 ap-southeast-2)
[ -n "${NO_BUILD:-}" ] || cargo build --release -p backend --bin imds-console >/dev/null 2>&1
bin=${BIN:-./target/release/imds-console}
dir=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$dir"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
region_args=()
for r in "${REGIONS[@]}"; do region_args+=(--region "$r"); done
sbport=$(port)
${SANDBOX_BIN:-$bin} sandbox --listen "127.0.0.1:$sbport" "${region_args[@]}" --sandbox-fleet 2000 \
  --sandbox-accounts "$ACCOUNTS" --sandbox-fault "*:latency_ms=$LATENCY_MS" 2>"$dir/sandbox.log" &
pids+=($!)
for _ in $(seq 300); do grep -q "listening" "$dir/sandbox.log" 2>/dev/null && break; sleep 0.2; done
sandbox="http://127.0.0.1:$sbport"
$bin serve --listen 127.0.0.1:0 --data-dir "$dir/data" --sandbox-url "$sandbox" "${region_args[@]}" \
  --organization --fleet-refresh-secs "$REFRESH_SECS" 2>"$dir/console.log" &
pids+=($!)
for _ in $(seq 100); do grep -q " is at " "$dir/console.log" 2>/dev/null && break; sleep 0.2; done
base=$(grep -o 'http://[0-9.:]*' "$dir/console.log" | head -1)
token=$($bin token create --user admin --data-dir "$dir/data" 2>/dev/null)
auth=(-H "authorization: Bearer $token")
ms() { python3 -c 'import sys, time; print(int(time.time() * 1000))'; }

curl -s -o /dev/null "${auth[@]}" "$base/api/v1/accounts"   # the inventory first: its reading is not the sources'
since=$(ms)
t0=$(ms)
places=$(curl -s -m 900 "${auth[@]}" "$base/api/v1/sources" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(len(d["places"]), sum(1 for p in d["places"] if p["as_of"]))')
t1=$(ms)
calls=$(curl -s "$sandbox/_sandbox/calls?since_ms=$since" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(o["count"] for o in d["operations"] if o["operation"] not in ("ec2:DescribeInstances", "cloudwatch:GetMetricData")))')
echo "| First Sources listing, $ACCOUNTS accounts × ${#REGIONS[@]} Regions (${places% *} places, ${places#* } read), ${LATENCY_MS} ms a call | $(( t1 - t0 )) ms, $calls calls to EC2, Auto Scaling and STS |"
sleep "$REFRESH_SECS"
sleep 1
for n in 1 2 3; do
  t0=$(ms)
  curl -s -o /dev/null -m 900 "${auth[@]}" "$base/api/v1/sources"
  t1=$(ms)
  echo "| Sources listing $n once the readings are older than --fleet-refresh-secs ($REFRESH_SECS s) | $(( t1 - t0 )) ms |"
done
