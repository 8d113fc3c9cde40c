"""`reconfig` driven by kazoo and zkCli against a reconfig-enabled ensemble,
configured as kazoo's own test harness configures ZooKeeper (reconfigEnabled,
super user `super:test`). The first tests follow kazoo's TestReconfig; the
others cover what it leaves out: NewConfigNoQuorum, ReconfigInProgress, a
participant turned observer and back, the watch on /zookeeper/config.

The ensemble runs in the ensemble pass (ROOST_INTEROP_SERVERS=3); the
standalone pass checks what ZooKeeper's standalone server answers."""
import os
import time

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import (
    BadArgumentsError,
    BadVersionError,
    NewConfigNoQuorumError,
    NoAuthError,
    ReconfigDisabledError,
    ReconfigInProcessError,
    UnimplementedError,
)

from conftest import RoostProcess, four_letter, free_port
from test_cli_clients import run_zkcli

RECONFIG_CONFIG = (
    "reconfigEnabled=true\n"
    "DigestAuthenticationProvider.superDigest=super:D/InIHSb7yEEbrWz8b9l71RjZJU=\n"
)
ENSEMBLE = int(os.environ.get("ROOST_INTEROP_SERVERS", "1")) > 1


@pytest.fixture(scope="module")
def reconfigurable():
    roost = RoostProcess(RECONFIG_CONFIG)
    yield roost
    roost.stop()


def client(roost, **kwargs):
    c = KazooClient(hosts=roost.hosts, timeout=10, **kwargs)
    c.start(timeout=10)
    return c


@pytest.fixture
def admin(reconfigurable):
    c = client(reconfigurable, auth_data=[("digest", "super:test")])
    yield c
    c.stop()
    c.close()


def version_of(config):
    return int(config.decode().split("\n")[-1].split("=")[1], base=16)


def member_line(roost, admin, sid):
    """Server `sid`'s line in /zookeeper/config, with its client port (a
    reconfig names it)."""
    config, _ = admin.get("/zookeeper/config")
    line = [l for l in config.decode().split("\n") if l.startswith("server.%d=" % sid)][0]
    if ";" not in line:
        line += ";127.0.0.1:%d" % roost.servers[sid - 1].port
    return line


def unused_server_line(sid, role):
    """A server nobody runs, on ports that refuse connections."""
    return "server.%d=127.0.0.1:%d:%d:%s;127.0.0.1:%d" % (
        sid,
        free_port(),
        free_port(),
        role,
        free_port(),
    )


def test_reconfig_is_disabled_by_default(zk):
    with pytest.raises(ReconfigDisabledError):
        zk.reconfig(joining=None, leaving="1", new_members=None)


def test_standalone_server_cannot_be_reconfigured(reconfigurable, admin):
    if ENSEMBLE:
        pytest.skip("standalone behaviour")
    with pytest.raises(UnimplementedError):
        admin.reconfig(joining=unused_server_line(9, "observer"), leaving=None, new_members=None)


needs_ensemble = pytest.mark.skipif(not ENSEMBLE, reason="reconfig needs an ensemble")


@needs_ensemble
def test_no_super_auth(reconfigurable):
    c = client(reconfigurable)
    try:
        with pytest.raises(NoAuthError):
            c.reconfig(
                joining="server.999=0.0.0.0:1234:2345:observer;3456",
                leaving=None,
                new_members=None,
            )
    finally:
        c.stop()


@needs_ensemble
def test_add_remove_observer_and_the_config_watch(reconfigurable, admin):
    watcher = client(reconfigurable)
    events = []
    watcher.get("/zookeeper/config", watch=events.append)
    joining = "server.100=0.0.0.0:%d:%d:observer;0.0.0.0:%d" % (
        free_port(),
        free_port(),
        free_port(),
    )
    data, stat = admin.reconfig(joining=joining, leaving=None, new_members=None)
    assert joining.encode() in data
    assert version_of(data) == stat.mzxid
    deadline = time.time() + 5
    while not events and time.time() < deadline:
        time.sleep(0.02)
    assert [e.type for e in events] == ["CHANGED"]
    assert watcher.get("/zookeeper/config")[0] == data
    watcher.stop()

    data, _ = admin.reconfig(joining=None, leaving="100", new_members=None)
    assert joining.encode() not in data

    # A config version in the future is refused.
    curver = version_of(data)
    with pytest.raises(BadVersionError):
        admin.reconfig(joining=joining, leaving=None, new_members=None, from_config=curver + 1)
    # The current one is accepted.
    data, _ = admin.reconfig(joining=joining, leaving=None, new_members=None, from_config=curver)
    data, _ = admin.reconfig(joining=None, leaving="100", new_members=None)
    assert b"server.100" not in data


@needs_ensemble
def test_bad_input(admin):
    with pytest.raises(BadArgumentsError):
        admin.reconfig(joining="some thing", leaving=None, new_members=None)
    with pytest.raises(BadArgumentsError):
        # Two voters must remain.
        admin.reconfig(joining=None, leaving="1,2", new_members=None)


@needs_ensemble
def test_new_voters_that_are_not_running_get_new_config_no_quorum(reconfigurable, admin):
    before, _ = admin.get("/zookeeper/config")
    first = member_line(reconfigurable, admin, 1)
    members = ",".join([first] + [unused_server_line(sid, "participant") for sid in (7, 8, 9)])
    with pytest.raises(NewConfigNoQuorumError):
        admin.reconfig(joining=None, leaving=None, new_members=members)
    after, _ = admin.get("/zookeeper/config")
    assert after == before
    # The refused servers are not left in the way of the next change.
    joining = unused_server_line(101, "observer")
    deadline = time.time() + 10
    while True:
        try:
            data, _ = admin.reconfig(joining=joining, leaving=None, new_members=None)
            break
        except ReconfigInProcessError:
            assert time.time() < deadline
            time.sleep(0.2)
    admin.reconfig(joining=None, leaving="101", new_members=None)


@needs_ensemble
def test_a_second_change_while_one_is_readied_is_refused(reconfigurable, admin):
    slow = admin.reconfig_async(
        joining=unused_server_line(7, "participant") + "," + unused_server_line(8, "participant")
        + "," + unused_server_line(9, "participant"),
        leaving=None,
        new_members=None,
        from_config=-1,
    )
    time.sleep(0.3)
    other = client(reconfigurable, auth_data=[("digest", "super:test")])
    try:
        with pytest.raises(ReconfigInProcessError):
            other.reconfig(joining=unused_server_line(102, "observer"), leaving=None, new_members=None)
    finally:
        other.stop()
    with pytest.raises(NewConfigNoQuorumError):
        slow.get(timeout=15)


@needs_ensemble
def test_a_bulk_change_replaces_the_membership(reconfigurable, admin):
    members = [member_line(reconfigurable, admin, sid) for sid in (1, 2, 3)]
    observer = unused_server_line(105, "observer")
    data, stat = admin.reconfig(
        joining=None, leaving=None, new_members="\n".join(members + [observer])
    )
    assert observer.encode() in data
    assert len(data.decode().split("\n")) == 5  # 4 servers and the version
    # From that version only, and back to the three servers.
    with pytest.raises(BadVersionError):
        admin.reconfig(
            joining=None, leaving=None, new_members=",".join(members), from_config=stat.mzxid - 1
        )
    data, _ = admin.reconfig(
        joining=None, leaving=None, new_members=",".join(members), from_config=stat.mzxid
    )
    assert b"server.105" not in data and len(data.decode().split("\n")) == 4


@needs_ensemble
def test_a_participant_becomes_an_observer_and_back(reconfigurable, admin):
    line = member_line(reconfigurable, admin, 3)
    server3 = reconfigurable.servers[2]

    def mode():
        return [l for l in four_letter(server3.port, "srvr").split("\n") if l.startswith("Mode:")]

    data, _ = admin.reconfig(joining=line.replace(":participant", ":observer"), leaving=None, new_members=None)
    assert b":observer" in [l for l in data.split(b"\n") if l.startswith(b"server.3=")][0]
    deadline = time.time() + 10
    while mode() != ["Mode: observer"]:
        assert time.time() < deadline, mode()
        time.sleep(0.1)
    data, _ = admin.reconfig(joining=line.replace(":observer", ":participant"), leaving=None, new_members=None)
    deadline = time.time() + 10
    while mode() not in (["Mode: follower"], ["Mode: leader"]):
        assert time.time() < deadline, mode()
        time.sleep(0.1)
    # Writes go on through the server that changed roles.
    c = KazooClient(hosts="127.0.0.1:%d" % server3.port, timeout=10)
    c.start(timeout=10)
    c.create("/after-role-change", b"x")
    c.stop()


@needs_ensemble
def test_zkcli_reconfig_adds_and_removes(reconfigurable):
    joining = unused_server_line(103, "observer")
    output = run_zkcli(
        reconfigurable,
        "\n".join(
            [
                "addauth digest super:test",
                "reconfig -add " + joining,
                "config",
                "reconfig -remove 103",
                "config",
                "quit",
                "",
            ]
        ),
    )
    assert output.count(joining.split("=", 1)[1]) >= 1, output
    assert "Committed new configuration" in output, output


@needs_ensemble
def test_roost_shell_reconfig_adds_and_removes(reconfigurable):
    import json
    import subprocess

    from conftest import ROOST_BIN

    joining = unused_server_line(104, "observer")
    script = "\n".join(
        [
            "addauth digest super:test",
            "reconfig -add " + joining,
            "reconfig -remove 104",
            "reconfig -v 1 -remove 104",
            "",
        ]
    )
    out = subprocess.run(
        [ROOST_BIN, "shell", "--json", "--server", reconfigurable.hosts],
        input=script,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=60,
    )
    results = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert [r["ok"] for r in results] == [True, True, True, False], out.stdout
    assert joining.split("=", 1)[1] in results[1]["config"]
    assert "server.104" not in results[2]["config"]
    assert "BadVersion" in results[3]["error"] or "version" in results[3]["error"].lower(), results[3]
