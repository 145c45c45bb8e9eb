#!/usr/bin/env bash
# Runs a private Redis, a private PostgreSQL and three tlschat nodes on this machine, all on
# 127.0.0.1, to try cluster mode. Everything lives in $DIR (default: a new temporary directory)
# and stops on Ctrl-C.
#
#   bash contrib/cluster/run-local.sh          # nodes on 127.0.0.1:7441, :7442, :7443
#   openssl s_client -connect 127.0.0.1:7442   # log in as alice, password "change me now 1"
#
# Needs redis-server, PostgreSQL's initdb/postgres (Debian: apt-get install redis-server
# postgresql) and a built tlschat (cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-$PWD/target/release/tlschat}
DIR=${DIR:-$(mktemp -d /tmp/tlschat-cluster.XXXXXX)}
REDIS_PORT=${REDIS_PORT:-16379}
PG_PORT=${PG_PORT:-15432}
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
PASSWORD="change me now 1"
[ "$(id -u)" != 0 ] || { echo "run this as a normal user: PostgreSQL refuses to run as root" >&2; exit 1; }
[ -x "$BIN" ] || { echo "build tlschat first: cargo build --release" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "redis-server is missing" >&2; exit 1; }
[ -x "$PG_BIN/initdb" ] || { echo "PostgreSQL's initdb is missing (set PG_BIN)" >&2; exit 1; }
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ -f "$DIR/pg/postmaster.pid" ] && "$PG_BIN/pg_ctl" -D "$DIR/pg" -m fast stop >/dev/null 2>&1 || true
    echo "stopped; files are in $DIR"
}
trap cleanup EXIT INT TERM
mkdir -p "$DIR"
echo "files in $DIR"

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$DIR" --appendonly yes \
    --appendfsync everysec --save "" >"$DIR/redis.log" 2>&1 &
pids+=($!)

"$PG_BIN/initdb" -D "$DIR/pg" -U tlschat --auth=trust >"$DIR/initdb.log"
"$PG_BIN/pg_ctl" -D "$DIR/pg" -o "-p $PG_PORT -k $DIR -c listen_addresses=127.0.0.1" \
    -l "$DIR/pg.log" -w start >/dev/null
"$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U tlschat tlschat
DB="postgres://tlschat@127.0.0.1:$PG_PORT/tlschat"
REDIS="redis://127.0.0.1:$REDIS_PORT/0"

for name in alice bob carol; do
    echo "$PASSWORD" | "$BIN" user add "$name" --password-stdin --db "$DB" >/dev/null
done
mkdir -p "$DIR/certs"
"$BIN" cert generate --out "$DIR/certs" >/dev/null
for i in 1 2 3; do
    mkdir -p "$DIR/node$i"
    (cd "$DIR/node$i" && exec "$BIN" serve --db "$DB" --cluster "$REDIS" --node-name "node$i" \
        --listen "127.0.0.1:744$i" --cert "$DIR/certs/server.crt" --key "$DIR/certs/server.key" \
        >"$DIR/node$i/serve.out" 2>"$DIR/node$i/serve.log") &
    pids+=($!)
done
sleep 1
echo "nodes on 127.0.0.1:7441, :7442 and :7443; users alice, bob, carol (password \"$PASSWORD\")"
echo "connect with: openssl s_client -quiet -connect 127.0.0.1:7441"
wait
