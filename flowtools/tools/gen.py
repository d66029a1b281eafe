"""pyflow-gen: generate realistic, seeded flow traffic into an archive, a stream or NetFlow v5."""

from ..cli import Tool


def _arguments(p):
    p.add_argument("--flows", type=int, default=1_000_000, metavar="N",
                   help="Number of flow records to generate (default 1000000).")
    p.add_argument("--seed", type=int, default=1, metavar="S",
                   help="Seed of the random generator; the same seed gives the same flows.")
    p.add_argument("--start-date", default="2024/01/01", metavar="YYYY/MM/DD[:HH]",
                   help="First hour of traffic (UTC; default 2024/01/01:00).")
    p.add_argument("--hours", type=int, default=72, metavar="H",
                   help="Hours of traffic, with a daily cycle (default 72).")
    p.add_argument("--sensors", default="S0,S1,S2", metavar="LIST",
                   help="Sensors (names or IDs from the site configuration) to spread the "
                        "traffic over (default S0,S1,S2).")
    p.add_argument("--ipv6-fraction", type=float, default=0.02, metavar="F",
                   help="Share of flows that are IPv6 (default 0.02).")
    p.add_argument("--netflow-v5", metavar="HOST:PORT",
                   help="Also send the IPv4 flows as NetFlow v5 export datagrams over UDP "
                        "to HOST:PORT.")
    p.add_argument("--netflow-v5-file", metavar="PATH",
                   help="Also write the IPv4 flows as NetFlow v5 datagrams to PATH (each "
                        "prefixed by its 2-byte length).")
    p.add_argument("--rate", type=float, metavar="FLOWS_PER_SEC",
                   help="Pace NetFlow v5 sending to this many flows per second.")
    p.add_argument("--no-archive", action="store_true",
                   help="Only export NetFlow v5; write no archive or stream.")


TOOL = Tool(
    name="pyflow-gen",
    summary="Generate realistic flow traffic.",
    description="Generates seeded traffic of a monitored /22 with about 100 active hosts: "
                "heavy-tailed outside sources, scanners sweeping /24s on 445, 1433, 3389, 22 "
                "and 23, answered connections as flows in both directions, DNS, NTP, game "
                "and peer-to-peer UDP, ICMP, some IPv6, several sensors and types, and a "
                "daily cycle. Writes into the archive under --data-rootdir, or a single "
                "stream to --output-path, and can send the same flows as NetFlow v5.",
    uses=("output", "site", "compression", "notes"),
    add_arguments=_arguments,
    examples=["pyflow-gen --data-rootdir=/tmp/demo --flows=1000000 --seed=7",
              "pyflow-gen --flows=1000 --output-path=- | pyflow-fileinfo -",
              "pyflow-gen --flows=100000 --no-archive --netflow-v5=127.0.0.1:9995 "
              "--rate=100000"],
)


def main(opts):
    import sys

    from .. import cli, dates, io
    from ..errors import FlowError
    from ..gen import generate

    if opts.flows < 0 or opts.hours < 1:
        raise FlowError("--flows must be at least 0 and --hours at least 1")
    if not 0 <= opts.ipv6_fraction <= 1:
        raise FlowError("--ipv6-fraction must be between 0 and 1")
    config = cli.site_config(opts)
    start_ms, _ = dates.parse_date(opts.start_date)
    start_ms -= start_ms % 3_600_000
    sensors = [config.sensor_id(s) for s in opts.sensors.split(",") if s]
    cls = config.default_class or next(iter(config.classes))
    flowtypes = {}
    for ft in config.flowtypes.values():
        if ft.class_name == cls:
            flowtypes[ft.type_name] = ft.id
    missing = {"in", "out"} - set(flowtypes)
    if missing:
        raise FlowError(f"class '{cls}' of {config.path} lacks the types {sorted(missing)}")
    meta = cli.output_meta(opts)
    method, level = cli.compression(opts)
    root = cli.data_rootdir(opts, required=False)
    explicit_output = opts.output_path != "-"
    sinks = []
    if not opts.no_archive:
        if root and not explicit_output:
            from ..archive import ArchiveWriter
            from ..flowfile import DEFAULT_LEVEL
            sinks.append(ArchiveWriter(root, config, meta, method, level or DEFAULT_LEVEL,
                                       processes=True))
        else:
            sinks.append(io.FlowSink(opts.output_path, meta, method, level))
    v5 = _V5Exporter(opts) if (opts.netflow_v5 or opts.netflow_v5_file) else None
    total = 0
    try:
        for _, batch in generate(opts.seed, opts.flows, start_ms, opts.hours, sensors,
                                 flowtypes, ipv6_fraction=opts.ipv6_fraction):
            for sink in sinks:
                sink.write(batch)
            if v5:
                v5.send(batch)
            total += len(batch["stime"])
        for sink in sinks:
            sink.close()
    except BaseException:
        for sink in sinks:
            if hasattr(sink, "abort"):
                sink.abort()
        raise
    finally:
        if v5:
            v5.close()
    if opts.verbose:
        sys.stderr.write(f"{opts.tool_name}: {total} flows generated\n")
        if v5:
            sys.stderr.write(f"{opts.tool_name}: {v5.sent} flows in {v5.datagrams} NetFlow "
                             f"v5 datagrams ({v5.skipped} IPv6 flows not exportable)\n")


class _V5Exporter:
    def __init__(self, opts):
        from ..errors import FlowError
        self.target = None
        self.file = None
        self.rate = opts.rate
        self.schedule = {}  # the pacing holds across batches
        self.sequence = self.sent = self.datagrams = self.skipped = 0
        if opts.netflow_v5:
            host, _, port = opts.netflow_v5.rpartition(":")
            if not host or not port.isdigit():
                raise FlowError(f"invalid --netflow-v5 '{opts.netflow_v5}': want HOST:PORT")
            self.target = (host.strip("[]"), int(port))
        if opts.netflow_v5_file:
            from ..io import Output
            self.file = Output(opts.netflow_v5_file)

    def send(self, batch):
        from .. import netflow5
        datagrams, self.sequence, skipped = netflow5.encode_v5(batch, sequence=self.sequence)
        self.skipped += skipped
        self.sent += len(batch["stime"]) - skipped
        self.datagrams += len(datagrams)
        if self.target:
            netflow5.send_udp(datagrams, self.target[0], self.target[1], rate=self.rate,
                              schedule=self.schedule)
        if self.file:
            netflow5.write_datagrams(datagrams, self.file.f)

    def close(self):
        if self.file:
            self.file.commit()
