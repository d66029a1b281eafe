"""pyflow flow files: column batches packed into blocks of narrow, compressed columns.

Each block stores every column in the narrowest little-endian width that holds its values in
that block: as a constant (no payload), as an offset from the block minimum, or as a delta
from the previous value when the column is sorted (sTime usually is). Multi-byte columns are
byte-shuffled (all low bytes, then the next bytes...) before zstandard compression, which is
what lets counters and addresses compress well. Per-column CRC32 checksums, per-block
statistics for skipping, and an end marker per segment; see docs/FORMAT.md.
"""

import os
import threading
from bisect import bisect_left
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from itertools import accumulate

import numpy as np
import zstandard

from . import container, schema
from .errors import FormatError

KIND = "flow"
DEFAULT_BLOCK_RECORDS = 1 << 17
DEFAULT_LEVEL = 1  # higher levels gain ~1% on these narrow columns
STAT_COLUMNS = ("stime", "etime", "sip", "dip", "sport", "dport", "protocol")
_WIDTHS = (1, 2, 4, 8)
_SORTED_CANDIDATES = ("stime",)


# ---------------------------------------------------------------- column codec

def _width(span):
    for w in _WIDTHS:
        if span < (1 << (8 * w)):
            return w
    return 8


def _shuffle(stored, w):
    """The bytes of an array grouped by significance (a buffer, not a copy when w is 1)."""
    if w == 1:
        return stored
    return np.ascontiguousarray(stored.view(np.uint8).reshape(-1, w).T)


_U = {1: np.dtype("<u1"), 2: np.dtype("<u2"), 4: np.dtype("<u4"), 8: np.dtype("<u8")}


def _stored(buf, at, w, n, shuffled):
    """The n stored w-byte values at byte offset at of buf, byte shuffle undone."""
    if not shuffled or w == 1:
        return np.frombuffer(buf, _U[w], n, at)
    planes = np.frombuffer(buf, np.uint8, w * n, at).reshape(w, n)
    # The cheapest way back depends on the size (measured): one strided copy for short
    # columns, shifting two planes together, or one strided write per byte plane.
    if n <= 512:
        return planes.T.copy().view(_U[w]).reshape(n)
    if w == 2:
        out = planes[1].astype(_U[2])
        out <<= 8
        out |= planes[0]
        return out
    out = np.empty(n, _U[w])
    dst = out.view(np.uint8).reshape(n, w)
    for k in range(w):
        dst[:, k] = planes[k]
    return out


def _unshuffle(buf, w, n):
    return _stored(buf, 0, w, n, True)


def _finish(stored, enc, base, dtype):
    """Stored values (offsets from base, or deltas) as the column's values."""
    if enc == "d":
        out = stored.astype(dtype)
        np.cumsum(out, out=out)  # 2.7x faster than cumsum(dtype=) (measured)
        if base:
            out += dtype.type(base)
        return out
    if base == 0:
        return stored if stored.dtype == dtype else stored.astype(dtype)
    return np.add(stored, dtype.type(base), dtype=dtype)


def _constant(value, dtype, n):
    # A read-only zero-stride view: a constant column costs nothing to "decode".
    return np.ndarray((n,), dtype, buffer=np.array([value], dtype), strides=(0,))


_MIN, _MAX = np.minimum.reduce, np.maximum.reduce  # without the method wrappers' cost


def encode_int(name, col, cctx, delta=None, shuffle=True, packed=False):
    """(descriptor, payload bytes) for one integer column of a block; packed: raw bytes
    for the block's single frame, which the caller compresses."""
    n = len(col)
    lo, hi = _MIN(col), _MAX(col)
    if lo == hi:
        return [name, "c", 0, int(lo), 0, 0, 0, n], b""
    enc, base = "o", lo
    if col.dtype.kind == "i":
        span = int(hi) - int(lo)
    else:
        span = int(hi - lo)
    w = _width(span)
    if (name in _SORTED_CANDIDATES if delta is None else delta) and w > 1:
        step = np.diff(col)
        if step.min() >= 0:
            dw = _width(int(step.max()))
            if dw < w:
                enc, w = "d", dw
                stored = np.empty(n, f"<u{w}")
                stored[0] = 0
                stored[1:] = step
    if enc == "o":
        stored = (col - lo).astype(f"<u{w}") if col.dtype.kind != "i" else \
            (col - np.int64(lo)).astype(f"<u{w}")
    shuffled = 1 if ((cctx or packed) and shuffle and w > 1) else 0
    raw = _shuffle(stored, w) if shuffled else stored
    if packed:
        return [name, enc, w, int(base), shuffled, raw.nbytes, 0, n], raw
    data = cctx.compress(raw) if cctx else raw.tobytes()
    return [name, enc, w, int(base), shuffled, len(data), container.crc32(data), n], data


# Next hops are few per file: stored plain and shuffled they take 0.035 bytes per record
# more than as a dictionary, whose sort cost a tenth of pyflow-pack's encoding (measured).
_DICT_CANDIDATES = ("sip", "dip", "sip.v4", "dip.v4")
_UNSHUFFLED = ("sport", "dport")


def encode_column(name, col, cctx, packed=False):
    """[(descriptor, payload)] for a column: plain, or, when smaller, as a dictionary of
    its distinct values (sorted, delta-encoded, in NAME#d) and each record's index into it
    (encoding 'x'), which is what repeated addresses of busy sources compress to."""
    plain = encode_int(name, col, cctx, shuffle=name not in _UNSHUFFLED, packed=packed)
    if name not in _DICT_CANDIDATES or len(col) < 64 or plain[0][1] == "c" or \
            col.dtype.itemsize > 4:
        return [plain]
    uniq, index = _dictionary(col, 0.8)
    if uniq is None:
        return [plain]
    idx = encode_int(name, index, cctx, delta=False,
                     shuffle=False, packed=packed)
    idx[0][1] = "x"
    table = encode_int(name + "#d", uniq, cctx, delta=True, packed=packed)
    if not packed and idx[0][5] + table[0][5] + 40 >= plain[0][5]:
        return [plain]
    return [idx, table]


def _dictionary(col, most):
    """(distinct values, each value's index into them) of 32-bit values, or (None, None)
    when there are more than most * len(col) distinct values.

    The values are sorted with their positions packed in the low bits: a plain sort, which
    is several times cheaper than the argsort behind np.unique (measured), and one that
    also tells, before any more work, that most columns would gain nothing."""
    n = len(col)
    bits = np.uint64(max(1, n.bit_length()))
    key = col.astype(np.uint64) << bits
    key |= np.arange(n, dtype=np.uint64)
    key.sort()
    values = key >> bits
    first = np.empty(n, bool)
    first[0] = True
    np.not_equal(values[1:], values[:-1], out=first[1:])
    if np.count_nonzero(first) > most * n:
        return None, None
    index = np.empty(n, np.uint32)
    index[(key & ((np.uint64(1) << bits) - np.uint64(1))).astype(np.intp)] = \
        np.cumsum(first, dtype=np.uint32) - np.uint32(1)
    return values[first].astype(col.dtype), index


def decode_int(desc, data, n, dtype, dctx, where, checked=False):
    name, enc, w, base, shuffled, clen, crc, _ = desc
    if n == 0:
        return np.zeros(0, dtype)
    if enc == "c":
        return _constant(base, dtype, n)
    if not checked and container.crc32(data) != crc:
        raise FormatError(f"{where}: checksum mismatch in column {name}")
    if dctx is not None:
        try:
            raw = dctx.decompress(data, max_output_size=n * w)
        except zstandard.ZstdError as exc:
            raise FormatError(f"{where}: corrupt column {name} ({exc})") from None
    else:
        raw = data
    if len(raw) != n * w:
        raise FormatError(f"{where}: column {name} has {len(raw)} bytes, expected {n * w}")
    if enc not in ("o", "x", "d"):
        raise FormatError(f"{where}: unknown column encoding {enc!r}")
    return _finish(_stored(raw, 0, w, n, shuffled), enc, base, dtype)


_LOW32 = np.uint64(0xFFFFFFFF)
_SHIFT32, _FFFF = np.uint64(32), np.uint64(0xFFFF)


def _ip_parts(name, col, ipv6):
    """Sub-columns of an address column. In an IPv6 block the IPv4 records' addresses go
    to NAME.v4 as 32-bit values and only the IPv6 records' to NAME.hi/NAME.lo, so a few
    IPv6 records do not widen every address of a block to 128 bits."""
    if col.ndim == 1:
        return [(name, col)]
    hi, lo = col[:, 0], col[:, 1]
    mapped = (hi == 0) & ((lo >> _SHIFT32) == _FFFF)
    if not (mapped | ipv6).all():
        return [(name + ".hi", hi), (name + ".lo", lo)]  # not canonical: kept whole
    # NAME.v4 has a value for every record (0 for IPv6 ones): decoding is then a
    # contiguous pass, and only the few IPv6 records are scattered into place.
    v4 = lo.astype(np.uint32)  # the low 32 bits
    parts = [(name + ".v4", v4)]
    if ipv6.any():
        v4[ipv6] = 0
        parts += [(name + ".hi", hi[ipv6]), (name + ".lo", lo[ipv6])]
    return parts


def _stats(batch):
    out = {}
    st = batch["stime"]
    out["stime"] = [int(st.min()), int(st.max())]
    et = schema.etime(batch)
    out["etime"] = [int(et.min()), int(et.max())]
    for name in ("sip", "dip"):
        col = batch[name]
        if col.ndim == 1:
            out[name] = [int(col.min()), int(col.max())]
        else:
            hi, lo = col[:, 0], col[:, 1]
            a, b = hi.min(), hi.max()
            out[name] = [[int(a), int(lo[hi == a].min())], [int(b), int(lo[hi == b].max())]]
    for name in ("sport", "dport", "protocol"):
        out[name] = [int(batch[name].min()), int(batch[name].max())]
    return out


PACKED_BELOW = 1 << 15


def encode_block(batch, cctx):
    """(block header dict, payload bytes) for one batch.

    A large block compresses each column on its own, so that a reader decodes only the
    columns it needs; a small one (most hourly archive files) packs all its columns into
    a single frame ("z": raw size), which costs one decompression instead of twenty."""
    n = schema.nrecords(batch)
    v6 = schema.is_v6(batch)
    packed = cctx is not None and n < PACKED_BELOW
    cols, parts = [], []
    ipv6 = batch["ipv6"] if v6 else None
    for name in schema.NAMES:
        for sub, col in (_ip_parts(name, batch[name], ipv6) if name in schema.IP_COLUMNS
                         else [(name, batch[name])]):
            for desc, data in encode_column(sub, col, cctx, packed):
                cols.append(desc)
                parts.append(data)
    if v6:
        desc, data = encode_int("ipv6", batch["ipv6"].view(np.uint8), cctx, packed=packed)
        cols.append(desc)
        parts.append(data)
    if not packed:
        return {"n": n, "v6": v6, "cols": cols, "stats": _stats(batch)}, b"".join(parts)
    return pack_block(n, v6, _stats(batch), cols, [(p,) for p in parts], cctx)


def pack_block(n, v6, stats, cols, datas, cctx):
    """(header, payload) of a packed block: its columns' descriptors (as encode_int gives
    them, packed) and raw bytes (each as a sequence of buffers), in one frame.

    One frame, but a zstd block per column (flushed after each), so that every column
    keeps entropy tables of its own; the columns queries read most come first, and the
    compressed end of each is recorded ("zc"), so that a reader that needs only those
    decompresses only the start of the frame."""
    order = _packed_order(tuple(c[0] for c in cols))
    cols = [cols[i] for i in order]
    sizes = [c[5] for c in cols]
    comp = cctx.compressobj(size=sum(sizes))
    chunks, ends, at = [], [], 0
    for i, size in zip(order, sizes, strict=True):
        if size:
            for buf in datas[i]:
                chunk = comp.compress(buf)
                chunks.append(chunk)
                at += len(chunk)
            chunk = comp.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
            chunks.append(chunk)
            at += len(chunk)
        ends.append(at)
    chunks.append(comp.flush())
    payload = b"".join(chunks)
    for c in cols:
        c[5] = 0  # the payload is the one frame; column lengths are in the raw bytes
    return {"n": n, "v6": v6, "cols": cols, "stats": stats, "z": sum(sizes),
            "crc": container.crc32(payload), "raw": sizes, "size": len(payload),
            "zc": ends}, payload


def _packed_order(names, cache={}):  # noqa: B006  (a cache shared by every call)
    """The order of a packed block's columns, by their names: by _PACKED_RANK, a
    sub-column (NAME.v4, NAME#d) with its column."""
    order = cache.get(names)
    if order is None:
        ranks = [_PACKED_RANK.get(n.split(".")[0].split("#")[0], len(_PACKED_RANK))
                 for n in names]
        order = cache[names] = sorted(range(len(names)), key=ranks.__getitem__)
    return order


# Order of the columns in a packed frame (sub-columns follow their column).
_PACKED_RANK = {name: i for i, name in enumerate((
    "ipv6", "protocol", "dport", "sport", "sip", "dip", "flags", "stime", "duration",
    "packets", "bytes", "sensor", "flowtype", "initflags", "sessflags", "attributes",
    "application", "nhip", "input", "output"))}


class _Where:
    """'FILE: block N' for error messages, formatted only when one is raised."""

    def __init__(self, reader, header):
        self.reader, self.header = reader, header

    def __str__(self):
        return self.reader.where(self)


class Block:
    """A block as read from a file: header (with stats) and the means to decode it."""

    def __init__(self, reader, header, payload):
        self.reader = reader
        self.header = header
        self.n = header["n"]
        self.v6 = header["v6"]
        self.stats = header["stats"]
        self.payload = payload
        self.where = _Where(reader, header)
        self.span = None  # (first byte, end) of its frame in the file, when read from one
        self.packed = "z" in header
        self.segments = []  # (raw offset, bytes): the packed frame decompressed so far
        self.avail = 0
        self._plan = self._dobj = None
        cols = header["cols"]
        sizes = header["raw"] if self.packed else [c[5] for c in cols]
        if len(sizes) != len(cols):
            raise FormatError(f"{reader.where(self)}: corrupt block header")
        self._index = None

    @property
    def index(self):
        """name -> (descriptor, offset, size) in the payload (packed: the raw frame); made
        when first needed (decoding.decode_run reads the header's columns directly)."""
        if self._index is None:
            cols = self.header["cols"]
            sizes = self.header["raw"] if self.packed else [c[5] for c in cols]
            try:
                self._index = {c[0]: (c, at, size) for c, at, size in
                               zip(cols, accumulate(sizes, initial=0), sizes, strict=False)
                               if len(c) == 8}
            except (TypeError, KeyError):
                raise FormatError(f"{self.where}: corrupt block header") from None
        return self._index

    def _unpack(self, dctx, need):
        """Decompress the packed frame at least up to raw byte `need`: only as many of
        its leading columns as that takes when the header says where they end."""
        where = self.where
        size = self.header["z"]
        if self._plan is None:
            if container.crc32(self.payload) != self.header.get("crc"):
                raise FormatError(f"{where}: checksum mismatch")
            if type(size) is not int or size < 0 or size > self.n * 200 + 1024:
                raise FormatError(f"{where}: corrupt block header")
            ends = self.header.get("zc")
            self._plan = False
            if type(ends) is list and len(ends) == len(self.header["raw"]):
                self._plan = (list(accumulate(self.header["raw"])), ends)
        dctx = dctx or zstandard.ZstdDecompressor()
        try:
            if not self._plan or need >= size:
                if self.avail:  # restart: a frame is decompressed from its start
                    self.segments, self.avail = [], 0
                raw, self._dobj = dctx.decompress(self.payload, max_output_size=size), None
                expect = size
            else:
                raw_ends, zc_ends = self._plan
                i = bisect_left(raw_ends, need)
                if self._dobj is None:
                    self.segments, self.avail, self._fed = [], 0, 0
                    self._dobj = dctx.decompressobj()
                raw = self._dobj.decompress(self.payload[self._fed: zc_ends[i]])
                self._fed = zc_ends[i]
                expect = raw_ends[i] - self.avail
        except (zstandard.ZstdError, TypeError) as exc:
            raise FormatError(f"{where}: corrupt block ({exc})") from None
        if len(raw) != expect:
            raise FormatError(f"{where}: corrupt block (size {len(raw)} of {expect})")
        self.segments.append((self.avail, raw))
        self.avail += len(raw)

    def _raw(self, at, size, dctx):
        """(bytes, offset) of a packed column's raw bytes."""
        if at + size > self.avail:
            self._unpack(dctx, at + size)
        for start, raw in reversed(self.segments):
            if start <= at:
                return raw, at - start
        raise FormatError(f"{self.where}: corrupt block")

    def _col(self, sub, dtype, dctx, count=None):
        count = self.n if count is None else count
        entry = self.index.get(sub)
        if entry is None or entry[0][7] != count:
            raise FormatError(f"{self.where}: block lacks column {sub}"
                              + ("" if entry is None else f" of {count} values"))
        desc, at, size = entry
        enc = desc[1]
        if enc == "c":
            return _constant(desc[3], dtype, count)
        if not self.packed:
            data = self.payload[at: at + size]
            if enc != "x":
                return decode_int(desc, data, count, dtype, dctx, self.where)
            stored = decode_int(desc, data, count, _U[desc[2]], dctx, self.where)
        else:
            # Columns are views of the block's one decompressed frame: no per-column
            # checksum (the frame has one) and no copy before the values are finished.
            w = desc[2]
            if size != w * count or enc not in ("o", "d", "x"):
                raise FormatError(f"{self.where}: corrupt column {sub}")
            raw, offset = self._raw(at, size, dctx)
            stored = _stored(raw, offset, w, count, desc[4])
            if enc != "x":
                return _finish(stored, enc, desc[3], dtype)
            if desc[3]:
                stored = _finish(stored, "o", desc[3], np.dtype(np.intp))
        table = self.index.get(sub + "#d")
        if table is None or type(table[0][7]) is not int or not 0 < table[0][7] <= self.n:
            raise FormatError(f"{self.where}: block lacks column {sub}#d")
        values = self._col(sub + "#d", dtype, dctx, table[0][7])
        try:
            return values.take(stored, mode="raise")
        except IndexError:
            raise FormatError(f"{self.where}: corrupt dictionary index in column {sub}") \
                from None

    def _address(self, name, ipv6, dctx, where6):
        col = np.empty((self.n, 2), np.uint64)
        u64 = _U[8]
        hi = self.index.get(name + ".hi")
        if hi is not None and hi[0][7] == self.n:
            col[:, 0] = self._col(name + ".hi", u64, dctx)
            col[:, 1] = self._col(name + ".lo", u64, dctx)
            return col
        col[:, 0] = 0
        np.bitwise_or(self._col(name + ".v4", _U[4], dctx), schema.V4_MAPPED_LO,
                      out=col[:, 1], dtype=np.uint64)
        if len(where6):
            col[where6, 0] = self._col(name + ".hi", u64, dctx, len(where6))
            col[where6, 1] = self._col(name + ".lo", u64, dctx, len(where6))
        return col

    def decode(self, columns=None, dctx=None):
        """The block's records as a batch; only the named columns when given."""
        return self._guarded(self._decode, columns, dctx)

    def _guarded(self, decode, columns, dctx):
        """decode(columns, dctx), with a context when the block needs one, and corrupt
        data reported as a FormatError naming the block."""
        if dctx is None and self.reader.compressed:
            dctx = zstandard.ZstdDecompressor()
        elif not self.reader.compressed:
            dctx = None
        try:
            return decode(columns, dctx)
        except (ValueError, OverflowError, TypeError, KeyError, IndexError) as exc:
            raise FormatError(f"{self.where}: corrupt block ({exc})") from None
        finally:
            # a partly read frame is not resumed later: the decompression context it
            # used serves other blocks in between
            self._dobj = None

    def decode_families(self, columns=None, dctx=None):
        """The block's records as batches of one address family each: the IPv4 records
        with 32-bit addresses and no ipv6 column, then the IPv6 ones (hi, lo), as
        schema.split_families splits a batch. For tools that key IPv4 records apart:
        building the (n, 2) columns of a mixed block only to take them apart had been a
        quarter of pyflow-stats' workers' time."""
        if not self.v6 or any(n in schema.IP_COLUMNS and not self._has_v4(n)
                              for n in (columns or schema.NAMES)):
            return schema.split_families(self.decode(columns, dctx))
        return self._guarded(self._decode_families, columns, dctx)

    def decode_split(self, dctx=None):
        """The block's records as segments.Split columns, for re-encoding: each address
        column as its 32-bit NAME.v4 values and the IPv6 records' NAME.hi and NAME.lo
        (an IPv4 block's addresses are all .v4), with ipv6 always; None for an IPv6 block
        that keeps 128-bit address columns."""
        if self.v6 and not all(self._has_v4(n) for n in schema.IP_COLUMNS):
            return None
        return self._guarded(self._decode_split, None, dctx)

    def _decode_split(self, columns, dctx):
        if self.packed and self.avail < self.header["z"]:
            self._unpack(dctx, self.header["z"])
        if self.v6:
            ipv6 = self._col("ipv6", _U[1], dctx).view(bool)
            n6 = int(np.count_nonzero(ipv6))
        else:
            ipv6, n6 = np.zeros(self.n, bool), 0
        out = {}
        for name in schema.NAMES:
            if name not in schema.IP_COLUMNS:
                out[name] = self._col(name, schema.COLUMNS[name], dctx)
                continue
            out[name + ".v4"] = self._col(name + ".v4" if self.v6 else name, _U[4], dctx)
            for half in (".hi", ".lo"):
                out[name + half] = self._col(name + half, _U[8], dctx, n6) if n6 else \
                    np.zeros(0, _U[8])
        out["ipv6"] = ipv6
        return out

    def _has_v4(self, name):
        entry = self.index.get(name + ".v4")
        return entry is not None and entry[0][7] == self.n

    def _decode_families(self, columns, dctx):
        names = schema.NAMES if columns is None else columns
        ipv6 = self._col("ipv6", _U[1], dctx).view(bool)
        where6 = np.flatnonzero(ipv6)
        where4 = np.flatnonzero(~ipv6)
        four, six = {}, {}
        for name in names:
            if name in schema.IP_COLUMNS:
                four[name] = self._col(name + ".v4", _U[4], dctx)[where4]
                col = np.empty((len(where6), 2), np.uint64)
                if len(where6):
                    col[:, 0] = self._col(name + ".hi", _U[8], dctx, len(where6))
                    col[:, 1] = self._col(name + ".lo", _U[8], dctx, len(where6))
                six[name] = col
            else:
                col = self._col(name, schema.COLUMNS[name], dctx)
                four[name], six[name] = col[where4], col[where6]
        six["ipv6"] = np.ones(len(where6), bool)
        return [b for b, n in ((four, len(where4)), (six, len(where6))) if n]

    def _decode(self, columns, dctx):
        names = schema.NAMES if columns is None else columns
        if self.packed:
            # decompress once, as far as the furthest column asked for
            wanted = set(names) | {"ipv6"}
            need = max((at + size for sub, (_, at, size) in self.index.items()
                        if sub.split(".")[0].split("#")[0] in wanted), default=0)
            if need > self.avail:
                self._unpack(dctx, need)
        out = {}
        ipv6 = self._col("ipv6", _U[1], dctx).view(bool) if self.v6 else None
        where6 = np.flatnonzero(ipv6) if self.v6 else None
        for name in names:
            if name in schema.IP_COLUMNS:
                if self.v6:
                    out[name] = self._address(name, ipv6, dctx, where6)
                else:
                    out[name] = self._col(name, _U[4], dctx)
            else:
                out[name] = self._col(name, schema.COLUMNS[name], dctx)
        if self.v6:  # always: it is what marks a batch as IPv6
            out["ipv6"] = ipv6
        return out


def _check_block_header(header):
    """Validate a block header read from a file; returns its payload size. The column
    descriptors are checked when a column is decoded (a skipped block costs nothing)."""
    n = header["n"]
    if type(n) is not int or not 0 < n <= 1 << 28 or type(header["v6"]) is not bool \
            or type(header["stats"]) is not dict or type(header["cols"]) is not list:
        raise ValueError("bad block header")
    if "z" in header:
        size = header["size"]
        if type(size) is not int or size < 0 or type(header["raw"]) is not list:
            raise ValueError("bad packed block header")
        return size
    sizes = [c[5] for c in header["cols"]]
    if not all(type(x) is int and x >= 0 for x in sizes):
        raise ValueError("bad column descriptor")
    return sum(sizes)


class FlowWriter:
    """Writes batches as blocks to a binary file object; close() writes the end marker."""

    def __init__(self, f, meta=None, compression="zstd", level=DEFAULT_LEVEL,
                 block_records=DEFAULT_BLOCK_RECORDS, header=True, parallel=True):
        self.f = f
        self.parallel = parallel  # False when the caller already runs writers in parallel
        self.meta = dict(meta or {})
        self.meta.update(kind=KIND, compression=compression, schema=list(schema.NAMES))
        if compression == "zstd":
            self.meta["level"] = level
        elif compression != "none":
            raise ValueError(f"unknown compression {compression}")
        self.level = level if compression == "zstd" else None
        self.block_records = block_records
        self.inflight = deque()  # blocks being encoded by the pool, written in order
        self.pending = []
        self.npending = 0
        self.records = 0
        self.blocks = 0
        self.closed = False
        if header:
            f.write(container.header_bytes(self.meta))

    def write(self, batch):
        n = schema.nrecords(batch)
        if not n:
            return
        if self.pending and schema.is_v6(self.pending[0]) != schema.is_v6(batch):
            self._flush_pending()  # keep IPv4 blocks 32-bit wide
        self.pending.append(batch)
        self.npending += n
        while self.npending >= self.block_records:
            whole = schema.concat(self.pending)
            self._write_block(schema.take(whole, slice(0, self.block_records)))
            rest = schema.take(whole, slice(self.block_records, None))
            self.pending = [rest] if schema.nrecords(rest) else []
            self.npending -= self.block_records

    def _flush_pending(self):
        if self.pending:
            self._write_block(schema.concat(self.pending))
        self.pending, self.npending = [], 0

    def _write_block(self, batch):
        pool = _pool(2) if self.parallel else None
        if pool is None or schema.nrecords(batch) < 4096:
            self._drain(0)
            self._emit(encode_block(batch, _compressor(self.level)))
            return
        self.inflight.append(pool.submit(_encode, batch, self.level))
        self._drain(3)

    def _drain(self, keep):
        while len(self.inflight) > keep:
            self._emit(self.inflight.popleft().result())

    def _emit(self, encoded):
        header, payload = encoded
        self.f.write(container.frame_bytes(container.BLOCK, header))
        self.f.write(payload)
        self.records += header["n"]
        self.blocks += 1

    def flush(self):
        """Write out every record given so far as complete blocks (no end marker)."""
        self._flush_pending()
        self._drain(0)

    def write_frames(self, data, records, blocks):
        """Append block frames encoded by another writer with the same compression
        (a worker process's flush() output)."""
        self.flush()
        self.f.write(data)
        self.records += records
        self.blocks += blocks

    def copy_frames(self, path, identity, spans, records, blocks):
        """Append block frames copied from byte ranges of the file at path, frames that a
        reader checked (a worker process that decoded them), where identity (st_dev,
        st_ino) is the file it read. The system copies them (sendfile): they need not
        pass through this process."""
        self.flush()
        self.f.flush()
        with open(path, "rb") as src:
            st = os.fstat(src.fileno())
            if (st.st_dev, st.st_ino) != tuple(identity):
                raise FormatError(f"{path}: replaced while it was read")
            for start, end in spans:
                _copy_range(src, self.f, start, end - start)
        self.records += records
        self.blocks += blocks
    def write_block(self, block):
        """Copy a block read from a file of the same compression without re-encoding it."""
        self._flush_pending()
        self._drain(0)
        header = {k: v for k, v in block.header.items() if k != "_no"}
        self.f.write(container.frame_bytes(container.BLOCK, header))
        self.f.write(block.payload)
        self.records += block.n
        self.blocks += 1

    def close(self):
        """Flush the last block and write the segment's end marker (not the file)."""
        if self.closed:
            return
        self._flush_pending()
        self._drain(0)
        self.f.write(container.frame_bytes(
            container.END, {"records": self.records, "blocks": self.blocks}))
        self.f.flush()
        self.closed = True


class FlowReader:
    """Reads a pyflow flow file or stream block by block."""

    def __init__(self, f, name, prefix=b"", threads=2):
        self.f = f
        self.name = name
        self.header = container.read_header(f, name, prefix)
        self.meta = self.header.meta
        if self.meta.get("kind") != KIND:
            raise FormatError(f"{name}: not a flow file (it holds a {self.meta.get('kind')})")
        comp = self.meta.get("compression")
        if comp not in ("zstd", "none"):
            raise FormatError(f"{name}: unknown compression {comp!r}")
        self.compressed = comp == "zstd"
        self.frames = container.FrameReader(f, name, self.header)
        self.threads = threads
        self.block_no = 0
        self.segments = []  # end-marker headers seen

    def where(self, block):
        return f"{self.name}: block {block.header.get('_no', '?')}"

    def close(self):
        import sys
        if self.f is not sys.stdin.buffer:
            self.f.close()

    def blocks(self):
        """Yield each Block with its header; call .load() to read its payload, or not."""
        while True:
            frame = self.frames.next_frame()
            if frame is None:
                return
            kind, header, _ = frame
            if kind == container.END:
                self.segments.append(header)
                continue
            try:
                size = _check_block_header(header)
            except (KeyError, TypeError, ValueError, IndexError):
                raise FormatError(f"{self.name}: corrupt block header "
                                  f"(block {self.block_no})") from None
            header["_no"] = self.block_no
            self.block_no += 1
            yield _PendingBlock(self, header, size, self.frames.frame_at)

    def decoded_blocks(self, columns=None, keep=None):
        """(Block, batch) pairs in order, decoded by a small thread pool.

        keep(stats) -> False skips a block without reading its payload."""
        for _, block, batch in decode_all([self], columns, keep, self.threads):
            yield block, batch

    def batches(self, columns=None, keep=None):
        """Decoded batches, in order."""
        for _, batch in self.decoded_blocks(columns, keep):
            yield batch

    def __iter__(self):
        return self.batches()


def decode_all(readers, columns=None, keep=None, threads=2, work=None):
    """(reader, block, batch) for every block of a sequence of readers, in order.

    Blocks are decoded on a thread pool and the pipeline runs across file boundaries, so
    an archive of many small files keeps both cores busy. Readers of other formats (with
    their own decoded_blocks) are passed through in turn.

    work(block, decode), when given, runs on the pool in place of decoding, and its result
    takes the place of the batch; decode(columns) gives the block's batch for columns."""
    pool = _pool(threads)
    ahead = deque()
    depth = 2 * threads + 2
    try:
        for reader in readers:
            if not isinstance(reader, FlowReader):
                while ahead:
                    r, block, fut = ahead.popleft()
                    yield r, block, fut.result()
                for block, batch in reader.decoded_blocks(None if work else columns):
                    if work is not None:
                        batch = work(block, lambda cols, b=batch: b)
                    yield reader, block, batch
                continue
            for pending in reader.blocks():
                if keep is not None and not keep(pending.header["stats"]):
                    pending.skip()
                    continue
                block = pending.load()
                if pool is None:
                    yield reader, block, (_work(block, work) if work else block.decode(columns))
                    continue
                ahead.append((reader, block, pool.submit(_work, block, work) if work
                              else pool.submit(_decode, block, columns)))
                if len(ahead) > depth:
                    r, block, fut = ahead.popleft()
                    yield r, block, fut.result()
            reader.close()  # its payloads are all read
        while ahead:
            r, block, fut = ahead.popleft()
            yield r, block, fut.result()
    finally:
        for _, _, fut in ahead:
            fut.cancel()


_pools = {}
_local = threading.local()


def _pool(threads):
    # One pool per process: tools read thousands of small archive files in a row.
    if threads <= 1:
        return None
    if threads not in _pools:
        _pools[threads] = ThreadPoolExecutor(threads, thread_name_prefix="pyflow-decode")
    return _pools[threads]


def _copy_range(src, dst, at, n):
    """Copy n bytes of the file src from offset at to the end of the file object dst."""
    try:
        out = dst.fileno()
    except (AttributeError, OSError, ValueError):
        out = None
    while n > 0 and out is not None:
        try:
            sent = os.sendfile(out, src.fileno(), at, n)
        except OSError:
            break  # not to this kind of output: copied below
        if sent == 0:
            break
        at += sent
        n -= sent
    while n > 0:
        chunk = os.pread(src.fileno(), min(n, 1 << 20), at)
        if not chunk:
            raise FormatError(f"{src.name}: shorter than when it was read")
        dst.write(chunk)
        at += len(chunk)
        n -= len(chunk)


def _compressor(level):
    if level is None:
        return None
    cache = getattr(_local, "cctx", None)
    if cache is None:
        cache = _local.cctx = {}
    if level not in cache:
        cache[level] = zstandard.ZstdCompressor(level=level)
    return cache[level]


def _encode(batch, level):
    return encode_block(batch, _compressor(level))


def _decode(block, columns):
    return block.decode(columns, _local_dctx(block))


def families_work(columns):
    """A decode_all work function giving each block's split_families batches."""
    def work(block, decode):
        if isinstance(block, Block):
            return block.decode_families(columns, _local_dctx(block))
        return schema.split_families(decode(columns))
    return work


def _local_dctx(block):
    if not block.reader.compressed:
        return None
    dctx = getattr(_local, "dctx", None)
    if dctx is None:
        dctx = _local.dctx = zstandard.ZstdDecompressor()
    return dctx


def _work(block, work):
    return work(block, lambda columns: _decode(block, columns))


class _PendingBlock:
    def __init__(self, reader, header, size, at):
        self.reader = reader
        self.header = header
        self.size = size
        self.n = header["n"]
        self.at = at  # the frame's first byte in the file

    def load(self):
        start = self.reader.frames.pos
        block = Block(self.reader, self.header, self.reader.frames.read_payload(self.size))
        block.span = (self.at, start + self.size)
        return block

    def skip(self):
        self.reader.frames.skip_payload(self.size)
