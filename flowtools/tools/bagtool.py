"""pyflow-bagtool: add, subtract, compare, filter bags; extract cover sets (rwbagtool)."""

from ..cli import Tool

MULTI = ("add", "subtract", "minimize", "maximize", "divide")


def _arguments(p):
    p.add_argument("inputs", nargs="*", metavar="BAG",
                   help="Bag files (pyflow or SiLK); '-' or 'stdin' reads the standard "
                        "input, which is also read when no file is named.")
    g = p.add_argument_group("operations (at most one)")
    g.add_argument("--add", action="store_true",
                   help="Sum the counters of each key over all the bags.")
    g.add_argument("--subtract", action="store_true",
                   help="Subtract from the first bag all later ones; keys whose counter "
                        "reaches zero or less are removed.")
    g.add_argument("--minimize", action="store_true",
                   help="The smallest counter of each key over all bags (a missing key "
                        "counts as 0).")
    g.add_argument("--maximize", action="store_true",
                   help="The largest counter of each key over all bags.")
    g.add_argument("--divide", action="store_true",
                   help="Divide the first bag by the second (exactly two), rounding half "
                        "up; every key of the first must be in the second.")
    g.add_argument("--scalar-multiply", metavar="VALUE",
                   help="Multiply every counter of the one bag by VALUE (1 to "
                        "18446744073709551615), saturating.")
    g.add_argument("--compare", metavar="OP",
                   help="Keep the keys of the first of exactly two bags whose counter is "
                        "lt, le, eq, ge or gt that of the second, each with counter 1.")
    f = p.add_argument_group("masking and limiting (applied to the result)")
    f.add_argument("--intersect", metavar="SETFILE",
                   help="Keep only keys in the IP set SETFILE.")
    f.add_argument("--complement-intersect", metavar="SETFILE",
                   help="Keep only keys not in the IP set SETFILE.")
    f.add_argument("--mincounter", metavar="VALUE", help="Keep counters of at least VALUE.")
    f.add_argument("--maxcounter", metavar="VALUE", help="Keep counters of at most VALUE.")
    f.add_argument("--minkey", metavar="VALUE", help="Keep keys of at least VALUE.")
    f.add_argument("--maxkey", metavar="VALUE", help="Keep keys of at most VALUE.")
    o = p.add_argument_group("output")
    o.add_argument("--invert", action="store_true",
                   help="Write a bag whose keys are the counters and whose counters are "
                        "the number of keys that had each.")
    o.add_argument("--coverset", action="store_true",
                   help="Write the IP set of the keys instead of a bag.")
    o.add_argument("--ipset-record-version", type=int, metavar="VERSION",
                   help="SiLK IPset record version (2, 4 or 5) of a --coverset written in "
                        "SiLK's format; giving it selects SiLK's format.")
    o.add_argument("--output-format", choices=("pyflow", "silk"), default=None,
                   help="Format of the output bag or set: pyflow (default) or silk. Default "
                        "from PYFLOW_BAG_FORMAT.")
    o.add_argument("--output-path", metavar="PATH", default="-",
                   help="Write the output to PATH (default: the standard output).")


TOOL = Tool(
    name="pyflow-bagtool",
    summary="Combine, compare and filter bags; extract their keys as an IP set.",
    description="Performs one operation on bags (pyflow or SiLK files) and writes a new "
                "bag, as SiLK's rwbagtool: --add, --subtract, --minimize, --maximize, "
                "--divide, --compare=OP or --scalar-multiply; then keeps the keys and "
                "counters the --intersect, --complement-intersect and min/max switches "
                "allow; then writes the bag, its --invert, or its --coverset (an IP set). "
                "IPv4 and IPv6 bags combine as IPv6. Composite-key bags combine with bags "
                "of the same composite key.",
    uses=("compression", "notes"),
    add_arguments=_arguments,
    examples=["pyflow-bagtool --add a.bag b.bag --output-path=sum.bag",
              "pyflow-bag --sip-flows=- flows.pf | pyflow-bagtool --maxcounter=10 --coverset "
              "> quiet.set",
              "pyflow-bagtool --compare=gt today.bag yesterday.bag | pyflow-bagcat"],
)


def _operation(opts):
    from ..errors import FlowError
    chosen = [m for m in MULTI if getattr(opts, m)]
    if opts.scalar_multiply is not None:
        chosen.append("scalar-multiply")
    if opts.compare is not None:
        chosen.append("compare")
    if len(chosen) > 1:
        raise FlowError(f"switches --{chosen[0]} and --{chosen[1]} are incompatible")
    return chosen[0] if chosen else None


def _read(name):
    import sys

    from .. import io
    from ..bag import read_bag
    f = io.open_input(name)
    try:
        return read_bag(f, io.display_name(name))
    finally:
        if f is not sys.stdin.buffer:
            f.close()


def _read_set(path, option):
    import sys

    from .. import io
    from ..errors import FlowError
    from ..ipset import read_set
    f = io.open_input(path)
    try:
        return read_set(f, io.display_name(path))
    except FlowError as exc:
        raise FlowError(f"{option}: {exc}") from None
    finally:
        if f is not sys.stdin.buffer:
            f.close()


def combine(op, bags, value=None):
    """The result of an operation over bags (the library entry point)."""
    from .. import bag as bagmod
    if op in (None, "add", "subtract", "minimize", "maximize"):
        fn = {None: bagmod.add, "add": bagmod.add, "subtract": bagmod.subtract,
              "minimize": bagmod.minimize, "maximize": bagmod.maximize}[op]
        out = bags[0]
        for b in bags[1:]:
            out = fn(out, b)
        return out
    if op == "divide":
        return bagmod.divide(bags[0], bags[1])
    if op == "compare":
        return bagmod.compare(bags[0], bags[1], value)
    return bags[0].scalar_multiply(value)


def main(opts):
    import sys

    from .. import cli, io
    from ..bag import write_bag
    from ..errors import FlowError
    from ..ipset import write_set
    from .bagcat import parse_counter, parse_key_value
    op = _operation(opts)
    names = list(opts.inputs)
    if not names:
        if sys.stdin.isatty():
            raise FlowError("no input files on the command line and standard input is a "
                            "terminal")
        names = ["-"]
    if op in ("divide", "compare") and len(names) != 2:
        raise FlowError(f"the --{op} switch requires exactly two bag files")
    if op == "scalar-multiply" and len(names) != 1:
        raise FlowError("the --scalar-multiply switch operates on a single bag file")
    value = None
    if op == "scalar-multiply":
        value = parse_counter(opts.scalar_multiply, "--scalar-multiply")
        if value < 1:
            raise FlowError(f"invalid --scalar-multiply '{opts.scalar_multiply}': must be "
                            "1 to 18446744073709551615")
    if op == "compare":
        value = opts.compare.strip().lower()
        if value not in ("lt", "le", "eq", "ge", "gt"):
            raise FlowError(f"invalid --compare '{opts.compare}': choose lt, le, eq, ge or gt")
    minc = parse_counter(opts.mincounter, "--mincounter") if opts.mincounter else None
    maxc = parse_counter(opts.maxcounter, "--maxcounter") if opts.maxcounter else None
    if minc is not None and maxc is not None and minc > maxc:
        raise FlowError(f"minimum counter greater than maximum: {minc} > {maxc}")
    if opts.invert and opts.coverset:
        raise FlowError("switches --invert and --coverset are incompatible")
    if sum(n in io.STDIN_NAMES for n in names) > 1:
        raise FlowError("only one input may be the standard input")
    fmt = opts.output_format or io.env("BAG_FORMAT", "pyflow")
    if opts.ipset_record_version is not None and opts.output_format is None:
        fmt = "silk"
    io.check_output(opts.output_path)  # a terminal, or a file not to clobber: before reading
    masks = [(_read_set(path, f"--{o.replace('_', '-')}"), keep)
             for o, keep in (("intersect", True), ("complement_intersect", False))
             if (path := getattr(opts, o)) is not None]
    bags = [_read(n) for n in names]
    result = combine(op, bags, value)
    if result.saturated:
        sys.stderr.write(f"{opts.tool_name}: warning: a counter overflowed; it is held at "
                         "18446744073709551615\n")
    for ipset, keep in masks:
        result = result.masked(ipset, keep, "--intersect" if keep else
                               "--complement-intersect")
    lo = parse_key_value(opts.minkey, result, "--minkey") if opts.minkey else None
    hi = parse_key_value(opts.maxkey, result, "--maxkey") if opts.maxkey else None
    if lo is not None and hi is not None and lo > hi:
        raise FlowError(f"minimum key greater than maximum: {opts.minkey} > {opts.maxkey}")
    result = result.between_keys(lo, hi).between_counters(minc, maxc)
    metas = [b.meta for b in bags]
    meta = cli.output_meta(opts, metas)
    method, _ = cli.compression(opts)
    if opts.coverset:
        cover = result.coverset()
        write_set(cover, opts.output_path, fmt, meta["history"], meta["notes"],
                  opts.ipset_record_version,
                  ("none" if method == "none" else "zlib") if fmt == "silk" else
                  ("none" if method == "none" else "zstd"))
        return 0
    if opts.invert:
        result = result.invert()
    write_bag(result, opts.output_path, fmt, meta["history"], meta["notes"],
              ("none" if method == "none" else "zlib") if fmt == "silk" else
              ("none" if method == "none" else "zstd"))
    return 0
