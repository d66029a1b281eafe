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
    """The distinct addresses of one column, one set per batch, merged at the end."""

    def __init__(self):
        self.parts = []

    def add(self, batch, column):
        from ..ipset import IPSet
        col = batch[column]
        if "ipv6" not in batch:
            self.parts.append(IPSet.from_addresses(col))
            return
        v6 = batch["ipv6"]
        if (~v6).any():  # IPv4 records held as ::ffff:a.b.c.d
            self.parts.append(IPSet.from_addresses(col[~v6, 1].astype("uint32")))
        if v6.any():
            self.parts.append(IPSet.from_addresses(col[v6], ipv6=True))

    def result(self):
        from ..ipset import IPSet
        if not self.parts:
            return IPSet()
        return self.parts[0].union(*self.parts[1:]) if len(self.parts) > 1 else \
            self.parts[0]


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
                    batch = policy.apply_policy(batch)
                    for (_, col), coll in zip(wanted, collectors, strict=True):
                        for c in ([col] if col else ["sip", "dip"]):
                            coll.add(batch, c)
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
