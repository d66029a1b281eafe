"""Bags: a counter for each key, their algebra, building them from flows, and their files.

A Bag holds sorted, distinct keys and one unsigned 64-bit counter per key; a zero counter is
never stored. Its key is one SiLK field type (``sIPv4``, ``dPort``, ``sTime``...) or, beyond
SiLK, a composite of several (``sIPv4+dPort``). Keys are packed into 64-bit words so that
numeric order of the words is the order of the keys:

* a single key of at most 32 bits (every SiLK key but IPv6 addresses) is a uint32 column;
* otherwise the components are packed, most significant first, into W 64-bit words (an IPv6
  address takes two whole words): W == 1 gives a uint64 column, W > 1 an (n, W) uint64 array.
  An IPv6 single key is therefore the (n, 2) [hi, lo] layout IP sets use.

An IP bag is IPv4 or IPv6 as a whole (``ipv6``); IPv4 keys in an IPv6 bag are ::ffff:a.b.c.d.
Counters add with saturation at 2**64 - 1, as SiLK's do (``Bag.saturated`` says it happened).

Files: ``read_bag`` reads pyflow bag files and SiLK Bag files (silkbag.py); ``write_bag``
writes either. A pyflow bag file is the pyflow container (container.py) with metadata
``{"kind": "bag", "key": [type names], "counter": type name, "ipv6": bool, "compression":
"zstd"|"none", "history": [...], "notes": [...]}``; each block header is ``{"n": entries,
"cols": [...]}`` with the columns encoded as flow columns are (flowfile.encode_int): the key
words ``k0`` ... (``k0`` delta-encoded) and ``counter``; end markers carry ``{"records": n,
"blocks": B}``.
"""


import numpy as np
import zstandard

from . import container
from .errors import FlowError, FormatError

KIND = "bag"
BLOCK_ENTRIES = 1 << 17  # bounds the writer's temporary arrays
MAX64 = np.uint64(2**64 - 1)

# SiLK's field types (skBagFieldType_t): name -> (id, octets). 0 octets: not a key type here.
TYPES = {
    "sIPv4": (0, 4), "dIPv4": (1, 4), "sPort": (2, 2), "dPort": (3, 2), "protocol": (4, 1),
    "packets": (5, 4), "bytes": (6, 4), "flags": (7, 1), "sTime": (8, 4), "duration": (9, 4),
    "eTime": (10, 4), "sensor": (11, 2), "input": (12, 2), "output": (13, 2),
    "nhIPv4": (14, 4), "initialFlags": (15, 1), "sessionFlags": (16, 1),
    "attributes": (17, 1), "application": (18, 2), "class": (19, 1), "type": (20, 1),
    "icmpTypeCode": (24, 2), "sIPv6": (25, 16), "dIPv6": (26, 16), "nhIPv6": (27, 16),
    "records": (28, 8), "sum-packets": (29, 8), "sum-bytes": (30, 8),
    "sum-duration": (31, 8), "any-IPv4": (32, 4), "any-IPv6": (33, 16), "any-port": (34, 2),
    "any-snmp": (35, 2), "any-time": (36, 4), "sip-country": (37, 2), "dip-country": (38, 2),
    "any-country": (39, 2), "sip-pmap": (40, 4), "dip-pmap": (41, 4), "any-ip-pmap": (42, 4),
    "sport-pmap": (43, 4), "dport-pmap": (44, 4), "any-port-pmap": (45, 4), "custom": (255, 4),
}
BY_ID = {v[0]: k for k, v in TYPES.items()}
IP_TYPES = {"sIPv4", "dIPv4", "nhIPv4", "any-IPv4", "sIPv6", "dIPv6", "nhIPv6", "any-IPv6"}
TO_V6 = {"sIPv4": "sIPv6", "dIPv4": "dIPv6", "nhIPv4": "nhIPv6", "any-IPv4": "any-IPv6"}
TO_V4 = {v: k for k, v in TO_V6.items()}
TIME_TYPES = {"sTime", "eTime", "any-time"}
FLAG_TYPES = {"flags", "initialFlags", "sessionFlags"}
COUNTER_TYPES = ("records", "sum-packets", "sum-bytes", "sum-duration")

# Families whose merge (skBagFieldTypeMerge) is the family's "any" type.
_FAMILIES = [
    ({"sIPv4", "dIPv4", "nhIPv4", "any-IPv4"}, "any-IPv4"),
    ({"sPort", "dPort", "any-port"}, "any-port"),
    ({"input", "output", "any-snmp"}, "any-snmp"),
    ({"packets", "sum-packets"}, "sum-packets"),
    ({"bytes", "sum-bytes"}, "sum-bytes"),
    ({"flags", "initialFlags", "sessionFlags"}, "flags"),
    ({"sTime", "eTime", "any-time", "duration", "sum-duration"}, "any-time"),
]


def merge_type(a, b):
    """The type of a bag combined from bags of types a and b (as SiLK's rwbagtool)."""
    if a == b:
        return a
    if a in IP_TYPES and b in IP_TYPES:
        v6 = a in TO_V4 or b in TO_V4
        return "any-IPv6" if v6 else "any-IPv4"
    for members, merged in _FAMILIES:
        if a in members and b in members and a not in ("duration", "sum-duration"):
            return merged
    return "custom"


def lookup_type(text, option, allowed=None):
    """A field type by name, case-insensitive, exact or a unique prefix."""
    names = allowed if allowed is not None else TYPES
    low = text.strip().lower()
    exact = [n for n in names if n.lower() == low]
    if exact:
        return exact[0]
    hits = [n for n in names if n.lower().startswith(low)] if low else []
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise FlowError(f"invalid {option} value '{text}': ambiguous ({', '.join(hits)})")
    raise FlowError(f"invalid {option} value '{text}': unknown type")


# --- key layout -------------------------------------------------------------------------


def component_bits(name, ipv6):
    if name in IP_TYPES or name == "custom":
        return 128 if ipv6 else 32
    return 8 * TYPES[name][1]


class Layout:
    """Where each component of a key lives in the packed words: (word, shift, bits) parts;
    an IPv6 component has two parts (hi then lo), each a whole word."""

    def __init__(self, names, ipv6):
        self.names, self.ipv6 = tuple(names), bool(ipv6)
        self.parts, words, used = [], 0, 64
        single = len(self.names) == 1
        for name in self.names:
            # a lone key takes 32 bits whatever its type: SiLK widens a bag's keys when a
            # larger value arrives (a dPort bag keeps the key 65536)
            bits = component_bits(name, ipv6)
            bits = 32 if single and bits < 32 else bits
            pieces = [64, 64] if bits == 128 else [bits]
            comp = []
            for b in pieces:
                if used + b > 64:
                    words, used = words + 1, 0
                comp.append((words - 1, used, b))
                used += b
            self.parts.append(comp)
        self.words = words
        # shifts so far count from the word's top; turn them into shifts from the bottom
        fill = {}
        for comp in self.parts:
            for w, at, b in comp:
                fill[w] = max(fill.get(w, 0), at + b)
        self.parts = [[(w, fill[w] - at - b, b) for w, at, b in comp] for comp in self.parts]
        self.narrow = self.words == 1 and fill[0] <= 32

    def empty(self, n=0):
        if self.narrow:
            return np.zeros(n, np.uint32)
        if self.words == 1:
            return np.zeros(n, np.uint64)
        return np.zeros((n, self.words), np.uint64)

    def pack(self, columns):
        """Packed keys from one column per component (IPv6: (n, 2) uint64)."""
        n = len(columns[0]) if columns else 0
        out = np.zeros((n, self.words), np.uint64)
        for comp, col in zip(self.parts, columns, strict=True):
            col = np.asarray(col)
            values = [col[:, 0], col[:, 1]] if len(comp) == 2 else [col]
            for (w, shift, bits), v in zip(comp, values, strict=True):
                v = v.astype(np.uint64)
                if bits < 64:
                    v = v & np.uint64((1 << bits) - 1)
                out[:, w] |= v << np.uint64(shift) if shift else v
        return self.shape(out)

    def shape(self, words2d):
        if self.narrow:
            return words2d[:, 0].astype(np.uint32)
        if self.words == 1:
            return np.ascontiguousarray(words2d[:, 0])
        return np.ascontiguousarray(words2d)

    def words2d(self, keys):
        return keys.astype(np.uint64).reshape(len(keys), self.words)

    def unpack(self, keys):
        """One column per component: uint64, or (n, 2) uint64 for IPv6 addresses."""
        w2 = self.words2d(keys)
        out = []
        for comp in self.parts:
            vals = []
            for w, shift, bits in comp:
                v = w2[:, w] >> np.uint64(shift) if shift else w2[:, w]
                if bits < 64:
                    v = v & np.uint64((1 << bits) - 1)
                vals.append(v)
            out.append(np.stack(vals, 1) if len(vals) == 2 else vals[0])
        return out


# --- sorting and reducing ---------------------------------------------------------------


def _order(keys):
    """A permutation sorting keys (not stable: equal keys are summed anyway)."""
    from .aggregate import group_order
    if keys.ndim == 1:
        return np.argsort(keys)
    return group_order([keys[:, i] for i in range(keys.shape[1])])


def _starts(sorted_keys):
    """Index of the first entry of each run of equal keys."""
    n = len(sorted_keys)
    if n == 0:
        return np.zeros(0, np.intp)
    if sorted_keys.ndim == 1:
        new = sorted_keys[1:] != sorted_keys[:-1]
    else:
        new = (sorted_keys[1:] != sorted_keys[:-1]).any(axis=1)
    return np.flatnonzero(np.r_[True, new])


def sum_runs(counters, starts):
    """Sums of counters over runs beginning at starts, saturating at 2**64 - 1; (sums,
    saturated?)."""
    counters = counters.astype(np.uint64, copy=False)
    if len(counters) == 0:
        return counters[:0], False
    top = int(counters.max())
    if top == 0 or top < (2**64 - 1) // len(counters):
        return np.add.reduceat(counters, starts), False
    lo = np.add.reduceat(counters & np.uint64(0xFFFFFFFF), starts)
    hi = np.add.reduceat(counters >> np.uint64(32), starts)
    # hi * 2**32 + lo overflows when hi >= 2**32 or the addition carries past 64 bits
    hi_part = hi << np.uint64(32)
    total = hi_part + lo
    over = (hi >= np.uint64(1 << 32)) | (total < hi_part)
    total[over] = MAX64
    return total, bool(over.any())


def add_saturating(a, b):
    s = a + b
    over = s < a
    if over.any():
        s[over] = MAX64
        return s, True
    return s, False


def reduce(keys, counters):
    """Sorted distinct keys and the summed counter of each; (keys, counters, saturated)."""
    if len(keys) == 0:
        return keys, counters.astype(np.uint64), False
    order = _order(keys)
    k = keys[order]
    starts = _starts(k)
    sums, sat = sum_runs(counters[order], starts)
    return k[starts], sums, sat


def count(keys):
    """Sorted distinct keys and how often each occurs (the records counter: no argsort)."""
    if keys.ndim == 1:
        k = np.sort(keys)
        starts = _starts(k)
        counts = np.diff(np.r_[starts, len(k)]).astype(np.uint64)
        return k[starts], counts
    # Keys whose leading words are zero (IPv4 addresses in an IPv6 bag) sort first and
    # are counted by their last word alone; only the others need a multi-word sort.
    zero = ~keys[:, :-1].any(axis=1)
    k, c = count(keys[zero, -1])
    low = np.zeros((len(k), keys.shape[1]), keys.dtype)
    low[:, -1] = k
    if zero.all():
        return low, c
    rk, rc, _ = reduce(keys[~zero], np.ones(len(keys) - int(zero.sum()), np.uint64))
    return np.concatenate([low, rk]), np.concatenate([c, rc])


def merge_sorted(ak, ac, bk, bc):
    """Two sorted distinct key sets merged, counters of common keys added (saturating).
    For 1-D keys this is an in-place insert by binary search (no full re-sort)."""
    if len(bk) == 0:
        return ak, ac, False
    if len(ak) == 0:
        return bk, bc, False
    if ak.ndim == 1:
        pos = np.searchsorted(ak, bk)
        hit = pos < len(ak)
        hit[hit] = ak[pos[hit]] == bk[hit]
        sat = False
        if hit.any():
            ac = ac.copy() if not ac.flags.writeable else ac
            ac[pos[hit]], sat = add_saturating(ac[pos[hit]], bc[hit])
        miss = ~hit
        if miss.any():
            # one placement mask for keys and counters (np.insert builds its own for
            # each, and the peak of a large bag's merge is what bounds its memory)
            at = pos[miss]  # sorted: each new key's place in the merged arrays is its
            at += np.arange(len(at))  # position among the old ones plus its rank
            old = np.ones(len(ak) + len(at), bool)
            old[at] = False
            merged = np.empty(len(old), ak.dtype)
            merged[old], merged[at] = ak, bk[miss]
            ak = merged
            merged = np.empty(len(old), np.uint64)
            merged[old], merged[at] = ac, bc[miss]
            ac = merged
        return ak, ac, sat
    na, nb = _zero_lead(ak), _zero_lead(bk)
    if na or nb:
        # Keys whose leading words are zero (IPv4 addresses in an IPv6 bag) sort first:
        # merge their last words by binary search, and re-sort only the rest.
        lk, lc, s1 = merge_sorted(ak[:na, -1], ac[:na], bk[:nb, -1], bc[:nb])
        rk, rc, s2 = merge_sorted(ak[na:], ac[na:], bk[nb:], bc[nb:]) \
            if na < len(ak) or nb < len(bk) else (ak[:0], ac[:0], False)
        low = np.zeros((len(lk), ak.shape[1]), ak.dtype)
        low[:, -1] = lk
        return np.concatenate([low, rk]), np.concatenate([lc, rc]), s1 or s2
    if ak.dtype == np.uint64 and bk.dtype == np.uint64:
        # (n, words) keys as one big-endian byte string each sort as the rows do, and
        # merge by the same binary search (a re-sort had cost 15x as much: a sixth of
        # pyflow-bag's merging of its workers' bags on the bench archive)
        k, c, sat = merge_sorted(_as_bytes(ak), ac, _as_bytes(bk), bc)
        return k.view(np.uint64).reshape(len(k), ak.shape[1]).byteswap(), c, sat
    keys = np.concatenate([ak, bk])
    k, c, sat = reduce(keys, np.concatenate([ac, bc]))
    return k, c, sat


def _as_bytes(keys):
    """Sorted (n, words) uint64 keys as n big-endian byte strings, in the same order."""
    return np.ascontiguousarray(keys).byteswap().view(f"S{8 * keys.shape[1]}").reshape(-1)


def _zero_lead(sorted_keys):
    """How many of the sorted (n, words) keys have every word but the last zero."""
    lead = sorted_keys[:, :-1]
    nz = np.flatnonzero(lead.any(axis=1))
    return int(nz[0]) if len(nz) else len(sorted_keys)


# --- the bag ----------------------------------------------------------------------------


class Bag:
    """Sorted distinct keys with uint64 counters (see the module doc)."""

    def __init__(self, key=("custom",), counter="custom", ipv6=False, keys=None,
                 counters=None, meta=None):
        self.key = tuple(key)
        self.counter = counter
        self.ipv6 = bool(ipv6) and any(k in IP_TYPES or k == "custom" for k in self.key)
        self.layout = Layout(self.key, self.ipv6)
        self.keys = self.layout.empty() if keys is None else keys
        self.counters = np.zeros(0, np.uint64) if counters is None else counters
        self.meta = dict(meta or {})
        self.saturated = False

    # --- facts

    def __len__(self):
        return len(self.counters)

    def __repr__(self):
        return f"Bag({'+'.join(self.key)}, {self.counter}, {len(self)} keys" + \
            (", IPv6" if self.ipv6 else "") + ")"

    def __eq__(self, other):
        if not isinstance(other, Bag):
            return NotImplemented
        a, b = _pair(self, other)
        return a.key == b.key and np.array_equal(a.keys, b.keys) and \
            np.array_equal(a.counters, b.counters)

    __hash__ = None

    @property
    def composite(self):
        return len(self.key) > 1

    @property
    def is_ip(self):
        """A single IP-address key (custom keys count: SiLK prints them as addresses)."""
        return not self.composite and (self.key[0] in IP_TYPES or self.key[0] == "custom")

    @property
    def type_name(self):
        return "+".join(self.key)

    def copy_with(self, keys, counters, key=None, counter=None):
        out = Bag(key or self.key, counter or self.counter, self.ipv6, keys, counters,
                  self.meta)
        return out

    def total(self):
        """The sum of the counters, a Python int."""
        c = self.counters
        return int((c >> np.uint64(32)).sum(dtype=np.uint64)) * 2**32 + \
            int((c & np.uint64(0xFFFFFFFF)).sum(dtype=np.uint64))

    # --- family

    def to_v6(self):
        if self.ipv6:
            return self
        if not any(k in IP_TYPES or k == "custom" for k in self.key):
            return self
        cols = self.layout.unpack(self.keys)
        key = tuple(TO_V6.get(k, k) for k in self.key)
        out = []
        for name, col in zip(self.key, cols, strict=True):
            if name in IP_TYPES or name == "custom":
                v = np.zeros((len(col), 2), np.uint64)
                v[:, 1] = col | np.uint64(0xFFFF00000000)
                col = v
            out.append(col)
        lay = Layout(key, True)
        return Bag(key, self.counter, True, lay.pack(out) if len(self) else lay.empty(),
                   self.counters, self.meta)

    def ipv4_only(self):
        if not self.ipv6:
            return True
        cols = self.layout.unpack(self.keys)
        for _name, col in zip(self.key, cols, strict=True):
            if col.ndim == 2 and len(col):
                if not ((col[:, 0] == 0) & ((col[:, 1] >> np.uint64(32)) == 0xFFFF)).all():
                    return False
        return True

    def to_v4(self):
        """The same bag with IPv4 keys; FlowError when an IPv6 key is not IPv4-mapped."""
        if not self.ipv6:
            return self
        if not self.ipv4_only():
            raise FlowError("the bag holds IPv6 keys, so it cannot be an IPv4 bag")
        cols = [c[:, 1] & np.uint64(0xFFFFFFFF) if c.ndim == 2 else c
                for c in self.layout.unpack(self.keys)]
        key = tuple(TO_V4.get(k, k) for k in self.key)
        lay = Layout(key, False)
        return Bag(key, self.counter, False, lay.pack(cols) if len(self) else lay.empty(),
                   self.counters, self.meta)

    # --- filters

    def take(self, mask):
        return self.copy_with(self.keys[mask], self.counters[mask])

    def key_values(self):
        """The keys as Python-comparable numbers for --minkey/--maxkey: uint64 for
        single keys up to 64 bits, else None."""
        if self.keys.ndim == 1:
            return self.keys.astype(np.uint64)
        return None

    def between_keys(self, lo=None, hi=None):
        """Entries whose key is in [lo, hi] (ints; IPv6 keys compare as 128-bit ints)."""
        mask = np.ones(len(self), bool)
        if lo is None and hi is None:
            return self
        if self.keys.ndim == 1:
            k = self.keys.astype(np.uint64)
            if lo is not None:
                mask &= k >= np.uint64(min(lo, 2**64 - 1)) if lo < 2**64 else False
            if hi is not None and hi < 2**64:
                mask &= k <= np.uint64(hi)
            return self.take(mask)
        w2 = self.keys.reshape(len(self), -1)
        if w2.shape[1] != 2:
            raise FlowError("--minkey/--maxkey need a single-field key")
        hi_w, lo_w = w2[:, 0], w2[:, 1]
        if lo is not None:
            lh, ll = np.uint64(lo >> 64), np.uint64(lo & (2**64 - 1))
            mask &= (hi_w > lh) | ((hi_w == lh) & (lo_w >= ll))
        if hi is not None:
            hh, hl = np.uint64(hi >> 64), np.uint64(hi & (2**64 - 1))
            mask &= (hi_w < hh) | ((hi_w == hh) & (lo_w <= hl))
        return self.take(mask)

    def between_counters(self, lo=None, hi=None):
        mask = np.ones(len(self), bool)
        if lo is not None:
            mask &= self.counters >= np.uint64(lo)
        if hi is not None:
            mask &= self.counters <= np.uint64(hi)
        return self.take(mask) if not mask.all() else self

    def ip_column(self, what="--intersect"):
        """The keys as addresses (uint32, or (n, 2) uint64); FlowError for non-IP keys."""
        if not self.is_ip:
            raise FlowError(f"{what} needs a bag whose keys are IP addresses "
                            f"(this bag's keys are {self.type_name})")
        return self.keys

    def masked(self, ipset, keep=True, what="--intersect"):
        """Entries whose key is (keep) or is not (not keep) in an IP set."""
        col = self.ip_column(what)
        if self.ipv6 or ipset.is_ipv6:
            from .ipset import IPSet
            s = ipset.to_v6() if self.ipv6 else ipset
            if not self.ipv6:  # an IPv4 bag against an IPv6 set: only its mapped part
                try:
                    s = ipset.to_v4()
                except FlowError:
                    v4s, v4e = ipset.v4_part()
                    s = IPSet(v4s, v4e, False)
            hit = s.contains(col)
        else:
            hit = ipset.contains(col)
        return self.take(hit if keep else ~hit)

    def coverset(self):
        """The IP set of the keys."""
        from .ipset import IPSet
        col = self.ip_column("--coverset")
        if len(col) == 0:  # IPSet.from_addresses fails on an empty IPv6 column
            return IPSet.empty(self.ipv6)
        return IPSet.from_sorted(col, self.ipv6)  # a bag's keys are sorted and distinct

    # --- single-bag operations

    def scalar_multiply(self, value):
        c = self.counters
        if len(c) == 0:
            return self
        limit = (2**64 - 1) // value
        over = c > np.uint64(limit)
        out = c * np.uint64(value)
        out[over] = MAX64
        res = self.copy_with(self.keys, out)
        res.saturated = bool(over.any())
        return res

    def invert(self):
        """A bag whose keys are the counters (clamped to 32 bits, as SiLK) and whose
        counter is how many keys had that counter."""
        c = np.minimum(self.counters, np.uint64(2**32 - 1)).astype(np.uint32)
        k, n = count(c)
        return Bag(("custom",), "records", False, k, n, self.meta)


def _pair(a, b):
    """Two bags in the same key family (IPv4 promoted to IPv6 when the other is)."""
    if len(a.key) != len(b.key):
        raise FlowError(f"cannot combine a {a.type_name} bag with a {b.type_name} bag")
    if a.ipv6 != b.ipv6:
        return a.to_v6(), b.to_v6()
    if a.layout.words != b.layout.words or a.layout.narrow != b.layout.narrow:
        raise FlowError(f"cannot combine a {a.type_name} bag with a {b.type_name} bag")
    return a, b


def _merged_meta(a, b, merge=True):
    if not merge:  # rwbagtool keeps the first bag's types for min, max and compare
        return a.key, a.counter
    key = tuple(merge_type(x, y) for x, y in zip(a.key, b.key, strict=True))
    return key, merge_type(a.counter, b.counter)


def _align(a, b):
    """Union of keys with both bags' counters (0 where absent), plus membership masks."""
    keys = np.concatenate([a.keys, b.keys])
    if len(keys) == 0:
        z = np.zeros(0, np.uint64)
        return a.keys, z, z, np.zeros(0, bool), np.zeros(0, bool)
    order = _order(keys)
    k = keys[order]
    starts = _starts(k)
    which = (order >= len(a)).astype(np.int8)
    ca = np.concatenate([a.counters, np.zeros(len(b), np.uint64)])[order]
    cb = np.concatenate([np.zeros(len(a), np.uint64), b.counters])[order]
    ina = np.logical_or.reduceat(which == 0, starts)
    inb = np.logical_or.reduceat(which == 1, starts)
    return k[starts], np.add.reduceat(ca, starts), np.add.reduceat(cb, starts), ina, inb


def _result(a, b, keys, counters, merge=True):
    key, ctr = _merged_meta(a, b, merge)
    nz = counters != 0
    out = Bag(key, ctr, a.ipv6, keys[nz] if not nz.all() else keys,
              counters[nz] if not nz.all() else counters, a.meta)
    return out


def add(a, b):
    a, b = _pair(a, b)
    k, ca, cb, _, _ = _align(a, b)
    s, sat = add_saturating(ca, cb)
    out = _result(a, b, k, s)
    out.saturated = sat or a.saturated or b.saturated
    return out


def subtract(a, b):
    """a - b per key; a key whose counter would go to 0 or below is removed."""
    a, b = _pair(a, b)
    k, ca, cb, ina, _ = _align(a, b)
    keep = ina & (ca > cb)
    return _result(a, b, k[keep], (ca - cb)[keep])


def minimize(a, b):
    """The smaller counter of each key (a key missing from either bag counts 0)."""
    a, b = _pair(a, b)
    k, ca, cb, _, _ = _align(a, b)
    return _result(a, b, k, np.minimum(ca, cb), merge=False)


def maximize(a, b):
    a, b = _pair(a, b)
    k, ca, cb, _, _ = _align(a, b)
    return _result(a, b, k, np.maximum(ca, cb), merge=False)


def divide(a, b):
    """a / b per key, rounded half up; keys only in b are ignored, keys only in a are an
    error (division by zero), as SiLK's rwbagtool --divide."""
    a, b = _pair(a, b)
    k, ca, cb, ina, inb = _align(a, b)
    lonely = ina & ~inb
    if lonely.any():
        raise FlowError("error dividing bags: key " +
                        format_key_text(Bag(a.key, a.counter, a.ipv6, k[lonely][:1],
                                            ca[lonely][:1])) + " is not in the divisor bag")
    k, ca, cb = k[ina], ca[ina], cb[ina]
    q, r = ca // cb, ca % cb
    q = q + (r >= (cb >> np.uint64(1)) + (cb & np.uint64(1))).astype(np.uint64)
    return _result(a, b, k, q)


COMPARISONS = {"lt": np.less, "le": np.less_equal, "eq": np.equal, "ge": np.greater_equal,
               "gt": np.greater}


def compare(a, b, op):
    """Keys in both bags whose counters compare true, each with counter 1."""
    a, b = _pair(a, b)
    k, ca, cb, ina, inb = _align(a, b)
    keep = ina & inb & COMPARISONS[op](ca, cb)
    return _result(a, b, k[keep], np.ones(int(keep.sum()), np.uint64), merge=False)


def format_key_text(bag):
    """The text of the first key (for messages)."""
    cols = bag.layout.unpack(bag.keys[:1])
    parts = []
    for name, col in zip(bag.key, cols, strict=True):
        v = col[0]
        if col.ndim == 2:
            from .text import ipv6_text
            parts.append(ipv6_text(int(v[0]), int(v[1])))
        elif name in IP_TYPES or name == "custom":
            import ipaddress
            parts.append(str(ipaddress.IPv4Address(int(v))))
        else:
            parts.append(str(int(v)))
    return "+".join(parts)


# --- building bags from flows --------------------------------------------------------------


class Builder:
    """Accumulates (keys, counters) pieces into a bag in bounded memory: each piece is
    reduced at once, reduced pieces wait in a list, and they are merged into the sorted
    result when they reach an eighth of its size (at least MERGE_MIN entries).

    In an IPv6 bag of one address key, the IPv4 addresses (::ffff:0:0/96) are held as
    32-bit values apart from the others until the bag is made: a bag that turned IPv6
    because a few IPv6 records arrived costs little more than an IPv4 one."""

    MERGE_MIN = 1 << 16
    _MAPPED = np.uint64(0xFFFF00000000)

    def __init__(self, key, counter, ipv6=False):
        self.key, self.counter = tuple(key), counter
        self.ipv6 = ipv6
        self.layout = Layout(self.key, ipv6)
        self.keys = self.layout.empty()
        self.counters = np.zeros(0, np.uint64)
        self.pending, self.pending_n = [], 0
        self.split = len(self.key) == 1 and (self.key[0] in IP_TYPES or self.key[0] == "custom")
        self.keys4 = np.zeros(0, np.uint32)  # the IPv4 part of an IPv6 address bag
        self.counters4 = np.zeros(0, np.uint64)
        self.saturated = False

    def promote_v6(self):
        """Switch to IPv6 keys (an IPv6 record arrived in an IPv4 address bag)."""
        if self.ipv6:
            return
        self.flush()
        if self.split:
            self.keys4, self.counters4 = self.keys.astype(np.uint32), self.counters
            self.key = tuple(TO_V6.get(k, k) for k in self.key)
            self.ipv6, self.layout = True, Layout(self.key, True)
            self.keys, self.counters = self.layout.empty(), np.zeros(0, np.uint64)
            return
        bag = Bag(self.key, self.counter, False, self.keys, self.counters).to_v6()
        self.key, self.ipv6, self.layout = bag.key, True, bag.layout
        self.keys, self.counters = bag.keys, bag.counters

    def add_counts(self, keys, counts):
        """A piece already reduced (sorted distinct keys)."""
        if len(keys) == 0:
            return
        self.pending_n += len(keys)
        if self.split and self.ipv6 and keys.ndim == 2:
            v4 = (keys[:, 0] == 0) & ((keys[:, 1] >> np.uint64(32)) == np.uint64(0xFFFF))
            if v4.any():
                # sorted IPv6-form keys keep their IPv4 part sorted by its low word
                self.pending.append((keys[v4, 1].astype(np.uint32), counts[v4]))
                keys, counts = keys[~v4], counts[~v4]
        if len(keys):
            self.pending.append((keys, counts))
        if self.pending_n >= max(self.MERGE_MIN, (len(self.keys) + len(self.keys4)) // 8):
            self.flush()

    def add(self, keys, counters=None):
        """Raw keys with their counters (None: count 1 each)."""
        if len(keys) == 0:
            return
        if counters is None:
            k, c = count(keys)
        else:
            k, c, sat = reduce(keys, counters)
            self.saturated |= sat
        self.add_counts(k, c)

    def flush(self):
        if not self.pending:
            return
        narrow = [p for p in self.pending if p[0].ndim == 1 and p[0].dtype == np.uint32
                  and self.ipv6 and self.split]
        wide = [p for p in self.pending if not (p[0].ndim == 1 and p[0].dtype == np.uint32
                                                and self.ipv6 and self.split)]
        self.pending, self.pending_n = [], 0
        if narrow:
            self.keys4, self.counters4 = self._merge(self.keys4, self.counters4, narrow)
        if wide:
            self.keys, self.counters = self._merge(self.keys, self.counters, wide)

    def _merge(self, keys, counters, pieces):
        if len(pieces) == 1:
            k, c = pieces[0]
        else:
            k, c, sat = reduce(np.concatenate([p[0] for p in pieces]),
                               np.concatenate([p[1] for p in pieces]))
            self.saturated |= sat
        keys, counters, sat = merge_sorted(keys, counters, k, c)
        self.saturated |= sat
        return keys, counters

    def _joined(self):
        """The IPv6 keys with the IPv4 part put back in its place (::ffff:0:0/96)."""
        n4 = len(self.keys4)
        if not n4:
            return self.keys, self.counters
        k, c = self.keys, self.counters
        # keys before ::ffff:0.0.0.0 are those with a zero high word and a smaller low word
        zero = _zero_lead(k) if len(k) else 0
        at = int(np.searchsorted(k[:zero, 1], self._MAPPED)) if zero else 0
        keys = np.empty((len(k) + n4, 2), np.uint64)
        counters = np.empty(len(k) + n4, np.uint64)
        keys[:at], counters[:at] = k[:at], c[:at]
        keys[at:at + n4, 0] = 0
        np.bitwise_or(self.keys4, self._MAPPED, out=keys[at:at + n4, 1], dtype=np.uint64)
        counters[at:at + n4] = self.counters4
        keys[at + n4:], counters[at + n4:] = k[at:], c[at:]
        self.keys4, self.counters4 = self.keys4[:0], self.counters4[:0]
        return keys, counters

    def chunks(self, size=None):
        """The bag's (keys, counters) in key order, at most size entries at a time and
        without zero counters, never joined whole: a writer that takes them holds no
        copy of the bag (bag() makes one)."""
        self.flush()
        size = size or BLOCK_ENTRIES
        k, c = self.keys, self.counters
        at = 0
        if len(self.keys4):
            zero = _zero_lead(k) if len(k) else 0
            at = int(np.searchsorted(k[:zero, 1], self._MAPPED)) if zero else 0
        segments = [(k[:at], c[:at], False), (self.keys4, self.counters4, True),
                    (k[at:], c[at:], False)]
        for keys, counters, mapped in segments:
            for lo in range(0, len(keys), size):
                part, ctr = keys[lo:lo + size], counters[lo:lo + size]
                if mapped:
                    wide = np.zeros((len(part), 2), np.uint64)
                    np.bitwise_or(part, self._MAPPED, out=wide[:, 1], dtype=np.uint64)
                    part = wide
                nz = ctr != 0
                if not nz.all():
                    part, ctr = part[nz], ctr[nz]
                if len(part):
                    yield part, ctr

    def bag(self, meta=None):
        self.flush()
        self.keys, self.counters = self._joined()
        nz = self.counters != 0
        keys, ctr = (self.keys, self.counters) if nz.all() else \
            (self.keys[nz], self.counters[nz])
        out = Bag(self.key, self.counter, self.ipv6, keys, ctr, meta)
        out.saturated = self.saturated
        return out


# --- files --------------------------------------------------------------------------------


def read_bag(source, name=None):
    """A Bag from a pyflow or SiLK bag file: a path or a binary file object."""
    return container.read_source(source, name, _read)


def _read(f, name):
    from . import silkbag
    return container.sniff(f, name, "a bag", _read_pyflow, silkbag.MAGIC, silkbag.read)


def _read_pyflow(f, name, prefix):
    from . import flowfile
    header = container.read_header(f, name, prefix)
    meta = header.meta
    if meta.get("kind") != KIND:
        raise FormatError(f"{name}: not a bag file (it holds a {meta.get('kind')})")
    if meta.get("compression") not in ("zstd", "none"):
        raise FormatError(f"{name}: unknown compression {meta.get('compression')!r}")
    try:
        key = tuple(meta["key"])
        counter = meta["counter"]
        if not key or any(k not in TYPES for k in key) or counter not in TYPES:
            raise ValueError
        layout = Layout(key, meta.get("ipv6") is True)
    except (KeyError, TypeError, ValueError):
        raise FormatError(f"{name}: corrupt bag header (key or counter type)") from None
    dctx = zstandard.ZstdDecompressor() if meta["compression"] == "zstd" else None
    frames = container.FrameReader(f, name, header)
    keys, counters, blocks = [], [], 0
    while True:
        frame = frames.next_frame()
        if frame is None:
            break
        kind, head, _ = frame
        if kind == container.END:
            continue
        where = f"{name}: bag block {blocks}"
        try:
            n, cols = head["n"], head["cols"]
            if type(n) is not int or n < 0 or len(cols) != layout.words + 1:
                raise ValueError
            payload = frames.read_payload(sum(c[5] for c in cols))
            at, words = 0, []
            for _i, desc in enumerate(cols):
                if desc[7] != n:
                    raise ValueError
                data = payload[at:at + desc[5]]
                at += desc[5]
                col = flowfile.decode_int(desc, data, n, np.dtype(np.uint64), dctx, where)
                words.append(np.asarray(col, np.uint64))
            keys.append(layout.shape(np.stack(words[:-1], 1)))
            counters.append(words[-1])
        except FormatError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, OverflowError, MemoryError):
            raise FormatError(f"{where}: corrupt block") from None
        blocks += 1
    k = np.concatenate(keys) if keys else layout.empty()
    c = np.concatenate(counters) if counters else np.zeros(0, np.uint64)
    if len(k) > 1:
        # strictly increasing (rows: as big-endian byte strings, in one pass, where a
        # sort to compare against had been half of reading a large IPv6 bag)
        s = k if k.ndim == 1 else _as_bytes(k)
        if not np.all(s[1:] > s[:-1]):
            raise FormatError(f"{name}: corrupt bag data (keys out of order)")
    out = Bag(key, counter, layout.ipv6, k, c,
              {"history": list(meta.get("history") or []),
               "notes": list(meta.get("notes") or []), "format": "pyflow"})
    return out


def encode_blocks(bag, level=3):
    return encode_chunks(bag.layout, ((bag.keys[at:at + BLOCK_ENTRIES],
                                       bag.counters[at:at + BLOCK_ENTRIES])
                                      for at in range(0, len(bag), BLOCK_ENTRIES)), level)


def encode_chunks(layout, chunks, level=3):
    """(block header, payload) for each (keys, counters) chunk, in order."""
    from . import flowfile
    cctx = zstandard.ZstdCompressor(level=level) if level is not None else None
    for keys, counters in chunks:
        # widened block by block: a whole-bag copy would double the writer's memory
        part = layout.words2d(keys)
        cols = [np.ascontiguousarray(part[:, i]) for i in range(part.shape[1])]
        cols.append(counters)
        descs, data = [], []
        for i, col in enumerate(cols):
            last = i == len(cols) - 1
            desc, payload = flowfile.encode_int("counter" if last else f"k{i}", col, cctx,
                                                delta=(i == 0))
            descs.append(desc)
            data.append(payload)
        yield {"n": len(part), "cols": descs}, b"".join(data)


def write_pyflow(bag, f, history=(), notes=(), level=3, chunks=None):
    """A bag in pyflow's format; chunks, when given, are its (keys, counters) in order
    (Builder.chunks), used in place of bag.keys and bag.counters."""
    meta = {"kind": KIND, "key": list(bag.key), "counter": bag.counter,
            "ipv6": bool(bag.ipv6), "compression": "zstd" if level is not None else "none",
            "history": list(history), "notes": list(notes)}
    f.write(container.header_bytes(meta))
    blocks = records = 0
    frames = encode_blocks(bag, level) if chunks is None else \
        encode_chunks(bag.layout, chunks, level)
    for header, payload in frames:
        f.write(container.frame_bytes(container.BLOCK, header))
        f.write(payload)
        blocks += 1
        records += header["n"]
    f.write(container.frame_bytes(container.END, {"records": records, "blocks": blocks}))


def write_bag(bag, path, format="pyflow", history=(), notes=(), compression=None):
    """Write a bag to a path (atomically), '-'/'stdout' or a named pipe; format "pyflow"
    (compression zstd or none) or "silk" (none or zlib). bag may be a Builder: a pyflow
    file is then written from its parts, without a joined copy of the bag."""
    from . import io
    chunks = None
    if isinstance(bag, Builder):
        if format == "pyflow":
            builder, bag = bag, Bag(bag.key, bag.counter, bag.ipv6)
            chunks = builder.chunks()
        else:
            bag = bag.bag()
    if format not in ("pyflow", "silk"):
        raise FlowError(f"unknown bag format '{format}'")
    if format == "silk" and bag.composite:
        raise FlowError(f"a bag with the composite key {bag.type_name} cannot be written "
                        "as a SiLK Bag (SiLK bags have one key field); use the pyflow "
                        "format")
    out = io.Output(path)
    try:
        if format == "pyflow":
            write_pyflow(bag, out.f, history, notes,
                         level=None if compression == "none" else 3, chunks=chunks)
            if out.seekable:
                container.commit(out.f, out.f.tell(), None)
        else:
            from . import silkbag
            silkbag.write(bag, out.f, compression or "none", history, notes)
        out.commit()
    except BaseException:
        out.abort()
        raise
