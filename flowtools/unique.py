"""The first record seen for each distinct key: pyflow-filter's ``--unique=FIELDS``.

SiLK finds sources that contacted a single destination with its Bloom-filter plug-in; here
FirstSeen passes the first record of every distinct combination of FIELDS over a whole run.

A key is the fields' values packed into 64-bit words. Addresses are always the 128-bit
::ffff:a.b.c.d form (high word first), so an IPv4 address has one key whether it arrives in
an IPv4 or an IPv6 batch. Keys are hashed to 64 bits by chaining CityHash's Hash128to64 mix
(multiply and xor-shift) over pairs of words, all in numpy. Within a batch, records are
grouped by sorting the hashes, so only a key's first occurrence can pass; across batches a
set remembers the keys seen:

- BloomSet (the default) answers "seen" for about fp_rate of the keys never seen, never
  "unseen" for a key seen. It is register-blocked: a key's bits all lie in one 64-bit word
  (k of them, a pattern taken from a table), so a test costs one random memory access instead
  of k, which is what makes 10M records/s reachable in numpy. The price is bits: 25 per key at
  0.001 where a classic Bloom filter needs 14.4; the size and k are computed for the rate
  asked. Rates below 1e-3 use several such words per key (one per factor of 1000). When more
  distinct keys arrive than the capacity, a second filter twice as large at half the rate is
  added (and so on), so an underestimate costs memory, not a flood of false positives.
- ExactSet (``exact=True``) is an open-addressing hash table of the hashes plus the full keys,
  compared word for word: exact, at about 60-100 bytes per distinct key for sIP,dIP.
"""

import math

import numpy as np

from . import fields as fieldmod
from .errors import FlowError

# 10M distinct keys: a day of a busy sensor or of the demo archive; the filter is then 31 MB
# at the default rate, small enough to allocate without thought, and it grows past that.
DEFAULT_CAPACITY = 10_000_000
DEFAULT_FP_RATE = 0.001

U64 = np.uint64
_MAPPED = U64(0xFFFF00000000)
_SEED = U64(0x9E3779B97F4A7C15)
_K = U64(0x9DDFEA08EB382D69)
_S47 = U64(47)
_S32 = U64(32)


class FirstSeen:
    """Marks the records whose key (the values of ``fields``) has not been seen before, in
    this batch or any earlier one. ``fields`` is a list of Field objects or a field list text."""

    def __init__(self, fields, capacity=DEFAULT_CAPACITY, fp_rate=DEFAULT_FP_RATE,
                 exact=False):
        if isinstance(fields, str):
            fields = fieldmod.parse_list(fields, "--unique")
        self.fields = list(fields)
        if not self.fields:
            raise FlowError("--unique needs at least one field")
        self.columns = tuple(fieldmod.columns_for(self.fields))
        self.exact = exact
        self.seen = ExactSet() if exact else BloomSet(capacity, fp_rate)

    def first(self, batch):
        """A mask of the records whose key is new. The batch needs only ``columns``."""
        n = len(batch[self.columns[0]])
        out = np.zeros(n, bool)
        if n == 0:
            return out
        high, words = key_words(self.fields, batch)
        h = hash_words(high, words, n)
        if self.exact:
            keys = key_rows(high + words, n)
            reps = first_in_batch(h, keys)
            pos = reps[~self.seen.contains(h[reps], keys[reps])]
            self.seen.add(h[pos], keys[pos])
        else:
            pos = self.seen.first(h)
        out[pos] = True
        return out


def key_words(fields, batch):
    """The key of every record as (high, words): lists of uint64 words (arrays, or scalars when
    constant). high holds the addresses' high words, 0 for every IPv4 address (in an IPv4
    batch the scalar 0); words the low words, then the integer fields packed by their width,
    several to a word."""
    high, low, ints = [], [], []
    for f in fields:
        v = f.values(batch)
        if v.ndim == 2:  # IPv6 batch: IPv4 records are already ::ffff:a.b.c.d
            high.append(v[:, 0])
            low.append(v[:, 1])
        elif f.kind == "ip":
            high.append(U64(0))
            low.append(v.astype(U64) | _MAPPED)
        else:
            ints.append(v)
    words, acc, used = [], None, 0
    for v in ints:
        width = v.dtype.itemsize * 8
        u = v.astype(U64)
        if acc is not None and used + width <= 64:
            acc = (acc << U64(width)) | u
            used += width
        else:
            if acc is not None:
                words.append(acc)
            acc, used = u, width
    if acc is not None:
        words.append(acc)
    return high, low + words


def hash_words(high, words, n):
    """A 64-bit hash per record, of the high words then the others.

    High words are 0 for IPv4 addresses, most of an IPv6 batch's records: the chain is run
    with them as the constant 0 (free), then again in full for the rows where one is not."""
    arrays = [w for w in high if np.ndim(w)]
    if not arrays:
        return _chain(high + words, n)
    odd = arrays[0] != 0
    for w in arrays[1:]:
        odd |= w != 0
    if odd.mean() > 0.5:
        return _chain(high + words, n)
    h = _chain([U64(0)] * len(high) + words, n)
    rows = np.flatnonzero(odd)
    if len(rows):
        h[rows] = _chain([w[rows] if np.ndim(w) else w for w in high + words], len(rows))
    return h


def _chain(words, n):
    """h = H(h ^ x, y) over the words in pairs, H being CityHash's Hash128to64."""
    h = _SEED
    words = list(words) + [U64(0)] * (len(words) % 2)
    for x, y in zip(words[::2], words[1::2], strict=True):
        h = _hash128to64(h ^ x, y)
    return np.broadcast_to(h, (n,)).copy() if np.ndim(h) == 0 else h


def _hash128to64(lo, hi):
    """CityHash's 128-to-64-bit mix: two rounds of multiply and xor-shift; lo is a fresh
    array (or a scalar) and is overwritten."""
    with np.errstate(over="ignore"):  # scalars warn on the (intended) wrap-around
        a = lo ^ hi if np.ndim(lo) == 0 else np.bitwise_xor(lo, hi, out=lo)
        a *= _K
        a ^= a >> _S47
        b = hi ^ a
        b *= _K
        b ^= b >> _S47
        b *= _K
    return b


def key_rows(words, n):
    """The words as one fixed-width void item per record (for exact comparison)."""
    rows = np.empty((n, len(words)), U64)
    for i, w in enumerate(words):
        rows[:, i] = w
    return rows.view(np.dtype((np.void, 8 * len(words))))[:, 0]


def same_rows(a, b):
    """Element-wise equality of two arrays of void keys."""
    w = a.dtype.itemsize // 8
    return (a.view(U64).reshape(-1, w) == b.view(U64).reshape(-1, w)).all(axis=1)


def first_in_batch(h, keys=None):
    """Indices of the first occurrence of each distinct hash (each distinct key when keys are
    given) in h, in the order of their hashes.

    One sort of uint64: the low bits of each hash are replaced by the record's index, so equal
    hashes sort together with the earliest first. Two keys agreeing in the remaining high bits
    (47 of 64 for a 131072-record batch) count as one: for a Bloom filter that is one more
    false positive at odds of about 2^-47 a pair; with keys, groups are checked and resolved
    exactly."""
    n = len(h)
    if n == 0:
        return np.zeros(0, np.intp)
    bits = max(1, (n - 1).bit_length())
    low = U64((1 << bits) - 1)
    v = h & ~low
    v |= np.arange(n, dtype=U64)
    v.sort()
    head = np.empty(n, bool)
    head[0] = True
    top = v >> U64(bits)
    np.not_equal(top[1:], top[:-1], out=head[1:])
    idx = (v & low).astype(np.intp)
    if keys is not None:
        later = ~head
        group_first = idx[head][np.cumsum(head)[later] - 1]
        if not same_rows(keys[idx[later]], keys[group_first]).all():
            _, reps = np.unique(keys, return_index=True)  # a collision: the slow exact way
            return reps[np.argsort(h[reps], kind="stable")]
    return idx[head]


# ----------------------------------------------------------------------------------------
# Bloom filter

_PATTERN_BITS = 16  # 65536 patterns: 512 KB, stays in cache; their clashes cost ~1e-4 of rate


class BloomSet:
    """Hashes seen, approximately: register-blocked stages (see the module's docstring)."""

    def __init__(self, capacity=DEFAULT_CAPACITY, fp_rate=DEFAULT_FP_RATE):
        if not (capacity >= 1):
            raise FlowError(f"invalid --unique-capacity {capacity}: must be at least 1")
        if not (0 < fp_rate < 1):
            raise FlowError(f"invalid --unique-fp-rate {fp_rate}: must be between 0 and 1")
        self.stages = [_Stage(int(capacity), fp_rate)]
        self.count = 0

    @property
    def nbytes(self):
        return sum(s.words.nbytes for s in self.stages)

    def contains(self, h):
        out = self.stages[0].contains(h)
        for stage in self.stages[1:]:
            todo = np.flatnonzero(~out)
            out[todo[stage.contains(h[todo])]] = True
        return out

    def first(self, h):
        """Indices of the first occurrence of each hash of h not in the set, in hash order;
        those hashes are added."""
        # Testing first is cheap and leaves only unseen keys to sort. With one stage of one
        # probe (the usual case) the test's words and patterns serve the insertion too.
        stage = self.stages[0]
        quick = len(self.stages) == 1 and stage.probes == 1
        if quick:
            seen, w, m = stage.test(h)
        else:
            seen = self.contains(h)
        cand = np.flatnonzero(~seen)
        pos = cand[first_in_batch(h[cand])]
        if quick and stage.count + len(pos) <= stage.capacity:
            stage.count += len(pos)
            self.count += len(pos)
            stage.set(w[pos], m[pos], ordered=True)
        else:
            self.add(h[pos])
        return pos

    def add(self, h):
        """Insert hashes of keys not yet in the set (counted against the capacity)."""
        while len(h):
            stage = self.stages[-1]
            room = stage.capacity - stage.count
            if room <= 0:
                self.stages.append(_Stage(stage.capacity * 2, stage.fp_rate / 2))
                continue
            stage.add(h[:room])
            self.count += len(h[:room])
            h = h[room:]


class _Stage:
    """One register-blocked Bloom filter: per key, `probes` words each holding a k-bit
    pattern. Word and pattern come from the hash (then h + i * h2 for further probes, after
    Kirsch and Mitzenmacher)."""

    def __init__(self, capacity, fp_rate):
        self.capacity, self.fp_rate, self.count = capacity, fp_rate, 0
        self.probes = max(1, math.ceil(-math.log10(fp_rate) / 3 - 1e-9))
        self.k, bits_per_key = word_design(fp_rate ** (1 / self.probes))
        nwords = math.ceil(capacity * self.probes * bits_per_key / 64)
        if nwords > 2**32:
            raise FlowError("--unique-capacity too large for a Bloom filter; use --unique-exact")
        self.nwords = U64(nwords)
        self.words = np.zeros(nwords, U64)
        self.patterns = _patterns(self.k)

    def _probe(self, h, i):
        if i:
            with np.errstate(over="ignore"):
                h = h + U64(i) * ((h >> _S32) | (h << _S32) | U64(1))
        # Word by the high 32 bits scaled to the table (Lemire's multiply-shift, no modulo).
        # Both indices are below 2^32, so viewing them as intp is exact and saves a copy.
        w = h >> _S32
        w *= self.nwords
        w >>= _S32
        p = h & U64(2**_PATTERN_BITS - 1)
        return w.view(np.intp), self.patterns[p.view(np.intp)]

    def test(self, h):
        """(in the set, words, patterns) by the first probe."""
        w, m = self._probe(h, 0)
        got = self.words[w]
        got &= m
        return got == m, w, m

    def contains(self, h):
        ok, _, _ = self.test(h)
        if self.probes == 1:
            return ok
        alive = np.flatnonzero(ok)
        for i in range(1, self.probes):
            w, m = self._probe(h[alive], i)
            alive = alive[(self.words[w] & m) == m]
        out = np.zeros(len(h), bool)
        out[alive] = True
        return out

    def add(self, h):
        """Set the bits of keys by their hashes (faster when h is sorted)."""
        self.count += len(h)
        for i in range(self.probes):
            self.set(*self._probe(h, i), ordered=i == 0)

    def set(self, w, m, ordered=False):
        """OR patterns m into words w. ordered: w is probably sorted (the first probe's
        words of sorted hashes), so repeated words are neighbours."""
        self.words[w] |= m
        if len(w) < 2:
            return
        # The fancy |= kept one update per repeated word: OR each word's patterns together
        # and apply them again.
        if not ordered or (w[1:] < w[:-1]).any():
            order = np.argsort(w)
            w, m = w[order], m[order]
        rep = np.flatnonzero(w[1:] == w[:-1])
        if len(rep):
            rep = np.union1d(rep, rep + 1)
            w, m = w[rep], m[rep]
            start = np.flatnonzero(np.diff(w, prepend=-1))
            self.words[w[start]] |= np.bitwise_or.reduceat(m, start)


_PATTERN_CACHE = {}


def _patterns(k):
    """2^16 words with k distinct bits each, the same in every run."""
    if k not in _PATTERN_CACHE:
        rng = np.random.default_rng(0x51C)
        pick = np.argsort(rng.random((2**_PATTERN_BITS, 64)), axis=1)[:, :k]
        _PATTERN_CACHE[k] = np.bitwise_or.reduce(U64(1) << pick.astype(U64), axis=1)
    return _PATTERN_CACHE[k]


def word_fp(bits_per_key, k):
    """False-positive rate of one probe when each key sets a k-bit pattern in one of many
    64-bit words, at bits_per_key bits of table per key: words hold a Poisson number of
    patterns, and a new key passes when all its k bits are set (or its pattern is taken)."""
    lam = 64 / bits_per_key
    j = np.arange(0, 40 + int(8 * lam))
    log_pois = j * math.log(lam) - lam - np.array([math.lgamma(x + 1) for x in j])
    passes = (1 - (1 - k / 64) ** j) ** k
    return float(np.exp(log_pois) @ passes) + lam / 2**_PATTERN_BITS


def word_design(fp_rate):
    """(k, bits per key) for the smallest table reaching fp_rate per probe."""
    best = None
    for k in range(1, 17):
        lo, hi = 1.0, 512.0
        if word_fp(hi, k) > fp_rate:
            continue
        for _ in range(40):
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if word_fp(mid, k) <= fp_rate else (mid, hi)
        if best is None or hi < best[1]:
            best = (k, hi)
    if best is None:
        raise FlowError(f"invalid --unique-fp-rate {fp_rate}: too small")
    return best


# ----------------------------------------------------------------------------------------
# Exact set

_EMPTY = -1


class ExactSet:
    """Open addressing with linear probing over 64-bit hashes; each slot also holds the index
    of its key in a growing key store, and a hash match counts only when the keys are equal."""

    def __init__(self, slots=1 << 16):
        self.ids = np.full(slots, _EMPTY, np.int32)
        self.hashes = np.zeros(slots, U64)
        self.keys = None
        self.count = 0

    @property
    def nbytes(self):
        return self.ids.nbytes + self.hashes.nbytes + (0 if self.keys is None
                                                        else self.keys.nbytes)

    def _home(self, h):
        shift = U64(64 - (len(self.ids).bit_length() - 1))
        return (h >> shift).astype(np.intp)

    def contains(self, h, keys):
        """Which keys are in the set; keys are void rows, or a function giving the rows of
        some records by index (built only for the records whose hash is in the table)."""
        found = np.zeros(len(h), bool)
        if self.count == 0:
            return found
        todo = None  # at first, every record
        slot = self._home(h)
        mask = len(self.ids) - 1
        while True:
            ids = self.ids[slot]
            go_on = ids != _EMPTY
            hit = np.flatnonzero((self.hashes[slot] == (h if todo is None else h[todo]))
                                 & go_on)
            if len(hit):
                rec = hit if todo is None else todo[hit]
                mine = keys(rec) if callable(keys) else keys[rec]
                eq = same_rows(self.keys[ids[hit]], mine)
                found[rec[eq]] = True
                go_on[hit[eq]] = False
            live = np.flatnonzero(go_on)
            if not len(live):
                return found
            todo = live if todo is None else todo[live]
            slot = (slot[live] + 1) & mask

    def add(self, h, keys):
        """Insert keys (distinct, and not in the set) with their hashes."""
        n = len(h)
        if n == 0:
            return
        if self.keys is None:
            self.keys = np.empty(max(n, 1 << 16), keys.dtype)
        if self.count + n > len(self.keys):
            grown = np.empty(max(2 * len(self.keys), self.count + n), keys.dtype)
            grown[:self.count] = self.keys[:self.count]
            self.keys = grown
        self.keys[self.count:self.count + n] = keys
        if self.count + n >= 2**31:
            raise FlowError("--unique-exact: more than 2^31 distinct keys")
        ids = np.arange(self.count, self.count + n, dtype=np.int32)
        self.count += n
        if self.count > 0.6 * len(self.ids):
            self._rehash(1 << (int(self.count / 0.3) - 1).bit_length())
        else:
            self._place(h, ids)

    def _place(self, h, ids):
        slot = self._home(h)
        mask = len(self.ids) - 1
        while len(ids):
            free = self.ids[slot] == _EMPTY
            s, i = slot[free], ids[free]
            self.ids[s] = i  # keys racing for one slot: one wins, the others probe on
            won = np.zeros(len(ids), bool)
            won[np.flatnonzero(free)[self.ids[s] == i]] = True
            self.hashes[slot[won]] = h[won]
            keep = ~won
            h, ids, slot = h[keep], ids[keep], (slot[keep] + 1) & mask

    def _rehash(self, slots):
        self.ids = np.full(slots, _EMPTY, np.int32)
        self.hashes = np.zeros(slots, U64)
        # The hashes are recomputed from the stored keys: they are not kept beside them.
        step = 1 << 20  # in slices, to bound the temporaries
        for start in range(0, self.count, step):
            stop = min(start + step, self.count)
            words = self.keys[start:stop].view(U64).reshape(-1, self.keys.itemsize // 8)
            h = hash_words([], [words[:, i] for i in range(words.shape[1])], len(words))
            self._place(h, np.arange(start, stop, dtype=np.int32))
