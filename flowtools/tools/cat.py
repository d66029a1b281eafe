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

    names = io.input_names(opts.inputs, opts.xargs)
    method, level = cli.compression(opts)
    sink = None
    try:
        for reader, blocks in _inputs(names, method, level):
            if sink is None:
                sink = io.FlowSink(opts.output_path, cli.output_meta(opts, [reader.meta]),
                                   method, level)
            count = 0
            for block, batch in blocks:
                if batch is None:
                    sink.write_block(block)  # verified, already in the output's form
                    count += block.n
                else:
                    sink.write(batch)
                    count += len(batch["stime"])
            if opts.print_filenames:
                import sys
                sys.stderr.write(f"{reader.name}: {count} records\n")
        if sink is None:
            sink = io.FlowSink(opts.output_path, cli.output_meta(opts), method, level)
        sink.close()
    except BaseException:
        if sink is not None:
            sink.abort()
        raise


def _copyable(reader, method, level):
    return getattr(reader, "compressed", None) == (method == "zstd") and \
        reader.meta.get("level") == level


def _inputs(names, method, level):
    """(reader, iterator of (block, batch or None)) for each input, in order.

    Every block is decoded, which verifies it; a block already in the output's
    compression is then copied as it is (batch None) rather than encoded again. Many
    named files are verified ahead by worker processes, as decoding small files is
    bound by the interpreter rather than by numpy."""
    import os

    from .. import io
    from ..flowfile import decode_all
    if len(names) < 16 or any(n in io.STDIN_NAMES for n in names) or \
            (os.cpu_count() or 1) < 2:
        grouped = {}

        def readers():
            for name in names:
                reader = io.open_flows(name)
                grouped[reader] = _copyable(reader, method, level)
                yield reader

        current, pending = None, []
        for reader, block, batch in decode_all(readers()):
            if reader is not current and current is not None:
                yield current, pending
                pending = []
            current = reader
            pending.append((block, None if grouped[reader] else batch))
        if current is not None:
            yield current, pending
        return
    from ..verify import verified
    for name in verified(names):
        reader = io.open_flows(name, threads=1)
        if _copyable(reader, method, level):
            yield reader, ((p.load(), None) for p in reader.blocks())
        else:
            yield reader, reader.decoded_blocks()
        reader.close()
