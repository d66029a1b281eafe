"""rwfilter's partitioning switches: argument syntaxes and the predicates they compile to.

Each ``--switch=VALUE`` becomes a Predicate (predicate.py) and the switches are AND-ed, as
rwfilter does; within one switch the listed values are OR-ed. Integer lists become boolean
lookup tables, TCP-flag HIGH/MASK lists 256-entry tables, so that every test is one
vectorised gather or comparison per batch.
"""

import numpy as np

from . import dates, schema
from .errors import FlowError
from .predicate import And, Between, Lookup, Not, Or, Predicate

FLAG_BITS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20, "E": 0x40,
             "C": 0x80}
ATTRIBUTE_BITS = {"F": 0x08, "S": 0x10, "T": 0x20, "C": 0x40}
ICMP_PROTOCOLS = (1, 58)
U64_MAX = (1 << 64) - 1


def _bad(option, text, why):
    return FlowError(f"invalid --{option} '{text}': {why}")


def _int(token, option, text, limit):
    token = token.strip()
    if not token.isdigit():
        raise _bad(option, text, f"'{token}' is not a non-negative integer")
    value = int(token)
    if value > limit:
        raise _bad(option, text, f"{value} is larger than the maximum {limit}")
    return value


def parse_int_list(text, option, limit):
    """An INTEGER_LIST (``1,3,5-9``, ``1024-``) as a boolean table indexed by value."""
    table = np.zeros(limit + 1, bool)
    items = [t for t in text.split(",")]
    if not text.strip() or any(not t.strip() for t in items):
        raise _bad(option, text, "empty value in list")
    for item in items:
        lo, dash, hi = item.partition("-")
        a = _int(lo, option, text, limit)
        b = (_int(hi, option, text, limit) if hi.strip() else limit) if dash else a
        if b < a:
            raise _bad(option, text, f"range '{item.strip()}' is reversed")
        table[a: b + 1] = True
    return table


def parse_int_range(text, option):
    """An INTEGER_RANGE: ``MIN-MAX``, ``MIN-`` (open) or a single value ``N`` (exactly N)."""
    lo, dash, hi = text.partition("-")
    a = _int(lo, option, text, U64_MAX)
    b = (_int(hi, option, text, U64_MAX) if hi.strip() else U64_MAX) if dash else a
    if b < a:
        raise _bad(option, text, "range is reversed")
    return a, b


def parse_decimal_range(text, option):
    """A DECIMAL_RANGE like INTEGER_RANGE with non-negative decimal numbers."""
    def number(token):
        try:
            value = float(token)
        except ValueError:
            raise _bad(option, text, f"'{token.strip()}' is not a number") from None
        if not np.isfinite(value) or value < 0 or token.strip().lower().startswith(("n", "i")):
            raise _bad(option, text, f"'{token.strip()}' is not a non-negative number")
        return value
    lo, dash, hi = text.partition("-")
    a = number(lo)
    b = (number(hi) if hi.strip() else float("inf")) if dash else a
    if b < a:
        raise _bad(option, text, "range is reversed")
    return a, b


def parse_high_mask(text, option, bits=FLAG_BITS):
    """A HIGH/MASK list (``S/SA,SA/SA``) as a 256-entry table: True for the values v with
    (v & MASK) == HIGH for at least one pair."""
    table = np.zeros(256, bool)
    values = np.arange(256)
    pairs = [p for p in text.split(",") if p]
    if not pairs:
        raise _bad(option, text, "no value was given")
    for pair in pairs:
        high, mask = _high_mask(pair, option, text, bits)
        table |= (values & mask) == high
    return table


def _high_mask(pair, option, text, bits):
    high_text, slash, mask_text = pair.partition("/")
    if not slash:
        raise _bad(option, text, f"'{pair}' lacks the '/' between HIGH and MASK")
    high, mask = _letters(high_text, option, text, bits), _letters(mask_text, option, text, bits)
    if not mask:
        raise _bad(option, text, f"'{pair}' has no MASK flags")
    if high & mask != high:
        raise _bad(option, text, f"'{pair}': HIGH flags are not a subset of MASK flags")
    return high, mask


def _letters(text, option, whole, bits):
    value = 0
    for ch in text:
        if ch.isspace():
            continue
        bit = bits.get(ch.upper())
        if bit is None:
            raise _bad(option, whole, f"unexpected character '{ch}'")
        value |= bit
    return value


def parse_flag_letters(text, option):
    value = _letters(text, option, text, FLAG_BITS)
    if not value:
        raise _bad(option, text, "no flags given")
    return value


def parse_ip_version(text, option="ip-version"):
    versions = set()
    for item in text.split(","):
        if item.strip() not in ("4", "6"):
            raise _bad(option, text, "the versions are 4 and 6")
        versions.add(int(item))
    return versions


class AnyOf(Predicate):
    """An integer test on either of two columns (--aport, --any-index)."""

    def __init__(self, a, b):
        self.a, self.b = a, b
        self.columns = tuple(dict.fromkeys(a.columns + b.columns))

    def mask(self, batch):
        m = self.a.mask(batch)
        m |= self.b.mask(batch)
        return m

    def may_match(self, stats):
        return self.a.may_match(stats) or self.b.may_match(stats)


class WideLookup(Predicate):
    """A lookup on a 32-bit column (SNMP interfaces) with a table covering 0..65535."""

    def __init__(self, column, table):
        self.column, self.table = column, table
        self.columns = (column,)

    def mask(self, batch):
        col = batch[self.column]
        m = self.table[np.minimum(col, len(self.table) - 1)]
        if len(self.table) <= np.iinfo(col.dtype).max:
            m &= col < len(self.table)
        return m


class Icmp(Predicate):
    """ICMP type (shift 8) or code (shift 0) in a table, for ICMP and ICMPv6 records only."""

    def __init__(self, table, shift):
        self.table, self.shift = table, shift
        self.columns = ("protocol", "dport")

    def mask(self, batch):
        proto = batch["protocol"]
        m = (proto == 1) | (proto == 58)
        m &= self.table[(batch["dport"] >> self.shift) & 0xFF]
        return m

    def may_match(self, stats):
        span = stats.get("protocol")
        return span is None or any(span[0] <= p <= span[1] for p in ICMP_PROTOCOLS)


class IpVersion(Predicate):
    def __init__(self, versions):
        self.versions = versions

    def mask(self, batch):
        n = schema.nrecords(batch)
        v6 = batch["ipv6"] if schema.is_v6(batch) else np.zeros(n, bool)
        if self.versions == {4, 6}:
            return np.ones(n, bool)
        return v6.copy() if self.versions == {6} else ~v6


class Address(Predicate):
    """One address column, or either of sip/dip (``any``), tested by a matcher (CIDR list,
    wildcard, IP set); ``negate`` for the --not- forms."""

    def __init__(self, columns, matcher, negate=False):
        self.columns = tuple(columns)
        self.matcher = matcher
        self.negate = negate

    def mask(self, batch):
        m = None
        for c in self.columns:
            hit = self.matcher.contains(batch[c])
            m = hit if m is None else (m | hit)
        if self.negate:
            np.logical_not(m, out=m)
        return m

    def may_match(self, stats):
        if self.negate:
            return True
        for c in self.columns:
            span = stats.get(c)
            if span is None or self.matcher.may_contain(span[0], span[1]):
                return True
        return False


def etime_values(batch):
    return batch["stime"] + batch["duration"].astype(np.int64)


def bytes_per_packet(batch):
    with np.errstate(divide="ignore", invalid="ignore"):
        return batch["bytes"].astype(np.float64) / batch["packets"].astype(np.float64)


def time_window(option, text, which):
    lo, hi = dates.parse_window(text, "--" + option)
    if which == "stime":
        return Between("stime", lo, hi)
    if which == "etime":
        return Between("etime", lo, hi, values=etime_values, columns=("stime", "duration"),
                       stat="etime")
    # active: started before the window ends and ended after it starts
    return And([Between("stime", None, hi),
                Between("etime", lo, None, values=etime_values,
                        columns=("stime", "duration"), stat="etime")])


def duration_range(option, text):
    lo, hi = parse_decimal_range(text, option)
    def to_ms(s):
        return (U64_MAX if s > U64_MAX / 1e3 else int(s * 1e3))
    return Between("duration", to_ms(lo), to_ms(hi))


__all__ = ["And", "Or", "Not", "Lookup", "Between", "AnyOf", "WideLookup", "Icmp",
           "IpVersion", "Address", "parse_int_list", "parse_int_range",
           "parse_decimal_range", "parse_high_mask", "parse_flag_letters",
           "parse_ip_version", "time_window", "duration_range", "bytes_per_packet"]


# --- the switches -------------------------------------------------------------------

_WHO = {"s": ("sip",), "d": ("dip",), "any": ("sip", "dip"), "nh": ("nhip",)}
_ADDRESS = {  # switch -> (columns key, kind)
    "scidr": ("s", "cidr"), "dcidr": ("d", "cidr"), "any-cidr": ("any", "cidr"),
    "nhcidr": ("nh", "cidr"),
    "saddress": ("s", "wild"), "daddress": ("d", "wild"), "any-address": ("any", "wild"),
    "next-hop-id": ("nh", "wild"),
    "sipset": ("s", "set"), "dipset": ("d", "set"), "anyset": ("any", "set"),
    "nhipset": ("nh", "set"),
}
_LISTS = {  # switch -> (column, largest value)
    "sport": ("sport", 65535), "dport": ("dport", 65535), "protocol": ("protocol", 255),
    "application": ("application", 65535),
}
_FLAG_COLUMNS = {"flags-all": "flags", "flags-initial": "initflags",
                 "flags-session": "sessflags"}
SELECTION_SWITCHES = ("class", "type", "flowtypes", "sensors")
SINGLE_FLAGS = {"fin": 0x01, "syn": 0x02, "rst": 0x04, "psh": 0x08, "ack": 0x10,
                "urg": 0x20, "ece": 0x40, "cwr": 0x80}


def address_matcher(kind, option, text):
    from . import addrs
    if kind == "cidr":
        return addrs.parse_cidr_list(text, "--" + option)
    if kind == "wild":
        return addrs.parse_wildcard(text, "--" + option)
    return load_set(option, text)


def load_set(option, path):
    import sys

    from . import ipset
    if path in ("-", "stdin"):
        return ipset.read_set(sys.stdin.buffer)
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise FlowError(f"invalid --{option} '{path}': {exc.strerror}") from None
    with f:
        return ipset.read_set(f, path)


def compile_switches(values, config=None, selection_partitions=False):
    """One predicate (None when there is no switch) for rwfilter's partitioning switches.

    values maps a switch name without dashes to the list of values it was given, in
    command-line order. With selection_partitions, --class/--type/--flowtypes/--sensors
    test the records' class/type and sensor (needs config)."""
    parts = []
    seen_address = {}
    flag_pairs = {}
    for option, texts in values.items():
        if not texts or option in SELECTION_SWITCHES:
            continue
        if len(texts) > 1 and option not in _FLAG_COLUMNS:
            raise FlowError(f"invalid --{option}: switch used multiple times")
        text = texts[0]
        negate = option.startswith("not-")
        base = option[4:] if negate else option
        if base in _ADDRESS:
            who, kind = _ADDRESS[base]
            if (who, kind) in seen_address:
                raise FlowError(f"may only give one of --{base} or --not-{base}")
            seen_address[(who, kind)] = option
            parts.append(Address(_WHO[who], address_matcher(kind, option, text), negate))
        elif option in _LISTS:
            column, limit = _LISTS[option]
            parts.append(Lookup(column, parse_int_list(text, option, limit)))
        elif option == "aport":
            table = parse_int_list(text, option, 65535)
            parts.append(AnyOf(Lookup("sport", table), Lookup("dport", table)))
        elif option in ("icmp-type", "icmp-code"):
            parts.append(Icmp(parse_int_list(text, option, 255),
                              8 if option == "icmp-type" else 0))
        elif option in ("stime", "etime", "active-time"):
            parts.append(time_window(option, text, option.split("-")[0]))
        elif option == "duration":
            parts.append(duration_range(option, text))
        elif option in ("bytes", "packets"):
            lo, hi = parse_int_range(text, option)
            parts.append(Between(option, lo, hi))
        elif option == "bytes-per-packet":
            lo, hi = parse_decimal_range(text, option)
            parts.append(Between("bpp", lo, hi, values=bytes_per_packet,
                                 columns=("bytes", "packets")))
        elif option in _FLAG_COLUMNS:
            table = np.zeros(256, bool)
            for t in texts:
                table |= parse_high_mask(t, option)
            flag_pairs[option] = table
        elif option.endswith("-flag") and option[:-5] in SINGLE_FLAGS:
            bit = SINGLE_FLAGS[option[:-5]]
            if text.strip() not in ("0", "1"):
                raise _bad(option, text, "the value is 0 or 1")
            high, mask = flag_pairs.setdefault("single", [0, 0])
            flag_pairs["single"] = [high | (bit if text.strip() == "1" else 0), mask | bit]
        elif option == "tcp-flags":
            bits = parse_flag_letters(text, option)
            parts.append(Lookup("flags", (np.arange(256) & bits) != 0))
        elif option == "attributes":
            parts.append(Lookup("attributes", parse_high_mask(text, option,
                                                              ATTRIBUTE_BITS)))
        elif option == "ip-version":
            parts.append(IpVersion(parse_ip_version(text)))
        elif option in ("input-index", "output-index"):
            table = parse_int_list(text, option, 65535)
            parts.append(WideLookup("input" if option == "input-index" else "output", table))
        elif option == "any-index":
            table = parse_int_list(text, option, 65535)
            parts.append(AnyOf(WideLookup("input", table), WideLookup("output", table)))
        elif option == "expr":
            from .expr import compile_expr
            parts.append(compile_expr(text))
        else:
            raise FlowError(f"unknown partitioning switch --{option}")
    # rwfilter ORs the single-flag switches' HIGH/MASK pair into --flags-all
    if "single" in flag_pairs:
        high, mask = flag_pairs.pop("single")
        table = (np.arange(256) & mask) == high
        flag_pairs["flags-all"] = flag_pairs.get("flags-all", np.zeros(256, bool)) | table
    for option, table in flag_pairs.items():
        parts.append(Lookup(_FLAG_COLUMNS[option], table))
    if selection_partitions:
        parts.extend(selection_predicates(values, config))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else And(parts)


def selection_predicates(values, config):
    """--class/--type/--flowtypes/--sensors as tests of the records (for input files)."""
    from . import select
    parts = []
    classes, types, flowtypes, sensors = (values.get(k) and values[k][0] for k in
                                          ("class", "type", "flowtypes", "sensors"))
    if classes or types or flowtypes:
        ids = select.flowtype_ids(
            config,
            flowtypes=select.split_items(flowtypes, "flowtype") if flowtypes else None,
            classes=select.split_items(classes, "class") if classes else None,
            types=select.split_items(types, "type") if types else None)
        table = np.zeros(256, bool)
        table[ids] = True
        parts.append(Lookup("flowtype", table))
    if sensors:
        table = np.zeros(65536, bool)
        table[select.parse_sensor_list(config, sensors)] = True
        parts.append(Lookup("sensor", table))
    return parts
