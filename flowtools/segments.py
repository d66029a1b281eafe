"""Many small flow blocks encoded at once: the archive's hourly files.

An hourly file holds a few thousand records, and flowfile.encode_block spends most of the
time of so small a block on the cost of its ~600 numpy calls rather than on the records
(0.75 us per record at 4,096 records against 0.4 at 16,384, measured). encode_segments
takes a batch whose records are grouped into segments, one per block, and does each step
of encode_block as one numpy pass over all of them: minima and maxima by reduceat, widths
and encodings as arrays, one dictionary sort for every segment's addresses, one byte
shuffle per width. What is left per block is its header and the compressor's calls.

The blocks are byte for byte those encode_block gives for each segment alone (the tests
hold the two to that), so the format has one definition: flowfile's.
"""

import numpy as np

from . import schema
from .flowfile import _DICT_CANDIDATES, _UNSHUFFLED, PACKED_BELOW, encode_block, pack_block

_U64 = np.uint64
_LIMITS = np.array([1 << 8, 1 << 16, 1 << 32], _U64)
_WIDTH_OF = np.array([1, 2, 4, 8], np.int64)
_UINT = {1: np.dtype("<u1"), 2: np.dtype("<u2"), 4: np.dtype("<u4"), 8: np.dtype("<u8")}
_KEY_BITS = 64  # of a dictionary sort key (a test lowers it)


def _widths(span):
    """flowfile._width of every uint64 span."""
    return _WIDTH_OF[np.searchsorted(_LIMITS, span, side="right")]


class _Segs:
    """Segment k of an array is [starts[k], starts[k] + lens[k]); none is empty."""

    def __init__(self, lens):
        self.lens = np.asarray(lens, np.int64)
        self.starts = np.zeros(len(self.lens), np.int64)
        np.cumsum(self.lens[:-1], out=self.starts[1:])
        self.n = int(self.lens.sum())
        self.bounds = self.starts.tolist() + [self.n]
        self._keys = self._starts = None

    def per_record(self, values):
        return np.repeat(values, self.lens)

    def select(self, keep):
        """(records mask or None, _Segs) of the segments where keep is True."""
        if keep.all():
            return None, self
        return self.per_record(keep), _Segs(self.lens[keep])

    def record_starts(self):
        """The start of each record's segment."""
        if self._starts is None:
            self._starts = self.per_record(self.starts)
        return self._starts

    def sort_keys(self):
        """(bits, key base) for sorting values within segments: each record's segment
        number and position within it, around 32 bits left free for its value."""
        if self._keys is None:
            pbits = max(1, int(self.lens.max()).bit_length())
            pos = np.arange(self.n, dtype=_U64)
            pos -= self.record_starts().view(_U64)
            pos |= self.per_record(np.arange(len(self.lens), dtype=_U64) << _U64(32 + pbits))
            self._keys = pbits, pos
        return self._keys


class _Encoded:
    """One integer column encoded for every segment of a _Segs: per segment its
    descriptor (as encode_int makes it, packed) and its raw bytes as buffers."""

    def __init__(self, name, col, segs, delta, shuffle):
        self.name, self.segs = name, segs
        starts = segs.starts
        lo = np.minimum.reduceat(col, starts)
        hi = np.maximum.reduceat(col, starts)
        self.lo, self.hi = lo, hi
        span = hi.astype(_U64) - lo.astype(_U64)  # modular: right for int64 too
        w = _widths(span)
        const = lo == hi
        w[const] = 0
        is_d = np.zeros(len(w), bool)
        # offsets from the segment's minimum, in the column's own width (int64 modulo
        # 2**64 as encode_int's astype takes it)
        owned = bool(lo.any())
        if const.all():
            self.w, self.base, self.enc, self.shuffle, self.planes = \
                w.tolist(), lo.tolist(), ["c"] * len(w), shuffle, {}
            return
        off = col - segs.per_record(lo) if owned else col
        if off.dtype.kind == "i":
            off = off.view(_UINT[off.dtype.itemsize])
        if delta and (w > 1).any():
            # each record's step from the one before it, in the column's own type as
            # np.diff takes it; 0 at a segment's start changes neither test below
            step = np.empty(len(col), col.dtype)
            step[0] = 0
            np.subtract(col[1:], col[:-1], out=step[1:])
            step[starts] = 0
            smin = np.minimum.reduceat(step, starts)
            smax = np.maximum.reduceat(step, starts)
            dw = _widths(smax.astype(_U64))
            is_d = (w > 1) & (smin >= 0) & (dw < w)
            if is_d.any():
                w = np.where(is_d, dw, w)
                at = segs.per_record(is_d)
                off = off if owned else off.copy()
                off[at] = step[at].view(off.dtype)
        self.w = w.tolist()
        self.base = lo.tolist()
        self.enc = np.where(const, "c", np.where(is_d, "d", "o")).tolist()
        self.shuffle = shuffle
        # the stored values at each width present (of every record: cheaper than picking
        # out the segments of that width), shuffled into byte planes when asked
        self.planes = {}
        for width in set(self.w) - {0}:
            vals = off.astype(_UINT[width], copy=False)
            if shuffle and width > 1:
                vals = np.ascontiguousarray(vals.view(np.uint8).reshape(-1, width).T)
            self.planes[width] = vals

    def part(self, k):
        """(descriptor, raw buffers) of segment k."""
        a, b = self.segs.bounds[k], self.segs.bounds[k + 1]
        n = b - a
        w = self.w[k]
        if w == 0:
            return [self.name, "c", 0, self.base[k], 0, 0, 0, n], ()
        vals = self.planes[w]
        if self.shuffle and w > 1:
            return [self.name, self.enc[k], w, self.base[k], 1, w * n, 0, n], \
                [row[a: b] for row in vals]
        return [self.name, self.enc[k], w, self.base[k], 0, w * n, 0, n], (vals[a: b],)


class _Column:
    """A column of every segment as encode_column encodes it: plain, or for address
    columns a dictionary (sorted distinct values, NAME#d) and an index per record."""

    def __init__(self, name, col, segs):
        self.plain = _Encoded(name, col, segs, name == "stime", name not in _UNSHUFFLED)
        self.dict = None
        if name not in _DICT_CANDIDATES or col.dtype.itemsize > 4:
            return
        keep = (segs.lens >= 64) & (self.plain.lo != self.plain.hi)
        if not keep.any():
            return
        mask, sub = segs.select(keep)
        vals = col if mask is None else col[mask]
        index, counts, uniq = _dictionaries(vals, sub)
        used = counts <= 0.8 * sub.lens  # as flowfile._dictionary decides
        if not used.any():
            return
        which = np.flatnonzero(keep)[used]
        imask, isub = sub.select(used)
        idx = _Encoded(name, index if imask is None else index[imask], isub, False, False)
        table = _Encoded(name + "#d", uniq if imask is None else uniq[np.repeat(used, counts)],
                         _Segs(counts[used]), True, True)
        self.dict = ({k: i for i, k in enumerate(which.tolist())}, idx, table)

    def parts(self, k):
        if self.dict is not None:
            at = self.dict[0].get(k)
            if at is not None:
                desc, data = self.dict[1].part(at)
                desc[1] = "x"
                return [(desc, data), self.dict[2].part(at)]
        return [self.plain.part(k)]


def _dictionaries(vals, segs):
    """(index of each record into its segment's distinct values, distinct count per
    segment, the distinct values of every segment back to back) of 32-bit values.

    One sort orders every segment's values at once: segment, value and position within
    the segment packed into one 64-bit key, as flowfile._dictionary packs a block's."""
    nseg = len(segs.lens)
    pbits = max(1, int(segs.lens.max()).bit_length())
    if max(1, nseg.bit_length()) + 32 + pbits > _KEY_BITS:  # more segments than a key holds
        half = nseg // 2
        a, b = _Segs(segs.lens[:half]), _Segs(segs.lens[half:])
        cut = a.n
        ia, ca, ua = _dictionaries(vals[:cut], a)
        ib, cb, ub = _dictionaries(vals[cut:], b)
        return np.concatenate((ia, ib)), np.concatenate((ca, cb)), np.concatenate((ua, ub))
    pbits, base = segs.sort_keys()
    key = vals.astype(_U64)
    key <<= _U64(pbits)
    key |= base
    key.sort()
    # a new (segment, value) where adjacent keys differ above the position bits
    first = np.empty(segs.n, bool)
    first[0] = True
    step = key[1:] ^ key[:-1]
    np.greater_equal(step, _U64(1 << pbits), out=first[1:])
    del step
    counts = np.add.reduceat(first, segs.starts, dtype=np.int64)
    rank = np.cumsum(first, dtype=np.uint32)
    rank -= segs.per_record(rank[segs.starts])  # 0 at each segment's first value
    uniq = ((key[first] >> _U64(pbits)) & _U64(0xFFFFFFFF)).astype(vals.dtype)
    key &= _U64((1 << pbits) - 1)
    where = key.view(np.int64)
    where += segs.record_starts()
    index = np.empty(segs.n, np.uint32)
    index[where] = rank
    return index, counts, uniq


class Split:
    """An IPv6 batch with its addresses as flowfile stores them: for each address column
    NAME, NAME.v4 holds every record's 32-bit value (0 for IPv6 records) and NAME.hi and
    NAME.lo the IPv6 records' halves only; the other columns, ipv6 among them, are as in
    a batch. pyflow-pack's workers decode blocks to this form and encode from it, rather
    than building 128-bit columns only to take them apart again."""

    def __init__(self, cols):
        self.cols = cols
        self.n = len(cols["stime"])
        self._six = None

    @classmethod
    def of(cls, batch):
        """The split form of an IPv6 batch whose IPv4 records are all ::ffff:a.b.c.d."""
        ipv6 = batch["ipv6"]
        cols = {k: v for k, v in batch.items() if k not in schema.IP_COLUMNS}
        for name in schema.IP_COLUMNS:
            hi, lo = batch[name][:, 0], batch[name][:, 1]
            v4 = lo.astype(np.uint32)
            v4[ipv6] = 0
            cols[name + ".v4"], cols[name + ".hi"], cols[name + ".lo"] = v4, hi[ipv6], lo[ipv6]
        return cls(cols)

    def sixes(self):
        """IPv6 records before each record (and in all, last)."""
        if self._six is None:
            self._six = np.zeros(self.n + 1, np.int64)
            np.cumsum(self.cols["ipv6"], out=self._six[1:])
        return self._six

    def slice(self, a, b):
        c, d = self.sixes()[[a, b]].tolist()
        return Split({k: v[c: d] if k.endswith((".hi", ".lo")) else v[a: b]
                      for k, v in self.cols.items()})

    def joined(self):
        """The records as an ordinary IPv6 batch."""
        cols, ipv6 = self.cols, self.cols["ipv6"]
        batch = {}
        for name in schema.NAMES:
            if name not in schema.IP_COLUMNS:
                batch[name] = cols[name]
                continue
            col = np.empty((self.n, 2), _U64)
            col[:, 0] = 0
            np.bitwise_or(cols[name + ".v4"], schema.V4_MAPPED_LO, out=col[:, 1], dtype=_U64)
            col[ipv6, 0] = cols[name + ".hi"]
            col[ipv6, 1] = cols[name + ".lo"]
            batch[name] = col
        batch["ipv6"] = ipv6
        return batch


def _address_parts(name, split, segs, n6):
    """[_Column] of an address column as flowfile._ip_parts splits it: NAME.v4 for every
    record, and the .hi/.lo pair of the IPv6 records of the segments that have any, with
    the pair's number of each segment (-1 for none)."""
    cols = split.cols
    out = [_Column(name + ".v4", cols[name + ".v4"], segs)]
    if n6.any():
        six = _Segs(n6[n6 > 0])
        at = np.full(len(n6), -1, np.int64)
        at[n6 > 0] = np.arange(len(six.lens))
        out.append((_Column(name + ".hi", cols[name + ".hi"], six),
                    _Column(name + ".lo", cols[name + ".lo"], six), at.tolist()))
    return out


def _address_stats(name, split, segs, n6):
    """flowfile._stats' [[hi, lo] lowest, [hi, lo] highest] address of each segment."""
    cols = split.cols
    ipv6, v4 = cols["ipv6"], cols[name + ".v4"]
    n4 = (segs.lens - n6).tolist()
    m4 = np.minimum.reduceat(np.where(ipv6, np.uint32(0xFFFFFFFF), v4), segs.starts)
    x4 = np.maximum.reduceat(np.where(ipv6, np.uint32(0), v4), segs.starts)
    mapped = int(schema.V4_MAPPED_LO)
    lows = [[(0, mapped | m)] if k else [] for m, k in zip(m4.tolist(), n4, strict=True)]
    highs = [[(0, mapped | m)] if k else [] for m, k in zip(x4.tolist(), n4, strict=True)]
    if n6.any():
        hi, lo = cols[name + ".hi"], cols[name + ".lo"]
        six = _Segs(n6[n6 > 0])
        a = np.minimum.reduceat(hi, six.starts)
        b = np.maximum.reduceat(hi, six.starts)
        la = np.minimum.reduceat(np.where(hi == six.per_record(a), lo, _U64(2**64 - 1)),
                                 six.starts)
        lb = np.maximum.reduceat(np.where(hi == six.per_record(b), lo, _U64(0)), six.starts)
        for k, x, y, u, v in zip(np.flatnonzero(n6).tolist(), a.tolist(), la.tolist(),
                                 b.tolist(), lb.tolist(), strict=True):
            lows[k].append((x, y))
            highs[k].append((u, v))
    return [[list(min(lo)), list(max(hi))] for lo, hi in zip(lows, highs, strict=True)]


def _all_canonical(batch):
    ok = np.ones(schema.nrecords(batch), bool)
    ipv6 = batch["ipv6"]
    for name in schema.IP_COLUMNS:
        hi, lo = batch[name][:, 0], batch[name][:, 1]
        ok &= ipv6 | ((hi == 0) & ((lo >> _U64(32)) == _U64(0xFFFF)))
    return ok


def _stats(batch, segs, columns, split, n6):
    """flowfile._stats of every segment (addresses from split in an IPv6 batch)."""
    starts = segs.starts
    out = [{} for _ in starts]

    def put(key, pairs):
        for d, p in zip(out, pairs, strict=True):
            d[key] = p

    def lohi(name):
        c = columns.get(name)
        if c is not None:
            return c.plain.lo.tolist(), c.plain.hi.tolist()
        col = batch[name]
        return (np.minimum.reduceat(col, starts).tolist(),
                np.maximum.reduceat(col, starts).tolist())

    put("stime", [list(p) for p in zip(*lohi("stime"), strict=True)])
    et = schema.etime(batch)
    put("etime", [list(p) for p in zip(np.minimum.reduceat(et, starts).tolist(),
                                         np.maximum.reduceat(et, starts).tolist(),
                                         strict=True)])
    for name in ("sip", "dip"):
        if split is None:
            put(name, [list(p) for p in zip(*lohi(name), strict=True)])
        else:
            put(name, _address_stats(name, split, segs, n6))
    for name in ("sport", "dport", "protocol"):
        put(name, [list(p) for p in zip(*lohi(name), strict=True)])
    return out


def _encode_run(batch, segs, cctx):
    """[(header, payload)] of each segment of a batch (or Split) whose segments are all
    small and, in an IPv6 batch, canonical."""
    split = batch if isinstance(batch, Split) else \
        Split.of(batch) if schema.is_v6(batch) else None
    cols = batch if split is None else split.cols
    v6 = split is not None
    n6 = np.add.reduceat(cols["ipv6"], segs.starts, dtype=np.int64) if v6 else None
    per_name = []  # [_Column or (.hi, .lo, numbers)] of each column, in schema order
    plain = {}
    for name in schema.NAMES:
        if v6 and name in schema.IP_COLUMNS:
            per_name.append(_address_parts(name, split, segs, n6))
        else:
            c = _Column(name, cols[name], segs)
            plain[name] = c
            per_name.append([c])
    if v6:
        per_name.append([_Column("ipv6", cols["ipv6"].view(np.uint8), segs)])
    stats = _stats(cols, segs, plain, split, n6)
    out = []
    for k in range(len(segs.lens)):
        n = segs.bounds[k + 1] - segs.bounds[k]
        descs, datas = [], []
        for columns in per_name:
            for c in columns:
                if isinstance(c, tuple):  # the .hi/.lo pair of the segment's IPv6 records
                    at = c[2][k]
                    if at < 0:
                        continue
                    parts = c[0].parts(at) + c[1].parts(at)
                else:
                    parts = c.parts(k)
                for desc, data in parts:
                    descs.append(desc)
                    datas.append(data)
        out.append(pack_block(n, v6, stats[k], descs, datas, cctx))
    return out


def encode_segments(batch, lens, cctx):
    """[(header, payload)] of the blocks that encode_block(cctx) makes of each segment of
    batch (a batch, or a Split of one) on its own, segment k being the lens[k] records
    after segment k - 1's."""
    segs = _Segs(lens)
    split = isinstance(batch, Split)
    if segs.n != (batch.n if split else schema.nrecords(batch)):
        raise ValueError("segment lengths do not add up to the batch")
    if not len(segs.lens):
        return []

    def part(a, b):
        return batch.slice(a, b) if split else schema.take(batch, slice(a, b))

    def alone(a, b):
        p = part(a, b)
        return encode_block(p.joined() if split else p, cctx)

    # Segments encode_block would not pack (large, or with addresses it keeps 128-bit)
    # go to it one by one; runs of the others are encoded together.
    solo = segs.lens >= PACKED_BELOW
    if not split and schema.is_v6(batch):
        bad = ~_all_canonical(batch)
        if bad.any():
            solo |= np.add.reduceat(bad, segs.starts, dtype=np.int64) > 0
    bounds = segs.bounds
    if cctx is None or solo.all():
        return [alone(a, b) for a, b in zip(bounds, bounds[1:], strict=False)]
    out = []
    k, solo = 0, solo.tolist()
    while k < len(solo):
        j = k
        while j < len(solo) and solo[j] == solo[k]:
            j += 1
        if solo[k]:
            out += [alone(bounds[i], bounds[i + 1]) for i in range(k, j)]
        else:
            out += _encode_run(part(bounds[k], bounds[j]), _Segs(segs.lens[k:j]), cctx)
        k = j
    return out
