#!/usr/bin/env bash
# Runs tlschat's benchmark scenarios: release server pinned to CPU 0, load generator to CPU 1.
#
#   bash benches/run.sh            # all scenarios, prints JSON lines and a table
#   SCENARIOS="fanout100" bash benches/run.sh
#   SCENARIOS="fanout100 irc100" bash benches/run.sh   # irc100: the same, receivers on IRC
#   SCENARIOS="cluster" bash benches/run.sh   # two nodes on Redis and PostgreSQL (benches/cluster.sh)
#
# Scratch files (database, certificate, logs) go to $BENCH_DIR (default /tmp/tlschat-bench-own).
# The server uses benches/bench.toml, which raises the per-IP caps, the line rate and the queue
# bound: all load comes from one address and floods on purpose. Everything is on 127.0.0.1 and
# each scenario is bounded in count and time.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DIR=${BENCH_DIR:-/tmp/tlschat-bench-own}
PORT=${PORT:-17443}
IRC_PORT=${IRC_PORT:-16697}
SCENARIOS=${SCENARIOS:-"fanout100 fanout1000 fanout10 rate2000 idle1000 idle5000 handshakes logins history"}
mkdir -p "$DIR"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

cargo build --release --quiet --bin tlschat --example loadgen
BIN=$ROOT/target/release/tlschat
LOADGEN=$ROOT/target/release/examples/loadgen
if [ ! -s "$DIR/certs/server.crt" ]; then
    "$BIN" cert generate --out "$DIR/certs" >/dev/null
fi

RESULTS=$DIR/results.jsonl
: >"$RESULTS"

run() { # name, loadgen args...
    local name=$1
    shift
    taskset -c 0 "$BIN" serve --listen "127.0.0.1:$PORT" --irc-listen "127.0.0.1:$IRC_PORT" --db "$DIR/bench.db" \
        --cert "$DIR/certs/server.crt" --key "$DIR/certs/server.key" \
        --config "$ROOT/benches/bench.toml" >"$DIR/serve.out" 2>"$DIR/serve.log" &
    local pid=$!
    for _ in $(seq 100); do grep -q "listening on" "$DIR/serve.out" 2>/dev/null && break; sleep 0.05; done
    local out
    out=$(taskset -c 1 "$LOADGEN" "$@" --port "$PORT" --db "$DIR/bench.db" --server-pid "$pid" --max-time 600) || true
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    echo "{\"name\":\"$name\",\"result\":${out:-null}}" | tee -a "$RESULTS"
}

for s in $SCENARIOS; do
    case $s in
    fanout100) run "$s" fanout --n 100 --senders 10 --lines 1000 ;;
    # The same, every receiver on IRC (senders on the line protocol).
    irc100) run "$s" fanout --n 100 --senders 10 --lines 1000 --irc-port "$IRC_PORT" ;;
    fanout1000) run "$s" fanout --n 1000 --senders 10 --lines 200 ;;
    fanout10) run "$s" fanout --n 10 --senders 10 --lines 10000 ;;
    rate2000) run "$s" fanout --n 100 --senders 10 --lines 2000 --rate 2000 ;;
    idle1000) run "$s" idle --n 1000 ;;
    idle5000) run "$s" idle --n 5000 ;;
    handshakes) run "$s" connect --concurrency 32 --total 3000 ;;
    logins) run "$s" connect --concurrency 32 --total 500 --login ;;
    history) run "$s" history --stored 10000 --payload 4000 --requests 50 --wants 20,500 ;;
    cluster) bash "$ROOT/benches/cluster.sh" ;;
    *) echo "unknown scenario $s" >&2; exit 2 ;;
    esac
done

python3 - "$RESULTS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("\n| scenario | result |\n|---|---|")
for r in rows:
    x = r["result"] or {}
    if x.get("scenario") == "fanout":
        cell = (f'{x["deliveries_per_s"]/1e6:.2f} M deliv/s, {x["us_per_delivery"]} µs/deliv, '
                f'lost {x["lost"]}, order violations {x["order_violations"]}, '
                f'p50 {x["p50_ms"]:.2f} ms, p99 {x["p99_ms"]:.2f} ms')
    elif x.get("scenario") == "idle":
        cell = f'{x["kib_per_session"]} KiB per idle session ({x["n"]} sessions)'
    elif x.get("scenario") == "history":
        cell = "; ".join(
            f'/history {h["want"]}: {h["ms_per_request"]} ms, server CPU {h["server_cpu_ms_per_request"]} ms'
            for h in x["results"]) + f' (per request; {x["stored"]} stored lines of {x["payload"]} bytes)'
    elif x.get("scenario") == "connect":
        what = "logins" if x["login"] else "handshakes"
        cell = f'{x["per_s"]} {what}/s, failed {x["failed"]}'
    else:
        cell = "failed"
    print(f'| {r["name"]} | {cell} |')
PY
