"""Splitting records into pass and fail streams, block by block (rwfilter's engine).

A block is judged on a decoding thread: its statistics first (a block that cannot match
fails whole, undecoded unless an output wants its records), then only the columns the
predicate reads, and the remaining columns only when an output needs the records. Order
is kept: results come back in input order, and the stateful steps (--unique, the
--max-pass/--max-fail limits) run on them in that order.
"""

import numpy as np

from . import schema
from .flowfile import decode_all


class Judged:
    """What the decoding thread found for one block."""

    __slots__ = ("n", "mask", "batch", "block")

    def __init__(self, n, mask, batch, block=None):
        self.n = n          # records in the block
        self.mask = mask    # bool per record (True: passes), or False: the whole block fails
        self.batch = batch  # the columns the outputs need, or None
        self.block = block  # the block itself when it goes whole (or not at all) to every
                            # output, which then copy it undecoded; batch is partial then


class Judge:
    """The work function for decode_all: predicate, and which columns are wanted."""

    def __init__(self, predicate, extra_columns=(), want_pass=False, want_fail=False,
                 want_all=False, volume=False):
        self.predicate = predicate
        self.check = tuple(dict.fromkeys(
            (predicate.columns if predicate else ()) + tuple(extra_columns)))
        self.want_pass, self.want_fail, self.want_all = want_pass, want_fail, want_all
        self.counts = ("packets", "bytes") if volume else ()
        self.copy_format = None  # (compressed, level) of the outputs when blocks may be copied

    def copyable(self, block):
        """Whether the outputs may take this block's frame as it is."""
        reader = getattr(block, "reader", None)
        return self.copy_format is not None and hasattr(block, "payload") and \
            (reader.compressed, reader.meta.get("level")) == self.copy_format

    def __call__(self, block, decode):
        stats = getattr(block, "stats", None)
        n = getattr(block, "n", None)
        if n is None:  # another format's chunk: already decoded
            n = schema.nrecords(decode(None))
        if self.predicate is not None and stats is not None \
                and not self.predicate.may_match(stats):
            counts = decode(list(self.counts)) if self.counts else None
            if not (self.want_fail or self.want_all):
                return Judged(n, False, counts)
            if self.copyable(block):
                return Judged(n, False, counts, block)
            return Judged(n, False, decode(None))
        part = decode(self.part_columns())
        judged, mask = self.judge_part(block, n, part)
        if judged is not None:
            return judged
        rest = [c for c in schema.NAMES if c not in part]
        if rest:
            part = dict(part)
            part.update(decode(rest))
        return Judged(n, mask, part)

    def part_columns(self):
        """The columns a block is judged on (stime at least: a batch without columns
        would not know its length)."""
        return list(dict.fromkeys(self.check + self.counts)) or ["stime"]

    def judge_part(self, block, n, part):
        """(Judged, mask) for a block from its part_columns(); Judged is None when an
        output needs the block's other columns too."""
        mask = self.predicate.mask(part) if self.predicate is not None \
            else np.ones(n, bool)
        if self.copyable(block) and (self.want_all or self.want_pass or self.want_fail):
            hits = int(np.count_nonzero(mask))
            if hits == n or hits == 0:
                return Judged(n, mask, part, block), mask
        if self.want_all or (self.want_pass and mask.any()) or \
                (self.want_fail and not mask.all()):
            return None, mask
        return Judged(n, mask, part), mask


def judged_blocks(readers, judge, threads=2):
    """(reader, Judged) for every block of the readers, in order."""
    for reader, _, judged in decode_all(readers, threads=threads, work=judge):
        yield reader, judged


def judged_runs(readers, judge):
    """(reader, Judged) for every block of the readers, in order, as judged_blocks gives
    them, but pyflow files' blocks judged many at a time (an archive's hourly files hold
    a block of a few thousand records each): the columns the predicate reads decoded for
    all the blocks of a run that their statistics do not rule out (decoding.decode_run),
    then the other columns for all those whose records an output needs."""
    from .decoding import RUN_RECORDS
    from .flowfile import FlowReader
    pending, count = [], 0
    for reader in readers:
        if not isinstance(reader, FlowReader):
            yield from _judge_run(pending, judge)
            pending, count = [], 0
            yield from judged_blocks([reader], judge, threads=1)
            continue
        for part in reader.blocks():
            block = part.load()
            pending.append((reader, block))
            count += block.n
            if count >= RUN_RECORDS:
                yield from _judge_run(pending, judge)
                pending, count = [], 0
        reader.close()
    yield from _judge_run(pending, judge)


def _judge_run(pending, judge):
    from .decoding import decode_run
    out = [None] * len(pending)
    candidates = []
    for k, (_, block) in enumerate(pending):
        if judge.predicate is not None and not judge.predicate.may_match(block.stats):
            out[k] = judge(block, block.decode)
        else:
            candidates.append(k)
    # blocks of one address family kind together, so that each block's records keep
    # the form its own decoding gives (IPv4 blocks' addresses 32-bit)
    for stretch in _stretches(candidates, lambda k: pending[k][1].v6):
        blocks = [pending[k][1] for k in stretch]
        parts = _slices(decode_run(blocks, judge.part_columns()), blocks)
        needy = []
        for k, block, part in zip(stretch, blocks, parts, strict=True):
            judged, mask = judge.judge_part(block, block.n, part)
            out[k] = judged if judged is not None else (part, mask)
            if judged is None:
                needy.append(k)
        if not needy:
            continue
        blocks = [pending[k][1] for k in needy]
        rest = [c for c in schema.NAMES if c not in out[needy[0]][0]]
        more = _slices(decode_run(blocks, rest), blocks) if rest else [{}] * len(blocks)
        for k, block, extra in zip(needy, blocks, more, strict=True):
            part, mask = out[k]
            out[k] = Judged(block.n, mask, {**part, **extra})
    for (reader, _), judged in zip(pending, out, strict=True):
        yield reader, judged


def _stretches(items, key):
    """Maximal runs of consecutive items with the same key."""
    run, last = [], None
    for item in items:
        k = key(item)
        if run and k != last:
            yield run
            run = []
        run.append(item)
        last = k
    if run:
        yield run


def _slices(batch, blocks):
    """Each block's records of a batch of many blocks' records, as views."""
    out, at = [], 0
    for block in blocks:
        out.append({k: v[at: at + block.n] for k, v in batch.items()})
        at += block.n
    return out


class Volume:
    """Records, packets and bytes (rwfilter's statistics)."""

    __slots__ = ("records", "packets", "bytes")

    def __init__(self):
        self.records = self.packets = self.bytes = 0

    def merge(self, other):
        self.records += other.records
        self.packets += other.packets
        self.bytes += other.bytes

    def add(self, batch, index=None, count=None):
        if index is None:
            self.records += count
            if batch is not None and "packets" in batch:
                self.packets += int(batch["packets"].sum(dtype=np.uint64))
                self.bytes += int(batch["bytes"].sum(dtype=np.uint64))
            return
        self.records += len(index)
        if batch is not None and "packets" in batch and len(index):
            self.packets += int(batch["packets"][index].sum(dtype=np.uint64))
            self.bytes += int(batch["bytes"][index].sum(dtype=np.uint64))


def first_index_reaching(mask, remaining):
    """Index of the record at which `remaining` more True values of mask have been seen,
    or None when the mask holds fewer."""
    if remaining is None:
        return None
    hits = np.flatnonzero(mask)
    return int(hits[remaining - 1]) if len(hits) >= remaining else None


def statistics_text(files, read, passed, volume):
    """rwfilter's --print-statistics (one line) or --print-volume-statistics (table)."""
    if not volume:
        return (f"Files {files:5d}.  Read {read.records:10d}.  Pass {passed.records:10d}."
                f" Fail  {read.records - passed.records:10d}.\n")
    rows = [f"{'':>5}|{'Recs':>18}|{'Packets':>18}|{'Bytes':>20}|{'Files':>10}|",
            f"{'Total':>5}|{read.records:18d}|{read.packets:18d}|{read.bytes:20d}|"
            f"{files:10d}|",
            f"{'Pass':>5}|{passed.records:18d}|{passed.packets:18d}|{passed.bytes:20d}|"
            f"{'':>10}|",
            f"{'Fail':>5}|{read.records - passed.records:18d}|"
            f"{read.packets - passed.packets:18d}|{read.bytes - passed.bytes:20d}|"
            f"{'':>10}|"]
    return "\n".join(rows) + "\n"


# --- many files on worker processes -----------------------------------------------------

class ChunkResult:
    """What a worker found in a run of input files: counts and encoded output frames."""

    def __init__(self, meta):
        self.meta = meta          # the first file's header (for the outputs' history)
        self.files = 0
        self.read, self.passed = Volume(), Volume()
        self.frames = {}          # kind -> (bytes, records, blocks)


def _judge_chunk(job, names):
    import io as _io

    from . import io
    from .flowfile import DEFAULT_LEVEL, FlowWriter
    judge, compression, level = job
    result = None
    writers = {}

    def readers():
        nonlocal result
        for name in names:
            reader = io.open_flows(name, threads=1)
            if result is None:
                result = ChunkResult(reader.meta)
            result.files += 1
            yield reader

    # the blocks of all the files judged as runs: judged_runs decodes them together
    for _, j in judged_runs(readers(), judge):
        n, batch = j.n, j.batch
        mask = np.zeros(n, bool) if j.mask is False else j.mask
        idx = np.flatnonzero(mask)
        result.read.add(batch, count=n)
        result.passed.add(batch, idx)
        for kind, want, sel in (("all", judge.want_all, None),
                                ("pass", judge.want_pass, idx),
                                ("fail", judge.want_fail, None)):
            if not want:
                continue
            if kind == "fail":
                if len(idx) == n:
                    continue
                sel = np.flatnonzero(~mask)
            if sel is not None and not len(sel):
                continue
            w = writers.get(kind)
            if w is None:
                w = writers[kind] = FlowWriter(_io.BytesIO(), compression=compression,
                                               level=level or DEFAULT_LEVEL,
                                               header=False, parallel=False)
            if j.block is not None:
                w.write_block(j.block)
            else:
                w.write(batch if sel is None or len(sel) == n
                        else schema.take(batch, sel))
    for kind, w in writers.items():
        w.flush()
        result.frames[kind] = (w.f.getvalue(), w.records, w.blocks)
    return result


def judged_chunks(names, judge, compression, level, workers=2):
    """(names, ChunkResult) for runs of the named files, judged on worker processes and
    returned in order."""
    from .workers import ordered_chunks
    return ordered_chunks(_judge_chunk, (judge, compression, level), names, workers=workers)
