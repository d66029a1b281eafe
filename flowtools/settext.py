"""The text rwsetcat prints for an IP set: addresses, CIDR blocks, ranges, counts,
statistics and the network structure, byte for byte as SiLK 3.19.

Addresses are formatted by an IPFormat (rwsetcat's --ip-format flags: a style, zero
padding, map-v4 and unmap-v6, the last on by default as rwsetcat registers it). IPv4 sets
format in bulk through text.ipv4/text.uint; IPv6 addresses one by one (as text.ipv6 does).
"""

import ipaddress
from dataclasses import dataclass

import numpy as np

from . import addrs, text
from .errors import FlowError

MAPPED = addrs.MAPPED
STYLES = ("canonical", "no-mixed", "decimal", "hexadecimal")


@dataclass(frozen=True)
class IPFormat:
    style: str = "canonical"
    zero: bool = False
    map_v4: bool = False
    unmap_v6: bool = True

    def without(self, **kw):
        return IPFormat(**{**self.__dict__, **kw})


def parse_ip_format(value=None, integer_ips=False, zero_pad_ips=False, unmap_default=True):
    """An IPFormat from --ip-format (or SILK_IP_FORMAT) and --integer-ips/--zero-pad-ips."""
    from .io import env
    if integer_ips:
        value = "decimal"
    elif zero_pad_ips:
        value = "zero-padded"
    elif value is None:
        value = env("IP_FORMAT", "canonical")
    style, zero, map_v4, unmap = None, False, False, False
    for part in value.lower().split(","):
        part = part.strip()
        hits = [n for n in STYLES + ("zero-padded", "map-v4", "unmap-v6", "force-ipv6")
                if n.startswith(part)] if part else []
        exact = [n for n in hits if n == part]
        if len(exact) == 1:
            hits = exact
        if len(hits) != 1:
            raise FlowError(f"invalid --ip-format value '{value}': "
                            f"{'ambiguous' if hits else 'unknown'} format '{part}'")
        name = hits[0]
        if name in STYLES:
            if style is not None and style != name:
                raise FlowError(f"invalid --ip-format value '{value}': may not combine "
                                f"{name} with {style}")
            style = name
        elif name == "zero-padded":
            zero = True
        elif name == "map-v4":
            map_v4 = True
        elif name == "unmap-v6":
            unmap = True
        else:
            map_v4, style = True, style or "no-mixed"
    style = style or "canonical"
    if unmap_default and style not in ("decimal", "hexadecimal") and not map_v4:
        unmap = True
    return IPFormat(style, zero, map_v4, unmap)


# ------------------------------------------------------------------ one address as text

def _v4_text(v, fmt):
    if fmt.style == "decimal":
        return f"{v:010d}" if fmt.zero else str(v)
    if fmt.style == "hexadecimal":
        return f"{v:08x}" if fmt.zero else f"{v:x}"
    octets = (v >> 24, (v >> 16) & 255, (v >> 8) & 255, v & 255)
    return ".".join(f"{o:03d}" if fmt.zero else str(o) for o in octets)


def _v6_text(v, fmt):
    if fmt.style == "decimal":
        return f"{v:039d}" if fmt.zero else str(v)
    if fmt.style == "hexadecimal":
        return f"{v:032x}" if fmt.zero else f"{v:x}"
    if fmt.zero:
        return ":".join(f"{(v >> (16 * k)) & 0xFFFF:04x}" for k in range(7, -1, -1))
    if fmt.style == "canonical":
        return _inet_ntop(v)
    return ipaddress.IPv6Address(v).compressed  # no-mixed: RFC 5952 without dotted quads


def _inet_ntop(v):
    """glibc inet_ntop: ::a.b.c.d for IPv4-compatible (not ::/127... ::ffff), ::ffff:a.b.c.d."""
    if v >> 32 == 0xFFFF or (v >> 32 == 0 and v > 0xFFFF):
        return ("::ffff:" if v >> 32 else "::") + str(ipaddress.IPv4Address(v & 0xFFFFFFFF))
    return ipaddress.IPv6Address(v).compressed


def ip_text(v, is_v6, fmt):
    """(text, printed-as-IPv6) of one address given as a Python int."""
    if is_v6 and fmt.unmap_v6 and v >> 32 == 0xFFFF:
        return _v4_text(v & 0xFFFFFFFF, fmt), False
    if not is_v6 and fmt.map_v4:
        return _v6_text(v | MAPPED, fmt), True
    return (_v6_text(v, fmt), True) if is_v6 else (_v4_text(v, fmt), False)


def cidr_text(v, prefix, is_v6, fmt):
    if is_v6 and prefix < 96:
        fmt = fmt.without(unmap_v6=False)
    s, as_v6 = ip_text(v, is_v6, fmt)
    if as_v6 != is_v6:
        prefix += 96 if as_v6 else -96
    return f"{s}/{prefix:0{3 if as_v6 else 2}d}" if fmt.zero else f"{s}/{prefix}"


def ip_maxlen(allow_v6, fmt):
    if allow_v6 or (fmt.zero and fmt.map_v4):
        return 32 if fmt.style == "hexadecimal" else 39
    if fmt.map_v4:
        return {"canonical": 22, "no-mixed": 16, "decimal": 15, "hexadecimal": 12}[fmt.style]
    return {"decimal": 10, "hexadecimal": 8}.get(fmt.style, 15)


# ------------------------------------------------------------------ many addresses

def _v4_column(vals, fmt):
    """bytes lines of uint32 addresses (vectorised for the IPv4 styles)."""
    if fmt.style == "decimal":
        mat, lens = text.uint(vals.astype(np.uint64), 10, zero_pad=10 if fmt.zero else 0)
    elif fmt.style == "hexadecimal":
        mat, lens = text.uint(vals.astype(np.uint64), 8, base=16, zero_pad=8 if fmt.zero else 0)
    else:
        mat, lens = text.ipv4(vals, 15, zero_pad=fmt.zero)
    return mat, lens


def address_chunks(ipset, fmt, cidr=False, chunk=1 << 16, at_once=1 << 24):
    """Lines (bytes chunks) of every address, or every CIDR block with cidr, in order.
    A set too large to list at once (a /64 of single addresses) is listed piece by piece,
    so `| head` ends it early as with rwsetcat."""
    if cidr or ipset.count() <= at_once:
        yield address_lines(ipset, fmt, cidr)
        return
    from .ipset import IPSet
    for s, e in zip(ipset.starts, ipset.ends, strict=True):
        a, b = (addrs.to_int128(s), addrs.to_int128(e)) if ipset.is_ipv6 else (int(s), int(e))
        while a <= b:
            top = min(b, a + chunk - 1)
            part = (IPSet(addrs.pairs([a]), addrs.pairs([top]), True) if ipset.is_ipv6
                    else IPSet(np.array([a], np.uint32), np.array([top], np.uint32)))
            yield address_lines(part, fmt, False)
            a = top + 1


def v6_strings(pairs, fmt):
    """Text of (n, 2) uint64 [hi, lo] addresses of an IPv6 set: the C library's inet_ntop
    for the canonical form (what SiLK calls), Python's int formatting for the others;
    ::ffff:0:0/96 as dotted quads with unmap-v6."""
    import socket
    pairs = np.ascontiguousarray(pairs, np.uint64).reshape(-1, 2)
    raw = pairs.astype(">u8").tobytes()
    n = len(pairs)
    cells = [raw[16 * k: 16 * k + 16] for k in range(n)]
    if fmt.style == "decimal":
        out = [str(int.from_bytes(c, "big")) for c in cells]
        return [x.zfill(39) for x in out] if fmt.zero else out
    if fmt.style == "hexadecimal":
        return [c.hex() if fmt.zero else (c.hex().lstrip("0") or "0") for c in cells]
    mapped = (pairs[:, 0] == 0) & ((pairs[:, 1] >> np.uint64(32)) == np.uint64(0xFFFF))
    if fmt.zero:
        out = [":".join(h[i:i + 4] for i in range(0, 32, 4)) for h in (c.hex() for c in cells)]
    else:
        out = [socket.inet_ntop(socket.AF_INET6, c) for c in cells]
        if fmt.style == "no-mixed":
            out = [ipaddress.IPv6Address(c).compressed if "." in x else x
                   for c, x in zip(cells, out, strict=True)]
    if fmt.unmap_v6 and mapped.any():
        for k in np.flatnonzero(mapped).tolist():
            out[k] = _v4_text(int(pairs[k, 1]) & 0xFFFFFFFF, fmt)
    return out


def address_lines(ipset, fmt, suffixes=None):
    """Lines (bytes) of every address (or CIDR block when suffixes is true) of a set."""
    if ipset.is_ipv6:
        vals, pre = (ipset.cidr_blocks() if suffixes else (ipset.addresses(), None))
        if not len(vals):
            return b""
        out = v6_strings(vals, fmt)
        if pre is not None:
            mapped = (vals[:, 0] == 0) & ((vals[:, 1] >> np.uint64(32)) == np.uint64(0xFFFF))
            for k in np.flatnonzero(pre < 128).tolist():
                p = int(pre[k])
                if mapped[k] and p < 96 and fmt.unmap_v6:
                    out[k] = cidr_text(addrs.to_int128(vals[k]), p, True, fmt)
                    continue
                as_v4 = fmt.unmap_v6 and mapped[k] and fmt.style not in ("decimal",
                                                                          "hexadecimal")
                q = p - 96 if as_v4 else p
                out[k] += f"/{q:0{2 if as_v4 else 3}d}" if fmt.zero else f"/{q}"
        return ("\n".join(out) + "\n").encode()
    if suffixes:
        vals, pre = ipset.cidr_blocks()
    else:
        vals, pre = ipset.addresses(), None
    if not len(vals):
        return b""
    if fmt.map_v4:  # rare: one at a time
        out = [ip_text(int(v), False, fmt)[0] if pre is None or pre[k] == 32
               else cidr_text(int(v), int(pre[k]), False, fmt) for k, v in enumerate(vals)]
        return ("\n".join(out) + "\n").encode()
    cols = [_v4_column(vals, fmt)]
    if pre is not None:
        cols.append(_prefix_column(pre, fmt.zero))
    return text.layout(cols, [0] * len(cols), sep=b"", columnar=False, final=False)


def _prefix_column(pre, zero):
    """'/24' text of prefix lengths, empty for /32 (a single address)."""
    n = len(pre)
    mat = np.full((n, 3), ord(" "), np.uint8)
    tens, ones = pre // 10, pre % 10
    mat[:, 0] = ord("/")
    two = (tens > 0) | zero
    mat[:, 1] = np.where(two, tens + ord("0"), ones + ord("0"))
    mat[:, 2] = np.where(two, ones + ord("0"), ord(" "))
    lens = np.where(pre == 32, 0, np.where(two, 3, 2)).astype(np.int64)
    return text.right_align(mat, lens, 3), lens


def range_lines(ipset, fmt, sep="|", columnar=True, final=True):
    """rwsetcat --ip-ranges: count|low|high| for each maximal run."""
    v6 = ipset.is_ipv6
    wc = ip_maxlen(v6, IPFormat("decimal", unmap_v6=False)) if columnar else 0
    wi = ip_maxlen(v6, fmt) if columnar else 0
    if not len(ipset.starts):
        return b""
    if not v6 and not fmt.map_v4:
        counts = ipset.ends.astype(np.uint64) - ipset.starts + np.uint64(1)
        cols = [text.uint(counts, 1), _v4_column(ipset.starts, fmt), _v4_column(ipset.ends, fmt)]
        return bytes(text.layout(cols, [wc, wi, wi], sep.encode(), columnar, final))
    if v6:
        lo, hi = v6_strings(ipset.starts, fmt), v6_strings(ipset.ends, fmt)
        counts = [addrs.to_int128(b) - addrs.to_int128(a) + 1
                  for a, b in zip(ipset.starts, ipset.ends, strict=True)]
    else:
        lo = [ip_text(int(a), False, fmt)[0] for a in ipset.starts]
        hi = [ip_text(int(a), False, fmt)[0] for a in ipset.ends]
        counts = (ipset.ends.astype(np.int64) - ipset.starts + 1).tolist()
    tail = sep if final else ""
    return "".join(f"{n:>{wc}}{sep}{a:>{wi}}{sep}{b:>{wi}}{tail}\n"
                   for n, a, b in zip(counts, lo, hi, strict=True)).encode()


# ------------------------------------------------------------------ --print-statistics

def _levels_v4(ipset, bits):
    """Occupied /bits blocks of an IPv4 set (0 < bits <= 32)."""
    shift = 32 - bits
    lo = ipset.starts.astype(np.int64) >> shift
    hi = ipset.ends.astype(np.int64) >> shift
    # blocks spanned by each range, less those shared with the previous range
    n = hi - lo + 1
    shared = np.r_[False, lo[1:] == hi[:-1]]
    return int(n.sum() - shared.sum())


def _levels_v6(ipset, bits):
    shift = 128 - bits
    total, prev = 0, None
    for a, b in zip(ipset.starts, ipset.ends, strict=True):
        lo, hi = addrs.to_int128(a) >> shift, addrs.to_int128(b) >> shift
        total += hi - lo + 1 - (lo == prev)
        prev = hi
    return total


def statistics(ipset, fmt):
    """rwsetcat --print-statistics."""
    if not ipset.is_ipv6:
        fmt = fmt.without(map_v4=False)
        empty = not ipset
        w = 15 if empty else ip_maxlen(False, fmt)
        lo = "-" if empty else ip_text(int(ipset.starts[0]), False, fmt)[0]
        hi = "-" if empty else ip_text(int(ipset.ends[-1]), False, fmt)[0]
        out = [f"Network Summary\n\tminimumIP = {lo:>{w}}\n\tmaximumIP = {hi:>{w}}\n"]
        hosts = ipset.count()
        out.append(f"\t{hosts:>10} host{' (/32),  ' if hosts == 1 else 's (/32s),'}  "
                   f"{100.0 * hosts / 2 ** 32:10.6f}% of 2^32\n")
        for bits in (8, 16, 24, 27):
            c = _levels_v4(ipset, bits) if ipset else 0
            word = ("s" if c != 1 else "") + ("," if bits >= 10 else ", ")
            word = word if c != 1 else ("," + (" " if bits >= 10 else "  "))
            out.append(f"\t{c:>10} occupied /{bits}{word} "
                       f"{100.0 * c / 2 ** bits:10.6f}% of 2^{bits}\n")
        return "".join(out)
    fmt = fmt.without(unmap_v6=False)
    if not ipset:
        out = ["Network Summary\n\tminimumIP = -\n\tmaximumIP = -\n"]
        out += [f"\t{0:>39} occupied /{b}\n" for b in range(8, 121, 8)]
        out.append(f"\t{0:>39} hosts (/128s)\n")
        return "".join(out)
    w = ip_maxlen(True, fmt)
    lo = ip_text(addrs.to_int128(ipset.starts[0]), True, fmt)[0]
    hi = ip_text(addrs.to_int128(ipset.ends[-1]), True, fmt)[0]
    out = [f"Network Summary\n\tminimumIP = {lo:>{w}}\n\tmaximumIP = {hi:>{w}}\n"]
    for b in range(8, 121, 8):
        c = _levels_v6(ipset, b)
        if c >= 1 << 64:
            out.append(f"\t{float(c):>39.0f} occupied /{b}s\n")
        else:
            out.append(f"\t{c:>39} occupied /{b}{'' if c == 1 else 's'}\n")
    n = ipset.count()
    out.append(f"\t{n:>39} host{' (/128)' if n == 1 else 's (/128s)'}\n")
    return "".join(out)


# ------------------------------------------------------------------ --network-structure

_V4_LETTERS = {"T": 0, "A": 8, "B": 16, "C": 24, "X": 27, "H": 32}


class NetStructure:
    """A parsed --network-structure: levels (prefix lengths, finest first) with print
    flags, whether summaries are printed, and whether it is the IPv6 form. `counts` is
    true for rwbagcat, whose rows carry counter sums (so no bare host counts)."""

    def __init__(self, spec, counts=False):
        self.spec = spec
        self.v6 = False
        body = spec
        if spec is not None and ":" in spec:
            head, _, rest = spec.partition(":")
            if head not in ("v4", "v6"):
                raise FlowError(f"Invalid network-structure '{spec}': Only 'v6' or 'v4' may "
                                "precede ':'")
            self.v6 = head == "v6"
            body = rest or None
        width = 128 if self.v6 else 32
        self.width = width
        default_summary = "48,64" if self.v6 else "ABCXH"
        text_ = body if body is not None else "TS/" + default_summary
        block = [0] * (width + 1)
        block[0] = block[width] = 2
        self.summary = False
        pos = 0
        for part in (1, 2):
            while pos < len(text_) and text_[pos] != "/":
                ch = text_[pos]
                if ch == "S":
                    self.summary = True
                elif ch == "T":
                    block[0] |= part
                elif ch == "H":
                    block[width] |= part
                elif not self.v6 and ch in _V4_LETTERS:
                    block[_V4_LETTERS[ch]] |= part
                elif ch.isdigit():
                    end = pos
                    while end < len(text_) and text_[end].isdigit():
                        end += 1
                    val = int(text_[pos:end])
                    if val > width:
                        extra = ("; prepend \"v6:\" to argument to allow IPv6 prefixes"
                                 if not self.v6 else "")
                        raise FlowError(f"Invalid network-structure '{spec}': Value is above "
                                        f"maximum of {width}{extra}")
                    block[val] |= part
                    pos = end - 1
                elif ch != "," and not ch.isspace():
                    raise FlowError(f"Invalid network-structure character '{ch}'")
                pos += 1
            if pos < len(text_) and text_[pos] == "/":
                if part == 2:
                    raise FlowError(f"Invalid network-structure '{spec}': Only one '/' is "
                                    "allowed")
                self.summary = True
                pos += 1
            elif part == 1 and self.summary:
                text_, pos = default_summary, 0
        self.bits = [b for b in range(width, -1, -1) if block[b]]  # finest first
        self.prints = [bool(block[b] & 1) for b in self.bits]
        if not any(self.prints):
            letters = "TH" if self.v6 else "THABCX"
            where = "must precede '/'" if spec and "/" in spec else "must be specified"
            raise FlowError(f"Invalid IPv{6 if self.v6 else 4} network-structure '{spec}': A "
                            f"numeric prefix and/or a subset of {letters} {where}")
        self.print_ip_count = not self.summary and not counts

    def layout(self, fmt, sep, columnar):
        """(indent, width) for each level; width < 0 means left-justified."""
        n = len(self.bits)
        total = n - 1
        indent, first, last = 0, None, 256
        indents = [0] * n
        for i in range(total, -1, -1):
            indents[i] = indent
            if self.prints[i]:
                last = i
                if first is None:
                    first = i
                    indent += 2
                    continue
            if last < total:
                indent += 2
        widths = [0] * n
        if not columnar:
            return [0] * n, widths
        if last == total:
            widths[total] = len("TOTAL")
            return indents, widths
        width = indent - 2 * (1 + last) + ip_maxlen(self.v6, fmt)
        bits = self.bits[last]
        if last == 0:
            if self.prints[1]:
                width += 2 if (self.v6 or fmt.map_v4) else 1
        elif self.v6:
            width += 4 if fmt.zero else (2 if bits < 10 else 3 if bits < 100 else 4)
        elif fmt.map_v4:
            width += 4 if fmt.zero else (3 if bits < 4 else 4)
        else:
            width += 3 if fmt.zero else (2 if bits < 10 else 3)
        justify = 1 if first == last else -1
        return indents, [justify * (width - ind) for ind in indents]


def _summary_text(counts, bits, adjust, plural_always=False):
    """' in 3 /24s, 4 /27s and 5 /30s' from sub-block counts, coarsest first."""
    out = []
    k = len(counts)
    for pos, (c, b) in enumerate(zip(counts, bits, strict=True)):
        if pos == 0:
            joiner = " in"
        elif pos < k - 1:
            joiner = ","
        elif k == 2:
            joiner = " and"
        else:
            joiner = ", and"
        plural = "s" if (plural_always or c != 1) else ""
        out.append(f"{joiner} {c} /{b + adjust}{plural}")
    return "".join(out)


def network_structure(ipset, spec, fmt, sep="|", columnar=True):
    """rwsetcat --network-structure text for a set.

    Each printed level lists its occupied blocks with the number of hosts (and, with a
    summary, the number of occupied blocks of every finer level); a block is printed after
    the finer blocks inside it, as SiLK closes blocks while walking the set's CIDR blocks.
    """
    ns = NetStructure(spec)
    fmt = fmt.without(unmap_v6=False)
    W = ns.width
    bits, prints = ns.bits, ns.prints
    total = len(bits) - 1
    cidr_adjust = 96 if (not ns.v6 and fmt.map_v4) else 0
    blocks = _cidr_ints(ipset, ns.v6)
    if not blocks:
        if not prints[total]:
            return ""
        if ns.print_ip_count:
            return f"TOTAL{sep} 0\n"
        return f"TOTAL{sep} 0 hosts" + "".join(
            f"{j} 0 /{b}s" for j, b in zip(_joiners(total - 1), bits[total - 1:0:-1],
                                           strict=True)) + "\n"
    indents, widths = ns.layout(fmt, sep, columnar)
    rows = []  # (end address, level index, text)

    def label(i, base):
        if i == total:
            return "TOTAL"
        if i == 0:
            return ip_text(base, ns.v6, fmt)[0]
        return cidr_text(base, bits[i] + cidr_adjust, ns.v6, fmt) if cidr_adjust else \
            cidr_text(base, bits[i], ns.v6, fmt)

    def row(i, base, hosts, subs):
        lab = label(i, base)
        w = widths[i]
        lab = lab.rjust(w) if w >= 0 else lab.ljust(-w)
        head = " " * indents[i] + lab + sep
        if i == 0:
            return head + "\n"
        if ns.print_ip_count:
            return f"{head} {hosts}\n"
        return f"{head} {hosts} host{'' if hosts == 1 else 's'}" + \
            _summary_text(subs, [bits[j] for j in range(i - 1, 0, -1)], cidr_adjust) + "\n"

    # partial blocks: level -> {block id: [hosts, sub counts (levels i-1..1)]}
    acc = [dict() for _ in bits]
    last_id = [None] * len(bits)
    for base, p in blocks:
        new = []
        for j, b in enumerate(bits):
            if b >= p:
                new.append(1 << (b - p))
            else:
                bid = base >> (W - b)
                new.append(0 if bid == last_id[j] else 1)
                last_id[j] = bid
            if b >= p:
                last_id[j] = (base >> (W - b)) + (1 << (b - p)) - 1 if b else 0
        for i, b in enumerate(bits):
            if b < p:  # the block at level i contains this CIDR block
                bid = base >> (W - b) if b else 0
                ent = acc[i].get(bid)
                if ent is None:
                    ent = acc[i][bid] = [0] * (i if i else 1)
                ent[0] += 1 << (W - p)
                for j in range(1, i):
                    ent[j] += new[j]
            elif prints[i]:  # whole blocks at level i, listed now
                step = 1 << (W - b)
                subs = [1 << (bits[j] - b) for j in range(i - 1, 0, -1)]
                for k in range(1 << (b - p)):
                    start = base + k * step
                    rows.append((start + step - 1, i, row(i, start, step, subs)))
    for i, level in enumerate(acc):
        if not prints[i] or i == 0:
            continue
        b = bits[i]
        for bid, ent in level.items():
            start = bid << (W - b) if b else 0
            end = start + (1 << (W - b)) - 1
            subs = [ent[j] for j in range(i - 1, 0, -1)]
            rows.append((end, i, row(i, start, ent[0], subs)))
    rows.sort(key=lambda r: (r[0], r[1]))
    return "".join(r[2] for r in rows)


def _joiners(k):
    return [" in" if pos == 0 else "," if pos < k - 1 else " and" if k == 2 else ", and"
            for pos in range(k)]


def _cidr_ints(ipset, v6_structure):
    """The set's CIDR blocks as (base, prefix) Python ints in the structure's family: a
    v4 structure skips IPv6 addresses outside ::ffff:0:0/96, a v6 one maps IPv4."""
    vals, pre = ipset.cidr_blocks()
    if ipset.is_ipv6:
        items = [(addrs.to_int128(v), int(p)) for v, p in zip(vals, pre, strict=True)]
        if v6_structure:
            return items
        return [(v & 0xFFFFFFFF, p - 96) for v, p in items
                if v >> 32 == 0xFFFF and p >= 96]
    items = list(zip(vals.tolist(), pre.tolist(), strict=True))
    if v6_structure:
        return [(v | MAPPED, p + 96) for v, p in items]
    return items


# ------------------------------------------------------------------ network structure of a bag
#
# rwbagcat --network-structure walks a bag's sorted keys: a block of a level opens with
# the first key whose prefix differs from the previous key's, and its row (the sum of the
# counters, with a summary the hosts and the occupied finer blocks) is printed once the
# block closes, after the rows of the keys inside it. Here every level is computed at once
# from the common prefix of each key with the one before it.

M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _bit_length(x):
    """Bits of each uint64 value (0 for 0), exactly (float32 halves are exact)."""
    x = np.asarray(x, np.uint64)
    top = (x >> np.uint64(32)).astype(np.float64)
    low = (x & np.uint64(0xFFFFFFFF)).astype(np.float64)
    return np.where(top > 0, np.frexp(top)[1] + 32, np.frexp(low)[1]).astype(np.int64)


def common_prefix(vals):
    """Leading bits each sorted distinct key shares with the key before it (-1 for the
    first key): uint32 keys, or (n, 2) uint64 [hi, lo] IPv6 keys."""
    n = len(vals)
    out = np.full(n, -1, np.int64)
    if n < 2:
        return out
    if vals.ndim == 1:
        out[1:] = 32 - _bit_length(vals[1:] ^ vals[:-1])
        return out
    xh = vals[1:, 0] ^ vals[:-1, 0]
    xl = vals[1:, 1] ^ vals[:-1, 1]
    out[1:] = np.where(xh != 0, 64 - _bit_length(xh), 128 - _bit_length(xl))
    return out


def address_strings(vals, is_v6, fmt):
    """Text (a bytes array) of uint32 or (n, 2) uint64 addresses, as ip_text gives it."""
    if not is_v6 and not fmt.map_v4:
        mat, _ = _v4_column(vals, fmt)
        mat = np.ascontiguousarray(mat)
        return np.strings.lstrip(mat.view(f"S{mat.shape[1]}").ravel(), b" ")
    if not is_v6:
        pairs = np.zeros((len(vals), 2), np.uint64)
        pairs[:, 1] = vals.astype(np.uint64) | np.uint64(MAPPED)
        vals = pairs
    if fmt.style in ("canonical", "no-mixed") and not fmt.unmap_v6:
        return text.ipv6_strings(vals[:, 0], vals[:, 1],
                                 "zero-padded" if fmt.zero else fmt.style)
    return np.array([s.encode() for s in v6_strings(vals, fmt)], "S")


def _masked(vals, bits):
    """The /bits network of each address."""
    if vals.ndim == 1:
        return vals & np.uint32(~(0xFFFFFFFF >> bits) & 0xFFFFFFFF)
    out = vals.copy()
    if bits <= 64:
        out[:, 1] = 0
        out[:, 0] &= ~(M64 >> np.uint64(bits)) if bits < 64 else M64
    else:
        out[:, 1] &= ~(M64 >> np.uint64(bits - 64))
    return out


def _sum_text(counters, starts, wide):
    """Text of the counter sums of the blocks that start at `starts`: uint64 arithmetic
    (wrapping, as SiLK's IPv4 sums) or exact (SiLK's 128-bit IPv6 sums)."""
    if not wide:
        return np.add.reduceat(counters, starts).astype("S20")
    hi = np.add.reduceat(counters >> np.uint64(32), starts)
    lo = np.add.reduceat(counters & np.uint64(0xFFFFFFFF), starts)
    val = (hi << np.uint64(32)) + lo
    out = val.astype("S40")
    for k in np.flatnonzero(((hi >> np.uint64(32)) != 0) | (val < lo)).tolist():
        out[k] = str((int(hi[k]) << 32) + int(lo[k])).encode()
    return out


def _justify(labels, indent, width):
    lab = np.strings.rjust(labels, width) if width >= 0 else np.strings.ljust(labels, -width)
    return np.strings.add(b" " * indent, lab) if indent else lab


def bag_network_structure(keys, counters, keys_v6, spec, fmt, sep="|", columnar=True,
                          final=True, count_width=20):
    """rwbagcat --network-structure text of a bag's sorted distinct IP keys (uint32, or
    (n, 2) uint64 for an IPv6 bag) and their counters.

    Each printed level lists its occupied blocks with the sum of their counters (and, with
    a summary, the number of keys and of occupied blocks of every finer level); a v4
    structure skips IPv6 keys outside ::ffff:0:0/96, a v6 one maps IPv4 keys."""
    ns = NetStructure(spec, counts=True)
    fmt = fmt.without(unmap_v6=False)
    bits, prints = ns.bits, ns.prints
    total = len(bits) - 1
    counters = np.asarray(counters, np.uint64)
    hosts, hosts_v6 = keys, keys_v6  # host rows show the key as the bag holds it
    if ns.v6 and not keys_v6:
        vals = np.zeros((len(keys), 2), np.uint64)
        vals[:, 1] = keys.astype(np.uint64) | np.uint64(MAPPED)
    elif not ns.v6 and keys_v6:
        keep = (keys[:, 0] == 0) & ((keys[:, 1] >> np.uint64(32)) == np.uint64(0xFFFF))
        vals = (keys[keep, 1] & np.uint64(0xFFFFFFFF)).astype(np.uint32)
        counters, hosts, hosts_v6 = counters[keep], vals, False
    else:
        vals = keys
    sep_b = sep.encode()
    cw = count_width if columnar else 0
    tail = sep_b if (final or ns.summary) else b""
    n = len(vals)
    if n == 0:
        if not prints[total]:
            return ""
        line = f"TOTAL{sep}{0:>{cw}}{tail.decode()}"
        if ns.summary:
            line += " 0 hosts" + "".join(f"{j} 0 /{b}s" for j, b in zip(
                _joiners(total - 1), bits[total - 1:0:-1], strict=True))
        return line + "\n"
    indents, widths = ns.layout(fmt, sep, columnar)
    cpl = common_prefix(vals)
    starts = {i: np.flatnonzero(cpl < bits[i]) for i in range(1, total + 1)}
    as_v6 = ns.v6 or fmt.map_v4
    ends, levels, lines = [], [], []

    def add(i, end, labels, sums, extra=b""):
        row = np.strings.add(_justify(labels, indents[i], widths[i]), sep_b)
        row = np.strings.add(np.strings.add(row, np.strings.rjust(sums, cw)), tail)
        lines.append(np.strings.add(np.strings.add(row, extra), b"\n"))
        ends.append(end)
        levels.append(np.full(len(end), i, np.int16))

    if prints[0]:
        add(0, np.arange(n), address_strings(hosts, hosts_v6, fmt), counters.astype("S20"))
    for i in range(1, total + 1):
        if not prints[i]:
            continue
        st = starts[i]
        end = np.r_[st[1:], n] - 1
        if i == total:
            labels = np.full(len(st), b"TOTAL", "S5")
        else:
            p = bits[i] + (96 if as_v6 and not ns.v6 else 0)
            suffix = (f"/{p:0{3 if as_v6 else 2}d}" if fmt.zero else f"/{p}").encode()
            labels = np.strings.add(address_strings(_masked(vals[st], bits[i]), ns.v6, fmt),
                                    suffix)
        extra = b""
        if ns.summary:
            count = end - st + 1
            extra = np.strings.add(np.strings.add(b" ", count.astype("S20")),
                                   np.where(count == 1, b" host", b" hosts"))
            for j, joiner in zip(range(i - 1, 0, -1), _joiners(i - 1), strict=True):
                c = np.add.reduceat((cpl < bits[j]).astype(np.int64), st)
                word = np.strings.add(f"{joiner} ".encode(), c.astype("S20"))
                word = np.strings.add(word, f" /{bits[j]}".encode())
                extra = np.strings.add(extra, np.strings.add(word, np.where(c == 1, b"",
                                                                            b"s")))
        add(i, end, labels, _sum_text(counters, st, ns.v6), extra)
    return _in_order(np.concatenate(ends), np.concatenate(levels), lines)


def _in_order(ends, levels, lines, chunk=1 << 18):
    """The rows of every level as one text, ordered by the last key each row covers (a
    block after the finer rows inside it)."""
    order = np.lexsort((levels, ends))
    width = max(a.dtype.itemsize for a in lines)
    rows = np.concatenate([a.astype(f"S{width}") for a in lines])
    out = []
    for lo in range(0, len(order), chunk):
        buf = np.frombuffer(rows[order[lo: lo + chunk]].tobytes(), np.uint8)
        out.append(buf[buf != 0].tobytes())
    return b"".join(out).decode("ascii")
