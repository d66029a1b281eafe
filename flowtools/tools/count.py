"""pyflow-count: records, bytes and packets per time bin (rwcount)."""

from ..cli import Tool


def _arguments(p):
    from ..binning import SCHEME_HELP, SCHEMES
    from ..render import add_text_options
    schemes = "; ".join(f"{k} ({SCHEMES[k]}): {v}" for k, v in SCHEME_HELP.items())
    p.add_argument("--bin-size", metavar="SECONDS",
                   help="Size of each time bin in seconds; may be fractional (to the "
                        "millisecond). Default 30.")
    p.add_argument("--load-scheme", metavar="SCHEME",
                   help="How a record spanning several bins spreads its volume: "
                        f"{schemes}. Default time-proportional.")
    p.add_argument("--start-time", "--start-epoch", dest="start_time", metavar="TIME",
                   help="Print bins from this time (YYYY/MM/DD[:HH[:MM[:SS[.sss]]]] or "
                        "epoch seconds). Default: the first bin with traffic.")
    p.add_argument("--end-time", "--end-epoch", dest="end_time", metavar="TIME",
                   help="Print bins until this time, rounded up to the end of its "
                        "precision and to a whole bin. Default: the last bin with traffic.")
    p.add_argument("--skip-zeroes", action="store_true",
                   help="Do not print bins that hold no records.")
    p.add_argument("--bin-slots", action="store_true",
                   help="Label each bin with rwcount's internal bin index instead of its "
                        "time.")
    p.add_argument("--epoch-slots", action="store_true",
                   help="Label each bin with its time in epoch seconds "
                        "(--timestamp-format=epoch).")
    p.add_argument("--output-path", metavar="PATH", default="-",
                   help="Write the text to PATH instead of the standard output.")
    p.add_argument("--pager", metavar="PROG",
                   help="Page the output through PROG when it goes to a terminal (default "
                        "SILK_PAGER or PAGER).")
    p.add_argument("--plot", metavar="FILE.png",
                   help="Also draw the series as a line chart into FILE.png (needs "
                        "matplotlib: pip install pyflow[plot]).")
    p.add_argument("--plot-values", metavar="WHAT", default="records",
                   choices=("records", "bytes", "packets"),
                   help="What --plot draws: records (default), bytes or packets per bin.")
    p.add_argument("--plot-by", metavar="FIELD",
                   help="Draw one line per value of FIELD (e.g. sensor, type, protocol).")
    p.add_argument("--plot-facets", action="store_true",
                   help="With --plot-by, draw each value in its own panel.")
    p.add_argument("--moving-average", metavar="N", type=int,
                   help="With --plot, also draw the moving average over N bins.")
    p.add_argument("--plot-title", metavar="TEXT",
                   help="The chart's title (default none).")
    p.add_argument("--plot-label", metavar="TEXT",
                   help="What the counted records are, for the vertical axis (default the "
                        "--plot-values name, e.g. 'sources' when each record stands for one).")
    add_text_options(p, ips=False, sensors=False, flags=False, policy=False)
    _dedupe_aliases(p)


def _dedupe_aliases(p):
    """'--start' abbreviates both --start-time and --start-epoch, which are one switch:
    do not call it ambiguous (SiLK registers the abbreviations explicitly)."""
    find = p._get_option_tuples

    def tuples(option_string):
        seen, out = set(), []
        for t in find(option_string):
            if id(t[0]) not in seen:
                seen.add(id(t[0]))
                out.append(t)
        return out
    p._get_option_tuples = tuples


TOOL = Tool(
    name="pyflow-count",
    summary="Count records, bytes and packets per time bin.",
    description="Reads flow records (pyflow or SiLK files and streams) and prints, for each "
                "time bin from the first to the last with traffic, the records, bytes and "
                "packets that fall in it, in rwcount's layout (Date, Records, Bytes, Packets, "
                "all with two decimals since a record may be split across bins). Empty bins "
                "between are printed unless --skip-zeroes. Bin boundaries, load schemes and "
                "--bin-slots numbers are rwcount's.",
    uses=("inputs", "site", "filenames", "copy-input"),
    add_arguments=_arguments,
    examples=["pyflow-count --bin-size=3600 flows.pf",
              "pyflow-count --bin-size=60 --load-scheme=start-spike --skip-zeroes flows.pf",
              "pyflow-count --bin-size=300 --plot=traffic.png --plot-by=sensor flows.pf"],
)

WIDTHS = (23, 15, 20, 17)
TITLES = ("Date", "Records", "Bytes", "Packets")


def _times(opts, size):
    from .. import binning, dates
    from ..errors import FlowError
    start = end = None
    if opts.start_time is not None:
        try:
            start = dates._parse(opts.start_time)[0]
        except FlowError as exc:
            raise FlowError(f"invalid --start-time '{opts.start_time}': {exc}") from None
    if opts.end_time is not None:
        try:
            t, level, epoch = dates._parse(opts.end_time)
        except FlowError as exc:
            raise FlowError(f"invalid --end-time '{opts.end_time}': {exc}") from None
        steps = {3: dates.DAY_MS, 4: dates.HOUR_MS, 5: 60_000, 6: 1000}
        if epoch and level > 6:
            level = 7
        elif epoch:
            level = 6
        end = (t, steps.get(level, 1))
    return binning.window(size, start, end)


def main(opts):

    from .. import binning, io
    from ..decoding import decoded_runs
    from ..errors import FlowError
    from ..render import Renderer
    from .cut import _StdoutText

    size = binning.parse_bin_size(opts.bin_size) if opts.bin_size is not None else 30_000
    scheme = binning.parse_scheme(opts.load_scheme) if opts.load_scheme is not None \
        else "time-proportional"
    if opts.epoch_slots:
        opts.timestamp_format = "epoch"
    r = Renderer(opts)
    start, end = _times(opts, size)
    if opts.moving_average is not None and opts.moving_average < 1:
        raise FlowError(f"invalid --moving-average value {opts.moving_average}")
    by = None
    if opts.plot_by:
        from .. import fields
        by = fields.find(opts.plot_by, "--plot-by")
    if opts.plot:
        from .. import plot
        plot.check_available()
    total = binning.Counter(size, scheme, start, end)
    parts = {}
    names = io.input_names(opts.inputs, opts.xargs)
    # opened first, as rwcount does: an output that cannot be written stops it at once
    out = io.Output(opts.output_path, binary=True) if opts.output_path not in ("-", "stdout") \
        else _StdoutText(opts.pager)
    copy = None
    try:
        copy = io.FlowSink(opts.copy_input, {"history": [opts.invocation], "notes": []}) \
            if opts.copy_input else None
        columns = None if copy else ["stime", "duration", "bytes", "packets"] + (
            list(by.columns) if by else [])
        # the blocks of many small files (an archive's hours) decoded many at once
        for batch in decoded_runs(_readers(names, opts.print_filenames), columns):
            if copy:
                copy.write(batch)
            total.add(batch["stime"], batch["duration"], batch["bytes"], batch["packets"])
            if by is not None:
                _add_parts(parts, by, batch, size, scheme, start, end)
        if copy:
            copy.close()
            copy = None
        rows = total.rows(opts.skip_zeroes)
        text = render(rows, r, size, opts.bin_slots)
        if opts.plot:  # drawn first: a failure leaves no text output behind
            _plot(opts, rows, parts, by, r)
        out.f.write(text)
    except BaseException:
        if copy:
            copy.abort()
        out.abort()
        raise
    out.commit()
    return 0


def _readers(names, print_filenames):
    import sys

    from .. import io
    for name in names:
        reader = io.open_flows(name)
        if print_filenames:
            sys.stderr.write(f"{reader.name}\n")
        yield reader


def _add_parts(parts, by, batch, size, scheme, start, end):
    import numpy as np

    from .. import binning
    values = by.values(batch)
    if values.ndim == 2:
        values = values[:, 1]
    for v in np.unique(values):
        keep = values == v
        counter = parts.get(int(v))
        if counter is None:
            counter = parts[int(v)] = binning.Counter(size, scheme, start, end)
        counter.add(batch["stime"][keep], batch["duration"][keep], batch["bytes"][keep],
                    batch["packets"][keep])


def render(rows, r, size, bin_slots=False):
    """rwcount's text of the bins (bytes)."""
    import numpy as np

    from .. import text
    from ..binning import fixed2
    times, slots, flows, nbytes, npkts = rows
    nomsec = size % 1000 == 0
    widths = list(WIDTHS)
    if nomsec:
        widths[0] -= 4
    if not r.columnar:
        widths = [0, 0, 0, 0]
    sep = r.sep.encode()
    out = b""
    if r.titles:
        cols = [(np.frombuffer(t.encode(), np.uint8).reshape(1, -1), np.array([len(t)]))
                for t in TITLES]
        out += bytes(text.layout(cols, widths, sep, r.columnar, r.final))
    if not len(times):
        return out
    if bin_slots:
        label = text.uint(slots.astype(np.uint64))
    else:
        offset = None
        if r.local:
            from ..render import _local_offsets
            offset = _local_offsets(times)
        label = text.timestamps(times, r.ts, r.msec and not nomsec, offset)
    cols = [label, fixed2(flows), fixed2(nbytes), fixed2(npkts)]
    return out + bytes(text.layout(cols, widths, sep, r.columnar, r.final))


def _plot(opts, rows, parts, by, r):
    from .. import plot
    what = {"records": 2, "bytes": 3, "packets": 4}[opts.plot_values]
    series = {}
    if by is None:
        series["all"] = (rows[0], rows[what])
    else:
        for key in sorted(parts):
            rws = parts[key].rows(False)
            series[_label(by, key, opts)] = (rws[0], rws[what])
    plot.time_series(opts.plot, series, ylabel=opts.plot_label or opts.plot_values,
                     bin_seconds=_bin_seconds(opts), moving_average=opts.moving_average,
                     facets=opts.plot_facets, local=r.local, title=opts.plot_title)


def _bin_seconds(opts):
    from .. import binning
    return (binning.parse_bin_size(opts.bin_size) if opts.bin_size else 30_000) / 1000


def _label(by, key, opts):
    if by.kind == "sensor":
        from .. import cli
        config = cli.site_config(opts, required=False)
        if config is not None:
            return config.sensor_name(key)
    return f"{by.name} {key}"
