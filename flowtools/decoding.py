"""Many flow blocks decoded at once: reading the archive's hourly files.

The mirror of segments.py. An hourly file is one packed block of a few thousand records,
and Block.decode spends most of such a block's time on the cost of its ~80 numpy calls
and on building 128-bit address columns (185 ns per record, measured over the bench
archive, against 25 ns of decompression). decode_run decompresses each block of a run,
then decodes every column for all of them at once: the blocks' stored bytes gathered by
one concatenation per byte plane, bases, deltas and dictionaries applied as arrays, and the
blocks' columns that differ in width or encoding decoded group by group and scattered into
place. What is left per block is its decompression and a few slices. A large block,
whose columns are compressed one by one, has its wanted columns laid out as a packed
block's frame and joins the run like any other.

The values are those Block.decode gives for each block (the tests hold the two to that).
Anything the per-block decoder would refuse sends the run back to it, block by block, so
that its error names the block.
"""

from collections import defaultdict
from itertools import accumulate
from operator import itemgetter

import numpy as np
import zstandard

from . import container, schema

_U = {1: np.dtype("<u1"), 2: np.dtype("<u2"), 4: np.dtype("<u4"), 8: np.dtype("<u8")}


class _Fallback(Exception):
    """The run holds something that only the per-block decoder reports properly."""


def batchable(block):
    """True for a block decode_run decodes with others: any pyflow block. (One whose
    IPv4 records' addresses are not all ::ffff:a.b.c.d, and so not split into NAME.v4
    and the IPv6 records' halves, sends its run back to Block.decode.)"""
    from .flowfile import Block
    return isinstance(block, Block)


def decode_run(blocks, columns=None, dctx=None):
    """One batch of the records of a sequence of blocks, in order (IPv6 when any block
    is); only the named columns when given."""
    return schema.concat(decode_parts(blocks, columns, dctx))


def decode_run_families(blocks, columns=None, dctx=None):
    """The records of a sequence of blocks as batches of one address family each, as
    Block.decode_families gives them for one block: the IPv4 records with 32-bit addresses
    and no ipv6 column, then the IPv6 ones."""
    parts = decode_parts(blocks, columns, dctx, families=True)
    four = [b for b in parts if not schema.is_v6(b)]
    six = [b for b in parts if schema.is_v6(b)]
    return [schema.concat(f) for f in (four, six) if f]


def decode_parts(blocks, columns=None, dctx=None, families=False):
    """The records of a sequence of blocks as batches, in order: one for each stretch of
    batchable blocks, one for each other block; with families, each of these as its
    batches of one address family (IPv4, then IPv6)."""
    parts, stretch = [], []
    for block in blocks:
        if batchable(block):
            stretch.append(block)
            continue
        if stretch:
            parts += _stretch(stretch, columns, dctx, families)
            stretch = []
        parts += _stretch([block], columns, dctx, families)
    if stretch:
        parts += _stretch(stretch, columns, dctx, families)
    return parts


# Records decoded together by decoded_runs: enough to amortise the per-column cost over many
# hourly files, few enough that a run's batch stays a few tens of MiB
RUN_RECORDS = 1 << 18


def decoded_runs(readers, columns=None, families=False):
    """Batches of every record of a sequence of readers, in order: pyflow files' blocks
    decoded many at once (decode_parts, about RUN_RECORDS records a run), other formats'
    batches as their readers give them. With families, each batch is of one address
    family. Each reader is closed once read."""
    from .flowfile import FlowReader
    dctx = zstandard.ZstdDecompressor()
    pending, count = [], 0
    for reader in readers:
        if not isinstance(reader, FlowReader):
            if pending:
                yield from decode_parts(pending, columns, dctx, families)
                pending, count = [], 0
            for batch in reader.batches(columns):
                yield from (schema.split_families(batch) if families else [batch])
            reader.close()
            continue
        for part in reader.blocks():
            block = part.load()
            pending.append(block)
            count += block.n
            if count >= RUN_RECORDS:
                yield from decode_parts(pending, columns, dctx, families)
                pending, count = [], 0
        reader.close()
    if pending:
        yield from decode_parts(pending, columns, dctx, families)


def check(blocks, dctx=None):
    """Decode every column of every block, for the errors only: what pyflow-cat does to
    the blocks it copies. The IPv4 addresses of IPv6 blocks stay 32-bit, as stored:
    widening them to 128 bits is a third of decode_parts' time (measured)."""
    stretch = []
    for block in [*blocks, None]:
        if block is not None and batchable(block):
            stretch.append(block)
            continue
        if len(stretch) > 1:
            try:
                _Run(stretch, None, dctx).check()
                stretch = []
            except _REDO:
                pass
        for one in stretch:
            one.decode(None, dctx)
        stretch = []
        if block is not None:
            block.decode(None, dctx)


# What sends a run back to Block.decode, whose error, if any, names the block
_REDO = (_Fallback, ValueError, OverflowError, TypeError, KeyError, IndexError,
         AttributeError)


def _stretch(blocks, columns, dctx, families):
    """[batch] of blocks (or its families), decoded together when there are several."""
    if len(blocks) > 1:
        try:
            split = _Run(blocks, columns, dctx).split()
            return _families(split) if families else [_batch(split)]
        except _REDO:
            pass  # decoded again block by block below: the error, if any, names the block
    if families:
        return [b for one in blocks for b in one.decode_families(columns, dctx)]
    return [one.decode(columns, dctx) for one in blocks]


# In an IPv4 block an address column is NAME itself; in an IPv6 one its IPv4 part is NAME.v4
_AS_V4 = {name + tail: name + ".v4" + tail for name in schema.IP_COLUMNS for tail in ("", "#d")}
_ENCODINGS = ("o", "d", "x")


class _Run:
    """The decompressed frames of a run of batchable blocks, and their columns."""

    def __init__(self, blocks, columns, dctx):
        dctx = dctx or zstandard.ZstdDecompressor()
        self.blocks = blocks
        self.names = schema.NAMES if columns is None else tuple(columns)
        self.lens = [b.n for b in blocks]
        self.n = sum(self.lens)
        self.v6 = [b.v6 for b in blocks]
        self.raws = []
        # sub-column -> [(block, key, offset, size, count, base)] in block order; key is
        # "c" for a constant, (encoding, width, shuffled) otherwise, None when invalid
        self.subs = subs = defaultdict(list)
        wanted = None if columns is None else frozenset(self.names) | {"ipv6"}
        for j, b in enumerate(blocks):
            cols = b.header["cols"]
            picks, end = _layout(tuple(map(_NAME, cols)), not b.v6, wanted)
            if b.packed:
                sizes = b.header["raw"]
                if len(sizes) != len(cols):
                    raise _Fallback
                starts = list(accumulate(sizes, initial=0))
                raw = self._packed(b, b.header["z"] if wanted is None else starts[end], dctx)
            else:
                raw, sizes = self._columns(b, wanted, dctx)
                starts = list(accumulate(sizes, initial=0))
            self.raws.append(np.frombuffer(raw, np.uint8))
            for i, sub in picks:
                desc = cols[i]
                if len(desc) != 8:
                    continue
                enc, w, count, size = desc[1], desc[2], desc[7], sizes[i]
                if enc == "c":
                    key = "c"
                elif enc in _ENCODINGS and w in _U and size == w * count:
                    key = (enc, w, w > 1 and bool(desc[4]))  # as Block.decode reads it
                else:
                    key = None  # invalid
                subs[sub].append((j, key, starts[i], size, count, desc[3]))

    @staticmethod
    def _packed(block, need, dctx):
        """A packed block's frame, decompressed as far as its byte `need`."""
        if need > block.avail:
            block._unpack(dctx, need)
        if len(block.segments) == 1:
            return block.segments[0][1]
        return b"".join(s for _, s in block.segments)

    @staticmethod
    def _columns(block, wanted, dctx):
        """(raw bytes, sizes) of a block whose columns are compressed one by one (a large
        block, or an uncompressed file's), laid out as a packed block's frame: the wanted
        columns' stored bytes, each checked against its checksum, one after the other."""
        parts, sizes, at = [], [], 0
        payload = block.payload
        compressed = block.reader.compressed
        for desc in block.header["cols"]:
            clen = desc[5]
            data = payload[at: at + clen]
            at += clen
            if desc[1] == "c" or (wanted is not None and _column_of(desc[0]) not in wanted):
                sizes.append(0)
                continue
            if container.crc32(data) != desc[6]:
                raise _Fallback  # Block.decode says which column
            if compressed:
                try:
                    data = dctx.decompress(data, max_output_size=desc[2] * desc[7])
                except zstandard.ZstdError:
                    raise _Fallback from None
            parts.append(data)
            sizes.append(len(data))
        return b"".join(parts), sizes

    def split(self):
        """{column: values} with each address column as NAME.v4 (every record's low
        32 bits; 0 for IPv6 records), NAME.hi and NAME.lo (the IPv6 records'); ipv6 is
        None when no block is an IPv6 one."""
        ipv6, subs = self._plan()
        out = {sub: self.column(sub, js, counts, dtype) for sub, js, counts, dtype in subs}
        out["ipv6"] = ipv6
        return out

    def check(self):
        """Decode every sub-column of every block, as split does, for the errors only:
        each group of blocks that share an encoding is decoded, but its values are not
        put in place among the other groups' nor, for constants, repeated per record."""
        for sub, js, counts, dtype in self._plan()[1]:
            self.column(sub, js, counts, dtype, keep=False)

    def _plan(self):
        """(ipv6, [(sub-column, blocks, value counts, dtype)]): the records' IPv6 flags
        (None when no block is an IPv6 one) and the sub-columns split decodes."""
        every = list(range(len(self.blocks)))
        ipv6 = n6 = None
        if any(self.v6):
            six = [j for j in every if self.v6[j]]
            flags = self.column("ipv6", six, [self.lens[j] for j in six], _U[1]).view(bool)
            if len(six) == len(self.blocks):
                ipv6 = flags
            else:  # IPv4 blocks have no ipv6 column
                pieces, at = [], 0
                for j in every:
                    if self.v6[j]:
                        pieces.append(flags[at: at + self.lens[j]])
                        at += self.lens[j]
                    else:
                        pieces.append(np.zeros(self.lens[j], bool))
                ipv6 = np.concatenate(pieces)
            n6 = np.add.reduceat(ipv6, np.cumsum([0] + self.lens[:-1]),
                                 dtype=np.int64).tolist()
        subs = []
        for name in self.names:
            if name not in schema.IP_COLUMNS:
                subs.append((name, every, self.lens, schema.COLUMNS[name]))
                continue
            subs.append((name + ".v4", every, self.lens, _U[4]))
            if n6 is not None:
                some = [j for j in every if n6[j]]
                for half in (".hi", ".lo"):
                    subs.append((name + half, some, [n6[j] for j in some], _U[8]))
        return ipv6, subs

    def column(self, sub, js, counts, dtype, keep=True):
        """Sub-column sub of blocks js, counts[k] values from block js[k], decoded and
        concatenated; with keep false, decoded for the errors only (see check)."""
        entries = self.subs.get(sub, [])
        if [e[0] for e in entries] != js or [e[4] for e in entries] != counts:
            raise _Fallback
        return self._values(sub, entries, dtype, keep)

    def _values(self, sub, entries, dtype, keep=True):
        if not entries:
            return np.zeros(0, dtype)
        groups = {}
        for pos, e in enumerate(entries):
            if e[1] in groups:
                groups[e[1]].append(pos)
            else:
                groups[e[1]] = [pos]
        if None in groups:
            raise _Fallback
        if not keep:
            for key, idx in groups.items():
                if key != "c":
                    self._group(sub, entries if len(groups) == 1 else
                                [entries[p] for p in idx], dtype)
            return None
        if len(groups) == 1:
            return self._group(sub, entries, dtype)
        # Blocks that differ in encoding or width: each group decoded at once, then
        # each block's values put in place: by a copy each (fused with adding its base
        # where there is one) when blocks are large, by one concatenation when small
        starts = _starts(entries)
        total = starts[-1] + entries[-1][4]
        if total < _PER_BLOCK * len(entries):
            pieces = [None] * len(entries)
            for idx in groups.values():
                values = self._group(sub, [entries[p] for p in idx], dtype)
                at = 0
                for p in idx:
                    pieces[p] = values[at: at + entries[p][4]]
                    at += entries[p][4]
            return np.concatenate(pieces)
        out = np.empty(total, dtype)
        for idx in groups.values():
            self._group(sub, [entries[p] for p in idx], dtype,
                        (out, [starts[p] for p in idx]))
        return out

    def _group(self, sub, entries, dtype, into=None):
        """The values of entries that share one encoding, concatenated; or, with
        into=(out, starts), written to out, entry k's from starts[k] on."""
        key = entries[0][1]
        bases = [e[5] for e in entries]
        if key == "c":
            if into is not None:
                out, starts = into
                for start, e in zip(starts, entries, strict=True):
                    out[start: start + e[4]] = dtype.type(e[5])
                return None
            n = sum(e[4] for e in entries)
            if bases.count(bases[0]) == len(bases):
                # zero-stride, as Block.decode gives a constant column
                return np.ndarray((n,), dtype, buffer=np.array(bases[:1], dtype),
                                  strides=(0,))
            return np.repeat(np.array(bases, dtype), [e[4] for e in entries])
        enc, w, shuffled = key
        stored = self._stored(entries, w, shuffled)
        if enc == "o":
            if into is None:
                if bases.count(bases[0]) == len(bases):
                    if bases[0] == 0:
                        return stored if stored.dtype == dtype else stored.astype(dtype)
                    return np.add(stored, dtype.type(bases[0]), dtype=dtype)
                if len(stored) < _PER_BLOCK * len(entries):
                    out = stored.astype(dtype)
                    out += np.repeat(np.array(bases, dtype), [e[4] for e in entries])
                    return out
                out = np.empty(len(stored), dtype)
                _add_bases(stored, entries, dtype, out, _starts(entries))
                return out
            _add_bases(stored, entries, dtype, *into)
            return None
        if enc == "d":
            values = _deltas(stored, bases, entries, dtype)
            return values if into is None else _place(values, entries, into)
        return self._dictionary(sub, entries, stored, dtype, into)

    def _dictionary(self, sub, entries, stored, dtype, into):
        """Encoding "x": indices into each block's dictionary (NAME#d), itself decoded like
        any column; then one take per block, which also checks the indices' bounds."""
        if any(e[5] for e in entries):
            raise _Fallback
        tables = {e[0]: e for e in self.subs.get(sub + "#d", ())}
        try:
            tables = [tables[e[0]] for e in entries]
        except KeyError:
            raise _Fallback from None
        if any(type(t[4]) is not int or not 0 < t[4] <= self.lens[t[0]] for t in tables):
            raise _Fallback
        values = self._values(sub + "#d", tables, dtype)
        sizes = [t[4] for t in tables]
        if into is None and len(stored) < _PER_BLOCK * len(entries):
            lens = [e[4] for e in entries]
            first = _starts(entries)
            if (np.maximum.reduceat(stored, first) >= sizes).any():
                raise _Fallback  # an index beyond its block's dictionary
            at = stored.astype(np.intp)
            at += np.repeat(_starts(tables), lens)
            return values.take(at)
        out, starts = into if into is not None else \
            (np.empty(len(stored), dtype), _starts(entries))
        at = t = 0
        for size, e, start in zip(sizes, entries, starts, strict=True):
            n = e[4]
            np.take(values[t: t + size], stored[at: at + n], out=out[start: start + n])
            at += n
            t += size
        return out if into is None else None

    def _stored(self, entries, w, shuffled):
        """The stored w-byte values of entries, concatenated, byte shuffle undone."""
        raws = self.raws
        if not shuffled:
            if len(entries) == 1:
                j, _, at, size, _, _ = entries[0]
                return raws[j][at: at + size].view(_U[w])
            return np.concatenate([raws[e[0]][e[2]: e[2] + e[3]] for e in entries]).view(_U[w])
        total = sum(e[4] for e in entries)
        out = np.empty(total, _U[w])
        dst = out.view(np.uint8).reshape(total, w)
        plane = np.empty(total, np.uint8)
        for k in range(w):
            np.concatenate([raws[j][at + k * c: at + (k + 1) * c]
                            for j, _, at, _, c, _ in entries], out=plane)
            dst[:, k] = plane
        return out


_NAME = itemgetter(0)
_LAYOUTS = {}


def _layout(names, v4, wanted):
    """([(index, sub-column)] of the wanted sub-columns of a block whose descriptors name
    `names`, an IPv4 block's addresses renamed NAME.v4; the index after the last of them).
    Computed once per layout: the blocks of an archive share a few."""
    key = (names, v4, wanted)
    plan = _LAYOUTS.get(key)
    if plan is None:
        picks = [(i, _AS_V4.get(sub, sub) if v4 else sub) for i, sub in enumerate(names)
                 if wanted is None or _column_of(sub) in wanted]
        plan = (picks, picks[-1][0] + 1 if picks else 0)
        if len(_LAYOUTS) < 256:  # layouts come from files: bounded
            _LAYOUTS[key] = plan
    return plan


# Blocks of at least this many records on average get their bases added block by block,
# fused with the cast; smaller ones, by one addition of the bases repeated per record
_PER_BLOCK = 1024


def _starts(entries):
    """Where each entry's values start among those of all entries."""
    at, out = 0, []
    for e in entries:
        out.append(at)
        at += e[4]
    return out


def _add_bases(stored, entries, dtype, out, starts):
    """out[start:...] = each entry's stored offsets plus its base, as dtype."""
    at = 0
    for start, e in zip(starts, entries, strict=True):
        n = e[4]
        np.add(stored[at: at + n], dtype.type(e[5]), out=out[start: start + n], dtype=dtype)
        at += n


def _place(values, entries, into):
    """Each entry's values copied to its place in out."""
    out, starts = into
    at = 0
    for start, e in zip(starts, entries, strict=True):
        n = e[4]
        out[start: start + n] = values[at: at + n]
        at += n


def _deltas(stored, bases, entries, dtype):
    """Delta-encoded values: each entry's running sum from its base, for all entries in
    one cumulative sum. Each entry's first stored value is adjusted so that the sum
    restarts at its base (its first stored value is part of its own sum, as in
    Block.decode)."""
    total = stored.astype(dtype)
    if len(entries) == 1:
        total[0] += dtype.type(bases[0])
    else:
        first = _starts(entries)
        ends = np.array(bases, dtype)
        adjust = ends.copy()
        ends += np.add.reduceat(total, first)  # where each entry's sum ends
        adjust[1:] -= ends[:-1]
        total[first] += adjust
    np.cumsum(total, out=total)  # 2.7x faster than cumsum(dtype=) (measured)
    return total


_COLUMN_OF = {}


def _column_of(sub):
    """The column a sub-column (NAME.v4, NAME#d, ...) belongs to."""
    name = _COLUMN_OF.get(sub)
    if name is None:
        name = sub.split(".")[0].split("#")[0]
        if len(_COLUMN_OF) < 1024:  # names come from files: bounded
            _COLUMN_OF[sub] = name
    return name


def _batch(split):
    ipv6 = split.pop("ipv6")
    out = {}
    for name, col in split.items():
        if name.endswith((".hi", ".lo")):
            continue
        if not name.endswith(".v4"):
            out[name] = col
            continue
        name = name[:-3]
        if ipv6 is None:
            out[name] = col
            continue
        full = np.empty((len(col), 2), np.uint64)
        full[:, 0] = 0
        np.bitwise_or(col, schema.V4_MAPPED_LO, out=full[:, 1], dtype=np.uint64)
        hi = split.get(name + ".hi")
        if hi is not None and len(hi):
            where6 = np.flatnonzero(ipv6)
            full[where6, 0] = hi
            full[where6, 1] = split[name + ".lo"]
        out[name] = full
    if ipv6 is not None:
        out["ipv6"] = ipv6
    return out


def _families(split):
    ipv6 = split.pop("ipv6")
    if ipv6 is None or not ipv6.any():
        return [{name[:-3] if name.endswith(".v4") else name: col
                 for name, col in split.items() if not name.endswith((".hi", ".lo"))}]
    where6 = np.flatnonzero(ipv6)
    where4 = np.flatnonzero(~ipv6)
    four, six = {}, {}
    for name, col in split.items():
        if name.endswith((".hi", ".lo")):
            continue
        if name.endswith(".v4"):
            name = name[:-3]
            four[name] = col[where4]
            full = np.empty((len(where6), 2), np.uint64)
            full[:, 0] = split[name + ".hi"]
            full[:, 1] = split[name + ".lo"]
            six[name] = full
            continue
        four[name], six[name] = col[where4], col[where6]
    six["ipv6"] = np.ones(len(where6), bool)
    return [b for b, n in ((four, len(where4)), (six, len(where6))) if n]
