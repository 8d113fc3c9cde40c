"""The `roost-zookeeper` wheel as a Python user gets it: installed into a
fresh virtualenv (scripts/test.sh builds it with maturin and installs it),
whose pytest plugin starts Roost for kazoo's tests, with no Java and no
Docker. Run with that virtualenv's python, ROOST_BIN unset."""
import os
import subprocess
import sys
import threading

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import LockTimeout

from roost_pytest import roost_binary


def test_the_command_comes_from_the_wheel():
    assert "ROOST_BIN" not in os.environ
    assert roost_binary().startswith(sys.prefix)
    out = subprocess.run([roost_binary(), "--help"], capture_output=True, text=True, check=True)
    assert "server" in out.stdout


def test_kazoo_read_and_write_locks_on_the_fixture_server(roost_server):
    zk = KazooClient(hosts=roost_server.hosts, timeout=10)
    zk.start(timeout=10)
    try:
        readers = [zk.ReadLock("/wheel/dataset", "reader-%d" % i) for i in range(2)]
        for lock in readers:
            assert lock.acquire(timeout=5)
        writer = zk.WriteLock("/wheel/dataset", "writer")
        # Readers share the lock; the writer waits for both to leave.
        with pytest.raises(LockTimeout):
            writer.acquire(timeout=0.5)
        for lock in readers:
            lock.release()
        assert writer.acquire(timeout=5)
        reader = zk.ReadLock("/wheel/dataset", "late-reader")
        with pytest.raises(LockTimeout):
            reader.acquire(timeout=0.5)
        writer.release()
    finally:
        zk.stop()


def test_the_dataset_lock_example_verifies_against_the_fixture(roost_server):
    binary = os.environ["DATASET_LOCK_BIN"]
    out = subprocess.run(
        [binary, "--server", roost_server.hosts, "--duration", "3", "--readers", "4"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "writers never overlapped anyone" in out.stdout + out.stderr


def test_the_ensemble_fixture_is_three_servers(roost_ensemble):
    zk = KazooClient(hosts=roost_ensemble.hosts, timeout=10)
    zk.start(timeout=10)
    zk.create("/wheel-ensemble", b"v")
    zk.stop()
    modes = []
    for port in roost_ensemble.ports:
        text = subprocess.run(
            [roost_binary(), "shell", "--server", "127.0.0.1:%d" % port, "get", "/wheel-ensemble"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        modes.append(text.strip())
    assert modes == ["v", "v", "v"]
