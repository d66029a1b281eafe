"""Record predicates: vectorised tests over batches, and block skipping by statistics.

A Predicate names the stored columns it reads (``columns``), computes a boolean mask over
a batch (``mask``), and says from a block's statistics whether any record of the block
could pass (``may_match``; False lets a reader skip the block without decompressing it).
rwfilter's switches, ``--expr`` expressions, sets, wildcards and tuple files all compile to
these, and And/Or/Not combine them.

Block statistics (flowfile._stats) hold [min, max] for stime, etime, sport, dport and
protocol, and for sip and dip: integers in an IPv4 block, [[hi, lo], [hi, lo]] 64-bit
halves of the 128-bit address in an IPv6 block (IPv4 records there as ::ffff:a.b.c.d).
"""

import numpy as np

from . import schema


class Predicate:
    columns = ()

    def mask(self, batch):
        raise NotImplementedError

    def may_match(self, stats):
        return True


class And(Predicate):
    def __init__(self, parts):
        self.parts = list(parts)
        self.columns = _union(p.columns for p in self.parts)

    def mask(self, batch):
        out = None
        for p in self.parts:
            m = p.mask(batch)
            if out is None:
                out = np.array(m, bool)  # a part may hand back a view of a column
            else:
                out &= m
            if not out.any():
                break
        if out is None:
            return np.ones(schema.nrecords(batch), bool)
        return out

    def may_match(self, stats):
        return all(p.may_match(stats) for p in self.parts)


class Or(Predicate):
    def __init__(self, parts):
        self.parts = list(parts)
        self.columns = _union(p.columns for p in self.parts)

    def mask(self, batch):
        out = np.zeros(schema.nrecords(batch), bool)
        for p in self.parts:
            out |= p.mask(batch)
        return out

    def may_match(self, stats):
        return any(p.may_match(stats) for p in self.parts)


class Not(Predicate):
    def __init__(self, part):
        self.part = part
        self.columns = part.columns

    def mask(self, batch):
        return ~self.part.mask(batch)


class Always(Predicate):
    """Passes everything (or nothing): the identity of And (or Or)."""

    def __init__(self, value=True):
        self.value = value

    def mask(self, batch):
        return np.full(schema.nrecords(batch), self.value, bool)

    def may_match(self, stats):
        return self.value


class Lookup(Predicate):
    """An integer column whose value is in a set, given as a boolean table indexed by value
    (ports 65536 entries, protocol 256...)."""

    def __init__(self, column, table):
        self.column = column
        self.table = np.asarray(table, bool)
        self.columns = (column,)

    def mask(self, batch):
        return self.table[batch[self.column]]

    def may_match(self, stats):
        span = stats.get(self.column)
        if span is None:
            return True
        lo, hi = span
        return bool(self.table[lo: hi + 1].any())


class Between(Predicate):
    """lo <= value <= hi for a column, or for a value computed from several columns
    (``values(batch)``); lo or hi None leaves that side open."""

    def __init__(self, column, lo=None, hi=None, values=None, columns=None, stat=None):
        self.column = column
        self.lo, self.hi = lo, hi
        self.values = values
        self.columns = tuple(columns) if columns else (column,)
        self.stat = stat if stat is not None else (column if values is None else None)

    def mask(self, batch):
        v = batch[self.column] if self.values is None else self.values(batch)
        if self.lo is not None and self.hi is not None:
            m = v >= self.lo
            m &= v <= self.hi
            return m
        if self.lo is not None:
            return v >= self.lo
        if self.hi is not None:
            return v <= self.hi
        return np.ones(len(v), bool)

    def may_match(self, stats):
        span = stats.get(self.stat) if self.stat else None
        if span is None:
            return True
        lo, hi = span
        return not ((self.hi is not None and lo > self.hi)
                    or (self.lo is not None and hi < self.lo))


def _union(column_lists):
    out = []
    for cols in column_lists:
        for c in cols:
            if c not in out:
                out.append(c)
    return tuple(out)


def evaluate(predicate, batch):
    """The mask of a predicate, or all True for None."""
    if predicate is None:
        return np.ones(schema.nrecords(batch), bool)
    return predicate.mask(batch)
