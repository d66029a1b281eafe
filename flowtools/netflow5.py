"""NetFlow v5 export datagrams, built and parsed whole batches at a time with numpy.

A datagram is Cisco's well-known layout, all big-endian: a 24-byte header (version 5, count,
sysUptime ms, unix_secs, unix_nsecs, flow_sequence, engine_type, engine_id, sampling_interval)
and up to 30 records of 48 bytes (srcaddr, dstaddr, nexthop, input and output ifIndex (16 bits),
dPkts, dOctets, First and Last (sysUptime ms at the first and last packet), srcport, dstport,
pad, tcp_flags, prot, tos, src_as, dst_as, src_mask, dst_mask, pad).

v5 carries IPv4 only, 32-bit counters and 16-bit interfaces: encode_v5 skips IPv6 records and
clamps packets, bytes and interfaces to the largest value that fits. SiLK-only columns (sensor,
flowtype, application, initial and session flags, attributes) are not carried; decode_v5
returns them as zero.

A datagram file (write_datagrams / read_datagrams) holds raw datagrams back to back, each
preceded by its length as a 2-byte big-endian unsigned integer; it has no header of its own.
"""

import socket
import time

import numpy as np

from .errors import FlowError
from .schema import is_v6, make_batch, nrecords, take, to_v4

HEADER = np.dtype([
    ("version", ">u2"), ("count", ">u2"), ("sys_uptime", ">u4"), ("unix_secs", ">u4"),
    ("unix_nsecs", ">u4"), ("flow_sequence", ">u4"), ("engine_type", "u1"),
    ("engine_id", "u1"), ("sampling_interval", ">u2")])
RECORD = np.dtype([
    ("srcaddr", ">u4"), ("dstaddr", ">u4"), ("nexthop", ">u4"), ("input", ">u2"),
    ("output", ">u2"), ("dPkts", ">u4"), ("dOctets", ">u4"), ("first", ">u4"), ("last", ">u4"),
    ("srcport", ">u2"), ("dstport", ">u2"), ("pad1", "u1"), ("tcp_flags", "u1"),
    ("prot", "u1"), ("tos", "u1"), ("src_as", ">u2"), ("dst_as", ">u2"), ("src_mask", "u1"),
    ("dst_mask", "u1"), ("pad2", ">u2")])
assert HEADER.itemsize == 24 and RECORD.itemsize == 48
MAX_RECORDS = 30
U32 = 1 << 32
DAY_MS = 86_400_000
BURST_S = 0.001


def encode_v5(batch, engine_id=0, sequence=0, sys_uptime_ms=DAY_MS, engine_type=0):
    """The batch's IPv4 records as v5 datagrams: (datagrams, next_sequence, skipped).

    Records keep the batch's order, 30 to a datagram. A datagram's export time is its latest
    eTime rounded up to the second. The exporter is taken to have booted sys_uptime_ms before
    the batch's earliest record, so every First and Last is a plain uptime, no wrap; a batch
    spanning more than ~49 days (the 32-bit uptime) gets a boot time per datagram instead.
    A flow that started 2^31 ms (24 days) or more before its datagram's export time cannot be
    told from clock skew by a decoder and raises FlowError.
    flow_sequence counts the flows sent before each datagram, from sequence, modulo 2^32.
    """
    skipped = 0
    if is_v6(batch):
        v4 = ~batch["ipv6"]
        skipped = int(nrecords(batch) - v4.sum())
        batch = to_v4(take(batch, v4))
    n = nrecords(batch)
    if n == 0:
        return [], sequence % U32, skipped
    stime = batch["stime"].astype(np.int64)
    etime = stime + batch["duration"].astype(np.int64)
    starts = np.arange(0, n, MAX_RECORDS)
    counts = np.diff(np.append(starts, n))
    export_ms = -(-np.maximum.reduceat(etime, starts) // 1000) * 1000
    rexport = np.repeat(export_ms, counts)
    if (rexport - stime).max() >= 1 << 31:
        raise FlowError("a NetFlow v5 datagram cannot carry flows older than 24 days "
                        "(First must stay within 2^31 ms of the export time)")
    boot = np.full(len(starts), stime.min() - int(sys_uptime_ms), np.int64)
    if (export_ms - boot).max() >= U32:
        # The batch spans more than the 32-bit uptime: boot again for each datagram.
        boot = np.maximum(np.minimum.reduceat(stime, starts) - int(sys_uptime_ms),
                          export_ms - (U32 - 1))
    rboot = np.repeat(boot, counts)

    rec = np.zeros(n, RECORD)
    rec["srcaddr"], rec["dstaddr"], rec["nexthop"] = batch["sip"], batch["dip"], batch["nhip"]
    rec["input"] = np.minimum(batch["input"], 0xFFFF)
    rec["output"] = np.minimum(batch["output"], 0xFFFF)
    rec["dPkts"] = np.minimum(batch["packets"], U32 - 1)
    rec["dOctets"] = np.minimum(batch["bytes"], U32 - 1)
    rec["first"], rec["last"] = stime - rboot, etime - rboot
    rec["srcport"], rec["dstport"] = batch["sport"], batch["dport"]
    rec["tcp_flags"], rec["prot"] = batch["flags"], batch["protocol"]

    head = np.zeros(len(starts), HEADER)
    head["version"], head["count"] = 5, counts
    head["sys_uptime"] = export_ms - boot
    head["unix_secs"] = export_ms // 1000
    head["flow_sequence"] = (sequence + starts) % U32
    head["engine_type"], head["engine_id"] = engine_type, engine_id

    # Full datagrams as one array of (header, 30 records); the short last one apart.
    full = n // MAX_RECORDS
    dgram = np.dtype([("h", HEADER), ("r", RECORD, (MAX_RECORDS,))])
    whole = np.empty(full, dgram)
    whole["h"] = head[:full]
    whole["r"] = rec[:full * MAX_RECORDS].reshape(full, MAX_RECORDS)
    raw = memoryview(whole.tobytes())
    size = dgram.itemsize
    out = [bytes(raw[i * size:(i + 1) * size]) for i in range(full)]
    if full < len(starts):
        out.append(head[full:].tobytes() + rec[full * MAX_RECORDS:].tobytes())
    return out, (sequence + n) % U32, skipped


def decode_v5(data):
    """One v5 datagram as (header dict, IPv4 batch); bytes after its records are ignored."""
    data = bytes(data)
    if len(data) < HEADER.itemsize:
        raise FlowError(f"truncated NetFlow v5 datagram: {len(data)} bytes, no full header")
    h = np.frombuffer(data, HEADER, count=1)[0]
    if h["version"] != 5:
        raise FlowError(f"not a NetFlow v5 datagram: version {int(h['version'])}")
    count = int(h["count"])
    if HEADER.itemsize + count * RECORD.itemsize > len(data):
        raise FlowError(f"NetFlow v5 datagram of {len(data)} bytes cannot hold its "
                        f"{count} records")
    rec = np.frombuffer(data, RECORD, count=count, offset=HEADER.itemsize)
    header = {k: int(h[k]) for k in HEADER.names}
    header["sequence"] = header["flow_sequence"]
    header["sampling_mode"] = header["sampling_interval"] >> 14
    export_ms = header["unix_secs"] * 1000 + header["unix_nsecs"] // 1_000_000
    uptime = np.uint32(header["sys_uptime"])
    first = rec["first"].astype(np.uint32)
    # Ages are modulo the 32-bit uptime, so a First from before a wrap of the uptime (or the
    # boot) still lands at the right time; a First slightly ahead of the uptime is a skew.
    age = (uptime - first).view(np.int32).astype(np.int64)
    duration = rec["last"].astype(np.uint32) - first
    batch = make_batch(
        count, stime=export_ms - age, duration=duration, sip=rec["srcaddr"],
        dip=rec["dstaddr"], nhip=rec["nexthop"], sport=rec["srcport"], dport=rec["dstport"],
        protocol=rec["prot"], packets=rec["dPkts"], bytes=rec["dOctets"],
        flags=rec["tcp_flags"], input=rec["input"], output=rec["output"])
    return header, batch


def send_udp(datagrams, host, port, rate=None, schedule=None):
    """Send datagrams to host:port over UDP, paced to rate flows per second if given.

    Pacing follows the schedule start + flows sent / rate on time.perf_counter: datagrams go
    out as soon as they are due, and the sender sleeps whenever it gets more than 1 ms ahead,
    so flows leave in bursts of at most 1 ms worth and the average rate holds from a few
    thousand to over a million flows/s. Returns the number of flows sent. A caller sending
    in several calls passes the same dict as schedule, so that the rate holds across them
    (time spent between calls is not added to the pacing).
    """
    try:
        family, _, _, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    except (socket.gaierror, UnicodeError) as e:
        raise FlowError(f"cannot resolve {host}:{port}: {e}") from None
    if rate is not None and rate <= 0:
        raise FlowError("the sending rate must be positive")
    sent = 0
    schedule = {} if schedule is None else schedule
    start = schedule.setdefault("start", time.perf_counter())
    before = schedule.get("sent", 0)
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        # Unconnected: a collector not (yet) listening must not fail the sender.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
        for d in datagrams:
            if rate:
                # Bursts of up to BURST_S: sleeping for less than that is too coarse.
                wait = start + (before + sent) / rate - time.perf_counter()
                if wait > BURST_S:
                    time.sleep(wait)
            try:
                sock.sendto(d, addr)
            except OSError as e:
                raise FlowError(f"cannot send to {host}:{port}: {e}") from None
            sent += (len(d) - HEADER.itemsize) // RECORD.itemsize
    schedule["sent"] = before + sent
    return sent


def write_datagrams(datagrams, fileobj):
    """Append datagrams to a binary file, each after its 2-byte big-endian length."""
    parts = []
    for d in datagrams:
        if len(d) > 0xFFFF:
            raise FlowError(f"datagram of {len(d)} bytes is too long for a datagram file")
        parts += (len(d).to_bytes(2, "big"), bytes(d))
    fileobj.write(b"".join(parts))


def read_datagrams(fileobj):
    """Yield the datagrams of a file written by write_datagrams."""
    while True:
        prefix = fileobj.read(2)
        if not prefix:
            return
        if len(prefix) < 2:
            raise FlowError("truncated datagram file: partial length prefix")
        size = int.from_bytes(prefix, "big")
        d = fileobj.read(size)
        if len(d) < size:
            raise FlowError(f"truncated datagram file: {len(d)} of {size} bytes")
        yield d
