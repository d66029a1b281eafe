"""Vectorised text formatting of field columns.

Every formatter turns a column of n values into a right-aligned ``(n, width)`` uint8 matrix
of ASCII plus the length of each value's text; layouts then either keep the padding (columnar
output) or drop it with a mask (delimited output). No Python loop runs per record, except over
the distinct values of IPv6 addresses, which are formatted once each.
"""

import ipaddress
import threading

import numpy as np

SPACE = 32
_DIGITS = np.frombuffer(b"0123456789abcdef", np.uint8)


def right_align(chars, lengths, width):
    """Re-pad left-aligned (n, w) text to right-aligned (n, width)."""
    n, w = chars.shape
    out = np.full((n, width), SPACE, np.uint8)
    if n == 0:
        return out
    cols = np.arange(width)
    src = cols[None, :] - (width - lengths[:, None])
    valid = (src >= 0) & (src < w)
    rows = np.broadcast_to(np.arange(n)[:, None], (n, width))
    out[valid] = chars[rows[valid], src[valid]]
    return out


def fit(matrix, lengths, width):
    """A right-aligned matrix made exactly `width` wide (left-truncating never happens for
    values: a wider value widens the column, as SiLK's fixed widths are minimums)."""
    n, w = matrix.shape
    if w == width:
        return matrix
    if w < width:
        out = np.full((n, width), SPACE, np.uint8)
        out[:, width - w:] = matrix
        return out
    return matrix[:, w - width:]


_POW10 = np.array([10**k for k in range(1, 20)], np.uint64)
_PAIRS = np.array([np.frombuffer(f"{i:02d}".encode(), np.uint8) for i in range(100)])


def _digit_count(v, base):
    if base == 10:
        return 1 + np.searchsorted(_POW10, v, side="right")
    lengths = np.ones(len(v), np.int64)
    rest = v.copy()
    while True:
        rest >>= np.uint64(4)
        more = rest > 0
        if not more.any():
            return lengths
        lengths += more


_TABLES = {}
_VOIDS = {}
_BUILD = threading.RLock()  # tables are built lazily, possibly by two formatting threads


def _void(table):
    """The rows of a text table as single fixed-size items (copied as one unit each)."""
    key = id(table)
    hit = _VOIDS.get(key)
    if hit is None or hit[0] is not table:
        t = np.ascontiguousarray(table)
        hit = _VOIDS[key] = (table, t.view(f"V{t.shape[1]}").ravel())
    return hit[1]


def gather(table, idx, out=None):
    """table[idx] right-aligned into out (n, W) when given, W >= the table's width."""
    w = table.shape[1]
    if out is None:
        return table[idx]
    if out.shape[1] > w:
        out[:, : out.shape[1] - w] = SPACE
        out = out[:, out.shape[1] - w:]
    if w:
        out.view(f"V{w}")[:, 0] = _void(table)[idx]
    return out


def _small_table(width, base):
    """Text of every 16-bit value, exactly `width` wide (wider values are cut: callers
    choose a width that holds the values they index)."""
    key = (width, base)
    with _BUILD:
        if key not in _TABLES:
            mat, lens = _uint(np.arange(65536, dtype=np.uint32), width, base, 0)
            _TABLES[key] = (np.ascontiguousarray(mat[:, mat.shape[1] - width:]), lens)
        return _TABLES[key]


def digits(vmax, base=10):
    """Characters the text of vmax takes."""
    return len(f"{int(vmax):d}" if base == 10 else f"{int(vmax):x}")


def uint(values, width=1, base=10, zero_pad=0, out=None):
    """Decimal (or hex) text of unsigned integers, right-aligned (into out when given)."""
    v = np.asarray(values)
    n = len(v)
    if n == 0:
        return np.zeros((0, width), np.uint8), np.zeros(0, np.int64)
    vmax = int(v.max())
    if not zero_pad and vmax < 65536:
        w = min(out.shape[1], 5) if out is not None else max(width, digits(vmax, base))
        table, lens = _small_table(w, base)
        idx = v.astype(np.intp)
        return gather(table, idx, out), lens[idx]
    if not zero_pad and base == 10 and vmax < 655_360_000:
        return _uint_split(v, width, out)
    mat, lens = _uint(v, width, base, zero_pad)
    if out is not None:
        out[...] = fit(mat, lens, out.shape[1])
        return out, lens
    return mat, lens


def _uint_split(v, width, out):
    """Values below 655,360,000 as a 16-bit quotient and a 4-digit remainder, both by table."""
    v = v.astype(np.uint32)
    q, r = v // np.uint32(10000), v % np.uint32(10000)
    big = q > 0
    w = max(width, 4 + digits(int(q.max())))
    if out is None:
        out = np.empty((len(v), w), np.uint8)
    qlen = _small_table(5, 10)[1]
    k = min(5, out.shape[1] - 4)  # the quotient's digits, blank when it is 0
    qblank = _TABLES.get(("qblank", k))
    if qblank is None:
        qt = _small_table(k, 10)[0]
        qblank = _TABLES[("qblank", k)] = np.where(np.arange(65536)[:, None] == 0, SPACE,
                                                   qt).astype(np.uint8)
    gather(qblank, q.astype(np.intp), out[:, : out.shape[1] - 4])
    rt = _TABLES.get(("rem",))
    if rt is None:
        every = np.arange(10000)
        padded = np.stack([_PAIRS[every // 100], _PAIRS[every % 100]], 1).reshape(10000, 4)
        plain = _small_table(4, 10)[0][:10000]
        rt = _TABLES[("rem",)] = np.concatenate([plain, padded])
    gather(rt, r.astype(np.intp) + 10000 * big, out[:, out.shape[1] - 4:])
    lens = np.where(big, qlen[q.astype(np.intp)] + 4, qlen[r.astype(np.intp)])
    return out, lens


def _uint(v, width, base, zero_pad):
    n = len(v)
    vmax = int(v.max())
    # narrow arithmetic is several times faster than 64-bit division
    work = v.astype(np.uint32 if vmax < 2**32 else np.uint64)
    lengths = _digit_count(work.astype(np.uint64) if base == 10 else work.astype(np.uint64),
                           base)
    if zero_pad:
        lengths = np.maximum(lengths, zero_pad)
    maxlen = int(lengths.max())
    w = max(width, maxlen)
    out = np.full((n, w), SPACE, np.uint8)
    k = 0
    if base == 10:
        hundred = work.dtype.type(100)
        while k + 2 <= maxlen:
            pair = (work % hundred).astype(np.intp)
            work = work // hundred
            out[:, w - k - 2: w - k] = _PAIRS[pair]
            k += 2
        if k < maxlen:
            out[:, w - k - 1] = 48 + (work % work.dtype.type(10)).astype(np.uint8)
            k += 1
    else:
        b = work.dtype.type(base)
        for k in range(maxlen):
            out[:, w - 1 - k] = _DIGITS[(work % b).astype(np.intp)]
            work = work // b
    # blank the leading zeros each shorter value got
    cols = np.arange(w)
    if maxlen > int(lengths.min()):
        out[cols[None, :] < (w - lengths)[:, None]] = SPACE
    return out, lengths


def blank(n, width):
    return np.full((n, width), SPACE, np.uint8), np.zeros(n, np.int64)


def from_strings(strings, index, width, out=None):
    """Text of values given as a small table of strings (or a bytes array) and each
    record's index into it."""
    if isinstance(strings, np.ndarray):
        table, lens = _bytes_table(strings, width)
        if out is not None:
            return gather(table, index, out), lens[index]
        return table[index], lens[index]
    encoded = [s.encode() for s in strings]
    w = max([width] + [len(s) for s in encoded])
    table = np.full((len(encoded), w), SPACE, np.uint8)
    lens = np.zeros(len(encoded), np.int64)
    for i, s in enumerate(encoded):
        if s:
            table[i, w - len(s):] = np.frombuffer(s, np.uint8)
        lens[i] = len(s)
    if out is not None:
        return gather(table, index, out), lens[index]
    return table[index], lens[index]


def _bytes_table(strings, width):
    """A bytes array as a right-aligned (m, w) character table and the lengths."""
    lens = np.char.str_len(strings).astype(np.int64)
    size = strings.dtype.itemsize
    chars = np.frombuffer(strings.tobytes(), np.uint8).reshape(len(strings), size)
    w = max(width, int(lens.max()) if len(lens) else 0)
    return right_align(chars, lens, w), lens


# ----------------------------------------------------------------------------- addresses

_OCTET = np.full((256, 3), SPACE, np.uint8)
_OCTET_LEN = np.zeros(256, np.int64)
for _i in range(256):
    _s = str(_i).encode()
    _OCTET[_i, : len(_s)] = np.frombuffer(_s, np.uint8)
    _OCTET_LEN[_i] = len(_s)
_OCTET_Z = np.array([np.frombuffer(f"{i:03d}".encode(), np.uint8) for i in range(256)])


def ipv4(addr, width, zero_pad=False, out=None):
    """Dotted-quad text of uint32 addresses (into out when given)."""
    a = np.asarray(addr).astype(np.uint32)
    n = len(a)
    if zero_pad:
        octets = [((a >> np.uint32(s)) & np.uint32(0xFF)).astype(np.intp)
                  for s in (24, 16, 8, 0)]
        left = np.full((n, 15), ord("."), np.uint8)
        for k, o in enumerate(octets):
            left[:, 4 * k: 4 * k + 3] = _OCTET_Z[o]
        mat = fit(left, np.full(n, 15), max(width, 15))
        if out is not None:
            out[...] = fit(mat, None, out.shape[1])
            mat = out
        return mat, np.full(n, 15, np.int64)
    # The address as a 128-bit little-endian integer (two words), byte k its kth
    # character right-aligned in 16: the low half's '.c.d' fills the top bytes, the high
    # half's 'a.b' is shifted down below it by that text's length. Blank bytes are 0 until
    # OR-ed with spaces (0x20), a bit digits and dots already have. A dozen array
    # operations on 8-byte words: 34 ns an address, where gathering rows of 15 characters
    # from a 4.9 MB table took 101 ns.
    high, low, shift, tlen = _ip_words()
    hi, lo = (a >> np.uint32(16)).astype(np.intp), (a & np.uint32(0xFFFF)).astype(np.intp)
    h, sh = high[hi], shift[lo]
    words = np.empty((n, 2), np.uint64)
    np.left_shift(h, np.uint64(64) - sh, out=words[:, 0])
    words[:, 0] |= _SPACES8
    np.right_shift(h, sh - np.uint64(8), out=words[:, 1])
    words[:, 1] >>= np.uint64(8)
    words[:, 1] |= low[lo]
    words[:, 1] |= _SPACES8
    text = words.view(np.uint8)[:, 1:]
    if out is None:
        out = np.empty((n, max(width, 15)), np.uint8)
    w = out.shape[1]
    if w > 15:
        out[:, : w - 15] = SPACE
    out[:, w - 15:] = text
    return out, tlen[hi] + tlen[lo] + 1


_SPACES8 = np.uint64(0x2020202020202020)
_WORDS = []


def _ip_words():
    """Per 16-bit half: 'a.b' right-aligned in a word (blank bytes 0), '.c.d' likewise,
    the bit shift the low half's text needs, and the length of 'a.b'."""
    with _BUILD:
        if not _WORDS:
            table, lens = _halves()  # right-aligned in 7, blanks
            chars = np.zeros((65536, 8), np.uint8)
            chars[:, 1:] = np.where(table == SPACE, 0, table)
            high = chars.view("<u8").ravel().copy()
            chars[np.arange(65536), 7 - lens] = ord(".")
            low = chars.view("<u8").ravel().copy()
            shift = (8 * (lens + 1)).astype(np.uint64)
            _WORDS.extend((high, low, shift, lens))
        return _WORDS


def _ip_tables():
    with _BUILD:
        return _ip_tables_locked()


def _ip_tables_locked():
    if not _HALF:
        table, lens = _halves()
        high = np.full((65536, 5, 15), SPACE, np.uint8)
        for length in range(3, 8):
            high[:, length - 3, 15 - length - 8: 15 - length - 1] = table
            high[:, length - 3, 15 - length - 1] = ord(".")
        low = np.full((65536, 15), SPACE, np.uint8)
        low[:, 8:] = table
        _HALF.extend((high.reshape(65536 * 5, 15), low, lens))
    return _HALF


_HALF = []


def _halves():
    """'a.b' for every 16-bit half of an address, right-aligned in 7 characters."""
    every = np.arange(65536)
    left = np.full((65536, 7), SPACE, np.uint8)
    a, b = every >> 8, every & 255
    la, lb = _OCTET_LEN[a], _OCTET_LEN[b]
    left[:, :3] = _OCTET[a]
    left[every, la] = ord(".")
    for d in range(3):
        m = lb > d
        left[every[m], la[m] + 1 + d] = _OCTET[b[m], d]
    lens = la + 1 + lb
    return right_align(left, lens, 7), lens


def ipv6_text(hi, lo, style="canonical"):
    """The text of one IPv6 address (hi, lo as Python ints) in a SiLK --ip-format style."""
    value = (hi << 64) | lo
    if style == "zero-padded":
        return ":".join(f"{(value >> (16 * k)) & 0xFFFF:04x}" for k in range(7, -1, -1))
    words = [(value >> (16 * k)) & 0xFFFF for k in range(7, -1, -1)]
    if style == "canonical" and words[:5] == [0] * 5 and words[5] == 0xFFFF:
        return "::ffff:" + str(ipaddress.IPv4Address(value & 0xFFFFFFFF))
    if style == "canonical" and words[:6] == [0] * 6 and words[6] != 0:
        return "::" + str(ipaddress.IPv4Address(value & 0xFFFFFFFF))
    return ipaddress.IPv6Address(value).compressed


def ipv6(col, width, style="canonical"):
    """Text of (n, 2) uint64 addresses; each distinct address is formatted once."""
    n = len(col)
    if n == 0:
        return blank(0, width)
    view = np.ascontiguousarray(col).view([("hi", np.uint64), ("lo", np.uint64)]).ravel()
    uniq, index = np.unique(view, return_inverse=True)
    return from_strings(ipv6_strings(uniq["hi"], uniq["lo"], style), index.ravel(), width)


_WORD_TEXT = {}


def _word_text(kind):
    """Text of every 16-bit word ('x': hex, '04x': padded hex) or byte ('d'), built on
    first use (not at import: tools start fast)."""
    with _BUILD:
        if kind not in _WORD_TEXT:
            n, size = (256, "S3") if kind == "d" else (65536, "S4")
            _WORD_TEXT[kind] = np.array([format(i, kind).encode() for i in range(n)], size)
        return _WORD_TEXT[kind]


def _join(parts, sep):
    """Row-wise join of an (m, k) array of byte strings."""
    if parts.shape[1] == 0:
        return np.zeros(len(parts), "S1")
    out = parts[:, 0]
    for k in range(1, parts.shape[1]):
        out = np.char.add(np.char.add(out, sep), parts[:, k])
    return out


def ipv6_strings(hi, lo, style="canonical"):
    """ipv6_text of many addresses at once, as a bytes array: RFC 5952 text (the first
    longest run of two or more zero words as '::'), IPv4-mapped and -compatible addresses
    with a dotted quad in the canonical style, or every word in full ('zero-padded')."""
    hi = np.asarray(hi, np.uint64)
    lo = np.asarray(lo, np.uint64)
    m = len(hi)
    words = np.empty((m, 8), np.intp)
    for k in range(4):
        shift = np.uint64(48 - 16 * k)
        words[:, k] = (hi >> shift) & np.uint64(0xFFFF)
        words[:, 4 + k] = (lo >> shift) & np.uint64(0xFFFF)
    if style == "zero-padded":
        return _join(_word_text("04x")[words], b":")
    out = np.zeros(m, "S45")
    dotted = np.zeros(m, bool)
    if style == "canonical":
        lead = ~words[:, :5].any(axis=1)
        mapped = lead & (words[:, 5] == 0xFFFF)
        compat = lead & (words[:, 5] == 0) & (words[:, 6] != 0)
        dotted = mapped | compat
        if dotted.any():
            dec = _word_text("d")
            quad = _join(np.stack([dec[words[dotted, 6] >> 8], dec[words[dotted, 6] & 255],
                                   dec[words[dotted, 7] >> 8], dec[words[dotted, 7] & 255]],
                                  axis=1), b".")
            out[dotted] = np.char.add(np.where(mapped[dotted], b"::ffff:", b"::"), quad)
    # length of the run of zero words starting at each word
    run = np.zeros((m, 9), np.int8)
    for i in range(7, -1, -1):
        run[:, i] = np.where(words[:, i] == 0, run[:, i + 1] + 1, 0)
    start = run[:, :8].argmax(axis=1)
    length = run[np.arange(m), start]
    start[length < 2] = 8
    length[length < 2] = 0
    hexes = _word_text("x")[words]
    plain = ~dotted
    pattern = start * 16 + length
    for key in np.unique(pattern[plain]):
        rows = np.flatnonzero(plain & (pattern == key))
        b, n = divmod(int(key), 16)
        if n == 0:
            out[rows] = _join(hexes[rows], b":")
            continue
        left = _join(hexes[rows, :b], b":")
        right = _join(hexes[rows, b + n:], b":")
        out[rows] = np.char.add(np.char.add(left, b"::"), right)
    return out


# ----------------------------------------------------------------------------- flags, times

def flag_letters(values, letters, width, integer=False, out=None):
    """TCP flags (or attributes) as fixed letter positions, or as integers."""
    v = np.asarray(values).astype(np.intp)
    if integer:
        return uint(v, width, out=out)
    w = max(width, len(letters))
    key = (tuple(letters), w)
    if key not in _TABLES:
        every = np.arange(256)
        t = np.full((256, w), SPACE, np.uint8)
        for k, (letter, bit) in enumerate(letters):
            t[:, w - len(letters) + k] = np.where(every & bit, ord(letter), SPACE)
        _TABLES[key] = t
    return gather(_TABLES[key], v, out), np.full(len(v), w, np.int64)


TCP_FLAGS = [("F", 1), ("S", 2), ("R", 4), ("P", 8), ("A", 16), ("U", 32), ("E", 64),
             ("C", 128)]
ATTRIBUTES = [("T", 0x20), ("C", 0x40), ("F", 0x08), ("S", 0x10)]


def _civil(days):
    """Year, month, day arrays of days since the epoch (proleptic Gregorian)."""
    z = days + 719468
    era = np.floor_divide(z, 146097)
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = np.where(mp < 10, mp + 3, mp - 9)
    return y + (m <= 2), m, d


_TRIPLES = np.array([np.frombuffer(f"{i:03d}".encode(), np.uint8) for i in range(1000)])


def _put(out, pos, values, digits):
    v = np.asarray(values).astype(np.intp)
    if digits == 2:
        out[:, pos: pos + 2] = _PAIRS[v]
    elif digits == 3:
        out[:, pos: pos + 3] = _TRIPLES[v]
    elif digits == 4:
        out[:, pos: pos + 2] = _PAIRS[v // 100]
        out[:, pos + 2: pos + 4] = _PAIRS[v % 100]
    else:
        for k in range(digits - 1, -1, -1):
            out[:, pos + k] = 48 + (v % 10)
            v = v // 10


_CLOCK = []


def _clock_table():
    """'hh:mm:ss' for every second of a day."""
    with _BUILD:
        return _clock_table_locked()


def _clock_table_locked():
    if not _CLOCK:
        sod = np.arange(86400)
        t = np.empty((86400, 8), np.uint8)
        t[:, 0:2] = _PAIRS[sod // 3600]
        t[:, 3:5] = _PAIRS[sod // 60 % 60]
        t[:, 6:8] = _PAIRS[sod % 60]
        t[:, 2] = t[:, 5] = ord(":")
        _CLOCK.append(t)
    return _CLOCK[0]


_MSEC = np.concatenate([np.full((1000, 1), ord("."), np.uint8), _TRIPLES], axis=1)


def _dates(lo, hi, fmt):
    """Date text of the days lo..hi (a table the records' days index)."""
    with _BUILD:
        return _dates_locked(lo, hi, fmt)


def _dates_locked(lo, hi, fmt):
    key = ("dates", lo, hi, fmt)
    if key in _TABLES:
        return _TABLES[key]
    span = np.arange(lo, hi + 1)
    y, m, d = _civil(span)
    t = np.empty((len(span), 11), np.uint8)
    if fmt == "m/d/y":
        _put(t, 0, m, 2)
        t[:, 2] = t[:, 5] = ord("/")
        _put(t, 3, d, 2)
        _put(t, 6, y, 4)
    else:
        sep = ord("-") if fmt == "iso" else ord("/")
        _put(t, 0, y, 4)
        t[:, 4] = t[:, 7] = sep
        _put(t, 5, m, 2)
        _put(t, 8, d, 2)
    t[:, 10] = ord(" ") if fmt in ("iso", "m/d/y") else ord("T")
    if len(_TABLES) > 64:
        # list(): formatting threads may add other tables meanwhile
        _TABLES.pop(next((k for k in list(_TABLES) if k[0] == "dates"), None), None)
    _TABLES[key] = t
    return t


def timestamps(ms, fmt="default", msec=True, offset_s=None, out=None):
    """Times in SiLK's layouts: default, iso, m/d/y, epoch; UTC unless offset_s is given."""
    t = np.asarray(ms).astype(np.int64)
    n = len(t)
    if fmt == "epoch":
        secs = np.floor_divide(t, 1000)
        text, lens = uint(secs.astype(np.uint64))
        if msec:
            text, lens = np.concatenate([text, _MSEC[t % 1000]], axis=1), lens + 4
        if out is not None:
            out[...] = fit(text, lens, out.shape[1])
            text = out
        return text, lens
    if offset_s is not None:
        t = t + np.asarray(offset_s, np.int64) * 1000
    secs = np.floor_divide(t, 1000)
    days = np.floor_divide(secs, 86400)
    w = 19 + (4 if msec else 0)
    if out is None:
        out = np.empty((n, w), np.uint8)
    if n == 0:
        return out, np.zeros(0, np.int64)
    o = out[:, out.shape[1] - w:]
    out[:, : out.shape[1] - w] = SPACE
    lo = int(days.min())
    gather(_dates(lo, int(days.max()), fmt), (days - lo).astype(np.intp), o[:, :11])
    gather(_clock_table(), (secs - days * 86400).astype(np.intp), o[:, 11:19])
    if msec:
        gather(_MSEC, (t - secs * 1000).astype(np.intp), o[:, 19:23])
    return out, np.full(n, w, np.int64)


def seconds(ms, msec=True, out=None):
    """Durations as seconds with three decimals (or whole seconds)."""
    v = np.asarray(ms).astype(np.uint64)
    if not msec:
        return uint(v // np.uint64(1000), 1, out=out)
    if out is None:
        whole, lens = uint(v // np.uint64(1000))
        frac = _MSEC[(v % np.uint64(1000)).astype(np.intp)]
        return np.concatenate([whole, frac], axis=1), lens + 4
    _, lens = uint(v // np.uint64(1000), 1, out=out[:, : out.shape[1] - 4])
    gather(_MSEC, (v % np.uint64(1000)).astype(np.intp), out[:, out.shape[1] - 4:])
    return out, lens + 4


# ----------------------------------------------------------------------------- layout

def layout(columns, widths, sep=b"|", columnar=True, final=True):
    """Bytes of the lines for formatted columns [(matrix, lengths)], one record per line."""
    n = len(columns[0][0]) if columns else 0
    if n == 0:
        return b""
    if columnar:
        return _columnar(columns, widths, sep, final, n)
    # Delimited: each value's padding is masked out, a cache-sized slab of rows at a time.
    parts, masks = [], []
    sepm = np.frombuffer(sep, np.uint8)
    for k, (mat, lens) in enumerate(columns):
        parts.append(mat)
        masks.append(np.arange(mat.shape[1])[None, :] >= (mat.shape[1] - lens[:, None]))
        if k < len(columns) - 1 or final:
            parts.append(np.broadcast_to(sepm, (n, len(sep))))
            masks.append(np.broadcast_to(True, (n, len(sep))))
    parts.append(np.broadcast_to(np.uint8(10), (n, 1)))
    masks.append(np.broadcast_to(True, (n, 1)))
    chunks = []
    for lo in range(0, n, 8192):
        rows = slice(lo, lo + 8192)
        big = np.concatenate([p[rows] for p in parts], axis=1)
        keep = np.concatenate([m[rows] for m in masks], axis=1)
        chunks.append(big[keep].tobytes())
    return b"".join(chunks)


def _columnar(columns, widths, sep, final, n):
    mats = [fit(mat, lens, max(width, mat.shape[1]))
            for (mat, lens), width in zip(columns, widths, strict=True)]
    total = sum(m.shape[1] for m in mats) + len(sep) * (len(mats) - (0 if final else 1)) + 1
    out = np.empty((n, total), np.uint8)
    sepm = np.frombuffer(sep, np.uint8)
    at = 0
    for k, m in enumerate(mats):
        out[:, at: at + m.shape[1]] = m
        at += m.shape[1]
        if k < len(mats) - 1 or final:
            out[:, at: at + len(sep)] = sepm
            at += len(sep)
    out[:, at] = 10
    return out.data


def squeeze_blanks(mat, lens):
    """Letters without their blank positions ('FS PA   ' -> 'FSPA'), right-aligned."""
    keep = mat != SPACE
    order = np.argsort(~keep, axis=1, kind="stable")
    left = np.take_along_axis(mat, order, axis=1)
    newlens = keep.sum(axis=1)
    return right_align(left, newlens, mat.shape[1]), newlens
