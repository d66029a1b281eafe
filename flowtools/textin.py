"""Flow records from text, vectorised: rwcut's layouts and other tools' CSV exports.

The input is read in chunks of whole lines, straight into padded numpy buffers. A chunk
is split with numpy alone: newline and separator positions give every field's start and
end (one reshape when every line has the same number of separators), blanks around values
are trimmed only where a value starts or ends with one, and each column is converted at
once from a matrix of its bytes (each row gathered as one fixed-size item): digits by
vectorised arithmetic, dotted quads by a small state machine run over the 15 byte
positions, timestamps and flag letters by fixed positions and lookup tables. Rare forms
(IPv6 text, partial dates, names) go through the per-value Python parsers below, over the
distinct values only; the same parsers check fixed values given as options and explain a
rejected value in error messages.

A line is either converted completely or rejected with the reason: never partly.
"""

import re
import socket
import zlib

import numpy as np

from . import fields as fieldtab
from . import schema
from .errors import FlowError

NL, CR, TAB, SPACE, DOT, COLON = 10, 13, 9, 32, 46, 58
U32 = 2**32 - 1
U64 = 2**64 - 1
MAX_DURATION = U32  # milliseconds
MAX_SECONDS = 10**12  # epoch seconds beyond year 33000 are surely not a time
ICMP = (1, 58)

# pyflow field name -> the key a column fills
KEY_OF_FIELD = {
    "sIP": "sip", "dIP": "dip", "sPort": "sport", "dPort": "dport", "protocol": "protocol",
    "packets": "packets", "bytes": "bytes", "flags": "flags", "sTime": "stime",
    "duration": "duration", "eTime": "etime", "sensor": "sensor", "in": "input",
    "out": "output", "nhIP": "nhip", "initialFlags": "initflags",
    "sessionFlags": "sessflags", "attributes": "attributes", "application": "application",
    "class": "class", "type": "type", "sTime+msec": "stime", "eTime+msec": "etime",
    "dur+msec": "duration", "iType": "itype", "iCode": "icode", "icmpTypeCode": "icmptypecode",
}
TITLE = {"sip": "sIP", "dip": "dIP", "nhip": "nhIP", "sport": "sPort", "dport": "dPort",
         "protocol": "protocol", "packets": "packets", "bytes": "bytes", "flags": "flags",
         "initflags": "initialFlags", "sessflags": "sessionFlags", "attributes": "attributes",
         "stime": "sTime", "etime": "eTime", "duration": "duration", "sensor": "sensor",
         "class": "class", "type": "type", "input": "in", "output": "out",
         "application": "application", "itype": "iType", "icode": "iCode",
         "icmptypecode": "icmpTypeCode"}
KIND = {"sip": "ip", "dip": "ip", "nhip": "ip", "sport": "uint", "dport": "uint",
        "protocol": "protocol", "packets": "uint", "bytes": "uint", "flags": "tcpflags",
        "initflags": "tcpflags", "sessflags": "tcpflags", "attributes": "attributes",
        "stime": "time", "etime": "time", "duration": "duration", "sensor": "sensor",
        "class": "name", "type": "name", "input": "uint", "output": "uint",
        "application": "uint", "itype": "uint", "icode": "uint", "icmptypecode": "uint"}
LIMIT = {"sport": 65535, "dport": 65535, "packets": U64, "bytes": U64, "input": U32,
         "output": U32, "application": 65535, "itype": 255, "icode": 255,
         "icmptypecode": 65535, "protocol": 255}
# Values that may be left blank (they are then 0): rwcut prints iType/iCode blank for
# non-ICMP records and unset flags as blanks; other tools' CSV leaves ports and counters
# of some protocols empty.
BLANK_OK = {"itype", "icode", "flags", "initflags", "sessflags", "attributes"}
BLANK_OK_CSV = BLANK_OK | {"sport", "dport", "input", "output", "application", "nhip"}

PROTOCOLS = {
    "hopopt": 0, "icmp": 1, "igmp": 2, "ggp": 3, "ipip": 4, "ipv4": 4, "ip-in-ip": 4,
    "st": 5, "tcp": 6, "egp": 8, "igp": 9, "pup": 12, "udp": 17, "hmp": 20, "xns-idp": 22,
    "rdp": 27, "iso-tp4": 29, "dccp": 33, "xtp": 36, "ddp": 37, "idpr-cmtp": 38, "ipv6": 41,
    "ipv6-route": 43, "ipv6-frag": 44, "idrp": 45, "rsvp": 46, "gre": 47, "esp": 50,
    "ah": 51, "skip": 57, "icmp6": 58, "ipv6-icmp": 58, "icmpv6": 58, "ipv6-nonxt": 59,
    "ipv6-opts": 60, "rspf": 73, "vmtp": 81, "eigrp": 88, "ospf": 89, "ospfigp": 89,
    "ax.25": 93, "ipip4": 94, "etherip": 97, "encap": 98, "pim": 103, "ipcomp": 108,
    "vrrp": 112, "l2tp": 115, "isis": 124, "sctp": 132, "fc": 133, "mobility-header": 135,
    "udplite": 136, "mpls-in-ip": 137, "manet": 138, "hip": 139, "shim6": 140, "wesp": 141,
    "rohc": 142, "ethernet": 143,
}
TCP_FLAG_BITS = {"F": 1, "S": 2, "R": 4, "P": 8, "A": 16, "U": 32, "E": 64, "C": 128}
ATTRIBUTE_BITS = {"T": 0x20, "C": 0x40, "F": 0x08, "S": 0x10}

PRESETS = {
    # nfdump -o csv: 1.7's short names, and 1.8's long ones
    "nfdump": {
        "columns": {
            "ts": "stime", "te": "etime", "td": "duration", "sa": "sip", "da": "dip",
            "sp": "sport", "dp": "dport", "pr": "protocol", "flg": "flags",
            "ipkt": "packets", "ibyt": "bytes", "pkt": "packets", "byt": "bytes",
            "in": "input", "out": "output", "nh": "nhip",
            "firstseen": "stime", "lastseen": "etime", "duration": "duration",
            "srcaddr": "sip", "dstaddr": "dip", "srcport": "sport", "dstport": "dport",
            "proto": "protocol", "flags": "flags", "inpackets": "packets",
            "inbytes": "bytes", "packets": "packets", "bytes": "bytes", "input": "input",
            "output": "output", "nextip": "nhip"},
        "stop": b"Summary",
        "help": "nfdump -o csv (ts,te,td,sa,da,sp,dp,pr,flg,...,ipkt,ibyt,...; ICMP dp as "
                "TYPE.CODE; run nfdump with TZ=UTC, its times are local)",
    },
    # Argus ra / CTU-13 .binetflow
    "argus": {
        "columns": {
            "starttime": "stime", "lasttime": "etime", "dur": "duration", "proto": "protocol",
            "srcaddr": "sip", "sport": "sport", "dstaddr": "dip", "dport": "dport",
            "totpkts": "packets", "totbytes": "bytes"},
        "argus_icmp": True,
        "help": "Argus/CTU-13 .binetflow (StartTime,Dur,Proto,SrcAddr,Sport,Dir,DstAddr,"
                "Dport,...,TotPkts,TotBytes,...; ICMP type and code from the 0xCCTT Sport; "
                "ARP rows are not IP flows and are rejected)",
    },
    # the marx honeypot log (Data-Driven Security): one packet per row
    "marx": {
        "columns": {
            "datetime": "stime", "host": "sensor", "src": "sip", "proto": "protocol",
            "type": "itype", "spt": "sport", "dpt": "dport"},
        "defaults": {"bytes": 0},
        "help": "the marx honeypot log (datetime,host,src,proto,type,spt,dpt)",
    },
}


# ----------------------------------------------------------------------------- field names

def resolve_field(token, option="--fields"):
    """The key a field name, alias, number or (truncated) title names; None for 'ignore'."""
    t = token.strip()
    if t.lower() == "ignore":
        return None
    try:
        f = fieldtab.find(t, option)
    except FlowError:
        # rwcut cuts a title to its column's width; the widths of sensor, class and type
        # follow the site configuration and can leave an ambiguous prefix ('se').
        hits = [f for f in fieldtab.FIELDS if f.kind in ("sensor", "class", "type")
                and t and f.name.lower().startswith(t.lower())]
        if len(hits) != 1:
            raise
        f = hits[0]
    return KEY_OF_FIELD[f.name]


def split_header(line, sep):
    """Column names of a title or header line (a trailing separator adds no column)."""
    parts = [p.strip() for p in line.split(sep)]
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()
    return parts


def names_a_field(name):
    """True when a title names a field (by name, not by number)."""
    if not name or name[0].isdigit():
        return False
    try:
        resolve_field(name)
    except FlowError:
        return False
    return True


def looks_like_title(names):
    """rwcut's title line: every column names a field and not by number."""
    return any(names) and all(names_a_field(n) for n in names if n)


# ----------------------------------------------------------------------------- scalar parsers

def scalar_uint(text, limit, csv=False, dotted=False):
    """A decimal integer (in CSV mode also 0xHEX, and TYPE.CODE when dotted)."""
    t = text.strip()
    if t.startswith("-"):
        raise ValueError("negative numbers are not allowed")
    if csv and t[:2].lower() == "0x" and len(t) > 2 and _is_hex(t[2:]):
        v = int(t[2:], 16)
    elif dotted and t.count(".") == 1:
        a, b = t.split(".")
        if not (_is_digits(a) and _is_digits(b)):
            raise ValueError("not a number")
        ty, code = int(a), int(b)
        if ty > 255 or code > 255:
            raise ValueError("ICMP type or code larger than 255")
        v = ty << 8 | code
    elif not _is_digits(t):
        raise ValueError("not a number" if t else "empty value")
    else:
        v = int(t)
    if v > limit:
        raise ValueError(f"larger than {limit}")
    return v


def _is_digits(t):
    return t.isascii() and t.isdigit()


def _is_hex(t):
    return t.isascii() and all(c in "0123456789abcdefABCDEF" for c in t)


def scalar_protocol(text):
    t = text.strip()
    if _is_digits(t):
        return scalar_uint(t, 255)
    v = PROTOCOLS.get(t.lower())
    if v is None:
        raise ValueError("negative numbers are not allowed" if t.startswith("-")
                         else "not an IP protocol number or name")
    return v


def scalar_ip(text, hexadecimal=False):
    """(is_ipv6, integer value) of an address: dotted quad, IPv6, decimal or hex integer."""
    t = text.strip()
    if ":" in t:
        try:
            return True, int.from_bytes(socket.inet_pton(socket.AF_INET6, t), "big")
        except (OSError, ValueError):
            raise ValueError("not an IP address") from None
    if "." in t:
        parts = t.split(".")
        if len(parts) != 4 or not all(p and len(p) <= 3 and _is_digits(p) for p in parts):
            raise ValueError("not an IP address")
        octets = [int(p) for p in parts]
        if max(octets) > 255:
            raise ValueError("octet larger than 255")
        return False, octets[0] << 24 | octets[1] << 16 | octets[2] << 8 | octets[3]
    if t[:2].lower() == "0x" and len(t) > 2 and _is_hex(t[2:]):
        v = int(t[2:], 16)
    elif hexadecimal and t and _is_hex(t):
        v = int(t, 16)
    elif _is_digits(t):
        v = int(t)
    elif t and _is_hex(t):
        raise ValueError("not an IP address (hexadecimal integers need --ip-format="
                         "hexadecimal)")
    else:
        raise ValueError("negative numbers are not allowed" if t.startswith("-")
                         else "not an IP address")
    if v > 2**128 - 1:
        raise ValueError("larger than an IPv6 address")
    return v > U32, v


_YMD = re.compile(r"(\d{4})([/-])(\d{1,2})\2(\d{1,2})"
                  r"(?:[T :](\d{1,2})(?::(\d{1,2})(?::(\d{1,2})(?:\.(\d*))?)?)?)?\Z")
_MDY = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})"
                  r"(?:[T :](\d{1,2})(?::(\d{1,2})(?::(\d{1,2})(?:\.(\d*))?)?)?)?\Z")
_SECONDS = re.compile(r"(\d*)(?:\.(\d*))?\Z")


def scalar_seconds(text, limit_ms):
    """(milliseconds, uncertainty in ms) of decimal seconds ('1.5', '10', '0.000123')."""
    t = text.strip()
    m = _SECONDS.match(t) if t.isascii() else None
    if not m or not (m.group(1) or m.group(2)):
        if t.startswith("-"):
            raise ValueError("negative numbers are not allowed")
        raise ValueError("not a number of seconds" if t else "empty value")
    whole, frac = m.group(1) or "0", m.group(2)
    if len(whole) > 13:
        raise ValueError("too large")
    ms = int(whole) * 1000 + int(((frac or "") + "000")[:3])
    if ms > limit_ms:
        raise ValueError(f"larger than {limit_ms / 1000:.3f} seconds")
    return ms, _uncertainty(frac)


def _uncertainty(frac):
    if frac is None or frac == "":
        return 1000
    return 0 if len(frac) <= 3 else 1


def scalar_time(text):
    """(epoch milliseconds, uncertainty in ms) of a time in any of SiLK's text forms."""
    t = text.strip()
    if t and _SECONDS.match(t) and t.isascii():
        ms, unc = scalar_seconds(t, MAX_SECONDS * 1000)
        return ms, unc
    m = _YMD.match(t) if t.isascii() else None
    if m:
        y, mo, d, h, mi, s, frac = (m.group(1), m.group(3), m.group(4), *m.group(5, 6, 7, 8))
    else:
        m = _MDY.match(t) if t.isascii() else None
        if not m:
            raise ValueError("not a date and time" if t else "empty value")
        mo, d, y, h, mi, s, frac = m.groups()
    y, mo, d = int(y), int(mo), int(d)
    if y < 1970:
        raise ValueError("before 1970")
    if not 1 <= mo <= 12 or not 1 <= d <= _days_in_month(y, mo):
        raise ValueError("no such date")
    hh, mm, ss = (int(v) if v is not None else 0 for v in (h, mi, s))
    if hh > 23 or mm > 59 or ss > 59:
        raise ValueError("no such time of day")
    days = int(days_from_civil(np.array([y]), np.array([mo]), np.array([d]))[0])
    ms = ((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1000 + int(((frac or "") + "000")[:3])
    if s is not None:
        unc = _uncertainty(frac)
    else:
        unc = 60_000 if mi is not None else (3_600_000 if h is not None else 86_400_000)
    return ms, unc


def _days_in_month(y, m):
    if m == 2:
        return 29 if (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 28
    return 30 if m in (4, 6, 9, 11) else 31


def scalar_flags(text, bits):
    """Flags given as letters (any order, blanks and '.' ignored) or as an integer."""
    t = text.strip()
    if _is_digits(t):
        return scalar_uint(t, 255)
    v = 0
    for c in t:
        if c in " .":
            continue
        b = bits.get(c.upper())
        if b is None:
            raise ValueError(f"'{c}' is not one of the letters {''.join(bits)}"
                             if not t.startswith("-") else "negative numbers are not allowed")
        v |= b
    return v


def scalar_sensor(text, config):
    t = text.strip()
    if _is_digits(t):
        return scalar_uint(t, 65534)
    if not t:
        raise ValueError("empty value")
    if config is None:
        raise ValueError("a sensor name needs a site configuration (--site-config-file)")
    try:
        return config.sensor_id(t)
    except FlowError as exc:
        raise ValueError(f"{exc} in {config.path}") from None


def scalar_flowtype(class_name, type_name, config):
    c, t = class_name.strip(), type_name.strip()
    if _is_digits(c) and _is_digits(t):
        if c != t:
            raise ValueError("class and type give different flowtype numbers")
        return scalar_uint(c, 255)
    if config is None:
        raise ValueError("class and type names need a site configuration "
                         "(--site-config-file)")
    try:
        return config.flowtype_id(c, t)
    except FlowError as exc:
        raise ValueError(str(exc)) from None


def days_from_civil(y, m, d):
    """Days since 1970-01-01 of proleptic Gregorian dates (arrays)."""
    y = y.astype(np.int64) - (m <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    mp = np.where(m > 2, m - 3, m + 9).astype(np.int64)
    doy = (153 * mp + 2) // 5 + d.astype(np.int64) - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


# ----------------------------------------------------------------------------- vector parts

PAD = 64  # zero bytes around a chunk: the widest window a value is read through


class Chunk:
    """Whole lines of text, each ending in a newline, at buf[start:end] of a uint8 array
    with at least PAD bytes before and after them (windows read through them)."""

    def __init__(self, buf, start, end):
        self.buf, self.start, self.end = buf, start, end

    @classmethod
    def of(cls, data):
        """A Chunk of bytes (whole lines)."""
        buf = np.zeros(len(data) + 2 * PAD, np.uint8)
        buf[PAD: PAD + len(data)] = np.frombuffer(data, np.uint8)
        return cls(buf, PAD, PAD + len(data))

    @property
    def a(self):
        return self.buf[self.start: self.end]

    def __len__(self):
        return self.end - self.start

    def skip_to(self, pos):
        """The rest of the chunk from its byte pos on."""
        return Chunk(self.buf, self.start + pos, self.end)


def _lut(pairs, default, dtype=np.int16):
    t = np.full(256, default, dtype)
    for k, v in pairs:
        t[k] = v
    return t


_FLAG_SKIP = (SPACE, DOT, 0)


def _flag_luts(bits):
    letters = [(ord(c), b) for c, b in bits.items()] + [(ord(c.lower()), b)
                                                       for c, b in bits.items()]
    value = _lut(letters, 0, np.uint8)
    known = _lut(letters + [(c, 1) for c in _FLAG_SKIP] + [(c, 1) for c in range(48, 58)],
                 0, bool)
    digit = _lut([(c, 1) for c in range(48, 58)], 0, bool)
    return value, known, digit


_TCP_LUT = _flag_luts(TCP_FLAG_BITS)
_ATTR_LUT = _flag_luts(ATTRIBUTE_BITS)
_HEXVAL = _lut([(c, c - 48) for c in range(48, 58)] + [(c, c - 87) for c in range(97, 103)]
               + [(c, c - 55) for c in range(65, 71)], 99, np.uint8)


def _gather(buf, starts, w):
    """(n, w) bytes of buf from each start: each row copied as one w-byte item."""
    items = np.ndarray(shape=(len(buf) - w + 1,), dtype=f"V{w}", buffer=buf, strides=(1,))
    return items[starts].view(np.uint8).reshape(len(starts), w)


_MASKS = {}


def _masks(w, right):
    """For each length 0..w, the w-byte mask of a value of that length (as V{w} items)."""
    key = (w, right)
    if key not in _MASKS:
        ln = np.arange(w + 1)[:, None]
        ar = np.arange(w)[None, :]
        m = (ar >= w - ln) if right else (ar < ln)
        _MASKS[key] = np.ascontiguousarray(m).view(f"V{w}").ravel()
    return _MASKS[key]


def _bad_rows(mask2d):
    """Rows of an (n, w) bool matrix with any True (fast when there are none)."""
    w = mask2d.shape[1]
    if w == 0:
        return np.zeros(0, np.int64)
    return np.flatnonzero(mask2d.ravel()) // w


class Text:
    """The text of one column over the rows of a chunk: offsets [s, e) into the buffer of
    a Chunk (readable PAD bytes around)."""

    def __init__(self, buf, s, e):
        self.buf, self.s, self.e = buf, s, e
        self.n = len(s)
        self.len = e - s

    def sub(self, rows):
        return Text(self.buf, self.s[rows], self.e[rows])

    def maxlen(self):
        return int(self.len.max()) if self.n else 0

    def window(self, w, right=True):
        """(n, w) bytes: each value's last (right) or first w bytes, plus whatever
        surrounds it when it is shorter; w <= PAD."""
        return _gather(self.buf, self.e - w if right else self.s, w)

    def inside(self, w, right=True):
        """(n, w) bool: which window bytes belong to the value (None when all do)."""
        if self.n == 0:
            return None
        ln = np.minimum(self.len, w)
        if int(ln.min()) >= w:
            return None
        return _masks(w, right)[ln].view(bool).reshape(self.n, w)

    def matrix(self, w, right=True):
        """(n, w) bytes of each value, aligned, zero outside the value."""
        m = self.window(w, right)
        inside = self.inside(w, right)
        return m if inside is None else m * inside

    def digits(self, w, right=True):
        """(n, w) digit values (>= 10 for other bytes), zero outside the value."""
        d = self.window(w, right) - np.uint8(48)
        inside = self.inside(w, right)
        if inside is not None:
            d *= inside
        return d

    def value(self, i):
        return bytes(self.buf[self.s[i]: self.e[i]]).decode("utf-8", "replace")

    def raw(self, i):
        return bytes(self.buf[self.s[i]: self.e[i]])

    def strings(self):
        """Fixed-width byte strings of the values (np 'S' array)."""
        w = min(max(self.maxlen(), 1), PAD)
        if self.maxlen() > PAD:  # rare: long names
            return np.array([self.raw(i) for i in range(self.n)], "S")
        return np.ascontiguousarray(self.matrix(w, right=False)).view(f"S{w}").ravel()


def _combine(d, w):
    """uint64 values of an (n, w) matrix of digits 0-9 (most significant first)."""
    n = len(d)
    if w == 0:
        return np.zeros(n, np.uint64)
    if w <= 9:
        v = d[:, 0].astype(np.uint32)
        ten = np.uint32(10)
        for k in range(1, w):
            v *= ten
            v += d[:, k]
        return v.astype(np.uint64)
    v = d[:, 0].astype(np.uint64)
    ten = np.uint64(10)
    for k in range(1, w):
        v *= ten
        v += d[:, k]
    return v


def digits_of(text, maxw=19):
    """(uint64 value, ok) of all-digit values of at most maxw digits; empty is not ok."""
    n = text.n
    ln = text.len
    ok = (ln > 0) & (ln <= maxw)
    w = min(text.maxlen(), maxw)
    if n == 0 or w <= 0:
        return np.zeros(n, np.uint64), ok
    d = text.digits(w)
    ok[_bad_rows(d > 9)] = False
    if not ok.all():
        d[~ok] = 0
    return _combine(d, w), ok


def _scalar_rows(text, rows, fn):
    """A scalar parser applied to the distinct values of some rows: (values, ok), the
    values an object array (None where not ok)."""
    sub = text.sub(rows)
    uniq, inverse = np.unique(sub.strings(), return_inverse=True)
    vals = np.empty(len(uniq), object)
    good = np.zeros(len(uniq), bool)
    for k, raw in enumerate(uniq):
        try:
            vals[k] = fn(raw.decode("utf-8"))
            good[k] = True
        except (ValueError, UnicodeDecodeError):
            pass
    inverse = inverse.ravel()
    return vals[inverse], good[inverse]


def _fill(dest, rows, vals, good, default=0):
    dest[rows] = [v if g else default for v, g in zip(vals, good, strict=True)]


def parse_uint(text, limit, blank_ok=False, csv=False, dotted=False):
    """(uint64 values, ok) of a column of integers."""
    val, ok = digits_of(text)
    blank = text.len == 0
    rest = np.flatnonzero(~ok & ~blank)
    if len(rest):
        vals, good = _scalar_rows(text, rest,
                                  lambda t: scalar_uint(t, limit, csv=csv, dotted=dotted))
        _fill(val, rest, vals, good)
        ok[rest] = good
    if limit < U64:
        ok &= val <= np.uint64(limit)
    if blank_ok:
        ok |= blank
    return val, ok


def parse_protocol(text, blank_ok=False):
    val, ok = digits_of(text, maxw=3)
    blank = text.len == 0
    rest = np.flatnonzero(~ok & ~blank)
    if len(rest):
        vals, good = _scalar_rows(text, rest, scalar_protocol)
        _fill(val, rest, vals, good)
        ok[rest] = good
    ok &= val <= 255
    if blank_ok:
        ok |= blank
    return val.astype(np.uint8), ok


def parse_seconds(text, limit_ms):
    """(milliseconds int64, uncertainty int64, ok) of decimal seconds."""
    n = text.n
    ms = np.zeros(n, np.int64)
    unc = np.zeros(n, np.int64)
    ok = np.zeros(n, bool)
    if n == 0:
        return ms, unc, ok
    buf, e = text.buf, text.e
    ln = text.len
    # the usual form: three decimals
    three = (ln >= 5) & (buf[e - 4] == DOT)
    rows = np.flatnonzero(three)
    if len(rows):
        sub = text.sub(rows)
        whole, wok = digits_of(Text(buf, sub.s, sub.e - 4), maxw=13)
        frac, fok = digits_of(Text(buf, sub.e - 3, sub.e), maxw=3)
        ms[rows] = whole.astype(np.int64) * 1000 + frac.astype(np.int64)
        ok[rows] = wok & fok
    # whole seconds
    rest = np.flatnonzero(~ok)
    if len(rest):
        whole, wok = digits_of(text.sub(rest), maxw=13)
        ms[rest] = whole.astype(np.int64) * 1000
        unc[rest] = 1000
        ok[rest] = wok
    rest = np.flatnonzero(~ok)
    if len(rest):
        vals, good = _scalar_rows(text, rest, lambda t: scalar_seconds(t, MAX_SECONDS * 1000))
        ms[rest] = [v[0] if g else 0 for v, g in zip(vals, good, strict=True)]
        unc[rest] = [v[1] if g else 0 for v, g in zip(vals, good, strict=True)]
        ok[rest] = good
    ok &= ms <= limit_ms
    return ms, unc, ok


# digit positions of Y Y Y Y M M D D h h m m s s
_YMD_DIGITS = np.array([0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18])
_MDY_DIGITS = np.array([6, 7, 8, 9, 0, 1, 3, 4, 11, 12, 14, 15, 17, 18])
_MONTH0 = 1970
_MONTH_DAYS = None  # days since the epoch of the first of each month 1970-2199, and lengths


def _month_tables():
    global _MONTH_DAYS
    if _MONTH_DAYS is None:
        y = np.repeat(np.arange(_MONTH0, 2200), 12)
        m = np.tile(np.arange(1, 13), 2200 - _MONTH0)
        first = days_from_civil(y, m, np.ones_like(m))
        nxt = np.append(first[1:], days_from_civil(np.array([2200]), np.array([1]),
                                                   np.array([1])))
        _MONTH_DAYS = (first.astype(np.int32), (nxt - first).astype(np.int32))
    return _MONTH_DAYS


# byte - 48 of the separators
_SLASH, _DASH, _COLON, _T, _SPACE, _DOT = 255, 253, 10, 36, 240, 254


def parse_time(text):
    """(epoch milliseconds int64, uncertainty int64, ok) of timestamps in any form."""
    n = text.n
    ms = np.zeros(n, np.int64)
    unc = np.zeros(n, np.int64)
    ok = np.zeros(n, bool)
    if n == 0:
        return ms, unc, ok
    ln = text.len
    w = min(max(text.maxlen(), 23), 32)
    d = text.digits(w, right=False)
    c4, c7, c10 = d[:, 4], d[:, 7], d[:, 10]
    ymd = ((c4 == _SLASH) | (c4 == _DASH)) & (c7 == c4)
    mdy = (d[:, 2] == _SLASH) & (d[:, 5] == _SLASH)
    full = ((ymd | mdy) & ((c10 == _T) | (c10 == _SPACE) | (c10 == _COLON))
            & (d[:, 13] == _COLON) & (d[:, 16] == _COLON)
            & ((ln == 19) | ((ln >= 21) & (d[:, 19] == _DOT))) & (ln <= 32))
    if full.any():
        if ymd[full].all():
            dig = d[:, _YMD_DIGITS]
        elif mdy[full].all():
            dig = d[:, _MDY_DIGITS]
        else:
            dig = np.where(ymd[:, None], d[:, _YMD_DIGITS], d[:, _MDY_DIGITS])
        good = full.copy()
        good[_bad_rows(dig > 9)] = False
        if w > 20:
            good[_bad_rows(d[:, 20:] > 9)] = False  # past the end they are 0
        dig = dig * good[:, None]
        pairs = np.ascontiguousarray((dig[:, 0::2] * np.uint8(10) + dig[:, 1::2]).T)
        cc, yy, mo, dd, hh, mi, ss = pairs.astype(np.int32)
        y = cc * 100 + yy
        first, length = _month_tables()
        month = (y - _MONTH0) * 12 + mo - 1
        inrange = (y >= _MONTH0) & (y < 2200) & (mo >= 1) & (mo <= 12)
        month = np.where(inrange, month, 0)
        good &= inrange & (dd >= 1) & (dd <= length[month])
        good &= (hh <= 23) & (mi <= 59) & (ss <= 59)
        minutes = (first[month] + dd - 1) * 1440 + hh * 60 + mi  # int32 until year 6000
        msec = ss * 1000 + d[:, 20] * np.int32(100) + d[:, 21] * np.int32(10) + d[:, 22]
        ms = (minutes.astype(np.int64) * 60_000 + msec) * good
        unc = np.where(ln == 19, 1000, np.where(ln > 23, 1, 0))
        ok = good
    rest = np.flatnonzero(~ok)
    if len(rest):
        # epoch seconds, and partial or unusual forms
        ems, eunc, eok = parse_seconds(text.sub(rest), MAX_SECONDS * 1000)
        ms[rest], unc[rest], ok[rest] = ems, eunc, eok
        rest2 = rest[~eok]
        if len(rest2):
            vals, good = _scalar_rows(text, rest2, scalar_time)
            ms[rest2] = [v[0] if g else 0 for v, g in zip(vals, good, strict=True)]
            unc[rest2] = [v[1] if g else 0 for v, g in zip(vals, good, strict=True)]
            ok[rest2] = good
    return ms, unc, ok


def parse_flags(text, luts, blank_ok=True):
    """(uint8 values, ok) of flags as letters (any order, blanks ignored) or integers."""
    value, known, digit = luts
    n = text.n
    val = np.zeros(n, np.uint8)
    ok = text.len <= 16
    if n == 0:
        return val, ok
    w = max(min(text.maxlen(), 16), 1)
    w8 = (w + 7) // 8 * 8
    m = text.matrix(w, right=False)
    if w8 != w:
        m = np.concatenate([m, np.zeros((n, w8 - w), np.uint8)], axis=1)
    ok[_bad_rows(~known[m])] = False
    v = np.ascontiguousarray(value[m]).view(np.uint64)
    acc = np.bitwise_or.reduce(v, axis=1) if v.shape[1] > 1 else v[:, 0]
    for shift in (32, 16, 8):
        acc = acc | (acc >> np.uint64(shift))
    val = (acc & np.uint64(255)).astype(np.uint8)
    numeric = np.unique(_bad_rows(digit[m]))
    if len(numeric):
        nv, nok = digits_of(text.sub(numeric), maxw=3)
        val[numeric] = np.minimum(nv, 255).astype(np.uint8)
        ok[numeric] &= nok & (nv <= 255)
    if not blank_ok:
        ok &= text.len > 0
    return val, ok


def _dotted_quads(text):
    """(uint32 address, ok) of dotted-quad values of at most 15 bytes."""
    n = text.n
    m = np.ascontiguousarray(text.matrix(15).T)  # (15, n), zero before the value
    d = m - np.uint8(48)
    isdot = m == DOT
    badchar = (d > 9) & ~isdot & (m != 0)
    acc = np.zeros(n, np.uint32)
    cur = np.zeros(n, np.uint16)
    big = np.zeros(n, np.uint16)  # the largest octet
    nd = np.zeros(n, np.uint8)  # digits of the current octet
    many = np.zeros(n, np.uint8)  # the most digits of an octet
    empty = np.zeros(n, bool)  # an octet without digits
    ten, one = np.uint16(10), np.uint8(1)
    for k in range(15 - min(text.maxlen(), 15), 15):
        dot, dk = isdot[k], d[k]
        isdig = dk < 10
        empty |= dot & (nd == 0)
        acc = (acc << (dot * np.uint8(8))) | (cur * dot)
        cur = (cur * ten + dk) * isdig
        np.maximum(big, cur, out=big)
        nd = (nd + one) * isdig
        np.maximum(many, nd, out=many)
    ok = ~empty & (nd > 0) & (big <= 255) & (many <= 3)
    ok &= isdot.sum(axis=0, dtype=np.uint8) == 3
    ok[np.flatnonzero(badchar.ravel()) % n] = False
    return (acc << np.uint32(8)) | cur, ok


def parse_ip(text, hexadecimal=False, blank_ok=False):
    """IPv4 values (uint32), is-IPv6 mask, IPv6 halves (uint64 hi, lo or None) and ok."""
    n = text.n
    v4 = np.zeros(n, np.uint32)
    is6 = np.zeros(n, bool)
    hi = lo = None
    ok = np.zeros(n, bool)
    if n == 0:
        return v4, is6, hi, lo, ok
    ln = text.len
    quad = (ln >= 7) & (ln <= 15)
    if quad.all():
        v4, ok = _dotted_quads(text)
    elif quad.any():
        rows = np.flatnonzero(quad)
        v4[rows], ok[rows] = _dotted_quads(text.sub(rows))
    # integers (--ip-format=decimal or hexadecimal) of IPv4 size
    rest = np.flatnonzero(~ok & (ln > 0))
    if len(rest) and not hexadecimal:
        dv, dok = digits_of(text.sub(rest), maxw=10)
        dok &= dv <= np.uint64(U32)
        v4[rest[dok]] = dv[dok].astype(np.uint32)
        ok[rest[dok]] = True
        rest = rest[~dok]
    elif len(rest):
        sub = text.sub(rest)
        w = max(min(sub.maxlen(), 8), 1)
        hexv = _HEXVAL[sub.window(w)]
        inside = sub.inside(w)
        if inside is not None:
            hexv *= inside
        hok = sub.len <= 8
        hok[_bad_rows(hexv >= 16)] = False
        acc = np.zeros(len(rest), np.uint32)
        for k in range(w):
            acc = (acc << np.uint32(4)) | hexv[:, k].astype(np.uint32)
        v4[rest[hok]] = acc[hok]
        ok[rest[hok]] = True
        rest = rest[~hok]
    if len(rest):
        # IPv6 text and other rare forms: each distinct value parsed once
        uniq, inverse = np.unique(text.sub(rest).strings(), return_inverse=True)
        inverse = inverse.ravel()
        m = len(uniq)
        ugood, u6 = np.zeros(m, bool), np.zeros(m, bool)
        uhi, ulo = np.zeros(m, np.uint64), np.zeros(m, np.uint64)
        # IPv6 text straight through inet_pton, its 16 bytes gathered and converted at once
        # (a third of the time of this loop on the bench CSV: 1.8% IPv6 addresses);
        # anything it refuses goes through scalar_ip, which explains it.
        six_at, packed = [], []
        pton, af6 = socket.inet_pton, socket.AF_INET6
        for k, raw in enumerate(uniq):
            if b":" in raw:
                try:
                    packed.append(pton(af6, raw.decode("ascii")))
                    six_at.append(k)
                    continue
                except (OSError, ValueError):
                    pass
            try:
                six, v = scalar_ip(raw.decode("utf-8"), hexadecimal)
            except (ValueError, UnicodeDecodeError):
                continue
            ugood[k], u6[k], uhi[k], ulo[k] = True, six, v >> 64, v & U64
        if six_at:
            halves = np.frombuffer(b"".join(packed), ">u8").reshape(-1, 2)
            ugood[six_at] = u6[six_at] = True
            uhi[six_at], ulo[six_at] = halves[:, 0], halves[:, 1]
        ok[rest] = ugood[inverse]
        four = ugood & ~u6
        v4[rest[four[inverse]]] = ulo[inverse][four[inverse]].astype(np.uint32)
        if u6.any():
            hi = np.zeros(n, np.uint64)
            lo = np.zeros(n, np.uint64)
            hi[rest], lo[rest] = uhi[inverse], ulo[inverse]
            is6[rest] = u6[inverse]
    if blank_ok:
        ok |= ln == 0
    return v4, is6, hi, lo, ok


def parse_names(text, fn):
    """(int64 values, ok) of a column resolved through fn over its distinct values."""
    n = text.n
    val = np.zeros(n, np.int64)
    ok = np.zeros(n, bool)
    if n == 0:
        return val, ok
    digits, dok = digits_of(text, maxw=5)
    if dok.all():  # IDs: checked through fn once each
        uniq, inverse = np.unique(digits, return_inverse=True)
        keys = [str(int(u)) for u in uniq]
    else:
        uniq, inverse = np.unique(text.strings(), return_inverse=True)
        keys = [u.decode("utf-8", "replace") if isinstance(u, bytes) else u for u in uniq]
    uv = np.zeros(len(keys), np.int64)
    uok = np.zeros(len(keys), bool)
    for k, key in enumerate(keys):
        try:
            uv[k] = fn(key)
            uok[k] = True
        except ValueError:
            pass
    inverse = inverse.ravel()
    return uv[inverse], uok[inverse]


# ----------------------------------------------------------------------------- the layout

class Layout:
    """What the columns of an input hold and how to read them.

    keys: per column, the key it fills (None: ignored); titles: the names used in
    messages; fixed: key -> value given as an option (a column of that key is ignored);
    defaults: key -> value when no column or option gives it.
    """

    def __init__(self, keys, titles, sep=b"|", csv=False, hexadecimal=False, config=None,
                 fixed=None, defaults=None, stop=None, argus_icmp=False, final=None):
        self.keys = list(keys)
        # whether lines end with a separator (as the title line does); None: either
        self.final = final
        self.titles = list(titles)
        self.sep = sep
        self.csv = csv
        self.hexadecimal = hexadecimal
        self.config = config
        self.fixed = dict(fixed or {})
        self.defaults = dict(defaults or {})
        self.stop = stop
        self.argus_icmp = argus_icmp
        present = {k for k in self.keys if k is not None} | set(self.fixed)
        if "class" in present and "type" not in present:
            raise FlowError("a class column or --class needs a type column or --type")
        if "type" in present and "class" not in present:
            self.default_class = _default_class(config)
        else:
            self.default_class = None
        if not any(k is not None for k in self.keys) and not self.fixed:
            raise FlowError("no field to read: every column is ignored")

    def has(self, key):
        return key in self.fixed or key in self.keys


def _default_class(config):
    if config is None:
        raise FlowError("a type without a class needs a site configuration or --class")
    if config.default_class:
        return config.default_class
    if len(config.classes) == 1:
        return next(iter(config.classes))
    raise FlowError("a type column needs a class: give --class")


def parse_fixed(key, value, config=None, option=None):
    """The value of a fixed-value option (--sport=80 ...), checked as a column would be."""
    option = option or f"--{key}"
    try:
        kind = KIND[key]
        if kind == "ip":
            is6, v = scalar_ip(value)
            return (is6, v)
        if kind == "uint":
            return scalar_uint(value, LIMIT[key])
        if kind == "protocol":
            return scalar_protocol(value)
        if kind == "tcpflags":
            return scalar_flags(value, TCP_FLAG_BITS)
        if kind == "attributes":
            return scalar_flags(value, ATTRIBUTE_BITS)
        if kind == "time":
            return scalar_time(value)
        if kind == "duration":
            return scalar_seconds(value, MAX_DURATION)
        if kind == "sensor":
            return scalar_sensor(value, config)
        if kind == "name":
            if not value.strip():
                raise ValueError("empty value")
            return value.strip()
    except ValueError as exc:
        raise FlowError(f"invalid {option} value '{value}': {exc}") from None
    raise FlowError(f"invalid {option}")


# ----------------------------------------------------------------------------- the parser

class Rejected:
    """Lines of a chunk that were not converted: line numbers, texts and reasons."""

    def __init__(self, linenos, texts, reasons):
        self.linenos, self.texts, self.reasons = linenos, texts, reasons

    def __len__(self):
        return len(self.linenos)


class Parser:
    """Converts chunks of whole lines into batches, by a Layout."""

    def __init__(self, layout, now_ms):
        self.lay = layout
        self.now_ms = now_ms

    def parse(self, chunk, explain=1):
        """(batch, Rejected, lines, stopped) of a Chunk: the records, the lines not
        converted (numbered from 0 at the chunk's first line), the number of lines in the
        chunk, and whether the layout's stop line (nfdump's 'Summary') ended the records.
        Reasons are given for the first `explain` rejected lines (None after).
        Thread-safe: chunks may be parsed concurrently."""
        lay = self.lay
        buf, base = chunk.buf, chunk.start
        a = chunk.a
        nl = np.flatnonzero(a == NL)
        sp = np.flatnonzero(a == lay.sep[0])
        starts = np.empty(len(nl), np.int64)
        if len(nl):
            starts[0] = 0
            starts[1:] = nl[:-1] + 1
        ends = nl.copy()
        if len(nl):
            ends -= (ends > starts) & (a[np.maximum(ends - 1, 0)] == CR)
        ncols = len(lay.keys)
        # the separators of each line: the same number on every line is the usual case
        grid = None
        nlines = len(nl)
        for per in (ncols - 1, ncols):
            if per > 0 and nlines and len(sp) == nlines * per:
                g = sp.reshape(nlines, per)
                if bool((g[:, 0] >= starts).all()) and bool((g[:, -1] < nl).all()):
                    grid = g
                break
        if grid is not None:  # every line has a separator: none is blank
            rows = np.arange(nlines)
            allrows = True
        else:
            off = np.searchsorted(sp, starts)
            nsep = np.searchsorted(sp, ends) - off
            nonblank = nsep > 0
            maybe = np.flatnonzero(~nonblank)
            if len(maybe):
                ts, te = _trim(buf, base, starts[maybe], ends[maybe])
                nonblank[maybe] = te > ts
            allrows = bool(nonblank.all())
            rows = np.arange(nlines) if allrows else np.flatnonzero(nonblank)
        stopped = False
        if lay.stop is not None and len(rows):
            hit = self._find_stop(a, starts[rows], ends[rows])
            if hit is not None:
                rows = rows[:hit]
                allrows = False
                stopped = True
        n = len(rows)
        rs, re_ = (starts, ends) if allrows else (starts[rows], ends[rows])
        why = np.full(n, -1, np.int32)
        reasons = []  # index -> (kind, data)

        def fail(bad, reason):
            bad = bad & (why < 0)
            if bad.any():
                why[bad] = len(reasons)
                reasons.append(reason)

        # bytes that are not text
        if len(a) and a.min() == 0:
            fail(_rows_with(a == 0, nl, rows), ("text", "NUL byte in the line"))
        if len(a) and a.max() >= 128:
            fail(self._bad_utf8(a, nl, rows), ("text", "not UTF-8 text"))
        if grid is not None and allrows:
            cnt = np.full(n, grid.shape[1], np.int64)
            gridt = np.ascontiguousarray(grid.T)

            def sep_at(j):
                return gridt[j]
        else:
            grid = None
            off = np.searchsorted(sp, rs)
            cnt = np.searchsorted(sp, re_) - off
            last = max(len(sp) - 1, 0)

            def sep_at(j):
                if not len(sp):
                    return re_
                return np.where(cnt > j, sp[np.minimum(off + j, last)], re_)

        def blank(p):
            """Whether [p, re_) holds only blanks."""
            ts, te = _trim(buf, base, np.minimum(p, re_), re_)
            return te <= ts

        trailing = cnt == ncols
        if trailing.any():
            trailing &= blank(sep_at(ncols - 1) + 1)
        if lay.final is None:
            fail(~((cnt == ncols - 1) | trailing), ("count", cnt, ncols))
        elif lay.final:
            # a missing final separator is allowed, a missing last field is not
            short = cnt == ncols - 1
            if short.any():
                short &= ~blank((sep_at(ncols - 2) + 1) if ncols > 1 else rs)
            fail(~(trailing | short), ("count", cnt, ncols))
        else:
            fail(cnt != ncols - 1, ("count", cnt, ncols))
        texts = {}
        blanks = np.count_nonzero(a <= SPACE) > len(nl)  # blanks (or control bytes)
        for j, key in enumerate(lay.keys):
            if key is None or key in lay.fixed:
                continue
            cs = rs if j == 0 else sep_at(j - 1) + 1
            ce = sep_at(j) if grid is None or j < grid.shape[1] else re_
            if grid is None:
                cs = np.minimum(cs, ce)
            if blanks:
                cs, ce = _trim(buf, base, cs, ce)
            texts.setdefault(key, []).append((j, Text(buf, cs + base, ce + base)))
        cols = self._convert(texts, n, fail)
        batch = self._assemble(cols, n, fail)
        bad = why >= 0
        if bad.any():
            batch = schema.take(batch, ~bad)
        badrows = np.flatnonzero(bad)
        linenos = rows[badrows]
        btexts = [bytes(a[rs[i]: re_[i]]) for i in badrows]
        msgs = [self._explain(reasons[why[i]], i, texts) if k < explain else None
                for k, i in enumerate(badrows)]
        return batch, Rejected(linenos, btexts, msgs), len(nl), stopped

    def _find_stop(self, a, rs, re_):
        word = np.frombuffer(self.lay.stop, np.uint8)
        cand = np.flatnonzero((re_ - rs) >= len(word))
        cand = cand[a[rs[cand]] == word[0]]
        for i in cand:
            if bytes(a[rs[i]: re_[i]]).strip() == self.lay.stop:
                return int(i)
        return None

    @staticmethod
    def _bad_utf8(a, nl, rows):
        high = np.flatnonzero(a >= 128)
        lines = np.unique(np.searchsorted(nl, high))
        badline = []
        for li in lines:
            s = 0 if li == 0 else int(nl[li - 1]) + 1
            try:
                bytes(a[s: int(nl[li])]).decode("utf-8")
            except UnicodeDecodeError:
                badline.append(int(li))
        return np.isin(rows, np.array(badline, np.int64))

    # --------------------------------------------------------------- columns to values

    def _convert(self, texts, n, fail):
        lay = self.lay
        out = {}
        blank_ok = BLANK_OK_CSV if lay.csv else BLANK_OK
        for key, items in texts.items():
            kind = KIND[key]
            results = []
            for j, text in items:
                bok = key in blank_ok
                if kind == "ip":
                    v4, is6, hi, lo, ok = parse_ip(text, lay.hexadecimal, bok)
                    res = (v4, is6, hi, lo)
                elif kind == "uint":
                    v, ok = parse_uint(text, LIMIT[key], bok, csv=lay.csv,
                                       dotted=lay.csv and key == "dport")
                    res = v
                elif kind == "protocol":
                    res, ok = parse_protocol(text, bok)
                elif kind == "tcpflags":
                    res, ok = parse_flags(text, _TCP_LUT, bok)
                elif kind == "attributes":
                    res, ok = parse_flags(text, _ATTR_LUT, bok)
                elif kind == "time":
                    ms, unc, ok = parse_time(text)
                    res = (ms, unc)
                elif kind == "duration":
                    ms, unc, ok = parse_seconds(text, MAX_DURATION)
                    res = (ms, unc)
                elif kind == "sensor":
                    res, ok = parse_names(text, lambda t: scalar_sensor(t, lay.config))
                elif kind == "name":
                    res, ok = text.strings(), np.ones(n, bool)
                else:  # pragma: no cover
                    raise AssertionError(kind)
                fail(~ok, ("value", key, j))
                results.append((j, res))
            out[key] = results[0][1]
            for j, res in results[1:]:  # the same field twice (sTime and sTime+msec)
                fail(~_same(out[key], res), ("differ", key, items[0][0], j))
            if kind in ("uint",):
                out[key + "#blank"] = items[0][1].len == 0
        return out

    def _assemble(self, cols, n, fail):
        lay = self.lay
        fixed = lay.fixed
        b = {}

        def get(key, default):
            if key in fixed:
                return np.full(n, fixed[key], np.uint64 if isinstance(fixed[key], int)
                               else object)
            if key in cols:
                return cols[key]
            if key in lay.defaults:
                return np.full(n, lay.defaults[key], np.uint64)
            return None if default is None else np.full(n, default, np.uint64)

        for key in ("sport", "dport", "input", "output", "application"):
            v = get(key, 0)
            b[key] = v
        proto = get("protocol", 0)
        b["protocol"] = proto.astype(np.uint8)
        packets = get("packets", 1)
        b["packets"] = packets
        by = get("bytes", None)
        b["bytes"] = packets.copy() if by is None else by  # rwtuc: bytes = packets
        for key in ("flags", "initflags", "sessflags", "attributes"):
            b[key] = get(key, 0).astype(np.uint8)
        # ICMP type and code give the dPort of ICMP records
        itype, icode, tc = cols.get("itype"), cols.get("icode"), cols.get("icmptypecode")
        if any(k in fixed for k in ("itype", "icode")) or itype is not None or \
                icode is not None or tc is not None:
            icmp = np.isin(b["protocol"], ICMP)
            dport = b["dport"].astype(np.uint64)
            if tc is not None:
                given = icmp & ~cols["icmptypecode#blank"]
                dport = np.where(given, tc, dport)
            if itype is not None or icode is not None or "itype" in fixed or "icode" in fixed:
                t = get("itype", 0)
                c = get("icode", 0)
                given = icmp.copy()
                if "itype" in cols and "itype" not in fixed:
                    given &= ~cols["itype#blank"]
                if "icode" in cols and "icode" not in fixed and "itype" not in cols:
                    given &= ~cols["icode#blank"]
                dport = np.where(given, (t.astype(np.uint64) << np.uint64(8)) | c, dport)
            b["dport"] = dport
        if lay.argus_icmp:
            # Argus prints an ICMP flow's type in the low and code in the high byte of sPort
            icmp = np.isin(b["protocol"], ICMP)
            sp = b["sport"].astype(np.uint64)
            b["dport"] = np.where(icmp, (sp & np.uint64(255)) << np.uint64(8) | (sp >> 8),
                                  b["dport"])
            b["sport"] = np.where(icmp, 0, sp)
        self._times(b, cols, n, fail)
        # sensor and flowtype
        sensor = get("sensor", 0)
        b["sensor"] = sensor.astype(np.uint16)
        b["flowtype"] = self._flowtype(cols, n, fail)
        # addresses
        ips = {}
        for key in schema.IP_COLUMNS:
            if key in fixed:
                is6, v = fixed[key]
                ips[key] = (np.full(n, v & U32 if not is6 else 0, np.uint32),
                            np.full(n, is6, bool), np.full(n, v >> 64, np.uint64),
                            np.full(n, v & U64, np.uint64))
            elif key in cols:
                ips[key] = cols[key]
        row6 = np.zeros(n, bool)
        for _v4, is6, _hi, _lo in ips.values():
            row6 |= is6
        out = schema.make_batch(n, v6=bool(row6.any()), **{
            k: v for k, v in b.items()})
        if row6.any():
            out["ipv6"] = row6
            for key, (v4, is6, hi, lo) in ips.items():
                col = schema.v4_to_v6(v4)
                if is6.any():
                    col[is6, 0] = hi[is6]
                    col[is6, 1] = lo[is6]
                out[key] = col
            for key in schema.IP_COLUMNS:
                if key not in ips:
                    out[key] = schema.v4_to_v6(np.zeros(n, np.uint32))
        else:
            for key, (v4, _is6, _hi, _lo) in ips.items():
                out[key] = v4
        return out

    def _times(self, b, cols, n, fail):
        lay = self.lay
        fixed = lay.fixed

        def get(key):
            if key in fixed:
                ms, unc = fixed[key]
                return np.full(n, ms, np.int64), np.full(n, unc, np.int64)
            if key in cols:
                return cols[key]
            return None

        st, du, et = get("stime"), get("duration"), get("etime")
        if du is None:
            dur = np.zeros(n, np.int64)
        else:
            dur = du[0]
        if st is not None:
            stime = st[0]
            if et is not None and du is None:
                dur = et[0] - stime
                fail(dur < 0, ("time", "eTime is before sTime"))
                fail(dur > MAX_DURATION, ("time", "eTime - sTime is longer than the "
                                                  "largest duration (4294967.295 s)"))
            elif et is not None:
                diff = stime + dur - et[0]
                consistent = (diff == 0) | ((diff > -(st[1] + du[1])) & (diff < et[1]))
                fail(~consistent, ("time", "sTime + duration is not eTime"))
        elif et is not None:
            stime = et[0] - dur
        else:
            stime = np.full(n, self.now_ms, np.int64)
        fail(stime < 0, ("time", "sTime is before 1970"))
        b["stime"] = stime
        b["duration"] = np.clip(dur, 0, MAX_DURATION).astype(np.uint32)

    def _flowtype(self, cols, n, fail):
        lay = self.lay
        if not lay.has("class") and not lay.has("type"):
            return np.full(n, lay.defaults.get("flowtype", 0), np.uint8)

        def strings(key, default):
            if key in lay.fixed:
                default = lay.fixed[key]
            elif key in cols:
                return cols[key]
            raw = default.encode()
            return np.full(n, raw, f"S{max(len(raw), 1)}")

        c = strings("class", lay.default_class or "")
        t = strings("type", "")
        pairs = np.char.add(np.char.add(c, b"\x01"), t)
        uniq, inverse = np.unique(pairs, return_inverse=True)
        uv = np.zeros(len(uniq), np.uint8)
        uok = np.zeros(len(uniq), bool)
        for k, raw in enumerate(uniq):
            cl, _, ty = raw.partition(b"\x01")
            try:
                uv[k] = scalar_flowtype(cl.decode("utf-8"), ty.decode("utf-8"), lay.config)
                uok[k] = True
            except (ValueError, UnicodeDecodeError):
                pass
        inverse = inverse.ravel()
        fail(~uok[inverse], ("flowtype",))
        return uv[inverse]

    # --------------------------------------------------------------- messages

    def _explain(self, reason, i, texts):
        kind = reason[0]
        if kind == "text":
            return reason[1]
        if kind == "count":
            cnt, ncols = int(reason[1][i]), reason[2]
            sep = self.lay.sep.decode("latin-1")
            if self.lay.final:  # every field is followed by a separator
                if cnt == ncols:
                    return f"too many fields: text follows column {ncols}"
                return (f"{cnt} '{sep}' separators where the title line has {ncols} "
                        f"(one after each field)")
            found = cnt + 1
            if found < ncols:
                return f"too few fields: found {found} of {ncols} expected"
            return f"too many fields: text follows column {ncols}"
        if kind == "time":
            return reason[1]
        if kind == "flowtype":
            c = self._text_of(texts, "class", i, self.lay.fixed.get("class",
                                                                  self.lay.default_class))
            t = self._text_of(texts, "type", i, self.lay.fixed.get("type", ""))
            try:
                scalar_flowtype(c, t, self.lay.config)
            except ValueError as exc:
                return f"invalid class/type '{c}/{t}': {exc}"
            return f"invalid class/type '{c}/{t}'"
        if kind == "differ":
            key = reason[1]
            return f"two {TITLE[key]} columns disagree"
        key, j = reason[1], reason[2]
        text = next(t for jj, t in texts[key] if jj == j)
        value = text.value(i)
        title = self.lay.titles[j]
        label = title if title.lower() == TITLE[key].lower() else f"{title} ({TITLE[key]})"
        why = _why(key, value, self.lay)
        return f"invalid {label} '{value}'" + (f": {why}" if why else "")

    @staticmethod
    def _text_of(texts, key, i, default):
        if key in texts:
            return texts[key][0][1].value(i)
        return default or ""


def _why(key, value, lay):
    kind = KIND[key]
    try:
        if kind == "ip":
            scalar_ip(value, lay.hexadecimal)
        elif kind == "uint":
            scalar_uint(value, LIMIT[key], csv=lay.csv, dotted=lay.csv and key == "dport")
        elif kind == "protocol":
            scalar_protocol(value)
        elif kind == "tcpflags":
            scalar_flags(value, TCP_FLAG_BITS)
        elif kind == "attributes":
            scalar_flags(value, ATTRIBUTE_BITS)
        elif kind == "time":
            scalar_time(value)
        elif kind == "duration":
            scalar_seconds(value, MAX_DURATION)
        elif kind == "sensor":
            scalar_sensor(value, lay.config)
    except ValueError as exc:
        return str(exc)
    return None


def _same(x, y):
    if isinstance(x, tuple):
        if len(x) == 4:  # addresses
            same = (x[0] == y[0]) & (x[1] == y[1])
            if x[2] is not None or y[2] is not None:
                z = np.zeros(len(x[0]), np.uint64)
                same &= ((x[2] if x[2] is not None else z) == (y[2] if y[2] is not None
                                                                 else z))
                same &= ((x[3] if x[3] is not None else z) == (y[3] if y[3] is not None
                                                                 else z))
            return same
        return x[0] == y[0]
    return x == y


def _is_blank(m):
    return (m == SPACE) | (m == TAB) | (m == CR) | (m == 11) | (m == 12)


def _trim(buf, base, s, e):
    """[s, e) without the blanks at either end; s and e are offsets from base into buf,
    which has readable bytes PAD before and after them."""
    if len(s) == 0:
        return s, e
    for lead in (True, False):
        while True:
            c = buf[base + (s if lead else e - 1)]
            if not (c <= SPACE).any():  # the usual case: nothing to trim
                break
            rows = np.flatnonzero(_is_blank(c) & (e > s))
            if not len(rows):
                break
            s, e = s.copy(), e.copy()
            ln = e[rows] - s[rows]
            w = int(min(ln.max(), PAD))
            if lead:
                keep = ~_is_blank(_gather(buf, s[rows] + base, w))
            else:
                keep = ~_is_blank(_gather(buf, e[rows] + base - w, w))[:, ::-1]
            skip = np.argmax(keep, axis=1)
            skip[~keep.any(axis=1)] = w  # blank throughout the window
            skip = np.minimum(skip, ln)
            if lead:
                s[rows] += skip
            else:
                e[rows] -= skip
    return s, e


def _rows_with(mask, nl, rows):
    lines = np.unique(np.searchsorted(nl, np.flatnonzero(mask)))
    return np.isin(rows, lines)


# ----------------------------------------------------------------------------- reading

CHUNK = 4 << 20


class _Prefixed:
    """A file object whose first bytes were already read."""

    def __init__(self, head, f):
        self.head, self.f = head, f

    def readinto(self, view):
        if self.head:
            k = min(len(view), len(self.head))
            view[:k] = self.head[:k]
            self.head = self.head[k:]
            return k
        return self.f.readinto(view)

    def read(self, n=-1):
        if self.head:
            if n is None or n < 0:
                out, self.head = self.head + self.f.read(), b""
                return out
            out, self.head = self.head[:n], self.head[n:]
            if len(out) < n:
                out += self.f.read(n - len(out))
            return out
        return self.f.read(n)


def open_text(f):
    """A binary reader of the text of f, gunzipped when it is gzip data."""
    head = f.read(2)
    g = _Prefixed(head, f)
    if head == b"\x1f\x8b":
        import gzip
        return gzip.GzipFile(fileobj=g, mode="rb")
    return g


def chunks(f, size=CHUNK):
    """Chunks of whole lines of a binary reader, read straight into padded buffers."""
    rest = b""
    while True:
        buf = np.empty(PAD + len(rest) + size + PAD, np.uint8)
        buf[:PAD] = 0
        buf[PAD: PAD + len(rest)] = np.frombuffer(rest, np.uint8)
        view = memoryview(buf)[PAD + len(rest): PAD + len(rest) + size]
        got = 0
        try:
            while got < size:  # pipes and gzip may return less than asked
                k = f.readinto(view[got:])
                if not k:
                    break
                got += k
        except (OSError, EOFError, zlib.error) as exc:
            raise FlowError(f"cannot read input: {exc}") from None
        end = PAD + len(rest) + got
        buf[end:] = 0
        if got == 0:
            if rest:
                yield Chunk.of(rest + b"\n")
            return
        region = buf[PAD: end]
        cut = _last_newline(region)
        if cut < 0:  # a line longer than the chunk: read on
            rest = region.tobytes()
            continue
        rest = region[cut + 1:].tobytes()
        buf[PAD + cut + 1:] = 0
        yield Chunk(buf, PAD, PAD + cut + 1)


def _last_newline(region):
    """Offset of the last newline of a uint8 array, or -1."""
    n = len(region)
    step = 1 << 16
    for hi in range(n, 0, -step):
        lo = max(0, hi - step)
        hits = np.flatnonzero(region[lo:hi] == NL)
        if len(hits):
            return lo + int(hits[-1])
    return -1
