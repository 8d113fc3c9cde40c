"""Read-only mode (`readonlymode.enabled`) with kazoo, as kazoo's own
TestReadOnlyMode drives it: a server cut off from the quorum keeps serving
reads to clients that asked for read-only sessions, answers their writes
NotReadOnly and `isro` with "ro", and its clients go back to read-write when
the quorum returns. Needs an ensemble (the ensemble pass)."""
import os
import threading
import time

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NotReadOnlyCallError
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.protocol.states import KeeperState

from conftest import RoostProcess, four_letter

pytestmark = pytest.mark.skipif(
    int(os.environ.get("ROOST_INTEROP_SERVERS", "1")) < 3, reason="read-only mode needs an ensemble"
)


def wait_for(predicate, timeout=15.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if predicate():
                return True
        except OSError:  # not listening yet
            pass
        time.sleep(0.05)
    return False


def test_a_server_without_quorum_serves_read_only_clients_until_it_returns():
    roost = RoostProcess("readonlymode.enabled=true\n")
    survivor, others = roost.servers[0], roost.servers[1:]
    hosts = "127.0.0.1:%d" % survivor.port
    try:
        writer = KazooClient(hosts=roost.hosts, timeout=10)
        writer.start(timeout=10)
        writer.create("/ro-data", b"before")
        writer.sync("/ro-data")
        writer.stop()
        assert wait_for(lambda: four_letter(survivor.port, "isro") == "rw")

        client = KazooClient(hosts=hosts, timeout=10, connection_retry=None, read_only=True)
        read_only = threading.Event()
        read_write = threading.Event()

        @client.add_listener
        def listen(state):
            if client.client_state == KeeperState.CONNECTED_RO:
                read_only.set()
            elif client.client_state == KeeperState.CONNECTED:
                read_write.set()

        client.start(timeout=10)
        assert client.get("/ro-data")[0] == b"before"
        for server in others:
            server.stop()
        assert wait_for(lambda: four_letter(survivor.port, "isro") == "ro")
        mode = [l for l in four_letter(survivor.port, "srvr").splitlines() if l.startswith("Mode:")]
        assert mode == ["Mode: read-only"]
        # A fresh client, as in kazoo's test (its xids start over).
        client.stop()
        read_write.clear()
        client.start(timeout=15)
        assert read_only.wait(15)
        assert client.client_state == KeeperState.CONNECTED_RO
        assert client.get("/ro-data")[0] == b"before"
        assert "ro-data" in client.get_children("/")
        with pytest.raises(NotReadOnlyCallError):
            client.create("/fred")
        with pytest.raises(NotReadOnlyCallError):
            client.set("/ro-data", b"after")
        # Pings keep the read-only session alive.
        time.sleep(3)
        assert client.client_state == KeeperState.CONNECTED_RO
        # A client that did not ask for read-only is refused.
        strict = KazooClient(hosts=hosts, timeout=2, connection_retry=None)
        with pytest.raises(KazooTimeoutError):
            strict.start(timeout=2)
        strict.stop()

        for server in others:
            server.start()
        assert wait_for(lambda: four_letter(survivor.port, "isro") == "rw", timeout=30)
        assert read_write.wait(30), client.client_state
        client.create("/fred", b"written once the quorum is back")
        assert client.get("/fred")[0] == b"written once the quorum is back"
        client.stop()
    finally:
        roost.stop()


def test_a_server_started_alone_serves_read_only_clients_at_once():
    roost = RoostProcess("readonlymode.enabled=true\n")
    try:
        writer = KazooClient(hosts=roost.hosts, timeout=10)
        writer.start(timeout=10)
        writer.create("/kept", b"v")
        writer.stop()
        for server in roost.servers:
            server.stop()
        alone = roost.servers[0]
        alone.start()
        assert wait_for(lambda: four_letter(alone.port, "isro") == "ro")
        client = KazooClient(hosts="127.0.0.1:%d" % alone.port, timeout=10, read_only=True)
        client.start(timeout=10)
        assert client.client_state == KeeperState.CONNECTED_RO
        assert client.exists("/") is not None
        with pytest.raises(NotReadOnlyCallError):
            client.create("/not-now")
        client.stop()
        for server in roost.servers[1:]:
            server.start()
        assert wait_for(lambda: four_letter(alone.port, "isro") == "rw", timeout=30)
        client = KazooClient(hosts=roost.hosts, timeout=10)
        client.start(timeout=10)
        assert client.get("/kept")[0] == b"v"
        client.stop()
    finally:
        roost.stop()
