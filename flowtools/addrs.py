"""Address matchers: SiLK IP wildcards (rwfilter --saddress) and CIDR lists (--scidr).

A matcher answers ``contains(col)``, a boolean mask over an address column: uint32 in an
IPv4 batch, (n, 2) uint64 [hi, lo] in an IPv6 batch. Matching is by value, as SiLK does:
an IPv4 pattern matches IPv4 records and the ::ffff:a.b.c.d records of an IPv6 batch, an
IPv6 pattern compares 128-bit values, so it sees IPv4 records only through ::ffff:0:0/96.
``may_contain(lo, hi)`` says from a block's [min, max] statistics whether any record of the
block could match (False lets a reader skip it).

Two representations: sorted disjoint inclusive ranges (addresses, CIDR blocks and lists, and
IP sets, which subclass Ranges), and per-octet/per-group tables for wildcards such as
``10.1.24-27.x``, where a bitmap per block is exact and one lookup per block is cheap.
"""

import numpy as np

from .errors import FlowError

MAPPED = 0xFFFF << 32  # ::ffff:0.0.0.0 as a 128-bit integer
M32 = 0xFFFFFFFF
M64 = 0xFFFFFFFFFFFFFFFF
_U32 = np.uint64(M32)
_MAPPED_LO = np.uint64(MAPPED)
# beyond this many ranges a binary search misses cache on every probe: sorting the queries
# first (10M random lookups in 5M ranges: 15 s unsorted, 1 s sorted) is much faster
_SORT_QUERIES = 1 << 16


class Matcher:
    """The interface; ``is_ipv6`` tells the pattern's family."""

    is_ipv6 = False

    def contains(self, col):
        raise NotImplementedError

    def bounds(self):
        """(min, max) of the matched addresses as ints (128-bit for IPv6 patterns), or
        None when nothing matches."""
        raise NotImplementedError

    def may_contain(self, lo, hi):
        span = _block_span(lo, hi, self.is_ipv6)
        if span is None:
            return False
        return self._may(*span)

    def _may(self, lo, hi):
        b = self.bounds()
        return b is not None and b[0] <= hi and lo <= b[1]


def _block_span(lo, hi, v6):
    """A block's statistics span as ints in the pattern's own address space."""
    if isinstance(lo, (list, tuple, np.ndarray)):  # IPv6 block: [hi, lo] halves
        lo = (int(lo[0]) << 64) | int(lo[1])
        hi = (int(hi[0]) << 64) | int(hi[1])
        if v6:
            return lo, hi
        lo, hi = max(lo, MAPPED), min(hi, MAPPED | M32)
        return (lo - MAPPED, hi - MAPPED) if lo <= hi else None
    lo, hi = int(lo), int(hi)
    return (MAPPED | lo, MAPPED | hi) if v6 else (lo, hi)


def _mapped(col):
    """Which rows of an (n, 2) column are ::ffff:a.b.c.d, and their IPv4 values."""
    hi, lo = col[:, 0], col[:, 1]
    m = (lo >> np.uint64(32)) == np.uint64(0xFFFF)
    m &= hi == 0
    return m, (lo & _U32).astype(np.uint32)


# --- sorted range membership -------------------------------------------------------


def member32(starts, ends, x):
    """x in any of the sorted disjoint inclusive uint32 ranges."""
    x = np.asarray(x, np.uint32)
    k = len(starts)
    if k == 0:
        return np.zeros(len(x), bool)
    if k == 1:
        m = x >= starts[0]
        m &= x <= ends[0]
        return m
    if k <= _SORT_QUERIES or len(x) < 1024:
        j = np.searchsorted(starts, x, "right") - 1
        m = x <= ends[np.maximum(j, 0)]
        m &= j >= 0
        return m
    # value and position packed in one uint64: a plain sort (SIMD, fast) orders the queries
    # and remembers where each came from, which argsort would do 7x slower
    packed = x.astype(np.uint64) << np.uint64(32)
    packed |= np.arange(len(x), dtype=np.uint64)
    packed.sort()
    xs = (packed >> np.uint64(32)).astype(np.uint32)
    j = np.searchsorted(starts, xs, "right") - 1
    hit = xs <= ends[np.maximum(j, 0)]
    hit &= j >= 0
    out = np.empty(len(x), bool)
    out[(packed & _U32).astype(np.intp)] = hit
    return out


def last_le128(khi, klo, qhi, qlo):
    """For each query, the index of the last key <= it (keys sorted by (hi, lo)), -1 if
    none. One search on the high halves; queries whose high half ties with a key are
    resolved by a vectorised binary search over the low halves of that run of keys."""
    j = np.searchsorted(khi, qhi, "right") - 1
    if not len(khi):
        return j
    jj = np.maximum(j, 0)
    fix = (j >= 0) & (khi[jj] == qhi) & (klo[jj] > qlo)
    if fix.any():
        fi = np.flatnonzero(fix)
        left = np.searchsorted(khi, qhi[fi], "left")
        right = j[fi]  # key `right` is known to be above the query
        q = qlo[fi]
        while True:
            act = np.flatnonzero(left < right)
            if not len(act):
                break
            mid = (left[act] + right[act]) >> 1
            up = klo[mid] <= q[act]
            left[act[up]] = mid[up] + 1
            right[act[~up]] = mid[~up]
        j[fi] = left - 1
    return j


def member128(shi, slo, ehi, elo, qhi, qlo):
    """(qhi, qlo) in any of the sorted disjoint inclusive 128-bit ranges."""
    if len(shi) == 0:
        return np.zeros(len(qhi), bool)
    order = None
    if len(shi) > _SORT_QUERIES and len(qhi) >= 1024:
        order = np.argsort(qhi)
        qhi, qlo = qhi[order], qlo[order]
    j = last_le128(shi, slo, qhi, qlo)
    jj = np.maximum(j, 0)
    eh = ehi[jj]
    m = (qhi < eh) | ((qhi == eh) & (qlo <= elo[jj]))
    m &= j >= 0
    if order is None:
        return m
    out = np.empty(len(m), bool)
    out[order] = m
    return out


def to_int128(pair):
    return (int(pair[0]) << 64) | int(pair[1])


def pairs(values):
    """Python ints as an (n, 2) uint64 [hi, lo] array."""
    out = np.empty((len(values), 2), np.uint64)
    for i, v in enumerate(values):
        out[i] = (v >> 64, v & M64)
    return out


class Ranges(Matcher):
    """Sorted, disjoint, non-adjacent inclusive ranges: uint32 ``starts``/``ends`` for
    IPv4, (k, 2) uint64 [hi, lo] for IPv6 (IPv4 addresses inside as ::ffff:0:0/96)."""

    def __init__(self, starts, ends, ipv6=False):
        self.is_ipv6 = bool(ipv6)
        if self.is_ipv6:
            self.starts = np.ascontiguousarray(np.asarray(starts, np.uint64).reshape(-1, 2))
            self.ends = np.ascontiguousarray(np.asarray(ends, np.uint64).reshape(-1, 2))
        else:
            self.starts = np.ascontiguousarray(starts, np.uint32)
            self.ends = np.ascontiguousarray(ends, np.uint32)
        self._v4part = None
        self._halves = None

    @property
    def nranges(self):
        return len(self.starts)

    def ranges(self):
        return self.starts, self.ends

    def halves(self):
        """Contiguous (start hi, start lo, end hi, end lo) of an IPv6 range set."""
        if self._halves is None:
            s, e = self.starts, self.ends
            self._halves = tuple(np.ascontiguousarray(a) for a in
                                 (s[:, 0], s[:, 1], e[:, 0], e[:, 1]))
        return self._halves

    def v4_part(self):
        """The ranges inside ::ffff:0:0/96 of an IPv6 set, as IPv4 uint32 ranges."""
        if not self.is_ipv6:
            return self.starts, self.ends
        if self._v4part is None:
            shi, slo = self.halves()[:2]
            zero = np.zeros(1, np.uint64)
            a = int(last_le128(shi, slo, zero, np.array([MAPPED], np.uint64))[0])
            b = int(last_le128(shi, slo, zero, np.array([MAPPED | M32], np.uint64))[0])
            first = max(a, 0)
            if first <= b and to_int128(self.ends[first]) < MAPPED:
                first += 1  # the range starting below the /96 ends before it
            s = (self.starts[first:b + 1, 1] & _U32).astype(np.uint32)
            e = (self.ends[first:b + 1, 1] & _U32).astype(np.uint32)
            if len(s):
                # ranges reaching across either edge of the /96 are clipped to it
                if to_int128(self.starts[first]) < MAPPED:
                    s[0] = 0
                if to_int128(self.ends[b]) > MAPPED | M32:
                    e[-1] = M32
            self._v4part = (s, e)
        return self._v4part

    def contains(self, col):
        col = np.asarray(col)
        if col.ndim == 1:
            s, e = self.v4_part()
            return member32(s, e, col)
        m, v4 = _mapped(col)
        s, e = self.v4_part()
        if m.all():
            return member32(s, e, v4)
        out = np.zeros(len(col), bool)
        if m.any():
            out[m] = member32(s, e, v4[m])
        if self.is_ipv6:
            rest = np.flatnonzero(~m)
            shi, slo, ehi, elo = self.halves()
            out[rest] = member128(shi, slo, ehi, elo, col[rest, 0], col[rest, 1])
        return out

    def bounds(self):
        if not len(self.starts):
            return None
        if self.is_ipv6:
            return to_int128(self.starts[0]), to_int128(self.ends[-1])
        return int(self.starts[0]), int(self.ends[-1])

    def _may(self, lo, hi):
        # the first range ending at or after lo must start at or before hi
        if not len(self.starts):
            return False
        if not self.is_ipv6:
            i = int(np.searchsorted(self.ends, np.uint32(lo), "left"))
            return i < len(self.ends) and int(self.starts[i]) <= hi
        shi, slo, ehi, elo = self.halves()
        # last range starting at or before hi; it or an earlier one must reach lo, and as
        # ends increase it is enough to look at that one
        j = int(last_le128(shi, slo, np.array([hi >> 64], np.uint64),
                           np.array([hi & M64], np.uint64))[0])
        return j >= 0 and to_int128(self.ends[j]) >= lo


def ranges_from_ints(items, ipv6):
    """Ranges from (start, end) int pairs in any order, overlapping or adjacent."""
    merged = []
    for s, e in sorted(items):
        if merged and s <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    if ipv6:
        return Ranges(pairs([m[0] for m in merged]), pairs([m[1] for m in merged]), True)
    return Ranges(np.array([m[0] for m in merged], np.uint32),
                  np.array([m[1] for m in merged], np.uint32), False)


# --- wildcards ---------------------------------------------------------------------


class Wildcard(Matcher):
    """One boolean table per block (4 octets or 8 16-bit groups); an address matches when
    every block's value is set. Pairs of IPv4 octets share a 65536-entry table so a lookup
    costs two gathers."""

    def __init__(self, tables, ipv6):
        self.is_ipv6 = ipv6
        self.tables = [np.asarray(t, bool) for t in tables]
        if ipv6:
            self._groups = self.tables
        else:
            t = self.tables
            self._groups = [np.outer(t[0], t[1]).ravel(), np.outer(t[2], t[3]).ravel()]

    def _test(self, groups, values):
        m = None
        for table, v in zip(groups, values, strict=True):
            if table.all():
                continue
            hit = table[v()]
            if m is None:
                m = hit
            else:
                m &= hit
            if not m.any():  # e.g. an IPv6 prefix over a batch of IPv4 records
                break
        return m

    def contains(self, col):
        col = np.asarray(col)
        n = len(col)
        if col.ndim == 1:
            a = col
            if self.is_ipv6:  # the column as ::ffff:a.b.c.d
                if not all(t[0] for t in self.tables[:5]) or not self.tables[5][0xFFFF]:
                    return np.zeros(n, bool)
                m = self._test(self.tables[6:], (lambda: a >> 16, lambda: a & 0xFFFF))
            else:
                m = self._test(self._groups, (lambda: a >> 16, lambda: a & 0xFFFF))
            return np.ones(n, bool) if m is None else m
        hi, lo = col[:, 0], col[:, 1]
        if not self.is_ipv6:
            mapped, a = _mapped(col)
            m = self._test(self._groups, (lambda: a >> 16, lambda: a & 0xFFFF))
            return mapped if m is None else (m & mapped)
        g = np.uint64(0xFFFF)
        getters = [lambda s=s: (hi >> np.uint64(s)) & g for s in (48, 32, 16, 0)]
        getters += [lambda s=s: (lo >> np.uint64(s)) & g for s in (48, 32, 16, 0)]
        m = self._test(self.tables, getters)
        return np.ones(n, bool) if m is None else m

    def bounds(self):
        bits = 16 if self.is_ipv6 else 8
        lo = hi = 0
        for t in self.tables:
            idx = np.flatnonzero(t)
            if not len(idx):
                return None
            lo = (lo << bits) | int(idx[0])
            hi = (hi << bits) | int(idx[-1])
        return lo, hi

    def count(self):
        n = 1
        for t in self.tables:
            n *= int(t.sum())
        return n

    def ranges(self, limit=1 << 24):
        """The matched addresses as sorted disjoint ranges (IPv4 uint32, IPv6 (k, 2)
        uint64); FlowError when that takes more than ``limit`` ranges."""
        bits = 16 if self.is_ipv6 else 8
        full = (1 << bits) - 1
        tables = self.tables
        j = len(tables) - 1
        while j > 0 and tables[j].all():
            j -= 1
        runs_s, runs_e = _runs(tables[j])
        axes = [np.flatnonzero(t) for t in tables[:j]]
        total = len(runs_s)
        for a in axes:
            total *= len(a)
        if total > limit:
            raise FlowError(f"IP wildcard expands to {total} ranges (more than {limit})")
        grids = np.meshgrid(*axes, np.arange(len(runs_s)), indexing="ij")
        grids = [g.ravel().astype(np.uint64) for g in grids]
        run = grids.pop()
        blocks_s = grids + [runs_s.astype(np.uint64)[run]]
        blocks_e = grids + [runs_e.astype(np.uint64)[run]]
        tail = len(tables) - 1 - j
        zero = np.zeros(len(run), np.uint64)
        blocks_s += [zero] * tail
        blocks_e += [zero + np.uint64(full)] * tail
        if not self.is_ipv6:
            s = _compose(blocks_s, 8).astype(np.uint32)
            e = _compose(blocks_e, 8).astype(np.uint32)
            keep = np.ones(len(s), bool)  # coalesce runs that meet across blocks
            keep[1:] = s[1:].astype(np.int64) != e[:-1].astype(np.int64) + 1
            first = np.flatnonzero(keep)
            return s[first], e[np.r_[first[1:] - 1, len(e) - 1]]
        s = np.stack([_compose(blocks_s[:4], 16), _compose(blocks_s[4:], 16)], 1)
        e = np.stack([_compose(blocks_e[:4], 16), _compose(blocks_e[4:], 16)], 1)
        return coalesce128(s, e)


def _compose(blocks, bits):
    out = np.zeros(len(blocks[0]), np.uint64)
    for b in blocks:
        out = (out << np.uint64(bits)) | b
    return out


def _runs(table):
    """Maximal runs of True in a boolean table: (starts, ends) inclusive."""
    d = np.diff(np.r_[0, table.astype(np.int8), 0])
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1) - 1


def coalesce128(s, e):
    """Merge adjacent ranges of sorted disjoint (k, 2) [hi, lo] ranges."""
    if len(s) < 2:
        return s, e
    # next start == previous end + 1, with the carry of the low half
    plo = e[:-1, 1] + np.uint64(1)
    phi = e[:-1, 0] + (plo == 0).astype(np.uint64)
    adj = (s[1:, 1] == plo) & (s[1:, 0] == phi) & ~((e[:-1, 0] == np.uint64(M64))
                                                    & (e[:-1, 1] == np.uint64(M64)))
    keep = np.r_[True, ~adj]
    first = np.flatnonzero(keep)
    return s[first], e[np.r_[first[1:] - 1, len(e) - 1]]


# --- parsing -----------------------------------------------------------------------


class _Bad(Exception):
    pass


def _number(text, base, maxv):
    digits = "0123456789abcdefABCDEF" if base == 16 else "0123456789"
    if not text:
        raise _Bad("missing number")
    bad = [c for c in text if c not in digits]
    if bad:
        raise _Bad(f"unexpected character '{bad[0]}'")
    v = int(text, base)
    if v > maxv:
        raise _Bad(f"value '{text}' is larger than {maxv if base == 10 else hex(maxv)[2:]}")
    return v


def _block(text, base, maxv):
    """One octet/group of a wildcard: x, or a comma list of numbers and ranges; a table."""
    table = np.zeros(maxv + 1, bool)
    if text in ("x", "X"):
        table[:] = True
        return table
    if not text:
        raise _Bad("empty address block")
    for item in text.split(","):
        if not item:
            raise _Bad("empty item in a list")
        if "-" in item:
            a, _, b = item.partition("-")
            if not b:
                raise _Bad(f"range '{item}' is missing its upper limit")
            lo, hi = _number(a, base, maxv), _number(b, base, maxv)
            if lo > hi:
                raise _Bad(f"range '{item}' is reversed")
            table[lo:hi + 1] = True
        else:
            table[_number(item, base, maxv)] = True
    return table


def _v4_tables(text):
    if ":" in text:
        raise _Bad("unexpected ':'")
    parts = text.split(".")
    if len(parts) < 4:
        raise _Bad(f"only {len(parts)}/4 octets given")
    if len(parts) > 4:
        raise _Bad("more than 4 octets given")
    return [_block(p, 10, 255) for p in parts]


def _v6_tables(text):
    v4 = None
    if "." in text:
        # an embedded IPv4 (wildcard) after the last ':' before the first '.'
        cut = text.rfind(":", 0, text.find(".")) + 1
        if cut == 0:
            raise _Bad("':' after '.'")
        head, tail = text[:cut], text[cut:]
        v4 = _v4_tables(tail)
        if not head.endswith("::"):
            head = head[:-1]
        want = 6
    else:
        head, want = text, 8
    if head.count("::") > 1 or ":::" in head:
        raise _Bad("only one '::' is allowed")
    if "::" in head:
        left, _, right = head.partition("::")
        lparts = left.split(":") if left else []
        rparts = right.split(":") if right else []
        if len(lparts) + len(rparts) >= want:
            raise _Bad("'::' in an address with 8 groups")
        zero = np.zeros(65536, bool)
        zero[0] = True
        tables = ([_block(p, 16, 0xFFFF) for p in lparts]
                  + [zero] * (want - len(lparts) - len(rparts))
                  + [_block(p, 16, 0xFFFF) for p in rparts])
    else:
        parts = head.split(":")
        if len(parts) != want:
            raise _Bad(f"{len(parts)} groups given where {want} are needed")
        tables = [_block(p, 16, 0xFFFF) for p in parts]
    if v4 is not None:
        tables += [np.outer(v4[0], v4[1]).ravel(), np.outer(v4[2], v4[3]).ravel()]
    return tables


def _tables(text):
    """(tables, ipv6) of a wildcard without a CIDR suffix."""
    if ":" in text:
        return _v6_tables(text), True
    if text.isdigit() and text.isascii():  # SiLK reads a lone integer as an IPv4 address
        v = int(text)
        if v > M32:
            raise _Bad("integer too large for an IPv4 address")
        return [_single(256, (v >> s) & 255) for s in (24, 16, 8, 0)], False
    return _v4_tables(text), False


def _single(size, v):
    t = np.zeros(size, bool)
    t[v] = True
    return t


def _address(tables, ipv6):
    """The int value when every block holds exactly one value, else None."""
    bits = 16 if ipv6 else 8
    v = 0
    for t in tables:
        idx = np.flatnonzero(t)
        if len(idx) != 1:
            return None
        v = (v << bits) | int(idx[0])
    return v


def _prefix(text, width):
    if not text:
        raise _Bad("expected a prefix length after '/'")
    if not (text.isdigit() and text.isascii()):
        raise _Bad(f"bad prefix length '{text}'")
    p = int(text)
    if not 1 <= p <= width:
        raise _Bad(f"prefix length {p} is not between 1 and {width}")
    return p


def _clean(text):
    s = text.strip()
    if not s:
        raise _Bad("empty address")
    if any(c.isspace() for c in s):
        raise _Bad("embedded whitespace")
    return s


def parse_ip(text, allow_prefix=True):
    """(value, prefix, ipv6) of an address with an optional /prefix (host bits cleared);
    prefix is 32 or 128 when absent. Raises ValueError with the reason."""
    try:
        s = _clean(text)
        addr, slash, pre = s.partition("/")
        if slash and not allow_prefix:
            raise _Bad("unexpected '/'")
        tables, v6 = _tables(addr)
        v = _address(tables, v6)
        if v is None:
            raise _Bad("not an address or CIDR block (no wildcards here)")
        width = 128 if v6 else 32
        p = _prefix(pre, width) if slash else width
    except _Bad as exc:
        raise ValueError(str(exc)) from None
    host = (1 << (width - p)) - 1
    return v & ~host, p, v6


def _cidr(v, p, v6):
    width = 128 if v6 else 32
    return v, v | ((1 << (width - p)) - 1)


def parse_wildcard(text, option="--saddress"):
    """A matcher for a SiLK IP wildcard: an address, a CIDR block, or per-block lists,
    ranges and x (``10.1.24-27.x``, ``2001:db8::x``, ``::ffff:10.x.x.1``)."""
    try:
        s = _clean(text)
        addr, slash, pre = s.partition("/")
        tables, v6 = _tables(addr)
        v = _address(tables, v6)
        if slash:
            if v is None:
                raise _Bad("a CIDR prefix needs a single address before '/'")
            p = _prefix(pre, 128 if v6 else 32)
            v, _, _ = parse_ip(s)
            return ranges_from_ints([_cidr(v, p, v6)], v6)
        if v is not None:
            return ranges_from_ints([(v, v)], v6)
        return Wildcard(tables, v6)
    except (_Bad, ValueError) as exc:
        raise FlowError(f"invalid {option} value '{text}': {exc}") from None


def parse_cidr_list(text, option="--scidr"):
    """A matcher for rwfilter's IP_OR_CIDR_LIST: comma-separated addresses and CIDR
    blocks, IPv4 and/or IPv6 (a mix becomes an IPv6 pattern, IPv4 as ::ffff:0:0/96)."""
    items = []
    for item in text.split(","):
        try:
            v, p, v6 = parse_ip(item)
        except ValueError as exc:
            where = f" (item '{item}')" if "," in text else ""
            raise FlowError(f"invalid {option} value '{text}': {exc}{where}") from None
        items.append((v, p, v6))
    ipv6 = any(v6 for _, _, v6 in items)
    spans = []
    for v, p, v6 in items:
        s, e = _cidr(v, p, v6)
        if ipv6 and not v6:
            s, e = s | MAPPED, e | MAPPED
        spans.append((s, e))
    return ranges_from_ints(spans, ipv6)
