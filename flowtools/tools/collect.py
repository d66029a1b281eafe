"""pyflow-collect: receive NetFlow v5, v9 and IPFIX and pack it into the archive (rwflowpack)."""

from ..cli import Tool


def _arguments(p):
    g = p.add_argument_group("configuration")
    g.add_argument("--sensor-configuration", metavar="FILE",
                   help="Read probes and sensors from FILE (SiLK's sensor.conf syntax).")
    g.add_argument("--sensor", metavar="NAME",
                   help="Without --sensor-configuration: one sensor NAME (defined in the site "
                        "configuration) reading one probe of --probe-type at --listen.")
    g.add_argument("--probe-type", choices=("netflow-v5", "netflow-v9", "ipfix"),
                   help="The quick probe's type (with --sensor).")
    g.add_argument("--listen", metavar="[HOST:]PORT",
                   help="The quick probe's UDP address (default 127.0.0.1:9995; HOST "
                        "defaults to 127.0.0.1).")
    g.add_argument("--accept-from-host", metavar="HOSTS",
                   help="The quick probe accepts datagrams only from these comma-separated "
                        "hosts.")
    g.add_argument("--flowtype", metavar="CLASS/TYPE", default="all/in",
                   help="The quick sensor stores every record under this flowtype (default "
                        "all/in) unless --internal-blocks is given.")
    g.add_argument("--internal-blocks", metavar="CIDRS",
                   help="The quick sensor packs by the twoway logic with these "
                        "comma-separated CIDR blocks internal and all else external.")
    g = p.add_argument_group("inputs besides the sockets (processed, then the tool exits)")
    g.add_argument("--read-pcap", action="append", default=[], metavar="FILE",
                   help="Decode the UDP datagrams of a pcap or pcapng capture of export "
                        "traffic (repeatable).")
    g.add_argument("--read-datagrams", action="append", default=[], metavar="FILE",
                   help="Decode a file of raw datagrams (repeatable): pyflow-gen's "
                        "length-prefixed datagram file, SiLK's 1464-byte NetFlow v5 blocks, "
                        "or one datagram; gzip-compressed is accepted.")
    g.add_argument("--probe", metavar="NAME",
                   help="The probe that files are read for (default: the probe listening on "
                        "a capture's destination port, else the first probe).")
    g = p.add_argument_group("operation")
    g.add_argument("--flush-timeout", type=float, default=5.0, metavar="SECONDS",
                   help="Write received records to the archive at this interval (default 5).")
    g.add_argument("--stats-interval", type=float, default=60.0, metavar="SECONDS",
                   help="Log the counters at this interval (default 60) and on SIGUSR1.")
    g.add_argument("--log-destination", metavar="DEST", default="stderr",
                   help="Where to log: stderr (default), none, or a file path.")
    g.add_argument("--socket-buffer", metavar="BYTES", default="32m",
                   help="Receive buffer of each socket (default 32m, about a second of "
                        "traffic at 300k records/s; k, m, g suffixes).")
    g.add_argument("--daemon", action="store_true",
                   help="Run in the background (needs --log-destination to be a file).")
    g.add_argument("--pidfile", metavar="FILE",
                   help="Write the process id to FILE (removed at exit).")


TOOL = Tool(
    name="pyflow-collect",
    summary="Collect NetFlow v5, v9 and IPFIX into the hourly archive.",
    description="Receives flow export datagrams over UDP (loopback unless told otherwise), "
                "or reads them from captures and files, decodes NetFlow v5, NetFlow v9 and "
                "IPFIX (templates and options templates per exporter and domain, "
                "variable-length and enterprise elements, IPv4 and IPv6, biflows), assigns "
                "every record a sensor and flowtype by the twoway packing logic of a SiLK "
                "sensor.conf, and appends the records to the archive's hourly files every "
                "--flush-timeout seconds. Files are always complete and valid: killed at "
                "any moment, the collector loses at most the unflushed interval and "
                "continues appending to the same hours when restarted. Bad datagrams are "
                "counted per exporter and logged (a few lines a minute at most). SIGTERM "
                "and SIGINT flush and stop; SIGUSR1 logs the counters: datagrams, records, "
                "bytes, bad datagrams, data for missing templates, lost (flows missing by "
                "the sequence numbers of v5 and IPFIX, export datagrams for v9) and records "
                "dropped for zero packets or bytes.",
    uses=("site", "compression"),
    add_arguments=_arguments,
    examples=["pyflow-collect --data-rootdir=/data --sensor=S0 --listen=127.0.0.1:9995 "
              "--probe-type=netflow-v5",
              "pyflow-collect --data-rootdir=/data --sensor-configuration=sensor.conf",
              "pyflow-collect --data-rootdir=/data --sensor=S0 --probe-type=ipfix "
              "--read-pcap=export.pcap"],
)


def main(opts):
    import os

    from .. import cli
    from ..archive import ArchiveWriter
    from ..collect import packing, sensorconf, server
    from ..errors import FlowError
    from ..flowfile import DEFAULT_LEVEL
    from .sort import parse_size

    root = cli.data_rootdir(opts)
    site = cli.site_config(opts)
    conf = _configuration(opts, sensorconf, FlowError)
    if opts.flush_timeout <= 0 or opts.stats_interval <= 0:
        raise FlowError("--flush-timeout and --stats-interval must be positive")
    rcvbuf = parse_size(opts.socket_buffer, "--socket-buffer")
    if opts.daemon and opts.log_destination in ("stderr", None):
        raise FlowError("--daemon needs --log-destination=FILE (or none)")
    packers = packing.packers(conf, site)
    probes = {name: server.Probe(p, packers.get(name, [])) for name, p in conf.probes.items()}
    files = bool(opts.read_pcap or opts.read_datagrams)
    if opts.probe is not None and opts.probe not in probes:
        raise FlowError(f"unknown --probe '{opts.probe}'")
    bindings = {}
    if not files:
        for p in probes.values():
            if p.conf.port is not None:
                host = p.conf.listen_as_host or "127.0.0.1"
                bindings.setdefault((host, p.conf.port), []).append(p)
        coll_polls = [p for p in probes.values() if p.conf.poll_directory]
        if not bindings and not coll_polls:
            raise FlowError("no probe listens on a port or polls a directory; give "
                            "--read-pcap or --read-datagrams to read files")
    try:
        os.makedirs(root, exist_ok=True)
    except OSError as exc:
        raise FlowError(f"cannot create --data-rootdir {root}: {exc.strerror}") from None
    method, level = cli.compression(opts)
    meta = cli.output_meta(opts) if hasattr(opts, "invocation_strip") else \
        {"history": [opts.invocation], "notes": []}

    def writer():
        return ArchiveWriter(root, site, meta, method, level or DEFAULT_LEVEL)

    log = server.Log(opts.log_destination, opts.tool_name)
    coll = server.Collector(probes, None, log, opts.flush_timeout, opts.stats_interval)
    bound = coll.bind(bindings, rcvbuf) if bindings else []
    if opts.daemon:
        _daemonize()
    if opts.pidfile:
        _write_pidfile(opts.pidfile, FlowError)
    coll.sink = server.Sink(writer, log)
    try:
        if files:
            _read_files(opts, coll, probes, FlowError)
            coll.flush()
        else:
            coll.run_sockets(bound)
    finally:
        coll.sink.close()
        coll.stats()
        t = coll.totals()
        log(f"stopped: {t['records']} records from {t['datagrams']} datagrams "
            f"({t['bad']} bad); {coll.sink.records} records written")
        if opts.pidfile:
            try:
                os.unlink(opts.pidfile)
            except OSError:
                pass
    return 1 if coll.sink.errors and coll.sink.retry else 0


def _configuration(opts, sensorconf, FlowError):
    if opts.sensor_configuration:
        if opts.sensor or opts.probe_type or opts.listen or opts.internal_blocks:
            raise FlowError("--sensor-configuration cannot be combined with --sensor, "
                            "--probe-type, --listen or --internal-blocks")
        return sensorconf.load(opts.sensor_configuration)
    if not opts.sensor or not opts.probe_type:
        raise FlowError("give --sensor-configuration, or --sensor and --probe-type")
    host, port = "127.0.0.1", 9995
    if opts.listen:
        h, sep, p = opts.listen.rpartition(":")
        host = (h.strip("[]") or host) if sep else host
        if not p.isdigit() or not 0 < int(p) < 65536:
            raise FlowError(f"invalid --listen '{opts.listen}': want [HOST:]PORT")
        port = int(p)
    probe = sensorconf.Probe(opts.sensor, opts.probe_type, port=port, protocol="udp",
                             listen_as_host=host)
    if opts.accept_from_host:
        probe.accept_from = [h for h in opts.accept_from_host.split(",") if h]
    sensor = sensorconf.Sensor(opts.sensor, probes=[opts.sensor], where="--sensor")
    if opts.internal_blocks:
        from ..addrs import parse_cidr_list
        parse_cidr_list(opts.internal_blocks, "--internal-blocks")
        sensor.ipblocks = {"internal": opts.internal_blocks.split(",")}
    else:
        sensor.fixed_flowtype = opts.flowtype
        if "/" not in opts.flowtype:
            raise FlowError(f"invalid --flowtype '{opts.flowtype}': want CLASS/TYPE")
    return sensorconf.SensorConfig(probes={probe.name: probe}, sensors=[sensor])


def _read_files(opts, coll, probes, FlowError):
    from ..collect import pcap

    def probe_for(dport=None):
        if opts.probe:
            return probes[opts.probe]
        for p in probes.values():
            if dport is not None and p.conf.port == dport:
                return p
        return next(iter(probes.values()))

    for path in opts.read_pcap:
        for host, _, dport, payload in pcap.read(path):
            probe = probe_for(dport)
            if probe.accept is not None and host not in probe.accept:
                coll.refused += 1
                continue
            probe.pending.append((host, payload))
            if len(probe.pending) >= 4096:
                coll.decode_pending()
    for path in opts.read_datagrams:
        coll.run_datagrams(probe_for(), "file", read_datagram_file(path))


def read_datagram_file(path, FlowError=None):
    """The datagrams of a file (see flowtools.collect.server.read_datagram_file)."""
    from ..collect.server import read_datagram_file as read
    return read(path)


def _daemonize():
    import os
    import sys
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    sys.stdout = open(os.devnull, "w")
    sys.stderr = open(os.devnull, "w")


def _write_pidfile(path, FlowError):
    import os
    try:
        with open(path, "w") as f:
            f.write(f"{os.getpid()}\n")
    except OSError as exc:
        raise FlowError(f"cannot write --pidfile {path}: {exc.strerror}") from None
