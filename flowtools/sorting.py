"""Sorting flow records by fields, in memory and beyond it (rwsort's engine).

``order(batch, fields, reverse)`` is a stable permutation: ascending by the fields in turn
(descending with ``reverse``), records with equal keys in their input order either way. The
fields' values become unsigned "components" of as few bits as the batch needs (a column
minus its minimum; IP addresses of an IPv6 batch compacted, see ``_ip_component``), which
are packed with each record's position into uint64 words and sorted with plain np.sort:
numpy's vectorised quicksort of uint64 is ~10x faster than a stable argsort or lexsort, and
the position in the low bits makes every word unique, hence the sort stable. Keys wider
than one word take one such pass per word, least significant first (an LSD radix sort).

``merge(sources, ...)`` merges sorted batch streams a block at a time with no per-record
Python, and ``ExternalSorter`` sorts any number of records in bounded memory: blocks are
sorted as they arrive, merged into temporary run files (pyflow flow files) when the buffer
is full, and the runs merged at the end.
"""

import os
import shutil
import tempfile

import numpy as np

from . import schema
from .errors import FlowError

_SIGN = np.uint64(1 << 63)
_LOW32 = np.uint64(0xFFFFFFFF)


# ------------------------------------------------------------------ keys and order

def _unsigned(v):
    """An order-preserving unsigned view of an integer column (signed: sign bit flipped)."""
    if v.dtype.kind == "b":
        return v.view(np.uint8)
    if v.dtype.kind == "i":
        return v.astype(np.int64).view(np.uint64) ^ _SIGN
    return v


def _component(v, reverse):
    """(v - min, bits), or (max - v, bits) reversed, as unsigned values; None for a
    constant column."""
    if not len(v):
        return None
    if v.dtype.kind == "b":
        v = v.view(np.uint8)
    lo, hi = int(v.min()), int(v.max())
    span = hi - lo
    if span == 0:
        return None
    if v.dtype.kind == "i":
        if span >= 1 << 63:
            return _component(_unsigned(v), reverse)
        # the difference fits in int64 whatever the signs: no need to flip the sign bit
        v = v.astype(np.int64, copy=False)
        u = np.int64(hi) - v if reverse else v - np.int64(lo)
        return u.view(np.uint64), span.bit_length()
    if reverse:
        return v.dtype.type(hi) - v, span.bit_length()
    return (v - v.dtype.type(lo) if lo else v), span.bit_length()


def _ip_component(col, reverse):
    """Components of a 128-bit address column ((n, 2) uint64: high, low halves).

    Mostly IPv4 records (held as ::ffff:a.b.c.d) with a few IPv6 ones is the usual IPv6
    batch, and 128-bit keys would triple the sort's passes. So the addresses other than
    IPv4-mapped ones are ranked among themselves (a small sort) and the key becomes: rank
    for those below ::ffff:0:0/96, then the IPv4 address, then rank for those above it;
    the order of the addresses is kept, and equal addresses keep equal keys."""
    hi, lo = col[:, 0], col[:, 1]
    if not len(hi) or hi.min() == hi.max():
        return [c for c in (_component(lo, reverse),) if c]
    mapped = (hi == 0) & ((lo >> np.uint64(32)) == np.uint64(0xFFFF))
    others = np.flatnonzero(~mapped)
    if len(others) * 4 > len(hi):
        return [c for c in (_component(hi, reverse), _component(lo, reverse)) if c]
    ohi, olo = hi[others], lo[others]
    by = _order_components([c for c in (_component(ohi, False), _component(olo, False)) if c],
                           len(others))
    shi, slo = ohi[by], olo[by]
    new = np.empty(len(by), bool)
    new[:1] = True
    new[1:] = (shi[1:] != shi[:-1]) | (slo[1:] != slo[:-1])
    rank = np.empty(len(by), np.uint64)
    rank[by] = np.cumsum(new, dtype=np.uint64) - np.uint64(1)
    below = (ohi == 0) & (olo < schema.V4_MAPPED_LO)
    nbelow = int(rank[below].max()) + 1 if below.any() else 0
    v4 = lo[mapped] & _LOW32
    vmin = int(v4.min()) if len(v4) else 0
    width = int(v4.max()) - vmin + 1 if len(v4) else 0
    key = np.empty(len(hi), np.uint64)
    key[mapped] = (v4 - np.uint64(vmin)) + np.uint64(nbelow)
    key[others] = np.where(below, rank, rank + np.uint64(width))
    return [c for c in (_component(key, reverse),) if c]


def sort_key_columns(batch, fields, reverse=False):
    """The sort key of every record as unsigned components, most significant first.

    Each component is (array, bits): values below 2**bits whose lexicographic order over
    the components is the sort order (already turned around when reverse)."""
    comps = []
    for f in fields:
        v = f.values(batch)
        if v.ndim == 2:
            comps.extend(_ip_component(v, reverse))
        else:
            c = _component(v, reverse)
            if c:
                comps.append(c)
    return comps


def _digits(comps, width):
    """The components' concatenated bits cut into uint64 digits of at most `width` bits,
    least significant first."""
    out, acc, filled = [], None, 0
    for arr, bits in reversed(comps):
        a = arr.astype(np.uint64, copy=False)
        off = 0
        while off < bits:
            take = min(width - filled, bits - off)
            part = a >> np.uint64(off) if off else a
            if off + take < bits:
                part = part & np.uint64((1 << take) - 1)
            acc = part if acc is None else acc | (part << np.uint64(filled))
            filled += take
            off += take
            if filled == width:
                out.append(acc)
                acc, filled = None, 0
    if acc is not None:
        out.append(acc)
    return out


def _order_components(comps, n):
    """A stable ascending permutation by the components (see the module docstring)."""
    if not comps or n < 2:
        return np.arange(n, dtype=np.intp)
    pos_bits = (n - 1).bit_length()
    shift = np.uint64(pos_bits)
    mask = np.uint64((1 << pos_bits) - 1)
    positions = np.arange(n, dtype=np.uint64)
    perm = None
    for digit in _digits(comps, 64 - pos_bits):
        word = (digit if perm is None else digit[perm]) << shift
        word |= positions
        word.sort()
        word &= mask
        at = word.astype(np.intp)
        perm = at if perm is None else perm[at]
    return perm


def order(batch, fields, reverse=False):
    """A stable permutation ordering a batch by fields (first field most significant);
    with reverse, descending, equal keys still in their input order (as rwsort)."""
    return _order_components(sort_key_columns(batch, fields, reverse), schema.nrecords(batch))


def sort_batch(batch, fields, reverse=False):
    return schema.take(batch, order(batch, fields, reverse))


# ------------------------------------------------------------------ merging

def _comparable_keys(batch, fields, reverse):
    """Key columns comparable across batches (IPv4 and IPv6 ones alike): uint64 arrays,
    most significant first, addresses as their 128-bit IPv6 form; reversed by bitwise
    not, so that a plain lexicographic comparison is the sort order."""
    out = []
    for f in fields:
        v = f.values(batch)
        if f.kind == "ip" and v.ndim == 1:
            parts = [np.zeros(len(v), np.uint64), v.astype(np.uint64) | schema.V4_MAPPED_LO]
        elif v.ndim == 2:
            parts = [v[:, 0], v[:, 1]]
        else:
            parts = [_unsigned(v).astype(np.uint64)]
        out.extend(~p if reverse else p for p in parts)
    return out


class _Source:
    """One sorted input of a merge: a window of its next records and their keys."""

    def __init__(self, batches, fields, reverse):
        self.it = iter(batches)
        self.fields, self.reverse = fields, reverse
        self.buf, self.pos, self.end = None, 0, 0
        self.more = True            # the iterator may have more batches
        self.keys, self.kfrom, self.kto = None, 0, 0
        self.win = None             # (pos, width, keys, first key, last key)

    def remaining(self):
        return self.end - self.pos

    def fill(self, want):
        """Make at least `want` records available, unless the source runs out."""
        if self.end - self.pos >= want or not self.more:
            return
        parts = [schema.take(self.buf, slice(self.pos, self.end))] if self.end > self.pos \
            else []
        have = self.end - self.pos
        while have < want:
            b = next(self.it, None)
            if b is None:
                self.more = False
                self.it = iter(())      # let go of the source's batches
                break
            if schema.nrecords(b):
                parts.append(b)
                have += schema.nrecords(b)
        self.buf = schema.concat(parts) if parts else None
        self.pos, self.end = 0, have
        self.keys = self.win = None

    def window_keys(self, width):
        """Comparable keys of records pos..pos+width; computed for twice the window at a
        time, so that a source the merge advances little is not keyed over again."""
        if self.keys is None or self.pos + width > self.kto:
            self.kfrom, self.kto = self.pos, min(self.end, self.pos + 2 * width)
            part = schema.take(self.buf, slice(self.kfrom, self.kto))
            self.keys = _comparable_keys(part, self.fields, self.reverse)
        a = self.pos - self.kfrom
        return [k[a: a + width] for k in self.keys]

    def window(self, width):
        """(keys, first key, last key) of the window of `width` records."""
        if self.win is None or self.win[:2] != (self.pos, width):
            keys = self.window_keys(width)
            self.win = (self.pos, width, keys, _at(keys, 0), _at(keys, width - 1))
        return self.win[2:]

    def take(self, count):
        out = schema.take(self.buf, slice(self.pos, self.pos + count))
        self.pos += count
        return out

    def drain(self):
        if self.end > self.pos:
            yield self.take(self.end - self.pos)
        self.buf = self.keys = None
        for b in self.it:
            if schema.nrecords(b):
                yield b


def _at(keys, i):
    return tuple(int(k[i]) for k in keys)


def _count_upto(window, width, bound, inclusive):
    """How many of a sorted window's records come before the bound: keys < bound, or
    <= bound when inclusive (a source ahead of the bound's own in input order)."""
    keys, first, last = window
    if first > bound or (first == bound and not inclusive):
        return 0
    if last < bound or (last == bound and inclusive):
        return width
    # A binary search one key column at a time, within the records equal so far.
    lo, hi = 0, width
    for k, b in zip(keys, bound, strict=True):
        seg = k[lo:hi]
        b = np.uint64(b)  # a Python int would be compared as a float
        lo, hi = lo + int(seg.searchsorted(b, "left")), lo + int(seg.searchsorted(b, "right"))
        if lo == hi:
            break
    return hi if inclusive else lo


def merge_parts(parts, fields, reverse=False):
    """One sorted batch from sorted batches, equal keys in the parts' order. Only the key
    columns are concatenated to be ordered; each column is then concatenated and gathered
    in one go (addresses as 16-byte items, as in schema.take)."""
    if len(parts) == 1:
        return parts[0]
    if any(schema.is_v6(p) for p in parts):
        parts = [schema.to_v6(p) for p in parts]
    n = sum(schema.nrecords(p) for p in parts)
    keyed = {c: np.concatenate([p[c] for p in parts]) for c in _key_columns(fields)}
    perm = _order_components(sort_key_columns(keyed, fields, reverse), n)
    if (perm[1:] > perm[:-1]).all():
        return schema.concat(parts)     # already in order (disjoint ranges of keys)
    out = {}
    for name, col in parts[0].items():
        if col.ndim == 2:
            whole = np.concatenate([np.ascontiguousarray(p[name]).view(np.complex128)
                                    for p in parts])
            out[name] = whole[perm].view(np.uint64).reshape(-1, 2)
        else:
            out[name] = np.concatenate([p[name] for p in parts])[perm]
    return out


def _key_columns(fields):
    need = []
    for f in fields:
        need.extend(c for c in f.columns if c not in need)
    return need


MERGE_STEP = 1 << 16


def merge(sources, fields, reverse=False, step=MERGE_STEP):
    """Sorted batches from sorted sources (iterables of batches), stable across them: of
    equal keys, those of an earlier source come first.

    Each step looks at a window of every source and finds the bound: the smallest, by key
    and then source, of the windows' last records among sources that have more to come.
    Everything up to the bound, from every window, can go out now; the selected slices are
    concatenated and ordered together (a small sort), and the windows move on. The source
    that set the bound is consumed whole, so every step makes progress."""
    live = [_Source(s, fields, reverse) for s in sources]
    del sources     # a source's records are freed as soon as they are merged
    while True:
        base = max(256, step // max(1, len(live)))
        for s in live:
            s.fill(base)
        live = [s for s in live if s.remaining()]
        if len(live) <= 1:
            if live:
                yield from live[0].drain()
            return
        counts = _plan(live, base)
        parts = [s.take(c) for s, c in zip(live, counts, strict=True) if c]
        yield merge_parts(parts, fields, reverse)


def _plan(live, base):
    """How many records of each source go out in this step.

    Windows of equal record counts can cover very different ranges of keys (a busy hour's
    records against a quiet one's), and the narrowest would hold the bound down, so each
    window that ends before the median window end is first grown (up to 8 times the base)
    until it reaches it."""
    widths = [min(base, s.remaining()) for s in live]
    ends = [s.window(w)[2] for s, w in zip(live, widths, strict=True)]
    ahead = [i for i, (s, w) in enumerate(zip(live, widths, strict=True))
             if s.more or s.remaining() > w]
    if not ahead:
        return widths
    target = sorted(ends[i] for i in ahead)[len(ahead) // 2]
    for i in ahead:
        s = live[i]
        while ends[i] < target and widths[i] < 8 * base:
            s.fill(2 * widths[i])
            grown = min(2 * widths[i], s.remaining())
            if grown == widths[i]:
                break
            widths[i] = grown
            ends[i] = s.window(grown)[2]
    ahead = [i for i in ahead if live[i].more or live[i].remaining() > widths[i]]
    if not ahead:
        return widths
    bound, r = min((ends[i], i) for i in ahead)
    return [_count_upto(s.window(w), w, bound, i <= r)
            for i, (s, w) in enumerate(zip(live, widths, strict=True))]


# ------------------------------------------------------------------ external sort

DEFAULT_BUFFER = 1920 << 20          # rwsort's default, 1920m
RUN_BLOCK = 1 << 14                  # records per block of a run file: small, because
MAX_FANIN = 32                       # a merge holds a block of each of up to MAX_FANIN runs


def batch_bytes(batch):
    return sum(c.nbytes for c in batch.values())


class RunFiles:
    """Temporary sorted runs as pyflow flow files in a private directory, removed by
    close() (also on error and Ctrl-C, which the callers' finally clauses reach)."""

    def __init__(self, tempdir=None, compression="none"):
        self.parent = tempdir or tempfile.gettempdir()
        self.dir = None
        self.compression = compression
        self.count = 0

    def write(self, batches):
        from .flowfile import FlowWriter
        if self.dir is None:
            try:
                self.dir = tempfile.mkdtemp(prefix=f"pyflow-sort.{os.getpid()}.",
                                            dir=self.parent)
            except OSError as exc:
                raise FlowError(f"cannot create a temporary directory in {self.parent}: "
                                f"{exc.strerror}") from None
        path = os.path.join(self.dir, f"run{self.count:06d}.pf")
        self.count += 1
        try:
            with open(path, "wb") as f:
                w = FlowWriter(f, {"notes": [], "history": []}, self.compression, level=1,
                               block_records=RUN_BLOCK)
                for b in batches:
                    w.write(b)
                w.close()
        except OSError as exc:
            raise FlowError(f"cannot write temporary file {path}: {exc.strerror}") from None
        return path

    def read(self, path):
        """The batches of a run, decoded in this thread (many runs are read at once: a
        read-ahead pool per run would hold blocks of every one), the file removed after."""
        from .flowfile import FlowReader
        with open(path, "rb") as f:
            yield from FlowReader(f, path, threads=1).batches()
        os.unlink(path)

    def reduce(self, paths, fields, reverse):
        """Merge adjacent groups of runs until at most MAX_FANIN remain (order kept)."""
        fanin = MAX_FANIN
        while len(paths) > fanin:
            paths = [self.write(merge([self.read(p) for p in paths[i: i + fanin]],
                                      fields, reverse))
                     if len(paths[i: i + fanin]) > 1 else paths[i]
                     for i in range(0, len(paths), fanin)]
        return paths

    def close(self):
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


class ExternalSorter:
    """Sorts batches added in any number within about buffer_bytes of memory.

    Memory is accounted as the bytes of the decoded columns held. Arriving batches are
    sorted a block at a time (so that gathering records by the permutation stays within
    the CPU caches); when the held blocks fill the buffer they are merged into a run file,
    and batches() merges the runs and the blocks still held."""

    def __init__(self, fields, reverse=False, buffer_bytes=DEFAULT_BUFFER, tempdir=None,
                 compression="none"):
        self.fields, self.reverse = fields, reverse
        rec = schema.record_bytes(True)
        self.step = int(min(MERGE_STEP, max(1024, buffer_bytes // (16 * rec))))
        self.block = int(min(1 << 17, max(256, buffer_bytes // (8 * rec))))
        # What a merge holds besides the sorted blocks (its windows, their copies and
        # output, and a block or more of each run file) must fit in the buffer too.
        reserve = (8 * self.step + MAX_FANIN * RUN_BLOCK) * rec
        self.limit = max(buffer_bytes - reserve, buffer_bytes // 2)
        self.pending, self.npending = [], 0
        self.sorted = []            # sorted blocks held, in input order
        self.held = 0
        self.runs = RunFiles(tempdir, compression)
        self.paths = []
        self.v6 = False             # any IPv6 batch: all output is IPv6, as one sort does

    def add(self, batch):
        n = schema.nrecords(batch)
        if not n:
            return
        self.v6 = self.v6 or schema.is_v6(batch)
        self.pending.append(batch)
        self.npending += n
        self.held += batch_bytes(batch)
        if self.npending >= self.block:
            self._sort_pending()
        if self.held > self.limit:
            self._spill()

    def _sort_pending(self):
        if not self.pending:
            return
        b = sort_batch(schema.concat(self.pending), self.fields, self.reverse)
        self.pending, self.npending = [], 0
        self.sorted.append(b)
        self.held = sum(batch_bytes(s) for s in self.sorted)

    def _spill(self):
        self._sort_pending()
        merged = merge([[b] for b in self.sorted], self.fields, self.reverse, self.step)
        self.sorted, self.held = [], 0
        self.paths.append(self.runs.write(merged))
        if len(self.paths) >= 2 * MAX_FANIN:
            self.paths = self.runs.reduce(self.paths, self.fields, self.reverse)

    @property
    def spilled(self):
        return len(self.paths)

    def batches(self):
        """All records added, sorted, as batches; the sorter is spent afterwards."""
        self._sort_pending()
        paths = self.runs.reduce(self.paths, self.fields, self.reverse)
        self.paths = []
        merged = merge([self.runs.read(p) for p in paths] + [[b] for b in self.sorted],
                       self.fields, self.reverse, self.step)
        self.sorted = []
        try:
            for b in merged:
                yield schema.to_v6(b) if self.v6 else b
        finally:
            self.close()

    def close(self):
        self.pending, self.sorted = [], []
        self.runs.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
