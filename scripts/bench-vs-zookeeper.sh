#!/usr/bin/env bash
# Side-by-side benchmark of Roost and Apache ZooKeeper (Debian package) on this
# machine: the same load tool (`roost bench`), the same settings (standalone,
# forceSync on, tickTime 2000, snapCount 100000), one server at a time.
#
#   scripts/bench-vs-zookeeper.sh [SECONDS_PER_RUN]      (default 10)
#
# Prints one JSON line per run and a markdown table at the end. Needs a
# release build (cargo build --release) and `apt-get install zookeeper`.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_RUN=${1:-10}
ROOST=target/release/roost
ZK_CP=/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar
[[ -x $ROOST ]] || { echo "build first: cargo build --release" >&2; exit 1; }
[[ -f /usr/share/java/zookeeper.jar ]] || { echo "install ZooKeeper: apt-get install zookeeper" >&2; exit 1; }
WORK=$(mktemp -d /tmp/roost-bench.XXXXXX)
PORT=$((23000 + RANDOM % 1000))
SERVER_PID=
trap 'stop_server; rm -rf "$WORK"' EXIT


ruok() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT && printf ruok >&3 && cat <&3" 2>/dev/null || true; }
srvr() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT && printf srvr >&3 && cat <&3" 2>/dev/null || true; }

wait_serving() {
  for _ in $(seq 600); do
    if srvr | grep -q '^Mode: standalone'; then return 0; fi
    sleep 0.1
  done
  echo "server did not start" >&2
  exit 1
}

stop_server() {
  if [[ -n ${SERVER_PID:-} ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=
}

write_cfg() { # write_cfg DIR
  mkdir -p "$1/data"
  cat >"$1/zoo.cfg" <<EOF
tickTime=2000
dataDir=$1/data
clientPort=$PORT
clientPortAddress=127.0.0.1
maxClientCnxns=0
4lw.commands.whitelist=*
admin.enableServer=false
snapCount=100000
EOF
}

start_roost() {
  local dir=$WORK/roost; rm -rf "$dir"; write_cfg "$dir"
  "$ROOST" server --config "$dir/zoo.cfg" >"$dir/server.log" 2>&1 &
  SERVER_PID=$!
  wait_serving
}

start_zookeeper() {
  local dir=$WORK/zk; rm -rf "$dir"; write_cfg "$dir"
  java -Xms1000m -Xmx1000m -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
    -cp "$ZK_CP" org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/zoo.cfg" \
    >"$dir/server.log" 2>&1 &
  SERVER_PID=$!
  wait_serving
}

declare -A RESULT
run() { # run SERVER NAME ARGS...
  local server=$1 name=$2; shift 2
  local line duration=$SECONDS_PER_RUN
  # A run bounded by --ops lasts until its count (at most 5 minutes).
  [[ " $* " == *" --ops "* ]] && duration=300
  line=$("$ROOST" bench --server "127.0.0.1:$PORT" --duration "$duration" --json "$@" 2>/dev/null)
  echo "{\"server\":\"$server\",\"run\":\"$name\",\"result\":$line}"
  RESULT[$server/$name]=$line
}

field() { # field JSON KEY  (top-level number, or latency_ms.KEY)
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); k=sys.argv[2]; print(d[k] if k in d else d["latency_ms"][k])' "$1" "$2"
}

RUNS=(
  "create 1x1|--workload create --sessions 1 --depth 1"
  "create 16x16|--workload create --sessions 16 --depth 16"
  "create 16x16 to 1M znodes|--workload create --sessions 16 --depth 16 --ops 1000000"
  "set 1x1|--workload set --sessions 1 --depth 1"
  "set 16x16|--workload set --sessions 16 --depth 16"
  "get 16x16|--workload get --sessions 16 --depth 16"
  "mixed 90% reads 16x16|--workload mixed --read-pct 90 --sessions 16 --depth 16"
  "multi 16x16|--workload multi --sessions 16 --depth 16"
)

for server in roost zookeeper; do
  "start_$server"
  # Warm up (ZooKeeper's JIT) and discard.
  "$ROOST" bench --server "127.0.0.1:$PORT" --workload set --duration 3 >/dev/null 2>&1
  for spec in "${RUNS[@]}"; do
    name=${spec%%|*}; args=${spec#*|}
    # shellcheck disable=SC2086
    run "$server" "$name" $args
  done
  stop_server
done

echo
echo "| run | Roost ops/s | ZooKeeper ops/s | ratio | Roost p50 / p99 ms | ZooKeeper p50 / p99 ms |"
echo "|---|---:|---:|---:|---|---|"
for spec in "${RUNS[@]}"; do
  name=${spec%%|*}
  r=${RESULT[roost/$name]}; z=${RESULT[zookeeper/$name]}
  ro=$(field "$r" ops_per_sec); zo=$(field "$z" ops_per_sec)
  printf '| %s | %.0f | %.0f | %.1fx | %s / %s | %s / %s |\n' "$name" "$ro" "$zo" \
    "$(python3 -c "print($ro/$zo)")" "$(field "$r" p50)" "$(field "$r" p99)" \
    "$(field "$z" p50)" "$(field "$z" p99)"
done
