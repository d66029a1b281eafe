"""pyflow-cat: concatenate flow files and streams into one."""

from ..cli import Tool

TOOL = Tool(
    name="pyflow-cat",
    summary="Concatenate flow files and streams into a single flow stream.",
    description="Reads flow records from the inputs (pyflow files and streams) and writes "
                "them, in order, as one pyflow stream to --output-path or the standard "
                "output. Every block is decoded and checked; blocks already in the output's "
                "compression are copied without re-encoding.",
    uses=("inputs", "output", "compression", "notes"),
    add_arguments=lambda p: p.add_argument(
        "--print-filenames", action="store_true",
        help="Print to the standard error the name of each input and the number of "
             "records it held."),
    examples=["pyflow-cat a.pf b.pf --output-path=ab.pf",
              "pyflow-cat --compression-method=zstd-19 big.pf > small.pf"],
)


def _report(opts, reader, counts):
    import sys
    if opts.print_filenames and reader is not None:
        sys.stderr.write(f"{reader.name}: {counts[reader]} records\n")


def main(opts):
    from .. import cli, io
    from ..flowfile import decode_all

    names = io.input_names(opts.inputs, opts.xargs)
    method, level = cli.compression(opts)
    sink = None
    counts = {}

    def readers():
        for name in names:
            reader = io.open_flows(name)
            counts[reader] = 0
            yield reader

    try:
        current = None
        # Every block is decoded, which verifies it; one already in the output's
        # compression is then copied as it is rather than encoded again.
        for reader, block, batch in decode_all(readers()):
            if sink is None:
                sink = io.FlowSink(opts.output_path, cli.output_meta(opts, [reader.meta]),
                                   method, level)
            if reader is not current:
                _report(opts, current, counts)
                current = reader
                copy_blocks = getattr(reader, "compressed", None) == (method == "zstd") \
                    and reader.meta.get("level") == level
            if copy_blocks:
                sink.write_block(block)
            else:
                sink.write(batch)
            counts[reader] += len(batch["stime"])
        _report(opts, current, counts)
        if sink is None:
            sink = io.FlowSink(opts.output_path, cli.output_meta(opts), method, level)
        sink.close()
    except BaseException:
        if sink is not None:
            sink.abort()
        raise
