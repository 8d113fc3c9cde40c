"""Fixtures for interop tests: a Roost server started from the release binary.

Each test module gets its own server (a fresh data folder on a free port) so
tests cannot see each other's nodes. ROOST_BIN overrides the binary path.
"""
import os
import socket
import subprocess
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROOST_BIN = os.environ.get("ROOST_BIN", os.path.join(ROOT, "target", "release", "roost"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def four_letter(port, word):
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(word.encode())
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks).decode()


class RoostProcess:
    """A `roost server` child process with its own zoo.cfg and data folder."""

    def __init__(self, extra_config=""):
        self.dir = tempfile.mkdtemp(prefix="roost-interop-")
        self.port = free_port()
        cfg = os.path.join(self.dir, "zoo.cfg")
        with open(cfg, "w") as f:
            f.write(
                "tickTime=200\n"  # sessions may be as short as 400 ms: expiry tests stay quick
                f"dataDir={self.dir}/data\n"
                f"clientPort={self.port}\n"
                "clientPortAddress=127.0.0.1\n"
                "maxClientCnxns=0\n"
                "maxSessionTimeout=60000\n"
                "4lw.commands.whitelist=*\n"
                "extendedTypesEnabled=true\n"
                "znode.container.checkIntervalMs=100\n"
                + extra_config
            )
        self.log = open(os.path.join(self.dir, "roost.log"), "w")
        self.proc = subprocess.Popen(
            [ROOST_BIN, "server", "--config", cfg], stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if four_letter(self.port, "ruok") == "imok":
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"roost exited early, see {self.log.name}")
            time.sleep(0.05)
        raise RuntimeError("roost did not start")

    @property
    def hosts(self):
        return f"127.0.0.1:{self.port}"

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def roost():
    server = RoostProcess()
    yield server
    server.stop()


@pytest.fixture
def zk(roost):
    from kazoo.client import KazooClient

    client = KazooClient(hosts=roost.hosts, timeout=10)
    client.start(timeout=10)
    yield client
    client.stop()
    client.close()
