"""pyflow-settool: union, intersection, difference, masks and samples of IP sets
(rwsettool). Also home of the set-output switches the four set tools share."""

from ..cli import Tool

OPERATIONS = ("union", "intersect", "difference", "symmetric_difference", "sample")


def add_set_output(p, output_path=True):
    """--output-format/--record-version and, optionally, --output-path."""
    if output_path:
        p.add_argument("--output-path", metavar="PATH",
                       help="Write the set to PATH ('-' or 'stdout' for the standard output, "
                            "the default when it is not a terminal).")
    p.add_argument("--output-format", choices=("pyflow", "silk"),
                   help="pyflow (default) or silk: SiLK's IPset file, which rwsetcat and "
                        "every SiLK tool read.")
    p.add_argument("--record-version", type=int, choices=(0, 2, 3, 4, 5), metavar="VERSION",
                   help="Write a SiLK IPset file of this record version: 2 (IPv4 only), 4 "
                        "(IPv4 or IPv6), 5 (IPv6), 0 for the default (2 for IPv4 sets, 4 for "
                        "IPv6 sets; 3 is written as 4). Implies --output-format=silk.")


def write_output(result, opts, path, metas=()):
    """Write a set as the options ask: pyflow's format, or SiLK's with --record-version,
    --output-format=silk (or SILK_IPSET_RECORD_VERSION with no pyflow request)."""
    from .. import cli, ipset
    from ..io import env
    meta = cli.output_meta(opts, metas)
    version = opts.record_version
    fmt = opts.output_format or ("silk" if version is not None else "pyflow")
    if fmt == "silk" and version is None:
        version = int(env("IPSET_RECORD_VERSION", "0") or 0)
    method, level = cli.compression(opts)
    if fmt == "silk":
        raw = (getattr(opts, "compression_method", None) or "none").lower()
        comp = "none" if raw == "none" else "zlib"
        return ipset.write_set(result, path, "silk", meta["history"], meta["notes"],
                               record_version=4 if version == 3 else version,
                               compression=comp)
    return ipset.write_set(result, path, "pyflow", meta["history"], meta["notes"],
                           compression="none" if method == "none" else "zstd")


def read_sets(names):
    """The sets named (stdin for '-'/'stdin'), each read whole."""
    import sys

    from .. import io, ipset
    from ..errors import FlowError
    out = []
    for name in names:
        try:
            out.append(ipset.read_set(sys.stdin.buffer if name in io.STDIN_NAMES else name,
                                      name=io.display_name(name)))
        except OSError as exc:
            raise FlowError(f"Unable to read IPset from '{name}': {exc.strerror}") from None
    return out


def input_list(inputs):
    import sys

    from .. import io
    from ..errors import FlowError
    if inputs:
        return list(inputs)
    if io._isatty(sys.stdin):
        raise FlowError("No files on the command line and stdin is connected to a terminal")
    return ["stdin"]


def _arguments(p):
    p.add_argument("inputs", nargs="*", metavar="FILE",
                   help="IP set files (pyflow or SiLK); '-' or 'stdin' reads the standard "
                        "input, which is also read when no file is named.")
    g = p.add_argument_group("operation switches (exactly one, except that --union may "
                             "accompany --mask or --fill-blocks)")
    g.add_argument("--union", action="store_true",
                   help="Addresses in any of the sets.")
    g.add_argument("--intersect", action="store_true",
                   help="Addresses in all of the sets.")
    g.add_argument("--difference", action="store_true",
                   help="Addresses in the first set and in none of the others.")
    g.add_argument("--symmetric-difference", action="store_true",
                   help="Addresses in an odd number of the sets (for two sets: in one but "
                        "not both).")
    g.add_argument("--mask", type=int, metavar="PREFIX",
                   help="For each /PREFIX block holding any address of the union of the "
                        "sets, the block's first address.")
    g.add_argument("--fill-blocks", type=int, metavar="PREFIX",
                   help="For each /PREFIX block holding any address of the union of the "
                        "sets, the whole block.")
    g.add_argument("--sample", action="store_true",
                   help="A random sample of the addresses of each set (union of the "
                        "samples); needs --size or --ratio.")
    g.add_argument("--size", type=int, metavar="SIZE",
                   help="With --sample: exactly SIZE addresses from each set (all of a "
                        "smaller set).")
    g.add_argument("--ratio", type=float, metavar="RATIO",
                   help="With --sample: keep each address with probability RATIO (0-1).")
    g.add_argument("--seed", type=int, metavar="SEED",
                   help="With --sample: seed of the random numbers (default: from the "
                        "clock).")
    add_set_output(p)


TOOL = Tool(
    name="pyflow-settool",
    summary="Combine IP sets: union, intersection, difference, masks and samples.",
    description="Reads IP set files (pyflow's or SiLK's; IPv4, IPv6 or a mix, an IPv4 set "
                "being widened to IPv6 when combined with one) and writes one new set, to "
                "--output-path or the standard output. A result holding only IPv4 "
                "addresses is written as an IPv4 set.",
    uses=("compression", "notes"),
    add_arguments=_arguments,
    examples=["pyflow-settool --union a.set b.set --output-path=ab.set",
              "pyflow-settool --intersect a.set b.set > c.set",
              "pyflow-settool --difference all.set seen.set | pyflow-setcat --count-ips",
              "pyflow-settool --fill-blocks=24 hosts.set | pyflow-setcat --cidr-blocks"],
)


def combine(sets, op, rng=None, size=None, ratio=None):
    """The result of one operation over sets (IPSet objects), as rwsettool computes it."""
    from functools import reduce
    first, rest = sets[0], sets[1:]
    if op == "union":
        return first.union(*rest) if rest else first
    if op == "intersect":
        return first.intersection(*rest) if rest else first
    if op == "difference":
        return first.difference(*rest) if rest else first
    if op == "symmetric_difference":
        return reduce(lambda a, b: a.symmetric_difference(b), rest, first)
    if op == "sample":
        import numpy as np
        gen = np.random.default_rng(rng)
        return reduce(lambda a, b: a.union(b),
                      [s.sample(size=size, ratio=ratio, rng=gen) for s in sets])
    raise ValueError(op)


def main(opts):
    from ..errors import FlowError
    chosen = [op for op in OPERATIONS if getattr(opts, op)]
    masking = opts.mask is not None or opts.fill_blocks is not None
    if opts.mask is not None and opts.fill_blocks is not None:
        raise FlowError("Switches --mask and --fill-blocks are incompatible")
    if masking and not chosen:
        chosen = ["union"]
    if len(chosen) > 1 or (masking and chosen != ["union"]):
        names = [c.replace("_", "-") for c in chosen] + (
            ["mask" if opts.mask is not None else "fill-blocks"] if masking else [])
        raise FlowError(f"Switches --{names[0]} and --{names[1]} are incompatible")
    if not chosen:
        raise FlowError("One of --union, --intersect, --difference, --symmetric-difference, "
                        "--mask, --fill-blocks, or --sample is required")
    op = chosen[0]
    if op == "sample":
        if (opts.size is None) == (opts.ratio is None):
            raise FlowError("The --sample switch requires a valid --size or --ratio argument"
                            if opts.size is None else
                            "Switches --size and --ratio are incompatible")
        if opts.size is not None and opts.size < 1:
            raise FlowError(f"Invalid --size '{opts.size}': must be at least 1")
        if opts.ratio is not None and not 0.0 <= opts.ratio <= 1.0:
            raise FlowError(f"Invalid --ratio '{opts.ratio}': must be between 0.0 and 1.0")
    elif opts.size is not None or opts.ratio is not None or opts.seed is not None:
        raise FlowError("--size, --ratio and --seed may only be used with --sample")
    prefix = opts.mask if opts.mask is not None else opts.fill_blocks
    if masking and not 1 <= prefix <= 128:
        raise FlowError(f"Invalid --{'mask' if opts.mask is not None else 'fill-blocks'} "
                        f"'{prefix}': must be between 1 and 128")
    path = _output_path(opts)
    sets = read_sets(input_list(opts.inputs))
    result = combine(sets, op, opts.seed, opts.size, opts.ratio)
    if masking:
        result = _masked(result, prefix, opts.fill_blocks is not None)
    if result.is_ipv6 and result.ipv4_only():
        result = result.to_v4()
    write_output(result, opts, path, [s.meta for s in sets])
    return 0


def _masked(result, prefix, fill):
    import sys
    width = 128 if result.is_ipv6 else 32
    if prefix >= width:
        if prefix > width:
            sys.stderr.write(f"pyflow-settool: Ignoring mask of {prefix} for an IPv4 "
                             "IPset\n")
        return result
    return result.fill_blocks(prefix) if fill else result.mask(prefix)


def _output_path(opts):
    """The output, checked before any input is read (a terminal, or a file not to
    clobber, is refused)."""
    from .. import io
    path = opts.output_path or "-"
    io.check_output(path)
    return path
