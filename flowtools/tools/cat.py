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
    import sys

    from .. import cli, io

    names = io.input_names(opts.inputs, opts.xargs)
    method, level = cli.compression(opts)
    sink = None
    current, count = None, 0
    try:
        for reader, block, batch in _blocks(names, method, level):
            if sink is None:
                sink = io.FlowSink(opts.output_path, cli.output_meta(opts, [reader.meta]),
                                   method, level)
            if reader is not current:
                if opts.print_filenames and current is not None:
                    sys.stderr.write(f"{current.name}: {count} records\n")
                current, count = reader, 0
            if batch is None:
                sink.write_block(block)  # verified, already in the output's form
                count += block.n
            else:
                sink.write(batch)
                count += len(batch["stime"])
        if opts.print_filenames and current is not None:
            sys.stderr.write(f"{current.name}: {count} records\n")
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


def _blocks(names, method, level):
    """(reader, block, batch or None) for every block of the inputs, in order.

    Every block is decoded, which verifies it; a block already in the output's
    compression is then copied as it is (batch None) rather than encoded again. Many
    named files are verified ahead by worker processes, as decoding small files is
    bound by the interpreter rather than by numpy."""
    import os

    from .. import io
    from ..flowfile import decode_all
    if len(names) < 16 or any(n in io.STDIN_NAMES for n in names) or \
            (os.cpu_count() or 1) < 2:
        copyable = {}

        def readers():
            for name in names:
                reader = io.open_flows(name)
                copyable[reader] = _copyable(reader, method, level)
                yield reader

        for reader, block, batch in decode_all(readers()):
            yield reader, block, None if copyable[reader] else batch
        return
    from ..verify import verified
    for name in verified(names):
        reader = io.open_flows(name, threads=1)
        if _copyable(reader, method, level):
            for pending in reader.blocks():
                yield reader, pending.load(), None
        else:
            for block, batch in reader.decoded_blocks():
                yield reader, block, batch
        reader.close()
