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


def main(opts):
    import sys

    from .. import cli, io

    names = io.input_names(opts.inputs, opts.xargs)
    method, level = cli.compression(opts)
    sink = None
    try:
        for meta, name, write in _inputs(names, method, level):
            if sink is None:
                sink = io.FlowSink(opts.output_path, cli.output_meta(opts, [meta]),
                                   method, level)
            records = write(sink.writer)
            if opts.print_filenames:
                sys.stderr.write(f"{name}: {records} records\n")
        if sink is None:
            sink = io.FlowSink(opts.output_path, cli.output_meta(opts), method, level)
        sink.close()
    except BaseException:
        if sink is not None:
            sink.abort()
        raise


def _copyable(reader, method, level):
    from ..flowfile import DEFAULT_LEVEL
    return getattr(reader, "compressed", None) == (method == "zstd") and \
        reader.meta.get("level") == (level or DEFAULT_LEVEL if method == "zstd" else None)


def _inputs(names, method, level):
    """(header, name, write(writer) -> records) for every input, in order.

    Every block is decoded, which verifies it; a block already in the output's
    compression is then copied as it is rather than encoded again. Many named files are
    read by worker processes, which hand back their output frames ready to append."""
    import os

    from .. import io
    from ..workers import ordered_chunks
    if len(names) < 16 or any(n in io.STDIN_NAMES for n in names) or \
            (os.cpu_count() or 1) < 2:
        for name in names:
            reader = io.open_flows(name)
            yield reader.meta, reader.name, \
                lambda writer, r=reader: _copy(r, writer, method, level, threads=2)
        return
    from .. import flowfile  # noqa: F401  (imported once, before the workers fork)
    for _, results in ordered_chunks(_frames_of, (method, level), names):
        for meta, name, (data, records, blocks) in results:
            yield meta, name, \
                lambda writer, d=data, r=records, b=blocks: writer.write_frames(d, r, b) or r


def _copy(reader, writer, method, level, threads):
    """Decode every block of reader and write it to writer; returns the record count."""
    from ..flowfile import decode_all
    from ..schema import nrecords
    copy = _copyable(reader, method, level)
    count = 0
    for _, block, batch in decode_all([reader], threads=threads):
        if copy:
            writer.write_block(block)
            count += block.n
        else:
            writer.write(batch)
            count += nrecords(batch)
    return count


def _frames_of(job, names):
    """On a worker: (header, name, (frames, records, blocks)) for each file."""
    import io as _io

    from .. import io
    from ..flowfile import DEFAULT_LEVEL, FlowWriter
    method, level = job
    out = []
    for name in names:
        reader = io.open_flows(name, threads=1)
        writer = FlowWriter(_io.BytesIO(), compression=method, level=level or DEFAULT_LEVEL,
                            header=False, parallel=False)
        _copy(reader, writer, method, level, threads=1)
        writer.flush()
        out.append((reader.meta, reader.name,
                    (writer.f.getvalue(), writer.records, writer.blocks)))
    return out
