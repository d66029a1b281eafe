"""pyflow-stats: top-N and bottom-N lists of bins, and protocol statistics (rwstats)."""

from ..cli import Tool


def _arguments(p):
    from .uniq import add_binning_arguments
    add_binning_arguments(p, uniq=False)
    g = p.add_argument_group("top-N limits (exactly one)")
    g.add_argument("--count", metavar="N",
                   help="Print the N bins with the largest (--top) or smallest (--bottom) "
                        "primary value, the first of --values; 0 prints every bin.")
    g.add_argument("--threshold", metavar="VALUE",
                   help="Print the bins whose primary value is at least (at most, with "
                        "--bottom) VALUE.")
    g.add_argument("--percentage", metavar="PERCENT",
                   help="Print the bins whose primary value is at least (at most) PERCENT "
                        "percent of the total.")
    g.add_argument("--top", action="store_true", help="Largest values first (default).")
    g.add_argument("--bottom", action="store_true", help="Smallest values first.")
    p.add_argument("--no-percents", action="store_true",
                   help="Do not print the percentage and cumulative percentage columns.")
    p.add_argument("--plot", metavar="FILE.png",
                   help="Also draw the bins printed as a bar chart in FILE.png (needs "
                        "matplotlib: pip install 'pyflow[plot]').")
    g = p.add_argument_group("protocol statistics")
    g.add_argument("--overall-stats", action="store_true",
                   help="Print minima, maxima, quartiles and interval counts of bytes, "
                        "packets and bytes per packet over all records.")
    g.add_argument("--detail-proto-stats", metavar="PROTOS",
                   help="Print the same statistics for each protocol listed (numbers and "
                        "ranges, comma separated).")
    g = p.add_argument_group("legacy switches")
    g.add_argument("--sip", nargs="?", const="", metavar="CIDR",
                   help="As --fields=sip; with CIDR, key on that many leading bits.")
    g.add_argument("--dip", nargs="?", const="", metavar="CIDR",
                   help="As --fields=dip; with CIDR, key on that many leading bits.")
    for name in ("sport", "dport", "protocol"):
        g.add_argument(f"--{name}", action="store_true", help=f"As --fields={name}.")
    g.add_argument("--icmp", action="store_true", help="As --fields=iType,iCode.")
    g.add_argument("--flows", action="store_true", help="As --values=records.")
    g.add_argument("--packets", action="store_true", help="As --values=packets.")
    g.add_argument("--bytes", action="store_true", help="As --values=bytes.")


TOOL = Tool(
    name="pyflow-stats",
    summary="Print top-N or bottom-N lists of bins, or protocol statistics.",
    description="Reads flow records and groups them by the --fields key as pyflow-uniq "
                "does; then prints the bins ranked by the first of --values, with each "
                "bin's share of the total and the cumulative share, after the INPUT and "
                "OUTPUT summary lines, in rwstats' layout. Exactly one of --count, "
                "--threshold and --percentage chooses the bins. --overall-stats and "
                "--detail-proto-stats print rwstats' protocol statistics instead.",
    uses=("inputs", "site", "filenames", "copy-input"),
    add_arguments=_arguments,
    examples=["pyflow-stats --fields=sip --count=10 flows.pf",
              "pyflow-stats --fields=dport --values=bytes --percentage=1 flows.pf",
              "pyflow-stats --fields=sip --count=10 --plot=top-sources.png flows.pf",
              "pyflow-stats --overall-stats --detail-proto-stats=6,17 flows.pf"],
)

LEGACY_FIELDS = ("sip", "dip", "sport", "dport", "protocol", "icmp")


def _legacy(opts):
    """--fields and --values from the legacy switches, and CIDR masks."""
    from ..errors import FlowError
    chosen = [n for n in LEGACY_FIELDS if getattr(opts, n) not in (None, False)]
    masks = {}
    for name in ("sip", "dip"):
        v = getattr(opts, name)
        if v:
            try:
                bits = int(v)
            except ValueError:
                bits = 0
            if not 1 <= bits <= 31:
                raise FlowError(f"invalid --{name} '{v}': expected a CIDR prefix 1-31")
            masks[name] = ((1 << 32) - 1) ^ ((1 << (32 - bits)) - 1)
    if chosen:
        if opts.fields:
            raise FlowError("cannot use --fields and the legacy key switches")
        pairs = {frozenset(("sip", "dip")): "sip,dip", frozenset(("sport", "dport")):
                 "sport,dport"}
        if len(chosen) > 2 or (len(chosen) == 2 and frozenset(chosen) not in pairs):
            raise FlowError(f"key combination --{chosen[0]} and --{chosen[1]} is not "
                            "supported; use --fields")
        opts.fields = pairs[frozenset(chosen)] if len(chosen) == 2 else \
            ("icmpTypeCode" if chosen[0] == "icmp" else chosen[0])
    values = [n for n in ("flows", "packets", "bytes") if getattr(opts, n)]
    if len(values) > 1:
        raise FlowError("may only give one of --flows, --packets or --bytes; use --values")
    if values:
        if opts.values:
            raise FlowError("cannot use --values and the legacy value switches")
        opts.values = "records" if values[0] == "flows" else values[0]
    return masks


def _limit(opts):
    """(kind, number) of the top-N limit."""
    from ..errors import FlowError
    given = [(k, getattr(opts, k)) for k in ("count", "threshold", "percentage")
             if getattr(opts, k) is not None]
    if not given:
        raise FlowError("no stopping condition: give one of --count, --threshold or "
                        "--percentage")
    if len(given) > 1:
        raise FlowError("may only give one of --count, --threshold or --percentage")
    kind, text = given[0]
    try:
        value = float(text) if kind == "percentage" else int(text, 10)
    except ValueError:
        value = -1
    if value < 0 or (kind == "percentage" and value > 100):
        raise FlowError(f"invalid --{kind} '{text}': expected "
                        + ("a percentage from 0 to 100" if kind == "percentage"
                           else "a non-negative integer"))
    return kind, value


def main(opts):
    import sys

    from .uniq import help_fields, output
    if opts.help_fields:
        sys.stdout.write(help_fields(False))
        return 0
    from ..errors import FlowError
    if opts.top and opts.bottom:
        raise FlowError("may only give one of --top or --bottom")
    if opts.overall_stats or opts.detail_proto_stats is not None:
        return _proto_main(opts)
    if opts.plot:
        from .. import plot
        plot.check_available()      # before any input is read
    masks = _legacy(opts)
    kind, number = _limit(opts)
    if not opts.fields:
        raise FlowError("the --fields switch is required")
    if opts.presorted_input and kind == "percentage":
        raise FlowError("the --percentage limit is not supported with --presorted-input")
    from .uniq import Binning
    b = Binning(opts, uniq=False)
    b.spec.cidr = {("sIP" if k == "sip" else "dIP"): v for k, v in masks.items()}
    out = output(opts)
    try:
        text, shown = top_n(b, kind, number, opts.bottom, opts.no_percents)
        out.f.write(text)
        if opts.plot:
            from .. import plot
            plot.top_bars(opts.plot, *shown)
        out.commit()
    except BaseException:
        out.abort()
        raise
    return 0


def top_n(b, kind, number, bottom, no_percents):
    """(text, (labels, values, title, what)) of the top-N (or bottom-N) bins."""
    import numpy as np
    gb = b.group(total_distinct=True)
    records = b.read(gb, check_sorted=b.opts.presorted_input)
    keys, values, counts, wide, totals = gb.finish()
    nbins = len(keys[0]) if keys else 0
    pkind, what, _, _ = b.entries[0]
    if pkind == "value":
        primary = values[what]
        from .uniq import TITLES
        title = TITLES[what]
        total = records if what == "records" else int(primary.sum(dtype=np.uint64))
    else:
        primary = counts[what.name]
        title = f"{what.name}-Distinct"
        total = totals[what.name]
    # rank: by the primary value, ties in key order (the bins are in key order); only
    # the bins shown are sorted (a stable sort of every bin had been 0.1 s of a top-10
    # over 912,872 sources)
    rank = primary if bottom else ~primary
    threshold = None
    if kind == "count":
        if 0 < number < nbins:
            kth = np.partition(rank, number - 1)[number - 1]
            candidates = np.flatnonzero(rank <= kth)        # ties at the cut included
        else:
            candidates = np.arange(nbins)
        shown = candidates[np.argsort(rank[candidates], kind="stable")]
        shown = shown if number == 0 else shown[:number]
        nshown = nbins if number == 0 else number
    else:
        threshold = int(number) if kind == "threshold" else int(number * total / 100.0)
        keep = primary <= np.uint64(threshold) if bottom else primary >= np.uint64(threshold)
        candidates = np.flatnonzero(keep)
        shown = candidates[np.argsort(rank[candidates], kind="stable")]
        nshown = len(shown)
    r = b.r
    lines = []
    direction, side = ("Bottom", "below") if bottom else ("Top", "above")
    if r.titles:
        head = f"INPUT: {records} Record{_s(records)} for {nbins} Bin{_s(nbins)}"
        if total:
            head += f" and {total} Total {title}"
        lines.append(head + "\n")
        if kind == "count":
            lines.append(f"OUTPUT: {direction} {nshown} Bin{_s(nshown)} by {title}\n")
        elif kind == "threshold":
            lines.append(f"OUTPUT: {direction} {nshown} bins by {title} (threshold "
                         f"{threshold})\n" if nshown else
                         f"OUTPUT: No bins {side} threshold of {threshold} {title}\n")
        else:
            lines.append(f"OUTPUT: {direction} {nshown} bins by {title} ({number:.4f}% == "
                         f"{threshold})\n" if nshown else
                         f"OUTPUT: No bins {side} threshold of {number:.4f}% "
                         f"({threshold} {title})\n")
        if kind != "count" and not nshown:
            return "".join(lines).encode(), _plot_data(b, [], [], title, what)
    keys = [k[shown] for k in keys]
    values = {k: v[shown] for k, v in values.items()}
    counts = {k: v[shown] for k, v in counts.items()}
    cols = b.columns(keys, values, counts, wide)
    text = "".join(lines).encode()
    if no_percents:
        text += bytes(b.titles(cols)) + (bytes(b.render(cols)) if len(shown) else b"")
        return text, _plot_data(b, cols, primary[shown], title, what)
    sep = r.sep
    fin = sep if r.final else ""
    pct_w = 10 if r.columnar else 0
    if r.titles:
        head = bytes(b.titles(cols, final=False))[:-1].decode()
        ptitle = ("%" + title)[:pct_w] if pct_w else "%" + title
        text += (head + f"{sep}{ptitle:>{pct_w}}{sep}{'cumul_%':>{pct_w}}{fin}\n").encode()
    if len(shown):
        body = bytes(b.render(cols, final=False)).decode().split("\n")[:-1]
        pct = 100.0 * primary[shown].astype(np.float64) / total if total else \
            np.full(len(shown), np.nan)
        cumul = np.cumsum(pct)
        cfmt = ".4f" if pkind == "distinct" else ".6f"
        text += "".join(f"{line}{sep}{p:{pct_w}.6f}{sep}{c:{pct_w}{cfmt}}{fin}\n"
                        for line, p, c in zip(body, pct, cumul, strict=True)).encode()
    return text, _plot_data(b, cols, primary[shown], title, what)


def _plot_data(b, cols, primary, title, what):
    """(labels, values, value title, key title) for --plot."""
    labels = []
    if cols:
        n = len(cols[0][1])
        parts = []
        for mat, lens, _, _ in cols[: len(b.keys)]:
            w = mat.shape[1]
            parts.append([bytes(mat[i, w - lens[i]:]).decode() for i in range(n)])
        labels = [",".join(p[i] for p in parts) for i in range(n)]
    keytitle = ",".join(f.name for f in b.keys)
    return labels, [int(v) for v in primary], title, keytitle


def _s(n):
    return "" if n == 1 else "s"


# ------------------------------------------------------------------ protocol statistics

def _proto_main(opts):
    from .. import io
    from ..errors import FlowError
    from ..render import Renderer
    from ..select import split_items
    from .uniq import input_names, output
    protos = []
    if opts.detail_proto_stats is not None:
        for item in split_items(opts.detail_proto_stats, "--detail-proto-stats"):
            a, dash, z = item.partition("-")
            try:
                lo, hi = int(a), int(z) if dash else int(a)
            except ValueError:
                lo = hi = -1
            if not (0 <= lo <= hi <= 255):
                raise FlowError(f"invalid --detail-proto-stats '{opts.detail_proto_stats}':"
                                " expected protocols 0-255")
            for p in range(lo, hi + 1):
                if p not in protos:
                    protos.append(p)
    r = Renderer(opts, None)
    stats = ProtoStats(protos)
    out = output(opts)
    try:
        for name in input_names(opts):
            reader = io.open_flows(name)
            if opts.print_filenames:
                import sys
                sys.stderr.write(f"{reader.name}\n")
            try:
                for batch in reader.batches(["stime", "protocol", "packets", "bytes"]):
                    stats.add(r.apply_policy(batch))
            finally:
                reader.close()
        out.f.write(stats.text(r.sep, r.final, r.columnar, r.titles).encode())
        out.commit()
    except BaseException:
        out.abort()
        raise
    return 0


BYTE_TCP = (40, 60, 100, 150, 256, 1000, 10000, 100000, 1000000, 0xFFFFFFFF)
BYTE_UDP = (20, 40, 80, 130, 256, 1000, 10000, 100000, 1000000, 0xFFFFFFFF)
PKTS = (3, 4, 10, 20, 50, 100, 500, 1000, 10000, 0xFFFFFFFF)
BPP_TCP = (40, 44, 60, 100, 200, 400, 600, 800, 1500, 0xFFFFFFFF)
BPP_UDP = (20, 24, 40, 100, 200, 400, 600, 800, 1500, 0xFFFFFFFF)


class ProtoStats:
    """Counts, minima, maxima and interval counts of bytes, packets and bytes/packet, over
    all records and per listed protocol (rwstats --overall-stats/--detail-proto-stats)."""

    def __init__(self, protos):
        import numpy as np
        self.protos = list(protos)
        self.count = np.zeros(256, np.int64)
        self.min = np.full((256, 3), 2**31 - 1, np.int64)
        self.max = np.zeros((256, 3), np.int64)
        self.hist = {}              # (proto or None, stat) -> counts per interval
        self.total = 0
        self.all_min = [2**31 - 1] * 3
        self.all_max = [0] * 3

    @staticmethod
    def bounds(proto, stat):
        tcp = proto is None or proto == 6
        return ((BYTE_TCP if tcp else BYTE_UDP), PKTS, (BPP_TCP if tcp else BPP_UDP))[stat]

    def add(self, batch):
        import numpy as np
        n = len(batch["stime"])
        if not n:
            return
        byts = (batch["bytes"] & np.uint64(0xFFFFFFFF)).astype(np.int64)
        pkts = (batch["packets"] & np.uint64(0xFFFFFFFF)).astype(np.int64)
        bpp = byts // np.maximum(pkts, 1)
        stats = (byts, pkts, bpp)
        proto = batch["protocol"]
        self.total += n
        for s, v in enumerate(stats):
            self.all_min[s] = min(self.all_min[s], int(v.min()))
            self.all_max[s] = max(self.all_max[s], int(v.max()))
            self._hist(None, s, v)
        if not self.protos:
            return
        self.count += np.bincount(proto, minlength=256)
        for p in self.protos:
            sel = proto == p
            if not sel.any():
                continue
            for s, v in enumerate(stats):
                vs = v[sel]
                self.min[p, s] = min(self.min[p, s], int(vs.min()))
                self.max[p, s] = max(self.max[p, s], int(vs.max()))
                self._hist(p, s, vs)

    def _hist(self, proto, stat, v):
        import numpy as np
        b = np.array(self.bounds(proto, stat), np.int64)
        idx = np.searchsorted(b, v, side="left")
        h = np.bincount(idx, minlength=len(b))[: len(b)]
        key = (proto, stat)
        self.hist[key] = self.hist.get(key, 0) + h

    def text(self, sep, final, columnar, titles):
        import numpy as np
        out = []
        fin = sep if final else ""
        wk, wi, wp = (15, 10, 10) if columnar else (0, 0, 0)
        print_all = not any(self.count[p] == self.total for p in self.protos) \
            if self.total else True

        def block(proto, count, col):
            out.append(f"{count}" + (f"/{self.total}" if proto is not None else "")
                       + " records\n")
            if not count:
                return
            for s, name in enumerate(("BYTES", "PACKETS", "BYTES/PACKET")):
                lo = self.all_min[s] if proto is None else int(self.min[proto, s])
                hi = self.all_max[s] if proto is None else int(self.max[proto, s])
                out.append(f"*{name} min {lo}; max {hi}\n")
                h = np.asarray(self.hist.get((proto, s), np.zeros(10, np.int64)))
                b = self.bounds(proto, s)
                q = _quartiles(h, b)
                out.append(f"  quartiles LQ {q[0]:.5f} Med {q[1]:.5f} UQ {q[2]:.5f} "
                           f"UQ-LQ {q[2] - q[0]:.5f}\n")
                if titles:
                    out.append(f"{'interval_max':>{wk}}{sep}{'count<=max':>{wi}}{sep}"
                               f"{col:>{wp}}{sep}{'cumul_%':>{wp}}{fin}\n")
                cumul = 0.0
                for bound, c in zip(b, h, strict=True):
                    pct = 100.0 * int(c) / count
                    cumul += pct
                    out.append(f"{bound:>{wk}}{sep}{int(c):>{wi}}{sep}{pct:>{wp}.6f}{sep}"
                               f"{cumul:>{wp}.6f}{fin}\n")

        if print_all:
            out.append("FLOW STATISTICS--ALL PROTOCOLS:  ")
            block(None, self.total, "%_of_input")
        if self.total:
            for p in sorted(self.protos):
                out.append(f"\nFLOW STATISTICS--PROTOCOL {p}:  ")
                block(p, int(self.count[p]), "%_of_proto")
        return "".join(out)


def _quartiles(hist, bounds):
    """rwstats' interpolated quartiles of interval counts (uint32 arithmetic as SiLK)."""
    cum = _cumsum(hist)
    total = cum[-1]
    q1 = (total >> 2) & 0xFFFFFFFF
    values = (q1, (total >> 1) & 0xFFFFFFFF, (3 * q1) & 0xFFFFFFFF)
    out = []
    for vq in values:
        i = next((k for k, c in enumerate(cum) if vq <= c), 0)
        bhi, vhi = bounds[i], cum[i]
        blo, vlo = (0, 0) if i == 0 else (bounds[i - 1], cum[i - 1])
        d = vhi - vlo
        out.append(blo + ((vq - vlo) / d if d else float("nan")) * (bhi - blo))
    return out


def _cumsum(hist):
    out, acc = [], 0
    for x in hist:
        acc += int(x)
        out.append(acc)
    return out
