"""NetFlow v5 datagrams decoded many at a time.

A receive loop collects datagrams for a moment; decode_many turns all of them into one IPv4
batch with a few numpy operations over the joined bytes (the record layout and the time
arithmetic are those of flowtools.netflow5, which decodes one datagram at a time).
"""

import numpy as np

from ..netflow5 import HEADER, RECORD
from ..schema import make_batch

HSIZE, RSIZE = HEADER.itemsize, RECORD.itemsize
MAX_COUNT = 30  # Cisco's limit; a larger count is nonsense (SiLK rejects it too)


def check(d):
    """None when d is a well-formed v5 datagram, else the reason it is not."""
    if len(d) < HSIZE:
        return f"truncated v5 datagram ({len(d)} bytes)"
    count = int.from_bytes(d[2:4], "big")
    if count == 0 or count > MAX_COUNT:
        return f"v5 datagram with count {count}"
    if HSIZE + count * RSIZE > len(d):
        return f"v5 datagram of {len(d)} bytes too short for its {count} records"
    return None


def headers(datagrams):
    """The headers of datagrams of at least 24 bytes, as a structured array."""
    return np.frombuffer(b"".join(d[:HSIZE] for d in datagrams), HEADER)


def valid(head, sizes):
    """Which datagrams (headers, lengths) are well-formed: count 1-30 and records present."""
    count = head["count"].astype(np.int64)
    return (count > 0) & (count <= MAX_COUNT) & (HSIZE + RSIZE * count <= sizes)


def decode_many(datagrams, head=None):
    """(headers, batch): the records of well-formed v5 datagrams, in order, as one batch."""
    if head is None:
        head = headers(datagrams)
    counts = head["count"].astype(np.int64)
    # The record bytes of every datagram, back to back (slicing bytes is one C call each).
    body = b"".join([d[HSIZE:HSIZE + RSIZE * c] for d, c in
                     zip(datagrams, counts.tolist(), strict=True)])
    rec = np.frombuffer(body, RECORD)
    n = len(rec)
    owner = np.repeat(np.arange(len(datagrams)), counts)
    export_ms = (head["unix_secs"].astype(np.int64) * 1000
                 + head["unix_nsecs"].astype(np.int64) // 1_000_000)[owner]
    uptime = head["sys_uptime"].astype(np.uint32)[owner]
    firsts = rec["first"].astype(np.uint32)
    # Ages modulo the 32-bit uptime: a First from before an uptime wrap still lands right.
    age = (uptime - firsts).view(np.int32).astype(np.int64)
    duration = rec["last"].astype(np.uint32) - firsts
    batch = make_batch(
        n, stime=export_ms - age, duration=duration, sip=rec["srcaddr"], dip=rec["dstaddr"],
        nhip=rec["nexthop"], sport=rec["srcport"], dport=rec["dstport"],
        protocol=rec["prot"], packets=rec["dPkts"], bytes=rec["dOctets"],
        flags=rec["tcp_flags"], input=rec["input"], output=rec["output"])
    return head, batch
