"""pyflow-setbuild: build an IP set file from text (rwsetbuild)."""

from ..cli import Tool


def _arguments(p):
    from .settool import add_set_output
    p.add_argument("inputs", nargs="*", metavar="INPUT [OUTPUT]",
                   help="The text to read ('-' or 'stdin' for the standard input, the "
                        "default) and the set file to write ('-' or 'stdout' for the "
                        "standard output, the default when it is not a terminal).")
    p.add_argument("--ip-ranges", nargs="?", const="-", metavar="DELIM",
                   help="Also accept lines of two addresses separated by DELIM (default "
                        "'-') giving a range; IP wildcards are then not accepted.")
    add_set_output(p, output_path=False)


TOOL = Tool(
    name="pyflow-setbuild",
    summary="Build an IP set file from addresses, CIDR blocks, wildcards or ranges in text.",
    description="Reads one entry per line: an IPv4 or IPv6 address, an integer (an IPv4 "
                "address), a CIDR block, or a SiLK IP wildcard such as 10.0.1-3.x or "
                "2001:db8::x; with --ip-ranges, a pair LOW-HIGH instead of wildcards. Text "
                "after '#' and blank lines are ignored. A malformed line stops the tool "
                "with its line number and nothing is written. The set is IPv6 when any "
                "entry is IPv6 (IPv4 addresses then as ::ffff:0:0/96).",
    uses=("compression", "notes"),
    add_arguments=_arguments,
    examples=["printf '10.0.0.0/30\\n10.0.0.9\\n' | pyflow-setbuild > c.set",
              "pyflow-setbuild --ip-ranges=, ranges.txt ranges.set",
              "pyflow-setbuild --record-version=4 hosts.txt hosts.set"],
)


class _Bad(Exception):
    pass


def _one(s):
    """(start, end, ipv6) of an address or CIDR block, or None when it is neither. Plain
    addresses take the C parser (inet_pton); other forms the full one (addrs.parse_ip)."""
    import socket

    from .. import addrs
    try:
        v = int.from_bytes(socket.inet_pton(socket.AF_INET6 if ":" in s else socket.AF_INET,
                                            s), "big")
        return v, v, ":" in s
    except OSError:
        pass
    try:
        v, p, v6 = addrs.parse_ip(s)
    except ValueError:
        return None
    width = 128 if v6 else 32
    return v, v | ((1 << (width - p)) - 1), v6


def bulk(lines):
    """The set when every line is a plain address of one family (the usual list of
    addresses), parsed by the C parser and packed in one go; else None."""
    import socket

    import numpy as np

    from ..ipset import IPSet
    lines = [x.strip() for x in lines]
    lines = [x for x in lines if x]
    if not lines or any("#" in x for x in lines):
        return None
    v6 = ":" in lines[0]
    try:
        family = socket.AF_INET6 if v6 else socket.AF_INET
        raw = b"".join([socket.inet_pton(family, x) for x in lines])
    except OSError:
        return None
    if v6:
        return IPSet.from_addresses(np.frombuffer(raw, ">u8").astype(np.uint64).reshape(-1, 2))
    return IPSet.from_addresses(np.frombuffer(raw, ">u4").astype(np.uint32))


def parse_lines(lines, ranges_delim=None):
    """(starts, ends, ipv6) Python-int lists from rwsetbuild text; _Bad(line, msg)."""
    from .. import addrs
    from ..errors import FlowError
    out, v6_seen = [], False
    for lc, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        sep_at = -1
        if ranges_delim is not None:
            if ranges_delim.isspace():
                sep_at = next((k for k, ch in enumerate(line) if ch.isspace()), -1)
            else:
                sep_at = line.find(ranges_delim)
        if sep_at >= 0:
            lo, hi = line[:sep_at].strip(), line[sep_at + 1:].strip()
            a, b = _one(lo), _one(hi)
            if a is None or a[0] != a[1] or "/" in lo:
                raise _Bad(lc, f"Invalid minimum IP on line {lc}: '{lo}'")
            if b is None or b[0] != b[1] or "/" in hi:
                raise _Bad(lc, f"Invalid maximum IP on line {lc}: '{hi}'")
            if a[2] != b[2]:
                a, b = _widen(a), _widen(b)
            if a[0] > b[0]:
                raise _Bad(lc, f"Invalid IP range on line {lc}: min > max")
            out.append((a[0], b[0], a[2]))
            v6_seen |= a[2]
            continue
        got = _one(line)
        if got is None and ranges_delim is None:
            try:
                m = addrs.parse_wildcard(line, "line")
            except FlowError:
                m = None
            if m is not None:
                s, e = (m.ranges(1 << 26) if isinstance(m, addrs.Wildcard) else m.ranges())
                if m.is_ipv6:
                    got = [(addrs.to_int128(x), addrs.to_int128(y), True)
                           for x, y in zip(s, e, strict=True)]
                else:
                    got = [(int(x), int(y), False) for x, y in zip(s, e, strict=True)]
                out.extend(got)
                v6_seen |= m.is_ipv6
                continue
        if got is None:
            what = "IP" if ranges_delim is not None else "IP Wildcard"
            hint = ""
            if ranges_delim is None and any(c in line for c in "-, \t") and \
                    len([t for t in line.replace(",", " ").replace("-", " ").split()
                         if _one(t)]) == 2:
                hint = " (use --ip-ranges for a pair of addresses)"
            raise _Bad(lc, f"Invalid {what} on line {lc}: '{line}'{hint}")
        out.append(got)
        v6_seen |= got[2]
    return out, v6_seen


def _widen(item):
    from ..addrs import MAPPED
    s, e, v6 = item
    return (s, e, True) if v6 else (s | MAPPED, e | MAPPED, True)


def build(items, v6):
    """An IPSet from (start, end, ipv6) items."""
    import numpy as np

    from ..ipset import IPSet
    if not v6:
        arr = np.array([(s, e) for s, e, _ in items], np.int64).reshape(-1, 2)
        return IPSet.from_ranges(arr[:, 0], arr[:, 1])
    items = [_widen(x) for x in items]
    return IPSet.from_ranges(_pairs([s for s, _, _ in items]),
                             _pairs([e for _, e, _ in items]), True)


def _pairs(values):
    """Python ints as (n, 2) uint64 [hi, lo], in bulk."""
    import numpy as np
    n = len(values)
    hi = np.fromiter((v >> 64 for v in values), np.uint64, n)
    lo = np.fromiter((v & 0xFFFFFFFFFFFFFFFF for v in values), np.uint64, n)
    return np.stack([hi, lo], 1)


def main(opts):
    import sys

    from .. import io
    from ..errors import FlowError
    from .settool import write_output
    if len(opts.inputs) > 2:
        raise FlowError(f"Too many arguments: '{opts.inputs[2]}'")
    src = opts.inputs[0] if opts.inputs else "-"
    dst = opts.inputs[1] if len(opts.inputs) > 1 else "-"
    if dst in io.STDOUT_NAMES and io._isatty(sys.stdout):
        raise FlowError("will not write binary data to a terminal (stdout)")
    if not opts.inputs and io._isatty(sys.stdin):
        raise FlowError("No input given and standard input is a terminal")
    delim = opts.ip_ranges
    if delim is not None:
        delim = delim[:1] or "-"
    try:
        if src in io.STDIN_NAMES:
            data = sys.stdin.buffer.read()
        else:
            with open(src, "rb") as f:
                data = f.read()
    except OSError as exc:
        raise FlowError(f"cannot read {src}: {exc.strerror}") from None
    name = io.display_name(src)
    lines = data.decode("utf-8", "replace").splitlines()
    result = bulk(lines)
    if result is None:
        try:
            result = build(*parse_lines(lines, delim))
        except _Bad as exc:
            raise FlowError(f"{name}: {exc.args[1]}") from None
    write_output(result, opts, dst)
    return 0
