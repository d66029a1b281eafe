"""pyflow-sort: sort flow records by fields (rwsort)."""

from ..cli import Tool


def _arguments(p):
    p.add_argument("--fields", metavar="FIELDS",
                   help="Sort by these fields, the first most significant: names, aliases, "
                        "numbers or ranges, in any case and as unique prefixes (required). "
                        "See --help-fields.")
    p.add_argument("--help-fields", action="store_true",
                   help="Describe each field and its aliases, and exit.")
    p.add_argument("--reverse", action="store_true",
                   help="Sort in descending order (records with equal keys keep their "
                        "input order).")
    p.add_argument("--presorted-input", action="store_true",
                   help="The inputs are each already sorted by the same --fields and "
                        "--reverse: merge them instead of sorting.")
    p.add_argument("--sort-buffer-size", metavar="SIZE",
                   help="Memory for the records being sorted, in bytes; a k, m, g or t "
                        "suffix multiplies by 1024, 1024^2... (default 1920m, minimum "
                        f"{MINIMUM_BUFFER}). Beyond it sorted runs go to temporary files.")
    p.add_argument("--temp-directory", metavar="DIR",
                   help="Directory for the temporary files (default SILK_TMPDIR, TMPDIR "
                        "or /tmp).")
    p.add_argument("--input-pipe", metavar="PATH",
                   help="Read the records from the named pipe (or 'stdin') at PATH "
                        "(deprecated; name it as an input instead).")


# SiLK's minimum: room for 1000 records (pyflow holds up to 99 bytes for a decoded record).
MINIMUM_BUFFER = 99_000
MAXIMUM_BUFFER = (1 << 64) - 1

TOOL = Tool(
    name="pyflow-sort",
    summary="Sort flow records by one or more fields.",
    description="Reads flow records (pyflow or SiLK files and streams), sorts them by the "
                "--fields keys, ascending in the order the fields are given (descending "
                "with --reverse), and writes them as one pyflow stream to --output-path or "
                "the standard output. Records with equal keys keep their input order. IP "
                "addresses compare as IPv6 when IPv4 and IPv6 records are mixed (IPv4 as "
                "::ffff:0:0/96); sensor, class and type sort by their numeric IDs. Input "
                "beyond --sort-buffer-size is sorted in runs written to temporary files in "
                "--temp-directory, which are merged at the end and always removed.",
    uses=("inputs", "output", "compression", "notes", "site", "filenames"),
    add_arguments=_arguments,
    examples=["pyflow-sort --fields=sip,stime flows.pf --output-path=sorted.pf",
              "pyflow-sort --fields=bytes --reverse flows.pf | pyflow-cut --num-recs=10",
              "pyflow-sort --fields=stime --presorted-input hour1.pf hour2.pf > day.pf"],
)

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text, option="--sort-buffer-size"):
    """Bytes from '512m', '1.5g', '100000' (as SiLK's skStringParseHumanUint64)."""
    import re

    from ..errors import FlowError
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)\s*", text or "", re.IGNORECASE)
    if not m:
        raise FlowError(f"invalid {option} '{text}': expected a number of bytes with an "
                        "optional k, m, g or t suffix")
    value = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if not MINIMUM_BUFFER <= value < MAXIMUM_BUFFER:
        raise FlowError(f"the {option} value must be between {MINIMUM_BUFFER} and "
                        f"{MAXIMUM_BUFFER}")
    return value


def temp_directory(opts):
    """--temp-directory, else SILK_TMPDIR (PYFLOW_TMPDIR), TMPDIR, /tmp; checked now."""
    import os

    from ..errors import FlowError
    from ..io import env
    path = opts.temp_directory or env("TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
    if not os.path.isdir(path):
        raise FlowError(f"temporary directory '{path}' does not exist"
                        if not os.path.exists(path) else
                        f"temporary directory '{path}' is not a directory")
    if not os.access(path, os.W_OK | os.X_OK):
        raise FlowError(f"temporary directory '{path}' is not writable")
    return path


def input_names(opts):
    from .. import io
    from ..errors import FlowError
    if opts.input_pipe is None:
        return io.input_names(opts.inputs, opts.xargs)
    if opts.inputs or opts.xargs is not None:
        raise FlowError("--input-pipe may not be combined with input files or --xargs")
    return [opts.input_pipe]


class _Inputs:
    """Opens inputs in turn, noting their headers (for the output's history and notes)."""

    def __init__(self, opts):
        self.opts = opts
        self.metas = []

    def open(self, name, threads=2):
        import sys

        from .. import io
        reader = io.open_flows(name, threads=threads)
        if self.opts.print_filenames:
            sys.stderr.write(f"{reader.name}\n")
        self.metas.append(reader.meta)
        return reader

    def batches(self, name, threads=2):
        """A lazy source: the file is opened when its first batch is wanted."""
        reader = self.open(name, threads)
        try:
            yield from reader.batches()
        finally:
            reader.close()


def main(opts):
    import signal
    import sys

    from .. import cli, fields, io, sorting
    from ..errors import FlowError
    from ..flowfile import DEFAULT_BLOCK_RECORDS

    if opts.help_fields:
        sys.stdout.write(fields.help_text())
        return 0
    if not opts.fields:
        raise FlowError("the sorting key (--fields switch) was not given")
    keys = fields.parse_list(opts.fields)
    buffer = parse_size(opts.sort_buffer_size) if opts.sort_buffer_size is not None \
        else sorting.DEFAULT_BUFFER
    tempdir = temp_directory(opts)
    method, level = cli.compression(opts)
    io.check_output(opts.output_path)
    names = input_names(opts)
    inputs = _Inputs(opts)

    def terminated(signum, frame):
        raise KeyboardInterrupt  # unwinds through the finally clauses that clean up
    previous = signal.signal(signal.SIGTERM, terminated)
    sorter = sorting.ExternalSorter(keys, opts.reverse, buffer, tempdir)
    sink = None
    try:
        if opts.presorted_input:
            out = _merged(names, inputs, keys, opts.reverse, sorter)
        else:
            for name in names:
                for batch in inputs.batches(name):
                    sorter.add(batch)
            out = sorter.batches(DEFAULT_BLOCK_RECORDS)   # the sink's blocks, whole
        for batch in out:
            if sink is None:
                sink = io.FlowSink(opts.output_path, cli.output_meta(opts, inputs.metas),
                                   method, level)
            sink.write(batch)
        if sink is None:
            sink = io.FlowSink(opts.output_path, cli.output_meta(opts, inputs.metas),
                               method, level)
        sink.close()
    except BaseException:
        if sink is not None:
            sink.abort()
        raise
    finally:
        sorter.close()
        signal.signal(signal.SIGTERM, previous)
    return 0


def _merged(names, inputs, keys, reverse, sorter):
    """--presorted-input: the inputs merged; more than a merge takes at once are first
    merged in groups into temporary runs (each group's files open only while merged)."""
    from .. import sorting
    runs = sorter.runs
    if len(names) <= sorting.MAX_FANIN:
        return sorting.merge([inputs.batches(n, threads=1) for n in names], keys, reverse)
    paths = [runs.write(sorting.merge([inputs.batches(n, threads=1) for n in group],
                                      keys, reverse))
             for group in (names[i: i + sorting.MAX_FANIN]
                           for i in range(0, len(names), sorting.MAX_FANIN))]
    paths = runs.reduce(paths, keys, reverse)
    return sorting.merge([runs.read(p) for p in paths], keys, reverse)
