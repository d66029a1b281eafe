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
Python (--presorted-input), and ``ExternalSorter`` sorts any number of records in bounded
memory: blocks are sorted as they arrive, written as they are to temporary run files (raw
columns) when the buffer is full, and every block, on file or held, merged at the end in
one pass by ``merge_runs``, which cuts its steps by key from samples of the runs' keys.
"""

import os
import shutil
import tempfile
import threading
from bisect import bisect_right

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
    # Every record's key from its low 32 bits first, the few others' set after: cheaper
    # than selecting the IPv4-mapped ones by a mask and scattering their keys back.
    key = lo & _LOW32
    key[others] = key[np.argmax(mapped)]    # (there are mapped ones): out of min and max
    vmin = int(key.min())
    width = int(key.max()) - vmin + 1
    key -= np.uint64(vmin - nbelow) if vmin >= nbelow else np.uint64(0)
    if vmin < nbelow:
        key += np.uint64(nbelow - vmin)
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
    return sort_parts(parts, fields, reverse)


def sort_parts(parts, fields, reverse=False):
    """The records of batches, concatenated, sorted (as sort_batch of their concat, with
    a copy less)."""
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
            cols = [np.ascontiguousarray(p[name]).view(np.complex128)[:, 0] for p in parts]
            out[name] = _gather(cols, perm).view(np.uint64).reshape(-1, 2)
        else:
            out[name] = _gather([p[name] for p in parts], perm)
    return out


_local = threading.local()


def _gather(cols, perm):
    """The concatenated columns' values at perm. The concatenation goes to a buffer kept
    for the next call (fresh memory costs a page fault every 4 KiB), and np.take is
    faster than indexing: 3.4x faster than both fresh, on a merge step's parts
    (measured)."""
    n = len(perm)
    dtype = cols[0].dtype
    scratch = getattr(_local, "scratch", None)
    if scratch is None:
        scratch = _local.scratch = {}
    buf = scratch.get(dtype)
    if buf is None or len(buf) < n:
        buf = scratch[dtype] = np.empty(max(n, 1 << 16), dtype)
    return np.take(np.concatenate(cols, out=buf[:n]), perm)


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
RUN_BLOCK = 1 << 14                  # records per block of a --presorted-input run file
MAX_FANIN = 32                       # --presorted-input files merged at once
MAX_RUNS = 1024                      # sorted runs merged at once by ExternalSorter
STEP = 1 << 18                       # records of all windows of a run merge together


def batch_bytes(batch):
    return sum(c.nbytes for c in batch.values())


class _MemoryRun:
    """A sorted batch held in memory, read by slices (views, not copies)."""

    def __init__(self, batch, samples):
        self.batch, self.n, self.samples = batch, schema.nrecords(batch), samples

    def read(self, a, b):
        return schema.take(self.batch, slice(a, b))

    def extend(self, head, a, b):
        """Records a - len(head)..b, where head holds the first of them."""
        return self.read(a - (schema.nrecords(head) if head is not None else 0), b)

    def release(self):
        self.batch = None


class _RunFile:
    """A temporary file of sorted runs, open for reading back; removed once every run
    in it is read (or by RunFiles.close)."""

    def __init__(self, path, f):
        self.path, self.f, self.fd = path, f, f.fileno()
        self.live = 0

    def release(self):
        self.live -= 1
        if self.live == 0 and self.f is not None:
            self.f.close()
            self.f = None
            try:
                os.unlink(self.path)
            except OSError:
                pass


class _FileRun:
    """A sorted run in a run file: chunks of records, each stored as its columns'
    values one column after the other (raw: writing and reading back cost a copy each,
    where encoding and decoding a flow block cost ~15x more, measured)."""

    def __init__(self, file):
        self.file = file
        self.chunks = []            # (first record, count, [(name, dtype, shape, offset)])
        self.n = 0
        self.samples = None
        file.live += 1

    def add_chunk(self, count, layout):
        self.chunks.append((self.n, count, layout))
        self.n += count

    def read(self, a, b):
        return self.extend(None, a, b)

    def extend(self, head, a, b):
        """head (a batch, or None) followed by records a..b, read into one batch
        (not read and then concatenated: a copy less)."""
        i = bisect_right(self.chunks, a, key=lambda c: c[0]) - 1
        pieces = []                 # (layout, record in chunk, count)
        while a < b:
            first, count, layout = self.chunks[i]
            end = min(b, first + count)
            pieces.append((layout, a - first, end - a))
            a = end
            i += 1
        kinds = {len(layout) for layout, _, _ in pieces}
        if head is not None:
            kinds.add(len(head))
        if len(kinds) > 1:          # IPv4 and IPv6 records: rare, the plain way
            parts = [head] if head is not None else []
            parts += [self._read([(lay, at, n)], None) for lay, at, n in pieces]
            return schema.concat(parts)
        return self._read(pieces, head)

    def _read(self, pieces, head):
        out = {}
        h = schema.nrecords(head) if head is not None else 0
        total = h + sum(n for _, _, n in pieces)
        offsets = [{c[0]: c[3] for c in layout} for layout, _, _ in pieces]
        for name, dtype, shape, _ in pieces[0][0]:
            arr = np.empty((total,) + shape, dtype)
            if h:
                arr[:h] = head[name]
            item = arr.itemsize * (shape[0] if shape else 1)      # (n,) or (n, 2)
            at = h
            for (_, first, n), offset in zip(pieces, offsets, strict=True):
                if not n:
                    continue
                size = n * item
                got = os.preadv(self.file.fd, [memoryview(arr[at: at + n]).cast("B")],
                                offset[name] + first * item)
                if got != size:
                    raise FlowError(f"temporary file {self.file.path} is truncated")
                at += n
            out[name] = arr
        return out

    def release(self):
        self.file.release()


class RunFiles:
    """Temporary sorted runs in a private directory, removed by close() (also on error
    and Ctrl-C, which the callers' finally clauses reach)."""

    def __init__(self, tempdir=None, compression="none"):
        self.parent = tempdir or tempfile.gettempdir()
        self.dir = None
        self.compression = compression
        self.count = 0
        self.open = []

    def _path(self):
        if self.dir is None:
            try:
                self.dir = tempfile.mkdtemp(prefix=f"pyflow-sort.{os.getpid()}.",
                                            dir=self.parent)
            except OSError as exc:
                raise FlowError(f"cannot create a temporary directory in {self.parent}: "
                                f"{exc.strerror}") from None
        path = os.path.join(self.dir, f"run{self.count:06d}.pf")
        self.count += 1
        return path

    def write_runs(self, runs, sample):
        """_FileRuns in one new file, one for each iterable of sorted batches;
        sample(batch, first) gives a run's samples of a batch starting at record first."""
        path = self._path()
        try:
            f = open(path, "w+b")
        except OSError as exc:
            raise FlowError(f"cannot write temporary file {path}: {exc.strerror}") from None
        file = _RunFile(path, f)
        self.open.append(file)
        out, at = [], 0
        try:
            for batches in runs:
                run = _FileRun(file)
                out.append(run)
                samples = []
                for b in batches:
                    n = schema.nrecords(b)
                    if not n:
                        continue
                    samples.append(sample(b, run.n))
                    layout = []
                    for name, col in b.items():
                        col = np.ascontiguousarray(col)
                        f.write(memoryview(col).cast("B"))
                        layout.append((name, col.dtype, col.shape[1:], at))
                        at += col.nbytes
                    run.add_chunk(n, layout)
                run.samples = [np.concatenate(k) for k in zip(*samples, strict=True)] \
                    if samples else None
            f.flush()
        except OSError as exc:
            raise FlowError(f"cannot write temporary file {path}: {exc.strerror}") from None
        return out

    # --presorted-input: runs as pyflow flow files, read as streams of batches

    def write(self, batches):
        from .flowfile import FlowWriter
        path = self._path()
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
        for file in self.open:
            if file.f is not None:
                file.f.close()
                file.f = None
        self.open = []
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


SAMPLE = 512          # every SAMPLE-th record of a run has its key noted for the merge


def _samples(batch, fields, reverse, first=0):
    """Comparable keys of the records of a run at multiples of SAMPLE, of a batch of
    the run starting at record first."""
    return _comparable_keys(schema.take(batch, slice(-first % SAMPLE, None, SAMPLE)),
                            fields, reverse)


def _upto(keys, bound, inclusive):
    """How many of sorted keys are < bound (<= when inclusive)."""
    n = len(keys[0])
    if not n:
        return 0
    return _count_upto((keys, _at(keys, 0), _at(keys, n - 1)), n, bound, inclusive)


class _Cursor:
    """A run being merged: the records consumed so far and a window of the next ones,
    with their comparable keys."""

    def __init__(self, run, fields, reverse):
        self.run, self.fields, self.reverse = run, fields, reverse
        self.pos = self.w0 = self.w1 = 0
        self.batch = self.keys = None

    def end_before(self, key, inclusive):
        """A record position beyond all records < key (<= key when inclusive), from the
        samples: the first sample beyond them."""
        at = _upto(self.run.samples, key, inclusive) * SAMPLE
        return max(self.pos, min(self.run.n, at))

    def count(self, end, key, inclusive):
        """How many records from pos on are < key (<= when inclusive), all of which lie
        before end."""
        if end <= self.pos:
            return 0
        self.load_to(end)
        a = self.pos - self.w0
        return _upto([k[a:] for k in self.keys], key, inclusive)

    def load_to(self, end):
        """Extend the window of records from pos to at least end."""
        if self.w1 >= end:
            return
        a = self.pos - self.w0
        head = schema.take(self.batch, slice(a, None)) if self.w1 > self.pos else None
        batch = self.run.extend(head, self.w1, end)
        keys = _comparable_keys(schema.take(batch, slice(self.w1 - self.pos, None)),
                                self.fields, self.reverse)
        if head is not None:
            keys = [np.concatenate([old[a:], new]) for old, new in
                    zip(self.keys, keys, strict=True)]
        self.batch, self.keys = batch, keys
        self.w0, self.w1 = self.pos, end

    def take(self, count):
        a = self.pos - self.w0
        out = schema.take(self.batch, slice(a, a + count))
        self.pos += count
        if self.pos == self.run.n:
            self.finish()
        return out

    def finish(self):
        self.batch = self.keys = None
        if self.run is not None:
            self.run.release()
            self.run = None


class _Bounds:
    """The runs' samples in key order: each step's bound is the sample about a step's
    records past the last bound."""

    def __init__(self, samples, step):
        samples = [s for s in samples if s is not None]
        cols = [np.concatenate(c) for c in zip(*samples, strict=True)]
        self.keys = [c[np.lexsort(cols[::-1])] for c in cols] if cols else [[]]
        self.stride = max(1, step // SAMPLE)
        self.j, self.last = -1, None

    def next(self):
        """(key, index) of the next bound, or None when no sample is beyond the last."""
        n = len(self.keys[0])
        j = min(self.j + self.stride, n - 1)
        if j <= self.j:
            return None
        key = _at(self.keys, j)
        if self.last is not None and key <= self.last:    # ties with the last bound
            j = _upto(self.keys, self.last, True)
            if j >= n:
                return None
            key = _at(self.keys, j)
        return key, j

    def done(self, bound):
        self.last, self.j = bound


def merge_runs(runs, fields, reverse=False, step=STEP):
    """Sorted batches from sorted runs (n, samples, read(a, b), release()), stable
    across them: of equal keys, those of an earlier run come first.

    Each step takes a bound from the runs' samples (about a step's records on), reads
    from every run its records up to it, which the samples say where they end, and
    orders them together in one sort. Should a key be so common that its records are
    too many for a step, those before it go out first, then its own run by run, in
    slices (they need no sorting)."""
    cursors = [_Cursor(r, fields, reverse) for r in runs if r.n]
    del runs
    bounds = _Bounds([c.run.samples for c in cursors], step)
    cap = 2 * step + len(cursors) * SAMPLE
    try:
        while len(cursors) > 1:
            bound = bounds.next()
            if bound is None:           # what is left: under SAMPLE records a run
                for c in cursors:
                    c.load_to(c.run.n)
                parts = [c.take(c.run.n - c.pos) for c in cursors]
                cursors = []
                yield merge_parts(parts, fields, reverse)
                break
            key = bound[0]
            ends = [c.end_before(key, True) for c in cursors]
            inclusive = sum(e - c.pos for c, e in zip(cursors, ends, strict=True)) <= cap
            if not inclusive:
                ends = [c.end_before(key, False) for c in cursors]
            counts = [c.count(e, key, inclusive) for c, e in zip(cursors, ends, strict=True)]
            parts = [c.take(n) for c, n in zip(cursors, counts, strict=True) if n]
            if parts:
                yield merge_parts(parts, fields, reverse)
            if not inclusive:
                for c in cursors:       # the records equal to key, run by run
                    while c.run is not None:
                        n = c.count(min(c.run.n, c.pos + step), key, True)
                        if not n:
                            break
                        yield c.take(n)
            bounds.done(bound)
            cursors = [c for c in cursors if c.run is not None]
        for c in cursors:
            run = c.run
            for a in range(c.pos, run.n, step):
                yield run.read(a, min(run.n, a + step))
            c.finish()
    finally:
        for c in cursors:
            c.finish()


def _recut(batches, size):
    """The records of batches as batches of size records (but the last). A FlowWriter
    given its own block size cuts blocks from a batch without first copying it into
    one with what it holds; only the batches that straddle two inputs are copies here."""
    held, n = [], 0
    for b in batches:
        m = schema.nrecords(b)
        at = 0
        if held:
            at = min(m, size - n)
            held.append(schema.take(b, slice(0, at)))
            n += at
            if n < size:
                continue
            yield schema.concat(held)
            held, n = [], 0
        while m - at >= size:
            yield schema.take(b, slice(at, at + size))
            at += size
        if at < m:
            held, n = [schema.take(b, slice(at, None))], m - at
    if held:
        yield schema.concat(held)


class ExternalSorter:
    """Sorts batches added in any number within about buffer_bytes of memory.

    Memory is accounted as the bytes of the decoded columns held. Arriving batches are
    sorted a block at a time (gathering records by the permutation then stays within the
    CPU caches: ~10x cheaper than gathering across a whole buffer, measured); when the
    held blocks fill the buffer they are written as they are, raw, to a temporary file,
    and batches() merges every block, on file or held, in one pass."""

    def __init__(self, fields, reverse=False, buffer_bytes=DEFAULT_BUFFER, tempdir=None,
                 compression="none"):
        self.fields, self.reverse = fields, reverse
        rec = schema.record_bytes(True)
        self.step = int(min(STEP, max(1024, buffer_bytes // (16 * rec))))
        self.block = int(min(1 << 17, max(256, buffer_bytes // (8 * rec))))
        # What the merge holds besides the blocks held (its windows, a step's records
        # and their copy, the output's blocks being encoded) must fit in the buffer too.
        reserve = (3 * self.step + 5 * self.block) * rec
        self.limit = max(buffer_bytes - reserve, buffer_bytes // 2)
        self.pending, self.npending = [], 0
        self.sorted = []            # sorted blocks held, in input order
        self.held = 0
        self.runs = RunFiles(tempdir, compression)
        self.files = []             # _FileRuns written, in input order
        self.v6 = False             # any IPv6 batch: all output is IPv6, as one sort does
        self.records = 0

    def add(self, batch):
        n = schema.nrecords(batch)
        if not n:
            return
        self.records += n
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
        b = sort_parts(self.pending, self.fields, self.reverse)
        self.pending, self.npending = [], 0
        self.sorted.append(_MemoryRun(b, self._sample(b)))
        self.held = sum(batch_bytes(r.batch) for r in self.sorted)

    def _sample(self, batch, first=0):
        return _samples(batch, self.fields, self.reverse, first)

    def _spill(self):
        self._sort_pending()
        blocks, self.sorted, self.held = self.sorted, [], 0
        self.files.extend(self.runs.write_runs(([r.batch] for r in blocks), self._sample))
        del blocks
        if len(self.files) >= 2 * MAX_RUNS:
            self.files = self._reduce(self.files)

    def _reduce(self, runs):
        """Merge adjacent groups of runs into runs on file until at most MAX_RUNS remain
        (order kept)."""
        while len(runs) > MAX_RUNS:
            groups = [runs[i: i + MAX_RUNS] for i in range(0, len(runs), MAX_RUNS)]
            runs = []
            for g in groups:
                runs.extend(self.runs.write_runs(
                    [merge_runs(g, self.fields, self.reverse, self.step)], self._sample)
                    if len(g) > 1 else g)
            del groups, g
        return runs

    @property
    def spilled(self):
        return len(self.files)

    def batches(self, size=None):
        """All records added, sorted, as batches (of size records but the last, when
        given); the sorter is spent afterwards."""
        try:
            self._sort_pending()
            runs = self.files + self.sorted
            self.files, self.sorted = [], []
            runs = self._reduce(runs)
            out = (schema.to_v6(b) if self.v6 else b
                   for b in merge_runs(runs, self.fields, self.reverse, self.step))
            yield from _recut(out, size) if size else out
        finally:
            self.close()

    def close(self):
        self.pending, self.sorted, self.files = [], [], []
        self.runs.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
