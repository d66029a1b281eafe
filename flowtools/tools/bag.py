"""pyflow-bag: count flow records into bags by key (rwbag)."""

from ..cli import Tool

LEGACY_KEYS = {"sip": "sIPv4", "dip": "dIPv4", "nhip": "nhIPv4", "sport": "sPort",
               "dport": "dPort", "proto": "protocol", "sensor": "sensor", "input": "input",
               "output": "output"}
LEGACY_COUNTERS = {"flows": "records", "packets": "sum-packets", "bytes": "sum-bytes"}


def _arguments(p):
    p.add_argument("--bag-file", action="append", default=[], metavar="KEY,COUNTER,PATH",
                   help="Count records by KEY into a bag of COUNTER values written to PATH "
                        "(may repeat; all bags are built in one pass). KEY: sIPv4, sIPv6, "
                        "dIPv4, dIPv6, nhIPv4, nhIPv6, any-IPv4, any-IPv6, sPort, dPort, "
                        "any-port, protocol, sensor, input, output, any-snmp, flags, "
                        "initialFlags, sessionFlags, attributes, application, class, type, "
                        "icmpTypeCode, packets, bytes, sTime, eTime, duration, any-time "
                        "(times in seconds), or several joined by '+' for a composite key "
                        "(sIP+dPort; pyflow format only). COUNTER: records (flows), "
                        "sum-packets (packets), sum-bytes (bytes), sum-duration (seconds).")
    for k in LEGACY_KEYS:
        for c in LEGACY_COUNTERS:
            p.add_argument(f"--{k}-{c}", metavar="PATH",
                           help=f"Same as --bag-file={LEGACY_KEYS[k]},"
                                f"{LEGACY_COUNTERS[c]},PATH.")
    p.add_argument("--output-format", choices=("pyflow", "silk"), default=None,
                   help="Format of the bag files: pyflow (default) or silk (SiLK's Bag "
                        "format, which SiLK's tools read). Default from "
                        "PYFLOW_BAG_FORMAT.")
    p.add_argument("--ipv6-policy", metavar="POLICY",
                   help="Which records to count: ignore (IPv4 only), asv4 (IPv4 and "
                        "IPv6 in ::ffff:0:0/96 as IPv4), mix (default), force (IPv4 as "
                        "IPv6: IP bags hold IPv6 keys), only (IPv6 only).")


TOOL = Tool(
    name="pyflow-bag",
    summary="Build bags (key -> counter) from flow records.",
    description="Reads flow records (pyflow or SiLK files and streams, or --xargs lists) "
                "and builds one bag per --bag-file (or legacy --sip-flows... switch) in a "
                "single pass: for each distinct key the number of records, or the sum of "
                "their packets, bytes or durations. Counters are unsigned 64-bit and "
                "saturate at 18446744073709551615 with a warning. An IPv4 address bag "
                "becomes an IPv6 bag when an IPv6 record arrives. Only the columns the "
                "keys and counters need are decoded.",
    uses=("inputs", "compression", "notes", "site", "filenames", "copy-input"),
    add_arguments=_arguments,
    examples=["pyflow-bag --sip-flows=sources.bag flows.pf",
              "pyflow-filter --proto=6 --pass=stdout DIR | pyflow-bag "
              "--bag-file=sIPv4,sum-bytes,- | pyflow-bagcat",
              "pyflow-bag --bag-file=sIP+dPort,records,pairs.bag --xargs=files.txt"],
)

KEY_NAMES = ("sIPv4", "sIPv6", "dIPv4", "dIPv6", "nhIPv4", "nhIPv6", "any-IPv4", "any-IPv6",
             "sPort", "dPort", "any-port", "protocol", "sensor", "input", "output",
             "any-snmp", "flags", "initialFlags", "sessionFlags", "attributes",
             "application", "class", "type", "icmpTypeCode", "packets", "bytes", "sTime",
             "eTime", "duration", "any-time")
KEY_ALIASES = {"sip": "sIPv4", "dip": "dIPv4", "nhip": "nhIPv4", "any-ip": "any-IPv4",
               "proto": "protocol", "stime": "sTime", "etime": "eTime", "in": "input",
               "out": "output", "pkts": "packets"}
COUNTER_NAMES = ("records", "sum-packets", "sum-bytes", "sum-duration")
COUNTER_ALIASES = {"flows": "records", "packets": "sum-packets", "bytes": "sum-bytes",
                   "duration": "sum-duration"}

# key name -> the record columns it reads
COLUMNS = {
    "sIPv4": ["sip"], "sIPv6": ["sip"], "dIPv4": ["dip"], "dIPv6": ["dip"],
    "nhIPv4": ["nhip"], "nhIPv6": ["nhip"], "any-IPv4": ["sip", "dip"],
    "any-IPv6": ["sip", "dip"], "sPort": ["sport"], "dPort": ["dport"],
    "any-port": ["sport", "dport"], "protocol": ["protocol"], "sensor": ["sensor"],
    "input": ["input"], "output": ["output"], "any-snmp": ["input", "output"],
    "flags": ["flags"], "initialFlags": ["initflags"], "sessionFlags": ["sessflags"],
    "attributes": ["attributes"], "application": ["application"], "class": ["flowtype"],
    "type": ["flowtype"], "icmpTypeCode": ["protocol", "dport"], "packets": ["packets"],
    "bytes": ["bytes"], "sTime": ["stime"], "eTime": ["stime", "duration"],
    "duration": ["duration"], "any-time": ["stime", "duration"],
}
COUNTER_COLUMNS = {"records": [], "sum-packets": ["packets"], "sum-bytes": ["bytes"],
                   "sum-duration": ["duration"]}


def _name(token, names, aliases, option, text):
    from .. import bag
    from ..errors import FlowError
    low = token.strip().lower()
    if low in aliases:
        return aliases[low]
    what = f"{option} {'key' if names is KEY_NAMES else 'counter'} in '{text}'"
    exact = [n for n in names if n.lower() == low]
    if exact:
        return exact[0]
    # unique prefixes of the names and their aliases ('packet' is 'packets', sum-packets)
    hits = {n for n in names if n.lower().startswith(low)} | \
        {t for a, t in aliases.items() if a.startswith(low)} if low else set()
    if len(hits) == 1:
        return hits.pop()
    if hits:
        raise FlowError(f"invalid {what} value '{token}': ambiguous "
                        f"({', '.join(sorted(hits))})")
    return bag.lookup_type(token, what, names)


class Spec:
    """One bag to build: key components, counter, output path."""

    def __init__(self, key, counter, path):
        self.key, self.counter, self.path = tuple(key), counter, path
        self.ipv6 = any(k in ("sIPv6", "dIPv6", "nhIPv6", "any-IPv6") for k in self.key)
        # a composite key is IPv4 or IPv6 as a whole
        if self.ipv6:
            from ..bag import TO_V6
            self.key = tuple(TO_V6.get(k, k) for k in self.key)

    def columns(self):
        cols = [c for k in self.key for c in COLUMNS[k]] + COUNTER_COLUMNS[self.counter]
        return list(dict.fromkeys(cols))


def parse_spec(text, option="--bag-file"):
    from ..errors import FlowError
    parts = text.split(",", 2)
    if len(parts) != 3 or not parts[2]:
        raise FlowError(f"invalid {option} value '{text}': expected KEY,COUNTER,PATH")
    keys = [_name(t, KEY_NAMES, KEY_ALIASES, option, text) for t in parts[0].split("+")]
    if len(set(keys)) != len(keys):
        raise FlowError(f"invalid {option} value '{text}': a key field is repeated")
    counter = _name(parts[1], COUNTER_NAMES, COUNTER_ALIASES, option, text)
    return Spec(keys, counter, parts[2])


def specs(opts):
    from ..errors import FlowError
    out = [parse_spec(t) for t in opts.bag_file]
    for k in LEGACY_KEYS:
        for c in LEGACY_COUNTERS:
            path = getattr(opts, f"{k}_{c}".replace("-", "_"))
            if path is not None:
                out.append(Spec([LEGACY_KEYS[k]], LEGACY_COUNTERS[c], path))
    if not out:
        raise FlowError("no bags requested: give --bag-file=KEY,COUNTER,PATH (or a "
                        "legacy switch such as --sip-flows=PATH)")
    stdout = [s for s in out if s.path in ("-", "stdout")]
    if len(stdout) > 1:
        raise FlowError("only one bag may be written to the standard output")
    return out


# --- keys of a batch -----------------------------------------------------------------------


def _ip(col, ipv6):
    import numpy as np

    from .. import schema
    if ipv6:
        return col if col.ndim == 2 else schema.v4_to_v6(col)
    if col.ndim == 2:
        return (col[:, 1] & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    return col


def _alternatives(name, batch, ipv6, classes):
    """The values of one key component: a list of columns (two for any-* keys)."""
    import numpy as np

    from .. import fields
    u32 = np.uint32
    if name in ("sIPv4", "sIPv6"):
        return [_ip(batch["sip"], ipv6)]
    if name in ("dIPv4", "dIPv6"):
        return [_ip(batch["dip"], ipv6)]
    if name in ("nhIPv4", "nhIPv6"):
        return [_ip(batch["nhip"], ipv6)]
    if name in ("any-IPv4", "any-IPv6"):
        return [_ip(batch["sip"], ipv6), _ip(batch["dip"], ipv6)]
    if name == "any-port":
        return [batch["sport"], batch["dport"]]
    if name == "any-snmp":
        return [batch["input"], batch["output"]]
    if name in ("packets", "bytes"):
        return [np.minimum(batch[name], np.uint64(2**32 - 1)).astype(u32)]
    if name == "sTime":
        return [(batch["stime"] // 1000).astype(u32)]
    if name == "eTime":
        return [((batch["stime"] + batch["duration"]) // 1000).astype(u32)]
    if name == "any-time":
        return [(batch["stime"] // 1000).astype(u32),
                ((batch["stime"] + batch["duration"]) // 1000).astype(u32)]
    if name == "duration":
        return [batch["duration"] // u32(1000)]
    if name == "icmpTypeCode":
        return [fields.BY_NAME["icmptypecode"].values(batch)]
    if name == "class":
        return [classes[batch["flowtype"]]]
    column = {"sPort": "sport", "dPort": "dport", "initialFlags": "initflags",
              "sessionFlags": "sessflags", "type": "flowtype"}
    return [batch[column.get(name, name)]]


def batch_keys(spec, layout, batch, classes=None):
    """Packed keys of a batch for a spec (any-* keys give each record several keys) and
    the matching counter values (None for the records counter)."""
    import itertools

    import numpy as np
    alts = [_alternatives(k, batch, layout.ipv6, classes) for k in spec.key]
    if spec.counter == "records":
        ctr = None
    elif spec.counter == "sum-packets":
        ctr = batch["packets"]
    elif spec.counter == "sum-bytes":
        ctr = batch["bytes"]
    else:
        ctr = (batch["duration"] // np.uint32(1000)).astype(np.uint64)
    combos = list(itertools.product(*alts))
    if len(combos) == 1:
        cols = combos[0]
        if len(cols) == 1 and layout.narrow:
            return cols[0].astype(np.uint32, copy=False), ctr
        return layout.pack(list(cols)), ctr
    keys = np.concatenate([layout.pack(list(c)) for c in combos])
    return keys, None if ctr is None else np.tile(ctr, len(combos))


def _class_table(opts):
    """flowtype id -> class number (the class's position in the site configuration)."""
    import numpy as np

    from .. import cli
    table = np.arange(256, dtype=np.uint32)
    config = cli.site_config(opts, required=False)
    if config is not None:
        names = list(config.classes)
        for ft in config.flowtypes.values():
            if ft.class_name in names:
                table[ft.id] = names.index(ft.class_name)
    return table


# --- the IPv6 policy -----------------------------------------------------------------------


def apply_policy(batch, policy):
    import numpy as np

    from .. import schema
    if policy == "mix":
        return batch
    v6 = "ipv6" in batch
    if policy == "force":
        return batch
    if policy == "only":
        return schema.take(batch, batch["ipv6"]) if v6 else \
            {k: v[:0] for k, v in batch.items()}
    if not v6:
        return batch
    if policy == "ignore":
        return schema.to_v4(schema.take(batch, ~batch["ipv6"]))
    keep = ~batch["ipv6"]
    mapped = np.ones(len(keep), bool)
    for name in schema.IP_COLUMNS:
        if name in batch:
            col = batch[name]
            mapped &= (col[:, 0] == 0) & ((col[:, 1] >> np.uint64(32)) == 0xFFFF)
    out = schema.take(batch, keep | mapped)
    out["ipv6"] = np.zeros(len(out["ipv6"]), bool)
    return schema.to_v4(out)


POLICIES = ("ignore", "asv4", "mix", "force", "only")


def _policy(opts):
    from .. import io
    from ..errors import FlowError
    value = (opts.ipv6_policy or io.env("IPV6_POLICY", "mix")).lower()
    hits = [p for p in POLICIES if p.startswith(value)] if value else []
    if len(hits) != 1:
        raise FlowError(f"invalid --ipv6-policy '{value}': choose ignore, asv4, mix, force "
                        "or only")
    return hits[0]


# --- main -------------------------------------------------------------------------------


def build(specs_, batches, classes=None, policy="mix"):
    """Builders filled from an iterable of batches (the library entry point)."""
    import numpy as np

    from .. import bag
    builders = [bag.Builder(s.key, s.counter, s.ipv6 or policy == "force")
                for s in specs_]
    ip_keyed = [any(k in bag.IP_TYPES for k in s.key) for s in specs_]
    for batch in batches:
        batch = apply_policy(batch, policy)
        if not len(next(iter(batch.values()))):
            continue
        if "ipv6" in batch:
            anyv6 = bool(batch["ipv6"].any())
        for spec, b, ipk in zip(specs_, builders, ip_keyed, strict=True):
            if ipk and not b.ipv6 and "ipv6" in batch and anyv6:
                b.promote_v6()
            layout = b.layout
            if b.split and b.ipv6 and "ipv6" not in batch:
                # an IPv4 batch into an IPv6 address bag: its 32-bit keys go to the bag's
                # IPv4 part as they are, rather than widened to 128 bits and back
                layout = bag.Layout(b.key, False)
            keys, ctr = batch_keys(spec, layout, batch, classes)
            if ctr is not None:
                ctr = np.asarray(ctr, np.uint64)
            b.add(keys, ctr)
    return builders


def merge_into(builders, bags):
    """Add partial bags (one per builder, as build() makes them, or as a worker sends
    them: _Partial) into the builders."""
    for b, part in zip(builders, bags, strict=True):
        if isinstance(part, _Partial):
            part.add_to(b)
            continue
        if part.ipv6 and not b.ipv6:
            b.promote_v6()
        elif b.ipv6 and not part.ipv6:
            part = part.to_v6()
        b.saturated |= part.saturated
        b.add_counts(part.keys, part.counters)
    return builders


def _fresh(wanted, policy):
    from .. import bag
    return [bag.Builder(s.key, s.counter, s.ipv6 or policy == "force") for s in wanted]


class _Partial:
    """A worker's bag for a run of files, in the builder's own parts: an IPv6 address
    bag's IPv4 keys stay 32-bit, and counters that fit go as 32-bit values. The parent
    holds several of these while it merges, so they are kept small (a third of a joined
    IPv6 bag's 24 bytes per key)."""

    def __init__(self, builder):
        import numpy as np
        builder.flush()
        self.ipv6, self.saturated = builder.ipv6, builder.saturated
        self.parts = []
        for keys, counters in ((builder.keys4, builder.counters4),
                               (builder.keys, builder.counters)):
            if len(keys):
                if int(counters.max()) < 1 << 32:
                    counters = counters.astype(np.uint32)
                self.parts.append((keys, counters))

    def add_to(self, builder):
        import numpy as np

        from ..bag import Bag
        if self.ipv6 and not builder.ipv6:
            builder.promote_v6()
        builder.saturated |= self.saturated
        for keys, counters in self.parts:
            counters = counters.astype(np.uint64)
            if builder.ipv6 and not self.ipv6:
                part = Bag(builder.key, builder.counter, False, keys, counters).to_v6()
                keys, counters = part.keys, part.counters
            builder.add_counts(keys, counters)


def _parallel_builders(names, columns, wanted, classes, policy):
    """Many files: worker processes reduce runs of them to partial bags (workers.scan)."""
    from .. import workers
    builders = _fresh(wanted, policy)

    def combine(batches):
        # one set of builders for the whole run: a builder per block had cost the workers
        # more than decoding the blocks
        return [_Partial(b) for b in build(wanted, batches, classes, policy)]

    # each address family apart: an IPv4 batch's addresses stay 32-bit (decoding.py)
    for bags in workers.scan(names, columns, _same, combine, streamed=True, families=True):
        merge_into(builders, bags)
    return builders


def _same(batch):
    return batch


def main(opts):
    import sys

    from .. import bag, cli, io
    from ..decoding import decoded_runs
    from ..errors import FlowError
    wanted = specs(opts)
    fmt = opts.output_format or io.env("BAG_FORMAT", "pyflow")
    if fmt not in ("pyflow", "silk"):
        raise FlowError(f"invalid bag format '{fmt}': choose pyflow or silk")
    if fmt == "silk":
        for s in wanted:
            if len(s.key) > 1:
                raise FlowError(f"a bag with the composite key {'+'.join(s.key)} cannot be "
                                "written as a SiLK Bag (SiLK bags have one key field); use "
                                "--output-format=pyflow")
    method, level = cli.compression(opts)
    policy = _policy(opts)
    for s in wanted:  # fail before reading anything
        io.check_output(s.path)
    names = io.input_names(opts.inputs, opts.xargs)
    columns = list(dict.fromkeys(c for s in wanted for c in s.columns())) or ["stime"]
    classes = _class_table(opts) if any("class" in s.key for s in wanted) else None
    metas = []
    copy = None

    def readers():
        for name in names:
            reader = io.open_flows(name)
            if opts.print_filenames:
                sys.stderr.write(f"{reader.name}\n")
            metas.append(reader.meta)
            yield reader

    def batches():
        nonlocal copy
        want = None if opts.copy_input else columns
        # many small blocks (a filtered archive on a pipe) are decoded many at once
        for batch in decoded_runs(readers(), want, families=not opts.copy_input):
            if opts.copy_input:
                if copy is None:
                    copy = io.FlowSink(opts.copy_input, cli.output_meta(opts, metas),
                                       method, level)
                copy.write(batch)
            yield batch

    parallel = len(names) >= 16 and not opts.copy_input and not opts.print_filenames \
        and not any(n in io.STDIN_NAMES for n in names)
    try:
        if parallel:
            metas.append(io.open_flows(names[0]).meta)
            builders = _parallel_builders(names, columns, wanted, classes, policy)
        else:
            builders = build(wanted, batches(), classes, policy)
        if opts.copy_input and copy is None:
            copy = io.FlowSink(opts.copy_input, cli.output_meta(opts, metas), method, level)
        if copy is not None:
            copy.close()
    except BaseException:
        if copy is not None:
            copy.abort()
        raise
    meta = cli.output_meta(opts, metas)
    silk_comp = "none" if method == "none" else "zlib"
    for spec, b in zip(wanted, builders, strict=True):
        b.flush()
        if b.saturated:
            sys.stderr.write(f"{opts.tool_name}: warning: a counter of {spec.path} "
                             "overflowed; it is held at 18446744073709551615\n")
        bag.write_bag(b, spec.path, fmt, meta["history"], meta["notes"],
                      compression=silk_comp if fmt == "silk" else
                      ("none" if method == "none" else "zstd"))
    return 0
