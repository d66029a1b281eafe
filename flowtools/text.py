"""Vectorised text formatting of field columns.

Every formatter turns a column of n values into a right-aligned ``(n, width)`` uint8 matrix
of ASCII plus the length of each value's text; layouts then either keep the padding (columnar
output) or drop it with a mask (delimited output). No Python loop runs per record, except over
the distinct values of IPv6 addresses, which are formatted once each.
"""

import ipaddress

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


def uint(values, width=1, base=10, zero_pad=0):
    """Decimal (or hex) text of unsigned integers."""
    v = np.asarray(values).astype(np.uint64)
    n = len(v)
    lengths = np.ones(n, np.int64)
    if n:
        big = v.copy()
        b = np.uint64(base)
        while True:
            big //= b
            more = big > 0
            if not more.any():
                break
            lengths += more
    if zero_pad:
        lengths = np.maximum(lengths, zero_pad)
    w = max(width, int(lengths.max()) if n else 0)
    out = np.full((n, w), SPACE, np.uint8)
    rest = v.copy()
    b = np.uint64(base)
    for k in range(int(lengths.max()) if n else 0):
        digit = (rest % b).astype(np.intp)
        rest //= b
        show = lengths > k
        col = out[:, w - 1 - k]
        col[show] = _DIGITS[digit[show]]
    return out, lengths


def blank(n, width):
    return np.full((n, width), SPACE, np.uint8), np.zeros(n, np.int64)


def from_strings(strings, index, width):
    """Text of values given as a small table of strings and each record's index into it."""
    encoded = [s.encode() for s in strings]
    w = max([width] + [len(s) for s in encoded])
    table = np.full((len(encoded), w), SPACE, np.uint8)
    lens = np.zeros(len(encoded), np.int64)
    for i, s in enumerate(encoded):
        if s:
            table[i, w - len(s):] = np.frombuffer(s, np.uint8)
        lens[i] = len(s)
    return table[index], lens[index]


# ----------------------------------------------------------------------------- addresses

_OCTET = np.full((256, 3), SPACE, np.uint8)
_OCTET_LEN = np.zeros(256, np.int64)
for _i in range(256):
    _s = str(_i).encode()
    _OCTET[_i, : len(_s)] = np.frombuffer(_s, np.uint8)
    _OCTET_LEN[_i] = len(_s)
_OCTET_Z = np.array([np.frombuffer(f"{i:03d}".encode(), np.uint8) for i in range(256)])


def ipv4(addr, width, zero_pad=False):
    """Dotted-quad text of uint32 addresses."""
    a = np.asarray(addr).astype(np.uint32)
    n = len(a)
    octets = [((a >> np.uint32(s)) & np.uint32(0xFF)).astype(np.intp) for s in (24, 16, 8, 0)]
    if zero_pad:
        left = np.full((n, 15), ord("."), np.uint8)
        for k, o in enumerate(octets):
            left[:, 4 * k: 4 * k + 3] = _OCTET_Z[o]
        return fit(left, np.full(n, 15), max(width, 15)), np.full(n, 15, np.int64)
    left = np.full((n, 15), SPACE, np.uint8)
    pos = np.zeros(n, np.int64)
    rows = np.arange(n)
    for k, o in enumerate(octets):
        ln = _OCTET_LEN[o]
        for d in range(3):
            m = ln > d
            left[rows[m], pos[m] + d] = _OCTET[o[m], d]
        pos += ln
        if k < 3:
            left[rows, pos] = ord(".")
            pos += 1
    w = max(width, 15)
    return right_align(left, pos, w), pos


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
    strings = [ipv6_text(int(h), int(lo), style) for h, lo in zip(uniq["hi"], uniq["lo"],
                                                                   strict=True)]
    return from_strings(strings, index.ravel(), width)


# ----------------------------------------------------------------------------- flags, times

def flag_letters(values, letters, width, integer=False):
    """TCP flags (or attributes) as fixed letter positions, or as integers."""
    v = np.asarray(values).astype(np.uint8)
    if integer:
        return uint(v, width)
    n = len(v)
    out = np.full((n, max(width, len(letters))), SPACE, np.uint8)
    off = out.shape[1] - len(letters)
    for k, (letter, bit) in enumerate(letters):
        out[:, off + k] = np.where(v & bit, ord(letter), SPACE)
    return out, np.full(n, out.shape[1], np.int64)


TCP_FLAGS = [("F", 1), ("S", 2), ("R", 4), ("P", 8), ("A", 16), ("U", 32), ("E", 64),
             ("C", 128)]
ATTRIBUTES = [("T", 0x40), ("C", 0x20), ("F", 0x08), ("S", 0x10)]


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


def _put(out, pos, values, digits):
    v = values.copy()
    for k in range(digits - 1, -1, -1):
        out[:, pos + k] = 48 + (v % 10)
        v //= 10


def timestamps(ms, fmt="default", msec=True, offset_s=None):
    """Times in SiLK's layouts: default, iso, m/d/y, epoch; UTC unless offset_s is given."""
    t = np.asarray(ms).astype(np.int64)
    n = len(t)
    if fmt == "epoch":
        secs = np.floor_divide(t, 1000)
        text, lens = uint(secs.astype(np.uint64))
        if not msec:
            return text, lens
        frac = np.full((n, 4), ord("."), np.uint8)
        _put(frac, 1, t % 1000, 3)
        return np.concatenate([text, frac], axis=1), lens + 4
    if offset_s is not None:
        t = t + np.asarray(offset_s, np.int64) * 1000
    secs = np.floor_divide(t, 1000)
    days = np.floor_divide(secs, 86400)
    sod = secs - days * 86400
    y, m, d = _civil(days)
    w = 19 + (4 if msec else 0)
    out = np.full((n, w), SPACE, np.uint8)
    if fmt == "m/d/y":
        _put(out, 0, m, 2)
        out[:, 2] = out[:, 5] = ord("/")
        _put(out, 3, d, 2)
        _put(out, 6, y, 4)
    else:
        sep = ord("-") if fmt == "iso" else ord("/")
        _put(out, 0, y, 4)
        out[:, 4] = out[:, 7] = sep
        _put(out, 5, m, 2)
        _put(out, 8, d, 2)
    out[:, 10] = ord(" ") if fmt in ("iso", "m/d/y") else ord("T")
    _put(out, 11, sod // 3600, 2)
    out[:, 13] = out[:, 16] = ord(":")
    _put(out, 14, sod // 60 % 60, 2)
    _put(out, 17, sod % 60, 2)
    if msec:
        out[:, 19] = ord(".")
        _put(out, 20, t % 1000, 3)
    return out, np.full(n, w, np.int64)


def seconds(ms, msec=True):
    """Durations as seconds with three decimals (or whole seconds)."""
    v = np.asarray(ms).astype(np.uint64)
    whole, lens = uint(v // np.uint64(1000))
    if not msec:
        return whole, lens
    frac = np.full((len(v), 4), ord("."), np.uint8)
    _put(frac, 1, (v % np.uint64(1000)).astype(np.int64), 3)
    return np.concatenate([whole, frac], axis=1), lens + 4


# ----------------------------------------------------------------------------- layout

def layout(columns, widths, sep=b"|", columnar=True, final=True):
    """Bytes of the lines for formatted columns [(matrix, lengths)], one record per line."""
    n = len(columns[0][0]) if columns else 0
    if n == 0:
        return b""
    parts, masks = [], []
    sepm = np.frombuffer(sep, np.uint8)
    for k, ((mat, lens), width) in enumerate(zip(columns, widths, strict=True)):
        mat = fit(mat, lens, max(width, mat.shape[1])) if columnar else mat
        parts.append(mat)
        if not columnar:
            cols = np.arange(mat.shape[1])
            masks.append(cols[None, :] >= (mat.shape[1] - lens[:, None]))
        last = k == len(columns) - 1
        if not last or final:
            parts.append(np.broadcast_to(sepm, (n, len(sep))))
            if not columnar:
                masks.append(np.ones((n, len(sep)), bool))
    parts.append(np.full((n, 1), 10, np.uint8))
    if not columnar:
        masks.append(np.ones((n, 1), bool))
    big = np.concatenate(parts, axis=1)
    if columnar:
        return big.tobytes()
    return big[np.concatenate(masks, axis=1)].tobytes()
