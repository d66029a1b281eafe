"""pyflow-tuc: flow records from text (rwtuc): rwcut's layouts and other tools' CSV."""

from ..cli import Tool

# (option names, key, help) of the fixed values, rwtuc's names first
FIXED = [
    (("--saddress",), "sip", "Set the source address of every record to IPADDR."),
    (("--daddress",), "dip", "Set the destination address of every record to IPADDR."),
    (("--sport",), "sport", "Set the source port of every record to NUM (0-65535)."),
    (("--dport",), "dport", "Set the destination port of every record to NUM (0-65535)."),
    (("--protocol",), "protocol", "Set the protocol of every record to NUM (0-255) or a "
                                  "name (tcp, udp, icmp, ...)."),
    (("--packets",), "packets", "Set the packet count of every record to NUM."),
    (("--bytes",), "bytes", "Set the byte count of every record to NUM (default: the "
                            "packet count, as rwtuc)."),
    (("--flags-all",), "flags", "Set the TCP flags of every record to TCPFLAGS (letters "
                                "FSRPAUEC or an integer)."),
    (("--flags-initial",), "initflags", "Set the initial TCP flags of every record."),
    (("--flags-session",), "sessflags", "Set the session TCP flags of every record."),
    (("--attributes",), "attributes", "Set the attributes of every record (letters TCFS or "
                                      "an integer)."),
    (("--stime", "--stime+msec"), "stime", "Set the start time of every record to TIME "
                                           "(default: now, when no column gives it)."),
    (("--duration", "--duration+msec"), "duration", "Set the duration of every record to "
                                                    "NUM seconds (decimals allowed)."),
    (("--etime", "--etime+msec"), "etime", "Set the end time of every record to TIME."),
    (("--sensor",), "sensor", "Set the sensor of every record to SID (a name from the site "
                              "configuration or an ID)."),
    (("--class",), "class", "Set the class of every record to NAME."),
    (("--type",), "type", "Set the type of every record to NAME (with the class, the "
                          "flowtype)."),
    (("--input-index",), "input", "Set the SNMP input index of every record to NUM."),
    (("--output-index",), "output", "Set the SNMP output index of every record to NUM."),
    (("--next-hop-ip", "--nhipaddress"), "nhip", "Set the next-hop address of every record "
                                                 "to IPADDR."),
    (("--application",), "application", "Set the application of every record to NUM "
                                         "(0-65535)."),
    (("--icmp-type",), "itype", "Set the ICMP type of every ICMP or ICMPv6 record to NUM "
                                "(0-255)."),
    (("--icmp-code",), "icode", "Set the ICMP code of every ICMP or ICMPv6 record to NUM "
                                "(0-255)."),
]
METAVAR = {"sip": "IPADDR", "dip": "IPADDR", "nhip": "IPADDR", "stime": "TIME",
           "etime": "TIME", "flags": "TCPFLAGS", "initflags": "TCPFLAGS",
           "sessflags": "TCPFLAGS", "attributes": "ATTR", "sensor": "SID", "class": "NAME",
           "type": "NAME"}


def _arguments(p):
    from ..textin import PRESETS
    p.add_argument("--fields", metavar="FIELDS",
                   help="The fields of the columns, in order, by rwcut's names, aliases or "
                        "numbers ('ignore' skips a column). Default: the title line, which "
                        "must then be the first line.")
    p.add_argument("--column-separator", metavar="C",
                   help="The character between columns (default '|', ',' with "
                        "--input-format=csv). Blanks around values are ignored.")
    p.add_argument("--no-titles", action="store_true",
                   help="The first line is a record, not a title line (needs --fields).")
    p.add_argument("--input-format", choices=("text", "csv"), default="text",
                   help="text: rwcut's layouts (the default); csv: a header line names the "
                        "columns, which --column-map or --preset map to fields; protocol "
                        "names, 0xHEX ports and empty ports or counters are accepted.")
    p.add_argument("--column-map", metavar="NAME:FIELD,...",
                   help="Read the column headed NAME (any case) as FIELD (a field name or "
                        "'ignore'); with a map, columns it does not name are ignored.")
    p.add_argument("--preset", choices=sorted(PRESETS),
                   help="A column map for another tool's export (implies --input-format=csv): "
                        + "; ".join(f"{k}: {v['help']}" for k, v in sorted(PRESETS.items()))
                        + ". marx rows are one-packet flows with bytes 0 and dIP 0.0.0.0; "
                          "host is the sensor name.")
    p.add_argument("--ip-format", choices=("decimal", "hexadecimal"), default="decimal",
                   help="How addresses written as bare integers are read (rwcut "
                        "--ip-format=decimal or hexadecimal); dotted quads and IPv6 text "
                        "are always recognised.")
    p.add_argument("--bad-input-lines", metavar="PATH",
                   help="Write each line that cannot be converted to PATH as FILE:LINE:TEXT "
                        "and go on; without it such a line is an error.")
    p.add_argument("--stop-on-error", action="store_true",
                   help="Stop at the first line that cannot be converted, even with "
                        "--bad-input-lines (the default without it).")
    g = p.add_argument_group("fixed values (each overrides a column of that field)")
    for names, key, text in FIXED:
        g.add_argument(*names, dest="fix_" + key, metavar=METAVAR.get(key, "NUM"), help=text)


TOOL = Tool(
    name="pyflow-tuc",
    summary="Create flow records from text.",
    description="Reads text with one flow per line, as pyflow-cut and rwcut print it (any "
                "of their layouts: titled or not, padded or delimited, every --ip-format "
                "and --timestamp-format, flags as letters or integers, sensor, class and "
                "type names from the site configuration) or as other tools export it in "
                "CSV (--input-format=csv with --column-map or --preset), and writes the "
                "records as a flow stream. Times are UTC. Fields no column gives take "
                "fixed values from the options, else rwtuc's defaults: addresses 0.0.0.0, "
                "packets 1, bytes equal to packets, sTime now, other fields 0. eTime "
                "without a duration gives the duration. A line that cannot be converted "
                "whole is an error naming its file and line (or, with --bad-input-lines, "
                "is set aside): it never becomes a record. Gzip input is read "
                "transparently.",
    uses=("inputs", "output", "compression", "notes", "site"),
    add_arguments=_arguments,
    examples=["pyflow-cut --fields=1-10 flows.pf | pyflow-tuc --output-path=copy.pf",
              "pyflow-tuc --fields=sip,dip,proto,stime --column-separator=, --no-titles "
              "--output-path=out.pf in.csv",
              "nfdump -r nfcapd.201801121100 -o csv | pyflow-tuc --preset=nfdump "
              "--output-path=nf.pf",
              "pyflow-tuc --preset=argus --bad-input-lines=rejected.txt "
              "capture.binetflow | pyflow-pack --data-rootdir=/data"],
)


def _fields(text):
    """Keys (None for 'ignore') and names of a --fields list."""
    from .. import fields
    from ..errors import FlowError
    from ..textin import KEY_OF_FIELD, resolve_field
    keys, names = [], []
    for token in text.split(","):
        token = token.strip()
        if not token:
            raise FlowError(f"invalid --fields value '{text}': empty field name")
        a, dash, b = token.partition("-")
        if dash and a.isdigit() and b.isdigit():
            for f in fields.parse_list(token):
                keys.append(KEY_OF_FIELD[f.name])
                names.append(f.name)
        else:
            keys.append(resolve_field(token))
            names.append(token)
    return keys, names


def _column_map(text):
    from ..errors import FlowError
    from ..textin import resolve_field
    out = {}
    for item in text.split(","):
        name, colon, field = item.partition(":")
        if not colon or not name.strip() or not field.strip():
            raise FlowError(f"invalid --column-map entry '{item}': use NAME:FIELD")
        out[name.strip().lower()] = resolve_field(field, "--column-map")
    return out


class _Run:
    def __init__(self, opts):
        import time

        from .. import cli, textin
        from ..errors import FlowError
        self.opts = opts
        self.config = cli.site_config(opts, required=False)
        self.preset = textin.PRESETS.get(opts.preset) if opts.preset else None
        self.csv = opts.input_format == "csv" or self.preset is not None
        sep = opts.column_separator
        if sep is None:
            sep = "," if self.csv else "|"
        if len(sep.encode()) != 1:
            raise FlowError(f"invalid --column-separator '{sep}': give one character")
        if sep in " \n\r" or sep.isalnum():
            raise FlowError(f"invalid --column-separator '{sep}': it cannot separate "
                            "values")
        self.sep = sep
        self.fields = _fields(opts.fields) if opts.fields else None
        if opts.no_titles and self.fields is None:
            raise FlowError("--no-titles needs --fields")
        self.map = {}
        if self.preset:
            self.map.update(self.preset["columns"])
        self.user_map = _column_map(opts.column_map) if opts.column_map else {}
        self.map.update(self.user_map)
        self.fixed = {}
        for names, key, _ in FIXED:
            value = getattr(opts, "fix_" + key)
            if value is not None:
                self.fixed[key] = textin.parse_fixed(key, value, self.config, names[0])
        if self.config is not None:
            cls = self.fixed.get("class")
            typ = self.fixed.get("type")
            if cls is not None and cls not in self.config.classes:
                raise FlowError(f"invalid --class '{cls}': no such class in "
                                f"{self.config.path}")
            if cls is not None and typ is not None:
                try:
                    self.config.flowtype_id(cls, typ)
                except FlowError as exc:
                    raise FlowError(f"invalid --class/--type: {exc}") from None
        self.now = int(time.time() * 1000)
        self.bad = 0

    def layout(self, label, lineno, first):
        """The Layout of a file from the options and its first line (None when there is
        none); and whether that line is a title to skip."""
        from ..errors import FlowError
        from ..textin import (
            TITLE,
            Layout,
            looks_like_title,
            names_a_field,
            resolve_field,
            split_header,
        )
        names = None
        if first is not None:
            try:
                text = first.decode("utf-8")
            except UnicodeDecodeError:
                raise FlowError(f"{label}:{lineno}: not UTF-8 text") from None
            text = text.strip("\r\n")
            names = split_header(text, self.sep)
        skip = False
        final = None
        if self.fields is not None:
            keys, titles = self.fields
            if names is not None and not self.opts.no_titles and (
                    looks_like_title(names) or (self.csv and self._maps(names))):
                skip = True
                final = text.rstrip().endswith(self.sep) and len(names) == len(keys)
                if len(names) != len(keys):
                    raise FlowError(f"{label}:{lineno}: the title line has {len(names)} "
                                    f"columns but --fields names {len(keys)}")
        elif names is None:
            return None, False
        else:
            skip = True
            final = text.rstrip().endswith(self.sep)
            keys, titles = [], []
            mapped = bool(self.map) and self.csv
            for name in names:
                low = name.lower()
                if low in self.map:
                    keys.append(self.map[low])
                elif mapped:
                    keys.append(None)
                else:
                    try:
                        keys.append(resolve_field(name, "title"))
                    except FlowError as exc:
                        what = "header" if self.csv else "title line"
                        hint = ("; map it with --column-map=NAME:FIELD or NAME:ignore"
                                if self.csv else "")
                        if not self.csv and not any(names_a_field(x) for x in names):
                            raise FlowError(f"{label}:{lineno}: the first line is not a "
                                            "title line: give --fields") from None
                        raise FlowError(f"{label}:{lineno}: {what}: {exc}{hint}") from None
                titles.append(name or TITLE.get(keys[-1] or "", ""))
            missing = [n for n in self.user_map if n not in {x.lower() for x in names}]
            if missing:
                raise FlowError(f"{label}:{lineno}: --column-map names '{missing[0]}', "
                                "which is not in the header")
        defaults = dict(self.preset.get("defaults", {})) if self.preset else {}
        try:
            lay = Layout(keys, titles, self.sep.encode(), csv=self.csv,
                         hexadecimal=self.opts.ip_format == "hexadecimal",
                         config=self.config, fixed=self.fixed, defaults=defaults,
                         stop=self.preset.get("stop") if self.preset else None,
                         argus_icmp=bool(self.preset and self.preset.get("argus_icmp")),
                         final=final)
        except FlowError as exc:
            raise FlowError(f"{label}: {exc}") from None
        return lay, skip

    def _maps(self, names):
        return any(n.lower() in self.map for n in names)

    def file(self, name, sink, bad_out):
        import sys

        from .. import io, textin
        from ..errors import FlowError
        label = io.display_name(name)
        if name in io.STDIN_NAMES:
            f = sys.stdin.buffer
        else:
            try:
                f = open(name, "rb")
            except OSError as exc:
                raise FlowError(f"cannot open {name}: {exc.strerror}") from None
        try:
            self._read(textin.open_text(f), label, sink, bad_out)
        finally:
            if f is not sys.stdin.buffer:
                f.close()

    def _read(self, reader, label, sink, bad_out):
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        opts = self.opts
        fatal = bad_out is None or opts.stop_on_error
        explain = 1 if fatal and not opts.verbose else 1 << 62
        parser = None
        self.lineno = 1  # of the first line of the next chunk to write
        # Chunks are parsed on two threads (numpy releases the GIL) and written in order.
        with ThreadPoolExecutor(2) as pool:
            pending = deque()
            try:
                for chunk in self._chunks(reader, label):
                    if parser is None:
                        parser, chunk = self._start(chunk, label)
                        if parser is None or not len(chunk):
                            continue
                    pending.append(pool.submit(parser.parse, chunk, explain))
                    while len(pending) > 2:
                        if self._done(pending.popleft().result(), label, sink, bad_out,
                                      fatal):
                            return
                while pending:
                    if self._done(pending.popleft().result(), label, sink, bad_out, fatal):
                        return
            finally:
                for f in pending:
                    f.cancel()

    def _start(self, chunk, label):
        """The Parser a file's first non-blank line decides, and the rest of the chunk."""
        from ..textin import Parser
        data = chunk.a.tobytes()
        pos = 0
        while pos < len(data):
            end = data.index(b"\n", pos)
            if data[pos:end].strip():
                break
            pos, self.lineno = end + 1, self.lineno + 1
        if pos >= len(data):
            return None, chunk.skip_to(len(data))
        end = data.index(b"\n", pos)
        lay, skip = self.layout(label, self.lineno, data[pos:end])
        if skip:
            pos, self.lineno = end + 1, self.lineno + 1
        return Parser(lay, self.now), chunk.skip_to(pos)

    def _done(self, result, label, sink, bad_out, fatal):
        """Write a parsed chunk; True when the records ended (a stop line)."""
        import sys

        from ..errors import FlowError
        batch, rej, lines, stopped = result
        if len(rej):
            linenos = rej.linenos + self.lineno
            if fatal:
                raise FlowError(f"{label}:{linenos[0]}: {rej.reasons[0]}")
            for ln, text, why in zip(linenos, rej.texts, rej.reasons, strict=True):
                bad_out.f.write(f"{label}:{ln}:".encode() + text + b"\n")
                if self.opts.verbose and why:
                    sys.stderr.write(f"{self.opts.tool_name}: {label}:{ln}: {why}\n")
            self.bad += len(rej)
        sink.write(batch)
        self.lineno += lines
        return stopped

    @staticmethod
    def _chunks(reader, label):
        from ..errors import FlowError
        from ..textin import chunks
        try:
            yield from chunks(reader)
        except FlowError as exc:
            raise FlowError(f"{label}: {exc}") from None


def main(opts):
    import sys

    from .. import cli, io

    run = _Run(opts)
    names = io.input_names(opts.inputs, opts.xargs)
    method, level = cli.compression(opts)
    sink = io.FlowSink(opts.output_path, cli.output_meta(opts), method, level)
    bad_out = None
    try:
        if opts.bad_input_lines:
            bad_out = io.Output(opts.bad_input_lines, binary=True)
        for name in names:
            run.file(name, sink, bad_out)
        sink.close()
        if bad_out is not None:
            bad_out.commit()
    except BaseException:
        sink.abort()
        if bad_out is not None:
            bad_out.abort()
        raise
    if run.bad:
        sys.stderr.write(f"{opts.tool_name}: could not parse {run.bad} line"
                         f"{'' if run.bad == 1 else 's'}; invalid input written to "
                         f"'{opts.bad_input_lines}'\n")
    return 0
