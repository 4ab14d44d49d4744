#!/usr/bin/env bash
# bench/rollout.sh: SSM calls per second while a 1,000-target rollout runs and 100 people watch it.
# Starts a standalone sandbox (5,000 instances in one region, so SSM's per-region budget is what is
# counted) and a console against it, starts one tag-targeted rollout (Team=web, about 1,000 targets),
# opens 100 viewers (each an event stream plus a detail read every second) for 30 s, then reads the
# sandbox's own count of calls (GET /_sandbox/calls). Prints table rows for BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p backend --bin imds-console >/dev/null 2>&1
bin=./target/release/imds-console
dir=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sbport=$(port)
$bin sandbox --listen "127.0.0.1:$sbport" --region us-east-1 --sandbox-fleet 5000 --sandbox-accounts 1 --sandbox-speed 60 2>"$dir/sandbox.log" &
pids+=($!)
for _ in $(seq 100); do grep -q "listening" "$dir/sandbox.log" 2>/dev/null && break; sleep 0.2; done
sandbox="http://127.0.0.1:$sbport"
$bin serve --listen 127.0.0.1:0 --data-dir "$dir/data" --sandbox-url "$sandbox" --region us-east-1 \
  --ssm-read-rate 3 --poll-ms 1000 2>"$dir/console.log" &
pids+=($!)
for _ in $(seq 100); do grep -q " is at " "$dir/console.log" 2>/dev/null && break; sleep 0.2; done
base=$(grep -o 'http://[0-9.:]*' "$dir/console.log" | head -1)
token=$($bin token create --user admin --data-dir "$dir/data" 2>/dev/null)
auth=(-H "authorization: Bearer $token")

run=$(curl -s "${auth[@]}" -H 'content-type: application/json' \
  -d '{"region":"us-east-1","parameters":{"EnforceIMDSv2":"optional"},"rate_control":{"targets":{"tag":{"key":"Team","value":"web"}},"max_concurrency":"100","max_errors":"100%"}}' \
  "$base/api/v1/executions" | grep -o '"execution_id":"[^"]*"' | cut -d'"' -f4)
since=$(date +%s%3N)
for _ in $(seq 100); do
  curl -s -N "${auth[@]}" "$base/api/v1/events" >/dev/null &
  ( end=$((SECONDS + 30)); while (( SECONDS < end )); do
      curl -s -o /dev/null "${auth[@]}" "$base/api/v1/executions/$run"; sleep 1; done ) &
done
sleep 30
calls=$(curl -s "$sandbox/_sandbox/calls?since_ms=$since")
reads=$(echo "$calls" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(o["count"] for o in d["operations"] if o["operation"].startswith(("ssm:Get","ssm:Describe"))))')
peak=$(echo "$calls" | python3 -c 'import json,sys; print(json.load(sys.stdin)["services"]["ssm"]["peak_per_second"])')
progress=$(curl -s "${auth[@]}" "$base/api/v1/executions/$run" | python3 -c 'import json,sys; p=json.load(sys.stdin)["rate_control"]["progress"]; print(p["succeeded"] + p["failed"], "of", p["total"], "targets done")')
echo "| SSM reads during 30 s of a 1,000-target rollout with 100 viewers (read budget 3/s) | $reads reads, $(echo "scale=2; $reads / 30" | bc) per second on average, busiest second $peak; $progress |"
