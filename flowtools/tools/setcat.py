"""pyflow-setcat: print the addresses of IP set files and facts about them (rwsetcat)."""

from ..cli import Tool


def _arguments(p):
    p.add_argument("inputs", nargs="*", metavar="FILE",
                   help="IP set files (pyflow or SiLK); '-' or 'stdin' reads the standard "
                        "input, which is also read when no file is named.")
    p.add_argument("--count-ips", action="store_true",
                   help="Print the number of addresses in each set (FILE:count when "
                        "several files are given); do not print the addresses.")
    p.add_argument("--print-statistics", action="store_true",
                   help="Print a summary: minimum and maximum address and the number of "
                        "occupied netblocks at several sizes.")
    p.add_argument("--print-ips", action="store_true",
                   help="Also print the addresses with --count-ips or --print-statistics.")
    p.add_argument("--network-structure", nargs="?", const="", metavar="STRUCTURE",
                   help="Print the number of hosts in each netblock of the sizes listed "
                        "in STRUCTURE: prefix lengths and the letters T (total), A, B, C, X "
                        "(/8, /16, /24, /27), H (hosts), S (summaries); a '/' starts the "
                        "list of sizes only summarised; 'v6:' selects IPv6 prefixes. The "
                        "default is TS/ABCXH (v6: TS/48,64).")
    p.add_argument("--cidr-blocks", nargs="?", const="1", metavar="0|1",
                   help="Print CIDR blocks (1, the default with no value) or single "
                        "addresses (0). Default: addresses for IPv4 sets, blocks for IPv6.")
    p.add_argument("--ip-ranges", action="store_true",
                   help="Print each maximal run of addresses as count|low|high|.")
    p.add_argument("--ip-format", metavar="FORMAT",
                   help="How to print addresses: canonical, no-mixed, decimal, "
                        "hexadecimal, zero-padded, map-v4, unmap-v6, force-ipv6 (comma "
                        "separated). Default from SILK_IP_FORMAT, else canonical.")
    p.add_argument("--integer-ips", action="store_true",
                   help="Print addresses as integers (--ip-format=decimal).")
    p.add_argument("--zero-pad-ips", action="store_true",
                   help="Print addresses zero-padded (--ip-format=zero-padded).")
    p.add_argument("--no-columns", action="store_true",
                   help="With --network-structure or --ip-ranges, do not pad columns.")
    p.add_argument("--column-separator", metavar="C",
                   help="With --network-structure or --ip-ranges, separate columns with C "
                        "(default '|').")
    p.add_argument("--no-final-delimiter", action="store_true",
                   help="With --ip-ranges, do not print the separator after the last "
                        "column.")
    p.add_argument("--delimited", nargs="?", const="", metavar="C",
                   help="Same as --no-columns --no-final-delimiter --column-separator=C.")
    p.add_argument("--print-filenames", nargs="?", const="1", metavar="0|1",
                   help="Print each file's name before its output (default: only with "
                        "--count-ips or --print-statistics and several files).")
    p.add_argument("--output-path", metavar="PATH",
                   help="Write the text to PATH (default the standard output).")
    p.add_argument("--pager", metavar="PROG",
                   help="Accepted for compatibility; output is not paged.")


TOOL = Tool(
    name="pyflow-setcat",
    summary="Print the IP addresses in IP set files.",
    description="Reads each IP set file (pyflow's or SiLK's, any record version) and prints "
                "its addresses one per line in ascending order: single addresses for IPv4 "
                "sets and CIDR blocks for IPv6 sets unless --cidr-blocks says otherwise. "
                "--count-ips, --print-statistics, --ip-ranges and --network-structure print "
                "other views in rwsetcat's layouts.",
    uses=(),
    add_arguments=_arguments,
    examples=["pyflow-setcat --cidr-blocks scanners.set",
              "pyflow-setcat --count-ips a.set b.set",
              "pyflow-settool --intersect a.set b.set | pyflow-setcat --count-ips",
              "pyflow-setcat --network-structure=16,24 hosts.set"],
)


def _flag01(value, option):
    from ..errors import FlowError
    if value is None:
        return None
    if value not in ("0", "1"):
        raise FlowError(f"Invalid {option}: Value must be 0 or 1")
    return value == "1"


def main(opts):
    import sys

    from .. import io, ipset, settext
    from ..errors import FlowError

    cidr = _flag01(opts.cidr_blocks, "--cidr-blocks")
    user_files = _flag01(opts.print_filenames, "--print-filenames")
    names = list(opts.inputs)
    if not names:
        if io._isatty(sys.stdin):
            raise FlowError("No files on the command line and stdin is connected to a "
                            "terminal")
        names = ["stdin"]
    ns = opts.network_structure
    if ns is not None:
        for flag, name in ((cidr is not None, "--cidr-blocks"), (opts.print_ips,
                           "--print-ips"), (opts.count_ips, "--count-ips"),
                           (opts.ip_ranges, "--ip-ranges")):
            if flag:
                raise FlowError(f"Cannot combine the --network-structure and {name} "
                                "switches.")
    if opts.ip_ranges and cidr is not None:
        raise FlowError("Cannot combine the --ip-ranges and --cidr-blocks switches.")
    print_ips = opts.print_ips or cidr is not None
    if opts.ip_ranges:
        print_ips = False
    if not (opts.print_statistics or opts.count_ips or ns is not None or print_ips
            or opts.ip_ranges):
        print_ips = True
    files = user_files if user_files is not None else (
        len(names) > 1 and (opts.count_ips or opts.print_statistics))
    fmt = settext.parse_ip_format(opts.ip_format, opts.integer_ips, opts.zero_pad_ips)
    sep = opts.column_separator[:1] if opts.column_separator else "|"
    columnar, final = not opts.no_columns, not opts.no_final_delimiter
    if opts.delimited is not None:
        columnar, final = False, False
        sep = opts.delimited[:1] or sep

    out = io.Output(opts.output_path or "-", binary=False)
    try:
        for name in names:
            try:
                s = ipset.read_set(sys.stdin.buffer if name in io.STDIN_NAMES else name,
                                   name=io.display_name(name))
            except OSError as exc:
                raise FlowError(f"Unable to read IPset from '{name}': {exc.strerror}") \
                    from None
            parts = []
            if opts.count_ips:
                parts.append((f"{name}:" if files else "") + f"{s.count()}\n")
            elif files:
                parts.append(f"{name}:\n")
            out.f.write("".join(parts))
            if print_ips:
                blocks = cidr if cidr is not None else s.is_ipv6
                out.f.flush()
                for chunk in settext.address_chunks(s, fmt, blocks):
                    out.f.buffer.write(chunk)
                out.f.buffer.flush()
            elif ns is not None:
                out.f.write(settext.network_structure(s, ns or None, fmt, sep, columnar))
            elif opts.ip_ranges:
                out.f.write(settext.range_lines(s, fmt, sep, columnar, final).decode())
            if opts.print_statistics:
                out.f.write(settext.statistics(s, fmt))
        out.commit()
    except BaseException:
        out.abort()
        raise
    return 0
