#!/usr/bin/env python3
"""Concurrent large values through kazoo, as a user would send them: SESSIONS
sessions, each keeping IN_FLIGHT set calls of a 1,000,000-byte value (under
ZooKeeper's default jute.maxbuffer) in flight for ROUNDS rounds, each node
read back after every round. Works against Roost or Apache ZooKeeper.

  large-values.py HOSTS [SESSIONS] [IN_FLIGHT] [ROUNDS]   (24, 4, 10)

Prints the errors seen (none expected) and the time taken.
"""

import sys
import threading
import time

from kazoo.client import KazooClient

VALUE_BYTES = 1_000_000


def main():
    hosts = sys.argv[1]
    sessions = int(sys.argv[2]) if len(sys.argv) > 2 else 24
    in_flight = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 10
    errors = []

    def worker(i):
        zk = KazooClient(hosts=hosts, timeout=30)
        zk.start(timeout=30)
        path = f"/big{i}"
        zk.ensure_path(path)
        for r in range(rounds):
            values = [bytes([(i + r + k) % 256]) * VALUE_BYTES for k in range(in_flight)]
            for future in [zk.set_async(path, v) for v in values]:
                try:
                    future.get(timeout=120)
                except Exception as e:  # noqa: BLE001 - report whatever the client raised
                    errors.append(repr(e))
                    return
            data, _ = zk.get(path)
            if data != values[-1]:
                errors.append(f"{path}: read back a different value")
        zk.stop()

    started = time.time()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"errors: {len(errors)} {errors[:3]}  seconds: {time.time() - started:.1f}")


if __name__ == "__main__":
    main()
