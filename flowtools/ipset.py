"""IP sets: sorted disjoint address ranges, their algebra, and their files.

An IPSet is an addrs.Ranges, so it is itself a matcher (``contains``, ``may_contain``) that
rwfilter's --sipset family uses directly. IPv4 sets hold uint32 ``starts``/``ends``; IPv6 sets
hold (k, 2) uint64 [hi, lo] pairs, with IPv4 addresses inside as ::ffff:0:0/96 the way SiLK's
IPv6 sets hold them. Ranges are inclusive, sorted, disjoint and never adjacent, so two equal
sets have equal arrays.

The algebra is a sweep over sorted range boundaries: every start and every end + 1 of both
operands becomes a key, one sort orders them, running sums say which operand covers each
elementary segment, and the operation's truth table picks the segments (then merged). For
IPv4 the boundary and its kind pack into one int64, so the sort is a plain (SIMD) sort.

Files (``read_set``/``write_set``): pyflow's own set file is the pyflow container
(container.py) with metadata ``{"kind": "ipset", "ipv6": bool, "compression": "zstd",
"history": [...], "notes": [...]}``; each block holds up to BLOCK_RANGES ranges, its header
``{"n": ranges, "cols": [...]}`` with columns encoded as flow columns are
(flowfile.encode_int): IPv4 ``start`` (delta) and ``size`` (end - start); IPv6 ``start.hi``,
``start.lo``, ``end.hi``, ``end.lo``. End markers carry ``{"records": ranges, "blocks": B}``.
SiLK's IPset files (FT_IPSET, record versions 0-5) are read and written by silkset.py.
"""


import numpy as np
import zstandard

from . import addrs, container
from .errors import FlowError, FormatError

KIND = "ipset"
BLOCK_RANGES = 1 << 20
M64 = np.uint64(addrs.M64)
_ONE = np.uint64(1)


class IPSet(addrs.Ranges):
    """A set of IPv4 or IPv6 addresses as normalized ranges (see the module doc)."""

    def __init__(self, starts=(), ends=(), ipv6=False, meta=None):
        super().__init__(starts, ends, ipv6)
        self.meta = dict(meta or {})  # history/notes of the file it came from

    # --- constructors

    @classmethod
    def empty(cls, ipv6=False):
        return cls(ipv6=ipv6)

    @classmethod
    def from_addresses(cls, col, ipv6=None):
        """The distinct addresses of a column (uint32, or (n, 2) uint64 [hi, lo])."""
        col = np.asarray(col)
        if col.ndim == 1:
            u = np.sort(col.astype(np.uint32))  # np.unique is 100x slower (numpy 2.4)
            u = u[np.r_[True, u[1:] != u[:-1]]] if len(u) else u
            return cls.from_sorted(u, ipv6)
        col = col.reshape(-1, 2).astype(np.uint64)
        if not len(col):
            return cls().to_v6()
        mapped, v4 = addrs._mapped(col)
        if mapped.all() and len(col):
            return cls.from_addresses(v4).to_v6()
        order = np.lexsort((col[:, 1], col[:, 0]))
        hi, lo = col[order, 0], col[order, 1]
        new = np.r_[True, (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])]
        return cls.from_sorted(np.stack([hi[new], lo[new]], 1))

    @classmethod
    def from_sorted(cls, col, ipv6=None):
        """The set of distinct addresses given in increasing order (uint32, or (n, 2)
        uint64 [hi, lo] rows), such as a bag's keys: from_addresses without its sort,
        which had been a third of pyflow-bagtool --coverset's time on a large bag."""
        col = np.asarray(col)
        if col.ndim == 1:
            u = col.astype(np.uint32, copy=False)
            brk = np.flatnonzero(np.diff(u.astype(np.int64)) != 1)
            out = cls(u[np.r_[0, brk + 1]], u[np.r_[brk, len(u) - 1]]) if len(u) else cls()
            return out.to_v6() if ipv6 else out
        col = col.reshape(-1, 2).astype(np.uint64, copy=False)
        if not len(col):
            return cls().to_v6()
        mapped, v4 = addrs._mapped(col)
        if mapped.all():  # runs found on 32-bit values: twice as fast
            return cls.from_sorted(v4).to_v6()
        hi, lo = col[:, 0], col[:, 1]
        # a run continues when the next address is this one + 1 (carrying into hi)
        nlo = lo[:-1] + _ONE
        nhi = hi[:-1] + (nlo == 0)
        brk = np.flatnonzero(~((hi[1:] == nhi) & (lo[1:] == nlo)))
        first, last = np.r_[0, brk + 1], np.r_[brk, len(hi) - 1]
        return cls(np.stack([hi[first], lo[first]], 1), np.stack([hi[last], lo[last]], 1),
                   True)

    @classmethod
    def from_ranges(cls, starts, ends, ipv6=False):
        """Ranges in any order, overlapping or adjacent (inclusive ends)."""
        if not ipv6:
            s, e = np.asarray(starts).ravel(), np.asarray(ends).ravel()
            if s.dtype != np.uint32 or e.dtype != np.uint32:
                s, e = s.astype(np.int64), e.astype(np.int64)
                if len(s) and (s.min() < 0 or e.max() > addrs.M32):
                    raise ValueError("bad IPv4 ranges")
            if len(s) != len(e) or (s > e).any():
                raise ValueError("bad IPv4 ranges")
            return cls(*_normalize32(s, e))
        s = np.asarray(starts, np.uint64).reshape(-1, 2)
        e = np.asarray(ends, np.uint64).reshape(-1, 2)
        if len(s) != len(e) or _gt128(s[:, 0], s[:, 1], e[:, 0], e[:, 1]).any():
            raise ValueError("bad IPv6 ranges")
        return cls(*_normalize128(s, e), True)

    @classmethod
    def from_cidrs(cls, addresses, prefixes, ipv6=False):
        """CIDR blocks; host bits of the addresses are ignored."""
        p = np.asarray(prefixes, np.int64).ravel()
        if not ipv6:
            a = np.asarray(addresses, np.int64).ravel()
            if len(p) and (p.min() < 0 or p.max() > 32):
                raise ValueError("bad IPv4 prefix")
            host = (np.int64(1) << (32 - p)) - 1
            return cls.from_ranges(a & ~host, (a & ~host) | host)
        a = np.asarray(addresses, np.uint64).reshape(-1, 2)
        if len(p) and (p.min() < 0 or p.max() > 128):
            raise ValueError("bad IPv6 prefix")
        hmask_hi = _low_mask(np.clip(128 - p, 0, 128) - 64)  # host bits within each half
        hmask_lo = _low_mask(np.clip(128 - p, 0, 64))
        s = np.stack([a[:, 0] & ~hmask_hi, a[:, 1] & ~hmask_lo], 1)
        e = np.stack([s[:, 0] | hmask_hi, s[:, 1] | hmask_lo], 1)
        return cls.from_ranges(s, e, True)

    @classmethod
    def from_matcher(cls, matcher, limit=1 << 24):
        """The addresses a matcher of addrs matches (wildcards up to ``limit`` ranges)."""
        s, e = matcher.ranges(limit) if isinstance(matcher, addrs.Wildcard) else \
            matcher.ranges()
        return cls.from_ranges(s, e, matcher.is_ipv6)

    # --- family

    def to_v6(self):
        if self.is_ipv6:
            return self
        s = np.zeros((len(self.starts), 2), np.uint64)
        e = np.zeros((len(self.ends), 2), np.uint64)
        s[:, 1] = self.starts.astype(np.uint64) | np.uint64(addrs.MAPPED)
        e[:, 1] = self.ends.astype(np.uint64) | np.uint64(addrs.MAPPED)
        return IPSet(s, e, True, self.meta)

    def ipv4_only(self):
        """True when every address is IPv4 (in an IPv6 set: inside ::ffff:0:0/96)."""
        if not self.is_ipv6:
            return True
        s, e = self.v4_part()
        return len(s) == len(self.starts) and (
            not len(s) or (to_int(self.starts[0]) >= addrs.MAPPED
                           and to_int(self.ends[-1]) <= addrs.MAPPED | addrs.M32))

    def to_v4(self):
        """The same set as an IPv4 set; FlowError when it holds IPv6 addresses."""
        if not self.is_ipv6:
            return self
        if not self.ipv4_only():
            raise FlowError("the IP set holds IPv6 addresses, so it cannot be an IPv4 set")
        s, e = self.v4_part()
        return IPSet(s, e, False, self.meta)

    def _pair(self, other):
        if self.is_ipv6 == other.is_ipv6:
            return self, other
        return self.to_v6(), other.to_v6()

    # --- algebra

    def _binary(self, other, op):
        a, b = self._pair(other)
        if not a.is_ipv6 and op in ("intersection", "difference"):
            return _touching32(a, b, op)
        sweep = _sweep128 if a.is_ipv6 else _sweep32
        return IPSet(*sweep(a, b, op), a.is_ipv6)

    def union(self, *others):
        sets = [self, *others]
        v4 = [s for s in sets if not s.is_ipv6]
        if len(v4) == len(sets):
            # merging the concatenated ranges sorts half the keys a sweep would
            return IPSet(*_normalize32(np.concatenate([s.starts for s in sets]),
                                       np.concatenate([s.ends for s in sets]), runs=True))
        v6 = [s for s in sets if s.is_ipv6]
        if v4 and len(v6) == 1:
            joined = _join_mapped(v6[0], IPSet.union(*v4))
            if joined is not None:
                return joined
        sets = v6 + ([IPSet.union(*v4).to_v6()] if v4 else [])
        if len(sets) == 1:
            return sets[0]
        if len(sets) == 2:  # merging two sorted 128-bit runs beats sorting them afresh
            return sets[0]._binary(sets[1], "union")
        # many: one sort of all their ranges (folding them pairwise had been quadratic:
        # pyflow-set over an archive's 2,376 files ran for minutes)
        return IPSet.from_ranges(np.concatenate([s.starts for s in sets]),
                                 np.concatenate([s.ends for s in sets]), True)

    def intersection(self, *others):
        out = self
        for o in others:
            out = out._binary(o, "intersection")
        return out

    def difference(self, *others):
        out = self
        for o in others:
            out = out._binary(o, "difference")
        return out

    def symmetric_difference(self, other):
        return self._binary(other, "symmetric_difference")

    __or__ = union
    __and__ = intersection
    __sub__ = difference
    __xor__ = symmetric_difference

    def issubset(self, other):
        return not self.difference(other)

    # --- netblocks (rwsettool --mask, --fill-blocks, --sample)

    def _block_ids(self, prefix):
        """The occupied /prefix blocks as merged ranges of block numbers: (starts, ends),
        numpy int64 for IPv4, lists of Python ints for IPv6."""
        width = 128 if self.is_ipv6 else 32
        if not 0 < prefix < width:
            raise FlowError(f"invalid netblock prefix {prefix} for an IPv{6 if self.is_ipv6 else 4}"
                            " IP set")
        shift = width - prefix
        if not self.is_ipv6:
            lo = self.starts.astype(np.int64) >> shift
            hi = self.ends.astype(np.int64) >> shift
            # consecutive ranges may share a block: merge ids that touch or overlap
            brk = np.flatnonzero(lo[1:] > hi[:-1] + 1)
            return lo[np.r_[0, brk + 1]], hi[np.r_[brk, len(hi) - 1]]
        ids = []  # IPv6: few ranges in practice, so Python ints keep the 128-bit shifts exact
        for s, e in zip(self.starts, self.ends, strict=True):
            a, b = to_int(s) >> shift, to_int(e) >> shift
            if ids and a <= ids[-1][1] + 1:
                ids[-1][1] = max(ids[-1][1], b)
            else:
                ids.append([a, b])
        return [a for a, _ in ids], [b for _, b in ids]

    def fill_blocks(self, prefix):
        """Every /prefix block holding an address of the set, completely filled."""
        if not self:
            return IPSet(ipv6=self.is_ipv6)
        a, b = self._block_ids(prefix)
        width = 128 if self.is_ipv6 else 32
        shift = width - prefix
        if not self.is_ipv6:
            return IPSet.from_ranges((a << shift).astype(np.uint32),
                                     ((b << shift) | ((1 << shift) - 1)).astype(np.uint32))
        host = (1 << shift) - 1
        return IPSet.from_ranges(addrs.pairs([x << shift for x in a]),
                                 addrs.pairs([(y << shift) | host for y in b]), True)

    def mask(self, prefix, limit=1 << 28):
        """One address, the block's first, for every /prefix block holding an address."""
        if not self:
            return IPSet(ipv6=self.is_ipv6)
        a, b = self._block_ids(prefix)
        width = 128 if self.is_ipv6 else 32
        shift = width - prefix
        n = int(sum(int(y) - int(x) + 1 for x, y in zip(a, b, strict=True))) \
            if self.is_ipv6 else int((b - a + 1).sum())
        if n > limit:
            raise FlowError(f"masking gives {n} addresses (more than {limit})")
        if not self.is_ipv6:
            lens = b - a + 1
            ids = np.repeat(a - np.r_[0, np.cumsum(lens)[:-1]], lens) + np.arange(n)
            firsts = (ids << shift).astype(np.uint32)
            return IPSet(firsts, firsts) if shift else IPSet.from_addresses(firsts)
        firsts = addrs.pairs([i << shift for x, y in zip(a, b, strict=True)
                              for i in range(x, y + 1)])
        return IPSet(firsts, firsts.copy(), True)

    def sample(self, size=None, ratio=None, rng=None):
        """A random subset: exactly ``size`` addresses (all of them when the set is no
        larger), or each address kept with probability ``ratio``."""
        rng = np.random.default_rng(rng)
        n = self.count()
        if size is not None:
            if n <= size:
                return self
            picks = np.sort(rng.choice(n, size=size, replace=False)) if n < 1 << 62 else \
                np.unique(rng.integers(0, 1 << 62, size=size))
        else:
            if n > 1 << 32:
                raise FlowError(f"cannot sample by ratio from {n} addresses")
            picks = np.flatnonzero(rng.random(n) < ratio)
        return self.nth(picks)

    def nth(self, positions):
        """The addresses at sorted 0-based positions in the set's address order."""
        positions = np.asarray(positions, np.int64)
        if not self.is_ipv6:
            lens = self.ends.astype(np.int64) - self.starts + 1
            first = np.r_[0, np.cumsum(lens)[:-1]]
            r = np.searchsorted(first, positions, side="right") - 1
            vals = (self.starts[r].astype(np.int64) + positions - first[r]).astype(np.uint32)
            return IPSet.from_addresses(vals)
        out, at = [], 0
        pos = positions.tolist()
        k = 0
        for s, e in zip(self.starts, self.ends, strict=True):
            a, b = to_int(s), to_int(e)
            while k < len(pos) and pos[k] - at <= b - a:
                out.append(a + pos[k] - at)
                k += 1
            at += b - a + 1
            if k == len(pos):
                break
        return IPSet.from_addresses(addrs.pairs(out), True) if out else IPSet(ipv6=True)

    # --- inspection

    def __eq__(self, other):
        if not isinstance(other, IPSet):
            return NotImplemented
        a, b = self._pair(other)
        return np.array_equal(a.starts, b.starts) and np.array_equal(a.ends, b.ends)

    __hash__ = None

    def __bool__(self):
        return len(self.starts) > 0

    def __len__(self):
        """The number of addresses (OverflowError past sys.maxsize; use count())."""
        return self.count()

    def __repr__(self):
        return f"IPSet({'IPv6' if self.is_ipv6 else 'IPv4'}, {len(self.starts)} ranges, " \
               f"{self.count()} addresses)"

    def count(self):
        """The exact number of addresses, a Python int."""
        if not self.is_ipv6:
            return int((self.ends.astype(np.int64) - self.starts.astype(np.int64)).sum()) \
                + len(self.starts)
        s, e = self.starts, self.ends
        borrow = (e[:, 1] < s[:, 1]).astype(np.uint64)
        dhi = e[:, 0] - s[:, 0] - borrow
        dlo = e[:, 1] - s[:, 1]  # wraps modulo 2**64, the borrow taken from dhi
        return (_sum64(dhi) << 64) + _sum64(dlo) + len(s)

    def ranges(self):
        return self.starts, self.ends

    def cidr_blocks(self):
        """The minimal CIDR decomposition: (addresses, prefix lengths) in address order;
        addresses uint32 or (k, 2) uint64, prefixes uint8."""
        if self.is_ipv6:
            s, e = self.starts, self.ends
            hi, lo, p = _cidrs(s[:, 0].copy(), s[:, 1].copy(), e[:, 0], e[:, 1], 128)
            return np.stack([hi, lo], 1), p
        z = np.zeros(len(self.starts), np.uint64)
        _, lo, p = _cidrs(z, self.starts.astype(np.uint64), z, self.ends.astype(np.uint64), 32)
        return lo.astype(np.uint32), p

    def addresses(self, limit=1 << 26):
        """Every address as a column (uint32 or (n, 2) uint64); FlowError past limit."""
        n = self.count()
        if n > limit:
            raise FlowError(f"the IP set has {n} addresses (more than {limit} to list)")
        if not self.is_ipv6:
            lens = (self.ends.astype(np.int64) - self.starts + 1)
            base = np.repeat(self.starts.astype(np.int64) - np.r_[0, np.cumsum(lens)[:-1]],
                             lens)
            return (base + np.arange(n)).astype(np.uint32)
        if not n:
            return np.zeros((0, 2), np.uint64)
        # every range is shorter than the limit, so its length fits the low half's difference
        lens = (self.ends[:, 1] - self.starts[:, 1]).astype(np.int64) + 1
        first = np.r_[0, np.cumsum(lens)[:-1]]
        offset = (np.arange(n) - np.repeat(first, lens)).astype(np.uint64)
        base_lo = np.repeat(self.starts[:, 1], lens)
        out = np.empty((n, 2), np.uint64)
        out[:, 1] = base_lo + offset  # may carry into hi
        out[:, 0] = np.repeat(self.starts[:, 0], lens) + (out[:, 1] < base_lo)
        return out


def _join_mapped(v6, v4):
    """The union of an IPv6 set and an IPv4 one when no range of the IPv6 set meets or
    touches ::ffff:0:0/96 (None otherwise): the IPv4 ranges, mapped, then sit between its
    ranges below and above that block, so the union is three slices and no sort (a sweep
    of a million ranges had peaked at 160 MB)."""
    lo_s, lo_e = v6.starts[:, 1], v6.ends[:, 1]
    below = (v6.ends[:, 0] == 0) & (lo_e < np.uint64(addrs.MAPPED - 1))
    above = (v6.starts[:, 0] > 0) | (lo_s > np.uint64(addrs.MAPPED | addrs.M32) + _ONE)
    nb = int(np.count_nonzero(below))
    if nb + int(np.count_nonzero(above)) != len(v6.starts) or not below[:nb].all():
        return None
    m, k = len(v4.starts), len(v6.starts)
    starts, ends = np.zeros((k + m, 2), np.uint64), np.zeros((k + m, 2), np.uint64)
    for out, six, four in ((starts, v6.starts, v4.starts), (ends, v6.ends, v4.ends)):
        out[:nb], out[nb + m:] = six[:nb], six[nb:]
        np.bitwise_or(four, np.uint64(addrs.MAPPED), out=out[nb: nb + m, 1],
                      dtype=np.uint64)
    return IPSet(starts, ends, True)


def to_int(pair):
    return addrs.to_int128(pair)


def _sum64(x):
    """Exact sum of a uint64 array as a Python int (numpy would wrap)."""
    return (int((x >> np.uint64(32)).sum()) << 32) + int((x & np.uint64(addrs.M32)).sum())


def _low_mask(bits):
    """uint64 masks of the low ``bits`` bits, bits in 0..64 (clipped)."""
    bits = np.clip(np.asarray(bits, np.int64), 0, 64)
    out = np.where(bits >= 64, M64, (_ONE << np.minimum(bits, 63).astype(np.uint64)) - _ONE)
    return out.astype(np.uint64)


def _gt128(ah, al, bh, bl):
    return (ah > bh) | ((ah == bh) & (al > bl))


# --- normalization and the sweep ---------------------------------------------------


def _normalize32(s, e, runs=False):
    """Sorted, merged ranges from starts/ends (overlaps and adjacency merged); runs: the
    input is a few sorted runs, which a stable sort merges in linear time."""
    if not len(s):
        return np.zeros(0, np.uint32), np.zeros(0, np.uint32)
    key = s.astype(np.uint64) << np.uint64(32)
    key |= e.astype(np.uint64)
    key.sort(kind="stable" if runs else None)  # by start, then end (SIMD sort, or merge)
    s = key >> np.uint64(32)
    key &= np.uint64(addrs.M32)
    reach = np.maximum.accumulate(key)
    reach1 = reach[:-1] + _ONE
    first = np.flatnonzero(np.r_[True, s[1:] > reach1])
    last = np.r_[first[1:] - 1, len(s) - 1]
    return s[first].astype(np.uint32), reach[last].astype(np.uint32)


def _normalize128(s, e):
    if not len(s):
        return np.zeros((0, 2), np.uint64), np.zeros((0, 2), np.uint64)
    if len(s) > 1:  # already sorted, disjoint, not adjacent (files are): nothing to do
        plo = e[:-1, 1] + _ONE
        phi = e[:-1, 0] + (plo == 0)
        full = (e[:-1, 0] == M64) & (e[:-1, 1] == M64)
        if (_gt128(s[1:, 0], s[1:, 1], phi, plo) & ~full).all():
            return np.ascontiguousarray(s), np.ascontiguousarray(e)
    order = np.lexsort((s[:, 1], s[:, 0]))
    s, e = s[order], e[order]
    # the running maximum of 128-bit ends, through the ranks of the ends
    rank_order = np.lexsort((e[:, 1], e[:, 0]))
    rank = np.empty(len(e), np.int64)
    rank[rank_order] = np.arange(len(e))
    reach = e[rank_order[np.maximum.accumulate(rank)]]
    # a range starts a new group when it begins beyond the reach so far + 1
    plo = reach[:-1, 1] + _ONE
    phi = reach[:-1, 0] + (plo == 0)
    full = (reach[:-1, 0] == M64) & (reach[:-1, 1] == M64)
    new = np.r_[True, _gt128(s[1:, 0], s[1:, 1], phi, plo) & ~full]
    first = np.flatnonzero(new)
    last = np.r_[first[1:] - 1, len(s) - 1]
    return np.ascontiguousarray(s[first]), np.ascontiguousarray(reach[last])


def _touching32(a, b, op):
    """Intersection or difference of IPv4 sets, sweeping only the ranges of each that
    overlap a range of the other: sparse sets (random hosts) barely overlap, and the
    untouched ranges of a pass through a difference as they are."""
    ta, tb = _overlapping(a, b), _overlapping(b, a)
    part_a = IPSet(a.starts[ta], a.ends[ta])
    part_b = IPSet(b.starts[tb], b.ends[tb])
    s, e = _sweep32(part_a, part_b, op)
    if op == "intersection" or ta.all():
        return IPSet(s, e)
    # the untouched ranges and the pieces are disjoint and never adjacent (the pieces came
    # from other ranges of a): interleave the two sorted lists by their starts
    ks, ke = a.starts[~ta], a.ends[~ta]
    n = len(ks) + len(s)
    at_piece = np.searchsorted(ks, s) + np.arange(len(s))
    at_kept = np.searchsorted(s, ks) + np.arange(len(ks))
    starts, ends = np.empty(n, np.uint32), np.empty(n, np.uint32)
    starts[at_piece], ends[at_piece] = s, e
    starts[at_kept], ends[at_kept] = ks, ke
    return IPSet(starts, ends)


def _overlapping(a, b):
    """Mask of a's ranges that overlap some range of b (both sorted and disjoint)."""
    if not len(b.starts) or not len(a.starts):
        return np.zeros(len(a.starts), bool)
    j = np.searchsorted(b.ends, a.starts)  # the first range of b ending at or after it
    jj = np.minimum(j, len(b.starts) - 1)
    return (j < len(b.starts)) & (b.starts[jj] <= a.ends)


def _boundaries32(r, kind):
    """A range list's boundaries, start and end + 1 alternating (so already sorted), each
    packed as value << 2 | kind (kind for the start, kind + 1 for the end + 1)."""
    out = np.empty(2 * len(r.starts), np.int64)
    out[0::2] = r.starts.astype(np.int64) << 2
    out[0::2] |= kind
    out[1::2] = (r.ends.astype(np.int64) + 1) << 2
    out[1::2] |= kind + 1
    return out


def _sweep32(a, b, op):
    """Ranges where op holds, from the boundaries of both in one sorted array."""
    keys = np.concatenate([_boundaries32(a, 0), _boundaries32(b, 2)])
    if not len(keys):
        return np.zeros(0, np.uint32), np.zeros(0, np.uint32)
    keys.sort(kind="stable")  # two sorted runs: timsort merges them in linear time
    differs = np.empty(len(keys), bool)
    np.greater(keys[1:] ^ keys[:-1], 3, out=differs[:-1])
    differs[-1] = True
    last, f = _segments(differs, keys & 3, op)
    begin, end = _pick(f)
    return ((keys[last[begin]] >> 2).astype(np.uint32),
            ((keys[last[end]] >> 2) - 1).astype(np.uint32))


# Coverage as one running sum, in_a + 2 * in_b (a and b are disjoint range lists, so it
# stays in 0..3): boundary kinds 0/1 start/end+1 of a, 2/3 of b step it by these
_STEP = np.array([1, -1, 2, -2], np.int8)
OPS = {  # the truth table of each operation over in_a + 2 * in_b
    "union": np.array([0, 1, 1, 1], bool), "intersection": np.array([0, 0, 0, 1], bool),
    "difference": np.array([0, 1, 0, 0], bool),
    "symmetric_difference": np.array([0, 1, 1, 0], bool),
}


def _segments(differs, kind, op):
    """From boundaries in sorted order: the last position of each distinct value and the
    op's verdict for the segment that value begins (differs: the next value differs)."""
    state = np.cumsum(_STEP[kind], dtype=np.int8)
    last = np.flatnonzero(differs)
    return last, OPS[op][state[last]]


def _pick(f):
    """Indices of segments that begin and that end a run of True in f (f[-1] is False)."""
    prev = np.r_[False, f[:-1]]
    begin = np.flatnonzero(f & ~prev)
    end = np.flatnonzero(f & ~np.r_[f[1:], False]) + 1  # the next boundary ends it
    return begin, end


def _boundaries128(r, kind):
    """A range list's boundaries, start and end + 1 alternating (so already in order), as
    17-byte strings: a byte that marks 2**128 (the end + 1 of a range reaching
    ffff:...:ffff) and the 16-byte big-endian value. Byte strings compare as numbers, and
    numpy's stable sort merges two sorted runs of them in linear time."""
    n = len(r.starts)
    raw = np.zeros((2 * n, 17), np.uint8)
    vals = np.empty((2 * n, 2), np.uint64)
    vals[0::2] = r.starts
    lo = r.ends[:, 1] + _ONE
    carry = lo == 0
    vals[1::2, 0] = r.ends[:, 0] + carry
    vals[1::2, 1] = lo
    raw[1::2, 0] = carry & (r.ends[:, 0] == M64)
    raw[:, 1:] = vals.astype(">u8").view(np.uint8).reshape(-1, 16)
    kinds = np.empty(2 * n, np.int8)
    kinds[0::2], kinds[1::2] = kind, kind + 1
    return raw.view("S17").ravel(), kinds


def _sweep128(a, b, op):
    """_sweep32 for 128-bit ranges."""
    ka, ta = _boundaries128(a, 0)
    kb, tb = _boundaries128(b, 2)
    keys, kind = np.concatenate([ka, kb]), np.concatenate([ta, tb])
    if not len(keys):
        return np.zeros((0, 2), np.uint64), np.zeros((0, 2), np.uint64)
    order = np.argsort(keys, kind="stable")
    keys, kind = keys[order], kind[order]
    differs = np.r_[keys[1:] != keys[:-1], True]
    last, f = _segments(differs, kind, op)
    begin, end = _pick(f)
    raw = keys.view(np.uint8).reshape(-1, 17)
    bi, ei = last[begin], last[end]
    starts = np.ascontiguousarray(raw[bi, 1:]).view(">u8").astype(np.uint64)
    nxt = np.ascontiguousarray(raw[ei, 1:]).view(">u8").astype(np.uint64)
    # end = next boundary - 1, borrowing from hi (2**128 - 1 comes out as all ones)
    ends = np.stack([nxt[:, 0] - (nxt[:, 1] == 0), nxt[:, 1] - _ONE], 1)
    return starts.reshape(-1, 2), ends


def _flog2(x):
    """floor(log2(x)) of uint64 x > 0, exactly (each 32-bit half is exact in a double)."""
    hi = (x >> np.uint64(32)).astype(np.float64)
    lo = (x & np.uint64(addrs.M32)).astype(np.float64)
    return np.where(hi > 0, np.frexp(hi)[1] + 31, np.frexp(lo)[1] - 1).astype(np.int64)


def _ctz(x):
    """Trailing zero bits of uint64 x > 0."""
    return _flog2(x & (~x + _ONE))


def _cidrs(sh, sl, eh, el, width):
    """Minimal CIDR blocks of 128-bit ranges [s, e]: each step takes, from every unfinished
    range, the largest aligned block at its start that fits, and moves the start past it."""
    out_h, out_l, out_p, out_r, out_i = [], [], [], [], []
    idx = np.arange(len(sh))
    step = 0
    while len(idx):
        borrow = (el < sl).astype(np.uint64)
        dl, dh = el - sl, eh - sh - borrow  # e - s
        d1l = dl + _ONE
        d1h = dh + (d1l == 0)  # e - s + 1, all zero when it is 2**128
        size = np.full(len(idx), 128, np.int64)
        nz_h, nz_l = d1h > 0, (d1h == 0) & (d1l > 0)
        size[nz_h] = 64 + _flog2(d1h[nz_h])
        size[nz_l] = _flog2(d1l[nz_l])
        align = np.full(len(idx), 128, np.int64)
        a_l, a_h = sl != 0, (sl == 0) & (sh != 0)
        align[a_l] = _ctz(sl[a_l])
        align[a_h] = 64 + _ctz(sh[a_h])
        k = np.minimum(size, align)
        out_h.append(sh.copy())
        out_l.append(sl.copy())
        out_p.append((width - k).astype(np.uint8))
        out_r.append(idx)
        out_i.append(np.full(len(idx), step, np.int64))
        # advance the start by 2**k; done when it passes the end (or wraps past 2**128)
        big = k >= 64
        inc_l = np.where(big, np.uint64(0), _ONE << np.minimum(k, 63).astype(np.uint64))
        inc_h = np.where(big & (k < 128), _ONE << np.clip(k - 64, 0, 63).astype(np.uint64),
                         np.uint64(0))
        nl = sl + inc_l
        nh = sh + inc_h + (nl < sl)
        wrapped = (k == 128) | (nh < sh)
        done = wrapped | _gt128(nh, nl, eh, el)
        keep = ~done
        idx, sh, sl, eh, el = idx[keep], nh[keep], nl[keep], eh[keep], el[keep]
        step += 1
    if not out_h:
        return (np.zeros(0, np.uint64),) * 2 + (np.zeros(0, np.uint8),)
    r, i = np.concatenate(out_r), np.concatenate(out_i)
    order = np.lexsort((i, r))
    return (np.concatenate(out_h)[order], np.concatenate(out_l)[order],
            np.concatenate(out_p)[order])


# --- files ---------------------------------------------------------------------------


def read_set(source, name=None):
    """An IPSet from a pyflow or SiLK set file: a path, or a binary file object (a pipe).
    Anything wrong with the data raises FormatError naming the file."""
    return container.read_source(source, name, _read)


def _read(f, name):
    from . import silkset
    return container.sniff(f, name, "an IP set", _read_pyflow, silkset.MAGIC, silkset.read)


def _read_pyflow(f, name, prefix):
    header = container.read_header(f, name, prefix)
    meta = header.meta
    if meta.get("kind") != KIND:
        raise FormatError(f"{name}: not an IP set file (it holds a {meta.get('kind')})")
    if meta.get("compression") not in ("zstd", "none"):
        raise FormatError(f"{name}: unknown compression {meta.get('compression')!r}")
    v6 = meta.get("ipv6") is True
    dctx = zstandard.ZstdDecompressor() if meta["compression"] == "zstd" else None
    frames = container.FrameReader(f, name, header)
    parts, blocks = [], 0
    while True:
        frame = frames.next_frame()
        if frame is None:
            break
        kind, head, _ = frame
        if kind == container.END:
            continue
        where = f"{name}: set block {blocks}"
        try:
            n, cols = head["n"], head["cols"]
            size = sum(c[5] for c in cols)
            payload = frames.read_payload(size)
            parts.append(_decode_block(n, cols, payload, v6, dctx, where))
        except FormatError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, OverflowError, MemoryError):
            raise FormatError(f"{where}: corrupt block") from None
        blocks += 1
    try:
        if v6:
            s = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, 2), np.uint64)
            e = np.concatenate([p[1] for p in parts]) if parts else np.zeros((0, 2), np.uint64)
            if _gt128(s[:, 0], s[:, 1], e[:, 0], e[:, 1]).any():
                raise ValueError
            out = IPSet.from_ranges(s, e, True)
        else:
            s = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.uint32)
            e = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.uint32)
            out = _checked32(s, e)
    except ValueError:
        raise FormatError(f"{name}: corrupt set data (bad ranges)") from None
    out.meta = {"history": list(meta.get("history") or []),
                "notes": list(meta.get("notes") or []), "format": "pyflow"}
    return out


def _checked32(s, e):
    """A set from a file's IPv4 ranges: as they are when sorted, disjoint and not
    adjacent (files written by pyflow are), else normalized."""
    s, e = np.asarray(s, np.uint32), np.asarray(e, np.uint32)
    if len(s) > 1 and (s[1:].astype(np.int64) > e[:-1].astype(np.int64) + 1).all() and \
            (s <= e).all():
        return IPSet(s, e)
    return IPSet.from_ranges(s, e, False)


_COLS4 = (("start", np.uint32), ("size", np.uint32))
_COLS6 = (("start.hi", np.uint64), ("start.lo", np.uint64), ("end.hi", np.uint64),
          ("end.lo", np.uint64))


def _decode_block(n, cols, payload, v6, dctx, where):
    from . import flowfile
    spec = _COLS6 if v6 else _COLS4
    if type(n) is not int or n < 0 or len(cols) != len(spec):
        raise ValueError
    out, at = [], 0
    for desc, (cname, dtype) in zip(cols, spec, strict=True):
        if desc[0] != cname or desc[2] not in (0, 1, 2, 4, 8) or desc[7] != n:
            raise ValueError
        data = payload[at:at + desc[5]]
        at += desc[5]
        col = flowfile.decode_int(desc, data, n, np.dtype(dtype), dctx, where)
        out.append(np.asarray(col, dtype))
    if v6:
        return np.stack(out[:2], 1), np.stack(out[2:], 1)
    start, size = out
    end = start.astype(np.int64) + size
    if len(end) and end.max() > addrs.M32:
        raise ValueError
    return start, end.astype(np.uint32)


def encode_blocks(ipset, level=3):
    """(block header, payload) pairs of a set in pyflow's set-file layout."""
    from . import flowfile
    cctx = zstandard.ZstdCompressor(level=level) if level is not None else None
    k = len(ipset.starts)
    for at in range(0, max(k, 1), BLOCK_RANGES):
        if not k:
            return
        s, e = ipset.starts[at:at + BLOCK_RANGES], ipset.ends[at:at + BLOCK_RANGES]
        if ipset.is_ipv6:
            cols = [s[:, 0].copy(), s[:, 1].copy(), e[:, 0].copy(), e[:, 1].copy()]
            spec = _COLS6
        else:
            cols = [s, (e - s).astype(np.uint32)]
            spec = _COLS4
        descs, data = [], []
        for (cname, _), col in zip(spec, cols, strict=True):
            desc, payload = flowfile.encode_int(cname, col, cctx, delta=cname.startswith(
                "start") and cname != "start.lo")
            descs.append(desc)
            data.append(payload)
        yield {"n": len(s), "cols": descs}, b"".join(data)


def write_pyflow(ipset, f, history=(), notes=(), level=3):
    """Write a pyflow set file (or stream) to a binary file object; no commit."""
    meta = {"kind": KIND, "ipv6": bool(ipset.is_ipv6),
            "compression": "zstd" if level is not None else "none",
            "history": list(history), "notes": list(notes)}
    f.write(container.header_bytes(meta))
    blocks = 0
    for header, payload in encode_blocks(ipset, level):
        f.write(container.frame_bytes(container.BLOCK, header))
        f.write(payload)
        blocks += 1
    f.write(container.frame_bytes(container.END,
                                  {"records": len(ipset.starts), "blocks": blocks}))


def write_set(ipset, path, format="pyflow", history=(), notes=(), record_version=None,
              compression=None):
    """Write a set to a path (atomically, via io.Output), '-'/'stdout' or a named pipe.

    format "pyflow" (compression "zstd" or "none") or "silk" (record_version 2, 4 or 5,
    default 2 for IPv4 sets and 4 for IPv6 sets; compression "none" or "zlib")."""
    from . import io
    if format not in ("pyflow", "silk"):
        raise FlowError(f"unknown IP set format '{format}'")
    out = io.Output(path)
    try:
        if format == "pyflow":
            if compression not in (None, "zstd", "none"):
                raise FlowError(f"unknown compression '{compression}' for a pyflow set")
            write_pyflow(ipset, out.f, history, notes,
                         level=None if compression == "none" else 3)
            if out.seekable:
                container.commit(out.f, out.f.tell(), None)
        else:
            from . import silkset
            silkset.write(ipset, out.f, record_version, compression or "none", history,
                          notes)
        out.commit()
    except BaseException:
        out.abort()
        raise
