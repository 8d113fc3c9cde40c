#!/usr/bin/env python3
"""Server memory under two loads that hold connections open, for Roost or
Apache ZooKeeper alike (raw ZooKeeper protocol, standard library only):

  storm  SESSIONS new sessions at once, then every connection dropped and all
         sessions re-attached at once (a reconnect storm after a network blip)
  slow   a client watching a node recursively stops reading its socket while
         another session changes the node SETS times: every change is an event
         for the slow client
  znodes one session creates COUNT persistent znodes (40-byte paths, 100-byte
         data, 500 in flight): what the tree costs per znode

  bench-memory.py HOST:PORT SERVER_PID storm|slow [SESSIONS|SETS]

Prints one JSON line: resident memory (MiB) before, at its peak during the
load (sampled every 20 ms), and after, plus what the load observed.
"""

import json
import socket
import struct
import sys
import threading
import time


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Peak:
    """Samples a process's resident memory in the background."""

    def __init__(self, pid):
        self.pid, self.peak, self.running = pid, rss_mib(pid), True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while self.running:
            self.peak = max(self.peak, rss_mib(self.pid))
            time.sleep(0.02)

    def stop(self):
        self.running = False
        self.thread.join()
        return self.peak


def frame(payload):
    return struct.pack(">i", len(payload)) + payload


def jstr(s):
    b = s.encode()
    return struct.pack(">i", len(b)) + b


def jbuf(b):
    return struct.pack(">i", len(b)) + b


def connect_request(session_id=0, password=b"\0" * 16):
    return frame(struct.pack(">iqiq", 0, 0, 30000, session_id) + jbuf(password) + b"\0")


def read_frame(sock):
    header = recv_exact(sock, 4)
    if header is None:
        return None
    (length,) = struct.unpack(">i", header)
    return recv_exact(sock, length)


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def parse_connect_response(payload):
    _, _, session_id = struct.unpack(">iiq", payload[:16])
    (plen,) = struct.unpack(">i", payload[16:20])
    return session_id, payload[20 : 20 + plen]


def request(xid, opcode, body):
    return frame(struct.pack(">ii", xid, opcode) + body)


OPEN_ACL = struct.pack(">i", 1) + struct.pack(">i", 31) + jstr("world") + jstr("anyone")


def create(xid, path, data=b""):
    return request(xid, 1, jstr(path) + jbuf(data) + OPEN_ACL + struct.pack(">i", 0))


def set_data(xid, path, data):
    return request(xid, 5, jstr(path) + jbuf(data) + struct.pack(">i", -1))


def add_watch_recursive(xid, path):
    return request(xid, 106, jstr(path) + struct.pack(">i", 1))


def reply_err(payload):
    xid, _, err = struct.unpack(">iqi", payload[:16])
    return xid, err


def open_sessions(host, port, count, sessions=None):
    """Opens `count` connections and sends every ConnectRequest before reading
    any answer, so the server sees them all at once."""
    socks = []
    for i in range(count):
        s = socket.create_connection((host, port), timeout=60)
        sid, pw = sessions[i] if sessions else (0, b"\0" * 16)
        s.sendall(connect_request(sid, pw))
        socks.append(s)
    answers = []
    for s in socks:
        payload = read_frame(s)
        answers.append(parse_connect_response(payload) if payload else (0, b""))
    return socks, answers


def storm(host, port, pid, count):
    before = rss_mib(pid)
    peak = Peak(pid)
    started = time.time()
    socks, sessions = open_sessions(host, port, count)
    opened = sum(1 for sid, _ in sessions if sid)
    open_secs = time.time() - started
    for s in socks:
        s.close()
    started = time.time()
    socks, answers = open_sessions(host, port, count, sessions)
    reattached = sum(1 for (sid, _), (old, _) in zip(answers, sessions) if sid and sid == old)
    storm_secs = time.time() - started
    time.sleep(1)
    during = peak.stop()
    held = rss_mib(pid)
    for s in socks:
        s.close()
    time.sleep(1)
    return {
        "load": "storm",
        "sessions": count,
        "opened": opened,
        "reattached": reattached,
        "open_s": round(open_secs, 2),
        "storm_s": round(storm_secs, 2),
        "rss_before_mib": round(before, 1),
        "rss_peak_mib": round(during, 1),
        "rss_holding_mib": round(held, 1),
        "rss_after_mib": round(rss_mib(pid), 1),
    }


def slow(host, port, pid, sets):
    path = "/slow/" + "n" * 290
    writer = socket.create_connection((host, port), timeout=60)
    writer.sendall(connect_request())
    read_frame(writer)
    writer.sendall(create(1, "/slow"))
    read_frame(writer)
    writer.sendall(create(2, path))
    read_frame(writer)
    slow_sock = socket.create_connection((host, port), timeout=60)
    slow_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    slow_sock.sendall(connect_request())
    read_frame(slow_sock)
    slow_sock.sendall(add_watch_recursive(1, "/slow"))
    read_frame(slow_sock)
    before = rss_mib(pid)
    peak = Peak(pid)
    started = time.time()
    xid, acked, errors, window = 10, 0, 0, 200
    in_flight = 0
    value = b"v" * 16
    while acked < sets:
        while in_flight < window and xid - 10 < sets:
            writer.sendall(set_data(xid, path, value))
            xid += 1
            in_flight += 1
        payload = read_frame(writer)
        if payload is None:
            break
        rxid, err = reply_err(payload)
        if rxid == -1:
            continue
        in_flight -= 1
        acked += 1
        errors += err != 0
    secs = time.time() - started
    time.sleep(1)
    during = peak.stop()
    # Now read what the slow client was sent: all the events, or an EOF early.
    slow_sock.settimeout(5)
    events = 0
    try:
        while True:
            payload = read_frame(slow_sock)
            if payload is None:
                closed = True
                break
            if struct.unpack(">i", payload[:4])[0] == -1:
                events += 1
            if events >= sets:
                closed = False
                break
    except socket.timeout:
        closed = False
    return {
        "load": "slow",
        "sets": sets,
        "acked": acked,
        "errors": errors,
        "write_s": round(secs, 2),
        "events_delivered": events,
        "slow_connection_closed": closed,
        "rss_before_mib": round(before, 1),
        "rss_peak_mib": round(during, 1),
        "rss_after_mib": round(rss_mib(pid), 1),
    }


def znodes(host, port, pid, count):
    sock = socket.create_connection((host, port), timeout=60)
    sock.sendall(connect_request())
    read_frame(sock)
    sock.sendall(create(1, "/z"))
    read_frame(sock)
    time.sleep(1)
    before = rss_mib(pid)
    peak = Peak(pid)
    value = b"d" * 100
    started = time.time()
    sent = acked = errors = 0
    window = 500
    while acked < count:
        batch = []
        while sent - acked < window and sent < count:
            # "/z/" + 37 characters: 40-byte paths.
            batch.append(create(sent + 10, f"/z/n{sent:036d}", value))
            sent += 1
        if batch:
            sock.sendall(b"".join(batch))
        payload = read_frame(sock)
        if payload is None:
            break
        rxid, err = reply_err(payload)
        if rxid < 0:
            continue
        acked += 1
        errors += err != 0
    secs = time.time() - started
    time.sleep(3)
    during = peak.stop()
    after = rss_mib(pid)
    sock.close()
    return {
        "load": "znodes",
        "znodes": count,
        "acked": acked,
        "errors": errors,
        "create_s": round(secs, 2),
        "rss_before_mib": round(before, 1),
        "rss_peak_mib": round(during, 1),
        "rss_after_mib": round(after, 1),
        "bytes_per_znode": round((after - before) * 1048576 / max(count, 1)),
    }


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    pid, load = int(sys.argv[2]), sys.argv[3]
    if load == "storm":
        result = storm(host, int(port), pid, int(sys.argv[4]) if len(sys.argv) > 4 else 2000)
    elif load == "znodes":
        result = znodes(host, int(port), pid, int(sys.argv[4]) if len(sys.argv) > 4 else 200000)
    else:
        result = slow(host, int(port), pid, int(sys.argv[4]) if len(sys.argv) > 4 else 100000)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
