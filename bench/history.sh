#!/usr/bin/env bash
# bench/history.sh: GET /api/v1/executions with 10,000 runs in the store, in requests per second and
# p99 latency, next to /api/v1/health measured the same way in the same run, and the console's memory.
# The runs are one real run (started through the API, finished) copied 9,999 times into the store
# with their own IDs and times, so the history query reads a store of realistic rows. Needs hey
# (apt install hey) and python3.
#   STORE=postgres bash bench/history.sh   the same on PostgreSQL: a fresh database on the server at
#                  $PG_SERVER (default: the one ./x.sh test starts), dropped at the end; needs psql.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-10000}
SECONDS_EACH=${SECONDS_EACH:-10}
CONCURRENCY=${CONCURRENCY:-8}
STORE=${STORE:-sqlite}
PG_SERVER=${PG_SERVER:-postgres://imds_test:imds_test@127.0.0.1:5432/postgres}
command -v hey >/dev/null || { echo "bench/history.sh needs hey: apt install hey" >&2; exit 1; }
cargo build --release -p backend --bin imds-console >/dev/null 2>&1
dir=$(mktemp -d)
store_args=()
if [ "$STORE" = postgres ]; then
  database="imds_bench_$$"
  psql -q "$PG_SERVER" -c "CREATE DATABASE $database"
  store_args=(--database-url "${PG_SERVER%/*}/$database")
fi
cleanup() {
  kill "$pid" 2>/dev/null || true
  rm -rf "$dir"
  if [ "$STORE" = postgres ]; then sleep 1; psql -q "$PG_SERVER" -c "DROP DATABASE $database"; fi
}
trap cleanup EXIT
start_console() {
  ./target/release/imds-console serve --listen 127.0.0.1:0 --data-dir "$dir" "${store_args[@]}" \
    --sandbox-speed 1000 --sandbox-accounts 1 2>"$dir/log" &
  pid=$!
  disown "$pid"
  for _ in $(seq 100); do grep -q " is at " "$dir/log" 2>/dev/null && break; sleep 0.2; done
  base=$(grep -o 'http://[0-9.:]*' "$dir/log" | tail -1)
}
start_console
token=$(./target/release/imds-console token create --user admin --data-dir "$dir" "${store_args[@]}" 2>/dev/null)
auth="authorization: Bearer $token"
id=$(curl -s -H "$auth" "$base/api/v1/instances?region=us-east-1" | grep -o '"instance_id":"i-[0-9a-f]*"' | head -1 | cut -d'"' -f4)
exec_id=$(curl -s -H "$auth" -H 'content-type: application/json' \
  -d "{\"parameters\":{\"InstanceId\":\"$id\",\"EnforceIMDSv2\":\"optional\"}}" "$base/api/v1/executions" \
  | grep -o '"execution_id":"[^"]*"' | cut -d'"' -f4)
for _ in $(seq 100); do
  curl -s -H "$auth" "$base/api/v1/executions/$exec_id" | grep -q '"status":"Success"' && break
  sleep 0.2
done
kill "$pid"; sleep 1
if [ "$STORE" = postgres ]; then
  # The same copies, made by the server: unique columns suffixed, each a second older than the last.
  psql -q "${PG_SERVER%/*}/$database" <<SQL
DO \$\$
DECLARE cols text; picks text;
BEGIN
  SELECT string_agg(quote_ident(column_name), ', ' ORDER BY ordinal_position),
         string_agg(CASE
           WHEN column_name IN ('client_token', 'execution_id', 'run_tag') THEN quote_ident(column_name) || ' || ''-'' || g'
           WHEN column_name = 'sort_time' THEN 'to_char((sort_time::timestamptz - g * interval ''1 second'') AT TIME ZONE ''UTC'', ''YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'')'
           ELSE quote_ident(column_name) END, ', ' ORDER BY ordinal_position)
    INTO cols, picks
    FROM information_schema.columns WHERE table_name = 'runs' AND column_name <> 'id';
  EXECUTE format('INSERT INTO runs (%s) SELECT %s FROM runs, generate_series(1, %s) g WHERE id = (SELECT min(id) FROM runs)',
                 cols, picks, $RUNS - 1);
  INSERT INTO run_instances (run_id, instance_id)
    SELECT id, instance_id FROM runs WHERE instance_id IS NOT NULL ON CONFLICT DO NOTHING;
END \$\$;
ANALYZE runs;
ANALYZE run_instances;
SQL
  echo "runs in the store: $(psql -qAt "${PG_SERVER%/*}/$database" -c 'SELECT COUNT(*) FROM runs')" >&2
else
python3 - "$dir/imds-console.db" "$RUNS" <<'PY'
import sqlite3, sys, datetime
db, total = sys.argv[1], int(sys.argv[2])
con = sqlite3.connect(db)
cols = [r[1] for r in con.execute("PRAGMA table_info(runs)") if r[1] != "id"]
unique = {"client_token", "execution_id", "run_tag"}
row = dict(zip(cols, con.execute(f"SELECT {', '.join(cols)} FROM runs ORDER BY id LIMIT 1").fetchone()))
base = datetime.datetime.fromisoformat(row["sort_time"].replace("Z", "+00:00"))
rows = []
for i in range(1, total):
    r = dict(row)
    for c in unique:
        if r.get(c):
            r[c] = f"{r[c]}-{i}"
    t = (base - datetime.timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    r["sort_time"] = t if len(t) == len(row["sort_time"]) else row["sort_time"]
    rows.append(tuple(r[c] for c in cols))
con.executemany(f"INSERT INTO runs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", rows)
con.execute("INSERT INTO run_instances (run_id, instance_id) SELECT id, instance_id FROM runs WHERE instance_id IS NOT NULL AND id > 1")
con.commit()
print(f"runs in the store: {con.execute('SELECT COUNT(*) FROM runs').fetchone()[0]}", file=sys.stderr)
PY
fi
start_console
measure() {
  local out rps p99
  out=$(hey -z "${SECONDS_EACH}s" -c "$CONCURRENCY" ${HEY_FLAGS:-} -H "$auth" "$1")
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p99=$(echo "$out" | awk '/ 99% in / {print $3 * 1000}')
  echo "$rps $p99"
}
curl -s -o /dev/null -H "$auth" "$base/api/v1/executions?limit=50"   # warm the page cache
# The baseline and the history in turns, ROUNDS times (and the baseline once more at the end), and the
# medians of each: the machine's own noise moves a single measurement by up to 1.5x.
ROUNDS=${ROUNDS:-3}
median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
health_all=() history_all=() health_p99s=() history_p99s=()
for _ in $(seq "$ROUNDS"); do
  read -r rps p99 < <(measure "$base/api/v1/health"); health_all+=("$rps"); health_p99s+=("$p99")
  read -r rps p99 < <(measure "$base/api/v1/executions?limit=50"); history_all+=("$rps"); history_p99s+=("$p99")
done
read -r rps p99 < <(measure "$base/api/v1/health"); health_all+=("$rps"); health_p99s+=("$p99")
health_rps=$(printf '%s\n' "${health_all[@]}" | median)
health_p99=$(printf '%s\n' "${health_p99s[@]}" | median)
history_rps=$(printf '%s\n' "${history_all[@]}" | median)
history_p99=$(printf '%s\n' "${history_p99s[@]}" | median)
echo "health runs: ${health_all[*]} req/s; history runs: ${history_all[*]} req/s" >&2
rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
printf '| `GET /api/v1/health` (baseline, median of %d runs between the history runs), %d clients, %d s each | %.0f req/s, p99 %.1f ms |\n' "$((ROUNDS + 1))" "$CONCURRENCY" "$SECONDS_EACH" "$health_rps" "$health_p99"
printf '| `GET /api/v1/executions?limit=50`, %d runs in %s, %d clients, median of %d runs of %d s | %.0f req/s (%.2f× the baseline), p99 %.1f ms |\n' \
  "$RUNS" "$STORE" "$CONCURRENCY" "$ROUNDS" "$SECONDS_EACH" "$history_rps" "$(echo "$history_rps / $health_rps" | bc -l)" "$history_p99"
printf '| console resident memory after the runs | %d MB |\n' $((rss / 1024))
