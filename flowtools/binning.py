"""Time bins of records, bytes and packets, spread over the bins as rwcount does.

A Counter takes batches in input order and adds each record to its bins by one of SiLK's
seven load schemes. Every record's share is computed with the same double arithmetic as
rwcount.c and added with np.add.at in record order, so the sums carry the same rounding as
SiLK's (its %.2f text is then the same to the last digit). Bin numbers are kept relative
to the window start rwcount would have chosen, which also gives its --bin-slots labels.
"""

import numpy as np

from .errors import FlowError

DAY_MS = 86_400_000
UNSET_START, UNSET_END = 0, (1 << 63) - 1
BIN_COUNT_STD = 1 << 21  # rwcount grows its array by this many bins at a time
CHUNK = 1 << 22  # (record, bin) shares expanded at once, to bound memory

# name -> SiLK's number; the order is rwcount's --help order.
SCHEMES = {"time-proportional": 4, "bin-uniform": 0, "start-spike": 1, "middle-spike": 3,
           "end-spike": 2, "maximum-volume": 5, "minimum-volume": 6}
SCHEME_HELP = {
    "time-proportional": "each bin gets the share of the record's duration spent in it",
    "bin-uniform": "each bin the record touches gets an equal share",
    "start-spike": "the whole record goes to the bin of its start time",
    "middle-spike": "the whole record goes to the bin of its midpoint",
    "end-spike": "the whole record goes to the bin of its end time",
    "maximum-volume": "every bin the record touches gets all its bytes and packets",
    "minimum-volume": "every bin it touches counts the record, its bytes and packets "
                      "only when it fits in one bin",
}


def parse_scheme(text):
    """A load scheme's name from a name, a unique name prefix or SiLK's number."""
    key = (text or "").strip().lower()
    by_number = {str(v): k for k, v in SCHEMES.items()}
    if key in by_number:
        return by_number[key]
    if key in SCHEMES:
        return key
    hits = [k for k in SCHEMES if key and k.startswith(key)]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise FlowError(f"invalid --load-scheme: '{text}' is ambiguous")
    raise FlowError(f"invalid --load-scheme: '{text}' is not recognized")


def parse_bin_size(text, option="--bin-size"):
    """Milliseconds from seconds (fractional allowed, 0.001 to 2^31-1) as SiLK parses it."""
    import re
    s = (text or "").strip()
    if not re.fullmatch(r"(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", s):
        raise FlowError(f"invalid {option} '{text}': expected a number of seconds")
    value = float(s)
    if not 0.001 <= value <= 2**31 - 1:
        raise FlowError(f"invalid {option} '{text}': must be between 0.001 and "
                        f"{2**31 - 1} seconds")
    return int(1000.0 * value)


def window(size, start=None, end=None):
    """(start_time, end_time) as rwcount keeps them: the end moved up to a bin boundary.

    start: epoch ms or None. end: (epoch ms, ceiling step in ms) or None; rwcount moves an
    end time to the last millisecond of its precision (e.g. its hour), then to the end of
    the bin holding it."""
    s = UNSET_START if start is None else start
    e = UNSET_END
    if end is not None:
        t, step = end
        ceiling = t - t % step + step  # one past the last millisecond of its precision
        if start is not None:
            if ceiling <= start:
                raise FlowError("the --end-time is less than --start-time")
            e = start + size * (1 + (ceiling - start - 1) // size)
        else:
            e = t + size * (1 + (ceiling - t - 1) // size)
    return s, e


class Counter:
    """Bins of one series; add() batches in input order, then series()."""

    def __init__(self, size, scheme="time-proportional", start_time=UNSET_START,
                 end_time=UNSET_END):
        if size <= 0:
            raise FlowError("invalid --bin-size: must be positive")
        self.size = int(size)
        self.scheme = scheme
        self.start, self.end = int(start_time), int(end_time)
        self.wmin = None  # rwcount's window_min: time of its bin 0
        self.origin = None  # time of our array's element 0 (a whole number of bins)
        self.flows = self.bytes = self.pkts = np.zeros(0)

    # ------------------------------------------------------------------ window

    def _init(self, first_stime):
        size = self.size
        if self.start != UNSET_START:
            self.wmin = self.start
            return
        t = int(first_stime)
        if size < 1000:
            t -= t % DAY_MS
        elif size > DAY_MS:
            t = t - t % DAY_MS - 7 * DAY_MS
        else:
            t = t - t % DAY_MS - 2 * DAY_MS
        if self.end != UNSET_END:
            t = self.end - size * (1 + (self.end - t) // size)
        self.wmin = t

    def _ensure(self, lo, hi):
        """Room for absolute bin numbers lo..hi (times origin + k * size)."""
        if self.origin is None:
            self.origin = self.wmin + lo * self.size
            n = hi - lo + 1
            self.flows, self.bytes, self.pkts = (np.zeros(n) for _ in range(3))
            return
        first = (self.origin - self.wmin) // self.size
        have = len(self.flows)
        if lo >= first and hi < first + have:
            return
        new_first = min(lo, first)
        need = max(hi, first + have - 1) - new_first + 1
        grow = max(need, 2 * have)  # amortised: at least double
        if lo < first:
            new_first -= grow - need  # room to spare on the side that grew
        arrays = []
        for a in (self.flows, self.bytes, self.pkts):
            b = np.zeros(grow)
            b[first - new_first: first - new_first + have] = a
            arrays.append(b)
        self.flows, self.bytes, self.pkts = arrays
        self.origin = self.wmin + new_first * self.size

    # ------------------------------------------------------------------ adding

    def add(self, stime, duration, nbytes, npkts):
        """Add records (arrays in input order): sTime ms, duration ms, bytes, packets."""
        stime = np.asarray(stime, np.int64)
        if not len(stime):
            return
        if self.wmin is None:
            self._init(stime[0])
        etime = stime + np.asarray(duration).astype(np.int64)
        nbytes = np.asarray(nbytes).astype(np.float64)
        npkts = np.asarray(npkts).astype(np.float64)
        # The time that can make rwcount move its window start earlier, per record.
        spike = self.scheme.endswith("-spike")
        trigger = self._spike_times(stime, etime) if spike else stime
        reach = trigger >= self.start if self.start != UNSET_START else np.ones(len(stime), bool)
        lo = 0
        while lo < len(stime):
            early = np.flatnonzero(reach[lo:] & (trigger[lo:] < self.wmin))
            hi = len(stime) if not len(early) else lo + int(early[0])
            if hi > lo:
                self._add(stime[lo:hi], etime[lo:hi], nbytes[lo:hi], npkts[lo:hi])
            if hi < len(stime):
                # rwcount reallocates: its bin 0 moves back by at least 2^21 bins
                ext = 1 + (self.wmin - int(trigger[hi])) // self.size
                self.wmin -= max(ext, BIN_COUNT_STD) * self.size
            lo = hi

    def _spike_times(self, stime, etime):
        if self.scheme == "start-spike":
            return stime
        if self.scheme == "end-spike":
            return etime
        return stime + (etime - stime) // 2

    def _bin(self, t):
        return (t - self.wmin) // self.size

    def _put(self, idx, flows, nbytes, npkts):
        """Add shares in the given (record-major) order: np.add.at adds one at a time."""
        if not len(idx):
            return
        self._ensure(int(idx.min()), int(idx.max()))
        rel = (self.wmin - self.origin) // self.size
        k = idx + rel
        np.add.at(self.flows, k, flows)
        np.add.at(self.bytes, k, nbytes)
        np.add.at(self.pkts, k, npkts)

    def _add(self, s, e, nb, npk):
        if self.scheme.endswith("-spike"):
            t = self._spike_times(s, e)
            keep = (t >= self.start) & (t < self.end)
            idx = self._bin(t[keep])
            self._put(idx, np.ones(len(idx)), nb[keep], npk[keep])
            return
        keep = ~((e < self.start) | (s >= self.end))
        if not keep.all():
            s, e, nb, npk = s[keep], e[keep], nb[keep], npk[keep]
        if not len(s):
            return
        # chunks of records whose expanded shares stay bounded (record order is kept)
        spans = self._span(s, e)
        counts = np.maximum(spans[1] - spans[0] + 1, 1)
        cum = np.cumsum(counts)
        lo = 0
        while lo < len(s):
            hi = int(np.searchsorted(cum, (cum[lo - 1] if lo else 0) + CHUNK, "right"))
            hi = max(hi, lo + 1)
            self._spread(s[lo:hi], e[lo:hi], nb[lo:hi], npk[lo:hi])
            lo = hi

    def _span(self, s, e):
        """First and last bin a record may touch (before the scheme's own rules)."""
        inside_s = s >= self.start
        inside_e = e < self.end
        sb = np.where(inside_s, self._bin(s), self._bin(np.int64(self.start)))
        eb = np.where(inside_e, self._bin(e), self._bin(np.int64(self.end)) - 1
                      if self.end != UNSET_END else 0)
        return sb, eb

    def _spread(self, s, e, nb, npk):
        scheme = self.scheme
        inside_s = s >= self.start
        inside_e = e < self.end
        sb, last = self._span(s, e)  # last: final bin inside the window
        single = (sb == last) & inside_s & inside_e
        n = len(s)
        if scheme == "time-proportional":
            # beyond the window's end rwcount's end bin is the one past it
            eb = np.where(inside_e, last, last + 1)
            covered_last = np.where(inside_e, eb, eb - 1)
            count = np.where(single, 1, covered_last - sb + 1)
            flows = float(self.size) / (1.0 + (e - s).astype(np.float64))
            fb = nb * flows
            fp = npk * flows
            rs = (sb.astype(np.float64) + 1.0) - ((s - self.wmin).astype(np.float64)
                                                  / float(self.size))
            re = ((e + 1 - self.wmin).astype(np.float64) / float(self.size)) \
                - eb.astype(np.float64)
            rec, pos, idx = _expand(sb, count)
            is_first = pos == 0
            is_last = idx == covered_last[rec]
            start_part = is_first & inside_s[rec]
            end_part = is_last & inside_e[rec] & ~start_part
            ratio = np.where(start_part, rs[rec], np.where(end_part, re[rec], 1.0))
            whole = single[rec]
            f = np.where(whole, 1.0, ratio * flows[rec])
            b = np.where(whole, nb[rec], ratio * fb[rec])
            p = np.where(whole, npk[rec], ratio * fp[rec])
            self._put(idx, f, b, p)
            return
        count = np.where(single, 1, last - sb + 1)
        rec, pos, idx = _expand(sb, count)
        if scheme == "bin-uniform":
            extra = np.zeros(n, np.int64)
            extra += np.where(inside_s, 0, 1 + (self.wmin - s) // self.size)
            window_max = self.end  # only used beyond a set end time, where it is the end
            extra += np.where(inside_e, 0, 1 + (e - window_max) // self.size)
            share = 1.0 / ((last - sb + extra).astype(np.float64) + 1.0)
            whole = single & (extra == 0)
            f = np.where(whole[rec], 1.0, share[rec])
            b = np.where(whole[rec], nb[rec], nb[rec] * share[rec])
            p = np.where(whole[rec], npk[rec], npk[rec] * share[rec])
            self._put(idx, f, b, p)
        elif scheme == "maximum-volume":
            self._put(idx, np.ones(len(idx)), nb[rec], npk[rec])
        elif scheme == "minimum-volume":
            whole = single[rec]
            self._put(idx, np.ones(len(idx)), np.where(whole, nb[rec], 0.0),
                      np.where(whole, npk[rec], 0.0))
        else:
            raise FlowError(f"unknown load scheme {scheme}")

    # ------------------------------------------------------------------ results

    def rows(self, skip_zeroes=False):
        """(bin_times_ms, bin_slots, flows, bytes, packets) of the bins rwcount prints."""
        empty = (np.zeros(0, np.int64),) * 2 + (np.zeros(0),) * 3
        if self.wmin is None:  # no record read: rwcount never made its bins
            return empty
        size = self.size
        if self.origin is None:
            self.origin = self.wmin
        first = (self.origin - self.wmin) // size  # rwcount bin number of element 0
        n = len(self.flows)
        if self.start == UNSET_START:
            nz = np.flatnonzero(self.bytes > 0.0)
            if not len(nz):
                return empty
            lo = first + int(nz[0])
        else:
            lo = 0  # rwcount's bin 0 is the start time
        if self.end != UNSET_END:
            hi = (self.end - self.wmin) // size  # one past the final bin
        else:
            nz = np.flatnonzero(self.bytes > 0.0)
            hi = max(first + int(nz[-1]), lo) + 1 if len(nz) else lo + 1
        slots = np.arange(lo, hi, dtype=np.int64)
        k = slots - first
        inside = (k >= 0) & (k < n)
        kk = np.clip(k, 0, max(n - 1, 0))
        flows = np.where(inside, self.flows[kk] if n else 0.0, 0.0)
        nbytes = np.where(inside, self.bytes[kk] if n else 0.0, 0.0)
        npkts = np.where(inside, self.pkts[kk] if n else 0.0, 0.0)
        if skip_zeroes:
            keep = flows > 0
            slots, flows, nbytes, npkts = slots[keep], flows[keep], nbytes[keep], npkts[keep]
        return self.wmin + slots * size, slots, flows, nbytes, npkts


def _expand(first, count):
    """(record, position, bin) for every bin of every record, record-major."""
    count = count.astype(np.int64)
    total = int(count.sum())
    rec = np.repeat(np.arange(len(count)), count)
    starts = np.cumsum(count) - count
    pos = np.arange(total, dtype=np.int64) - np.repeat(starts, count)
    return rec, pos, first[rec] + pos


# ----------------------------------------------------------------------------- text

def fixed2(values, width=1):
    """printf("%.2f") of non-negative doubles, right-aligned: (n, w) uint8 and lengths.

    The hundredths are rounded from the exact binary value, half to even, as glibc does:
    x*100 is split into its rounded product and the exact error (Dekker), which decides
    the cases that sit next to a half. Values too large for that fall back to Python."""
    from . import text
    x = np.asarray(values, np.float64)
    n = len(x)
    if n == 0:
        return np.zeros((0, width), np.uint8), np.zeros(0, np.int64)
    big = ~(x < 2.0**44)
    k = np.zeros(n, np.uint64)
    whole_x = (x == np.floor(x)) & ~big  # counts: the common case, exact at once
    k[whole_x] = x[whole_x].astype(np.uint64) * np.uint64(100)
    part = np.flatnonzero(~whole_x & ~big)
    if len(part):
        y = x[part]
        p = y * 100.0
        c = 134217729.0 * y
        yh = c - (c - y)
        yl = y - yh
        err = (yh * 100.0 - p) + yl * 100.0  # p + err is y * 100 exactly
        k0 = np.floor(p)
        t = (p - k0) - 0.5
        up = (t > 0) | ((t == 0) & ((err > 0) | ((err == 0) & (k0 % 2 == 1))))
        k[part] = (k0 + up).astype(np.uint64)
    whole, cents = k // np.uint64(100), (k % np.uint64(100)).astype(np.intp)
    wmat, wlen = text.uint(whole)
    wmat = np.ascontiguousarray(wmat)
    w = max(width, wmat.shape[1] + 3)
    out = np.full((n, w), text.SPACE, np.uint8)
    out[:, w - 3 - wmat.shape[1]: w - 3] = wmat
    out[:, w - 3] = ord(".")
    out[:, w - 2:] = text._PAIRS[cents]
    lens = wlen + 3
    if big.any():
        for i in np.flatnonzero(big):
            s = f"{x[i]:.2f}".encode()
            if len(s) > w:
                wider = np.full((n, len(s)), text.SPACE, np.uint8)
                wider[:, len(s) - w:] = out
                out, w = wider, len(s)
            out[i] = text.SPACE
            out[i, w - len(s):] = np.frombuffer(s, np.uint8)
            lens[i] = len(s)
    return out, lens
