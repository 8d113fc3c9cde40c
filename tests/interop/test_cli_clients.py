"""Roost driven by Apache ZooKeeper's own command-line clients: the Java zkCli
and the C client's cli_mt (Debian packages `zookeeper` and `zookeeper-bin`)."""
import os
import subprocess
import time
import uuid

import pytest

ZKCLI = "/usr/share/zookeeper/bin/zkCli.sh"
CLI_MT = "/usr/lib/zookeeper/bin/cli_mt"


def require(path):
    if not os.path.exists(path):
        if os.environ.get("ROOST_SKIP_ZK"):
            pytest.skip(f"{path} not installed and ROOST_SKIP_ZK is set")
        pytest.fail(f"{path} not installed: apt-get install zookeeper zookeeper-bin")


def run_zkcli(roost, script):
    require(ZKCLI)
    env = dict(os.environ, ZOO_LOG_DIR="/tmp", CLIENT_JVMFLAGS="-Xmx128m")
    out = subprocess.run(
        [ZKCLI, "-server", roost.hosts],
        input=script,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
        env=env,
    )
    return out.stdout


def test_zkcli_crud_acl_watch_and_multi_style_commands(roost):
    base = f"/zkcli-{uuid.uuid4().hex[:6]}"
    output = run_zkcli(
        roost,
        "\n".join(
            [
                f"create {base} hello",
                f"get {base}",
                f"set {base} world",
                f"get -s {base}",
                f"create -e {base}/eph",
                f"create -s {base}/seq- x",
                f"create -c {base}/container",
                f"create -t 60000 {base}/ttl",
                f"ls {base}",
                "addauth digest u:p",
                f"create {base}/acl d auth:u:p:cdrwa",
                f"getAcl {base}/acl",
                f"delete {base}",
                "whoami",
                "getEphemerals",
                f"getAllChildrenNumber {base}",
                f"addWatch -m PERSISTENT_RECURSIVE {base}",
                f"set {base} again",
                f"get -w {base}/acl",
                f"set {base}/acl changed",
                "config",
                "quit",
                "",
            ]
        ),
    )
    expected = [
        f"Created {base}",
        "hello",
        "world",
        "dataVersion = 1",
        "dataLength = 5",
        f"Created {base}/eph",
        f"Created {base}/seq-0000000001",
        f"Created {base}/container",
        f"Created {base}/ttl",
        "[container, eph, seq-0000000001, ttl]",
        "'digest,'u:Jq7wMyA/w2Vd5WIDAKdu4OIIFEQ=",
        f"Node not empty: {base}",
        "digest: u",
        f"[{base}/eph]",
        "6",
        f"WatchedEvent state:SyncConnected type:NodeDataChanged path:{base}",
        f"WatchedEvent state:SyncConnected type:NodeDataChanged path:{base}/acl",
    ]
    for line in expected:
        assert line in output, f"{line!r} missing from zkCli output:\n{output}"


def test_zkcli_reports_errors_like_zookeeper(roost):
    base = f"/zkerr-{uuid.uuid4().hex[:6]}"
    output = run_zkcli(
        roost,
        "\n".join(
            [
                f"get {base}/missing",
                f"create {base} x",
                f"create {base} x",
                f"set -v 7 {base} y",
                f"create {base}/c",
                f"delete {base}",
                "quit",
                "",
            ]
        ),
    )
    for line in [
        f"Node does not exist: {base}/missing",
        f"Node already exists: {base}",
        f"version No is not valid : {base}",
        f"Node not empty: {base}",
    ]:
        assert line in output, f"{line!r} missing from zkCli output:\n{output}"


def test_c_client_cli_mt(roost):
    require(CLI_MT)
    base = f"/cmt-{uuid.uuid4().hex[:6]}"
    proc = subprocess.Popen(
        [CLI_MT, roost.hosts],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    time.sleep(1.0)  # cli_mt drops commands typed before its session is up
    for command in [
        f"create {base}",
        f"set {base} world",
        f"get {base}",
        f"create +e {base}/e",
        f"create +s {base}/s",
        f"ls {base}",
        f"wget {base}",
        f"set {base} again",
        f"delete {base}/e",
        f"exists {base}/e",
        f"sync {base}",
    ]:
        proc.stdin.write(command + "\n")
        proc.stdin.flush()
        time.sleep(0.3)
    proc.stdin.write("quit\n")
    proc.stdin.flush()
    output, _ = proc.communicate(timeout=30)
    for line in [
        "state = CONNECTED_STATE",
        f"name = {base}",
        "world",
        f"name = {base}/s0000000001",
        f"Watcher CHANGED_EVENT state = CONNECTED_STATE for path {base}",
        f"Error -101 for {base}/e",
    ]:
        assert line in output, f"{line!r} missing from cli_mt output:\n{output}"
