#!/usr/bin/env bash
# Two cluster nodes on a private Redis and a private PostgreSQL (in $BENCH_DIR), the fan-out
# scenario with every sender on node 1 and the receivers spread over both nodes; then the same
# load on one ordinary node (SQLite) for comparison. Prints the JSON lines, the Redis commands
# per chat line (INFO commandstats) and a table.
#
#   bash benches/cluster.sh                      # N=100, 10 senders × 1000 lines, flat out
#   RATE=2000 LINES=2000 bash benches/cluster.sh # 2,000 lines/s into 100 members
#
# Node 1 runs on CPU 0, node 2 on CPU 1; Redis, PostgreSQL and the load generator are not
# pinned (this machine has two cores), so the latencies include their contention. Everything
# is on 127.0.0.1 and bounded in count and time. Needs redis-server and PostgreSQL
# (Debian: apt-get install redis-server postgresql).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DIR=${BENCH_DIR:-/tmp/tlschat-bench-cluster}
N=${N:-100}
SENDERS=${SENDERS:-10}
LINES=${LINES:-1000}
RATE=${RATE:-0}
REDIS_PORT=${REDIS_PORT:-16380}
PG_PORT=${PG_PORT:-15433}
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
command -v redis-server >/dev/null || { echo "redis-server is missing" >&2; exit 1; }
[ -x "$PG_BIN/initdb" ] || { echo "PostgreSQL's initdb is missing (set PG_BIN)" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cargo build --release --quiet --bin tlschat --example loadgen
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/tlschat
LOADGEN=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/loadgen

rm -rf "$DIR"
mkdir -p "$DIR/redis" "$DIR/pg"
# PostgreSQL refuses to run as root: then its server runs as nobody.
AS_PG=()
if [ "$(id -u)" = 0 ]; then
    chown nobody "$DIR/pg"
    AS_PG=(setpriv --reuid=nobody --regid=nogroup --clear-groups --)
fi
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    "${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$DIR/pg/data" -m fast stop >/dev/null 2>&1 || true
}
trap cleanup EXIT INT TERM

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$DIR/redis" --save "" \
    --appendonly yes --appendfsync everysec >"$DIR/redis.log" 2>&1 &
pids+=($!)
"${AS_PG[@]}" "$PG_BIN/initdb" -D "$DIR/pg/data" -U tlschat --auth=trust >"$DIR/initdb.log"
"${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$DIR/pg/data" -l "$DIR/pg/pg.log" -w \
    -o "-p $PG_PORT -k $DIR/pg -c listen_addresses=127.0.0.1" start >/dev/null
"${AS_PG[@]}" "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U tlschat tlschat
DB="postgres://tlschat@127.0.0.1:$PG_PORT/tlschat"
REDIS="redis://127.0.0.1:$REDIS_PORT/0"
"$BIN" cert generate --out "$DIR/certs" >/dev/null

serve() { # cpu port log args...
    local cpu=$1 port=$2 log=$3
    shift 3
    taskset -c "$cpu" ${PROFILE:+perf record ${PERF_ARGS:--F 999 -g} -o "$DIR/$log.perf" --} "$BIN" serve --listen "127.0.0.1:$port" --cert "$DIR/certs/server.crt" \
        --key "$DIR/certs/server.key" --config "$ROOT/benches/bench.toml" --admin-socket off \
        "$@" >"$DIR/$log.out" 2>"$DIR/$log.log" &
    pids+=($!)
    for _ in $(seq 200); do grep -q "listening on" "$DIR/$log.out" 2>/dev/null && return; sleep 0.05; done
    echo "$log did not start:" >&2
    cat "$DIR/$log.log" >&2
    exit 1
}
FANOUT=(fanout --n "$N" --senders "$SENDERS" --lines "$LINES" --rate "$RATE" --max-time 600)

# The load generator creates the users on --db before it logs them in.
serve 0 17451 node1 --db "$DB" --cluster "$REDIS" --node-name bench-1
node1=${pids[-1]}
serve 1 17452 node2 --db "$DB" --cluster "$REDIS" --node-name bench-2
node2=${pids[-1]}
redis-cli -p "$REDIS_PORT" CONFIG RESETSTAT >/dev/null
two=$("$LOADGEN" "${FANOUT[@]}" --port 17451 --also-ports 17452 --db "$DB" \
    --server-pid "$node1" --also-pids "$node2")
echo "{\"name\":\"two nodes\",\"result\":$two}"
redis-cli -p "$REDIS_PORT" INFO commandstats | tr -d '\r' | grep -E "^cmdstat_(evalsha|eval|xread|xadd|hget|hgetall|hset|hdel)" \
    >"$DIR/commandstats.txt" || true
kill "$node1" "$node2"
wait "$node1" "$node2" 2>/dev/null || true

serve 0 17453 one --db "$DIR/one.db"
one_pid=${pids[-1]}
one=$("$LOADGEN" "${FANOUT[@]}" --port 17453 --db "$DIR/one.db" --server-pid "$one_pid")
echo "{\"name\":\"one node\",\"result\":$one}"

python3 - "$two" "$one" "$DIR/commandstats.txt" "$((SENDERS * LINES))" <<'PY'
import json, sys
two, one = json.loads(sys.argv[1]), json.loads(sys.argv[2])
lines = int(sys.argv[4])
print("\n| run | deliveries/s | µs/delivery (server CPU) | p50 ms | p99 ms | lost | order violations |")
print("|---|---|---|---|---|---|---|")
for name, r in (("one node", one), ("two nodes", two)):
    per = r["us_per_delivery"] if name == "one node" else \
        ", ".join(f'node {i + 1}: {n["us_per_delivery"]}' for i, n in enumerate(r["nodes"]))
    print(f'| {name} | {r["deliveries_per_s"]:.0f} | {per} | {r["p50_ms"]:.2f} | {r["p99_ms"]:.2f} '
          f'| {r["lost"]} | {r["order_violations"]} |')
print(f"\nRedis commands for {lines} chat lines (INFO commandstats, calls):")
for row in open(sys.argv[3]):
    name, stats = row.strip().split(":", 1)
    calls = dict(kv.split("=") for kv in stats.split(","))["calls"]
    print(f"  {name[8:]}: {calls} ({int(calls) / lines:.2f} per line)")
PY
