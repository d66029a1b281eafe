"""pyflow-collect killed with SIGKILL at random moments during steady input, 20 times:
every archive file stays readable, no record is stored twice, and only records received in
the last moments (the unflushed interval) are lost."""

import os
import random
import signal
import socket
import threading
import time

import numpy as np
from test_collect import free_port, no_stray_collectors, read_archive, start, wait_listening  # noqa: F401 (the fixture)

from flowtools import netflow5, schema

FLUSH = 0.1
# Records sent this long before the kill must be in the archive: the flush interval plus
# time to decode, compress and commit on a busy 2-core machine.
MARGIN = 1.0
HOUR0 = 1_700_000_000_000 - 1_700_000_000_000 % 3_600_000


def _datagrams(first, n):
    """n records numbered first.. (the number is the source address), 30 per datagram."""
    idx = np.arange(first, first + n, dtype=np.uint64)
    b = schema.make_batch(n, stime=HOUR0 + (idx % 3_000_000).astype(np.int64), duration=10,
                          sip=idx, dip=np.full(n, 0x0A000001), sport=1, dport=2,
                          protocol=17, packets=1, bytes=100)
    out, _, _ = netflow5.encode_v5(b, sequence=first)
    return out


class Sender(threading.Thread):
    """Sends numbered records steadily (about 30k/s) and notes when each left."""

    def __init__(self, port, first):
        super().__init__(daemon=True)
        self.port, self.next = port, first
        self.sent = []  # (time, first, count)
        self.halt = threading.Event()

    def run(self):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            while not self.halt.is_set():
                for d in _datagrams(self.next, 300):
                    s.sendto(d, ("127.0.0.1", self.port))
                self.sent.append((time.monotonic(), self.next, 300))
                self.next += 300
                time.sleep(0.01)


def test_kill_9_twenty_times(tmp_path):
    rng = random.Random(7)
    root, log = tmp_path / "arch", tmp_path / "log"
    port = free_port()
    args = ["--sensor=S0", "--probe-type=netflow-v5", f"--listen=127.0.0.1:{port}",
            f"--flush-timeout={FLUSH}"]
    first, checked = 0, 0
    for attempt in range(20):
        p = start(root, *args, log=log)
        wait_listening(log)
        sender = Sender(port, first)
        sender.start()
        time.sleep(rng.uniform(0.2, 1.1))
        killed_at = time.monotonic()
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        sender.halt.set()
        sender.join()
        first = sender.next
        b, files = read_archive(root)  # every file must read completely
        stored = (np.sort(b["sip"][:, 1].astype(np.int64) & 0xFFFFFFFF) if b is not None
                  else np.zeros(0, np.int64))
        assert len(np.unique(stored)) == len(stored), f"attempt {attempt}: duplicates"
        must = [(f, n) for t, f, n in sender.sent if t < killed_at - MARGIN]
        for f, n in must:
            got = np.searchsorted(stored, [f, f + n])
            assert got[1] - got[0] == n, f"attempt {attempt}: records {f}.. lost"
            checked += 1
    assert checked > 0
    # A last, clean run appends to the same hourly files and leaves no temporary file.
    p = start(root, *args, log=log)
    wait_listening(log)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for d in _datagrams(first, 600):
            s.sendto(d, ("127.0.0.1", port))
    time.sleep(0.3)
    p.send_signal(signal.SIGTERM)
    assert p.wait(20) == 0
    b, files2 = read_archive(root)
    assert files2 == files
    got = b["sip"][:, 1].astype(np.int64) & 0xFFFFFFFF
    assert np.isin(np.arange(first, first + 600), got).all()
    leftovers = [f for d, _, fs in os.walk(root) for f in fs if f.endswith(".tmp")]
    assert leftovers == []
