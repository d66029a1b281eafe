"""nfdump's filter language (``pyflow-filter --expr``) compiled to predicates.

    proto tcp and dst port in [445 139] and not src net 10.0.0.0/8 and packets < 4

A small tokeniser and a recursive-descent parser (``or`` < ``and`` < ``not``, as nfdump)
turn the text into predicate.py's And/Or/Not over per-primitive predicates; comparisons
become Between ranges or Lookup tables, so that each keeps its block skipping by statistics.
Keywords are case-insensitive; numbers are decimal, ``0x`` hex, or decimal with a K, M, G or
T factor (powers of 1000); ``#`` starts a comment. nfdump primitives on fields that pyflow
does not store (tos, AS, VLAN, MAC, ...) are errors that say so.

    expr  := expr or expr | expr and expr | not expr | ( expr )     (or: ||, and: &&, not: !)
    prim  := any | ipv4 | inet | ipv6 | inet6 | proto NAME|N | flows [CMP] N
           | [DIR] ip|host ADDR[/BITS] | [DIR] ip|host in [ ADDR[/BITS] ... ]
           | [DIR] net ADDR/BITS | [DIR] net A.B.C.D M.M.M.M
           | [DIR] port [CMP] N | [DIR] port in [ N ... ]
           | [in|out] if [CMP] N | [in] packets|bytes [CMP] N
           | duration|pps|bps|bpp [CMP] N | flags [=]LETTERS | flags [CMP] N
           | icmp-type|icmp-code [CMP] N | icmp type|code [CMP] N
           | first|last seen [CMP] YYYY[-MM[-DD[Thh[:mm[:ss[.sss]]]]]]
    DIR   := src | dst | src or dst | src and dst | next (addresses: the next hop)
    CMP   := = == eq | < lt | > gt | <= le | >= ge       (absent: equal)
"""

import calendar
import datetime
import re

import numpy as np

from . import addrs, schema
from .errors import FlowError
from .predicate import Always, And, Between, Lookup, Not, Or, Predicate

U64 = (1 << 64) - 1
U32 = (1 << 32) - 1
TCP, ICMP_PROTOCOLS = 6, (1, 58)
FLAG_BITS = {"F": 1, "S": 2, "R": 4, "P": 8, "A": 16, "U": 32, "E": 64, "C": 128}
COMPARATORS = {"=": "eq", "==": "eq", "eq": "eq", "<": "lt", "lt": "lt", ">": "gt",
               "gt": "gt", "<=": "le", "le": "le", ">=": "ge", "ge": "ge"}
SCALE = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
# nfdump keywords naming what pyflow does not keep.
NOT_STORED = {
    "tos": "the type of service", "as": "AS numbers", "vlan": "VLAN ids", "mac": "MAC addresses",
    "mpls": "MPLS labels", "ttl": "TTLs", "router": "the exporter's address",
    "bgp": "BGP next hops", "engine": "engine ids", "engine-type": "engine types",
    "engine-id": "engine ids", "exporter": "exporter ids", "ident": "idents",
    "count": "record counters", "ethertype": "ether types", "flowdir": "flow directions",
    "latency": "latencies", "asa": "ASA events", "nat": "NAT translations",
    "xlate": "NAT translations", "tun": "tunnels", "payload": "payloads", "geo": "countries",
    "vrf": "VRFs", "pf": "pflog fields", "observation": "observation ids",
    "fwdstat": "forwarding status", "acl": "ACLs", "ingress": "ACLs or VRFs",
    "egress": "ACLs or VRFs", "client": "latencies", "server": "latencies",
    "prev": "adjacent AS numbers", "min": "TTLs", "max": "TTLs", "mask": "netmask lengths",
}
_TOKEN = re.compile(r"""(?P<space>\s+|\#[^\n]*)
    | (?P<op>&&|\|\||==|>=|<=|[=<>!()\[\],/])
    | (?P<word>[A-Za-z0-9_:.\-]+)
    | '(?P<sq>[^']*)' | "(?P<dq>[^"]*)"
    """, re.VERBOSE)
_NUMBER = re.compile(r"(?:0x[0-9a-f]+|[0-9]+[kmgt]?)", re.IGNORECASE)
_TIME = re.compile(r"(\d{4})(?:[-/](\d\d?)(?:[-/](\d\d?)(?:[T.](\d\d?)(?::(\d\d?)"
                   r"(?::(\d\d?)(?:\.(\d{1,3}))?)?)?)?)?)?", re.IGNORECASE)
_DOTTED = re.compile(r"\d+\.\d+\.\d+\.\d+")


class Token:
    def __init__(self, kind, text, column):
        self.kind, self.text, self.column = kind, text, column
        self.key = text.lower() if kind in ("op", "word") else None


def compile_expr(text, option="--expr"):
    """The Predicate of an nfdump filter expression; FlowError on any error."""
    return _Parser(text, option).parse()


def _tokenise(text, option):
    tokens, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise FlowError(f"{option}: unexpected '{text[pos]}' at column {pos + 1}")
        kind = m.lastgroup
        if kind != "space":
            value = m.group(kind)
            tokens.append(Token("str" if kind in ("sq", "dq") else kind, value, pos + 1))
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, text, option):
        self.option = option
        self.end = len(text) + 1
        self.tokens = _tokenise(text, option)
        self.i = 0

    # -- tokens

    def peek(self, ahead=0):
        i = self.i + ahead
        return self.tokens[i] if i < len(self.tokens) else None

    def key(self, ahead=0):
        tok = self.peek(ahead)
        return tok.key if tok else None

    def take(self):
        tok = self.peek()
        if tok is None:
            raise self.error(None, "unexpected end of expression")
        self.i += 1
        return tok

    def accept(self, *keys):
        if self.key() in keys:
            return self.take()
        return None

    def expect(self, *keys):
        tok = self.take()
        if tok.key not in keys:
            raise self.error(tok)
        return tok

    def error(self, tok, message=None):
        column = self.end if tok is None else tok.column
        if message is None:
            message = "unexpected end of expression" if tok is None \
                else f"unexpected '{tok.text}'"
        return FlowError(f"{self.option}: {message} at column {column}")

    # -- expressions: or < and < not

    def parse(self):
        if not self.tokens:
            raise FlowError(f"{self.option}: empty expression")
        pred = self.parse_or()
        if self.peek() is not None:
            raise self.error(self.peek())
        return pred

    def parse_or(self):
        parts = [self.parse_and()]
        while self.accept("or", "||"):
            parts.append(self.parse_and())
        return parts[0] if len(parts) == 1 else Or(parts)

    def parse_and(self):
        parts = [self.parse_not()]
        while self.accept("and", "&&"):
            parts.append(self.parse_not())
        return parts[0] if len(parts) == 1 else And(parts)

    def parse_not(self):
        if self.accept("not", "!"):
            return Not(self.parse_not())
        if self.accept("("):
            pred = self.parse_or()
            self.expect(")")
            return pred
        return self.primitive()

    # -- primitives

    def primitive(self):
        tok = self.take()
        key = tok.key
        if key == "any":
            return Always(True)
        if key in ("ipv4", "inet", "ipv6", "inet6"):
            return IpVersion(v6=key in ("ipv6", "inet6"))
        if key == "proto":
            return self.proto()
        if key in ("first", "last") and self.accept("seen"):
            return self.seen(key)
        if key == "flows":  # every pyflow record is one flow
            op, n = self.comparison(U64)
            return Always(_compare(1, op, n))
        if key in ("duration", "pps", "bps", "bpp"):
            op, n = self.comparison(U64)
            return _computed(key, op, n)
        if key == "flags":
            return self.flags()
        if key in ("icmp-type", "icmp-code"):
            return self.icmp(key[5:])
        if key == "icmp":
            return self.icmp(self.expect("type", "code").key)
        qual, first = self.qualifier(tok)
        field = self.take() if qual else tok
        return self.qualified(qual, first, field)

    def qualifier(self, tok):
        """The direction words before ip/net/port/if/packets/bytes: src, dst, src or dst,
        src and dst (either order), in, out, next."""
        key = tok.key
        if key in ("src", "dst"):
            other = "dst" if key == "src" else "src"
            if self.key() in ("or", "and") and self.key(1) == other:
                both = self.take().key
                self.take()
                return both, tok
            return key, tok
        if key in ("in", "out", "next"):
            return key, tok
        return None, tok

    def qualified(self, qual, first, field):
        key = field.key
        if key in NOT_STORED:
            raise self.error(field, f"pyflow does not store {NOT_STORED[key]}: cannot filter "
                                    f"on '{field.text}'")
        if key in ("ip", "host", "net") and qual in (None, "src", "dst", "or", "and", "next"):
            return self.address(key, qual)
        if key == "port" and qual in (None, "src", "dst", "or", "and"):
            return self.port(qual)
        if key == "if" and qual in (None, "in", "out"):
            op, n = self.comparison(U32, "interface")
            cols = {"in": ["input"], "out": ["output"]}.get(qual, ["input", "output"])
            return _combine([_between(c, op, n, U32) for c in cols], "or")
        if key in ("packets", "bytes") and qual in (None, "in", "out"):
            if qual == "out":
                raise self.error(first, f"pyflow does not store reverse counters: cannot "
                                        f"filter on 'out {field.text}'")
            op, n = self.comparison(U64)
            return _between(key, op, n, U64)
        if qual and key in ("ip", "host", "net", "port", "if", "packets", "bytes"):
            raise self.error(first, f"'{first.text}' cannot qualify '{field.text}'")
        raise self.error(field)

    def number(self, limit=U64, what="number"):
        tok = self.take()
        if tok.kind != "word" or not _NUMBER.fullmatch(tok.text):
            raise self.error(tok, f"expected a {what}, not '{tok.text}'")
        text = tok.key
        if text.startswith("0x"):
            value = int(text, 16)
        elif text[-1] in SCALE:
            value = int(text[:-1]) * SCALE[text[-1]]
        else:
            value = int(text)
        if value > limit:
            raise self.error(tok, f"{what} {tok.text} is out of range 0..{limit}")
        return value

    def comparator(self):
        """An optional comparison operator: eq, lt, gt, le, ge or None."""
        return COMPARATORS[self.take().key] if self.key() in COMPARATORS else None

    def comparison(self, limit, what="number"):
        op = self.comparator() or "eq"
        return op, self.number(limit, what)

    def proto(self):
        tok = self.take()
        if tok.kind in ("word", "str") and not _NUMBER.fullmatch(tok.text):
            from .textin import PROTOCOLS  # nfdump's names are the IANA keywords
            number = PROTOCOLS.get(tok.text.lower())
            if number is None:
                raise self.error(tok, f"unknown protocol '{tok.text}'")
        else:
            self.i -= 1
            number = self.number(255, "protocol")
        return Lookup("protocol", _table(255, "eq", number))

    def port(self, qual):
        if self.accept("in"):
            table = np.zeros(65536, bool)
            table[self.bracketed(lambda: self.number(65535, "port"), "port")] = True
            preds = [Lookup(c, table) for c in _columns(qual, "sport", "dport")]
        else:
            op, n = self.comparison(65535, "port")
            preds = [_between(c, op, n, 65535) for c in _columns(qual, "sport", "dport")]
        return _combine(preds, "and" if qual == "and" else "or")

    def bracketed(self, item, what):
        """``[a b, c]``: items separated by spaces or commas."""
        start = self.expect("[")
        values = []
        while not self.accept("]"):
            if values:
                self.accept(",")
            values.append(item())
        if not values:
            raise self.error(start, f"empty {what} list")
        return values

    def address(self, key, qual):
        if qual == "next":
            cols = ["nhip"]
        else:
            cols = _columns(qual, "sip", "dip")
        if key != "net" and self.accept("in"):
            items = self.bracketed(self.cidr, "address")
        elif key == "net" and self.peek(1) is not None and _DOTTED.fullmatch(self.peek(1).text):
            items = [self.netmask()]
        else:
            items = [self.cidr()]
        matcher = addrs.parse_cidr_list(",".join(items), self.option)
        return Address(cols, matcher, all_=qual == "and")

    def cidr(self):
        tok = self.take()
        if tok.kind not in ("word", "str"):
            raise self.error(tok, f"expected an address, not '{tok.text}'")
        text = tok.text
        if self.accept("/"):
            bits = self.take()
            if bits.kind != "word":
                raise self.error(bits, f"expected a prefix length, not '{bits.text}'")
            text += "/" + bits.text
        return self.checked(tok, text)

    def checked(self, tok, text):
        """An address or CIDR block for addrs.parse_cidr_list; /0 as its two halves."""
        shown, (net, _, bits) = text, text.partition("/")
        if bits.isdigit() and int(bits) == 0:
            text = "::/1,8000::/1" if ":" in net else "0.0.0.0/1,128.0.0.0/1"
            bits = "1"
        try:
            addrs.parse_ip(net + ("/" + bits if bits else ""))
        except ValueError as exc:
            raise self.error(tok, f"invalid address '{shown}' ({exc})") from None
        return text

    def netmask(self):
        """``net a.b.c.d m.m.m.m`` as a.b.c.d/bits (the mask must be contiguous)."""
        net, mask = self.take(), self.take()
        if not _DOTTED.fullmatch(net.text):
            raise self.error(net, f"a network with a netmask must be IPv4, not '{net.text}'")
        parts = mask.text.split(".")
        value = 0
        for p in parts:
            if int(p) > 255:
                raise self.error(mask, f"invalid netmask '{mask.text}'")
            value = value << 8 | int(p)
        bits = bin(value).count("1")
        if value != (U32 << (32 - bits)) & U32:
            raise self.error(mask, f"netmask '{mask.text}' is not contiguous")
        return self.checked(net, f"{net.text}/{bits}")

    def flags(self):
        op = self.comparator()
        tok = self.peek()
        if tok is not None and tok.kind == "word" and _NUMBER.fullmatch(tok.text):
            table = _table(255, op or "eq", self.number(255, "flags value"))
        else:
            tok = self.take()
            if op not in (None, "eq") or tok.kind not in ("word", "str"):
                raise self.error(tok)
            bits = 0
            for ch in tok.text.upper():
                if ch == "X":  # nfdump: all six classic flags
                    bits |= 63
                elif ch in FLAG_BITS:
                    bits |= FLAG_BITS[ch]
                else:
                    raise self.error(tok, f"unknown TCP flag '{ch}' in '{tok.text}'")
            values = np.arange(256)
            # flags S: at least these set; flags =S: exactly these
            table = values == bits if op == "eq" else (values & bits) == bits
        return And([Lookup("protocol", _table(255, "eq", TCP)), Lookup("flags", table)])

    def icmp(self, which):
        op, n = self.comparison(255, f"ICMP {which}")
        values = np.arange(65536)
        part = values >> 8 if which == "type" else values & 255
        proto = np.zeros(256, bool)
        proto[list(ICMP_PROTOCOLS)] = True
        return And([Lookup("protocol", proto), Lookup("dport", _compare(part, op, n))])

    def seen(self, which):
        op = self.comparator() or "eq"
        tok = self.take()
        m = _TIME.fullmatch(tok.text) if tok.kind in ("word", "str") else None
        try:
            if not m:
                raise ValueError
            defaults = (0, 1, 1, 0, 0, 0, 0)
            parts = [int(g) if g else d for g, d in zip(m.groups(), defaults, strict=True)]
            when = datetime.datetime(*parts[:6])
        except ValueError:
            raise self.error(tok, f"invalid time '{tok.text}' (YYYY-MM-DDThh:mm:ss.sss, "
                                  f"parts may be left off from the right)") from None
        ms = calendar.timegm(when.timetuple()) * 1000 + int((m.group(7) or "0").ljust(3, "0"))
        if which == "first":
            return _between("stime", op, ms, None)
        return _between("etime", op, ms, None, values=schema.etime,
                        columns=("stime", "duration"), stat="etime")


# -- predicates


class IpVersion(Predicate):
    """ipv4 / ipv6: the records of one IP version."""

    columns = ()

    def __init__(self, v6):
        self.v6 = v6

    def mask(self, batch):
        if schema.is_v6(batch):
            return batch["ipv6"].copy() if self.v6 else ~batch["ipv6"]
        return np.full(schema.nrecords(batch), not self.v6)

    def may_match(self, stats):
        span = stats.get("sip")
        if span is None:
            return True
        if not isinstance(span[0], list | tuple):  # an IPv4 block
            return not self.v6
        if self.v6:
            return True
        # IPv4 records of an IPv6 block are ::ffff:a.b.c.d: the span must reach them
        lo, hi = (tuple(x) for x in span)
        return lo <= (0, int(schema.V4_MAPPED_LO) | U32) and hi >= (0, int(schema.V4_MAPPED_LO))


class Address(Predicate):
    """Address columns (sip, dip, nhip) tested by an addrs matcher: any of them
    (``src or dst``, the default) or all of them (``src and dst``)."""

    def __init__(self, columns, matcher, all_=False):
        self.columns = tuple(columns)
        self.matcher = matcher
        self.all = all_

    def mask(self, batch):
        out = None
        for c in self.columns:
            m = np.asarray(self.matcher.contains(batch[c]), bool)
            if out is None:
                out = m.copy()
            elif self.all:
                out &= m
            else:
                out |= m
        return out

    def may_match(self, stats):
        hits = (stats.get(c) is None or self.matcher.may_contain(*stats[c])
                for c in self.columns)
        return all(hits) if self.all else any(hits)


def _columns(qual, src, dst):
    return {"src": [src], "dst": [dst]}.get(qual, [src, dst])


def _combine(preds, how):
    if len(preds) == 1:
        return preds[0]
    return And(preds) if how == "and" else Or(preds)


def _compare(values, op, n):
    if op == "eq":
        return values == n
    if op == "lt":
        return values < n
    if op == "gt":
        return values > n
    if op == "le":
        return values <= n
    return values >= n


def _table(limit, op, n):
    return _compare(np.arange(limit + 1), op, n)


def _between(column, op, n, limit, **kw):
    """column OP n as a Between range over 0..limit (limit None: a signed, open domain);
    an empty range passes nothing."""
    lo, hi = {"eq": (n, n), "lt": (None, n - 1), "le": (None, n),
              "gt": (n + 1, None), "ge": (n, None)}[op]
    if limit is not None:
        if (hi is not None and hi < 0) or (lo is not None and lo > limit):
            return Always(False)
        lo = None if lo == 0 else lo
        hi = None if hi == limit else hi
    return Between(column, lo, hi, **kw)


def _computed(key, op, n):
    if key == "duration":
        return _between("duration", op, n, U64)
    values, columns = {
        "pps": (lambda b: per_second(b["packets"], b["duration"]), ("packets", "duration")),
        "bps": (lambda b: per_second(b["bytes"], b["duration"], 8000), ("bytes", "duration")),
        "bpp": (bytes_per_packet, ("bytes", "packets")),
    }[key]
    return _between(key, op, n, U64, values=values, columns=columns)


def per_second(count, duration, scale=1000):
    """nfdump's pps (scale 1000) and bps (8000): count * scale // duration in ms, 0 for a
    zero duration, as uint64 (held at 2**64-1 when larger)."""
    count = np.asarray(count, np.uint64)
    d = np.maximum(np.asarray(duration, np.uint64), np.uint64(1))
    q, r = count // d, count % d
    out = q * np.uint64(scale) + r * np.uint64(scale) // d  # r < 2**32: no overflow
    zero = np.asarray(duration) == 0
    for i in np.flatnonzero((q > (U64 - scale) // scale) & ~zero):  # rare: exact in Python
        out[i] = min(int(count[i]) * scale // int(d[i]), U64)
    out[zero] = 0
    return out


def bytes_per_packet(batch):
    """nfdump's bpp: bytes // packets, 0 without packets."""
    packets = batch["packets"]
    return np.where(packets == 0, np.uint64(0),
                    batch["bytes"] // np.maximum(packets, np.uint64(1)))
