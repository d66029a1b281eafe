"""SiLK IPset files (FT_IPSET, skipset.c): reading record versions 0-5, writing 2, 4, 5.

After the SiLK header (silkfile.read_header; record length 1) the data, compressed or not,
is one of (integers in the file's byte order unless said otherwise):

* v0-v2 "classc", IPv4: /24 blocks of nine uint32, the base a.b.c.0 then a 256-bit bitmap
  (bit 0 of word 1 is a.b.c.0, the top bit of word 8 is a.b.c.255).
* v3 "radix": the in-memory radix tree, nodes then leaves (the first leaf unused). Header
  entry 7 holds six big-endian uint32: children per node, leaf count, leaf size (8: IPv4,
  24: IPv6), node count, node size, root index. A leaf is a prefix byte and the address
  (IPv4 at byte 4; IPv6 as two uint64 halves at bytes 8 and 16). SiLK writes the tree
  clean, its leaves the set's CIDR blocks in order, so the leaves alone give the set.
* v4 "cidrbmap": entries of an address (IPv4 uint32; IPv6 16 bytes in network order) and a
  byte: a CIDR prefix (<= 32 / 1..128), or 0x81 and a 256-bit bitmap of the /24 (/120).
  Entry 7 has only the leaf size set (4 or 16).
* v5 "slash64", IPv6 only: 9-byte entries of a uint64 and a byte: 1..64 a block given by
  its upper half; 0x82 the upper half of the entries that follow; 65..128 a lower half and
  its prefix; 0x81 a lower half and a /120 bitmap.

Written files are little-endian (big-endian on request), uncompressed or zlib, with SiLK
3.19.1 as the writer version so rwfileinfo and rwsetcat accept them. Version 3 (a radix-tree
dump) is read but not written: every SiLK since 3.7 reads version 4, which describes a set
directly.
"""

import struct
import zlib

import numpy as np

from . import addrs
from .errors import FlowError, FormatError
from .silkfile import (  # private helpers, reused so both readers agree on the header
    COMPRESSION_NAMES,
    MAGIC,
    MAX_BLOCK,
    _decompressor,
    _Input,
    format_name,
    read_header,
)

FT_IPSET = 0x1D
ENTRY_IPSET = 7
ENTRY_INVOCATION, ENTRY_ANNOTATION = 2, 3
SILK_VERSION = 3019001  # the SiLK release whose files these mirror (3.19.1)
BITMAP = 0x81
SLASH64 = 0x82
WRITE_BLOCK = 0x10000  # SiLK's compressed block size


class _Tee:
    """A file wrapper keeping what was read, to find header entry 7 that read_header skips."""

    def __init__(self, f):
        self.f = f
        self.data = bytearray()

    def read(self, n):
        part = self.f.read(n)
        self.data += part
        return part


def read(f, name, prefix=b""):
    from .ipset import IPSet
    tee = _Tee(f)
    inp = _Input(tee, name, prefix)
    h = read_header(inp)
    if h.format != FT_IPSET:
        inp.fail(f"not an IP set file (it is a {format_name(h.format)} file)", 5)
    if h.record_version > 5:
        inp.fail(f"IPset record version {h.record_version} is newer than this pyflow "
                 "reads (0-5)", 14)
    if h.record_length != 1:
        inp.fail(f"IPset record length {h.record_length} is not 1", 12)
    if h.compression not in COMPRESSION_NAMES:
        inp.fail(f"unknown compression method {h.compression}", 7)
    entry = _ipset_entry(bytes(prefix) + bytes(tee.data))
    inp.f = f  # the header is parsed: stop keeping a copy of what is read
    data = _data(inp, h, name)
    order = ">" if h.big_endian else "<"
    v = h.record_version
    try:
        if v <= 2:
            s, e, v6 = _classc(data, order)
        elif v == 3:
            s, e, v6 = _radix(data, order, _need(entry, inp))
        elif v == 4:
            s, e, v6 = _cidrbmap(data, order, _need(entry, inp))
        else:
            s, e, v6 = _slash64(data, order, _need(entry, inp))
        out = IPSet.from_ranges(s, e, v6)
    except (ValueError, IndexError, struct.error) as exc:
        detail = f" ({exc})" if str(exc) else ""
        raise FormatError(f"{name}: corrupt IPset data (record version {v}){detail}") from None
    out.meta = {"history": list(h.invocations), "notes": list(h.annotations),
                "format": "silk", "silk": h.facts()}
    return out


def _need(entry, inp):
    if entry is None:
        inp.fail("IPset header entry (id 7) is missing", 16)
    return entry


def _ipset_entry(header):
    """The six uint32 of header entry 7, or None."""
    at = 16
    while at + 8 <= len(header):
        eid, elen = struct.unpack_from(">II", header, at)
        if eid == 0 or elen < 8:
            return None
        if eid == ENTRY_IPSET:
            body = header[at + 8:at + elen]
            if len(body) < 24:
                return None
            return struct.unpack_from(">6I", body)
        at += elen
    return None


def _data(inp, h, name):
    """All the bytes after the header, decompressed."""
    if not h.compression:
        chunks = []
        while True:
            part = inp.read(1 << 20)
            if not part:
                return b"".join(chunks)
            chunks.append(part)
    decompress = _decompressor(h.compression, name)
    chunks = []
    while True:
        at = inp.pos
        sizes = inp.read(8)
        if not sizes:
            return b"".join(chunks)
        if len(sizes) < 8:
            if len(sizes) >= 4 and sizes[:4] == bytes(4):  # an end marker
                return b"".join(chunks)
            inp.fail("truncated block header", at)
        csize, usize = struct.unpack(">II", sizes)
        if csize == 0:
            return b"".join(chunks)
        if csize > MAX_BLOCK or usize > MAX_BLOCK:
            inp.fail(f"block sizes {csize}/{usize} exceed SiLK's limit", at)
        raw = inp.read(csize)
        if len(raw) < csize:
            inp.fail("truncated block", at)
        try:
            out = decompress(raw, usize)
        except (ValueError, MemoryError) as exc:
            kind = COMPRESSION_NAMES[h.compression]
            inp.fail(f"corrupt {kind} block ({exc})", at)
        if len(out) != usize:
            inp.fail(f"block expands to {len(out)} bytes, not {usize}", at)
        chunks.append(bytes(out))


# --- decoding: every layout becomes (starts, ends, ipv6) ranges in any order --------------


def _bitmap_ranges(base_hi, base_lo, words, order):
    """Runs of set bits in 256-bit bitmaps (eight uint32 each, bit 0 of the first word the
    base address) as ranges."""
    w = np.frombuffer(words, order + "u4").reshape(-1, 8).astype("<u4")
    bits = np.unpackbits(w.view(np.uint8), bitorder="little").reshape(-1, 256)
    edge = np.diff(np.pad(bits.astype(np.int8), ((0, 0), (1, 1))), axis=1)
    rs, cs = np.nonzero(edge == 1)
    re_, ce = np.nonzero(edge == -1)  # row-major: the i-th start and end are one run
    lo = base_lo[rs] + cs.astype(np.uint64)
    hi_end = base_lo[re_] + (ce - 1).astype(np.uint64)
    return base_hi[rs], lo, base_hi[re_], hi_end


def _cidr_ranges(hi, lo, prefix, width):
    """Inclusive ranges of CIDR blocks given as 128-bit (hi, lo) (width 128) or lo (32)."""
    host = (width - prefix.astype(np.int64))
    mask_lo = _low(np.minimum(host, 64))
    mask_hi = _low(np.maximum(host - 64, 0))
    s_hi, s_lo = hi & ~mask_hi, lo & ~mask_lo
    return s_hi, s_lo, s_hi | mask_hi, s_lo | mask_lo


def _low(bits):
    bits = np.asarray(bits, np.int64)
    one = np.uint64(1)
    return np.where(bits >= 64, np.uint64(addrs.M64),
                    (one << np.minimum(bits, 63).astype(np.uint64)) - one).astype(np.uint64)


def _finish(parts, v6):
    if not parts:
        shape = (0, 2) if v6 else 0
        return np.zeros(shape, np.uint64), np.zeros(shape, np.uint64), v6
    sh, sl, eh, el = (np.concatenate([p[i] for p in parts]) for i in range(4))
    if v6:
        return np.stack([sh, sl], 1), np.stack([eh, el], 1), True
    if (sl > addrs.M32).any() or (el > addrs.M32).any():
        raise ValueError("IPv4 address out of range")
    return sl.astype(np.int64), el.astype(np.int64), False


def _classc(data, order):
    if len(data) % 36:
        raise ValueError(f"{len(data)} bytes is not a whole number of /24 blocks")
    raw = np.frombuffer(data, np.uint8).reshape(-1, 36)
    base = np.ascontiguousarray(raw[:, :4]).view(order + "u4").ravel()
    base = (base & np.uint32(0xFFFFFF00)).astype(np.uint64)  # SiLK ignores the low byte
    zero = np.zeros(len(base), np.uint64)
    return _finish([_bitmap_ranges(zero, base, raw[:, 4:].tobytes(), order)], False)


def _radix(data, order, entry):
    children, leaves, leaf_size, nodes, node_size, _root = entry
    if children != 16 or leaf_size not in (8, 24):
        raise ValueError(f"unknown radix layout ({children} children, leaf size "
                         f"{leaf_size})")
    at = nodes * node_size
    if at + leaves * leaf_size > len(data):
        raise ValueError("radix tree is truncated")
    v6 = leaf_size == 24
    if leaves <= 1:
        return _finish([], v6)
    raw = np.frombuffer(data, np.uint8, (leaves - 1) * leaf_size, at + leaf_size)
    raw = raw.reshape(-1, leaf_size)
    prefix = raw[:, 0]
    if v6:
        halves = np.ascontiguousarray(raw[:, 8:24]).view(order + "u8").astype(np.uint64)
        hi, lo, width = halves[:, 0], halves[:, 1], 128
    else:
        lo = np.ascontiguousarray(raw[:, 4:8]).view(order + "u4").ravel().astype(np.uint64)
        hi, width = np.zeros(len(lo), np.uint64), 32
    if (prefix > width).any():
        raise ValueError("leaf prefix out of range")
    return _finish([_cidr_ranges(hi, lo, prefix, width)], v6)


def _entries(data, step, flag_at, bitmap_flag=BITMAP):
    """Start offsets of variable-size entries: ``step`` bytes, plus 32 bitmap bytes when
    the byte at ``flag_at`` is the bitmap flag."""
    offs = []
    pos, n = 0, len(data)
    while pos < n:
        if pos + step > n:
            raise ValueError("truncated entry")
        offs.append(pos)
        pos += step + (32 if data[pos + flag_at] == bitmap_flag else 0)
    if pos != n:
        raise ValueError("truncated bitmap")
    return np.array(offs, np.int64)


def _gather(data, offs, width):
    """Bytes [off, off + width) of each entry as an (n, width) array."""
    buf = np.frombuffer(data, np.uint8)
    return buf[offs[:, None] + np.arange(width)]


def _cidrbmap(data, order, entry):
    leaf_size = entry[2]
    if leaf_size not in (4, 16) or any(entry[i] for i in (0, 1, 3, 4, 5)):
        raise ValueError(f"unknown cidrbmap layout (leaf size {leaf_size})")
    v6 = leaf_size == 16
    offs = _entries(data, leaf_size + 1, leaf_size)
    if not len(offs):
        return _finish([], v6)
    flag = np.frombuffer(data, np.uint8)[offs + leaf_size]
    ip = np.ascontiguousarray(_gather(data, offs, leaf_size))
    if v6:
        halves = ip.view(">u8").astype(np.uint64)
        hi, lo, width = halves[:, 0], halves[:, 1], 128
        bad = (flag == 0) | ((flag > 128) & (flag != BITMAP))
    else:
        lo = ip.view(order + "u4").ravel().astype(np.uint64)
        hi, width = np.zeros(len(lo), np.uint64), 32
        bad = (flag > 32) & (flag != BITMAP)
    if bad.any():
        raise ValueError(f"unexpected prefix value {int(flag[bad][0])}")
    parts = []
    cidr = flag != BITMAP
    parts.append(_cidr_ranges(hi[cidr], lo[cidr], flag[cidr], width))
    bm = np.flatnonzero(~cidr)
    if len(bm):
        words = _gather(data, offs[bm] + leaf_size + 1, 32).tobytes()
        parts.append(_bitmap_ranges(hi[bm], lo[bm] & ~np.uint64(255), words, order))
    return _finish(parts, v6)


def _slash64(data, order, entry):
    if entry[2] != 16:
        raise ValueError(f"unknown slash64 layout (leaf size {entry[2]})")
    offs = _entries(data, 9, 8)
    if not len(offs):
        return _finish([], True)
    flag = np.frombuffer(data, np.uint8)[offs + 8]
    value = np.ascontiguousarray(_gather(data, offs, 8)).view(order + "u8").ravel()
    value = value.astype(np.uint64)
    upper_block = (flag >= 1) & (flag <= 64)
    lower = ((flag > 64) & (flag <= 128)) | (flag == BITMAP)
    if not (upper_block | lower | (flag == SLASH64)).all():
        raise ValueError(f"unexpected prefix value {int(flag[~(upper_block | lower)][0])}")
    # the upper half of each lower entry is that of the latest 0x82 entry before it, and
    # no upper block may come between them
    is_up = flag == SLASH64
    last_up = np.maximum.accumulate(np.where(is_up, np.arange(len(flag)), -1))
    last_block = np.maximum.accumulate(np.where(upper_block, np.arange(len(flag)), -1))
    if (lower & ((last_up < 0) | (last_block > last_up))).any():
        raise ValueError("lower half without its upper half")
    if is_up[-1] or (is_up[:-1] & ~lower[1:]).any():
        raise ValueError("upper half without lower halves")
    hi = value[np.maximum(last_up, 0)]
    parts = []
    ub = np.flatnonzero(upper_block)
    parts.append(_cidr_ranges(value[ub], np.zeros(len(ub), np.uint64), flag[ub], 128))
    lc = np.flatnonzero(lower & (flag != BITMAP))
    parts.append(_cidr_ranges(hi[lc], value[lc], flag[lc], 128))
    bm = np.flatnonzero(flag == BITMAP)
    if len(bm):
        words = _gather(data, offs[bm] + 9, 32).tobytes()
        parts.append(_bitmap_ranges(hi[bm], value[bm] & ~np.uint64(255), words, order))
    return _finish(parts, True)


# --- writing -----------------------------------------------------------------------------


def write(ipset, f, record_version=None, compression="none", history=(), notes=(),
          big_endian=False):
    """Write a SiLK IPset file to a binary file object (little-endian unless asked)."""
    o = ">" if big_endian else "<"
    v = record_version
    if v in (None, 0):
        v = 4 if ipset.is_ipv6 else 2
    if v not in (2, 4, 5):
        raise FlowError(f"cannot write IPset record version {v} (2, 4 or 5)")
    if v == 2:
        ipset = ipset.to_v4()  # FlowError when it holds IPv6 addresses
        body = _write_classc(ipset, o)
    elif v == 5 and not ipset.is_ipv6:
        v = 4  # as SiLK does: version 5 holds only IPv6 sets
        body = _write_cidrbmap(ipset, o)
    elif v == 4:
        body = _write_cidrbmap(ipset, o)
    else:
        body = _write_slash64(ipset, o)
    methods = {"none": 0, "zlib": 1}
    if compression not in methods:
        raise FlowError(f"cannot write {compression}-compressed SiLK files (none or zlib)")
    head = bytearray(MAGIC + bytes([int(big_endian), FT_IPSET, 16, methods[compression]]))
    head += struct.pack(">IHH", SILK_VERSION, 1, v)
    for eid, texts in ((ENTRY_INVOCATION, history), (ENTRY_ANNOTATION, notes)):
        for text in texts:
            raw = text.encode("utf-8") + b"\0"
            head += struct.pack(">II", eid, 8 + len(raw)) + raw
    if v != 2:
        leaf = 16 if ipset.is_ipv6 else 4
        head += struct.pack(">II6I", ENTRY_IPSET, 32, 0, 0, leaf, 0, 0, 0)
    head += struct.pack(">II", 0, 8)
    f.write(bytes(head))
    if compression == "none":
        f.write(body)
        return
    for at in range(0, len(body), WRITE_BLOCK):
        chunk = body[at:at + WRITE_BLOCK]
        packed = zlib.compress(chunk)
        f.write(struct.pack(">II", len(packed), len(chunk)) + packed)


def _bitmaps(hi, lo_s, lo_e):
    """One 256-bit bitmap per /24 (/120) of pieces that each lie within one /24, sorted:
    (base hi, base lo, (n, 8) uint32 words); lo_s/lo_e are the pieces' low halves."""
    blk = lo_s >> np.uint64(8)
    a = (lo_s & np.uint64(255)).astype(np.int64)
    b = (lo_e & np.uint64(255)).astype(np.int64)
    words = np.zeros((len(lo_s), 8), np.uint64)
    for w in range(8):
        lo_b, hi_b = np.maximum(a, 32 * w), np.minimum(b, 32 * w + 31)
        has = lo_b <= hi_b
        n = np.where(has, hi_b - lo_b + 1, 0).astype(np.uint64)
        mask = ((np.uint64(1) << n) - np.uint64(1)) << (np.maximum(lo_b - 32 * w, 0)
                                                         .astype(np.uint64))
        words[:, w] = np.where(has, mask, np.uint64(0))
    first = np.flatnonzero(np.r_[True, (blk[1:] != blk[:-1]) | (hi[1:] != hi[:-1])])
    merged = np.bitwise_or.reduceat(words, first, axis=0)
    return hi[first], blk[first] << np.uint64(8), merged.astype(np.uint32)


def _split_small(ipset, width):
    """The set's CIDR blocks split into those of /24 (/120) or larger, kept as CIDR
    entries, and /24s holding smaller blocks, written as bitmaps when that is shorter."""
    addrs_, prefix = ipset.cidr_blocks()
    if ipset.is_ipv6:
        hi, lo = addrs_[:, 0], addrs_[:, 1]
    else:
        hi, lo = np.zeros(len(addrs_), np.uint64), addrs_.astype(np.uint64)
    small = prefix.astype(np.int64) > width - 8
    key_hi, key_lo = hi, lo >> np.uint64(8)
    # pieces per /24 among the small blocks
    sm = np.flatnonzero(small)
    if len(sm):
        new = np.r_[True, (key_hi[sm][1:] != key_hi[sm][:-1])
                    | (key_lo[sm][1:] != key_lo[sm][:-1])]
        group = np.cumsum(new) - 1
        counts = np.bincount(group)
        per = counts[group]
    else:
        per = np.zeros(0, np.int64)
    limit = 2 if ipset.is_ipv6 else 6  # a bitmap entry costs 32 bytes more than a CIDR one
    use_bitmap = np.zeros(len(prefix), bool)
    use_bitmap[sm[per > limit]] = True
    return hi, lo, prefix, use_bitmap


def _write_classc(ipset, o):
    if not len(ipset.starts):
        return b""
    s = ipset.starts.astype(np.int64)
    e = ipset.ends.astype(np.int64)
    # cut the ranges at /24 boundaries, then one bitmap per /24
    first, last = s >> 8, e >> 8
    n = last - first + 1
    rid = np.repeat(np.arange(len(s)), n)
    blk = np.repeat(first, n) + (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n))
    ps = np.maximum(s[rid], blk << 8).astype(np.uint64)
    pe = np.minimum(e[rid], (blk << 8) | 255).astype(np.uint64)
    _, bases, words = _bitmaps(np.zeros(len(ps), np.uint64), ps, pe)
    out = np.empty((len(bases), 9), o + "u4")
    out[:, 0] = bases.astype(np.uint32)
    out[:, 1:] = words
    return out.tobytes()


def _write_cidrbmap(ipset, o):
    v6 = ipset.is_ipv6
    hi, lo, prefix, use_bitmap = _split_small(ipset, 128 if v6 else 32)
    if v6 and len(prefix) and prefix[0] == 0:  # ::/0 has no entry; two /1 halves do
        hi, lo = np.r_[np.uint64(0), np.uint64(1 << 63)], np.zeros(2, np.uint64)
        prefix, use_bitmap = np.array([1, 1], np.uint8), np.zeros(2, bool)
    records = []
    cidr = np.flatnonzero(~use_bitmap)
    isz = 16 if v6 else 4
    rec = np.zeros(len(cidr), [("ip", "u1", (isz,)), ("p", "u1")])
    rec["ip"] = _ip_bytes(hi[cidr], lo[cidr], v6, o)
    rec["p"] = prefix[cidr]
    keys = [(hi[cidr], lo[cidr], rec.view(np.uint8).reshape(len(cidr), rec.dtype.itemsize))]
    bm = np.flatnonzero(use_bitmap)
    if len(bm):
        s, e = _cidr_ranges(hi[bm], lo[bm], prefix[bm], 128 if v6 else 32)[1::2]
        bhi, blo, words = _bitmaps(hi[bm], s, e)
        brec = np.zeros(len(blo), [("ip", "u1", (isz,)), ("p", "u1"), ("w", o + "u4", (8,))])
        brec["ip"] = _ip_bytes(bhi, blo, v6, o)
        brec["p"] = BITMAP
        brec["w"] = words
        keys.append((bhi, blo, brec.view(np.uint8).reshape(len(blo), brec.dtype.itemsize)))
    for hk, lk, raw in keys:
        records.extend(zip(hk.tolist(), lk.tolist(), (r.tobytes() for r in raw),
                           strict=True))
    records.sort(key=lambda r: (r[0], r[1]))
    return b"".join(r[2] for r in records)


def _ip_bytes(hi, lo, v6, o):
    if v6:
        return np.stack([hi, lo], 1).astype(">u8").view(np.uint8).reshape(-1, 16)
    return lo.astype(o + "u4").view(np.uint8).reshape(-1, 4)


def _write_slash64(ipset, o):
    hi, lo, prefix, use_bitmap = _split_small(ipset, 128)
    if len(prefix) and prefix[0] == 0:
        hi, lo = np.r_[np.uint64(0), np.uint64(1 << 63)], np.zeros(2, np.uint64)
        prefix, use_bitmap = np.array([1, 1], np.uint8), np.zeros(2, bool)
    bm = np.flatnonzero(use_bitmap)
    bitmaps = {}
    if len(bm):
        s, e = _cidr_ranges(hi[bm], lo[bm], prefix[bm], 128)[1::2]
        bhi, blo, words = _bitmaps(hi[bm], s, e)
        for h, b, w in zip(bhi.tolist(), blo.tolist(), words, strict=True):
            bitmaps[(h, b)] = w.astype(o + "u4").tobytes()
    out = bytearray()
    current = None
    done = set()
    for h, lv, p, isbm in zip(hi.tolist(), lo.tolist(), prefix.tolist(), use_bitmap.tolist(),
                              strict=True):
        if p <= 64:
            out += struct.pack(o + "QB", h, p)
            current = None
            continue
        if current != h:
            out += struct.pack(o + "QB", h, SLASH64)
            current = h
        if isbm:
            key = (h, lv & ~255)
            if key not in done:
                done.add(key)
                out += struct.pack(o + "QB", lv & ~255, BITMAP) + bitmaps[key]
        else:
            out += struct.pack(o + "QB", lv, p)
    return bytes(out)
