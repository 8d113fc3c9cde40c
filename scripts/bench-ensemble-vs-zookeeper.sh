#!/usr/bin/env bash
# Side-by-side benchmark of a 3-server Roost ensemble and a 3-server Apache
# ZooKeeper ensemble (Debian package) on loopback: the same zoo.cfg (tickTime
# 2000, initLimit 10, syncLimit 5, forceSync on), the same load tool
# (`roost bench`, sessions spread over all three servers), one ensemble at a
# time; then the time from SIGKILL of the leader to the first acknowledged
# write (scripts/failover.py, kazoo on the two survivors), TRIALS times.
#
#   scripts/bench-ensemble-vs-zookeeper.sh [SECONDS_PER_RUN] [TRIALS]   (10, 5)
#
# Needs a release build, `apt-get install zookeeper` and `pip install kazoo`.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_RUN=${1:-10}
TRIALS=${2:-5}
ROOST=$PWD/target/release/roost
ZK_CP=/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar
[[ -x $ROOST ]] || { echo "build first: cargo build --release" >&2; exit 1; }
[[ -f /usr/share/java/zookeeper.jar ]] || { echo "install ZooKeeper: apt-get install zookeeper" >&2; exit 1; }
WORK=$(mktemp -d /tmp/roost-ensemble-bench.XXXXXX)
BASE=$((24000 + RANDOM % 1000))
declare -a PIDS=()
trap 'stop_all; rm -rf "$WORK"' EXIT


client_port() { echo $((BASE + $1)); }
fourlw() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && printf $2 >&3 && cat <&3" 2>/dev/null || true; }
mode() { fourlw "$(client_port "$1")" srvr | sed -n 's/^Mode: //p'; }
connstr() { # connstr [EXCEPT_INDEX]
  local out=() i
  for i in 0 1 2; do [[ $i == "${1:-}" ]] || out+=("127.0.0.1:$(client_port $i)"); done
  (IFS=,; echo "${out[*]}")
}

write_cfg() { # write_cfg KIND INDEX
  local dir=$WORK/$1/s$2
  mkdir -p "$dir/data"
  echo $(($2 + 1)) >"$dir/data/myid"
  {
    echo "tickTime=2000"; echo "initLimit=10"; echo "syncLimit=5"
    echo "dataDir=$dir/data"; echo "clientPort=$(client_port "$2")"
    echo "clientPortAddress=127.0.0.1"; echo "maxClientCnxns=0"
    echo "4lw.commands.whitelist=*"; echo "admin.enableServer=false"
    echo "snapCount=100000"
    for j in 0 1 2; do echo "server.$((j + 1))=127.0.0.1:$((BASE + 10 + j)):$((BASE + 20 + j))"; done
  } >"$dir/zoo.cfg"
}

start_one() { # start_one KIND INDEX
  local dir=$WORK/$1/s$2
  if [[ $1 == roost ]]; then
    "$ROOST" server --config "$dir/zoo.cfg" >>"$dir/server.log" 2>&1 &
  else
    java -Xms1000m -Xmx1000m -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
      -cp "$ZK_CP" org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/zoo.cfg" \
      >>"$dir/server.log" 2>&1 &
  fi
  PIDS[$2]=$!
}

wait_all_serving() {
  for _ in $(seq 900); do
    local serving=0 leaders=0 i m
    for i in 0 1 2; do
      m=$(mode $i)
      [[ $m == leader || $m == follower ]] && serving=$((serving + 1))
      [[ $m == leader ]] && leaders=$((leaders + 1))
    done
    [[ $serving == 3 && $leaders == 1 ]] && return 0
    sleep 0.1
  done
  echo "ensemble did not start" >&2
  exit 1
}

leader_index() {
  local i
  for i in 0 1 2; do [[ $(mode $i) == leader ]] && { echo $i; return; }; done
  echo "no leader" >&2; exit 1
}

stop_all() {
  local pid
  for pid in "${PIDS[@]}"; do
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then kill "$pid"; wait "$pid" 2>/dev/null || true; fi
  done
  PIDS=()
}

declare -A RESULT
run() { # run KIND NAME ARGS...
  local kind=$1 name=$2; shift 2
  local line
  line=$("$ROOST" bench --server "$(connstr)" --duration "$SECONDS_PER_RUN" --json "$@" 2>/dev/null)
  echo "{\"server\":\"$kind\",\"run\":\"$name\",\"result\":$line}"
  RESULT[$kind/$name]=$line
}

field() { # field JSON KEY  (top-level number, or latency_ms.KEY)
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); k=sys.argv[2]; print(d[k] if k in d else d["latency_ms"][k])' "$1" "$2"
}

RUNS=(
  "create 16x16|--workload create --sessions 16 --depth 16"
  "set 16x16|--workload set --sessions 16 --depth 16"
  "get 16x16|--workload get --sessions 16 --depth 16"
  "multi 16x16|--workload multi --sessions 16 --depth 16"
  "set 1x1|--workload set --sessions 1 --depth 1"
)

declare -A FAILOVERS
for kind in roost zookeeper; do
  for i in 0 1 2; do write_cfg $kind $i; done
  for i in 0 1 2; do start_one $kind $i; done
  wait_all_serving
  "$ROOST" bench --server "$(connstr)" --workload set --duration 3 >/dev/null 2>&1
  for spec in "${RUNS[@]}"; do
    name=${spec%%|*}; args=${spec#*|}
    # shellcheck disable=SC2086
    run "$kind" "$name" $args
  done
  times=()
  for _ in $(seq "$TRIALS"); do
    leader=$(leader_index)
    line=$(python3 scripts/failover.py --servers "$(connstr "$leader")" --kill-pid "${PIDS[$leader]}")
    wait "${PIDS[$leader]}" 2>/dev/null || true
    echo "{\"server\":\"$kind\",\"run\":\"failover\",\"killed\":$((leader + 1)),\"result\":$line}"
    times+=("$(field "$line" failover_ms)")
    start_one $kind "$leader"
    wait_all_serving
    sleep 2
  done
  FAILOVERS[$kind]="${times[*]}"
  stop_all
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
echo
echo "failover (ms from SIGKILL of the leader to the first acknowledged write):"
echo "  Roost:     ${FAILOVERS[roost]}"
echo "  ZooKeeper: ${FAILOVERS[zookeeper]}"
