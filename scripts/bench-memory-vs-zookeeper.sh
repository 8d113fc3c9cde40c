#!/usr/bin/env bash
# Server memory beside Apache ZooKeeper (Debian package) under the loads of
# scripts/bench-memory.py: a reconnect storm of SESSIONS sessions, a client
# that stops reading while SETS watch events are fired at it, and ZNODES
# persistent znodes (40-byte paths, 100-byte data). Each run starts a fresh
# standalone server (forceSync on, tickTime 2000, ZooKeeper with its default
# 1 GB heap), one server at a time. For ZooKeeper the live heap after a full
# GC is printed too (jcmd), since a JVM's RSS follows its heap size, not its data.
#
#   scripts/bench-memory-vs-zookeeper.sh [SESSIONS] [SETS] [ZNODES]
#       (defaults 2000, 100000, 200000; LOADS="znodes" runs only that load)
#
# Prints one JSON line per run and a markdown table at the end. Needs a
# release build (cargo build --release) and `apt-get install zookeeper`.
set -euo pipefail
cd "$(dirname "$0")/.."

SESSIONS=${1:-2000}
SETS=${2:-100000}
ZNODES=${3:-200000}
read -r -a LOADS <<<"${LOADS:-storm slow znodes}"
ROOST=target/release/roost
ZK_CP=/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar
[[ -x $ROOST ]] || { echo "build first: cargo build --release" >&2; exit 1; }
[[ -f /usr/share/java/zookeeper.jar ]] || { echo "install ZooKeeper: apt-get install zookeeper" >&2; exit 1; }
WORK=$(mktemp -d /tmp/roost-bench-memory.XXXXXX)
PORT=$((24000 + RANDOM % 1000))
SERVER_PID=
trap 'stop_server; rm -rf "$WORK"' EXIT

# Both ends of every session need a descriptor.
ulimit -n "$((SESSIONS * 2 + 1024))" 2>/dev/null || true

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
maxSessionTimeout=60000
4lw.commands.whitelist=*
admin.enableServer=false
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
declare -A LIVE_HEAP
# Used heap after a full GC, in MiB (ZooKeeper only).
live_heap_mib() {
  command -v jcmd >/dev/null || { echo "?"; return; }
  jcmd "$SERVER_PID" GC.run >/dev/null 2>&1 || true
  jcmd "$SERVER_PID" GC.heap_info 2>/dev/null |
    python3 -c 'import re,sys; m=re.search(r"used (\d+)K", sys.stdin.read()); print(round(int(m.group(1))/1024,1) if m else "?")'
}

for server in roost zookeeper; do
  for load in "${LOADS[@]}"; do
    "start_$server"
    case $load in
      storm) count=$SESSIONS ;;
      slow) count=$SETS ;;
      *) count=$ZNODES ;;
    esac
    base_heap=
    [[ $server == zookeeper && $load == znodes ]] && base_heap=$(live_heap_mib)
    line=$(python3 scripts/bench-memory.py "127.0.0.1:$PORT" "$SERVER_PID" "$load" "$count")
    echo "{\"server\":\"$server\",\"result\":$line}"
    RESULT[$server/$load]=$line
    if [[ -n $base_heap ]]; then
      LIVE_HEAP[$server/$load]="live heap after GC $base_heap → $(live_heap_mib) MiB"
      echo "# zookeeper ${LIVE_HEAP[$server/$load]}"
    fi
    stop_server
  done
done

field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

echo
echo "| load | server | RSS before (MiB) | RSS peak (MiB) | growth (MiB) | observed |"
echo "|---|---|---:|---:|---:|---|"
for load in "${LOADS[@]}"; do
  for server in roost zookeeper; do
    r=${RESULT[$server/$load]}
    before=$(field "$r" rss_before_mib); peak=$(field "$r" rss_peak_mib)
    if [[ $load == storm ]]; then
      seen="$(field "$r" opened) opened in $(field "$r" open_s) s, $(field "$r" reattached) re-attached in $(field "$r" storm_s) s"
    elif [[ $load == znodes ]]; then
      seen="$(field "$r" acked) znodes in $(field "$r" create_s) s, $(field "$r" bytes_per_znode) B/znode${LIVE_HEAP[$server/$load]:+; ${LIVE_HEAP[$server/$load]}}"
    else
      seen="$(field "$r" acked) sets in $(field "$r" write_s) s; slow client got $(field "$r" events_delivered) events, closed: $(field "$r" slow_connection_closed)"
    fi
    printf '| %s | %s | %s | %s | %.1f | %s |\n' "$load" "$server" "$before" "$peak" \
      "$(python3 -c "print($peak-$before)")" "$seen"
  done
done
