"""pyflow-set: IP sets of the addresses in flow records (rwset)."""

from ..cli import Tool

OUTPUTS = (("sip_file", "sip"), ("dip_file", "dip"), ("nhip_file", "nhip"),
           ("any_file", None))


def _arguments(p):
    from .settool import add_set_output
    p.add_argument("--sip-file", metavar="FILE",
                   help="Write the set of source addresses to FILE.")
    p.add_argument("--dip-file", metavar="FILE",
                   help="Write the set of destination addresses to FILE.")
    p.add_argument("--nhip-file", metavar="FILE",
                   help="Write the set of next-hop addresses to FILE.")
    p.add_argument("--any-file", metavar="FILE",
                   help="Write the set of source and destination addresses to FILE.")
    p.add_argument("--ipv6-policy", metavar="POLICY",
                   help="ignore, asv4, mix (default), force or only: which records to use "
                        "and how (see pyflow-cut). Default from SILK_IPV6_POLICY.")
    add_set_output(p, output_path=False)


TOOL = Tool(
    name="pyflow-set",
    summary="Build IP sets of the source, destination, next-hop or any addresses of flows.",
    description="Reads flow records (pyflow or SiLK files and streams) once and writes up to "
                "four IP set files: the distinct source (--sip-file), destination "
                "(--dip-file), next-hop (--nhip-file) and source-or-destination (--any-file) "
                "addresses. 'stdout' or '-' writes a set to the standard output (only one "
                "may). A set is IPv6 when an IPv6 record contributed to it.",
    uses=("inputs", "compression", "notes", "site", "filenames", "copy-input"),
    add_arguments=_arguments,
    examples=["pyflow-set --sip-file=sources.set --dip-file=dests.set flows.pf",
              "pyflow-filter --proto=6 --pass=- day.pf | pyflow-set --any-file=- | "
              "pyflow-setcat --count-ips"],
)


class _Collector:
    """The distinct addresses of one column: a set per batch, merged into one whenever
    those held pass the size of the merged one (so the work stays n log n and the memory
    a small multiple of the result). IPv4 and IPv6 sets are merged apart (32-bit ranges
    merge several times faster) and joined at the end."""

    GATHER = 1 << 20        # addresses gathered before they are made a set

    def __init__(self):
        self.merged = {False: None, True: None}
        self.parts = {False: [], True: []}
        self.held = {False: 0, True: 0}
        self.raw = {False: [], True: []}
        self.nraw = 0

    def add(self, batch, column):
        """The addresses of a column of a batch of one address family (schema.
        split_families), made a set once enough are gathered: a set per batch had cost
        more than decoding the batch."""
        col = batch[column]
        self.raw["ipv6" in batch].append(col)
        self.nraw += len(col)
        if self.nraw >= self.GATHER:
            self._gather()

    def _gather(self):
        import numpy as np

        from ..ipset import IPSet
        for family, cols in self.raw.items():
            if cols:
                col = np.concatenate(cols) if len(cols) > 1 else cols[0]
                self.absorb(IPSet.from_addresses(col, ipv6=family))
        self.raw, self.nraw = {False: [], True: []}, 0

    def absorb(self, part):
        """Add a set (or the result of another collector)."""
        family = part.is_ipv6
        self.parts[family].append(part)
        self.held[family] += part.nranges
        merged = self.merged[family]
        if self.held[family] > max(1 << 16, merged.nranges if merged is not None else 0):
            self._merge(family)

    def _merge(self, family):
        parts = [p for p in [self.merged[family], *self.parts[family]] if p is not None]
        if parts:
            self.merged[family] = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
        self.parts[family], self.held[family] = [], 0

    def families(self):
        """The IPv4 and the IPv6 set (those not empty), each merged."""
        self._gather()
        for family in (False, True):
            self._merge(family)
        return [p for p in self.merged.values() if p is not None]

    def result(self):
        from ..ipset import IPSet
        sets = self.families()
        if not sets:
            return IPSet()
        return sets[0].union(*sets[1:]) if len(sets) > 1 else sets[0]


def _add(wanted, collectors, batch):
    from ..schema import split_families
    for part in split_families(batch):
        for (_, col), coll in zip(wanted, collectors, strict=True):
            for c in ([col] if col else ["sip", "dip"]):
                coll.add(part, c)


def _parallel(names, columns, wanted, policy):
    """Many files: workers make each run's sets (workers.scan), merged here."""
    from .. import workers
    collectors = [_Collector() for _ in wanted]

    def combine(batches):
        mine = [_Collector() for _ in wanted]
        for batch in batches:
            _add(wanted, mine, batch)
        return [coll.families() for coll in mine]

    for sets in workers.scan(names, columns, policy.apply_policy, combine,
                             families=policy.policy == "mix"):
        for coll, parts in zip(collectors, sets, strict=True):
            for part in parts:
                coll.absorb(part)
    return collectors


def main(opts):
    import sys

    from .. import cli, io
    from ..errors import FlowError
    from ..render import Renderer
    from .settool import write_output
    wanted = [(getattr(opts, attr), col) for attr, col in OUTPUTS if getattr(opts, attr)]
    if not wanted:
        raise FlowError("At least one output file must be given: --sip-file, --dip-file, "
                        "--nhip-file or --any-file")
    to_stdout = [p for p, _ in wanted if p in io.STDOUT_NAMES]
    if len(to_stdout) > 1:
        raise FlowError("Only one output may be the standard output")
    if to_stdout and io._isatty(sys.stdout):
        raise FlowError("will not write binary data to a terminal (stdout)")
    for path, _ in wanted:  # fail before reading anything
        io.check_output(path)
    cli.compression(opts)
    policy = Renderer(opts)
    names = io.input_names(opts.inputs, opts.xargs)
    collectors = [_Collector() for _ in wanted]
    columns = sorted({c for _, c in wanted if c} | ({"sip", "dip"} if any(
        c is None for _, c in wanted) else set())) + ["stime"]
    copy = io.FlowSink(opts.copy_input, cli.output_meta(opts)) if opts.copy_input else None
    metas = []
    if len(names) >= 16 and not copy and not opts.print_filenames and \
            not any(n in io.STDIN_NAMES for n in names):
        # the history of an archive's files is one and the same: the first file's stands
        # for all (as in pyflow-bag)
        metas.append(io.open_flows(names[0]).meta)
        collectors = _parallel(names, columns, wanted, policy)
        names = []
    try:
        for name in names:
            reader = io.open_flows(name)
            if opts.print_filenames:
                sys.stderr.write(f"{reader.name}\n")
            metas.append(reader.meta)
            try:
                for batch in reader.batches(None if copy else columns):
                    if copy:
                        copy.write(batch)
                    _add(wanted, collectors, policy.apply_policy(batch))
            finally:
                reader.close()
        if copy:
            copy.close()
    except BaseException:
        if copy:
            copy.abort()
        raise
    for (path, _), coll in zip(wanted, collectors, strict=True):
        write_output(coll.result(), opts, path, metas)
    return 0
