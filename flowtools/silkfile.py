"""Reading SiLK flow files (the formats of CERT's SiLK 3.x rwtools).

A SiLK file is a 16-byte fixed header (magic ``DE AD BE EF``, flags, format id, file version,
compression method, SiLK version, record length, record version; its integers big-endian),
then header entries (``uint32 id, uint32 length`` big-endian, then data) up to the end entry
(id 0) whose length absorbs the padding, then the records. Records are in the byte order the
flags give. When the file is compressed the records come in blocks, each ``uint32 compressed
size, uint32 uncompressed size`` (big-endian, whatever the records' order) and the compressed
bytes; a compressed size of 0 ends the data.

Records are decoded with numpy structured dtypes over many records at a time. The "packed"
formats of the hourly archive (FT_RWAUG*, FT_RWIPV6 v2) store the start time as an offset from
the hour in the packed-file-info header entry and take the sensor and flowtype from it too.

Column mapping: sID -> sensor, flow_type -> flowtype, tcp_state -> attributes (without its
IPv6 bit 0x80, which becomes the ``ipv6`` column; the "expanded" bit 0x01 is kept), init_flags
-> initflags, rest_flags -> sessflags; memo is dropped. Values SiLK 3.19 would clamp to its
in-memory widths (FT_RWIPV6ROUTING v3's 32-bit interfaces, 64-bit volumes) are kept whole.
"""

import os
import threading
import time
from collections import deque, namedtuple
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import schema
from .errors import FlowError, FormatError

MAGIC = b"\xde\xad\xbe\xef"
EXPANDED_VERSION = 16           # file versions below this have SiLK's legacy headers
MAX_BLOCK = 0x100000            # SKIOBUF_MAX_BLOCKSIZE
BATCH_RECORDS = 1 << 13          # records of a few hundred KB: fields are picked out of
                                 # them in the CPU cache (65536: 25% slower, measured)
GROUP_BLOCKS = 8                # blocks a decompression task handles
PACKED_ENTRY_LENGTH = 24

FORMAT_NAMES = {
    0x00: "FT_TCPDUMP", 0x01: "FT_GRAPH", 0x02: "FT_ADDRESSES", 0x03: "FT_PORTMAP",
    0x04: "FT_SERVICEMAP", 0x05: "FT_NIDSMAP", 0x06: "FT_EXPERIMENT1", 0x07: "FT_EXPERIMENT2",
    0x08: "FT_TEMPFILE", 0x09: "FT_AGGREGATEBAG", 0x0A: "FT_IPFIX", 0x0B: "FT_RWIPV6",
    0x0C: "FT_RWIPV6ROUTING", 0x0D: "FT_RWAUGSNMPOUT", 0x0E: "FT_RWAUGROUTING",
    0x0F: "FT_RESERVED_0F", 0x10: "FT_RWROUTED", 0x11: "FT_RWNOTROUTED", 0x12: "FT_RWSPLIT",
    0x13: "FT_RWFILTER", 0x14: "FT_RWAUGMENTED", 0x15: "FT_RWAUGWEB", 0x16: "FT_RWGENERIC",
    0x17: "FT_RESERVED_17", 0x18: "FT_RWDAILY", 0x19: "FT_RWSCAN", 0x1A: "FT_RWACL",
    0x1B: "FT_RWCOUNT", 0x1C: "FT_FLOWCAP", 0x1D: "FT_IPSET", 0x1E: "FT_TAGTREE",
    0x1F: "FT_RWWWW", 0x20: "FT_SHUFFLE", 0x21: "FT_RWBAG", 0x22: "FT_BLOOM",
    0x23: "FT_RWPRINTSTATS", 0x24: "FT_PDUFLOWCAP", 0x25: "FT_PREFIXMAP",
}
COMPRESSION_NAMES = {0: "none", 1: "zlib", 2: "lzo1x", 3: "snappy"}

# header entry ids
ENTRY_END, ENTRY_PACKED, ENTRY_INVOCATION, ENTRY_ANNOTATION, ENTRY_PROBE = 0, 1, 2, 3, 4

INVALID_SENSOR = 0xFFFF
INVALID_FLOWTYPE = 0xFF
TCP = 6
EXPANDED = 0x01
IPV6_BIT = 0x80

Chunk = namedtuple("Chunk", "offset records")
Chunk.__doc__ = "What decoded_blocks() pairs with a batch: where its data began, its count."


def format_name(fmt):
    return FORMAT_NAMES.get(fmt, f"FT_UNKNOWN_{fmt:02X}")


def version_text(v):
    return "0" if v == 0 else f"{v // 1000000}.{v // 1000 % 1000}.{v % 1000}"


def _utc(ms):
    try:
        return time.strftime("%Y/%m/%dT%H:%M:%SZ", time.gmtime(ms // 1000))
    except (OverflowError, OSError, ValueError):
        return str(ms)


# --------------------------------------------------------------------------- header

class SilkHeader:
    """The facts of a SiLK file header."""

    def __init__(self):
        self.big_endian = False
        self.format = 0
        self.file_version = 0
        self.compression = 0
        self.silk_version = 0
        self.record_length = 0
        self.record_version = 0
        self.length = 0
        self.packed = []        # (start-hour ms, flowtype id, sensor id)
        self.invocations = []
        self.annotations = []
        self.probes = []

    @property
    def start(self):
        return self.packed[0][0] if self.packed else 0

    @property
    def sensor(self):
        return self.packed[0][2] & 0xFFFF if self.packed else INVALID_SENSOR

    @property
    def flowtype(self):
        return self.packed[0][1] & 0xFF if self.packed else INVALID_FLOWTYPE

    def facts(self):
        return {
            "format": self.format, "format_name": format_name(self.format),
            "file_version": self.file_version,
            "byte_order": "big" if self.big_endian else "little",
            "compression": self.compression,
            "compression_name": COMPRESSION_NAMES.get(self.compression, "?"),
            "silk_version": version_text(self.silk_version),
            "header_length": self.length, "record_length": self.record_length,
            "record_version": self.record_version,
            "packed": [list(p) for p in self.packed], "probes": list(self.probes),
        }


def _text(data):
    return data.split(b"\0", 1)[0].decode("utf-8", "replace")


class _Input:
    """Sequential reads from a binary file object, counting the bytes consumed."""

    def __init__(self, f, name, prefix=b""):
        self.f = f
        self.name = name
        self.pending = bytes(prefix)
        self.pos = 0

    def read(self, n):
        """Up to n bytes (fewer only at the end of the input)."""
        out = b""
        if self.pending:
            out, self.pending = self.pending[:n], self.pending[n:]
        while len(out) < n:
            part = self.f.read(min(n - len(out), 1 << 20))
            if not part:
                break
            out += part
        self.pos += len(out)
        return out

    def skip(self, n):
        """Pass over n bytes; False when the input ended first."""
        while n > 0:
            part = self.read(min(n, 1 << 20))
            if not part:
                return False
            n -= len(part)
        return True

    def fail(self, what, at=None):
        raise FormatError(f"{self.name}: {what} at byte {self.pos if at is None else at}")


def read_header(inp):
    """The SiLK header from an _Input positioned at the start of the file."""
    h = SilkHeader()
    start = inp.read(16)
    if len(start) < 4 or start[:4] != MAGIC:
        if len(start) < 4:
            inp.fail("truncated SiLK header")
        inp.fail("not a SiLK file (bad magic)", 0)
    if len(start) < 8:
        inp.fail("truncated SiLK header")
    h.big_endian = bool(start[4] & 1)
    h.format, h.file_version, h.compression = start[5], start[6], start[7]
    if h.file_version < EXPANDED_VERSION:
        inp.fail(f"legacy SiLK header (file version {h.file_version}) is not supported", 6)
    if len(start) < 16:
        inp.fail("truncated SiLK header")
    h.silk_version = int.from_bytes(start[8:12], "big")
    h.record_length = int.from_bytes(start[12:14], "big")
    h.record_version = int.from_bytes(start[14:16], "big")
    while True:
        at = inp.pos
        spec = inp.read(8)
        if len(spec) < 8:
            inp.fail("truncated SiLK header")
        eid = int.from_bytes(spec[:4], "big")
        elen = int.from_bytes(spec[4:], "big")
        if elen < 8:
            inp.fail(f"header entry {eid} has bad length {elen}", at)
        if eid == ENTRY_END:
            if not inp.skip(elen - 8):
                inp.fail("truncated SiLK header")
            break
        if eid not in (ENTRY_PACKED, ENTRY_INVOCATION, ENTRY_ANNOTATION, ENTRY_PROBE):
            if not inp.skip(elen - 8):  # prefix maps, bags, ipsets...: not for flows
                inp.fail("truncated SiLK header")
            continue
        data = inp.read(elen - 8)
        if len(data) < elen - 8:
            inp.fail("truncated SiLK header")
        if eid == ENTRY_PACKED:
            if elen != PACKED_ENTRY_LENGTH:
                inp.fail(f"packed-file-info entry has bad length {elen}", at)
            h.packed.append((int.from_bytes(data[:8], "big", signed=True),
                             int.from_bytes(data[8:12], "big"),
                             int.from_bytes(data[12:16], "big")))
        elif eid == ENTRY_INVOCATION:
            h.invocations.append(_text(data))
        elif eid == ENTRY_ANNOTATION:
            h.annotations.append(_text(data))
        else:
            h.probes.append(_text(data))
    h.length = inp.pos
    return h


# --------------------------------------------------------------------------- decompression

def _zlib(data, size):
    # ISA-L's inflate (isal) is 1.7x cramjam's on SiLK's blocks (787 vs 469 MB/s of
    # output measured), and cramjam's twice the zlib module's; cramjam serves where isal
    # has no wheel. The caller compares the length with the header's.
    try:
        from isal import isal_zlib
    except ImportError:
        return _zlib_cramjam(data, size)
    try:
        return isal_zlib.decompress(data, bufsize=size + 1)
    except isal_zlib.error as exc:
        raise ValueError(str(exc) or "corrupt zlib stream") from None


def _zlib_cramjam(data, size):
    # one byte of room more than the header says tells an oversized stream
    import cramjam
    out = bytearray(size + 1)
    try:
        n = cramjam.zlib.decompress_into(data, out)
    except cramjam.DecompressionError as exc:
        raise ValueError(str(exc) or "incomplete or oversized zlib stream") from None
    return memoryview(out)[:n]


def _lzo(data, size):
    import lzallright
    try:
        return lzallright.LZOCompressor.decompress(data, output_size_hint=size)
    except lzallright.LZOError as exc:
        raise ValueError(f"LZO {exc.args[0] if exc.args else exc}") from None


def _snappy(data, size):
    import cramjam
    try:
        if cramjam.snappy.decompress_raw_len(data) != size:
            raise ValueError("snappy length does not match the block header")
        out = bytearray(size)
        n = cramjam.snappy.decompress_raw_into(data, out)
    except cramjam.DecompressionError as exc:
        raise ValueError(str(exc)) from None
    return out[:n] if n != size else out


_DECOMPRESS = {1: _zlib, 2: _lzo, 3: _snappy}
_NEEDS = {1: "cramjam", 2: "lzallright", 3: "cramjam"}


def _decompressor(method, name):
    """The function (data, uncompressed size) -> bytes for a compression method; it raises
    ValueError for corrupt data."""
    module = _NEEDS.get(method)
    if module:
        try:
            __import__(module)
        except ImportError:
            raise FlowError(f"{name}: reading {COMPRESSION_NAMES[method]}-compressed SiLK "
                              f"files needs the Python package '{module}'") from None
    return _DECOMPRESS[method]


_pools = {}
_pool_lock = threading.Lock()


def _pool(threads):
    """One decompression pool per size and process (tools read many files in a row)."""
    if threads <= 1:
        return None
    with _pool_lock:
        if threads not in _pools:
            _pools[threads] = ThreadPoolExecutor(threads, thread_name_prefix="pyflow-silk")
        return _pools[threads]


# --------------------------------------------------------------------------- record layouts

_DTYPES = {}


def _dtype(layout, reclen, order):
    """A structured dtype for (name, code, offset) fields; code 'ip' is a 16-byte address."""
    key = (layout, reclen, order)
    if key not in _DTYPES:
        names, formats, offsets = [], [], []
        for name, code, off in layout:
            if code == "ip":
                names += [name + "_hi", name + "_lo"]
                formats += [">u8", ">u8"]
                offsets += [off, off + 8]
            else:
                names.append(name)
                formats.append(code if code == "u1" else order + code)
                offsets.append(off)
        _DTYPES[key] = np.dtype({"names": names, "formats": formats, "offsets": offsets,
                                 "itemsize": reclen})
    return _DTYPES[key]


_FULL_HEAD = (("stime", "i8", 0), ("elapsed", "u4", 8), ("sport", "u2", 12),
              ("dport", "u2", 14), ("proto", "u1", 16), ("flowtype", "u1", 17),
              ("sensor", "u2", 18), ("flags", "u1", 20), ("init", "u1", 21),
              ("rest", "u1", 22), ("state", "u1", 23), ("application", "u2", 24))
_TFP_HEAD = (("rflag_stime", "u4", 0), ("proto_iflags", "u1", 4), ("state", "u1", 5),
             ("application", "u2", 6))
_FTV_HEAD = (("stime_bb1", "u4", 0), ("bb2_elapsed", "u4", 4), ("pro_flg_pkts", "u4", 8),
             ("state", "u1", 12), ("rest", "u1", 13), ("application", "u2", 14))


def _u(a, dtype):
    return a.astype(dtype)


def _clear_bad_expanded(state, proto, init, rest):
    """SiLK's fix for pre-3.6 records: 'expanded' on non-TCP or flag-less records."""
    bad = ((state & EXPANDED) != 0) & ((proto != TCP) | ((init == 0) & (rest == 0)))
    if bad.any():
        state = np.where(bad, state & ~np.uint8(EXPANDED), state)
        init = np.where(bad, np.uint8(0), init)
        rest = np.where(bad, np.uint8(0), rest)
    return state, init, rest


def _bytes_packets(bpp, pkts, pflag):
    """Packets and bytes from the packed formats' bytes-per-packet encoding (rwpack.c)."""
    pkts = pkts.astype(np.uint64)
    pkts = np.where(pflag != 0, pkts * np.uint64(64), pkts)
    whole = ((bpp >> 6) & 0x3FFF).astype(np.uint64)
    frac = (bpp & 0x3F).astype(np.uint64) * pkts
    nbytes = whole * pkts + (frac >> np.uint64(6)) + ((frac & np.uint64(63)) >= 32)
    return pkts, nbytes & np.uint64(0xFFFFFFFF)


def _web_port(code):
    """SK_WEBPORT_EXPAND: 0 -> 80, 1 -> 443, 2 -> 8080, 3 -> 0."""
    return np.array([80, 443, 8080, 0], np.uint16)[code & 3]


def _flags_tfp(r, start):
    """Start time, protocol and TCP flags of the 'rflag_stime' formats."""
    word = r["rflag_stime"]
    pi = r["proto_iflags"]
    state = r["state"]
    stime = np.int64(start) + (word & 0x3FFFFF).astype(np.int64)
    tcp = ((word >> 23) & 1).astype(bool)
    expanded = tcp & ((state & EXPANDED) != 0)
    proto = np.where(tcp, np.uint8(TCP), pi)
    rest = np.where(expanded, (word >> 24).astype(np.uint8), np.uint8(0))
    init = np.where(expanded, pi, np.uint8(0))
    flags = np.where(tcp, pi | rest, np.uint8(0))
    return stime, proto, flags, init, rest


def _flags_ftv(r, start, force_tcp=False):
    """Start time, elapsed, volumes, protocol and flags of the 'stime_bb1' formats."""
    a, b, c = r["stime_bb1"], r["bb2_elapsed"], r["pro_flg_pkts"]
    state, rest_in = r["state"], r["rest"]
    stime = np.int64(start) + (a >> 10).astype(np.int64)
    elapsed = b & 0x3FFFFF
    bpp = ((a & 0x3FF) << 10) | (b >> 22)
    pkts, nbytes = _bytes_packets(bpp, c & 0xFFFFF, (c >> 23) & 1)
    pf = (c >> 24).astype(np.uint8)
    tcp = np.ones(len(c), bool) if force_tcp else ((c >> 22) & 1).astype(bool)
    expanded = tcp & ((state & EXPANDED) != 0)
    proto = np.where(tcp, np.uint8(TCP), pf)
    flags = np.where(tcp, pf | rest_in, rest_in)
    init = np.where(expanded, pf, np.uint8(0))
    rest = np.where(expanded, rest_in, np.uint8(0))
    return stime, elapsed, pkts, nbytes, proto, flags, init, rest


def _flags_tbpf(r, start, force_tcp=False):
    """Start time, elapsed, volumes, protocol and flags of the 'pkts_stime' formats."""
    ps, bbe, mf = r["pkts_stime"], r["bbe"], r["msec_flags"]
    state, rest_in = r["state"], r["rest"]
    stime = (np.int64(start) + (ps & 0xFFF).astype(np.int64) * 1000
             + (mf >> 22).astype(np.int64))
    elapsed = (bbe & 0xFFF) * np.uint32(1000) + ((mf >> 12) & 0x3FF)
    pkts, nbytes = _bytes_packets(bbe >> 12, ps >> 12, (mf >> 11) & 1)
    pf = (mf & 0xFF).astype(np.uint8)
    if force_tcp:
        tcp = np.ones(len(mf), bool)
    else:
        tcp = ((mf >> 10) & 1).astype(bool) | (pf == TCP)
    expanded = tcp & ((state & EXPANDED) != 0)
    proto = np.where(tcp, np.uint8(TCP), pf)
    init = np.where(expanded, pf, np.uint8(0))
    rest = np.where(expanded, rest_in, np.uint8(0))
    flags = np.where(tcp, np.where(expanded, pf | rest_in, pf), rest_in)
    return stime, elapsed, pkts, nbytes, proto, flags, init, rest


def _addresses(r, names, state):
    """Address columns of the 16-byte-address formats and the ipv6 mask (None: all IPv4)."""
    v6 = (state & IPV6_BIT) != 0
    out = {}
    if not v6.any():
        for name in names:
            out[name] = (r[name + "_lo"] & np.uint64(0xFFFFFFFF)).astype(np.uint32)
        return out, None
    for name in names:
        col = np.empty((len(state), 2), np.uint64)
        col[:, 0] = np.where(v6, r[name + "_hi"], np.uint64(0))
        col[:, 1] = np.where(v6, r[name + "_lo"],
                             (r[name + "_lo"] & np.uint64(0xFFFFFFFF)) | schema.V4_MAPPED_LO)
        out[name] = col
    return out, v6


# Each decoder takes the structured records and the header and returns the columns it has
# (others are zero) and the ipv6 mask or None.

def _full(r, h, routing=None, application=True, fix=True):
    state, init, rest = r["state"], r["init"], r["rest"]
    proto = r["proto"]
    if fix:
        state, init, rest = _clear_bad_expanded(state, proto, init, rest)
    cols = {"stime": _u(r["stime"], np.int64), "duration": _u(r["elapsed"], np.uint32),
            "sport": _u(r["sport"], np.uint16), "dport": _u(r["dport"], np.uint16),
            "protocol": _u(proto, np.uint8), "flowtype": _u(r["flowtype"], np.uint8),
            "sensor": _u(r["sensor"], np.uint16), "flags": _u(r["flags"], np.uint8),
            "initflags": _u(init, np.uint8), "sessflags": _u(rest, np.uint8),
            "attributes": state & np.uint8(0x7F),
            "packets": _u(r["pkts"], np.uint64), "bytes": _u(r["bytes"], np.uint64)}
    if application:
        cols["application"] = _u(r["application"], np.uint16)
    if routing:
        cols["input"] = _u(r["input"], np.uint32)
        cols["output"] = _u(r["output"], np.uint32)
    return cols, state


def _generic5(r, h):
    cols, _ = _full(r, h, routing=True)
    for name in ("sip", "dip", "nhip"):
        cols[name] = _u(r[name], np.uint32)
    return cols, None


def _ipv6routing(version):
    def decode(r, h):
        cols, state = _full(r, h, routing=True, application=version != 2, fix=version != 3)
        addrs, v6 = _addresses(r, ("sip", "dip", "nhip"), r["state"])
        cols.update(addrs)
        return cols, v6
    return decode


def _ipv6_1(r, h):
    cols, _ = _full(r, h)
    addrs, v6 = _addresses(r, ("sip", "dip"), r["state"])
    cols.update(addrs)
    return cols, v6


def _packed_common(h, n):
    return {"sensor": np.full(n, h.sensor, np.uint16),
            "flowtype": np.full(n, h.flowtype, np.uint8)}


def _tfp(kind):
    """FT_RWIPV6 v2 and the v5 records of the FT_RWAUG* formats."""
    def decode(r, h):
        stime, proto, flags, init, rest = _flags_tfp(r, h.start)
        cols = _packed_common(h, len(stime))
        state = r["state"]
        cols.update(stime=stime, protocol=proto, flags=flags, initflags=init, sessflags=rest,
                    attributes=state & np.uint8(0x7F),
                    application=_u(r["application"], np.uint16),
                    packets=_u(r["pkts"], np.uint64), bytes=_u(r["bytes"], np.uint64))
        v6 = None
        if kind == "web":
            se = r["srvport_elapsed"]
            cols["duration"] = _u(se & 0x3FFFFFFF, np.uint32)
            _web_ports(cols, r["clnt_port"], se >> 30, (r["rflag_stime"] >> 22) & 1)
        else:
            cols["duration"] = _u(r["elapsed"], np.uint32)
            cols["sport"] = _u(r["sport"], np.uint16)
            cols["dport"] = _u(r["dport"], np.uint16)
        if kind == "ipv6":
            addrs, v6 = _addresses(r, ("sip", "dip"), state)
            cols.update(addrs)
        else:
            _v4(cols, r, kind)
        return cols, v6
    return decode


def _web_ports(cols, client, server_code, src_is_server):
    server = _web_port(server_code)
    client = _u(client, np.uint16)
    src = src_is_server.astype(bool)
    cols["sport"] = np.where(src, server, client)
    cols["dport"] = np.where(src, client, server)


def _v4(cols, r, kind):
    cols["sip"] = _u(r["sip"], np.uint32)
    cols["dip"] = _u(r["dip"], np.uint32)
    if kind == "routing":
        cols["nhip"] = _u(r["nhip"], np.uint32)
        cols["input"] = _u(r["input"], np.uint32)
        cols["output"] = _u(r["output"], np.uint32)
    elif kind == "snmpout":
        cols["output"] = _u(r["output"], np.uint32)


def _packed_volumes(kind, unpack):
    """The v1-v4 records of the FT_RWAUG* formats (bit-packed times and volumes)."""
    def decode(r, h):
        stime, elapsed, pkts, nbytes, proto, flags, init, rest = unpack(
            r, h.start, force_tcp=kind == "web")
        cols = _packed_common(h, len(stime))
        cols.update(stime=stime, duration=_u(elapsed, np.uint32), packets=pkts, bytes=nbytes,
                    protocol=proto, flags=flags, initflags=init, sessflags=rest,
                    attributes=r["state"] & np.uint8(0x7F),
                    application=_u(r["application"], np.uint16))
        if kind == "web" and unpack is _flags_tbpf:
            word = r["msec_flags"]  # srcIsSrv:1 srv_port:2 at bits 10 and 8-9
            _web_ports(cols, r["clnt_port"], word >> 8, (word >> 10) & 1)
        elif kind == "web":
            word = r["pro_flg_pkts"]  # src_is_srv:1 srv_port:2 at bits 22 and 20-21
            _web_ports(cols, r["clnt_port"], word >> 20, (word >> 22) & 1)
        else:
            cols["sport"] = _u(r["sport"], np.uint16)
            cols["dport"] = _u(r["dport"], np.uint16)
        _v4(cols, r, kind)
        return cols, None
    return decode


def _layouts():
    """(format id, record version) -> (record length, layout, decoder)."""
    full = _FULL_HEAD
    out = {}
    ipr12 = full + (("input", "u2", 28), ("output", "u2", 30), ("pkts", "u4", 32),
                    ("bytes", "u4", 36), ("sip", "ip", 40), ("dip", "ip", 56),
                    ("nhip", "ip", 72))
    out[0x0C, 1] = (88, ipr12, _ipv6routing(1))
    out[0x0C, 2] = (88, ipr12, _ipv6routing(2))
    out[0x0C, 3] = (100, full + (("input", "u4", 28), ("pkts", "u8", 32), ("bytes", "u8", 40),
                                 ("sip", "ip", 48), ("dip", "ip", 64), ("nhip", "ip", 80),
                                 ("output", "u4", 96)), _ipv6routing(3))
    out[0x0B, 1] = (68, full + (("pkts", "u4", 28), ("bytes", "u4", 32), ("sip", "ip", 36),
                                ("dip", "ip", 52)), _ipv6_1)
    out[0x16, 5] = (52, full + (("input", "u2", 28), ("output", "u2", 30), ("pkts", "u4", 32),
                                ("bytes", "u4", 36), ("sip", "u4", 40), ("dip", "u4", 44),
                                ("nhip", "u4", 48)), _generic5)
    # rflag_stime formats
    tfp = _TFP_HEAD + (("sport", "u2", 8), ("dport", "u2", 10), ("elapsed", "u4", 12),
                       ("pkts", "u4", 16), ("bytes", "u4", 20))
    out[0x0B, 2] = (56, tfp + (("sip", "ip", 24), ("dip", "ip", 40)), _tfp("ipv6"))
    v4 = (("sip", "u4", 24), ("dip", "u4", 28))
    out[0x0E, 5] = (40, tfp + v4 + (("nhip", "u4", 32), ("input", "u2", 36),
                                    ("output", "u2", 38)), _tfp("routing"))
    out[0x14, 5] = (32, tfp + v4, _tfp("augmented"))
    out[0x0D, 5] = (34, tfp + v4 + (("output", "u2", 32),), _tfp("snmpout"))
    out[0x15, 5] = (30, _TFP_HEAD + (("srvport_elapsed", "u4", 8), ("pkts", "u4", 12),
                                     ("bytes", "u4", 16), ("sip", "u4", 20), ("dip", "u4", 24),
                                     ("clnt_port", "u2", 28)), _tfp("web"))
    # stime_bb1 formats (v4)
    ftv = _FTV_HEAD + (("sport", "u2", 16), ("dport", "u2", 18))
    out[0x0E, 4] = (36, ftv + (("input", "u2", 20), ("output", "u2", 22), ("sip", "u4", 24),
                               ("dip", "u4", 28), ("nhip", "u4", 32)),
                    _packed_volumes("routing", _flags_ftv))
    out[0x14, 4] = (28, ftv + (("sip", "u4", 20), ("dip", "u4", 24)),
                    _packed_volumes("augmented", _flags_ftv))
    out[0x0D, 4] = (30, ftv + (("sip", "u4", 20), ("dip", "u4", 24), ("output", "u2", 28)),
                    _packed_volumes("snmpout", _flags_ftv))
    out[0x15, 4] = (26, _FTV_HEAD + (("sip", "u4", 16), ("dip", "u4", 20),
                                     ("clnt_port", "u2", 24)),
                    _packed_volumes("web", _flags_ftv))
    # pkts_stime formats (v1-v3)
    tbpf = (("sip", "u4", 0), ("dip", "u4", 4), ("sport", "u2", 8), ("dport", "u2", 10),
            ("pkts_stime", "u4", 12), ("bbe", "u4", 16), ("msec_flags", "u4", 20),
            ("application", "u2", 24), ("state", "u1", 26), ("rest", "u1", 27))
    web1 = (("sip", "u4", 0), ("dip", "u4", 4), ("pkts_stime", "u4", 8), ("bbe", "u4", 12),
            ("msec_flags", "u4", 16), ("clnt_port", "u2", 20), ("application", "u2", 22),
            ("state", "u1", 24), ("rest", "u1", 25))
    for v in (1, 2, 3):
        out[0x0E, v] = (36, tbpf + (("nhip", "u4", 28), ("input", "u2", 32),
                                    ("output", "u2", 34)),
                        _packed_volumes("routing", _flags_tbpf))
        out[0x14, v] = (28, tbpf, _packed_volumes("augmented", _flags_tbpf))
        out[0x0D, v] = (30, tbpf + (("output", "u2", 28),),
                        _packed_volumes("snmpout", _flags_tbpf))
        out[0x15, v] = (26, web1, _packed_volumes("web", _flags_tbpf))
    return out


LAYOUTS = _layouts()
FLOW_FORMATS = sorted({fmt for fmt, _ in LAYOUTS})


def decode_records(buf, header):
    """A batch from whole records of the header's format in a bytes-like buffer."""
    reclen, layout, decoder = LAYOUTS[header.format, header.record_version]
    n = len(buf) // reclen
    order = ">" if header.big_endian else "<"
    r = np.frombuffer(buf, _dtype(layout, reclen, order), count=n)
    cols, v6 = decoder(r, header)
    out = schema.empty(v6 is not None)
    for name, empty_col in out.items():
        if name in cols:
            out[name] = cols[name]
        elif name == "ipv6":
            out[name] = v6
        else:  # absent from the format: a read-only zero view costs nothing
            out[name] = np.broadcast_to(np.zeros(1, empty_col.dtype).reshape(
                (1,) * empty_col.ndim), (n,) + empty_col.shape[1:])
    return out


# --------------------------------------------------------------------------- reader

class SilkFlowReader:
    """Reads the flow records of a SiLK flow file, mirroring FlowReader's interface."""

    compressed = None  # never equal to a pyflow compression: blocks are always re-encoded

    def __init__(self, f, name, prefix=b"", batch_records=BATCH_RECORDS, threads=2):
        self.f = f
        self.name = name
        self.inp = _Input(f, name, prefix)
        self.header = h = read_header(self.inp)
        fmt = format_name(h.format)
        if (h.format, h.record_version) not in LAYOUTS:
            if h.format in FLOW_FORMATS:
                self.inp.fail(f"unsupported record version {h.record_version} of {fmt}", 14)
            self.inp.fail(f"unsupported SiLK file format {fmt}(0x{h.format:02x})", 5)
        reclen = LAYOUTS[h.format, h.record_version][0]
        if h.record_length != reclen:
            self.inp.fail(f"record length {h.record_length} does not match {fmt} version "
                          f"{h.record_version} ({reclen})", 12)
        if h.compression not in COMPRESSION_NAMES:
            self.inp.fail(f"unknown compression method {h.compression}", 7)
        self.decompress = _decompressor(h.compression, name) if h.compression else None
        self.batch_records = max(1, batch_records)
        self.threads = threads
        self.meta = {"history": list(h.invocations), "notes": list(h.annotations),
                     "silk": h.facts()}
        self.records = 0      # records decoded so far
        self.used = False
        self.finished = False

    # -- raw data

    def close(self):
        import sys
        if self.f is not sys.stdin.buffer:
            self.f.close()

    def _frames(self, load=True):
        """(offset, uncompressed size, compressed bytes or None) for each block."""
        inp = self.inp
        while True:
            at = inp.pos
            sizes = inp.read(8)
            if not sizes:
                return
            if len(sizes) < 4 or (len(sizes) < 8 and sizes[:4] != b"\0\0\0\0"):
                inp.fail("truncated block header", at)
            csize = int.from_bytes(sizes[:4], "big")
            if csize == 0:
                return
            usize = int.from_bytes(sizes[4:], "big")
            if csize > MAX_BLOCK or usize + 3 > MAX_BLOCK:
                inp.fail(f"block sizes {csize}/{usize} exceed SiLK's limit", at)
            if load:
                data = inp.read(csize)
                if len(data) < csize:
                    inp.fail("truncated block", at)
            elif not inp.skip(csize):
                inp.fail("truncated block", at)
            yield at, usize, data if load else None

    def _inflate(self, group):
        """([(offset, uncompressed bytes)], None or the FormatError that ended the group)."""
        out = []
        for at, usize, data in group:
            try:
                raw = self.decompress(data, usize)
            except (ValueError, MemoryError) as exc:
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                kind = COMPRESSION_NAMES[self.header.compression]
                return out, FormatError(f"{self.name}: corrupt {kind} block ({reason}) "
                                        f"at byte {at}")
            if len(raw) != usize:
                return out, FormatError(f"{self.name}: block expands to {len(raw)} bytes, "
                                        f"not {usize} at byte {at}")
            out.append((at, raw))
        return out, None

    def _compressed_blocks(self):
        """(offset, uncompressed bytes) for each block, decompressed by a small thread pool
        a few groups of blocks ahead of the caller. Errors come in file order."""
        pool = _pool(self.threads)
        frames = self._frames()
        ahead = deque()
        group = []
        failure = None
        try:
            while failure is None:
                try:
                    frame = next(frames, None)
                except FormatError as exc:  # raised after the blocks before it
                    failure, frame = exc, None
                if frame is not None:
                    group.append(frame)
                if group and (frame is None or len(group) == GROUP_BLOCKS):
                    if pool is None:
                        ahead.append(self._inflate(group))
                    else:
                        ahead.append(pool.submit(self._inflate, group))
                    group = []
                while ahead and (frame is None or len(ahead) > (2 * self.threads if pool else 0)):
                    done = ahead.popleft()
                    blocks, error = done if pool is None else done.result()
                    yield from blocks
                    if error is not None:
                        raise error
                if frame is None:
                    break
            if failure is not None:
                raise failure
        finally:
            for fut in ahead:
                if pool is not None:
                    fut.cancel()

    def _plain_blocks(self):
        step = self.header.record_length * self.batch_records
        while True:
            at = self.inp.pos
            data = self.inp.read(step)
            if not data:
                return
            yield at, data

    def _chunks(self):
        """(offset, bytes of whole records) in runs of about batch_records records; on an
        error, the whole records before it come first."""
        if self.used:
            raise FlowError(f"{self.name}: a SiLK file can be read only once")
        self.used = True
        reclen = self.header.record_length
        want = reclen * self.batch_records
        source = self._compressed_blocks() if self.decompress else self._plain_blocks()
        parts, have, first, tail_at = [], 0, None, 0
        failure = None
        try:
            for at, data in source:
                if first is None:
                    first = at
                parts.append(data)
                have += len(data)
                tail_at = at
                if have >= want:
                    buf = b"".join(parts)
                    whole = len(buf) - len(buf) % reclen
                    yield first, memoryview(buf)[:whole]
                    rest = buf[whole:]
                    parts, have, first = ([rest], len(rest), at) if rest else ([], 0, None)
        except FormatError as exc:
            failure = exc
        buf = b"".join(parts)
        whole = len(buf) - len(buf) % reclen
        if whole:
            yield first, memoryview(buf)[:whole]
        if failure is not None:
            raise failure
        if whole != len(buf):
            self.inp.fail(f"truncated record ({len(buf) - whole} of {reclen} bytes)",
                          tail_at if self.decompress else None)
        self.finished = True

    # -- FlowReader interface

    def decoded_blocks(self, columns=None, keep=None):
        """(Chunk, batch) pairs in file order; keep is accepted and ignored. Chunks are
        decoded on the decompression pool too (numpy's casts release the GIL), one ahead
        of the caller."""
        pool = _pool(self.threads)
        ahead = deque()

        def done():
            at, fut = ahead.popleft()
            batch = fut.result() if pool is not None else fut
            n = schema.nrecords(batch)
            self.records += n
            if columns is not None:
                batch = {k: v for k, v in batch.items() if k in columns or k == "ipv6"}
            return Chunk(at, n), batch

        try:
            try:
                for at, buf in self._chunks():
                    ahead.append((at, pool.submit(decode_records, buf, self.header)
                                  if pool is not None else decode_records(buf, self.header)))
                    if len(ahead) > 1:
                        yield done()
            except FormatError:
                while ahead:  # the whole records before a corrupt block come first
                    yield done()
                raise
            while ahead:
                yield done()
        finally:
            for _, fut in ahead:
                if pool is not None:
                    fut.cancel()

    def batches(self, columns=None, keep=None):
        for _, batch in self.decoded_blocks(columns, keep):
            yield batch

    def __iter__(self):
        return self.batches()

    # -- rwfileinfo

    def count_records(self):
        """The file's records, moving over blocks without decompressing them (as rwfileinfo
        does); after the records were read, the number read."""
        reclen = self.header.record_length
        if self.finished:
            return self.records
        if self.used:
            raise FlowError(f"{self.name}: a SiLK file can be read only once")
        self.used = True
        if self.decompress:
            total = sum(size for _, size, _ in self._frames(load=False))
        else:
            total = 0
            while True:
                part = self.inp.read(1 << 20)
                if not part:
                    break
                total += len(part)
        if total % reclen:
            self.inp.fail(f"truncated record ({total % reclen} of {reclen} bytes)")
        self.finished = True
        self.records = total // reclen
        return self.records

    def describe(self, config=None):
        """rwfileinfo's fields for the file: name -> text (a list for the multi-line ones)."""
        h = self.header
        count = self.count_records()
        size = self.inp.pos
        try:
            st = os.fstat(self.f.fileno())
            if st.st_size > size and os.path.isfile(self.name):
                size = st.st_size
        except (AttributeError, OSError, ValueError):
            pass
        out = {
            "format": f"{format_name(h.format)}(0x{h.format:02x})",
            "version": str(h.file_version),
            "byte-order": "bigEndian" if h.big_endian else "littleEndian",
            "compression": f"{COMPRESSION_NAMES[h.compression]}({h.compression})",
            "header-length": str(h.length),
            "record-length": str(h.record_length),
            "record-version": str(h.record_version),
            "silk-version": version_text(h.silk_version),
            "count-records": str(count),
            "file-size": str(size),
        }
        if h.packed:  # the first, the one that applies to the records
            out["packed-file-info"] = _packed_text(*h.packed[0], config)
        if h.probes:
            out["probe-name"] = h.probes[0]
        out["command-lines"] = list(h.invocations)
        out["annotations"] = list(h.annotations)
        return out


def _packed_text(start, flowtype, sensor, config=None):
    flowtype &= 0xFF
    sensor &= 0xFFFF
    ft = "?" if flowtype == INVALID_FLOWTYPE else str(flowtype)
    sn = "?" if sensor == INVALID_SENSOR else str(sensor)
    if config is not None:
        known = config.flowtypes.get(flowtype)
        if known is not None:
            ft = known.name
        if sensor in config.sensors:
            sn = config.sensor_name(sensor)
    return f"{_utc(start)} {ft} {sn}"
