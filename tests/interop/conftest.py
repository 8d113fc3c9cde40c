"""Fixtures for interop tests: a Roost server started from the release binary.

Each test module gets its own server (a fresh data folder on a free port) so
tests cannot see each other's nodes. ROOST_BIN overrides the binary path.
ROOST_INTEROP_SERVERS=3 (or 5) runs the same tests against an ensemble of
that many servers, clients given every server in their connect string.
"""
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROOST_BIN = os.environ.get("ROOST_BIN", os.path.join(ROOT, "target", "release", "roost"))


_next_port = [20000 + (os.getpid() * 7919) % 12000]


def free_port():
    """A free port below the kernel's ephemeral range, so no outgoing
    connection takes it before the server binds it."""
    for _ in range(12000):
        port = _next_port[0]
        _next_port[0] = 20000 + (port - 20000 + 1) % 12000
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


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


BASE_CONFIG = (
    "tickTime=200\n"  # sessions may be as short as 400 ms: expiry tests stay quick
    "clientPortAddress=127.0.0.1\n"
    "maxClientCnxns=0\n"
    "maxSessionTimeout=60000\n"
    "4lw.commands.whitelist=*\n"
    "extendedTypesEnabled=true\n"
    "znode.container.checkIntervalMs=100\n"
)


class RoostServer:
    """One `roost server` child process with its own zoo.cfg and data folder."""

    def __init__(self, directory, port, config):
        self.dir = directory
        self.port = port
        os.makedirs(os.path.join(directory, "data"), exist_ok=True)
        cfg = os.path.join(directory, "zoo.cfg")
        with open(cfg, "w") as f:
            f.write(f"dataDir={directory}/data\nclientPort={port}\n" + config)
        self.cfg = cfg
        self.log = open(os.path.join(directory, "roost.log"), "w")
        self.start()

    def start(self):
        """Starts the server process (again, after `stop`, on the same data)."""
        if self.log.closed:
            self.log = open(self.log.name, "a")
        self.proc = subprocess.Popen(
            [ROOST_BIN, "server", "--config", self.cfg], stdout=self.log, stderr=subprocess.STDOUT
        )

    def wait_ready(self, limit=30):
        deadline = time.time() + limit
        while time.time() < deadline:
            try:
                if four_letter(self.port, "ruok") == "imok":
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"roost exited early:\n{self.log_tail()}")
            time.sleep(0.05)
        raise RuntimeError(f"roost did not start:\n{self.log_tail()}")

    def log_tail(self, lines=15):
        """The end of the server's log, without backtrace frames, for errors."""
        with open(self.log.name) as f:
            text = [l for l in f.read().splitlines() if not l.startswith("  ")]
        return "\n".join(text[-lines:])

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def remove_data(self):
        """Deletes the data folder (preallocated log segments take ~200 MB a
        server); the log stays for whoever reads a failure."""
        shutil.rmtree(os.path.join(self.dir, "data"), ignore_errors=True)


class RoostProcess:
    """A standalone server, or an ensemble of `size` servers on loopback."""

    def __init__(self, extra_config="", size=None):
        size = size or int(os.environ.get("ROOST_INTEROP_SERVERS", "1"))
        self.dir = tempfile.mkdtemp(prefix="roost-interop-")
        ports = [free_port() for _ in range(size)]
        peers = ""
        if size > 1:
            for i in range(size):
                peers += f"server.{i + 1}=127.0.0.1:{free_port()}:{free_port()}\n"
        self.servers = []
        for i, port in enumerate(ports):
            directory = os.path.join(self.dir, f"server{i + 1}")
            os.makedirs(os.path.join(directory, "data"), exist_ok=True)
            with open(os.path.join(directory, "data", "myid"), "w") as f:
                f.write(f"{i + 1}\n")
            self.servers.append(RoostServer(directory, port, BASE_CONFIG + peers + extra_config))
        for server in self.servers:
            server.wait_ready()
        self.port = ports[0]

    @property
    def hosts(self):
        return ",".join(f"127.0.0.1:{s.port}" for s in self.servers)

    @property
    def is_ensemble(self):
        return len(self.servers) > 1

    def stop(self):
        """Stops every server for good and deletes their data."""
        for server in self.servers:
            server.stop()
            server.remove_data()


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
