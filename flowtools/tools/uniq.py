"""pyflow-uniq: bin flow records by a key and print each bin's volume (rwuniq).

The switch parsing and text layout shared with pyflow-stats live here too (``Binning``);
the grouping itself is flowtools.aggregate.
"""

from ..cli import Tool

VALUE_NAMES = (("Bytes", "bytes"), ("Packets", "packets"), ("Records", "records"),
               ("sTime-Earliest", "stime_min"), ("eTime-Latest", "etime_max"),
               ("sIP-Distinct", "sip"), ("dIP-Distinct", "dip"), ("Distinct", None))
VALUE_WIDTHS = {"records": 10, "packets": 15, "bytes": 20, "stime_min": 19, "etime_max": 19}
TITLES = {v: t for t, v in VALUE_NAMES if v in VALUE_WIDTHS}
LEGACY = ("bytes", "packets", "flows", "sip_distinct", "dip_distinct")
UINT64_MAX = (1 << 64) - 1
TEXT_ROWS = 1 << 14   # IPv6 text of a slice takes ~700 B per row at its peak
SILK_OCTETS = {"packets": 4, "bytes": 4, "in": 2, "out": 2}   # wider in pyflow's keys
VALUE_HELP = {"bytes": "Sum of bytes for all flows in the group",
              "packets": "Sum of packets for all flows in the group",
              "records": "Number of flow records in the group. Alias: Flows",
              "stime_min": "Minimum starting time for flows in the group",
              "etime_max": "Maximum ending time for flows in the group",
              "sip": "Number of distinct source IPs in the group",
              "dip": "Number of distinct destination IPs in the group",
              None: "Append a colon and a key field (Distinct:FIELD) to count the "
                    "distinct values of that field in the group"}


def add_binning_arguments(p, uniq=True):
    """Switches rwuniq and rwstats share (help written once)."""
    from ..render import add_text_options
    p.add_argument("--fields", metavar="FIELDS",
                   help="The key: fields by name, alias or number (see --help-fields).")
    p.add_argument("--values", metavar="VALUES",
                   help="Aggregate values per bin, comma separated: Records (alias Flows), "
                        "Packets, Bytes" + (", sTime-Earliest, eTime-Latest" if uniq else "")
                   + ", sIP-Distinct, dIP-Distinct and Distinct:FIELD for any key field "
                     "(default Records).")
    p.add_argument("--help-fields", action="store_true",
                   help="Describe the key fields and values, and exit.")
    p.add_argument("--presorted-input", action="store_true",
                   help="The inputs are each sorted by the --fields key (pyflow-sort "
                        "--fields with the same fields); an input that is not is an error.")
    p.add_argument("--bin-time", nargs="?", const="", metavar="SECONDS",
                   help="Put sTime and eTime keys on SECONDS boundaries (default 60; "
                        "fractions keep milliseconds).")
    p.add_argument("--temp-directory", metavar="DIR",
                   help="Directory for partial results when the bins outgrow memory "
                        "(default SILK_TMPDIR, TMPDIR or /tmp).")
    p.add_argument("--output-path", metavar="PATH", default="-",
                   help="Write the text to PATH instead of the standard output.")
    p.add_argument("--pager", metavar="PROG",
                   help="Page the output through PROG when it goes to a terminal.")
    add_text_options(p)


def _arguments(p):
    add_binning_arguments(p)
    p.add_argument("--threshold", action="append", default=[], metavar="VALUE=MIN[-MAX]",
                   help="Print only the bins whose VALUE lies in MIN-MAX (MIN alone: no "
                        "maximum); may be repeated.")
    p.add_argument("--sort-output", action="store_true",
                   help="Print the bins in key order (they always are in pyflow).")
    g = p.add_argument_group("legacy value switches")
    for name, title in (("bytes", "Bytes"), ("packets", "Packets"), ("flows", "Records"),
                        ("sip-distinct", "sIP-Distinct"), ("dip-distinct", "dIP-Distinct")):
        g.add_argument(f"--{name}", nargs="?", const="", metavar="MIN[-MAX]",
                       help=f"Add {title} to --values; with MIN[-MAX], as "
                            f"--threshold={title}=MIN[-MAX].")
    g.add_argument("--stime", action="store_true", help="Add sTime-Earliest to --values.")
    g.add_argument("--etime", action="store_true", help="Add eTime-Latest to --values.")
    g.add_argument("--all-counts", action="store_true",
                   help="Add Bytes, Packets, Records, sTime-Earliest and eTime-Latest.")


TOOL = Tool(
    name="pyflow-uniq",
    summary="Bin flow records by a key and print each bin's volume.",
    description="Reads flow records, groups them by the --fields key and prints, for every "
                "bin, the key and the --values (record count, packet and byte sums, "
                "earliest start, latest end, distinct counts of fields) in rwuniq's "
                "layout, in key order. --threshold keeps the bins whose values lie in a "
                "range. Bins beyond memory are merged through --temp-directory.",
    uses=("inputs", "site", "filenames", "copy-input"),
    add_arguments=_arguments,
    examples=["pyflow-uniq --fields=sip --values=records,bytes flows.pf",
              "pyflow-uniq --fields=dport --values=distinct:sip --threshold=records=100 f.pf",
              "pyflow-uniq --fields=stime --bin-time=3600 --values=bytes flows.pf"],
)


class Binning:
    """The parsed --fields/--values/--threshold switches and the text of bins."""

    def __init__(self, opts, uniq=True, thresholds=()):
        from .. import aggregate, fields
        from ..errors import FlowError
        self.opts, self.uniq = opts, uniq
        if not opts.fields:
            raise FlowError("the --fields switch is required")
        try:
            keys = fields.parse_list(opts.fields)
        except FlowError:
            titles = {t.lower() for t, _ in VALUE_NAMES} | {"flows"}
            for token in opts.fields.split(","):
                if token.strip().lower().partition(":")[0] not in titles:
                    continue
                try:
                    fields.find(token)
                    continue
                except FlowError:
                    pass
                raise FlowError(f"invalid --fields value '{token.strip()}': a value, not a "
                                "key field (name it in --values)") from None
            raise
        if len({f.name for f in keys}) < len(keys):
            raise FlowError(f"invalid --fields '{opts.fields}': a field is named twice")
        names = {f.name for f in keys}
        if "icmpTypeCode" in names and names & {"iType", "iCode"}:
            raise FlowError("invalid --fields: may not mix icmpTypeCode with iType or iCode")
        self.keys = []
        for f in keys:
            self.keys += [fields.find("iType"), fields.find("iCode")] \
                if f.name == "icmpTypeCode" else [f]
        self.bin_ms, msec = _bin_time(opts.bin_time)
        self.r = _KeyRenderer(opts, None)
        self.config = None
        v4 = self.r.policy in ("ignore", "asv4")
        times = [f.name for f in self.keys if f.name in aggregate.TIMES]
        if self.bin_ms > 1 and not set(times) & {"sTime", "eTime"}:
            self.bin_ms = 1 if msec else 0
        self.msec = msec
        self.r.msec = msec
        # all three times: the last named is derived from the other two (as rwuniq)
        self.derived = times[-1] if len(set(times)) == 3 else None
        key_fields = [f for f in self.keys if f.name != self.derived]
        self.spec = aggregate.KeySpec(key_fields, self.bin_ms, msec, v4)
        self.entries = _values(opts.values, thresholds, uniq, self.keys)

    # ---------------------------------------------------------------- engine

    def group(self, budget=None, total_distinct=False):
        from .. import aggregate
        from .sort import temp_directory
        values = [v for kind, v, _, _ in self.entries if kind == "value"]
        distinct = [f for kind, f, _, _ in self.entries if kind == "distinct"]
        return aggregate.GroupBy(self.spec, values, distinct, tempdir=temp_directory(self.opts),
                                 budget=budget or aggregate.DEFAULT_BUDGET,
                                 total_distinct=total_distinct)

    def read(self, gb, check_sorted=False):
        """Feed every input's records to the group-by; returns the record count."""
        import sys

        from .. import cli, io
        from ..decoding import decoded_runs
        self.config = cli.site_config(self.opts, required=False)
        self.r.config = self.config
        names = input_names(self.opts)
        for name in ("invocation_strip", "note_strip"):
            setattr(self.opts, name, getattr(self.opts, name, False))
        copy = io.FlowSink(self.opts.copy_input, cli.output_meta(self.opts)) \
            if self.opts.copy_input else None
        columns = None if copy else gb.columns()
        if columns is not None and self.r.policy != "mix" and "stime" not in columns:
            columns.append("stime")     # the policy filter counts records by it
        if not (copy or check_sorted or self.opts.print_filenames) and len(names) >= 16 \
                and not any(n in io.STDIN_NAMES for n in names):
            self._read_parallel(gb, names, columns)
            return gb.records
        try:
            for name in names:
                reader = io.open_flows(name)
                if self.opts.print_filenames:
                    sys.stderr.write(f"{reader.name}\n")
                last = None
                try:
                    # a stream's many small blocks decoded many at once
                    for batch in decoded_runs([reader], columns):
                        if copy:
                            copy.write(batch)
                        batch = self.r.apply_policy(batch)
                        if check_sorted:
                            last = _check_sorted(self.spec, batch, last, reader.name)
                        gb.add(batch)
                finally:
                    reader.close()
            gb.flush()
            if copy:
                copy.close()
        except BaseException:
            if copy:
                copy.abort()
            raise
        return gb.records

    def _read_parallel(self, gb, names, columns):
        """Many files: worker processes decode and reduce runs of them (workers.scan);
        only their partial bins come back to be merged here."""
        from .. import workers
        policy = self.r.apply_policy
        for part in workers.scan(names, columns, policy, gb.reduce_batches,
                                 families=self.r.policy == "mix"):
            gb.absorb(part)

    # ---------------------------------------------------------------- text

    def key_batch(self, keys, wide):
        """A batch holding the key of every bin, for the renderer."""
        import numpy as np

        from .. import schema
        n = len(keys[0]) if keys else 0
        cols, i = {}, 0
        ipv6 = np.zeros(n, bool)
        v6 = not self.spec.v4 and (wide or self.r.policy in ("force", "only"))
        times = {}
        scale = 1 if self.msec else 1000
        for f in self.spec.fields:
            if f.kind == "ip":
                if wide:
                    hi, lo = keys[i], keys[i + 1]
                    i += 2
                    col = np.stack([hi, lo], axis=1)
                    ipv6 |= ~((hi == 0) & ((lo >> np.uint64(32)) == np.uint64(0xFFFF)))
                else:
                    col = keys[i].astype(np.uint32)
                    i += 1
                    if v6:
                        col = schema.v4_to_v6(col)
                cols[f.columns[0]] = col
                continue
            v = keys[i]
            i += 1
            if f.name in ("sTime", "eTime", "duration"):
                times[f.name] = v.astype(np.int64) * scale
            elif f.name in ("iType", "iCode"):
                cols.setdefault("_icmp", {})[f.name] = v
            else:
                cols[f.columns[0]] = v
        if self.r.policy in ("force", "only"):
            ipv6[:] = True
        st, du, et = times.get("sTime"), times.get("duration"), times.get("eTime")
        if et is not None and st is None:
            st = et - (du if du is not None else 0)
        if st is not None and et is not None and du is None:
            du = et - st
        cols["stime"] = st if st is not None else np.zeros(n, np.int64)
        cols["duration"] = du if du is not None else np.zeros(n, np.int64)
        icmp = cols.pop("_icmp", {})
        if "protocol" not in cols:
            cols["protocol"] = np.ones(n, np.uint8)    # ICMP, so iType/iCode print
        if icmp and "dport" not in cols:
            cols["dport"] = (icmp.get("iType", 0) << np.uint64(8)) | icmp.get("iCode", 0)
        if v6:
            cols["ipv6"] = ipv6
        # only the columns the key fields print from (a full batch would be ~100 bytes
        # per bin)
        out = {}
        for name, col in cols.items():
            dtype = schema.COLUMNS.get(name)
            if name in schema.IP_COLUMNS or name == "ipv6" or dtype is None:
                out[name] = col
            else:
                out[name] = np.asarray(col).astype(dtype, copy=False)
        return out

    def columns(self, keys, values, counts, wide):
        """[(matrix, lengths, width, title)] of the key and value columns."""
        from .. import text
        batch = self.key_batch(keys, wide)
        out = []
        for f in self.keys:
            mat, lens = self.r.column(f, batch)
            out.append((mat, lens, self.r.width(f), self.r.title(f)))
        for kind, what, _, _ in self.entries:
            if kind == "value":
                v = values[what]
                w = self.value_width(what)
                if what in ("stime_min", "etime_max"):
                    ms = v.astype("int64") * (1 if self.msec else 1000)
                    mat, lens = text.timestamps(ms, self.r.ts, self.msec)
                else:
                    mat, lens = text.uint(v)
                title = TITLES[what]
            else:
                mat, lens = text.uint(counts[what.name])
                w, title = self.distinct_width(what), f"{what.name}-Distinct"
            out.append((mat, lens, w, title[:w] if self.r.columnar else title))
        return out

    def value_width(self, what):
        w = VALUE_WIDTHS[what]
        if what in ("stime_min", "etime_max"):
            w = 10 if self.r.ts == "epoch" else 19
            w += 4 if self.msec else 0
        return w

    def distinct_width(self, f):
        """rwuniq's width of a distinct count: by the octets SiLK keys the field in."""
        if f.kind == "ip":
            octets = 4 if self.spec.v4 else 16
        elif f.name in SILK_OCTETS:
            octets = SILK_OCTETS[f.name]
        else:
            bits = self.spec.bits(f)
            octets = {8: 1, 16: 2}.get(bits, 4 if bits <= 32 else 8)
        return {1: 3, 2: 5, 4: 10}.get(octets, 20)

    def render(self, cols, final=None):
        """Text lines of columns laid out as SiLK's ascii stream does."""
        from .. import text
        r = self.r
        final = r.final if final is None else final
        return text.layout([(m, n) for m, n, _, _ in cols], [w for _, _, w, _ in cols],
                           r.sep.encode(), r.columnar, final)

    def titles(self, cols, final=None):
        import numpy as np
        r = self.r
        if not r.titles:
            return b""
        heads = []
        for _, _, w, t in cols:
            b = t.encode()
            heads.append((np.frombuffer(b, np.uint8).reshape(1, -1), np.array([len(b)]), w, t))
        return self.render(heads, final)


class _KeyRenderer:
    """rwuniq's columns: as rwcut's, but times without milliseconds (unless --bin-time has
    a fraction) and durations as whole seconds in 5 columns."""

    def __new__(cls, opts, config):
        from ..render import Renderer

        class KeyRenderer(Renderer):
            def width(self, field):
                if field.kind == "duration" and not self.msec:
                    return 5
                return super().width(field)
        return KeyRenderer(opts, config)


def _bin_time(text):
    """(--bin-time in ms, whether it has a fraction of a second)."""
    from ..errors import FlowError
    if text is None:
        return 0, False
    if text == "":
        return 60_000, False
    try:
        d = float(text)
    except ValueError:
        d = -1.0
    if not 0.001 <= d <= 2**31 - 1:
        raise FlowError(f"invalid --bin-time '{text}': expected seconds from 0.001 to "
                        f"{2**31 - 1}")
    ms = int(1000.0 * d)
    return ms, bool(ms % 1000)


def _find_value(token, uniq, option="--values"):
    """(kind, what) of a value name: ('value', name) or ('distinct', field name or None)."""
    from ..errors import FlowError
    name, _, attr = token.strip().partition(":")
    table = [(t, v) for t, v in VALUE_NAMES if uniq or v not in ("stime_min", "etime_max")]
    table.append(("Flows", "records"))
    low = name.lower()
    hits = [(t, v) for t, v in table if t.lower() == low] or \
        [(t, v) for t, v in table if t.lower().startswith(low) and low]
    if len({v for _, v in hits}) != 1:
        why = "ambiguous" if hits else "unknown value"
        raise FlowError(f"invalid {option} value '{token}': {why}")
    title, what = hits[0]
    if what in VALUE_WIDTHS:
        if attr:
            raise FlowError(f"invalid {option} value '{token}': extra text after the name")
        return "value", what
    if what in ("sip", "dip"):
        if attr:
            raise FlowError(f"invalid {option} value '{token}': extra text after the name")
        return "distinct", what
    if not attr:
        raise FlowError(f"invalid {option} value '{token}': give a field as distinct:FIELD")
    return "distinct", attr


def _values(text, thresholds, uniq, keys):
    """[(kind, what, min, max)]: the value columns in order, as rwuniq builds them."""
    from .. import fields
    from ..errors import FlowError
    entries = []
    if text or not thresholds:
        for token in (text or "Records").split(","):
            entries.append(list(_find_value(token, uniq)) + [0, 0])
    parsed = [_parse_threshold(t, uniq) for t in thresholds]
    # SiLK's loop over the thresholds shares its index with the inner search; reproduced
    # so that the same switches give the same columns
    i = 0
    while i < len(parsed):
        kind, what, lo, hi, raw = parsed[i]
        seen = False
        i = 0
        while i < len(entries):
            e = entries[i]
            if e[0] == kind and e[1].lower() == what.lower():
                seen = True
                if lo == 0 and hi == 0:
                    break
                if e[2] == 0 and e[3] == 0:
                    e[2], e[3] = lo, hi
                    break
                raise FlowError(f"invalid --threshold '{raw}': threshold for the value "
                                "already set")
            i += 1
        if not seen:
            entries.append([kind, what, lo, hi])
        i += 1
    out, seen_names = [], set()
    for kind, what, lo, hi in entries:
        if kind == "distinct":
            f = fields.find(what, "--values")
            if f.name == "icmpTypeCode":
                raise FlowError("invalid --values: may not count distinct icmpTypeCode")
            from .. import aggregate
            if f.name in aggregate.NOT_KEYS:
                raise FlowError(f"invalid --values: cannot count distinct {f.name}")
            what = f
            tag = ("distinct", f.name)
        else:
            tag = ("value", what)
        if tag in seen_names:
            raise FlowError(f"invalid --values: duplicate value '{tag[1]}'")
        seen_names.add(tag)
        out.append((kind, what, lo, hi))
    return out


def _parse_threshold(text, uniq):
    """(kind, what, min, max, text) of one --threshold=VALUE=MIN[-MAX]."""
    from ..errors import FlowError
    name, eq, rng = text.partition("=")
    if not eq:
        raise FlowError(f"invalid --threshold '{text}': expected VALUE=MIN[-MAX]")
    rng = rng.strip()
    if not rng:
        raise FlowError(f"invalid --threshold '{text}': no threshold given")
    if rng == "0-0":
        lo = hi = 0
    else:
        a, dash, b = rng.partition("-")
        try:
            lo = int(a)
            hi = int(b) if b else UINT64_MAX
        except ValueError:
            raise FlowError(f"invalid --threshold '{text}': expected a number or a range "
                            "MIN-MAX") from None
        if lo < 0 or hi < lo or hi > UINT64_MAX:
            raise FlowError(f"invalid --threshold '{text}': bad range")
    kind, what = _find_value(name, uniq, "--threshold")
    return kind, what, lo, hi, text


def _check_sorted(spec, batch, last, name):
    """Raise unless the batch's keys are in order (and after the previous batch's last)."""
    import numpy as np

    from .. import aggregate
    from ..errors import FlowError
    comps = [c for c, _ in aggregate.components(spec, spec.fields, batch, not spec.v4)]
    if not comps or not len(comps[0]):
        return last
    if last is not None:
        comps = [np.concatenate([[p], c]) for p, c in zip(last, comps, strict=True)]
    eq = np.ones(len(comps[0]) - 1, bool)
    down = np.zeros(len(comps[0]) - 1, bool)
    for c in comps:
        down |= eq & (c[1:] < c[:-1])
        eq &= c[1:] == c[:-1]
    if down.any():
        raise FlowError(f"{name}: input is not sorted by --fields "
                        "(required by --presorted-input; sort it with pyflow-sort)")
    return [c[-1] for c in comps]


def input_names(opts):
    from .. import io
    return io.input_names(opts.inputs, opts.xargs)


def legacy_thresholds(opts):
    """--threshold values implied by the legacy switches, in SiLK's order."""
    out = []
    if opts.all_counts:
        out += [f"{t}=0-0" for t in ("Bytes", "Packets", "Records", "sTime-Earliest",
                                     "eTime-Latest")]
    for name in ("stime", "etime"):
        if getattr(opts, name):
            out.append(f"{name}=0-0")
    for name in LEGACY:
        v = getattr(opts, name)
        if v is not None:
            title = name.replace("_", "-")
            out.append(f"{title}={v}" if v != "" else f"{title}=0-0")
    return out


def output(opts):
    from .. import io
    from .cut import _StdoutText
    if opts.output_path not in ("-", "stdout"):
        return io.Output(opts.output_path, binary=True)
    return _StdoutText(opts.pager)


def help_fields(uniq):
    from .. import fields
    lines = [fields.help_text().rstrip("\n"), "",
             "The following names may be used in the --values switch."]
    for title, what in VALUE_NAMES:
        if not uniq and what in ("stime_min", "etime_max"):
            continue
        lines.append(f"\t{title:<14} - {VALUE_HELP[what]}")
    return "\n".join(lines) + "\n"


def _distinct_name(what):
    from .. import fields
    if what in ("sip", "dip"):
        return "sIP" if what == "sip" else "dIP"
    try:
        return fields.find(what).name
    except Exception:
        return what


def main(opts):
    import sys

    import numpy as np

    from ..errors import FlowError

    if opts.help_fields:
        sys.stdout.write(help_fields(True))
        return 0
    thresholds = legacy_thresholds(opts) + list(opts.threshold)
    # the legacy switches come in SiLK's option order; --threshold ones as given
    b = Binning(opts, uniq=True, thresholds=thresholds)
    if opts.values:
        for text in opts.threshold:
            kind, what, _, _, _ = _parse_threshold(text, True)
            if not any(k == kind and (w == what or getattr(w, "name", None) ==
                                      _distinct_name(what)) for k, w, _, _ in b.entries
                       [: len(opts.values.split(","))]):
                raise FlowError(f"invalid --threshold '{text}': its value is not among "
                                "--values")
    out = output(opts)
    try:
        gb = b.group()
        b.read(gb, check_sorted=opts.presorted_input)
        keys, values, counts, wide, _ = gb.finish()
        n = len(keys[0]) if keys else 0
        keep = np.ones(n, bool)
        for kind, what, lo, hi in b.entries:
            if lo == 0 and hi == 0:
                continue
            v = values[what] if kind == "value" else counts[what.name]
            keep &= (v >= np.uint64(lo)) & (v <= np.uint64(hi))
        if not keep.all():
            idx = np.flatnonzero(keep)
            keys = [k[idx] for k in keys]
            values = {k: v[idx] for k, v in values.items()}
            counts = {k: v[idx] for k, v in counts.items()}
        n = len(keys[0]) if keys else 0
        # the text is made a slice of bins at a time: its matrices stay small
        for lo in range(0, max(n, 1), TEXT_ROWS):
            part = slice(lo, lo + TEXT_ROWS)
            cols = b.columns([k[part] for k in keys], {k: v[part] for k, v in values.items()},
                             {k: v[part] for k, v in counts.items()}, wide)
            if lo == 0:
                out.f.write(b.titles(cols))
            if len(cols[0][1]):
                out.f.write(b.render(cols))
        out.commit()
    except BaseException:
        out.abort()
        raise
    return 0
