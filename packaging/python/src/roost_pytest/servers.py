"""Starts and stops `roost server` processes on loopback, each with its own
zoo.cfg and data folder in a temporary directory."""
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time


def roost_binary():
    """The `roost` command this package installed (or ROOST_BIN)."""
    if os.environ.get("ROOST_BIN"):
        return os.environ["ROOST_BIN"]
    scripts = sysconfig.get_path("scripts")
    candidate = os.path.join(scripts, "roost")
    if os.path.exists(candidate):
        return candidate
    found = shutil.which("roost")
    if found:
        return found
    raise RuntimeError("the roost command is not installed (pip install roost-zookeeper)")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ruok(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"ruok")
            return s.recv(16) == b"imok"
    except OSError:
        return False


class RoostEnsemble:
    """`size` servers (1: standalone) on free loopback ports; `hosts` is
    the connect string for clients. Use as a context manager or call stop()."""

    def __init__(self, size=1, extra_config="", start_timeout=30):
        self.dir = tempfile.mkdtemp(prefix="roost-pytest-")
        self.ports = [_free_port() for _ in range(size)]
        servers = ""
        if size > 1:
            servers = "".join(
                "server.%d=127.0.0.1:%d:%d\n" % (i + 1, _free_port(), _free_port())
                for i in range(size)
            )
        self.processes = []
        for i, port in enumerate(self.ports):
            home = os.path.join(self.dir, "server%d" % (i + 1))
            data = os.path.join(home, "data")
            os.makedirs(data)
            with open(os.path.join(data, "myid"), "w") as f:
                f.write("%d\n" % (i + 1))
            config = os.path.join(home, "zoo.cfg")
            with open(config, "w") as f:
                f.write(
                    "tickTime=200\nclientPort=%d\nclientPortAddress=127.0.0.1\n"
                    "dataDir=%s\nmaxClientCnxns=0\n4lw.commands.whitelist=*\n%s%s"
                    % (port, data, servers, extra_config)
                )
            log = open(os.path.join(home, "roost.log"), "w")
            self.processes.append(
                subprocess.Popen(
                    [roost_binary(), "server", "--config", config],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        deadline = time.time() + start_timeout
        while not all(_ruok(p) for p in self.ports):
            if time.time() > deadline or any(p.poll() is not None for p in self.processes):
                self.stop()
                raise RuntimeError("roost did not start; logs in %s" % self.dir)
            time.sleep(0.05)

    @property
    def hosts(self):
        return ",".join("127.0.0.1:%d" % p for p in self.ports)

    def stop(self):
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
