"""Roost driven by kazoo, the Python ZooKeeper client, as its users drive it."""
import os
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import (
    BadVersionError,
    NoAuthError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    RolledBackError,
)
from kazoo.protocol.states import EventType, KazooState
from kazoo.security import make_digest_acl, make_acl, OPEN_ACL_UNSAFE


def unique(prefix):
    return f"/{prefix}-{uuid.uuid4().hex[:8]}"


def wait_for(predicate, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_crud_and_stat_fields(zk):
    base = unique("crud")
    path = zk.create(base, b"v0")
    assert path == base
    data, stat = zk.get(base)
    assert data == b"v0"
    assert stat.version == 0 and stat.dataLength == 2 and stat.numChildren == 0
    assert stat.czxid == stat.mzxid == stat.pzxid and stat.ctime == stat.mtime
    assert stat.ephemeralOwner == 0
    stat2 = zk.set(base, b"v1")
    assert stat2.version == 1 and stat2.mzxid > stat.mzxid and stat2.czxid == stat.czxid
    with pytest.raises(BadVersionError):
        zk.set(base, b"v2", version=0)
    zk.create(base + "/child", b"c")
    parent = zk.exists(base)
    assert parent.numChildren == 1 and parent.cversion == 1 and parent.pzxid > stat2.mzxid
    with pytest.raises(NotEmptyError):
        zk.delete(base)
    with pytest.raises(NodeExistsError):
        zk.create(base + "/child")
    with pytest.raises(NoNodeError):
        zk.create(base + "/missing/child")
    zk.delete(base, recursive=True)
    assert zk.exists(base) is None
    with pytest.raises(NoNodeError):
        zk.get(base)


def test_sequential_numbering_follows_parent_cversion(zk):
    base = unique("seq")
    zk.create(base)
    first = zk.create(base + "/n-", sequence=True)
    second = zk.create(base + "/n-", sequence=True)
    assert first == base + "/n-0000000000"
    assert second == base + "/n-0000000001"
    zk.delete(first)
    third = zk.create(base + "/n-", sequence=True)
    assert third == base + "/n-0000000002"
    assert sorted(zk.get_children(base)) == ["n-0000000001", "n-0000000002"]


def test_ephemerals_vanish_when_their_session_expires(roost, zk):
    base = unique("eph")
    zk.create(base)
    # A separate process owns the ephemeral and is killed without closing its session.
    script = (
        "import sys, time\n"
        "from kazoo.client import KazooClient\n"
        f"c = KazooClient(hosts='{roost.hosts}', timeout=1.0)\n"
        "c.start()\n"
        f"c.create('{base}/owned', b'x', ephemeral=True)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert owner.stdout.readline().strip() == b"ready"
    stat = zk.exists(base + "/owned")
    assert stat is not None and stat.ephemeralOwner != 0
    deleted = threading.Event()

    def watcher(event):
        if event.type == EventType.DELETED:
            deleted.set()

    zk.exists(base + "/owned", watch=watcher)
    owner.kill()
    owner.wait()
    assert deleted.wait(15), "ephemeral not deleted after its session expired"
    assert zk.get_children(base) == []


def test_ephemeral_nodes_cannot_have_children(zk):
    base = unique("ephparent")
    zk.create(base, ephemeral=True)
    with pytest.raises(Exception) as info:
        zk.create(base + "/child")
    assert type(info.value).__name__ == "NoChildrenForEphemeralsError"


def test_data_exists_and_child_watches(zk, roost):
    base = unique("watch")
    zk.create(base)
    events = []
    zk.get(base, watch=events.append)
    zk.exists(base + "/new", watch=events.append)
    zk.get_children(base, watch=events.append)
    other = KazooClient(hosts=roost.hosts)
    other.start()
    try:
        other.set(base, b"changed")
        other.create(base + "/new")
        assert wait_for(lambda: len(events) == 3)
        kinds = sorted((e.type, e.path) for e in events)
        assert kinds == sorted(
            [
                (EventType.CHANGED, base),
                (EventType.CREATED, base + "/new"),
                (EventType.CHILD, base),
            ]
        )
        # One-shot: further changes fire nothing.
        other.set(base, b"again")
        time.sleep(0.3)
        assert len(events) == 3
        zk.get(base + "/new", watch=events.append)
        other.delete(base + "/new")
        assert wait_for(lambda: len(events) == 4)
        assert (events[3].type, events[3].path) == (EventType.DELETED, base + "/new")
    finally:
        other.stop()


def test_data_watch_and_children_watch_recipes(zk):
    base = unique("recipes")
    zk.create(base, b"0")
    seen_data = []
    seen_children = []
    zk.DataWatch(base, lambda data, stat: seen_data.append(data))
    zk.ChildrenWatch(base, lambda children: seen_children.append(sorted(children)))
    zk.set(base, b"1")
    zk.create(base + "/a")
    assert wait_for(lambda: seen_data[-1:] == [b"1"])
    assert wait_for(lambda: seen_children[-1:] == [["a"]])


def test_transactions_commit_all_or_nothing(zk):
    base = unique("multi")
    zk.create(base, b"")
    t = zk.transaction()
    t.create(base + "/a", b"1")
    t.set_data(base, b"x")
    t.check(base, 1)
    results = t.commit()
    assert results[0] == base + "/a"
    assert results[1].version == 1
    assert results[2] is True

    t = zk.transaction()
    t.create(base + "/b", b"")
    t.check(base, 99)
    t.delete(base + "/a")
    results = t.commit()
    # ZooKeeper's layout: ops before the failure report OK (kazoo: RolledBackError),
    # the failing op its error, later ops RuntimeInconsistency.
    assert isinstance(results[0], RolledBackError)
    assert isinstance(results[1], BadVersionError)
    assert type(results[2]).__name__ == "RuntimeInconsistency"
    assert zk.exists(base + "/b") is None
    assert zk.exists(base + "/a") is not None


def test_digest_acls_and_auth(zk, roost):
    base = unique("acl")
    acl = make_digest_acl("alice", "secret", all=True)
    read_only = make_acl("world", "anyone", read=True)
    zk.create(base, b"top", acl=[acl, read_only])
    with pytest.raises(NoAuthError):
        zk.set(base, b"nope")
    alice = KazooClient(hosts=roost.hosts, auth_data=[("digest", "alice:secret")])
    alice.start()
    try:
        alice.set(base, b"ok")
        acls, _ = alice.get_acls(base)
        assert acls[0].id.id.startswith("alice:") and not acls[0].id.id.endswith(":x")
        masked, _ = zk.get_acls(base)
        assert masked[0].id.id == "alice:x"
        alice.set_acls(base, [acl])
        with pytest.raises(NoAuthError):
            zk.get(base)
        assert alice.get(base)[0] == b"ok"
    finally:
        alice.stop()


def test_kazoo_lock_is_exclusive(roost):
    path = unique("lock")
    holders = []
    max_holders = [0]
    guard = threading.Lock()
    clients = [KazooClient(hosts=roost.hosts) for _ in range(5)]
    for c in clients:
        c.start()

    def contend(client, name):
        for _ in range(4):
            with client.Lock(path, name):
                with guard:
                    holders.append(name)
                    max_holders[0] = max(max_holders[0], len(holders))
                time.sleep(0.005)
                with guard:
                    holders.remove(name)

    threads = [threading.Thread(target=contend, args=(c, f"w{i}")) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for c in clients:
        c.stop()
    assert max_holders[0] == 1


def test_kazoo_read_write_lock(roost):
    path = unique("rwlock")
    state = {"readers": 0, "writers": 0, "max_readers": 0, "violations": 0}
    guard = threading.Lock()
    clients = [KazooClient(hosts=roost.hosts) for _ in range(6)]
    for c in clients:
        c.start()
    barrier = threading.Barrier(4)

    def reader(client):
        barrier.wait()
        for _ in range(3):
            with client.ReadLock(path):
                with guard:
                    state["readers"] += 1
                    state["max_readers"] = max(state["max_readers"], state["readers"])
                    if state["writers"]:
                        state["violations"] += 1
                time.sleep(0.05)
                with guard:
                    state["readers"] -= 1

    def writer(client):
        for _ in range(3):
            with client.WriteLock(path):
                with guard:
                    state["writers"] += 1
                    if state["writers"] > 1 or state["readers"]:
                        state["violations"] += 1
                time.sleep(0.01)
                with guard:
                    state["writers"] -= 1

    threads = [threading.Thread(target=reader, args=(c,)) for c in clients[:4]]
    threads += [threading.Thread(target=writer, args=(c,)) for c in clients[4:]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for c in clients:
        c.stop()
    assert state["violations"] == 0
    assert state["max_readers"] >= 2, "readers never overlapped"


def test_session_survives_reconnection(roost):
    client = KazooClient(hosts=roost.hosts, timeout=10)
    states = []
    client.add_listener(states.append)
    client.start()
    try:
        base = unique("reconnect")
        client.create(base, ephemeral=True)
        session = client.client_id
        events = []
        client.get(base, watch=events.append)
        # Drop the TCP connection under the client; it reconnects with the same session.
        client._connection._socket.shutdown(socket.SHUT_RDWR)
        assert wait_for(lambda: KazooState.SUSPENDED in states and states[-1] == KazooState.CONNECTED)
        assert client.client_id == session
        assert client.exists(base) is not None
        other = KazooClient(hosts=roost.hosts)
        other.start()
        other.set(base, b"after")
        other.stop()
        assert wait_for(lambda: len(events) == 1), "watch re-registered after reconnect"
    finally:
        client.stop()


def test_four_letter_word_commands(zk, roost):
    assert zk.command(b"ruok") == "imok"
    modes = ("Mode: leader", "Mode: follower") if roost.is_ensemble else ("Mode: standalone",)
    assert any(mode in zk.command(b"srvr") for mode in modes)
    assert zk.server_version()[:2] == (3, 9)
