"""SiLK Bag files (FT_RWBAG 0x21, skbag.c): reading record versions 1-4, writing 3 and 4.

After the SiLK header (silkfile.read_header) the data, compressed or not, is a run of
key/counter entries sorted by key, integers in the file's byte order:

* v1: uint32 key, uint32 counter (never compressed);
* v2, v3: uint32 key, uint64 counter (record length 12);
* v4: key and counter lengths from header entry 6; SiLK writes 16-byte keys (IPv6 addresses
  in network order) and uint64 counters (record length 24).

Header entry 6 holds four big-endian uint16: key type, key length, counter type, counter
length (bag.TYPES has the type ids). A file without it (before SiLK 3.0) has custom types.
Zero counters are never stored. Written files are little-endian, version 3 when the key fits
in 4 octets and version 4 otherwise, as SiLK's skBagWrite.
"""

import struct
import zlib

import numpy as np

from . import bag as bagmod
from .errors import FlowError, FormatError
from .silkfile import COMPRESSION_NAMES, MAGIC, _Input, format_name, read_header
from .silkset import SILK_VERSION, _data, _Tee

FT_RWBAG = 0x21
ENTRY_BAG = 6
ENTRY_INVOCATION, ENTRY_ANNOTATION = 2, 3
WRITE_BLOCK = 0x10000


def _bag_entry(header):
    """(key type, key length, counter type, counter length) of header entry 6, or None."""
    at = 16
    while at + 8 <= len(header):
        eid, elen = struct.unpack_from(">II", header, at)
        if eid == 0 or elen < 8:
            return None
        if eid == ENTRY_BAG:
            if elen < 16:
                return None
            return struct.unpack_from(">4H", header, at + 8)
        at += elen
    return None


def read(f, name, prefix=b""):
    tee = _Tee(f)
    inp = _Input(tee, name, prefix)
    h = read_header(inp)
    if h.format != FT_RWBAG:
        inp.fail(f"not a bag file (it is a {format_name(h.format)} file)", 5)
    v = h.record_version
    if v < 1 or v > 4:
        inp.fail(f"Bag record version {v} is not one this pyflow reads (1-4)", 14)
    if h.compression not in COMPRESSION_NAMES:
        inp.fail(f"unknown compression method {h.compression}", 7)
    if v == 1 and h.compression:
        inp.fail("Bag record version 1 cannot be compressed", 7)
    entry = _bag_entry(bytes(prefix) + bytes(tee.data))
    inp.f = f
    key_len, ctr_len = 4, (4 if v == 1 else 8)
    if entry is None:
        if v == 4:
            inp.fail("Bag header entry (id 6) is missing", 16)
        key_type, ctr_type = "custom", "custom"
    else:
        kid, klen, cid, clen = entry
        if v == 4:
            key_len, ctr_len = klen, clen
        key_type = bagmod.BY_ID.get(kid, "custom")
        ctr_type = bagmod.BY_ID.get(cid, "custom")
    if key_len not in (1, 2, 4, 16) or ctr_len not in (1, 2, 4, 8):
        inp.fail(f"unsupported Bag key/counter lengths {key_len}/{ctr_len}", 16)
    data = _data(inp, h, name)
    reclen = key_len + ctr_len
    if len(data) % reclen:
        raise FormatError(f"{name}: truncated Bag data ({len(data)} bytes is not a "
                          f"multiple of the {reclen}-byte entry)")
    o = ">" if h.big_endian else "<"
    if key_len == 16:
        dt = np.dtype([("hi", ">u8"), ("lo", ">u8"), ("c", f"{o}u{ctr_len}")])
    else:
        dt = np.dtype([("k", f"{o}u{key_len}"), ("c", f"{o}u{ctr_len}")])
    rec = np.frombuffer(data, dt)
    counters = rec["c"].astype(np.uint64)
    ipv6 = key_len == 16
    if ipv6:
        keys = np.stack([rec["hi"].astype(np.uint64), rec["lo"].astype(np.uint64)], 1)
        key_type = bagmod.TO_V6.get(key_type, key_type)
    else:
        keys = rec["k"].astype(np.uint32)
        key_type = bagmod.TO_V4.get(key_type, key_type)
    nz = counters != 0
    keys, counters = keys[nz], counters[nz]
    if len(keys) > 1 and not _strictly_sorted(keys):
        keys, counters, _ = bagmod.reduce(keys, counters)
    meta = {"history": list(h.invocations), "notes": list(h.annotations), "format": "silk",
            "silk": h.facts()}
    return bagmod.Bag((key_type,), ctr_type, ipv6, keys, counters, meta)


def _strictly_sorted(keys):
    if keys.ndim == 1:
        return bool(np.all(keys[1:] > keys[:-1]))
    hi, lo = keys[:, 0], keys[:, 1]
    return bool(np.all((hi[1:] > hi[:-1]) | ((hi[1:] == hi[:-1]) & (lo[1:] > lo[:-1]))))


def write(bag, f, compression="none", history=(), notes=()):
    """Write a SiLK Bag file (little-endian) to a binary file object."""
    if bag.composite:
        raise FlowError(f"a {bag.type_name} bag cannot be written as a SiLK Bag")
    methods = {"none": 0, "zlib": 1}
    if compression not in methods:
        raise FlowError(f"cannot write {compression}-compressed SiLK files (none or zlib)")
    key_type = bag.key[0]
    kid = bagmod.TYPES[key_type][0]
    cid = bagmod.TYPES.get(bag.counter, (255, 8))[0]
    if bag.ipv6:
        version, key_len = 4, 16
        dt = np.dtype([("hi", ">u8"), ("lo", ">u8"), ("c", "<u8")])
        rec = np.empty(len(bag), dt)
        rec["hi"], rec["lo"] = bag.keys[:, 0], bag.keys[:, 1]
    else:
        version, key_len = 3, 4
        dt = np.dtype([("k", "<u4"), ("c", "<u8")])
        rec = np.empty(len(bag), dt)
        rec["k"] = bag.keys
    rec["c"] = bag.counters
    reclen = dt.itemsize
    head = bytearray(MAGIC + bytes([0, FT_RWBAG, 16, methods[compression]]))
    head += struct.pack(">IHH", SILK_VERSION, reclen, version)
    for eid, texts in ((ENTRY_INVOCATION, history), (ENTRY_ANNOTATION, notes)):
        for text in texts:
            raw = text.encode("utf-8") + b"\0"
            head += struct.pack(">II", eid, 8 + len(raw)) + raw
    head += struct.pack(">II4H", ENTRY_BAG, 16, kid, key_len, cid, 8)
    pad = (-(len(head) + 8)) % reclen
    head += struct.pack(">II", 0, 8 + pad) + bytes(pad)
    f.write(bytes(head))
    body = rec.tobytes()
    if compression == "none":
        f.write(body)
        return
    step = (WRITE_BLOCK // reclen) * reclen
    for at in range(0, len(body), step):
        chunk = body[at:at + step]
        packed = zlib.compress(chunk)
        f.write(struct.pack(">II", len(packed), len(chunk)) + packed)
