"""The group-by engine of pyflow-uniq and pyflow-stats (rwuniq's and rwstats' binning).

Records are grouped by a key made of fields; each group (bin) gets aggregate values (record
count, packet and byte sums, earliest start, latest end) and distinct counts (how many
different values of a field the group saw). Nothing loops over records in Python:

- Keys. ``KeySpec.components`` turns each key field into unsigned integer components (as
  SiLK keys them: times in seconds unless --bin-time has a fraction, sensor/class/type as
  their IDs, ICMP type and code 0 for non-ICMP records). An IP address is one 32-bit
  component when it is IPv4 (or an IPv6 policy makes it so) and two 64-bit ones otherwise;
  records are routed by that to a "narrow" or a "wide" table, so that mostly-IPv4 data keeps
  one-word keys. ``Layout`` packs the components into as few uint64 words as they fit,
  most significant first, so that word order is key order.
- Per batch. Keys of at most DENSE_BITS bits are counted straight into dense arrays with
  np.bincount (ports, protocols). Others are sorted: a one-word key narrow enough to carry
  the record's position in its spare low bits is sorted with plain np.sort (numpy's
  vectorised sort of uint64 is several times faster than argsort); wider keys use argsort
  or lexsort. Equal keys are then reduced with ufunc.reduceat.
- Merging. The reduced batches are sorted runs. One-word keys keep one merged run: the
  runs held, once they pass half of it, are merged among themselves (their concatenation
  reduced as a batch is) and then into it by binary search, so a merge holds little
  beyond the bins. Wider keys merge in one go once the runs held reach twice the last
  merge's result: the doubling keeps the work n log n. Record counts are never carried
  as arrays of ones: they are the distances between the starts of the keys in sorted
  order.
- Spilling. When the merged run passes half the memory budget it is written to the
  temporary directory; at the end the spilled runs are merged a chunk at a time (taking
  from every run the keys up to the smallest of their chunks' last keys).
- Distinct counts are exact: the (key, value) pairs are a second group-by with no values,
  given a small budget (PAIR_BUDGET) so that they spill early, and counted per key a
  chunk at a time at the end: their memory is per key, not per pair.
"""

import os
import tempfile

import numpy as np

from .errors import FlowError
from .heap import trim as _trim

U64 = np.uint64
DENSE_BITS = 20
DEFAULT_BUDGET = 1 << 30           # bytes of sorted runs held before spilling
CHUNK = 1 << 20                    # records gathered before a batch is reduced
MIN_HOLD = 16 << 20                # bytes of runs held before they are merged
PAIR_BUDGET = 8 << 20              # bytes of (key, value) pairs held before spilling
_MAPPED = U64(0xFFFF00000000)
_LOW32 = U64(0xFFFFFFFF)

# Key bits of the fields that are not addresses (SiLK's key widths, except that packets,
# bytes, in and out keep pyflow's wider columns exactly).
BITS = {"sPort": 16, "dPort": 16, "protocol": 8, "packets": 64, "bytes": 64, "flags": 8,
        "sTime": 32, "duration": 32, "eTime": 32, "sensor": 16, "in": 32, "out": 32,
        "initialFlags": 8, "sessionFlags": 8, "attributes": 8, "application": 16,
        "class": 8, "type": 8, "iType": 8, "iCode": 8}
MSEC_BITS = {"sTime": 64, "eTime": 64, "duration": 32}
NOT_KEYS = ("sTime+msec", "eTime+msec", "dur+msec")
TIMES = ("sTime", "duration", "eTime")


# ------------------------------------------------------------------ keys

class KeySpec:
    """How records become keys: the fields, --bin-time (ms), whether addresses are IPv4."""

    def __init__(self, fields, bin_ms=0, msec=False, v4=False):
        self.fields = list(fields)
        self.bin_ms = bin_ms
        self.msec = msec            # keys keep milliseconds (a fractional --bin-time)
        self.v4 = v4                # the IPv6 policy made every record IPv4
        self.cidr = {}              # address field name -> mask of its IPv4 key (rwstats)
        for f in self.fields:
            if f.name in NOT_KEYS or (f.kind != "ip" and f.name not in BITS):
                raise FlowError(f"invalid --fields value '{f.name}': not a key field")
        self.times = {f.name for f in self.fields if f.name in TIMES}

    def columns(self):
        cols = []
        for f in self.fields:
            for c in f.columns + (("stime", "duration") if f.name in TIMES else ()):
                if c not in cols:
                    cols.append(c)
        return cols

    def adjusted_times(self, batch):
        """(stime, duration) in ms after --bin-time moved them to bin boundaries, as
        rwuniq's adjustTimeFields does for the time fields of the key."""
        stime = batch["stime"]
        dur = batch["duration"].astype(np.int64)
        b = self.bin_ms
        t = self.times
        if b <= 1 or not (t & {"sTime", "eTime"}):
            return stime, dur
        if "sTime" in t and "eTime" not in t:
            return stime - stime % b, dur
        if "sTime" in t:                 # sTime and eTime (and maybe duration)
            mod = stime % b
            return stime - mod, dur + mod - (stime + dur) % b
        return stime - (stime + dur) % b, dur       # eTime only (maybe duration)

    def values(self, f, batch, times=None):
        """The key value of a non-address field for every record (uint64)."""
        name = f.name
        if name in TIMES:
            stime, dur = times if times is not None else self.adjusted_times(batch)
            if name == "sTime":
                v = stime if self.msec else stime // 1000
            elif name == "eTime":
                v = stime + dur if self.msec else (stime + dur) // 1000
            else:
                v = dur if self.msec else dur // 1000
            return v.astype(U64)
        return f.values(batch).astype(U64)

    def bits(self, f):
        return (MSEC_BITS if self.msec else BITS).get(f.name, BITS.get(f.name))


def ip_parts(col):
    """(narrow, hi, lo, mapped) of an address column: narrow is the IPv4 address (uint64)
    where mapped says the address is IPv4 (or ::ffff:a.b.c.d)."""
    if col.ndim == 1:
        v = col.astype(U64)
        return v, None, None, None
    hi, lo = col[:, 0], col[:, 1]
    mapped = (hi == 0) & ((lo & ~_LOW32) == _MAPPED)
    return lo & _LOW32, hi, lo, mapped


def components(spec, fields, batch, wide, times=None):
    """Key components [(uint64 array, bits)] of fields for every record of a batch; with
    wide, addresses as (hi, lo) 64-bit pairs, else as IPv4 32-bit values."""
    out = []
    for f in fields:
        if f.kind == "ip":
            narrow, hi, lo, mapped = ip_parts(f.values(batch))
            mask = spec.cidr.get(f.name)
            if mask is not None:
                narrow = narrow & U64(mask)
                if lo is not None:
                    lo = np.where(mapped, narrow | _MAPPED, lo)
            if not wide:
                out.append((narrow, 32))
            elif hi is None:
                out += [(np.zeros(len(narrow), U64), 64), (narrow | _MAPPED, 64)]
            else:
                out += [(hi, 64), (lo, 64)]
        else:
            out.append((spec.values(f, batch, times), spec.bits(f)))
    return out


def narrow_mask(fields, batch):
    """True for the records whose addresses (in fields) are all IPv4; None for all."""
    mask = None
    for f in fields:
        if f.kind != "ip":
            continue
        _, _, _, mapped = ip_parts(f.values(batch))
        if mapped is None:
            continue
        mask = mapped if mask is None else mask & mapped
    return mask


class Layout:
    """Components of given bit widths packed into uint64 words, most significant first."""

    def __init__(self, bits):
        self.bits = list(bits)
        self.words = []             # per word: list of component indexes
        used = 65
        for i, b in enumerate(self.bits):
            if used + b > 64:
                self.words.append([])
                used = 0
            self.words[-1].append(i)
            used += b
        self.total = sum(self.bits)

    @property
    def nwords(self):
        return len(self.words)

    def pack(self, comps):
        out = []
        for idx in self.words:
            w = None
            for i in idx:
                v = comps[i]
                w = v.astype(U64, copy=True) if w is None else (w << U64(self.bits[i])) | v
            out.append(w)
        return out

    def unpack(self, words, upto=None):
        """The components (only the first upto of them when given)."""
        upto = len(self.bits) if upto is None else upto
        comps = [None] * len(self.bits)
        for w, idx in zip(words, self.words, strict=True):
            shift = 0
            for i in reversed(idx):
                b = self.bits[i]
                if i < upto:
                    v = w >> U64(shift) if shift else w
                    comps[i] = v & U64((1 << b) - 1) if b < 64 and shift + b < 64 else v
                shift += b
        return comps[:upto]


# ------------------------------------------------------------------ sorted runs

class Run:
    """Sorted unique keys (uint64 word arrays) and their values (name -> array)."""

    def __init__(self, words, values):
        self.words, self.values = words, values

    def __len__(self):
        return len(self.words[0]) if self.words else 0

    def nbytes(self):
        return sum(w.nbytes for w in self.words) + sum(v.nbytes for v in self.values.values())


REDUCE = {"sum": np.add, "min": np.minimum, "max": np.maximum}


def group_order(words, stable=False):
    """A permutation sorting records by their key words (first most significant)."""
    if len(words) == 1:
        return np.argsort(words[0], kind="stable" if stable else None)
    # Most keys usually share the smallest leading word (IPv4 addresses in IPv6 form have
    # a zero high word): those sort by the remaining words alone, which is several times
    # faster than sorting every word; only the others need the full lexicographic sort.
    lead = words[0]
    same = lead == lead.min()
    if same.all():
        return group_order(words[1:], stable)
    first = np.flatnonzero(same)
    rest = np.flatnonzero(~same)
    first = first[group_order([w[first] for w in words[1:]], stable)]
    rest = rest[np.lexsort([w[rest] for w in words[::-1]])]
    return np.concatenate([first, rest])


def starts_of(sorted_words):
    """Positions where a new key starts in sorted words."""
    n = len(sorted_words[0])
    if n == 0:
        return np.zeros(0, np.intp)
    new = np.empty(n, bool)
    new[0] = True
    np.not_equal(sorted_words[0][1:], sorted_words[0][:-1], out=new[1:])
    for w in sorted_words[1:]:
        new[1:] |= w[1:] != w[:-1]
    return np.flatnonzero(new)


def reduce_sorted(words, values, ops, order=None):
    """A Run from records (words, values) in the given order (sorted when order is None):
    equal keys combined with ops (name -> 'sum', 'min' or 'max')."""
    if order is not None:
        words = [w[order] for w in words]
        values = {k: v[order] for k, v in values.items()}
    starts = starts_of(words)
    return Run([w[starts] for w in words],
               {k: REDUCE[ops[k]].reduceat(v, starts) if len(v) else v
                for k, v in values.items()})


def _sorted(words, owned, need_order):
    """(sorted words, order or None, starts of the distinct keys)."""
    n = len(words[0])
    if len(words) == 1 and not need_order:
        w = words[0]
        if owned:
            w.sort()
        else:
            w = np.sort(w)
        return [w], None, starts_of([w])
    if len(words) == 1:
        key = words[0]
        pos_bits = max(1, (n - 1).bit_length())
        if int(key.max()).bit_length() + pos_bits <= 64:
            # key and position in one word: np.sort gives the order (see module doc)
            packed = (key << U64(pos_bits)) | np.arange(n, dtype=U64)
            packed.sort()
            order = (packed & U64((1 << pos_bits) - 1)).astype(np.intp)
            packed >>= U64(pos_bits)
            return [packed], order, starts_of([packed])
    order = group_order(words)
    w = [x[order] for x in words]
    return w, order, starts_of(w)


def reduce_batch(words, values, ops, owned=False, count=None):
    """The Run of records (owned: their word arrays may be sorted in place): equal keys
    combined with ops; count names a value set to the number of records of each key."""
    n = len(words[0])
    if n == 0:
        return Run(words, dict(values, **({count: np.zeros(0, U64)} if count else {})))
    w, order, starts = _sorted(words, owned, bool(values))
    out = {}
    for k, v in values.items():
        if order is not None:
            v = v[order]
        out[k] = REDUCE[ops[k]].reduceat(v, starts)
    if count is not None:
        out[count] = np.diff(np.append(starts, n)).astype(U64)
    return Run([x[starts] for x in w], out)


def merge_runs(runs, ops):
    """One Run from several (equal keys combined). The list is emptied, so that the runs
    are freed as soon as they are copied (when nothing else holds them)."""
    live = [r for r in runs if len(r)]
    runs.clear()
    if not live:
        return None
    if len(live) == 1:
        return live[0]
    nwords = len(live[0].words)
    names = list(live[0].values)
    words = [np.concatenate([r.words[i] for r in live]) for i in range(nwords)]
    values = {k: np.concatenate([r.values[k] for r in live]) for k in names}
    del live
    return reduce_batch(words, values, ops, owned=True)


class Table:
    """A group-by over packed keys: sorted runs merged as they come, spilled to temporary
    files beyond the budget."""

    def __init__(self, nwords, ops, budget=DEFAULT_BUDGET, tempdir=None):
        self.nwords, self.ops = nwords, dict(ops)
        self.budget, self.tempdir = budget, tempdir
        self.main = None            # one-word keys: the merged run, runs merge into it
        self.runs = []              # runs not merged yet
        self.held = 0
        self.base = 0               # bytes of the last merged run
        self.spilled = []           # (directory, length, value dtypes) of runs written out
        self._tmp = None

    def add_run(self, run):
        if not len(run):
            return
        self.runs.append(run)
        self.held += run.nbytes()
        if self.nwords == 1:
            # one-word keys: the runs held, once they pass a quarter of the merged run, are
            # merged among themselves and then into it by binary search, so that a merge
            # holds little beyond the merged run and its successor (the doubling below
            # held up to 5 times the bins at its merges)
            if self.held > min(self.budget // 2, max(MIN_HOLD // 2, self.base // 2)):
                merged = merge_runs(self.runs, self.ops)
                self.held = 0
                if self.main is None and merged.nbytes() > self.budget // 4:
                    self._spill(merged)        # a small budget: no merged run is kept
                    _trim()
                    return
                self.main = _insert(self.main, merged, self.ops)
                self.base = self.main.nbytes()
                if self.base > self.budget // 2:
                    self._spill()
                    _trim()
            return
        # runs are merged all at once (one sort of their concatenation beats pairwise
        # merges in numpy) when they hold twice the last merge's result (so the work stays
        # n log n and memory about 3x the bins), and spilled once a merge passes half the
        # budget (a merge holds its input and its output: the peak stays near the budget)
        if self.held > min(self.budget, max(MIN_HOLD, 2 * self.base)):
            merged = merge_runs(self.runs, self.ops)
            self.runs, self.held = [merged], merged.nbytes()
            self.base = self.held
            if self.held > self.budget // 2:
                self._spill()

    def _merged(self):
        """Everything held as one Run (or None); the table holds nothing after."""
        run = merge_runs(self.runs, self.ops)
        if self.main is not None:
            run = _insert(self.main, run, self.ops) if run is not None else self.main
        self.main, self.runs, self.held, self.base = None, [], 0, 0
        return run

    def add(self, words, values):
        self.add_run(reduce_batch(words, values, self.ops))

    def _spill(self, run=None):
        """Write a run (by default everything held, merged) to the temporary directory."""
        if run is None:
            run = self._merged()
        if self._tmp is None:
            try:
                self._tmp = tempfile.mkdtemp(prefix="pyflow-uniq.", dir=self.tempdir)
            except OSError as exc:
                raise FlowError(f"cannot create a temporary file in "
                                f"{self.tempdir or tempfile.gettempdir()}: "
                                f"{exc.strerror}") from None
        path = os.path.join(self._tmp, f"run{len(self.spilled)}")
        os.mkdir(path)
        try:
            for i, w in enumerate(run.words):
                w.tofile(os.path.join(path, f"w{i}"))
            for k, v in run.values.items():
                v.tofile(os.path.join(path, f"v_{k}"))
        except OSError as exc:
            raise FlowError(f"cannot write a temporary file in {self._tmp}: "
                            f"{exc.strerror}") from None
        self.spilled.append((path, len(run), {k: v.dtype for k, v in run.values.items()}))

    def _load(self, spilled):
        path, n, dtypes = spilled
        words = [_Spilled(os.path.join(path, f"w{i}"), U64, n) for i in range(self.nwords)]
        values = {k: _Spilled(os.path.join(path, f"v_{k}"), dt, n) for k, dt in dtypes.items()}
        return Run(words, values)

    def chunks(self, chunk=None):
        """The merged result as Runs in key order (consumes the table). Spilled runs are
        merged chunk entries from each at a time (by default as many as keep a merge
        within the budget)."""
        run = self._merged()
        if not self.spilled:
            if run is not None:
                yield run
            return
        sources = [self._load(p) for p in self.spilled] + ([run] if run is not None else [])
        if chunk is None:
            entry = 8 * (self.nwords + len(self.ops))
            chunk = max(1 << 16, min(CHUNK, self.budget // (2 * entry * len(sources))))
        pos = [0] * len(sources)
        try:
            while True:
                live = [i for i, s in enumerate(sources) if pos[i] < len(s)]
                if not live:
                    return
                # the smallest last key of the next chunk of every source bounds what
                # every source can give now
                ends = [min(pos[i] + chunk, len(sources[i])) - 1 for i in live]
                bound = min((tuple(int(w[e]) for w in sources[i].words), i)
                            for i, e in zip(live, ends, strict=True))[0]
                parts = []
                for i in live:
                    s = sources[i]
                    hi = _upper(s.words, pos[i], min(pos[i] + chunk, len(s)), bound)
                    if hi > pos[i]:
                        parts.append(Run([np.asarray(w[pos[i]:hi]) for w in s.words],
                                         {k: np.asarray(v[pos[i]:hi])
                                          for k, v in s.values.items()}))
                    pos[i] = hi
                yield merge_runs(parts, self.ops)
        finally:
            self.close()

    def result(self):
        """The whole merged result as one Run (or None when empty)."""
        return merge_runs(list(self.chunks()), self.ops) if self.spilled else self._merged()

    def close(self):
        import shutil
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        self.spilled = []


class _Spilled:
    """A column of a spilled run, read a slice at a time (read, not mapped: the pages of a
    mapping would count in the process's memory until it is closed)."""

    def __init__(self, path, dtype, n):
        self.path, self.dtype, self.n = path, np.dtype(dtype), n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not isinstance(i, slice):
            return self[i:i + 1][0]
        lo, hi, _ = i.indices(self.n)
        return np.fromfile(self.path, self.dtype, max(hi - lo, 0),
                           offset=lo * self.dtype.itemsize)


def _insert(main, run, ops):
    """Run `run` merged into the one-word Run `main` (either may be None): values of keys
    in both combined in place, new keys placed by binary search."""
    if main is None or run is None:
        return run if main is None else main
    b, d = main.words[0], run.words[0]
    at = np.searchsorted(b, d)
    hit = at < len(b)
    hit[hit] = b[at[hit]] == d[hit]
    old = at[hit]
    for k, v in main.values.items():
        v[old] = REDUCE[ops[k]](v[old], run.values[k][hit])
    new = np.flatnonzero(~hit)
    if not len(new):
        return main
    place = np.zeros(len(b) + len(new), bool)
    place[at[new] + np.arange(len(new))] = True
    keep = ~place

    def merged(x, y):
        out = np.empty(len(place), x.dtype)
        out[keep] = x
        out[place] = y[new]
        return out
    words = [merged(b, d)]
    del b
    return Run(words, {k: merged(main.values[k], run.values[k]) for k in main.values})


def _upper(words, lo, hi, bound):
    """The end of the entries in [lo, hi) whose key is <= bound (keys sorted)."""
    first = np.asarray(words[0][lo:hi])
    end = lo + int(np.searchsorted(first, U64(bound[0]), side="right"))
    if len(words) == 1:
        return end
    start = lo + int(np.searchsorted(first, U64(bound[0]), side="left"))
    # ties in the first word: compare the rest one entry at a time (few entries)
    k = start
    while k < end and tuple(int(w[k]) for w in words) <= bound:
        k += 1
    return k


# ------------------------------------------------------------------ the group-by

class GroupBy:
    """Bins records by spec's key; values is a list of names among records, packets,
    bytes, stime_min, etime_max; distinct a list of Fields whose distinct values are
    counted per bin (and over all records, for rwstats' percentages)."""

    VALUE_OPS = {"records": "sum", "packets": "sum", "bytes": "sum", "stime_min": "min",
                 "etime_max": "max"}

    def __init__(self, spec, values=("records",), distinct=(), budget=DEFAULT_BUDGET,
                 tempdir=None, total_distinct=False):
        self.spec = spec
        self.values = list(values)
        self.distinct = list(distinct)
        self.ops = {v: self.VALUE_OPS[v] for v in self.values}
        self.total_distinct = total_distinct
        self.budget, self.tempdir = budget, tempdir
        self.tables = {}            # (what, wide) -> (Layout, Table)
        self.bits = {}              # (what, wide) -> component bits
        self.dense = None
        self.records = 0
        self.pending, self.npending = [], 0
        key_bits = [] if spec.v4 else None
        if spec.v4 or not any(f.kind == "ip" for f in spec.fields):
            key_bits = [b for _, b in components(spec, spec.fields, _probe(spec), False)]
        self.dense_bits = sum(key_bits) if key_bits is not None and \
            sum(key_bits) <= DENSE_BITS else None

    def columns(self):
        cols = self.spec.columns()
        for f in self.distinct:
            for c in f.columns + (("stime", "duration") if f.name in TIMES else ()):
                if c not in cols:
                    cols.append(c)
        for c, v in (("packets", "packets"), ("bytes", "bytes"), ("stime", "stime_min"),
                     ("duration", "etime_max"), ("stime", "etime_max")):
            if v in self.values and c not in cols:
                cols.append(c)
        return cols or ["stime"]

    def add(self, batch):
        """Records to bin (gathered into chunks of CHUNK records before reducing)."""
        n = _length(batch)
        if not n:
            return
        self.pending.append(batch)
        self.npending += n
        if self.npending >= CHUNK:
            self.flush()

    def flush(self):
        if not self.pending:
            return
        batches, self.pending, self.npending = self.pending, [], 0
        self.absorb(self.reduce_batches(batches))

    def reduce_batches(self, batches):
        """The Partial of several batches of records.

        A batch holding IPv6 records has every address in the (hi, lo) form; its IPv4
        records (the ipv6 flag clear: their addresses are ::ffff:a.b.c.d) are taken out
        first with 32-bit addresses, and reduced apart from the IPv6 ones, so that the key
        work on most records is on narrow columns (pyflow-stats by sIP: ip_parts had been
        a sixth of the workers' time on the bench archive, 2% IPv6 records)."""
        from .schema import split_families
        narrow, wide = [], []
        for b in batches:
            if _length(b):
                for part in split_families(b):
                    (wide if "ipv6" in part else narrow).append(part)
        parts = [self.reduce(_concat(g) if len(g) > 1 else g[0]) for g in (narrow, wide) if g]
        if len(parts) == 1:
            return parts[0]
        return self.combine(parts)

    # A Partial is a plain dict, cheap to send between processes: the record count,
    # reduced Runs per table and the dense counters. reduce() makes one from records,
    # combine() merges several, absorb() adds one to this group-by's tables.

    def reduce(self, batch):
        """The Partial of a batch of records."""
        part = {"records": _length(batch), "runs": {}, "dense": None}
        if not part["records"]:
            return part
        times = self.spec.adjusted_times(batch) if self._needs_times() else None
        vals = self._value_columns(batch, times)
        key_fields = self.spec.fields
        mask = None if self.spec.v4 else narrow_mask(key_fields, batch)
        self._split(part, "key", key_fields, batch, times, vals, mask)
        for f in self.distinct:
            fields = key_fields + [f]
            m = None if self.spec.v4 else narrow_mask(fields, batch)
            self._split(part, ("pairs", f.name), fields, batch, times, {}, m)
            if self.total_distinct:
                self._split(part, ("all", f.name), [f], batch, times, {},
                            None if self.spec.v4 else narrow_mask([f], batch))
        return part

    def combine(self, parts):
        """One Partial from several."""
        out = {"records": 0, "runs": {}, "dense": None}
        grouped = {}
        for p in parts:
            out["records"] += p["records"]
            for k, run in p["runs"].items():
                grouped.setdefault(k, []).append(run)
            if p["dense"] is not None:
                out["dense"] = p["dense"] if out["dense"] is None else \
                    self._dense_merge(out["dense"], p["dense"])
        for k, runs in grouped.items():
            out["runs"][k] = merge_runs(runs, self.ops if k[0] == "key" else {})
        return out

    def absorb(self, part):
        self.records += part["records"]
        for (what, wide), run in part["runs"].items():
            if run is not None:
                self._table(what, wide)[1].add_run(run)
        if part["dense"] is not None:
            self.dense = part["dense"] if self.dense is None else \
                self._dense_merge(self.dense, part["dense"])

    def _needs_times(self):
        return bool(self.spec.times or any(f.name in TIMES for f in self.distinct)
                    or "stime_min" in self.values or "etime_max" in self.values)

    def _value_columns(self, batch, times):
        out = {}
        for v in self.values:
            if v == "records":
                continue
            if v in ("packets", "bytes"):
                out[v] = batch[v].astype(U64, copy=False)
            elif v == "stime_min":
                s = times[0] if times is not None else batch["stime"]
                out[v] = (s if self.spec.msec else s // 1000).astype(U64)
            else:
                s, d = times if times is not None else (batch["stime"], batch["duration"])
                e = s + d.astype(np.int64)
                out[v] = (e if self.spec.msec else e // 1000).astype(U64)
        return out

    def _split(self, part, what, fields, batch, times, vals, mask):
        """Reduce the records whose addresses are IPv4 (mask) with narrow keys and the
        others with wide ones; keys are made for the whole batch and the rows picked
        from them (cheaper than splitting the batch's columns)."""
        if mask is None or mask.all():
            self._reduce(part, what, fields, batch, times, vals, False)
        elif not mask.any():
            self._reduce(part, what, fields, batch, times, vals, True)
        else:
            for m, wide in ((mask, False), (~mask, True)):
                self._reduce(part, what, fields, batch, times, vals, wide,
                             np.flatnonzero(m))

    def _reduce(self, part, what, fields, batch, times, vals, wide, rows=None):
        comps = components(self.spec, fields, batch, wide, times)
        if what == "key" and self.dense_bits is not None:
            part["dense"] = self._dense(comps, vals)
            return
        self.bits[(what, wide)] = [b for _, b in comps]
        layout = Layout(self.bits[(what, wide)])
        words = layout.pack([c for c, _ in comps])
        if rows is not None:
            words = [w[rows] for w in words]
            vals = {k: v[rows] for k, v in vals.items()}
        count = "records" if what == "key" and "records" in self.ops else None
        part["runs"][(what, wide)] = reduce_batch(words, vals,
                                                  self.ops if what == "key" else {},
                                                  owned=True, count=count)

    def _table(self, what, wide):
        key = (what, wide)
        if key not in self.tables:
            layout = Layout(self._bits(what, wide))
            # pairs are only counted at the end, a chunk at a time: they spill early, so
            # that distinct counts cost memory per key rather than per pair
            ops, budget = (self.ops, self.budget) if what == "key" else \
                ({}, min(self.budget, PAIR_BUDGET))
            self.tables[key] = (layout, Table(layout.nwords, ops, budget, self.tempdir))
        return self.tables[key]

    def _bits(self, what, wide):
        if (what, wide) not in self.bits:
            fields = self.spec.fields if what == "key" else \
                ([] if what[0] == "all" else self.spec.fields) + \
                [f for f in self.distinct if f.name == what[1]]
            probe = _probe(self.spec)
            self.bits[(what, wide)] = [b for _, b in components(self.spec, fields, probe,
                                                                 wide)]
        return self.bits[(what, wide)]

    def _dense(self, comps, vals):
        layout = Layout([b for _, b in comps])
        key = layout.pack([c for c, _ in comps])[0].astype(np.intp)
        size = 1 << self.dense_bits
        d = {"_seen": np.bincount(key, minlength=size)}
        for v, op in self.ops.items():
            if v == "records":
                d[v] = d["_seen"].astype(U64)
            elif op == "sum":
                col = vals[v]
                if len(col) and float(col.max()) * len(col) < 2.0 ** 53:
                    d[v] = np.bincount(key, weights=col, minlength=size).astype(U64)
                else:
                    d[v] = np.zeros(size, U64)
                    np.add.at(d[v], key, col)
            else:
                d[v] = np.full(size, np.iinfo(np.uint64).max if op == "min" else 0, U64)
                REDUCE[op].at(d[v], key, vals[v])
        return d

    def _dense_merge(self, a, b):
        out = {"_seen": a["_seen"] + b["_seen"]}
        for v, op in self.ops.items():
            out[v] = REDUCE[op](a[v], b[v])
        return out

    # -------------------------------------------------------------- results

    def finish(self):
        """The bins in key order: (key components per field, values, distinct counts,
        wide, totals) where totals maps a distinct field name to its count over all
        records (when total_distinct)."""
        self.flush()
        key_fields = self.spec.fields
        if self.dense is not None:
            present = np.flatnonzero(self.dense["_seen"])
            layout = Layout([b for _, b in components(self.spec, key_fields, _probe(self.spec),
                                                      False)])
            words = [present.astype(U64)]
            run = Run(words, {v: self.dense[v][present] for v in self.ops})
            narrow, wide = (layout, run), None
        else:
            narrow = self._result("key", False)
            wide = self._result("key", True)
        is_wide = wide is not None
        _trim()
        for f in self.distinct:
            self._attach_counts(f, narrow, wide)
            _trim()
        parts = [narrow, wide]
        del narrow, wide
        keys, values = self._combine(key_fields, parts)
        _trim()
        n = len(keys[0]) if keys else 0
        counts = {f.name: values.pop("distinct:" + f.name, np.zeros(n, U64))
                  for f in self.distinct}
        totals = {}
        for f in self.distinct if self.total_distinct else ():
            # an IPv4 value is never also a wide one: the two tables add up
            totals[f.name] = sum(len(run) for wide in (False, True)
                                 for _, run in self._chunks(("all", f.name), wide))
        return keys, values, counts, is_wide, totals

    def _attach_counts(self, f, narrow, wide):
        """Count the (key, value) pairs of f per key, as a value of the key tables' runs.

        Pairs are counted per key in each pair table, and the counts added to the bins
        they belong to (found by binary search), never widening the pairs themselves."""
        name = "distinct:" + f.name
        for part in (narrow, wide):
            if part is not None:
                part[1].values[name] = np.zeros(len(part[1]), U64)
        for pwide in (False, True):
            for layout, run in self._chunks(("pairs", f.name), pwide):
                self._count_pairs(f, layout, run, pwide, narrow, wide)

    def _count_pairs(self, f, layout, run, pwide, narrow, wide):
        """Add the pairs of a chunk of a pair table to the distinct counts of their keys
        (a key whose pairs span chunks gets each chunk's share)."""
        name = "distinct:" + f.name
        kf = self.spec.fields
        nf = 2 if f.kind == "ip" and pwide else 1
        total = len(run)
        kcomps = layout.unpack(run.words, len(layout.bits) - nf)
        del run
        starts = starts_of(kcomps) if kcomps else np.zeros(1, np.intp)
        cnt = np.diff(np.append(starts, total)).astype(U64)
        kcomps = [c[starts] for c in kcomps]
        if not pwide or self.spec.v4 or not any(x.kind == "ip" for x in kf):
            groups = [(None, kcomps, False)]
        else:
            mapped = np.ones(len(cnt), bool)
            i = 0
            for x in kf:
                if x.kind == "ip":
                    mapped &= (kcomps[i] == 0) & ((kcomps[i + 1] & ~_LOW32) == _MAPPED)
                    i += 2
                else:
                    i += 1
            groups = [(mapped, _narrow(kf, [c[mapped] for c in kcomps]), False),
                      (~mapped, [c[~mapped] for c in kcomps], True)]
        for sel, kc, to_wide in groups:
            c = cnt if sel is None else cnt[sel]
            target = wide if to_wide else narrow
            if not len(c) or target is None:
                continue
            tl, tr = target
            words = tl.pack(kc) if kc else [np.zeros(len(c), U64)]
            tr.values[name][_find(tr.words, words)] += c

    def _chunks(self, what, wide):
        """(layout, Run) chunks of a table's merged result, in key order."""
        hit = self.tables.get((what, wide))
        if hit is None:
            return
        layout, table = hit
        try:
            for run in table.chunks():
                yield layout, run
        finally:
            table.close()

    def _result(self, what, wide):
        hit = self.tables.get((what, wide))
        if hit is None:
            return None
        layout, table = hit
        run = table.result()
        table.close()
        return None if run is None else (layout, run)

    def _combine(self, fields, pair, force_wide=False):
        """Per-component key arrays (wide form if either part is wide) and values, in
        key order, from the [narrow, wide] results (emptied: their arrays are freed as
        they are copied)."""
        narrow, wide = pair
        pair.clear()
        if narrow is not None and wide is not None and fields[0].kind == "ip":
            wl, wrun = wide
            wc = wl.unpack(wrun.words)
            if not ((wc[0] == 0) & ((wc[1] & ~_LOW32) == _MAPPED)).any():
                return _interleave(fields, narrow, wc, wrun.values)
            del wl, wrun, wc
        parts = []
        ops = None
        for part, is_wide in ((narrow, False), (wide, True)):
            if part is None:
                continue
            layout, run = part
            comps = layout.unpack(run.words)
            if not is_wide and (wide is not None or force_wide):
                comps = _widen(fields, comps)
            parts.append((comps, run.values))
            ops = run.values
        if not parts:
            wide_ips = wide is not None or force_wide
            nk = sum(2 if f.kind == "ip" and wide_ips else 1 for f in fields)
            names = self.ops if fields is self.spec.fields else {}
            return [np.zeros(0, U64) for _ in range(nk)], {v: np.zeros(0, U64) for v in names}
        if len(parts) == 1:
            return parts[0]
        comps = [np.concatenate([p[0][i] for p in parts]) for i in range(len(parts[0][0]))]
        vals = {k: np.concatenate([p[1][k] for p in parts]) for k in ops}
        order = np.lexsort(comps[::-1])
        # narrow and wide keys never coincide: a wide key has a non-IPv4 address
        return [c[order] for c in comps], {k: v[order] for k, v in vals.items()}


def _interleave(fields, narrow, wc, wv):
    """_combine when the first key field is an address and no wide key is IPv4: the
    narrow keys (::ffff:0:0/96 in the wide form) sit as one block between the wide keys
    below and above that range, so the result is three slices, no sort. The narrow
    run's arrays are freed as they are copied (they are most of the bins)."""
    layout, run = narrow
    del narrow
    cut = int(np.count_nonzero((wc[0] == 0) & (wc[1] < _MAPPED)))
    n, m = len(run), len(wc[0])
    nc = layout.unpack(run.words)
    run.words.clear()
    comps, i = [], 0
    for f in fields:
        for j in range(2 if f.kind == "ip" else 1):
            out = np.empty(n + m, U64)
            out[:cut], out[cut + n:] = wc[i][:cut], wc[i][cut:]
            mid = out[cut: cut + n]
            if f.kind != "ip":
                mid[:] = nc[0]
            elif j == 0:
                mid[:] = 0
            else:
                np.bitwise_or(nc[0], _MAPPED, out=mid)
            if f.kind != "ip" or j == 1:
                nc.pop(0)
            comps.append(out)
            i += 1
    values = {}
    for k in list(run.values):
        v = run.values.pop(k)
        out = np.empty(n + m, np.result_type(v, wv[k]))
        out[:cut], out[cut: cut + n], out[cut + n:] = wv[k][:cut], v, wv[k][cut:]
        values[k] = out
    return comps, values


def _narrow(fields, comps):
    """Wide components whose addresses are all IPv4 in the narrow form."""
    out, i = [], 0
    for f in fields:
        if f.kind == "ip":
            out.append(comps[i + 1] & _LOW32)
            i += 2
        else:
            out.append(comps[i])
            i += 1
    return out


def _find(words, keys):
    """Positions of keys (present, as packed words) among sorted unique words."""
    if len(words) == 1:
        return np.searchsorted(words[0], keys[0])
    dt = [(f"w{i}", U64) for i in range(len(words))]
    hay, needles = np.empty(len(words[0]), dt), np.empty(len(keys[0]), dt)
    for i in range(len(words)):
        hay[f"w{i}"], needles[f"w{i}"] = words[i], keys[i]
    return np.searchsorted(hay, needles)


def _widen(fields, comps):
    """Narrow components (IPv4 addresses as 32 bits) in the wide form (hi, lo)."""
    out, i = [], 0
    for f in fields:
        if f.kind == "ip":
            v = comps[i]
            out += [np.zeros(len(v), U64), v | _MAPPED]
        else:
            out.append(comps[i])
        i += 1
    return out


def _length(batch):
    return len(next(iter(batch.values()))) if batch else 0


def _concat(batches):
    """One batch from several holding any columns (IPv4 ones widened when mixed)."""
    from .schema import IP_COLUMNS, v4_to_v6
    if any("ipv6" in b for b in batches):
        wide = []
        for b in batches:
            if "ipv6" not in b:
                n = len(next(iter(b.values())))
                b = {k: (v4_to_v6(v) if k in IP_COLUMNS else v) for k, v in b.items()}
                b["ipv6"] = np.zeros(n, bool)
            wide.append(b)
        batches = wide
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def _probe(spec):
    """A one-record batch with every column, to learn component widths."""
    from .schema import make_batch
    return make_batch(1)
