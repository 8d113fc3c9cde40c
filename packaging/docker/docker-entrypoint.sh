#!/usr/bin/env bash
# Entrypoint of the Roost image. It reads the environment variables of the
# official `zookeeper` image (ZOO_MY_ID, ZOO_SERVERS, ZOO_TICK_TIME, ...),
# so a compose file or Kubernetes manifest written for that image runs Roost
# unchanged: on first start it writes $ZOO_CONF_DIR/zoo.cfg and
# $ZOO_DATA_DIR/myid (each only if absent, so a mounted config or an existing
# data directory is kept), then runs the command it was given.
set -euo pipefail

: "${ZOO_CONF_DIR:=/conf}"
: "${ZOO_DATA_DIR:=/data}"
: "${ZOO_DATA_LOG_DIR:=/datalog}"
: "${ZOO_TICK_TIME:=2000}"
: "${ZOO_INIT_LIMIT:=5}"
: "${ZOO_SYNC_LIMIT:=2}"
: "${ZOO_AUTOPURGE_SNAPRETAINCOUNT:=3}"
: "${ZOO_AUTOPURGE_PURGEINTERVAL:=0}"
: "${ZOO_MAX_CLIENT_CNXNS:=60}"
: "${ZOO_STANDALONE_ENABLED:=true}"
: "${ZOO_ADMINSERVER_ENABLED:=true}"
# A single server whose client port is in its line: a standalone server.
: "${ZOO_SERVERS:=server.1=localhost:2888:3888;2181}"

config="$ZOO_CONF_DIR/zoo.cfg"
if [[ ! -f $config ]]; then
  mkdir -p "$ZOO_CONF_DIR"
  {
    printf '%s\n' \
      "dataDir=$ZOO_DATA_DIR" \
      "dataLogDir=$ZOO_DATA_LOG_DIR" \
      "tickTime=$ZOO_TICK_TIME" \
      "initLimit=$ZOO_INIT_LIMIT" \
      "syncLimit=$ZOO_SYNC_LIMIT" \
      "autopurge.snapRetainCount=$ZOO_AUTOPURGE_SNAPRETAINCOUNT" \
      "autopurge.purgeInterval=$ZOO_AUTOPURGE_PURGEINTERVAL" \
      "maxClientCnxns=$ZOO_MAX_CLIENT_CNXNS" \
      "standaloneEnabled=$ZOO_STANDALONE_ENABLED" \
      "admin.enableServer=$ZOO_ADMINSERVER_ENABLED"
    # Space-separated, one `server.N=...` line each.
    for server in $ZOO_SERVERS; do
      printf '%s\n' "$server"
    done
    if [[ -n ${ZOO_4LW_COMMANDS_WHITELIST:-} ]]; then
      printf '4lw.commands.whitelist=%s\n' "$ZOO_4LW_COMMANDS_WHITELIST"
    fi
    # Any other key=value lines, space-separated.
    for extra in ${ZOO_CFG_EXTRA:-}; do
      printf '%s\n' "$extra"
    done
  } > "$config"
fi

mkdir -p "$ZOO_DATA_DIR" "$ZOO_DATA_LOG_DIR"
if [[ ! -f $ZOO_DATA_DIR/myid ]]; then
  printf '%s\n' "${ZOO_MY_ID:-1}" > "$ZOO_DATA_DIR/myid"
fi

# The official image's command, for manifests that spell it out.
if [[ ${1:-} == zkServer.sh ]]; then
  set -- roost server --config "$config"
fi
exec "$@"
