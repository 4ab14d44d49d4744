#!/usr/bin/env bash
# bench/ec2_burst.sh: EC2's request budget while 1,000 runs end within a minute, and the Fleet page's
# latency idle and during that burst. A standalone sandbox (100 instances in us-east-1, one account;
# EC2's token buckets on, as in AWS: DescribeInstances 100 tokens refilled at 20 a second) and a
# console against it (SSM budgets raised so that the starts and the watcher keep up with the burst).
# Each burst starts RUNS runs (EnforceIMDSv2=optional on the 100 instances in turn, 16 requests at a
# time) and waits for all of them to end, while hey reads the Fleet page (GET /api/v1/instances,
# 50 rows): the first burst with one viewer reading as fast as it can, the second with 16 viewers
# reading VIEWER_QPS pages a second each (default 5: people, not a load test; a closed loop of 16
# would measure the two cores the console, the sandbox and hey share, not waiting for AWS). The sandbox counts DescribeInstances
# where EC2 would (GET /_sandbox/calls), the console its throttled attempts (/metrics). Prints table
# rows for BENCHMARKS.md. Needs hey (apt install hey) and python3. The machine is shared: run it
# twice and compare.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-1000}
VIEWERS=${VIEWERS:-16}
VIEWER_QPS=${VIEWER_QPS:-5}
IDLE_REQUESTS=${IDLE_REQUESTS:-400}
command -v hey >/dev/null || { echo "bench/ec2_burst.sh needs hey: apt install hey" >&2; exit 1; }
[ -n "${NO_BUILD:-}" ] || cargo build --release -p backend --bin imds-console >/dev/null 2>&1
bin=${BIN:-./target/release/imds-console}
dir=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sbport=$(port)
$bin sandbox --listen "127.0.0.1:$sbport" --region us-east-1 --sandbox-fleet 100 --sandbox-accounts 1 \
  --sandbox-speed 600 2>"$dir/sandbox.log" &
pids+=($!)
for _ in $(seq 100); do grep -q "listening" "$dir/sandbox.log" 2>/dev/null && break; sleep 0.2; done
sandbox="http://127.0.0.1:$sbport"
$bin serve --listen 127.0.0.1:0 --data-dir "$dir/data" --sandbox-url "$sandbox" --region us-east-1 \
  --ssm-read-rate 50 --ssm-start-rate 50 --poll-ms 250 --metrics-token bench-metrics-token-0123 \
  2>"$dir/console.log" &
pids+=($!)
console=$!
for _ in $(seq 100); do grep -q " is at " "$dir/console.log" 2>/dev/null && break; sleep 0.2; done
base=$(grep -o 'http://[0-9.:]*' "$dir/console.log" | head -1)
token=$($bin token create --user admin --data-dir "$dir/data" 2>/dev/null)
page="$base/api/v1/instances?limit=50"
curl -s -o /dev/null -H "authorization: Bearer $token" "$page"   # the first reading

# hey's mean, median and p99 in ms, and its request count.
latency() {
  awk '/Average:/ {avg = $2 * 1000} / 50% in / {p50 = $3 * 1000} / 99% in / {p99 = $3 * 1000}
       /\[200\]/ {n = $2} END {printf "%.1f %.1f %.1f %d\n", avg, p50, p99, n}'
}
throttled() {
  curl -s -H "authorization: Bearer bench-metrics-token-0123" "$base/metrics" |
    awk -F' ' '/imds_console_aws_calls_total\{service="ec2",operation="DescribeInstances",outcome="throttled"\}/ {print $2}' |
    awk '{s += $1} END {print s + 0}'
}

# Starts RUNS runs, 16 requests at a time, and waits until every one has ended; prints the seconds
# the starts took, the seconds until the last run ended, and the answers' statuses.
burst() {
  python3 - "$base" "$token" "$RUNS" <<'PY'
import json, sys, time, urllib.request, concurrent.futures as cf
base, token, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
h = {"authorization": f"Bearer {token}", "content-type": "application/json"}
def call(path, body=None):
    req = urllib.request.Request(base + path, data=None if body is None else json.dumps(body).encode(), headers=h)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, {}
ids = [i["instance_id"] for i in call("/api/v1/instances?limit=500")[1]["instances"] if i["state"] == "running"]
t0 = time.time()
def start(n):
    return call("/api/v1/executions", {"parameters": {"InstanceId": ids[n % len(ids)], "EnforceIMDSv2": "optional"}})
with cf.ThreadPoolExecutor(16) as pool:
    answers = list(pool.map(start, range(runs)))
started = time.time() - t0
execs = [b.get("execution_id") for s, b in answers if s in (201, 202) and b.get("execution_id")]
statuses = {}
for s, _ in answers:
    statuses[s] = statuses.get(s, 0) + 1
pending = set(execs)
while pending and time.time() - t0 < 600:
    for e in list(pending)[:200]:
        s, b = call(f"/api/v1/executions/{e}")
        if b.get("summary", {}).get("status") in ("Success", "Failed", "Cancelled", "TimedOut", "CompletedWithSuccess", "CompletedWithFailure", "Rejected"):
            pending.discard(e)
    time.sleep(0.2)
print(f"{started:.1f} {time.time() - t0:.1f} {len(execs)} {len(pending)} {json.dumps(statuses).replace(' ', '')}")
PY
}

# Waits until the console has read every place the runs changed (the page says refreshing: false).
settle() {
  for _ in $(seq 300); do
    curl -s -H "authorization: Bearer $token" "$page" | grep -q '"refreshing":false' && return
    sleep 0.2
  done
}

measure_burst() {
  local viewers=$1 rate=() since t0 before
  [ "$viewers" -eq 1 ] || rate=(-q "$VIEWER_QPS")
  read -r idle_avg idle_p50 idle_p99 idle_n < <(hey -n "$IDLE_REQUESTS" -c "$viewers" "${rate[@]}" -H "authorization: Bearer $token" "$page" | latency)
  before=$(throttled)
  since=$(date +%s%3N)
  t0=$(date +%s.%N)
  hey -z 600s -c "$viewers" "${rate[@]}" -H "authorization: Bearer $token" "$page" >"$dir/hey.$viewers" &
  hey_pid=$!
  read -r started ended made left statuses < <(burst)
  kill -INT "$hey_pid"; wait "$hey_pid" 2>/dev/null || true
  read -r avg p50 p99 n < <(latency <"$dir/hey.$viewers")
  settle
  window=$(python3 -c "import time; print(round(time.time() - $t0, 1))")
  calls=$(curl -s "$sandbox/_sandbox/calls?since_ms=$since")
  read -r described peak < <(echo "$calls" | python3 -c 'import json,sys; d=json.load(sys.stdin); o=[x for x in d["operations"] if x["operation"]=="ec2:DescribeInstances"]; print(o[0]["count"] if o else 0, o[0]["peak_per_second"] if o else 0)')
  refused=$(( $(throttled) - before ))
  budget=$(python3 -c "print(int(100 + 20 * $window))")
  echo "| $RUNS runs on 100 instances, $viewers viewer(s) on the Fleet page: starts ${started} s, last run ended at ${ended} s (${made} started, ${left} unfinished; answers $statuses) | DescribeInstances ${described} in ${window} s (${made} of them the starts' target checks), busiest second ${peak}; EC2's bucket allows $budget in that time (100 + 20/s); ${refused} throttled |"
  echo "| Fleet page (50 rows), $viewers viewer(s)${rate:+ at $VIEWER_QPS pages/s each}: idle vs during the burst | idle mean ${idle_avg} ms, p50 ${idle_p50} ms, p99 ${idle_p99} ms ($idle_n requests); burst mean ${avg} ms, p50 ${p50} ms, p99 ${p99} ms ($n requests): p50 $(python3 -c "print(round($p50 / max($idle_p50, 0.1), 2))")×, p99 $(python3 -c "print(round($p99 / max($idle_p99, 0.1), 2))")× idle |"
}

measure_burst 1
measure_burst "$VIEWERS"
echo "| console resident memory after both bursts | $(( $(awk '/VmRSS/ {print $2}' /proc/$console/status) / 1024 )) MB |"
