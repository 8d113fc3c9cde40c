#!/usr/bin/env python3
"""Time from SIGKILL of an ensemble's leader to the first acknowledged write.

    failover.py --servers HOST:PORT,HOST:PORT --kill-pid PID

A kazoo client connected to the surviving servers issues one setData every
5 ms (pipelined, not waiting for replies). After a second of successful
writes the leader is killed; the result is the time from the kill to the
reply of the first write that was *issued after* the kill and succeeded, so a
write the old leader committed just before dying does not count. The client
reconnects without backoff so that the number measures the servers, not the
client's retry policy. Prints one JSON line.
"""
import argparse
import json
import os
import signal
import threading
import time

from kazoo.client import KazooClient

PATH = "/roost-failover-probe"
INTERVAL = 0.005


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--servers", required=True)
    parser.add_argument("--kill-pid", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()

    no_backoff = dict(max_tries=-1, delay=0.01, backoff=1, max_jitter=0, max_delay=0.01)
    zk = KazooClient(hosts=args.servers, timeout=10.0, connection_retry=no_backoff)
    zk.start(timeout=15)
    zk.ensure_path(PATH)

    killed_at = None
    first_success = threading.Event()
    result = {}
    lock = threading.Lock()
    successes_before = 0

    def on_done(issued_at, async_result):
        nonlocal successes_before
        try:
            async_result.get(timeout=0)
        except Exception:
            return
        done_at = time.monotonic()
        with lock:
            if killed_at is None:
                successes_before += 1
            elif issued_at >= killed_at and not first_success.is_set():
                result["failover_ms"] = round((done_at - killed_at) * 1000, 1)
                first_success.set()

    def issue():
        issued_at = time.monotonic()
        try:
            pending = zk.set_async(PATH, b"x")
        except Exception:
            return
        pending.rawlink(lambda r: on_done(issued_at, r))

    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        issue()
        time.sleep(INTERVAL)

    with lock:
        killed_at = time.monotonic()
    os.kill(args.kill_pid, signal.SIGKILL)
    give_up = killed_at + args.timeout
    while not first_success.is_set() and time.monotonic() < give_up:
        issue()
        time.sleep(INTERVAL)
    result["writes_before_kill"] = successes_before
    try:
        zk.stop()
        zk.close()
    except Exception:
        pass
    if "failover_ms" not in result:
        result["error"] = f"no write succeeded within {args.timeout} s"
    print(json.dumps(result))


if __name__ == "__main__":
    main()
