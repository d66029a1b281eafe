"""pyflow-filter: pull records from the archive or from files and split them into pass
and fail streams (rwfilter)."""

import argparse

from ..cli import Tool

SELECTION = [
    ("--class", "CLASS", "Select (or, with input files, pass) records of class CLASS."),
    ("--type", "TYPES", "Comma list of types of the class, or 'all'."),
    ("--flowtypes", "CLASS/TYPE,...", "Comma list of class/type pairs ('all' on either "
     "side)."),
    ("--sensors", "SENSORS", "Comma list of sensor names, ids, id ranges and @groups."),
    ("--start-date", "YYYY/MM/DD[:HH]", "First day or hour of archive files to read "
     "(default: today)."),
    ("--end-date", "YYYY/MM/DD[:HH]", "Last day or hour of archive files to read; without "
     "an hour, and with a start date that has one, the start's hour is used."),
]

# (switch, metavar, help); every partitioning switch may be given once, except where
# REPEATABLE says otherwise, as in rwfilter.
_ADDR_WHO = {"s": "source", "d": "destination", "any": "source or destination",
             "nh": "next-hop"}
PARTITIONING = [
    ("--scidr", "IPS", "Pass if the source address is in a comma list of addresses and "
     "CIDR blocks."),
    ("--dcidr", "IPS", "As --scidr for the destination address."),
    ("--any-cidr", "IPS", "As --scidr for the source or the destination address."),
    ("--nhcidr", "IPS", "As --scidr for the next-hop address."),
    ("--not-scidr", "IPS", "Pass if the source address is not in the list."),
    ("--not-dcidr", "IPS", "As --not-scidr for the destination address."),
    ("--not-any-cidr", "IPS", "Pass if neither address is in the list."),
    ("--not-nhcidr", "IPS", "As --not-scidr for the next-hop address."),
    ("--saddress", "WILDCARD", "Pass if the source address matches a SiLK IP wildcard "
     "(10.1.24-27.x, 10.1.1.1,3,5, CIDR, IPv6 forms)."),
    ("--daddress", "WILDCARD", "As --saddress for the destination address."),
    ("--any-address", "WILDCARD", "As --saddress for either address."),
    ("--next-hop-id", "WILDCARD", "As --saddress for the next-hop address."),
    ("--not-saddress", "WILDCARD", "Pass if the source address does not match."),
    ("--not-daddress", "WILDCARD", "As --not-saddress for the destination address."),
    ("--not-any-address", "WILDCARD", "Pass if neither address matches."),
    ("--not-next-hop-id", "WILDCARD", "As --not-saddress for the next-hop address."),
    ("--sipset", "SETFILE", "Pass if the source address is in the IP set (pyflow's or "
     "SiLK's format; '-' reads it from the standard input)."),
    ("--dipset", "SETFILE", "As --sipset for the destination address."),
    ("--anyset", "SETFILE", "As --sipset for either address."),
    ("--nhipset", "SETFILE", "As --sipset for the next-hop address."),
    ("--not-sipset", "SETFILE", "Pass if the source address is not in the set."),
    ("--not-dipset", "SETFILE", "As --not-sipset for the destination address."),
    ("--not-anyset", "SETFILE", "Pass if neither address is in the set."),
    ("--not-nhipset", "SETFILE", "As --not-sipset for the next-hop address."),
    ("--sport", "LIST", "Pass if the source port is in the list (0-65535; 1,3,5-9,1024-)."),
    ("--dport", "LIST", "As --sport for the destination port."),
    ("--aport", "LIST", "Pass if either port is in the list."),
    ("--protocol", "LIST", "Pass if the IP protocol is in the list (0-255)."),
    ("--icmp-type", "LIST", "Pass ICMP and ICMPv6 records whose type is in the list."),
    ("--icmp-code", "LIST", "Pass ICMP and ICMPv6 records whose code is in the list."),
    ("--stime", "WINDOW", "Pass if the start time is in YYYY/MM/DD[:HH[:MM[:SS[.sss]]]]"
     "[-YYYY/...]; an end coarser than milliseconds extends to the end of its unit."),
    ("--etime", "WINDOW", "As --stime for the end time."),
    ("--active-time", "WINDOW", "Pass if the flow was active at any time in the window."),
    ("--duration", "SECONDS-RANGE", "Pass if the duration in seconds is in MIN-MAX, MIN- "
     "or exactly N (decimals allowed)."),
    ("--bytes", "RANGE", "Pass if the byte count is in MIN-MAX, MIN- or exactly N."),
    ("--packets", "RANGE", "As --bytes for the packet count."),
    ("--bytes-per-packet", "DECIMAL-RANGE", "As --bytes for bytes per packet."),
    ("--flags-all", "HIGH/MASK,...", "Pass if for one HIGH/MASK pair the flags of MASK "
     "that are set in the OR of all packets' TCP flags are exactly those of HIGH (S/SA: "
     "SYN set and ACK clear). Letters FSRPAUEC."),
    ("--flags-initial", "HIGH/MASK,...", "As --flags-all for the first packet's flags."),
    ("--flags-session", "HIGH/MASK,...", "As --flags-all for the flags of the other "
     "packets."),
    ("--tcp-flags", "FLAGS", "Pass if any of the letters' flags is set (FSRPAUEC)."),
    ("--fin-flag", "0|1", "Pass if the FIN flag is clear (0) or set (1)."),
    ("--syn-flag", "0|1", "As --fin-flag for SYN."),
    ("--rst-flag", "0|1", "As --fin-flag for RST."),
    ("--psh-flag", "0|1", "As --fin-flag for PSH."),
    ("--ack-flag", "0|1", "As --fin-flag for ACK."),
    ("--urg-flag", "0|1", "As --fin-flag for URG."),
    ("--ece-flag", "0|1", "As --fin-flag for ECE."),
    ("--cwr-flag", "0|1", "As --fin-flag for CWR."),
    ("--ip-version", "4|6|4,6", "Pass records of these IP versions."),
    ("--application", "LIST", "Pass if the application label is in the list."),
    ("--attributes", "HIGH/MASK,...", "As --flags-all for the flow attributes: T (ended "
     "by timeout), C (continues a flow), F (packets after FIN), S (all packets of one "
     "size)."),
    ("--input-index", "LIST", "Pass if the input interface is in the list (0-65535)."),
    ("--output-index", "LIST", "Pass if the output interface is in the list."),
    ("--any-index", "LIST", "Pass if either interface is in the list."),
    ("--tuple-file", "FILE", "Pass records whose fields match a line of FILE (text, "
     "fields given by a title line or --tuple-fields)."),
    ("--tuple-fields", "FIELDS", "The fields of the tuple file's columns (sIP, dIP, sPort, "
     "dPort, protocol)."),
    ("--tuple-direction", "forward|reverse|both", "Compare the tuples with the records "
     "as they are, with source and destination swapped, or both (default forward)."),
    ("--tuple-delimiter", "C", "Column separator of the tuple file (default '|')."),
    ("--expr", "EXPRESSION", "Pass records matching an nfdump-style filter expression, "
     "e.g. 'proto tcp and dst port in [445 139] and not src net 10.0.0.0/8'."),
    ("--unique", "FIELDS", "Pass only the first record seen for each distinct combination "
     "of FIELDS (e.g. sip,dip) over the whole run, after the other switches."),
]
REPEATABLE = {"--flags-all", "--flags-initial", "--flags-session"}
FLAG_SWITCHES = ["fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr"]


def _add_arguments(p):
    g = p.add_argument_group("selection switches (the archive)")
    for name, metavar, text in SELECTION:
        g.add_argument(name, metavar=metavar, help=text)
    g.add_argument("--print-missing-files", action="store_true",
                   help="Print to the standard error the archive files the selection "
                        "names that do not exist.")
    g = p.add_argument_group("other inputs")
    g.add_argument("--input-pipe", metavar="PATH",
                   help="Read records from the named pipe PATH, or 'stdin' or '-'.")
    g = p.add_argument_group("output switches")
    g.add_argument("--pass-destination", action="append", metavar="PATH", default=[],
                   help="Write the records that pass every partitioning switch to PATH "
                        "('stdout' or '-' for the standard output; may be repeated).")
    g.add_argument("--fail-destination", action="append", metavar="PATH", default=[],
                   help="Write the records that fail a partitioning switch to PATH.")
    g.add_argument("--all-destination", action="append", metavar="PATH", default=[],
                   help="Write every record read to PATH.")
    g.add_argument("--max-pass-records", type=_count, metavar="N",
                   help="Stop writing pass destinations after N records.")
    g.add_argument("--max-fail-records", type=_count, metavar="N",
                   help="Stop writing fail destinations after N records.")
    g.add_argument("--print-statistics", nargs="?", const="stderr", metavar="PATH",
                   help="Print the counts of files, records read, passed and failed (to "
                        "the standard error, or PATH).")
    g.add_argument("--print-volume-statistics", nargs="?", const="stderr", metavar="PATH",
                   help="Print records, packets and bytes read, passed and failed as a "
                        "table.")
    g = p.add_argument_group("partitioning switches (AND-ed; the values of one switch "
                             "are OR-ed)")
    for name, metavar, text in PARTITIONING:
        g.add_argument(name, action="append", metavar=metavar, help=text)
    g.add_argument("--unique-capacity", type=_count, default=10_000_000, metavar="N",
                   help="Distinct keys --unique expects; sizes its Bloom filter (default "
                        "10000000: 31 MB at the default rate). Beyond it the filter grows "
                        "by doubling.")
    g.add_argument("--unique-fp-rate", type=float, default=0.001, metavar="P",
                   help="Bloom filter false-positive rate for --unique: the chance that "
                        "a first record is taken for a repeat (default 0.001).")
    g.add_argument("--unique-exact", action="store_true",
                   help="Make --unique exact (memory grows with the distinct keys).")
    g = p.add_argument_group("miscellaneous")
    g.add_argument("--print-filenames", action="store_true",
                   help="Print to the standard error the name of each input file as it "
                        "is read.")
    g.add_argument("--dry-run", action="store_true",
                   help="Check the arguments and print the names of the input files "
                        "without reading them.")
    g.add_argument("--threads", type=_count, default=2, metavar="N",
                   help="Decode and judge blocks on N threads (default 2).")


def _count(text):
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"'{text}' is not a non-negative integer")
    return int(text)


EXPRESSIONS = """\
--expr takes nfdump's filter syntax, AND-ed with the other switches:
  expr  := expr or expr | expr and expr | not expr | ( expr )     (also || && !)
           precedence: not > and > or; keywords are case-insensitive
  prim  := any | ipv4 | inet | ipv6 | inet6
         | proto NAME|N                          (tcp udp icmp icmp6 gre esp ah sctp ...)
         | [DIR] ip|host ADDR[/BITS] | [DIR] ip|host in [ ADDR ... ]
         | [DIR] net ADDR/BITS | [DIR] net A.B.C.D M.M.M.M
         | [DIR] port [CMP] N | [DIR] port in [ N ... ]
         | [in|out] if [CMP] N                    (SNMP interfaces)
         | packets|bytes|duration|pps|bps|bpp [CMP] N
         | flags LETTERS                          (all of them set, TCP only)
         | icmp-type|icmp-code [CMP] N
         | first|last seen [CMP] YYYY-MM-DDThh:mm:ss
  DIR   := src | dst | src or dst | src and dst | next    (next: the next hop)
  CMP   := = == eq | < lt | > gt | <= le | >= ge          (default: equal)
  N     := decimal, 0xHEX, or with a K/M/G/T suffix (x1000 each)
Fields pyflow does not store (tos, as, vlan, mac, mpls, ...) are errors.
"""

TOOL = Tool(
    name="pyflow-filter",
    summary="Select flow records from the archive or from files and partition them.",
    description="Reads records from the archive files a selection names (class, type, "
                "sensors, dates) or from files, pipes and the standard input, tests each "
                "against the partitioning switches (all must hold), and writes the records "
                "that pass to --pass-destination, those that fail to --fail-destination, "
                "and all to --all-destination. Blocks whose statistics cannot match are "
                "not decompressed; only the columns a test reads are decoded before it "
                "decides.",
    uses=("inputs", "compression", "notes", "site"),
    add_arguments=_add_arguments,
    sections=[("Expressions", EXPRESSIONS)],
    examples=[
        "pyflow-filter --start-date=2024/03/01 --end-date=2024/03/02 --type=in "
        "--proto=6 --dport=445 --pass=stdout | pyflow-cut --fields=sip,dip,stime",
        "pyflow-filter --sipset=vlf.set --pass=vlf.pf --fail=rest.pf flows.pf",
        "pyflow-filter --expr='proto udp and port 53' --print-volume-statistics flows.pf",
        "pyflow-filter --type=all --start-date=2024/03/01 --unique=sip,dip "
        "--pass=stdout | pyflow-cut --fields=sip,dip",
    ],
)


SELECTION_KEYS = ("class", "type", "flowtypes", "sensors")
UNIQUE_GROUP = 1 << 16  # records judged by --unique at once
TUPLE_KEYS = ("tuple-file", "tuple-fields", "tuple-direction", "tuple-delimiter")


def _dest(name):
    return name.lstrip("-").replace("-", "_")


def main(opts):
    import sys

    from .. import cli, filtering
    from ..errors import FlowError

    values = {name[2:]: getattr(opts, _dest(name)) or [] for name, _, _ in PARTITIONING
              if name[2:] not in TUPLE_KEYS and name != "--unique"}
    names, config, from_archive = _inputs(opts)
    if not from_archive:
        values.update({k: [getattr(opts, _dest(k))] for k in SELECTION_KEYS
                       if getattr(opts, _dest(k))})
        if any(values.get(k) for k in SELECTION_KEYS):
            config = cli.site_config(opts)
    predicate = filtering.compile_switches(values, config,
                                           selection_partitions=not from_archive)
    predicate = _with_tuples(opts, predicate, names)
    unique = _unique(opts)
    stats_path, volume = _statistics_target(opts)
    _check_outputs(opts, stats_path, predicate is not None or unique is not None)
    if opts.dry_run:
        for name in names:
            sys.stdout.write(name + "\n")
        return
    if from_archive and not names and not opts.print_missing_files:
        sys.stderr.write(f"{TOOL.name}: warning: the selection names no existing files\n")
    run = _Run(opts, predicate, unique, volume)
    try:
        run.process(names)
    except BaseException:
        run.abort()
        raise
    run.close()
    if stats_path is not None:
        _write_text(stats_path, run.statistics(volume))
    if run.errors:
        raise FlowError(run.errors[0])


def _inputs(opts):
    """(input names, site config or None, whether they come from the archive)."""
    import os
    import stat

    from .. import cli, dates, io, select
    from ..errors import FlowError

    dated = opts.start_date is not None or opts.end_date is not None
    explicit = [bool(opts.inputs), opts.xargs is not None, opts.input_pipe is not None]
    if sum(explicit) > 1:
        raise FlowError("multiple input sources were specified: input comes from one of "
                        "--input-pipe, --xargs, file names, or the selection switches")
    if any(explicit):
        if dated:
            raise FlowError("--start-date and --end-date select archive files and cannot "
                            "be used with input files, --xargs or --input-pipe")
        if opts.input_pipe is not None:
            path = opts.input_pipe
            if path not in io.STDIN_NAMES:
                try:
                    mode = os.stat(path).st_mode
                except OSError:
                    raise FlowError(f"invalid --input-pipe '{path}': file does not "
                                    "exist") from None
                if not stat.S_ISFIFO(mode):
                    raise FlowError(f"invalid --input-pipe '{path}': file is not a "
                                    "named pipe")
            return [path], None, False
        return io.input_names(opts.inputs, opts.xargs), None, False
    if not dated and not any(getattr(opts, _dest(k)) for k in SELECTION_KEYS):
        if sys_stdin_is_tty():
            raise FlowError("no input was specified: no selection switches, no "
                            "--input-pipe or --xargs, and no files on the command line")
        return ["-"], None, False
    config = cli.site_config(opts)
    root = cli.data_rootdir(opts)
    hours = dates.hours_for(opts.start_date, opts.end_date)
    sensors = select.parse_sensor_list(config, opts.sensors) if opts.sensors else None
    flowtypes = select.split_items(opts.flowtypes, "flowtype") if opts.flowtypes else None
    classes = select.split_items(opts.__dict__["class"], "class") \
        if opts.__dict__["class"] else None
    types = select.split_items(opts.type, "type") if opts.type else None
    names = []
    for path, exists in select.select_files(config, root, hours, flowtypes=flowtypes,
                                            sensors=sensors, classes=classes, types=types):
        if exists:
            names.append(path)
        elif opts.print_missing_files:
            import sys
            sys.stderr.write(f"Missing {path}\n")
    return names, config, True


def sys_stdin_is_tty():
    import sys
    try:
        return sys.stdin is None or sys.stdin.isatty()
    except ValueError:
        return True


def _with_tuples(opts, predicate, names):
    from ..errors import FlowError
    from ..predicate import And
    if opts.tuple_file is None:
        for key in TUPLE_KEYS[1:]:
            if getattr(opts, _dest(key)):
                raise FlowError(f"--{key} requires --tuple-file")
        return predicate
    for key in TUPLE_KEYS:
        if len(getattr(opts, _dest(key)) or []) > 1:
            raise FlowError(f"invalid --{key}: switch used multiple times")

    def first(key):
        return (getattr(opts, _dest(key)) or [None])[0]

    from .. import io
    if first("tuple-file") in io.STDIN_NAMES and (
            opts.xargs in io.STDIN_NAMES or any(n in io.STDIN_NAMES for n in names)):
        raise FlowError("--tuple-file and the flow records cannot both come from the "
                        "standard input")
    from ..tuples import load_tuples
    tuples = load_tuples(first("tuple-file"), first("tuple-fields"),
                         first("tuple-delimiter") or "|",
                         first("tuple-direction") or "forward")
    return tuples if predicate is None else And([predicate, tuples])


def _unique(opts):
    from ..errors import FlowError
    if not opts.unique:
        return None
    if len(opts.unique) > 1:
        raise FlowError("invalid --unique: switch used multiple times")
    if not 0 < opts.unique_fp_rate < 1:
        raise FlowError(f"invalid --unique-fp-rate '{opts.unique_fp_rate}': "
                        "it must be between 0 and 1")
    from .. import fields
    from ..unique import FirstSeen
    return FirstSeen(fields.parse_list(opts.unique[0], "--unique"),
                     capacity=max(opts.unique_capacity, 1), fp_rate=opts.unique_fp_rate,
                     exact=opts.unique_exact)


def _statistics_target(opts):
    if opts.print_volume_statistics is not None:
        return opts.print_volume_statistics, True
    return opts.print_statistics, False


STDOUT = ("-", "stdout")


def _check_outputs(opts, stats_path, has_rules):
    from ..errors import FlowError
    stdout_used = False
    count = 0
    for option in ("pass-destination", "fail-destination", "all-destination"):
        for path in getattr(opts, _dest(option)):
            count += 1
            if path == "stderr":
                raise FlowError(f"invalid --{option} '{path}': will not write binary "
                                "data to the standard error")
            if path in STDOUT:
                if stdout_used:
                    raise FlowError(f"invalid --{option} '{path}': the standard output "
                                    "is already allocated")
                stdout_used = True
    if stats_path is not None:
        count += 1
        if stats_path in STDOUT and stdout_used:
            raise FlowError(f"invalid statistics destination '{stats_path}': the standard "
                            "output is already allocated")
    if not count:
        raise FlowError("no output(s) specified: give --pass-destination, "
                        "--fail-destination, --all-destination or --print-statistics")
    if has_rules:
        return
    for option in ("pass-destination", "fail-destination"):
        if getattr(opts, _dest(option)):
            raise FlowError(f"must specify partitioning rules when using --{option}")
    if not opts.all_destination:
        which = "print-volume-statistics" if opts.print_volume_statistics is not None \
            else "print-statistics"
        raise FlowError(f"must specify partitioning rules when using --{which} without "
                        "--all-destination")


def _write_text(path, text):
    import sys

    from .. import io
    if path == "stderr":
        sys.stderr.write(text)
        sys.stderr.flush()
        return
    out = io.Output(path, binary=False)
    try:
        out.f.write(text)
    except BaseException:
        out.abort()
        raise
    out.commit()


PARALLEL_BYTES = 8 << 20  # smaller inputs do not repay starting worker processes


def _total_size(names):
    import os
    total = 0
    for name in names:
        try:
            total += os.path.getsize(name)
        except OSError:
            pass  # reported when it is opened
    return total


class _Run:
    """One pass over the inputs: judging, limits, outputs and counts."""

    def __init__(self, opts, predicate, unique, volume):
        from .. import cli, passfail
        self.opts = opts
        self.unique = unique
        self.method, self.level = cli.compression(opts)
        self.pass_paths = opts.pass_destination
        self.fail_paths = opts.fail_destination
        self.all_paths = opts.all_destination
        self.sinks = None
        self.pass_left = opts.max_pass_records if self.pass_paths else None
        self.fail_left = opts.max_fail_records if self.fail_paths else None
        self.pass_open = bool(self.pass_paths)
        self.fail_open = bool(self.fail_paths)
        self.judge = passfail.Judge(predicate, (*unique.columns, "stime") if unique else (),
                                    want_pass=bool(self.pass_paths),
                                    want_fail=bool(self.fail_paths),
                                    want_all=bool(self.all_paths), volume=volume)
        if unique is None and self.pass_left is None and self.fail_left is None:
            # every output then takes a block whole or not at all: copy it undecoded
            from ..flowfile import DEFAULT_LEVEL
            zstd = self.method == "zstd"
            self.judge.copy_format = (zstd, (self.level or DEFAULT_LEVEL) if zstd else None)
        self.read, self.passed = passfail.Volume(), passfail.Volume()
        self.files = 0
        self.errors = []

    def _open_sinks(self, inputs_meta):
        from .. import cli, io
        meta = cli.output_meta(self.opts, inputs_meta)
        self.sinks = {}
        for kind, paths in (("pass", self.pass_paths), ("fail", self.fail_paths),
                            ("all", self.all_paths)):
            self.sinks[kind] = []
            for path in paths:
                self.sinks[kind].append(io.FlowSink(path, meta, self.method, self.level))

    def _readers(self, names):
        import sys

        from .. import io
        for name in names:
            if self.opts.print_filenames:
                sys.stderr.write(name + "\n")
                sys.stderr.flush()
            reader = io.open_flows(name)
            self.files += 1
            if self.sinks is None:
                self._open_sinks([reader.meta])
            yield reader

    def process(self, names):
        import os

        from .. import io, passfail
        workers = min(self.opts.threads, os.cpu_count() or 1)
        if len(names) >= 16 and workers > 1 and self.unique is None \
                and self.pass_left is None and self.fail_left is None \
                and not any(n in io.STDIN_NAMES for n in names) \
                and _total_size(names) >= PARALLEL_BYTES:
            self._process_parallel(names, workers)
            return
        group, size = [], 0
        for _, judged in passfail.judged_blocks(self._readers(names), self.judge,
                                                max(self.opts.threads, 1)):
            if self.unique is None:
                if not self._block(judged):
                    return
                continue
            # --unique judges runs of blocks at once: small archive files would
            # otherwise pay its fixed cost per file
            group.append(judged)
            size += judged.n
            if size >= UNIQUE_GROUP:
                if not self._group(group):
                    return
                group, size = [], 0
        self._group(group)

    def _group(self, group):
        import numpy as np

        from .. import schema
        parts, owners = [], []
        for j in group:
            if j.mask is False:
                continue
            idx = np.flatnonzero(j.mask)
            if len(idx):
                cols = {c: j.batch[c] for c in (*self.unique.columns, "stime", "ipv6")
                        if c in j.batch}
                parts.append(schema.take(cols, idx))
                owners.append((j, idx))
        if parts:
            first = self.unique.first(schema.concat(parts))
            at = 0
            for j, idx in owners:
                seen = ~first[at: at + len(idx)]
                at += len(idx)
                if seen.any():
                    j.mask = j.mask.copy()
                    j.mask[idx[seen]] = False
        return all(self._block(j) for j in group)

    def _process_parallel(self, names, workers):
        """Runs of whole files judged and encoded on worker processes: small archive
        files are bound by the interpreter, which threads do not spread over cores."""
        import sys

        from .. import passfail
        for chunk, r in passfail.judged_chunks(names, self.judge, self.method, self.level,
                                               workers):
            if self.opts.print_filenames:
                sys.stderr.write("".join(name + "\n" for name in chunk))
            self.files += r.files
            self.read.merge(r.read)
            self.passed.merge(r.passed)
            if self.sinks is None:
                self._open_sinks([r.meta])
            for kind, (data, records, blocks) in r.frames.items():
                for sink in self.sinks[kind]:
                    sink.writer.write_frames(data, records, blocks)

    def _block(self, j):
        """Take one judged block; False once every output has what it wants."""
        import numpy as np

        from .. import schema
        n, batch = j.n, j.batch
        m = np.zeros(n, bool) if j.mask is False else j.mask
        end = self._end(m, n)
        if end < n:
            m = m[:end]
        pass_idx = np.flatnonzero(m)
        if end == n:
            self.read.add(batch, count=n)
        else:
            self.read.add(batch, np.arange(end))
        self.passed.add(batch, pass_idx)
        whole = j.block if end == n else None
        if self.all_paths:
            self._write("all", batch if end == n else schema.take(batch, np.arange(end)),
                        whole)
        if self.pass_open and len(pass_idx):
            take = pass_idx if self.pass_left is None else pass_idx[:self.pass_left]
            self._write("pass", batch if len(take) == n else schema.take(batch, take),
                        whole if len(take) == n else None)
            if self.pass_left is not None:
                self.pass_left -= len(take)
                self.pass_open = self.pass_left > 0
        if self.fail_open and len(pass_idx) < end:
            fail_idx = np.flatnonzero(~m)
            take = fail_idx if self.fail_left is None else fail_idx[:self.fail_left]
            self._write("fail", batch if len(take) == n else schema.take(batch, take),
                        whole if len(take) == n else None)
            if self.fail_left is not None:
                self.fail_left -= len(take)
                self.fail_open = self.fail_left > 0
        return end == n

    def _end(self, m, n):
        """How many records of the block are read before every limited output is full
        (rwfilter stops reading then, unless an output has no limit)."""
        from .. import passfail
        if self.all_paths or not (self.pass_paths or self.fail_paths):
            return n
        ends = []
        for is_open, left, sel in ((self.pass_open, self.pass_left, m),
                                   (self.fail_open, self.fail_left, None)):
            if not is_open:
                continue
            if left is None:
                return n
            at = passfail.first_index_reaching(m if sel is not None else ~m, left)
            if at is None:
                return n
            ends.append(at)
        return max(ends) + 1 if ends else 0

    def _write(self, kind, batch, block=None):
        for sink in self.sinks[kind]:
            if block is not None:
                sink.write_block(block)
            else:
                sink.write(batch)

    def close(self):
        if self.sinks is None:
            self._open_sinks([])
        for sinks in self.sinks.values():
            for sink in sinks:
                sink.close()

    def abort(self):
        for sinks in (self.sinks or {}).values():
            for sink in sinks:
                sink.abort()

    def statistics(self, volume):
        from .. import passfail
        return passfail.statistics_text(self.files, self.read, self.passed, volume)
