"""rwfilter's --tuple-file: pass the records whose sIP, dIP, sPort, dPort and protocol (any
subset of them) match a line of a text file.

The file holds one tuple a line, values separated by the delimiter ('|' unless
--tuple-delimiter says otherwise), whitespace around values ignored, '#' starting a comment,
blank lines skipped, and a trailing delimiter ignored (so rwcut's output reads as is). The
columns are named by --tuple-fields, or else by the first line, a title line; with
--tuple-fields, a first line that names fields is skipped as a title. As in SiLK, sIP and dIP
take an address or a CIDR block, IPv4 or IPv6; sPort, dPort and protocol a number list
(``80,443,8000-8080``; '3-' runs to the maximum). --tuple-direction=reverse compares the
tuple's sIP with the record's dIP, its sPort with the record's dPort and so on; ``both``
passes a record matching either way.

SiLK expands every CIDR block into its addresses; here the tuples are grouped by the prefix
lengths of their addresses, and each group is one exact hash set of packed keys (the record's
addresses masked to the group's prefixes), so a /8 costs one entry and a /9 128 /16s (prefixes
are rounded up to a multiple of 8 to bound the groups, each a pass over the records). Number
lists are expanded, as in SiLK. Addresses compare as 128-bit values with IPv4 as
::ffff:a.b.c.d, which is also what SiLK does: an IPv4 tuple matches IPv4 records of either
kind of batch, and an IPv6 tuple only IPv6 records (or ::ffff:0:0/96 the IPv4 ones).
"""

import functools
import itertools
import re
import sys

import numpy as np

from . import addrs, unique
from .errors import FlowError
from .predicate import Predicate

U64 = np.uint64
NAMES = ("sIP", "dIP", "sPort", "dPort", "protocol")  # numbered 1-5, in this order
COLUMN = {"sIP": "sip", "dIP": "dip", "sPort": "sport", "dPort": "dport",
          "protocol": "protocol"}
SWAP = {"sip": "dip", "dip": "sip", "sport": "dport", "dport": "sport",
        "protocol": "protocol"}
DTYPE = {"sPort": np.uint16, "dPort": np.uint16, "protocol": np.uint8}
LIMIT = {"sPort": 65535, "dPort": 65535, "protocol": 255}
WIDTH = {"sPort": U64(16), "dPort": U64(16), "protocol": U64(8)}
DIRECTIONS = ("forward", "reverse", "both")
MAX_TUPLES = 1 << 24  # after expanding number lists; ~100 bytes each
M64 = (1 << 64) - 1


def load_tuples(path, fields_text=None, delimiter="|", direction="forward"):
    """The predicate of ``--tuple-file=path`` ('-' or 'stdin': the standard input)."""
    direction = parse_direction(direction)
    if not delimiter:
        raise FlowError("invalid --tuple-delimiter: the empty string is not a delimiter")
    names = None if fields_text is None else parse_fields(fields_text)
    try:
        if path in ("-", "stdin"):
            lines = sys.stdin.read().splitlines()
        else:
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                lines = f.read().splitlines()
    except OSError as exc:
        raise FlowError(f"--tuple-file {path}: {exc.strerror or exc}") from None
    return parse_tuples(lines, path, names, delimiter[0], direction)


def parse_direction(text):
    key = text.strip().lower()
    hits = [d for d in DIRECTIONS if key and d.startswith(key)]
    if len(hits) != 1:
        raise FlowError(f"invalid --tuple-direction value '{text}': expected forward, "
                        "reverse or both")
    return hits[0]


def field_name(token):
    """The tuple field a name, number 1-5 or unique name prefix refers to, or None."""
    key = token.strip().lower()
    if key.isdigit() and 1 <= int(key) <= 5:
        return NAMES[int(key) - 1]
    exact = [n for n in NAMES if n.lower() == key]
    hits = exact or [n for n in NAMES if key and n.lower().startswith(key)]
    return hits[0] if len(hits) == 1 else None


def parse_fields(text, where="invalid --tuple-fields value"):
    """Field names from a comma list (empty items, as a trailing delimiter leaves, ignored)."""
    names = []
    for token in text.split(","):
        if not token.strip():
            continue
        name = field_name(token)
        if name is None:
            raise FlowError(f"{where} '{text}': unknown field '{token.strip()}'")
        if name in names:
            raise FlowError(f"{where} '{text}': {name} given twice")
        names.append(name)
    if not names:
        raise FlowError(f"{where} '{text}': no fields")
    return names


def split_line(line, delimiter):
    """A line's values as rwfilter splits them: leading whitespace skipped, a trailing
    delimiter adds no value."""
    if not delimiter.isspace():  # the quick way, same result
        out = [v.strip() for v in line.split(delimiter)]
        if len(out) > 1 and not out[-1]:
            out.pop()
        return out
    out = []
    rest = line
    while True:
        rest = rest.lstrip()
        if not rest:
            return out
        value, sep, rest = rest.partition(delimiter)
        out.append(value.strip())
        if not sep:
            return out


def _is_title(values):
    """rwfilter's test: a value that is not all digits and names a field."""
    return any(v and not v.isdigit() and field_name(v) for v in values)


class _Bad(Exception):
    """A problem with one line of the file (the loop adds where)."""


def parse_tuples(lines, source, names, delimiter="|", direction="forward"):
    """The predicate of a tuple file given as lines; names None: a title line names them."""
    values = None if names is None else {n: [] for n in names}  # name -> values
    count = 0
    first = True
    for lineno, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0]
        if not line.strip():
            continue
        try:
            if names is None:
                names = _title(line, delimiter)
                values = {n: [] for n in names}
                first = False
                continue
            cells = split_line(line, delimiter)
            if len(cells) != len(names):
                raise _Bad(f"too {'few' if len(cells) < len(names) else 'many'} fields "
                           f"(found {len(cells)}, expected {len(names)})")
            if first:
                first = False
                if _is_title(cells):
                    continue
            parsed = [_value(name, cell) for name, cell in zip(names, cells, strict=True)]
            n = 1
            for p in parsed:
                n *= len(p)
            count += n
            if count > MAX_TUPLES:
                raise _Bad(f"more than {MAX_TUPLES} tuples (after expanding number lists)")
        except _Bad as exc:
            raise FlowError(f"--tuple-file {source}: line {lineno}: {exc}") from None
        if n == 1:
            for name, p in zip(names, parsed, strict=True):
                values[name].append(p[0])
        else:
            for combo in itertools.product(*parsed):
                for name, v in zip(names, combo, strict=True):
                    values[name].append(v)
    if not count:
        raise FlowError(f"--tuple-file {source}: no tuples")
    return TupleMatch(values, direction)


def _title(line, delimiter):
    try:
        return parse_fields(line.replace(delimiter, ","), "bad title line")
    except FlowError as exc:
        raise _Bad(f"{exc}; name the fields with --tuple-fields") from None


def _value(name, cell):
    try:
        return _address(cell) if name in ("sIP", "dIP") else _numbers(cell, LIMIT[name])
    except ValueError as exc:
        raise _Bad(f"bad {name} value '{cell}': {exc}") from None


_QUAD = re.compile(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?:/(\d{1,2}))?\Z", re.ASCII)


@functools.lru_cache(maxsize=1 << 16)
def _address(text):
    """[(128-bit value, prefix length)] of an address or CIDR block, IPv4 as ::ffff:0:0/96.
    A block whose prefix is not a multiple of 8 becomes the (at most 128) blocks of the next
    multiple: every prefix length costs a pass over the records, there are then at most 16.
    Plain dotted quads take a quick path; anything else, and every error, goes to addrs."""
    m = _QUAD.match(text)
    v = None
    if m:
        octets = [int(x) for x in m.groups()[:4]]
        p = int(m.group(5)) if m.group(5) else 32
        if max(octets) <= 255 and 1 <= p <= 32:
            v = octets[0] << 24 | octets[1] << 16 | octets[2] << 8 | octets[3]
            v, p = (v & ~((1 << (32 - p)) - 1)) | addrs.MAPPED, p + 96
    if v is None:
        v, p, v6 = addrs.parse_ip(text)
        if not v6:
            v, p = v | addrs.MAPPED, p + 96
    to = -(-p // 8) * 8
    return [(v | (i << (128 - to)), to) for i in range(1 << (to - p))]


@functools.lru_cache(maxsize=1 << 16)
def _numbers(text, limit):
    """The values of a number list: 'N', 'N-M', 'N-' (to limit), comma-separated."""
    if _digits(text) and int(text) <= limit:
        return (int(text),)
    out = []
    for item in text.split(","):
        item = item.strip()
        lo, dash, hi = item.partition("-")
        lo, hi = lo.strip(), hi.strip()
        if not _digits(lo) or (hi and not _digits(hi)):
            raise ValueError("not a number or range" if item else "empty value")
        a = int(lo)
        b = int(hi) if hi else (limit if dash else a)
        if max(a, b) > limit:
            raise ValueError(f"larger than {limit}")
        if a > b:
            raise ValueError(f"range {a}-{b} runs backwards")
        out.extend(range(a, b + 1))
    return tuple(dict.fromkeys(out))


def _digits(text):
    return text.isascii() and text.isdigit()


class TupleMatch(Predicate):
    """Records matching any tuple, in the direction(s) asked."""

    def __init__(self, values, direction="forward"):
        self.names = [n for n in NAMES if n in values]  # canonical order: keys are the same
        self.direction = direction
        cols = [COLUMN[n] for n in self.names]
        self.columns = tuple(dict.fromkeys(
            (cols if direction != "reverse" else []) +
            ([SWAP[c] for c in cols] if direction != "forward" else [])))
        m = len(values[self.names[0]])
        table = {}
        prefixes = {}
        for n in self.names:
            if n in ("sIP", "dIP"):
                pairs = values[n]
                table[COLUMN[n]] = np.array([[v >> 64, v & M64] for v, _ in pairs],
                                            U64).reshape(m, 2)
                prefixes[n] = np.array([p for _, p in pairs], np.int16)
            else:
                table[COLUMN[n]] = np.array(values[n], DTYPE[n])
        # one exact set per combination of address prefix lengths
        if prefixes:
            combo = np.stack([prefixes[n] for n in prefixes], axis=1)
            shapes, which = np.unique(combo, axis=0, return_inverse=True)
        else:
            shapes, which = np.zeros((1, 0), np.int16), np.zeros(m, np.intp)
        which = which.ravel()
        self.groups = []
        for g, shape in enumerate(shapes):
            plen = dict(zip(prefixes, (int(p) for p in shape), strict=True))
            rows = np.flatnonzero(which == g)
            sub = {c: v[rows] for c, v in table.items()}
            self.groups.append(_Group(self.names, plen, sub, len(rows)))

    def mask(self, batch):
        n = len(batch[self.columns[0]])
        out = np.zeros(n, bool)
        if n == 0:
            return out
        views = []
        if self.direction != "reverse":
            views.append(batch)
        if self.direction != "forward":
            views.append({SWAP[c]: batch[c] for c in self.columns})
        for cols in views:
            for group in self.groups:
                todo = np.flatnonzero(~out)
                if len(todo) == n:
                    out |= group.match(cols, n)
                elif len(todo):
                    sub = {c: cols[c][todo] for c in (COLUMN[x] for x in self.names)}
                    out[todo[group.match(sub, len(todo))]] = True
        return out


class _Group:
    """Tuples whose addresses have the same prefix lengths: an exact set of their keys."""

    def __init__(self, names, prefixes, table, m):
        self.names, self.prefixes = names, prefixes
        high, words = self._words(table)
        h = unique.hash_words(high, words, m)
        keys = unique.key_rows(high + words, m)
        reps = unique.first_in_batch(h, keys)
        self.set = unique.ExactSet()
        self.set.add(h[reps], keys[reps])

    def match(self, cols, n):
        high, words = self._words(cols)

        def keys(rows):  # most records miss on the hash alone: their keys are never built
            return unique.key_rows([w[rows] if np.ndim(w) else w for w in high + words],
                                   len(rows))

        return self.set.contains(unique.hash_words(high, words, n), keys)

    def _words(self, cols):
        """(high, other) uint64 words of the key, addresses masked to the group's prefixes;
        the tuples and the records go through this same function."""
        high, low, acc = [], [], None
        for n in self.names:
            v = cols[COLUMN[n]]
            if n in ("sIP", "dIP"):
                if v.ndim == 2:
                    hi, lo = v[:, 0], v[:, 1]
                else:  # an IPv4 batch: the same ::ffff:a.b.c.d form
                    hi, lo = U64(0), v.astype(U64) | U64(addrs.MAPPED)
                p = self.prefixes[n]
                if p < 64:
                    hi, lo = hi & U64((M64 << (64 - p)) & M64), U64(0)
                elif p < 128:
                    lo = lo & U64((M64 << (128 - p)) & M64)
                high.append(hi)
                low.append(lo)
            else:
                u = v.astype(U64)
                acc = u if acc is None else (acc << WIDTH[n]) | u
        return high, low + ([] if acc is None else [acc])
