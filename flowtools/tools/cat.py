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
    read by worker processes, which decode them and hand back either where the frames to
    copy lie in each file or the frames they encoded."""
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
    from .. import decoding  # noqa: F401  (imported once, before the workers fork)
    for run, results in ordered_chunks(_frames_of, (method, level), names):
        for path, (meta, name, how) in zip(run, results, strict=True):
            yield meta, name, lambda writer, p=path, h=how: _append(writer, p, h)


def _append(writer, path, how):
    """Append what a worker made of one input; returns its record count."""
    kind, *args = how
    if kind == "spans":
        identity, spans, records, blocks = args
        writer.copy_frames(path, identity, spans, records, blocks)
        return records
    data, records, blocks = args
    writer.write_frames(data, records, blocks)
    return records


def _copy(reader, writer, method, level, threads):
    """Decode every block of reader and write it to writer; returns the record count."""
    from ..flowfile import FlowReader, decode_all
    from ..schema import nrecords
    copy = _copyable(reader, method, level)
    if copy and isinstance(reader, FlowReader):
        return _copy_checked(reader, writer)
    count = 0
    for _, block, batch in decode_all([reader], threads=threads):
        if copy:
            writer.write_block(block)
            count += block.n
        else:
            writer.write(batch)
            count += nrecords(batch)
    return count


def _copy_checked(reader, writer):
    """Copy every block of a pyflow reader to writer as it is, each run of blocks once
    checked by decoding them all together (decoding.check, on two threads: a stream's
    large blocks decompress and decode outside the interpreter's lock); returns the
    record count."""
    from collections import deque

    import zstandard

    from ..decoding import RUN_RECORDS, check
    from ..flowfile import _pool
    pool = _pool(2)
    ahead = deque()

    def done(keep):
        total = 0
        while len(ahead) > keep:
            blocks, fut = ahead.popleft()
            fut.result()
            for block in blocks:
                writer.write_block(block)
            total += sum(b.n for b in blocks)
        return total

    count, run, n = 0, [], 0
    try:
        for part in reader.blocks():
            block = part.load()
            run.append(block)
            n += block.n
            if n >= RUN_RECORDS:
                ahead.append((run, pool.submit(check, run, zstandard.ZstdDecompressor())))
                count += done(2)
                run, n = [], 0
        if run:
            ahead.append((run, pool.submit(check, run, zstandard.ZstdDecompressor())))
        reader.close()
        return count + done(0)
    finally:
        for _, fut in ahead:
            fut.cancel()


def _frames_of(job, names):
    """On a worker: (header, name, how) for each file, how being ("spans", file
    identity, [(start, end)] of its block frames, records, blocks) for a file whose
    blocks are copied as they are, or ("frames", data, records, blocks) for one encoded
    again.

    The blocks to copy are checked by decoding them many files at a time
    (decoding.check), several times cheaper than block by block."""
    import io as _io
    import os

    import zstandard

    from .. import io
    from ..decoding import RUN_RECORDS, check
    from ..flowfile import DEFAULT_LEVEL, FlowReader, FlowWriter
    method, level = job
    out, unchecked, count = [], [], 0
    dctx = zstandard.ZstdDecompressor()
    for name in names:
        reader = io.open_flows(name, threads=1)
        if isinstance(reader, FlowReader) and _copyable(reader, method, level):
            st = os.fstat(reader.f.fileno())
            spans, records, blocks = [], 0, 0
            for part in reader.blocks():
                block = part.load()
                start, end = block.span
                if spans and spans[-1][1] == start:
                    spans[-1] = (spans[-1][0], end)
                else:
                    spans.append((start, end))
                records += block.n
                blocks += 1
                unchecked.append(block)
                count += block.n
            reader.close()
            out.append((reader.meta, reader.name,
                        ("spans", (st.st_dev, st.st_ino), spans, records, blocks)))
            if count >= RUN_RECORDS:
                check(unchecked, dctx)
                unchecked, count = [], 0
            continue
        writer = FlowWriter(_io.BytesIO(), compression=method, level=level or DEFAULT_LEVEL,
                            header=False, parallel=False)
        _copy(reader, writer, method, level, threads=1)
        writer.flush()
        out.append((reader.meta, reader.name,
                    ("frames", writer.f.getvalue(), writer.records, writer.blocks)))
    check(unchecked, dctx)
    return out
