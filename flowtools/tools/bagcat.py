"""pyflow-bagcat: print bags as text (rwbagcat)."""

from ..cli import Tool


def _arguments(p):
    p.add_argument("inputs", nargs="*", metavar="BAG",
                   help="Bag files (pyflow or SiLK); '-' or 'stdin' reads the standard "
                        "input, which is also read when no file is named.")
    p.add_argument("--network-structure", nargs="?", const="", metavar="STRUCTURE",
                   help="Group IP keys into netblocks and print hosts and counter sums per "
                        "block (SiLK's STRUCTURE syntax, e.g. v4:16,24 or TS).")
    p.add_argument("--bin-ips", nargs="?", const="linear", metavar="SCALE",
                   help="Print, for each counter value (linear, the default), power of two "
                        "(binary) or 1/100 decade (decimal), how many keys have it.")
    p.add_argument("--sort-counters", nargs="?", const="decreasing", metavar="ORDER",
                   help="Print the entries by counter, decreasing (default) or increasing.")
    p.add_argument("--print-statistics", nargs="?", const="-", metavar="OUTFILE",
                   help="Print statistics of the keys and counters (to OUTFILE or the "
                        "standard output).")
    p.add_argument("--minkey", metavar="VALUE", help="Print keys of at least VALUE.")
    p.add_argument("--maxkey", metavar="VALUE", help="Print keys of at most VALUE.")
    p.add_argument("--mincounter", metavar="VALUE",
                   help="Print entries whose counter is at least VALUE.")
    p.add_argument("--maxcounter", metavar="VALUE",
                   help="Print entries whose counter is at most VALUE.")
    p.add_argument("--mask-set", metavar="PATH",
                   help="Print only keys in the IP set read from PATH.")
    p.add_argument("--zero-counts", action="store_true",
                   help="Also print keys whose counter is zero (needs --mask-set or both "
                        "--minkey and --maxkey).")
    p.add_argument("--key-format", metavar="FORMAT",
                   help="How to print keys: for IP keys canonical, decimal, hexadecimal, "
                        "zero-padded, no-mixed, map-v4, unmap-v6, force-ipv6; for integer "
                        "keys decimal, hexadecimal, zero-padded; for time keys timestamp, "
                        "iso-time, m/d/y, epoch, utc, localtime.")
    p.add_argument("--integer-keys", action="store_true",
                   help="Same as --key-format=decimal (deprecated).")
    p.add_argument("--zero-pad-ips", action="store_true",
                   help="Same as --key-format=zero-padded (deprecated).")
    p.add_argument("--no-columns", action="store_true",
                   help="Do not pad columns to fixed widths.")
    p.add_argument("--column-separator", metavar="C",
                   help="Print C between columns and after the last one (default '|').")
    p.add_argument("--no-final-delimiter", action="store_true",
                   help="Do not print the column separator after the last column.")
    p.add_argument("--delimited", nargs="?", const="|", metavar="C",
                   help="Same as --no-columns --no-final-delimiter --column-separator=C.")
    p.add_argument("--output-path", metavar="PATH", default="-",
                   help="Write the text to PATH (default: the standard output).")
    p.add_argument("--pager", metavar="PROG", help="Accepted for SiLK compatibility; the "
                   "output is never paged.")


TOOL = Tool(
    name="pyflow-bagcat",
    summary="Print a bag's keys and counters as text.",
    description="Reads bags (pyflow bag files, SiLK Bag files) and prints one 'key|counter|' "
                "line per key in key order, as SiLK's rwbagcat: IPv4 keys in a 15-wide "
                "column, IPv6 keys 39, other keys 10, counters 20. Composite keys print one "
                "column per key field. --sort-counters, --bin-ips, --network-structure and "
                "--print-statistics choose other outputs; the min/max and --mask-set "
                "switches limit the entries.",
    uses=("site",),
    add_arguments=_arguments,
    examples=["pyflow-bagcat sources.bag",
              "pyflow-bagcat --sort-counters --delimited=, ports.bag | head",
              "pyflow-bagcat --bin-ips=binary sources.bag"],
)

IP_FORMATS = ("canonical", "decimal", "hexadecimal", "no-mixed", "zero-padded", "map-v4",
              "unmap-v6", "force-ipv6")
TIME_FORMATS = ("timestamp", "iso-time", "m/d/y", "utc", "localtime", "epoch")
COUNT_WIDTH = 20


def parse_key_format(text):
    """(kind, set of words) for --key-format; kind 'ip' or 'time'."""
    from ..errors import FlowError
    words = set()
    kind = None
    for tok in text.split(","):
        t = tok.strip().lower()
        hits = [w for w in IP_FORMATS + TIME_FORMATS if w == t] or \
            [w for w in IP_FORMATS + TIME_FORMATS if w.startswith(t)] if t else []
        if len(hits) != 1:
            raise FlowError(f"invalid --key-format '{text}': unknown or ambiguous '{tok}'")
        w = hits[0]
        k = "ip" if w in IP_FORMATS else "time"
        if kind and k != kind:
            raise FlowError(f"invalid --key-format '{text}': mixes IP and time formats")
        kind = k
        words.add(w)
    return kind, words


# --- key text ------------------------------------------------------------------------------


def _ipv4_matrix(col, fmt):
    import numpy as np

    from .. import text
    if "decimal" in fmt:
        return text.uint(col.astype(np.uint64), 1)
    if "hexadecimal" in fmt:
        return text.uint(col.astype(np.uint64), 1, base=16)
    return text.ipv4(col, 1, zero_pad="zero-padded" in fmt)


def _ipv6_strings(hi, lo, fmt):
    from ..text import ipv6_text
    v = (hi << 64) | lo
    if "decimal" in fmt:
        return str(v)
    if "hexadecimal" in fmt:
        return f"{v:x}"
    mapped = hi == 0 and (lo >> 32) == 0xFFFF
    if mapped and ("unmap-v6" in fmt):
        import ipaddress
        a = str(ipaddress.IPv4Address(lo & 0xFFFFFFFF))
        if "zero-padded" in fmt:
            a = ".".join(f"{int(x):03d}" for x in a.split("."))
        return a
    if "zero-padded" in fmt:
        return ipv6_text(hi, lo, "zero-padded")
    if "no-mixed" in fmt:
        return ipv6_text(hi, lo, "no-mixed")
    return ipv6_text(hi, lo)


def ip_text(col, ipv6, fmt):
    """(matrix, lengths, width) of IP keys in rwbagcat's --key-format."""
    import numpy as np

    from .. import text
    v6_out = ipv6 or "map-v4" in fmt or "force-ipv6" in fmt
    if not ipv6 and v6_out:
        from .. import schema
        col = schema.v4_to_v6(col)
        if "force-ipv6" in fmt:
            fmt = fmt | {"no-mixed"}
    if not v6_out:
        mat, lens = _ipv4_matrix(col, fmt)
        width = 10 if "decimal" in fmt else 8 if "hexadecimal" in fmt else 15
        return mat, lens, width
    n = len(col)
    if n == 0:
        return np.zeros((0, 1), np.uint8), np.zeros(0, np.int64), 39
    strings = [_ipv6_strings(int(h), int(lo), fmt) for h, lo in zip(col[:, 0], col[:, 1],
                                                                     strict=True)]
    mat, lens = text.from_strings(strings, np.arange(n), 1)
    width = 32 if "hexadecimal" in fmt else 39
    return mat, lens, width


def key_columns(bag, kind, fmt, config=None):
    """[(matrix, lengths, width)] for the key fields of a bag."""
    import numpy as np

    from .. import bag as bagmod
    from .. import text
    from ..errors import FlowError
    cols = bag.layout.unpack(bag.keys)
    out = []
    for name, col in zip(bag.key, cols, strict=True):
        if name in bagmod.IP_TYPES or name == "custom":
            if kind == "time":
                if name != "custom" or bag.ipv6:
                    raise _bad(fmt, name)
                out.append(_time(col, fmt))
                continue
            out.append(ip_text(col, bag.ipv6, fmt if kind == "ip" else set()))
            continue
        if name in bagmod.TIME_TYPES:
            if kind == "ip":
                raise _bad(fmt, name)
            out.append(_time(col, fmt))
            continue
        if name in ("sip-country", "dip-country", "any-country") or name.endswith("pmap"):
            raise FlowError(f"cannot print {name} keys (country codes and prefix maps are "
                            "not supported)")
        if kind == "time":
            raise _bad(fmt, name)
        if not fmt and name in bagmod.FLAG_TYPES:
            m, lens = text.squeeze_blanks(*text.flag_letters(col, text.TCP_FLAGS, 8))
            out.append((m, lens, 8))  # unpadded letters, as rwbagcat
            continue
        if not fmt and name == "attributes":
            m, lens = text.squeeze_blanks(*text.flag_letters(col, text.ATTRIBUTES, 8))
            out.append((m, lens, 8))
            continue
        if not fmt and name == "sensor" and config is not None:
            width = max([len(s.name) for s in config.sensors.values()] + [1])
            ids = col.astype(np.int64)
            uniq, inv = np.unique(ids, return_inverse=True)
            m, lens = text.from_strings([config.sensor_name(int(u)) for u in uniq],
                                        inv.ravel(), 1)
            out.append((m, lens, width))
            continue
        allowed = {"decimal", "hexadecimal", "zero-padded"}
        if fmt - allowed or len(fmt & {"decimal", "hexadecimal"}) > 1:
            raise _bad(fmt, name)
        v = col.astype(np.uint64)
        if "hexadecimal" in fmt:
            m, lens = text.uint(v, 1, base=16, zero_pad=8 if "zero-padded" in fmt else 0)
            out.append((m, lens, 8))
        else:
            m, lens = text.uint(v, 1, zero_pad=10 if "zero-padded" in fmt else 0)
            out.append((m, lens, 10))
    return out


def _time(col, fmt):
    import numpy as np

    from .. import text
    ms = col.astype(np.int64) * 1000
    if "epoch" in fmt:
        m, lens = text.uint(col.astype(np.uint64), 1)
        return m, lens, 10
    style = "iso" if "iso-time" in fmt else "m/d/y" if "m/d/y" in fmt else "default"
    offset = None
    if "localtime" in fmt:
        from ..render import _local_offsets
        offset = _local_offsets(ms)
    m, lens = text.timestamps(ms, style, msec=False, offset_s=offset)
    return m, lens, 19


class _Bad(Exception):
    pass


def _bad(fmt, name):
    from ..errors import FlowError
    return FlowError(f"invalid --key-format '{','.join(sorted(fmt))}': nonsensical for a "
                     f"bag containing {name} keys")


def lines(columns, counters, sep="|", columnar=True, final=True):
    """The text of rows made of key columns and the counter column."""
    import numpy as np

    from .. import text
    if len(counters) == 0:
        return b""
    cm, cl = text.uint(np.asarray(counters, np.uint64), 1)
    cols = [(m, lens) for m, lens, _ in columns] + [(cm, cl)]
    widths = [w for _, _, w in columns] + [COUNT_WIDTH]
    return bytes(text.layout(cols, widths, sep.encode(), columnar, final))


# --- limits ------------------------------------------------------------------------------


def parse_key_value(text, bag, option):
    """A --minkey/--maxkey value as an int: an IP address for IP bags, else a number (or
    an IP, as SiLK accepts one for any key)."""
    from .. import addrs
    from ..errors import FlowError
    t = text.strip()
    if t.isdigit():
        return int(t)
    try:
        v, p, v6 = addrs.parse_ip(t, allow_prefix=False)
    except ValueError:
        raise FlowError(f"invalid {option} '{text}': not a number or IP address") from None
    if bag.ipv6 and not v6:
        return v | 0xFFFF00000000
    if not bag.ipv6 and v6:
        if v >> 32 == 0xFFFF:
            return v & 0xFFFFFFFF
        raise FlowError(f"invalid {option} '{text}': an IPv6 address for an IPv4 bag")
    return v


def parse_counter(text, option):
    from ..errors import FlowError
    t = (text or "").strip()
    if not t.isdigit() or int(t) >= 2**64:
        raise FlowError(f"invalid {option} '{text}': expected a number from 0 to "
                        "18446744073709551615")
    return int(t)


class Limits:
    def __init__(self, opts):
        from ..errors import FlowError
        self.opts = opts
        self.minc = parse_counter(opts.mincounter, "--mincounter") \
            if opts.mincounter is not None else None
        self.maxc = parse_counter(opts.maxcounter, "--maxcounter") \
            if opts.maxcounter is not None else None
        if self.minc is not None and self.maxc is not None and self.minc > self.maxc:
            raise FlowError(f"minimum counter greater than maximum: {self.minc} > "
                            f"{self.maxc}")
        self.mask = None
        if getattr(opts, "mask_set", None):
            from ..ipset import read_set
            try:
                self.mask = read_set(opts.mask_set)
            except OSError as exc:
                raise FlowError(f"cannot open {opts.mask_set}: {exc.strerror}") from None

    def keys(self, bag):
        lo = parse_key_value(self.opts.minkey, bag, "--minkey") \
            if self.opts.minkey is not None else None
        hi = parse_key_value(self.opts.maxkey, bag, "--maxkey") \
            if self.opts.maxkey is not None else None
        if lo is not None and hi is not None and lo > hi:
            from ..errors import FlowError
            raise FlowError(f"minimum key greater than maximum: {self.opts.minkey} > "
                            f"{self.opts.maxkey}")
        return lo, hi

    def apply(self, bag):
        lo, hi = self.keys(bag)
        out = bag.between_keys(lo, hi).between_counters(self.minc, self.maxc)
        if self.mask is not None:
            out = out.masked(self.mask, True, "--mask-set")
        return out


def with_zero_counts(bag, limits):
    """Every key in the --minkey..--maxkey range or --mask-set with its counter (0 when
    absent), limited by --maxcounter (as rwbagcat --zero-counts)."""
    import numpy as np

    from .. import bag as bagmod
    from ..errors import FlowError
    lo, hi = limits.keys(bag)
    if limits.mask is None and (lo is None or hi is None):
        raise FlowError("to use --zero-counts, give --mask-set or both --minkey and "
                        "--maxkey")
    if bag.composite:
        raise FlowError("--zero-counts needs a single-field key")
    if limits.mask is not None:
        s = limits.mask
        if lo is not None or hi is not None:
            from ..ipset import IPSet
            top = (2**128 - 1) if bag.ipv6 else 2**32 - 1
            rng = IPSet.from_ranges([lo or 0], [top if hi is None else hi], False) \
                if not bag.ipv6 else None
            if rng is not None:
                s = s.intersection(rng)
        if bag.ipv6:
            s = s.to_v6()
        keys = s.addresses()
        if not bag.ipv6:
            keys = keys.astype(np.uint32)
    else:
        if bag.ipv6:
            raise FlowError("--zero-counts over an IPv6 key range needs --mask-set")
        if hi - lo > 1 << 26:
            raise FlowError("--zero-counts: the key range is too large to list")
        keys = np.arange(lo, hi + 1, dtype=np.uint64).astype(bag.keys.dtype)
    have = bagmod.Bag(bag.key, bag.counter, bag.ipv6, keys,
                      np.zeros(len(keys), np.uint64))
    counters = lookup(bag, keys)
    out = have.copy_with(keys, counters)
    if limits.maxc is not None:
        out = out.take(counters <= np.uint64(limits.maxc))
    return out


def lookup(bag, keys):
    """The counters of keys (0 for keys not in the bag); keys sorted like the bag's."""
    import numpy as np
    if bag.keys.ndim == 1:
        pos = np.searchsorted(bag.keys, keys)
        hit = pos < len(bag.keys)
        hit[hit] = bag.keys[pos[hit]] == keys[hit]
        out = np.zeros(len(keys), np.uint64)
        out[hit] = bag.counters[pos[hit]]
        return out
    from .. import bag as bagmod
    probe = bagmod.Bag(bag.key, bag.counter, bag.ipv6, keys, np.zeros(len(keys), np.uint64))
    _, ca, cb, ina, inb = bagmod._align(probe, bag)
    return cb[ina]


# --- outputs ----------------------------------------------------------------------------


def bin_ips(bag, scheme):
    """[(label, number of keys)] of rwbagcat --bin-ips."""
    import numpy as np
    c = bag.counters
    if scheme == "linear":
        b = np.minimum(c, np.uint64(2**32 - 1))
    elif scheme == "binary":
        b = np.floor(np.log2(np.maximum(c, 1).astype(np.float64))).astype(np.uint64)
        # float rounding near powers of two: fix with exact integer shifts
        b = b - ((np.uint64(1) << b) > c).astype(np.uint64) if len(c) else b
        b = b + ((b < 63) & ((np.uint64(1) << np.minimum(b + np.uint64(1), 63)) <= c)) \
            .astype(np.uint64)
    else:
        b = np.where(c < 100, c, np.floor((np.log10(np.maximum(c, 1).astype(np.float64))
                                           - 1.0) * 100.0).astype(np.uint64))
    uniq, counts = np.unique(b.astype(np.uint64), return_counts=True)
    rows = []
    for v, n in zip(uniq.tolist(), counts.tolist(), strict=True):
        if scheme == "linear":
            label = str(v)
        elif scheme == "binary":
            label = f"2^{v:02d} to 2^{v + 1:02d}-1"
        elif v < 100:
            label = str(v)
        else:
            import math
            lo = math.ceil(10 ** (v / 100.0 + 1.0))
            hi = math.floor(10 ** ((v + 1.0) / 100.0 + 1.0))
            label = f"{math.floor((lo + hi) / 2.0):.0f}"
        rows.append((label, n))
    return rows


def sort_by_counters(bag, decreasing=True):
    import numpy as np
    c = bag.counters
    # stable: equal counters keep key order
    order = np.argsort(~c if decreasing else c, kind="stable")
    return bag.keys[order], c[order]


def statistics(bag, kind, fmt):
    """The text of --print-statistics."""
    import numpy as np
    c = bag.counters.astype(np.float64)
    n = len(c)
    lines_ = []
    if n == 0:
        return "\nStatistics\n    number of keys:  0\n"
    cols = key_columns(bag.copy_with(bag.keys[[0, -1]], bag.counters[[0, -1]]), kind, fmt)
    first = bytes(cols[0][0][0][-cols[0][1][0]:]).decode()
    last = bytes(cols[0][0][1][-cols[0][1][1]:]).decode()
    total = bag.total()
    mean = c.sum() / n
    s2 = (c * c).sum()
    s3 = (c * c * c).sum()
    variance = (s2 / n - mean * mean) * n / (n - 1) if n > 1 else 0.0
    std = variance ** 0.5
    skew = kurt = 0.0
    if n > 1 and std > 0:
        skew = ((s3 / n) - 3 * mean * (s2 / n) + 2 * mean ** 3) / std ** 3
        s4 = (c ** 4).sum()
        kurt = ((s4 / n) - 4 * mean * (s3 / n) + 6 * mean ** 2 * (s2 / n)
                - 3 * mean ** 4) / std ** 4 - 3.0
    lines_.append("\nStatistics")
    for label, value in (("number of keys", f"{n}"), ("sum of counters", f"{total}"),
                         ("minimum key", first), ("maximum key", last),
                         ("minimum counter", f"{int(bag.counters.min())}"),
                         ("maximum counter", f"{int(bag.counters.max())}"),
                         ("mean", f"{mean:.4g}"), ("variance", f"{variance:.4g}"),
                         ("standard deviation", f"{std:.4g}"), ("skew", f"{skew:.4g}"),
                         ("kurtosis", f"{kurt:.4g}")):
        lines_.append(f"{label:>18}:  {value}")
    return "\n".join(lines_) + "\n"


def ip_format(words):
    """rwbagcat's --key-format words as a settext.IPFormat (unmap-v6 dropped, as
    rwbagcat does for --network-structure)."""
    from ..settext import IPFormat
    style = next((w for w in ("decimal", "hexadecimal", "no-mixed") if w in words),
                 "no-mixed" if "force-ipv6" in words else "canonical")
    return IPFormat(style, "zero-padded" in words, bool(words & {"map-v4", "force-ipv6"}),
                    False)


def network_structure(bag, structure, fmt, sep="|", columnar=True, final=True):
    """The text of --network-structure[=STRUCTURE] for an IP bag (rwbagcat's default
    structure is v4: or v6: by the bag's key size)."""
    import numpy as np

    from ..errors import FlowError
    from ..settext import bag_network_structure
    if not bag.is_ip:
        raise FlowError(f"cannot use --network-structure with a bag containing "
                        f"{bag.type_name} keys")
    if not structure:
        structure = "v6:" if bag.ipv6 else "v4:"
    (keys,) = bag.layout.unpack(bag.keys)
    if not bag.ipv6:
        keys = keys.astype(np.uint32)
    return bag_network_structure(keys, bag.counters, bag.ipv6, structure, ip_format(fmt),
                                 sep, columnar, final, COUNT_WIDTH)


def main(opts):
    import sys

    from .. import bag as bagmod
    from .. import cli, io
    from ..errors import FlowError
    kind, fmt = (None, set())
    if opts.key_format:
        kind, fmt = parse_key_format(opts.key_format)
    if opts.integer_keys:
        kind, fmt = "ip", fmt | {"decimal"}
    if opts.zero_pad_ips:
        kind, fmt = "ip", fmt | {"zero-padded"}
    sep = opts.column_separator or "|"
    columnar, final = not opts.no_columns, not opts.no_final_delimiter
    if opts.delimited is not None:
        sep, columnar, final = opts.delimited or "|", False, False
    if len(sep) != 1:
        raise FlowError(f"invalid separator '{sep}': give one character")
    bins = None
    if opts.bin_ips is not None:
        hits = [s for s in ("linear", "binary", "decimal") if s.startswith(opts.bin_ips)]
        if len(hits) != 1 or not opts.bin_ips:
            raise FlowError(f"invalid --bin-ips '{opts.bin_ips}': choose linear, binary "
                            "or decimal")
        bins = hits[0]
    order = None
    if opts.sort_counters is not None:
        hits = [s for s in ("decreasing", "increasing") if s.startswith(opts.sort_counters)]
        if len(hits) != 1 or not opts.sort_counters:
            raise FlowError(f"invalid --sort-counters '{opts.sort_counters}': choose "
                            "decreasing or increasing")
        order = hits[0]
    if opts.network_structure is not None and bins:
        raise FlowError("cannot give both --network-structure and --bin-ips")
    if opts.network_structure is not None and kind == "time":
        raise FlowError(f"invalid --key-format '{opts.key_format}': only IP formats go "
                        "with --network-structure")
    limits = Limits(opts)
    if opts.minkey is not None and opts.maxkey is not None and \
            opts.minkey.strip().isdigit() and opts.maxkey.strip().isdigit() and \
            int(opts.minkey) > int(opts.maxkey):
        raise FlowError(f"minimum key greater than maximum: {opts.minkey} > {opts.maxkey}")
    config = None
    names = opts.inputs or ["-"]
    out = io.Output(opts.output_path, binary=False)
    stats_out = None
    try:
        for name in names:
            f = io.open_input(name)
            bag = bagmod.read_bag(f, io.display_name(name))
            if f is not sys.stdin.buffer:
                f.close()
            if bag.key[0] == "sensor" and not fmt:
                config = cli.site_config(opts, required=False)
            if opts.zero_counts:
                shown = with_zero_counts(bag, limits)
            else:
                shown = limits.apply(bag)
            if bins:
                rows = bin_ips(shown, bins)
                w = COUNT_WIDTH if columnar else 0
                end = sep if final else ""
                out.f.write("".join(f"{label:>{w}}{sep}{n:>{w}}{end}\n"
                                    for label, n in rows))
            elif order or opts.network_structure is not None or \
                    opts.print_statistics is None:
                if opts.network_structure is not None and not order:
                    # as rwbagcat, --sort-counters wins over --network-structure
                    out.f.write(network_structure(shown, opts.network_structure, fmt,
                                                  sep, columnar, final))
                else:
                    if order:
                        k, c = sort_by_counters(shown, order == "decreasing")
                        shown = shown.copy_with(k, c)
                    cols = key_columns(shown, kind, fmt, config)
                    out.f.flush()
                    data = lines(cols, shown.counters, sep, columnar, final)
                    out.f.write(data.decode("ascii"))
            if opts.print_statistics is not None:
                text = statistics(shown, kind, fmt)
                if opts.print_statistics in ("-", "stdout"):
                    out.f.write(text)
                else:
                    if stats_out is None:
                        stats_out = io.Output(opts.print_statistics, binary=False)
                    stats_out.f.write(text)
        out.commit()
        if stats_out is not None:
            stats_out.commit()
    except BaseException:
        out.abort()
        if stats_out is not None:
            stats_out.abort()
        raise
    return 0
