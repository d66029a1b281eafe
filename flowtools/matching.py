"""rwmatch's matching of query and response records, computed on whole arrays.

rwmatch walks two sorted streams record by record. Its result decomposes: records can
only match within one group of equal --relate keys, and inside a group the walk is a
sequence of rounds, each one skipping unmatched records, establishing a match and then
extending it. Each step has a closed form that numpy evaluates for every group at once:

* From pointers (a, b) the next match starts at time tau, the earliest start of a record
  whose start lies inside a record of the other side that starts at or after the
  pointers ("covered"); the two records rwmatch then holds are the first on each side,
  from the pointers, whose window [sTime, eTime + delta] reaches tau (for responses
  without --symmetric-delta the window is the start time alone). Range-maximum tables
  answer "first index from a with value >= x" for all groups together.
* A match with --absolute-delta takes every record starting up to the base record's
  eTime + delta; --infinite-delta the rest of the group; --relative-delta follows
  rwmatch's order of checks (a record is checked when its predecessor on the same side is
  written, against the ends of everything written plus the other side's waiting record),
  which prefix maxima over the records merged by time reproduce.

The number of rounds is the largest number of matches in one group. tests/test_match.py
keeps a record-by-record transcription of rwmatch to check this against.
"""

import numpy as np

from . import schema
from .errors import FlowError

QUERY, RESPONSE = 0, 1
_NEG = np.iinfo(np.int64).min // 4
_POS = np.iinfo(np.int64).max // 4

# fields rwmatch does not accept in --relate
EXCLUDED = {"nhIP", "sTime", "eTime", "duration", "sTime+msec", "eTime+msec", "dur+msec",
            "icmpTypeCode", "match"}


def parse_relate(values):
    """[(query_field, response_field)] from --relate values 'F1,F2'."""
    from . import fields
    if not values:
        raise FlowError("at least one --relate pair must be given")
    pairs = []
    for text in values:
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 2 or not all(parts):
            raise FlowError(f"invalid --relate '{text}': exactly two fields must be "
                            "specified")
        pair = []
        for p in parts:
            f = fields.find(p, "--relate")
            if f.name in EXCLUDED:
                raise FlowError(f"invalid --relate value '{p}': {f.name} cannot be related")
            pair.append(f)
        pairs.append(tuple(pair))
    return pairs


def relate_help():
    from . import fields
    lines = ["Fields --relate accepts, by name, alias or number (any case; a unique prefix",
             "of a name is enough):"]
    for f in fields.FIELDS:
        if f.name in EXCLUDED or f.deprecated:
            continue
        alias = list(f.aliases) + ([str(f.number)] if f.number is not None else [])
        text = f"{f.help}." + (f" Alias: {','.join(alias)}" if alias else "")
        lines.append(f"\t{f.name:<12} - {text}")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- keys

def key_columns(batch, field, config=None):
    """The value rwmatch compares for a field: uint64 columns, most significant first."""
    name = field.name
    if field.kind == "ip":
        col = batch[field.columns[0]]
        if col.ndim == 2:
            return [col[:, 0], col[:, 1]]
        return [col.astype(np.uint64)]
    if name == "iType":  # rwmatch reads the dPort byte whatever the protocol
        return [(batch["dport"] >> 8).astype(np.uint64)]
    if name == "iCode":
        return [(batch["dport"] & 0xFF).astype(np.uint64)]
    if name == "class":
        return [_class_ids(config)[batch["flowtype"]]]
    return [batch[field.columns[0]].astype(np.uint64)]


def _class_ids(config):
    table = np.arange(256, dtype=np.uint64)
    if config is not None:
        names = list(config.classes)
        for ft in config.flowtypes.values():
            if ft.class_name in names and 0 <= ft.id < 256:
                table[ft.id] = names.index(ft.class_name)
    return table


def _as_ip6(cols):
    """A number compared with an IPv6 address is taken as an IPv4 address (::ffff:n)."""
    if len(cols) == 2:
        return cols
    v = cols[0] & np.uint64(0xFFFFFFFF)
    return [np.zeros(len(v), np.uint64), v | np.uint64(0xFFFF00000000)]


def group_ids(qkeys, rkeys):
    """Group numbers of query and response records, numbered in key order.

    The key columns are packed into 64-bit words, ranking the packed prefix whenever the
    next column would not fit: a few quick sorts of one word instead of a sort on many
    (np.lexsort and stable sorts are several times slower)."""
    nq = len(qkeys[0][0]) if qkeys else 0
    cols = []
    for qk, rk in zip(qkeys, rkeys, strict=True):
        if len(qk) != len(rk):
            qk, rk = _as_ip6(qk), _as_ip6(rk)
        if len(qk) == 2:
            cols.append(_ip6_key(np.concatenate([qk[0], rk[0]]),
                                 np.concatenate([qk[1], rk[1]])))
        else:
            cols.append(np.concatenate([qk[0], rk[0]]))
    n = len(cols[0])
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    width = 64 - max(n - 1, 1).bit_length()  # words _dense_rank sorts with their index
    acc, used = None, 0
    for c in cols:
        c = c.astype(np.uint64, copy=False)
        bits = max(int(c.max()).bit_length(), 1)
        while bits:
            if acc is None and bits <= width:
                acc, used, bits = c, bits, 0
                continue
            if acc is None:
                acc, used = np.zeros(n, np.uint64), 1
            if used >= width:
                acc = _dense_rank(acc)
                used = max(int(acc.max()).bit_length(), 1)
            take = min(bits, width - used)  # the column's top bits fill the word
            rest = bits - take
            acc = (acc << np.uint64(take)) | (c >> np.uint64(rest))
            used += take
            c = c & np.uint64((1 << rest) - 1) if rest else c
            bits = rest
    gid = _dense_rank(acc).astype(np.int64)
    return gid[:nq], gid[nq:]


def _dense_rank(c):
    """0, 1, 2... in the order of c's distinct values (fewer bits than wide values)."""
    n = len(c)
    ib = max(n - 1, 1).bit_length()
    if max(int(c.max()).bit_length(), 1) + ib <= 64:
        # value and index in one word: np.sort (vectorised) instead of a slower argsort
        packed = np.sort((c << np.uint64(ib)) | np.arange(n, dtype=np.uint64))
        order = (packed & np.uint64((1 << ib) - 1)).astype(np.intp)
        s = packed >> np.uint64(ib)
    else:
        order = np.argsort(c)
        s = c[order]
    rank = np.empty(n, np.uint64)
    rank[order] = np.cumsum(np.r_[False, s[1:] != s[:-1]])
    return rank


def _ip6_key(hi, lo):
    """An order-preserving 64-bit key of 128-bit addresses: IPv4-mapped ones (most, as a
    rule) by their 32 bits, the others by their rank among themselves."""
    mapped = (hi == 0) & ((lo >> np.uint64(32)) == np.uint64(0xFFFF))
    key = np.empty(len(hi), np.uint64)
    other = np.flatnonzero(~mapped)
    below = np.zeros(0, bool)
    if len(other):
        h, low = hi[other], lo[other]
        order = np.lexsort((low, h))
        hs, ls = h[order], low[order]
        rank = np.empty(len(other), np.uint64)
        rank[order] = np.cumsum(np.r_[False, (hs[1:] != hs[:-1]) | (ls[1:] != ls[:-1])])
        below = h == 0  # below ::ffff:0:0/96; the rest sort above it
        below &= low < np.uint64(0xFFFF00000000)
        key[other] = np.where(below, rank, rank + np.uint64(1 << 33))
    key[mapped] = (lo[mapped] & np.uint64(0xFFFFFFFF)) + np.uint64(len(other))
    return key


# ----------------------------------------------------------------------------- tools

class RangeMax:
    """Sparse table of range maxima answering first/last index with value >= x."""

    def __init__(self, values, longest):
        self.levels = [np.asarray(values)]
        self.n = len(values)
        depth = max(int(longest).bit_length() - 1, 0)
        for k in range(1, depth + 1):
            prev = self.levels[-1]
            h = 1 << (k - 1)
            nxt = prev.copy()
            if h < len(prev):
                np.maximum(prev[:-h], prev[h:], out=nxt[:-h])
            self.levels.append(nxt)

    def first_at_least(self, start, stop, x):
        """First index in [start, stop) whose value is >= x, else stop."""
        start = np.asarray(start, np.int64)
        # most answers are the first element: search only for the others
        top = max(self.n - 1, 0)
        here = (start < stop) & (self.levels[0][np.minimum(start, top)] >= x)
        if here.all():
            return start.copy()
        rest = np.flatnonzero(~here)
        out = start.copy()
        out[rest] = self._first(start[rest], np.asarray(stop)[rest] if np.ndim(stop)
                                else stop, x[rest] if np.ndim(x) else x)
        return out

    def _first(self, start, stop, x):
        pos = np.array(start, np.int64, copy=True)
        top = max(self.n - 1, 0)
        for k in range(len(self.levels) - 1, -1, -1):
            step = 1 << k
            ok = pos + step <= stop
            m = self.levels[k][np.minimum(pos, top)]
            pos += step * (ok & (m < x))
        return pos

    def last_at_least(self, start, stop, x):
        """Last index in [start, stop) whose value is >= x, else start - 1."""
        stop = np.asarray(stop, np.int64)
        top = max(self.n - 1, 0)
        here = (stop > start) & (self.levels[0][np.clip(stop - 1, 0, top)] >= x)
        if here.all():
            return stop - 1
        rest = np.flatnonzero(~here)
        out = stop - 1
        out[rest] = self._last(np.asarray(start)[rest] if np.ndim(start) else start,
                               stop[rest], x[rest] if np.ndim(x) else x)
        return out

    def _last(self, start, stop, x):
        pos = np.array(stop, np.int64, copy=True)
        for k in range(len(self.levels) - 1, -1, -1):
            step = 1 << k
            ok = pos - step >= start
            m = self.levels[k][np.maximum(pos - step, 0)]
            pos -= step * (ok & (m < x))
        return pos - 1


class _Sorted:
    """Searches inside a group of records sorted by (group, time)."""

    def __init__(self, g, t, lo, hi):
        self.lo, self.hi = lo, hi
        self.key = g * _Sorted.span + (t - _Sorted.t0)

    @classmethod
    def setup(cls, times, groups):
        t = np.concatenate(times) if times else np.zeros(0, np.int64)
        cls.t0 = int(t.min()) - 2 if len(t) else 0
        cls.span = (int(t.max()) - cls.t0 + 4) if len(t) else 4
        if cls.span * (groups + 1) >= 2**62:
            raise FlowError("too many groups over too long a time to match")

    def count_le(self, g, t):
        """Index of the first record of group g starting after t."""
        tt = np.clip(t, _Sorted.t0 + 1, _Sorted.t0 + _Sorted.span - 1) - _Sorted.t0
        return np.searchsorted(self.key, g * _Sorted.span + tt, "right")


def _segment_cummax(v, seg):
    """Running maximum of v restarting at each new value of seg (seg nondecreasing)."""
    if not len(v):
        return v
    rank = np.cumsum(np.r_[0, seg[1:] != seg[:-1]])
    lo = int(v.min())
    big = int(v.max()) - lo + 1
    if big * (int(rank[-1]) + 1) < 2**62:
        off = rank * big
        return np.maximum.accumulate((v - lo) + off) - off + lo
    out = np.empty_like(v)  # very wide values: one accumulate per segment
    bounds = np.flatnonzero(np.r_[True, rank[1:] != rank[:-1], True])
    for s, e in zip(bounds[:-1], bounds[1:], strict=True):
        out[s:e] = np.maximum.accumulate(v[s:e])
    return out


# ----------------------------------------------------------------------------- engine

def match_sorted(gq, qs, qe, guess_r, gr, rs, re, delta=0, symmetric=False,
                 mode="absolute"):
    """The matching of records sorted by (group, sTime) on each side.

    Returns (seg_q, base_q, seg_r, base_r, round_q, round_r): for each record its segment
    within its group (2k: unmatched records before match k, 2k+1: match k), and for
    matched records the side of their match's base record; round_* is k for matched
    records and -1 for unmatched ones.

    Groups of one query and one response (most, when relating 5-tuples) are settled by
    rwmatch's first comparison alone; the rounds run over the other groups only."""
    nq, nr = len(qs), len(rs)
    seg_q = np.zeros(nq, np.int64)
    seg_r = np.zeros(nr, np.int64)
    base_q = np.zeros(nq, np.int8)
    base_r = np.zeros(nr, np.int8)
    if nq == 0 or nr == 0:
        return seg_q, base_q, seg_r, base_r, np.full(nq, -1), np.full(nr, -1)
    groups = int(max(gq.max(), gr.max())) + 1
    size_q = np.bincount(gq, minlength=groups)
    size_r = np.bincount(gr, minlength=groups)
    pair = (size_q == 1) & (size_r == 1)
    many = (size_q > 0) & (size_r > 0) & ~pair
    i = np.flatnonzero(pair[gq])  # the query and response of each pair group, in order
    j = np.flatnonzero(pair[gr])
    q_t, r_t = qs[i], rs[j]
    tie = q_t == r_t
    hit = tie | ((q_t < r_t) & (r_t <= qe[i] + delta))
    if symmetric:
        hit |= (q_t > r_t) & (q_t <= re[j] + delta)
    base = np.where(tie, np.where(guess_r[i], RESPONSE, QUERY),
                    np.where(q_t < r_t, QUERY, RESPONSE)).astype(np.int8)
    seg_q[i] = seg_r[j] = hit
    base_q[i] = base_r[j] = base
    sub_q, sub_r = np.flatnonzero(many[gq]), np.flatnonzero(many[gr])
    if len(sub_q):
        out = _match_general(gq[sub_q], qs[sub_q], qe[sub_q], guess_r[sub_q], gr[sub_r],
                             rs[sub_r], re[sub_r], delta, symmetric, mode)
        seg_q[sub_q], base_q[sub_q], seg_r[sub_r], base_r[sub_r] = out
    round_q = np.where(seg_q % 2 == 1, seg_q // 2, -1)
    round_r = np.where(seg_r % 2 == 1, seg_r // 2, -1)
    return seg_q, base_q, seg_r, base_r, round_q, round_r


def _match_general(gq, qs, qe, guess_r, gr, rs, re, delta, symmetric, mode):
    """match_sorted's rounds: (seg_q, base_q, seg_r, base_r)."""
    nq, nr = len(qs), len(rs)
    seg_q = np.zeros(nq, np.int64)
    seg_r = np.zeros(nr, np.int64)
    base_q = np.zeros(nq, np.int8)
    base_r = np.zeros(nr, np.int8)
    if nq == 0 or nr == 0:
        return seg_q, base_q, seg_r, base_r
    groups = int(max(gq.max(), gr.max())) + 1
    ids = np.arange(groups)
    qlo, qhi = np.searchsorted(gq, ids, "left"), np.searchsorted(gq, ids, "right")
    rlo, rhi = np.searchsorted(gr, ids, "left"), np.searchsorted(gr, ids, "right")
    both = np.flatnonzero((qhi > qlo) & (rhi > rlo))
    qend = qe + delta
    rend = (re + delta) if symmetric else rs
    _Sorted.setup([qs, rs, qend, rend], groups)
    sq, sr = _Sorted(gq, qs, qlo, qhi), _Sorted(gr, rs, rlo, rhi)
    longest = int(max((qhi - qlo).max(), (rhi - rlo).max()))
    tq_end, tr_end = RangeMax(qend, longest), RangeMax(rend, longest)
    # the latest record of the other side whose window holds each record's start
    kq = sr.count_le(gq, qs)
    if symmetric:
        sidx_q = tr_end.last_at_least(rlo[gq], kq, qs)
    else:  # a response's window is its start: only one starting with the query covers it
        last = np.maximum(kq - 1, 0)
        sidx_q = np.where((kq > rlo[gq]) & (rs[last] == qs), kq - 1, rlo[gq] - 1)
    kr = sq.count_le(gr, rs)
    sidx_r = tq_end.last_at_least(qlo[gr], kr, rs)
    tq_cov, tr_cov = RangeMax(sidx_q, longest), RangeMax(sidx_r, longest)
    del kq, kr

    def next_match(g, a, b, e_q, e_r):
        """The next match from pointers (a, b): (found, hq, hr, base)."""
        xq = tq_cov.first_at_least(a, e_q, b)
        xr = tr_cov.first_at_least(b, e_r, a)
        tq = np.where(xq < e_q, qs[np.minimum(xq, nq - 1)], _POS)
        tr = np.where(xr < e_r, rs[np.minimum(xr, nr - 1)], _POS)
        tau = np.minimum(tq, tr)
        found = tau < _POS
        tau = np.where(found, tau, 0)
        hq = np.minimum(tq_end.first_at_least(a, e_q, tau), nq - 1)
        hr = np.minimum(tr_end.first_at_least(b, e_r, tau), nr - 1)
        q_t, r_t = qs[hq], rs[hr]
        base = np.where(q_t == r_t, np.where(guess_r[hq], RESPONSE, QUERY),
                        np.where(q_t < r_t, QUERY, RESPONSE)).astype(np.int8)
        return found, hq, hr, base

    if mode == "absolute":
        marks_q, marks_r = _absolute_chains(both, qlo, qhi, rlo, rhi, gq, gr, qe, re, delta,
                                            sq, sr, next_match)
        _paint(seg_q, base_q, marks_q)
        _paint(seg_r, base_r, marks_r)
        return seg_q, base_q, seg_r, base_r

    marks_q, marks_r = [], []  # (start, stop, segment, base) runs of records
    g = both
    a, b = qlo[g], rlo[g]
    rnd = 0
    while len(g):
        e_q, e_r = qhi[g], rhi[g]
        xq = tq_cov.first_at_least(a, e_q, b)
        xr = tr_cov.first_at_least(b, e_r, a)
        tq = np.where(xq < e_q, qs[np.minimum(xq, nq - 1)], _POS)
        tr = np.where(xr < e_r, rs[np.minimum(xr, nr - 1)], _POS)
        tau = np.minimum(tq, tr)
        found = tau < _POS
        none = ~found  # no further match: the rest of these groups is unmatched
        marks_q.append((a[none], e_q[none], 2 * rnd, np.zeros(int(none.sum()), np.int8)))
        marks_r.append((b[none], e_r[none], 2 * rnd, np.zeros(int(none.sum()), np.int8)))
        g, a, b, e_q, e_r, tau = (v[found] for v in (g, a, b, e_q, e_r, tau))
        if not len(g):
            break
        hq = tq_end.first_at_least(a, e_q, tau)
        hr = tr_end.first_at_least(b, e_r, tau)
        q_t, r_t = qs[hq], rs[hr]
        base = np.where(q_t == r_t, np.where(guess_r[hq], RESPONSE, QUERY),
                        np.where(q_t < r_t, QUERY, RESPONSE)).astype(np.int8)
        if mode == "infinite":
            na, nb = e_q, e_r
        elif mode == "absolute":
            limit = np.where(base == QUERY, qe[hq], re[hr]) + delta
            na = np.maximum(sq.count_le(g, limit), hq + 1)
            nb = np.maximum(sr.count_le(g, limit), hr + 1)
        else:
            na, nb = _relative(qs, qe, rs, re, delta, hq, e_q, hr, e_r, base)
        marks_q.append((a, hq, 2 * rnd, base))
        marks_q.append((hq, na, 2 * rnd + 1, base))
        marks_r.append((b, hr, 2 * rnd, base))
        marks_r.append((hr, nb, 2 * rnd + 1, base))
        a, b = na, nb
        go = (a < e_q) & (b < e_r)
        # groups that end here keep their remaining records unmatched
        marks_q.append((a[~go], e_q[~go], 2 * rnd + 2, base[~go]))
        marks_r.append((b[~go], e_r[~go], 2 * rnd + 2, base[~go]))
        g, a, b = g[go], a[go], b[go]
        rnd += 1
    _paint(seg_q, base_q, marks_q)
    _paint(seg_r, base_r, marks_r)
    return seg_q, base_q, seg_r, base_r


def _absolute_chains(both, qlo, qhi, rlo, rhi, gq, gr, qe, re, delta, sq, sr, next_match):
    """All rounds of --absolute-delta at once. After a match the pointers are the records
    starting after its base's eTime + delta, so the state after a match is fixed by its
    base record: every record is a node, each node's next match is computed for all nodes
    together, and the chains from each group's start are followed by pointer doubling
    (log of the longest chain steps instead of one step per match)."""
    nq, nr, ns = len(gq), len(gr), len(both)
    # nodes: group starts, then each query record as a base, then each response record
    node_g = np.r_[both, gq, gr]
    limit_q, limit_r = qe + delta, re + delta
    a = np.r_[qlo[both], sq.count_le(gq, limit_q), sq.count_le(gr, limit_r)]
    b = np.r_[rlo[both], sr.count_le(gq, limit_q), sr.count_le(gr, limit_r)]
    e_q, e_r = qhi[node_g], rhi[node_g]
    total = ns + nq + nr
    live = (a < e_q) & (b < e_r)
    found = np.zeros(total, bool)
    hq = np.zeros(total, np.int64)
    hr = np.zeros(total, np.int64)
    base = np.zeros(total, np.int8)
    at = np.flatnonzero(live)
    f, hq[at], hr[at], base[at] = next_match(node_g[at], a[at], b[at], e_q[at], e_r[at])
    found[at] = f
    nxt = np.where(base == QUERY, ns + hq, ns + nq + hr)
    nxt = np.r_[np.where(found, nxt, total), total]  # 'total' ends a chain
    # the chain nodes of every group and their depths, by doubling
    cur_nodes, cur_depth, jump, step = np.arange(ns), np.zeros(ns, np.int64), nxt, 1
    while True:  # cur_*: the nodes at depths below step, jump: step nodes ahead
        new = jump[cur_nodes]
        keep = new < total
        if not keep.any():
            break
        cur_nodes = np.concatenate([cur_nodes, new[keep]])
        cur_depth = np.concatenate([cur_depth, cur_depth[keep] + step])
        jump = jump[jump]
        step *= 2
    u, d = cur_nodes, cur_depth
    m = found[u]
    v = nxt[u[m]]
    um, dm = u[m], d[m]
    marks_q = [(a[um], hq[um], 2 * dm, base[um]), (hq[um], a[v], 2 * dm + 1, base[um])]
    marks_r = [(b[um], hr[um], 2 * dm, base[um]), (hr[um], b[v], 2 * dm + 1, base[um])]
    end = u[~m]  # the last node of each chain: the rest of its group is unmatched
    zero = np.zeros(len(end), np.int8)
    marks_q.append((np.minimum(a[end], e_q[end]), e_q[end], 2 * d[~m], zero))
    marks_r.append((np.minimum(b[end], e_r[end]), e_r[end], 2 * d[~m], zero))
    return marks_q, marks_r


def _paint(seg, base, marks):
    """Write each run's segment and base over its records (runs are disjoint)."""
    if not marks:
        return
    start = np.concatenate([np.broadcast_to(m[0], np.shape(m[0])) for m in marks])
    stop = np.concatenate([m[1] for m in marks])
    value = np.concatenate([np.broadcast_to(m[2], np.shape(m[0])) for m in marks])
    side = np.concatenate([m[3] for m in marks])
    length = stop - start
    keep = length > 0
    start, length, value, side = start[keep], length[keep], value[keep], side[keep]
    if not len(start):
        return
    idx = np.repeat(start - np.cumsum(length) + length, length) + np.arange(length.sum())
    seg[idx] = np.repeat(value, length)
    base[idx] = np.repeat(side, length)


# ----------------------------------------------------------------------------- relative

def _relative(qs, qe, rs, re, delta, hq, e_q, hr, e_r, base):
    """Where matches end with --relative-delta: first a window of records after each
    pair of heads, widened for the matches that run past it."""
    m = len(hq)
    na, nb = np.empty(m, np.int64), np.empty(m, np.int64)
    todo = np.arange(m)
    width = 16
    while len(todo):
        a2, b2, retry = _relative_window(qs, qe, rs, re, delta, hq[todo], e_q[todo],
                                         hr[todo], e_r[todo], base[todo], width)
        done = todo[~retry]
        na[done], nb[done] = a2[~retry], b2[~retry]
        todo = todo[retry]
        width *= 4
    return na, nb


def _relative_window(qs, qe, rs, re, delta, hq, e_q, hr, e_r, base, width):
    m = len(hq)
    cq = np.minimum(e_q - hq, width)
    cr = np.minimum(e_r - hr, width)
    cut = [(e_q - hq) > width, (e_r - hr) > width]
    # candidates: match j, side, position k on its side (k = 0 is the head)
    jq = np.repeat(np.arange(m), cq)
    kq = np.arange(len(jq)) - np.repeat(np.cumsum(cq) - cq, cq)
    jr = np.repeat(np.arange(m), cr)
    kr = np.arange(len(jr)) - np.repeat(np.cumsum(cr) - cr, cr)
    iq, ir = hq[jq] + kq, hr[jr] + kr
    j = np.concatenate([jq, jr])
    side = np.concatenate([np.zeros(len(jq), np.int8), np.ones(len(jr), np.int8)])
    k = np.concatenate([kq, kr])
    start = np.concatenate([qs[iq], rs[ir]])
    end = np.concatenate([qe[iq], re[ir]]) + delta
    # the head of the other side joined without a check: its end never widens the window
    end[(k == 0) & (side != base[j])] = start.min() - 1
    # merged as rwmatch writes them: by time, the base's side first on ties
    order = np.lexsort((k, side != base[j], start, j))
    pos = np.empty(len(order), np.int64)
    pos[order] = np.arange(len(order))
    pm = _segment_cummax(end[order], j[order])  # max end over the merged prefix
    pos_q, pos_r = pos[: len(jq)], pos[len(jq):]
    off_q, off_r = np.cumsum(cq) - cq, np.cumsum(cr) - cr

    # phase 1: each check while both sides are open; the check of element k happens
    # when element k-1 of its side is written (position c); its window is the merged
    # prefix up to c plus the other side's waiting record. After a side's last
    # candidate is written it stops (end of group, or of the window: then retry).
    def checks(pos_s, pos_o, j_s, k_s, jo, off_s, count_s, s_start, end_o):
        real = k_s >= 1
        c = np.where(real, pos_s[np.maximum(np.arange(len(k_s)) - 1, 0)], 0)
        t = np.searchsorted(pos_o, c, "right")
        tt = np.minimum(t, len(pos_o) - 1)
        waiting = (t < len(pos_o)) & (jo[tt] == j_s)
        win = np.maximum(pm[c], np.where(waiting, end_o[tt], _NEG))
        fail = real & (s_start > win)
        last = off_s + count_s - 1
        return (np.concatenate([c[fail], pos_s[last]]),
                np.concatenate([j_s[fail], np.arange(m)]),
                np.concatenate([k_s[fail], count_s]))

    end_q, end_r = end[: len(jq)], end[len(jq):]
    cq_f, jq_f, kq_f = checks(pos_q, pos_r, jq, kq, jr, off_q, cq, start[: len(jq)], end_r)
    cr_f, jr_f, kr_f = checks(pos_r, pos_q, jr, kr, jq, off_r, cr, start[len(jq):], end_q)
    first = np.full(m, _POS)
    np.minimum.at(first, jq_f, cq_f)
    np.minimum.at(first, jr_f, cr_f)
    stop_q = np.full(m, -1)
    stop_r = np.full(m, -1)
    hit = cq_f == first[jq_f]
    stop_q[jq_f[hit]] = kq_f[hit]
    hit = cr_f == first[jr_f]
    stop_r[jr_f[hit]] = kr_f[hit]
    side_star = np.where(stop_q >= 0, QUERY, RESPONSE)
    pstar = first
    acc_star = np.where(side_star == QUERY, stop_q, stop_r)
    sent_star = acc_star == np.where(side_star == QUERY, cq, cr)

    # phase 2: the other side alone, against everything written up to p* and its own
    # records since
    other = 1 - side_star
    cm_q = _segment_cummax(end_q, jq)
    cm_r = _segment_cummax(end_r, jr)

    def alone(pos_s, j_s, k_s, s_start, cm, mine):
        sel = mine[j_s] & (k_s >= 1)
        c = pos_s[np.maximum(np.arange(len(k_s)) - 1, 0)]
        sel &= c > pstar[j_s]
        win = np.maximum(pm[np.minimum(pstar[j_s], len(pm) - 1)],
                         cm[np.maximum(np.arange(len(k_s)) - 1, 0)])
        fail = sel & (s_start > win)
        stop = np.full(m, _POS)
        np.minimum.at(stop, j_s[fail], k_s[fail])
        return stop

    stop2_q = alone(pos_q, jq, kq, start[: len(jq)], cm_q, other == QUERY)
    stop2_r = alone(pos_r, jr, kr, start[len(jq):], cm_r, other == RESPONSE)
    acc_other = np.where(other == QUERY, np.minimum(stop2_q, cq), np.minimum(stop2_r, cr))
    sent_other = np.where(other == QUERY, stop2_q >= cq, stop2_r >= cr)
    acc_q = np.where(side_star == QUERY, acc_star, acc_other)
    acc_r = np.where(side_star == RESPONSE, acc_star, acc_other)
    retry = (sent_star & np.where(side_star == QUERY, cut[0], cut[1])) | \
        (sent_other & np.where(other == QUERY, cut[0], cut[1]))
    return hq + acc_q, hr + acc_r, retry


# ----------------------------------------------------------------------------- batches

def guess_response_first(batch):
    """rwmatch's guess for records starting together: the query record is the reply when
    it is TCP or UDP from a port below 1024 to a port of 1024 or more."""
    tcpudp = np.isin(batch["protocol"], (6, 17))
    return tcpudp & (batch["dport"] >= 1024) & (batch["sport"] < 1024)


def match(query, response, pairs, delta=0, symmetric=False, mode="absolute",
          unmatched_q=False, unmatched_r=False, config=None, report=None):
    """The output batch of rwmatch: matched records (and unmatched ones when asked),
    grouped by match in match order, next-hop IPs set to the match labels."""
    if schema.is_v6(query) or schema.is_v6(response):
        query, response = schema.to_v6(query), schema.to_v6(response)
    nq = schema.nrecords(query)
    qkeys = [key_columns(query, f, config) for f, _ in pairs]
    rkeys = [key_columns(response, f, config) for _, f in pairs]
    gq, gr = group_ids(qkeys, rkeys)
    qstime, rstime = query["stime"], response["stime"]
    oq, orr = _by_group_and_time(gq, qstime), _by_group_and_time(gr, rstime)
    if report is not None:
        for name, o in (("query", oq), ("response", orr)):
            if len(o) and (o != np.arange(len(o))).any():
                report(f"the {name} input is not sorted by its --relate fields and sTime; "
                       "sorting it")
    gq, gr = gq[oq], gr[orr]
    qs, rs = qstime[oq], rstime[orr]
    qe = qs + query["duration"][oq].astype(np.int64)
    re = rs + response["duration"][orr].astype(np.int64)
    guess = guess_response_first(query)[oq]
    seg_q, base_q, seg_r, base_r, round_q, round_r = match_sorted(
        gq, qs, qe, guess, gr, rs, re, int(delta), symmetric, mode)
    # match numbers: matches counted in (group, round) order
    mq, mr = round_q >= 0, round_r >= 0
    groups = int(max(gq.max(initial=0), gr.max(initial=0))) + 1
    count = np.zeros(groups, np.int64)
    np.maximum.at(count, gq[mq], round_q[mq] + 1)
    first_id = np.cumsum(count) - count + 1
    id_q = np.zeros(nq, np.uint32)
    id_r = np.zeros(len(rs), np.uint32)
    id_q[mq] = first_id[gq[mq]] + round_q[mq]
    id_r[mr] = first_id[gr[mr]] + round_r[mr]
    keep_q = np.flatnonzero(mq | unmatched_q)
    keep_r = np.flatnonzero(mr | unmatched_r)
    # the order rwmatch writes: group, segment, time, ties as its loops break them
    side = np.r_[np.zeros(len(keep_q), np.int64), np.ones(len(keep_r), np.int64)]
    seg = np.r_[seg_q[keep_q], seg_r[keep_r]]
    tie = np.where(seg % 2 == 1, side != np.r_[base_q[keep_q], base_r[keep_r]], side)
    g = np.r_[gq[keep_q], gr[keep_r]]
    t = np.r_[qs[keep_q], rs[keep_r]]
    t = ((t - (t.min() if len(t) else 0)) << 2) | (tie << 1) | side
    bits = [max(int(v.max(initial=0)).bit_length(), 1) for v in (g, seg, t)]
    if sum(bits) <= 63:
        key = (g << (bits[1] + bits[2])) | (seg << bits[2]) | t
        order = np.argsort(key, kind="stable")  # one side's equal times keep their order
    else:
        order = np.lexsort((t, seg, g))
    label = np.r_[id_q[keep_q], id_r[keep_r] | np.uint32(0xFF000000)]
    # each side's records gathered straight into their output places (no concatenation)
    at = np.empty(len(order), np.int64)
    at[order] = np.arange(len(order))
    sides = [(query, oq[keep_q], at[: len(keep_q)]), (response, orr[keep_r], at[len(keep_q):])]
    out = {}
    for name in query:
        col = query[name]
        dst = np.empty((len(order),) + col.shape[1:], col.dtype)
        for batch, src, where in sides:
            if len(src):
                _scatter(dst, where, batch[name], src)
        out[name] = dst
    _set_nhip(out, label[order])
    return out


def _scatter(dst, where, col, src):
    if col.ndim == 2:  # 128-bit addresses moved as one 16-byte item each
        dst.view(np.complex128)[where, 0] = col.view(np.complex128)[src, 0]
    else:
        dst[where] = col[src]


def _by_group_and_time(g, t):
    """Stable order by (group, time). Inputs in time order (the usual case) need the group
    alone; a key that fits 64 bits with the record index is ordered by np.sort (much
    faster than a stable argsort)."""
    n = len(g)
    if not n:
        return np.zeros(0, np.int64)
    g = g.astype(np.uint64)
    if (t[1:] >= t[:-1]).all():
        key, bits = g, max(int(g.max()).bit_length(), 1)
    else:
        t = (t - t.min()).astype(np.uint64)
        tb = max(int(t.max()).bit_length(), 1)
        bits = max(int(g.max()).bit_length(), 1) + tb
        if bits > 63:
            return np.lexsort((t, g))
        key = (g << np.uint64(tb)) | t
    ib = max(n - 1, 1).bit_length()
    if bits + ib <= 64:
        packed = np.sort((key << np.uint64(ib)) | np.arange(n, dtype=np.uint64))
        return (packed & np.uint64((1 << ib) - 1)).astype(np.int64)
    return np.argsort(key, kind="stable")


def _set_nhip(batch, label):
    if schema.is_v6(batch):
        col = np.empty((len(label), 2), np.uint64)
        col[:, 0] = 0
        col[:, 1] = label.astype(np.uint64) | schema.V4_MAPPED_LO
        batch["nhip"] = col
    else:
        batch["nhip"] = label.astype(np.uint32)
