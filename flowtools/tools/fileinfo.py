"""pyflow-fileinfo: describe flow files (rwfileinfo)."""

from ..cli import Tool

# (name, number) in print order; the numbers 1-14 are rwfileinfo's.
FIELDS = [
    ("format", 1), ("version", 2), ("byte-order", 3), ("compression", 4),
    ("header-length", 5), ("record-length", 6), ("record-version", 10),
    ("silk-version", 11), ("count-records", 7), ("file-size", 8), ("blocks", 19),
    ("bytes-per-record", 20), ("compression-ratio", 21), ("time-range", 22),
    ("packed-file-info", 12), ("probe-name", 13), ("command-lines", 9),
    ("annotations", 14),
]


def _arguments(p):
    p.add_argument("--fields", metavar="FIELDS",
                   help="Print only these fields (names, numbers or ranges, in any case).")
    p.add_argument("--summary", action="store_true",
                   help="After the files, print the number of files, the sum of their sizes "
                        "and the total number of records.")
    p.add_argument("--no-titles", action="store_true",
                   help="Print values only, without the file name and field names.")
    p.add_argument("--help-fields", action="store_true",
                   help="Describe each field and exit.")


TOOL = Tool(
    name="pyflow-fileinfo",
    summary="Print information about pyflow files.",
    description="Reads the header of each file and moves over its blocks without "
                "decompressing them, then prints header fields, the record count, block "
                "count, sizes, compression ratio, command history and annotations. The "
                "standard input is read only when '-' or 'stdin' is named.",
    uses=("inputs", "site"),
    add_arguments=_arguments,
    examples=["pyflow-fileinfo --summary data/in/2024/01/01/*",
              "pyflow-fileinfo --fields=count-records,file-size f.pf"],
)

HELP = {
    "format": "File format and kind of content", "version": "Container format version",
    "byte-order": "Byte order of the data", "compression": "Compression method and level",
    "header-length": "Bytes in the file header", "record-length":
    "Bytes per record as stored (variable for pyflow's columnar blocks)",
    "record-version": "Version of the record layout", "silk-version":
    "Software that wrote the file", "count-records": "Number of records",
    "file-size": "Bytes in the file", "blocks": "Number of blocks (and segments)",
    "bytes-per-record": "File size divided by the record count",
    "compression-ratio": "Decoded record bytes divided by the file size",
    "time-range": "Earliest sTime and latest eTime of the records",
    "packed-file-info": "Hour, flowtype and sensor of an archive file",
    "probe-name": "Probe that collected the records", "command-lines":
    "Command lines that produced the file", "annotations": "Notes added to the file",
}


def select_fields(text):
    from ..errors import FlowError
    if not text:
        return [name for name, _ in FIELDS]
    by_num = {num: name for name, num in FIELDS}
    names = [name for name, _ in FIELDS]
    chosen = set()
    for tok in text.split(","):
        tok = tok.strip().lower()
        if "-" in tok and tok.replace("-", "").isdigit():
            a, b = tok.split("-", 1)
            nums = range(int(a), int(b) + 1)
            picked = [by_num[n] for n in nums if n in by_num]
            if not picked:
                raise FlowError(f"invalid --fields value '{tok}'")
            chosen.update(picked)
        elif tok.isdigit() and int(tok) in by_num:
            chosen.add(by_num[int(tok)])
        else:
            hits = [n for n in names if n == tok] or [n for n in names if n.startswith(tok)]
            if len(hits) != 1 or not tok:
                raise FlowError(f"invalid --fields value '{tok}'"
                                + (" (ambiguous)" if len(hits) > 1 else ""))
            chosen.add(hits[0])
    return [n for n in names if n in chosen]


def describe(name, config=None):
    """The fields of one file as an ordered dict of name -> value text (or list)."""
    import os

    from .. import io, schema
    from ..dates import format_hour, format_ms
    from ..flowfile import FlowReader

    reader = io.open_flows(name, threads=1)
    if not isinstance(reader, FlowReader):  # SiLK files describe themselves
        return reader.describe(config)
    h, meta = reader.header, reader.meta
    count = blocks = decoded = 0
    tmin = tmax = None
    v6blocks = 0
    for pending in reader.blocks():
        pending.skip()
        count += pending.n
        blocks += 1
        st = pending.header["stats"]
        tmin = st["stime"][0] if tmin is None else min(tmin, st["stime"][0])
        tmax = st["etime"][1] if tmax is None else max(tmax, st["etime"][1])
        v6 = pending.header["v6"]
        v6blocks += v6
        decoded += pending.n * schema.record_bytes(v6)
    size = reader.frames.pos
    if name not in io.STDIN_NAMES:
        size = max(size, os.path.getsize(name))
    comp = meta.get("compression", "?")
    out = {
        "format": "PYFLOW(flow)",
        "version": f"{h.major}.{h.minor}",
        "byte-order": "littleEndian",
        "compression": f"{comp}({meta['level']})" if "level" in meta else comp,
        "header-length": str(h.data_start),
        "record-length": "variable",
        "record-version": "1",
        "silk-version": meta.get("writer", "pyflow"),
        "count-records": str(count),
        "file-size": str(size),
        "blocks": f"{blocks} in {max(len(reader.segments), 1)} segment(s)"
                  + (f", {v6blocks} IPv6" if v6blocks else ""),
        "bytes-per-record": f"{size / count:.2f}" if count else "-",
        "compression-ratio": f"{decoded / size:.2f}" if size else "-",
    }
    if tmin is not None:
        out["time-range"] = f"{format_ms(tmin)} - {format_ms(tmax)}"
    if "hour" in meta and "flowtype" in meta and "sensor" in meta:
        ft, sensor = meta["flowtype"], meta["sensor"]
        if config is not None:
            ftype = config.flowtypes.get(ft)
            ft = ftype.type_name if ftype else ft
            sensor = config.sensor_name(sensor)
        out["packed-file-info"] = f"{format_hour(meta['hour'])} {ft} {sensor}"
    if meta.get("probe"):
        out["probe-name"] = meta["probe"]
    out["command-lines"] = list(meta.get("history", []))
    out["annotations"] = list(meta.get("notes", []))
    return out


TITLES = {"format": "format(id)", "compression": "compression(id)"}  # rwfileinfo's


def _print_file(write, name, info, fields, titles):
    if titles:
        write(f"{name}:\n")
    for field in fields:
        if field not in info:
            continue
        value = info[field]
        if isinstance(value, list):
            if not titles:
                for line in value:
                    write(f"{line}\n")
                continue
            if not value:
                continue
            write(f"  {TITLES.get(field, field):<20}\n")
            for i, line in enumerate(value, 1):
                write(f"{i:>20}  {line}\n")
        else:
            write(f"  {TITLES.get(field, field):<20}{value}\n" if titles else f"{value}\n")


def main(opts):
    import sys

    from .. import cli, io
    from ..errors import FlowError

    if opts.help_fields:
        for name, num in FIELDS:
            sys.stdout.write(f"  {name:<18} - {HELP[name]}. Alias: {num}\n")
        return 0
    fields = select_fields(opts.fields)
    names = list(opts.inputs)
    if opts.xargs is not None:
        names = io.input_names(names, opts.xargs)
    if not names:
        raise FlowError("no files named (give file names, '-' for stdin, or --xargs)")
    try:
        config = cli.site_config(opts, required=False)
    except FlowError:
        config = None
    status = 0
    nfiles = total = sizes = 0
    write = sys.stdout.write
    for name in names:
        try:
            info = describe(name, config)
        except FlowError as exc:
            sys.stdout.flush()
            sys.stderr.write(f"{opts.tool_name}: {exc}\n")
            status = 1
            continue
        _print_file(write, io.display_name(name), info, fields, not opts.no_titles)
        nfiles += 1
        total += int(info.get("count-records", 0))
        sizes += int(info.get("file-size", 0))
    if opts.summary:
        write("**SUMMARY**:\n")
        write(f"  {'number-files':<20}{nfiles}\n  {'total-records':<20}{total}\n"
              f"  {'all-file-sizes':<20}{sizes}\n")
    return status
