"""Writing records into the hourly archive, safely.

Records are split by (hour of sTime, flowtype, sensor) into the file the site config's
path-format names. A new file is written under a temporary name and linked into place
(an atomic step that also refuses to replace a file another writer created meanwhile); an
existing file is appended to in place under an exclusive lock, and the append becomes
visible only when the header's commit slot is updated after the data (container.py). A
writer killed at any moment leaves every file readable with complete records.
"""

import fcntl
import os
from collections import deque

import numpy as np

from . import container, schema
from .errors import FlowError, FormatError
from .flowfile import DEFAULT_BLOCK_RECORDS, DEFAULT_LEVEL, FlowWriter
from .io import temp_beside

HOUR_MS = 3_600_000


def _fsync_enabled():
    from .io import env
    return env("FSYNC", "1") not in ("0", "")


class ArchiveWriter:
    """Buffers batches and writes them to their hourly files on flush() and close().

    processes: encode the files' blocks on worker processes, forked when the buffer is
    full, while this process goes on reading into a new buffer and writes the files as
    their blocks come back (pyflow-pack and pyflow-gen); a threaded server (the
    collector) keeps to threads."""

    FORK_RECORDS = 1 << 18  # fewer are encoded here: forking would cost more

    def __init__(self, root, config, meta=None, compression="zstd", level=DEFAULT_LEVEL,
                 buffer_records=None, block_records=DEFAULT_BLOCK_RECORDS,
                 processes=False):
        self.root = root
        self.config = config
        self.meta = dict(meta or {})
        self.compression = compression
        self.level = level
        # with processes, a buffer being encoded and one being filled are held at once
        self.buffer_records = buffer_records or (2_000_000 if processes else 4_000_000)
        self.block_records = block_records
        self.processes = processes and (os.cpu_count() or 1) > 1
        self.pending = []  # batches given since the last flush
        self.buffered = 0
        self.records = 0
        self.files = set()
        self.encoding = None  # _Encoding of the previous buffer, when processes
        self.ready = []  # prepared files not yet published
        self.pool = None  # write_blocks' workers
        self.run = None  # the _Run of blocks being gathered for them
        self.inflight = deque()  # runs submitted, in order

    def write(self, batch):
        n = schema.nrecords(batch)
        if not n:
            return
        self.pending.append(batch)
        self.buffered += n
        if self.encoding is not None:
            self._collect(block=False)
        if self.buffered >= self.buffer_records:
            self._flush(wait=False)

    def flush(self):
        """Write every record given so far to its file."""
        self._flush(wait=True)

    def _jobs(self):
        """The buffered records grouped by file, as one _Job per file, in key order."""
        pending, self.pending, self.buffered = self.pending, [], 0
        if not pending:
            return []
        batch, keys, lens = _by_file(pending)
        del pending
        jobs, at = [], 0
        for (hour, flowtype, sensor), n in zip(keys, lens, strict=True):
            path = self._path(hour, flowtype, sensor)
            meta = dict(self.meta, sensor=sensor, flowtype=flowtype, hour=hour)
            jobs.append(_Job(path, batch, at, n, meta))
            at += n
        return jobs

    def _flush(self, wait):
        if self.run is not None or self.inflight:
            try:
                self._drain_runs()  # blocks given before these batches go first
            except BaseException:
                self._abandon()
                raise
        # Files are prepared (encoded and written unseen), then synced to disk together
        # and published, a chunk at a time: appends hold a lock and a descriptor. The
        # previous buffer's files are all published before this one's (appends to a
        # file stay in order).
        try:
            if self.encoding is not None:
                self._collect(block=True)
            jobs = self._jobs()
            args = (self.compression, self.level, self.block_records)
            if self.processes and sum(j.records for j in jobs) >= self.FORK_RECORDS:
                # Encoding is bound by the interpreter, which threads cannot spread over
                # cores: forked workers (which inherit the jobs) encode, this process
                # reads on and writes the files.
                self.encoding = _Encoding(jobs, args)
                if wait:
                    self._collect(block=True)
                return
            encoded = _encode_jobs((jobs, args), range(len(jobs)))
            for job, enc in zip(jobs, encoded, strict=True):
                self._add_ready((prepare_file(job.path, job.batches, job.meta, *args,
                                              encoded=enc), job.path, job.records))
            self._publish()
        except BaseException:
            self._abandon()
            raise

    def _collect(self, block):
        """Write the files whose blocks the workers have encoded (all, when block)."""
        try:
            for item in self.encoding.results(block):
                self._add_ready(item)
            if self.encoding.done:
                self.encoding = None
                self._publish()
        except BaseException:
            self._abandon()
            raise

    def _add_ready(self, item):
        self.ready.append(item)
        if len(self.ready) >= _CHUNK:
            self._publish()

    def _publish(self):
        ready, self.ready = self.ready, []
        _sync([p for p, _, _ in ready])
        for p, path, n in ready:
            p.publish()
            self.records += n
            self.files.add(path)

    def _abandon(self):
        ready, self.ready = self.ready, []
        for p, _, _ in ready:
            p.abandon()
        for fut in self.inflight:
            fut.cancel()
        self.inflight.clear()
        self.run = None
        if self.encoding is not None:
            self.encoding.cancel()
            self.encoding = None

    def write_blocks(self, reader, sensor=None, flowtype=None):
        """Store every block of a pyflow FlowReader, with sensor and/or flowtype put in
        place of the records' own when given.

        This process only reads the blocks' headers: worker processes, forked before any
        records are decoded here (so that no page is shared copy-on-write), read runs of
        about a million records' blocks (of one input or many), decode them, group their
        records by file and encode them, and this process writes the files of each run in
        turn. flush() or close() waits for the last runs."""
        if self.pending or self.encoding is not None:
            self._flush(wait=True)  # batches given before these blocks go first
        try:
            if self.run is not None and self.run.overrides != (sensor, flowtype):
                self._submit_run()
            for item in _block_items(reader):
                if self.run is not None and self.run.records >= _TASK_RECORDS:
                    self._submit_run()
                if self.run is None:
                    self.run = _Run((sensor, flowtype))
                self.run.add(item)
        except BaseException:
            self._abandon()
            raise

    def _submit_run(self):
        run, self.run = self.run, None
        if run is None or not run.blocks:
            return
        pool = self._pool()
        args = (self.compression, self.level, self.block_records, *run.overrides)
        self.inflight.append(pool.submit(_pack_run, args, run.sources, run.blocks))
        while len(self.inflight) > self._workers:
            self._store_run(self.inflight.popleft().result())

    def _drain_runs(self):
        """Submit the run being gathered and write every run's files."""
        self._submit_run()
        while self.inflight:
            self._store_run(self.inflight.popleft().result())

    def _pool(self):
        if self.pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            from .workers import default_workers
            self._workers = default_workers()
            from .heap import keep_freed
            self.pool = ProcessPoolExecutor(self._workers, initializer=keep_freed,
                                            mp_context=multiprocessing.get_context("fork"))
        return self.pool

    def _store_run(self, files):
        args = (self.compression, self.level, self.block_records)
        for (hour, flowtype, sensor), encoded in files:
            path = self._path(hour, flowtype, sensor)
            meta = dict(self.meta, sensor=sensor, flowtype=flowtype, hour=hour)
            self._add_ready((prepare_file(path, lambda e=encoded: _decoded(e, args[0]), meta,
                                          *args, encoded=encoded), path, encoded[1]))
        self._publish()  # before the next run's files, which may append to these

    def _path(self, hour, flowtype, sensor):
        if flowtype not in self.config.flowtypes:
            raise FlowError(f"flowtype {flowtype} is not defined in the site "
                            f"configuration {self.config.path}")
        return self.config.path_for(self.root, flowtype, sensor, hour)

    def close(self):
        try:
            self.flush()
        finally:
            self._stop_pool()

    def abort(self):
        """Give up: files not yet published are dropped (published ones are complete)."""
        self._abandon()
        self._stop_pool()

    def _stop_pool(self):
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
            self.pool = None


_TASK_RECORDS = 1 << 20


class _Run:
    """Blocks gathered for one worker task: their sources (name, path or None,
    compressed) and, per block, (source, header, offset, size) when the worker can read a
    regular file itself, or (source, header, payload) for a stream (the payloads of a
    file would otherwise be read here, pickled and sent on: 0.5 CPU-s for 10M records)."""

    def __init__(self, overrides):
        self.overrides = overrides
        self.sources, self.blocks, self.records = [], [], 0

    def add(self, item):
        """Add a _block_items item."""
        source = item[0]
        if not self.sources or self.sources[-1] != source:
            self.sources.append(source)
        self.blocks.append((len(self.sources) - 1, *item[1:]))
        self.records += item[1]["n"]


def _block_items(reader):
    """(source, header, offset, size) or (source, header, payload) of each block of a
    reader, as _Run holds them."""
    path = getattr(reader.f, "name", None)
    seek = reader.frames.seekable and isinstance(path, str) and os.path.isfile(path)
    source = (reader.name, path if seek else None, reader.compressed)
    for pending in reader.blocks():
        if seek:
            yield source, pending.header, reader.frames.pos, pending.size
            pending.skip()
        else:
            yield source, pending.header, pending.load().payload


def _payloads(sources, blocks):
    """(source, header, payload) of each block of a run, read from its file when given by
    place."""
    files = {}
    try:
        out = []
        for k, header, *rest in blocks:
            name, path, _ = sources[k]
            if path is None:
                out.append((k, header, rest[0]))
                continue
            if path not in files:
                files[path] = open(path, "rb")
            at, size = rest
            payload = os.pread(files[path].fileno(), size, at)
            if len(payload) != size:
                raise FormatError(f"{name}: truncated block at byte {at}")
            out.append((k, header, payload))
        return out
    finally:
        for f in files.values():
            f.close()


class _Source:
    """The reader of blocks shipped to a worker, as far as decoding them needs one."""

    def __init__(self, name, compressed):
        self.name, self.compressed = name, compressed

    def where(self, block):
        return f"{self.name}: block {block.header.get('_no', '?')}"


def _pack_run(args, sources, blocks):
    """On a worker: [(file key, (frames, records, blocks))] of a run of blocks, its
    records grouped by file in key order."""
    from .flowfile import Block, _decode, _local_dctx
    compression, level, block_records, sensor, flowtype = args
    readers = [_Source(name, compressed) for name, _, compressed in sources]
    blocks = [Block(readers[k], h, p) for k, h, p in _payloads(sources, blocks)]
    if any(b.v6 for b in blocks):
        # IPv6 runs are re-encoded from the addresses as stored (segments.Split)
        parts = [b.decode_split(_local_dctx(b)) for b in blocks]
        if all(p is not None for p in parts):
            return _pack_split([override(p, sensor, flowtype) for p in parts],
                               (compression, level, block_records))
    batch, keys, lens = _by_file([override(_decode(b, None), sensor, flowtype)
                                  for b in blocks])
    return _encode_files(batch, keys, lens, (compression, level, block_records))


def _by_file(batches):
    """(batch, keys, lengths): the records of batches grouped by file (group_by_file)."""
    if any(schema.is_v6(b) for b in batches) and not all(schema.is_v6(b) for b in batches):
        batches = [schema.to_v6(b) for b in batches]
    keys, lens, order = _file_order(batches)
    return (schema.concat(batches) if order is None else _grouped(batches, order)), keys, lens


def _pack_split(parts, args):
    from .segments import Split
    keys, lens, order = _file_order(parts)
    halves = [n + h for n in schema.IP_COLUMNS for h in (".hi", ".lo")]
    rows = [{k: v for k, v in p.items() if k not in halves} for p in parts]
    cols = schema.concat(rows) if order is None else _grouped(rows, order)
    if order is not None:
        # the IPv6 records' halves, in their records' new order
        ipv6 = np.concatenate([p["ipv6"] for p in parts])
        rank = np.cumsum(ipv6, dtype=np.intp)
        rank -= 1
        six = rank[order[cols["ipv6"]]]
    for k in halves:
        col = np.concatenate([p[k] for p in parts])
        cols[k] = col if order is None else col[six]
    return _encode_files(Split(cols), keys, lens, args)


def _file_order(batches):
    return group_by_file({k: np.concatenate([b[k] for b in batches])
                          for k in ("stime", "flowtype", "sensor")})


def _encode_files(batch, keys, lens, args):
    jobs, at = [], 0
    for n in lens:
        jobs.append(_Job(None, batch, at, n, None))
        at += n
    return list(zip(keys, _encode_jobs((jobs, args), range(len(jobs))), strict=True))


def _grouped(batches, order):
    """The records of batches, one after the other, taken in order. Joined, then taken
    with np.take, which beats both fancy indexing and putting each batch's records in
    place (59 against 64 and 111 ns per record on a run of 1M, min of 12)."""
    n = len(order)
    out = {}
    for name, first in batches[0].items():
        if all(b[name].strides[:1] == (0,) for b in batches) and \
                len({b[name][0] for b in batches}) == 1:
            out[name] = np.broadcast_to(first[:1], (n,))  # a constant stays one value
            continue
        whole = np.concatenate([b[name] for b in batches])
        if whole.ndim == 2:  # 128-bit addresses moved as one 16-byte item each
            out[name] = np.take(whole.view(np.complex128)[:, 0], order, mode="clip") \
                .view(np.uint64).reshape(-1, 2)
        else:
            out[name] = np.take(whole, order, mode="clip")
    return out


def override(batch, sensor=None, flowtype=None):
    """The batch with every record's sensor and/or flowtype replaced, when given."""
    if sensor is None and flowtype is None:
        return batch
    batch = dict(batch)
    n = schema.nrecords(batch)
    if sensor is not None:
        batch["sensor"] = np.full(n, sensor, np.uint16)
    if flowtype is not None:
        batch["flowtype"] = np.full(n, flowtype, np.uint8)
    return batch


def _decoded(encoded, compression):
    """The batches of block frames a worker encoded (for a file whose compression
    differs from them, where the frames cannot be copied)."""
    import io as _io

    from .flowfile import FlowReader
    frames, records, blocks = encoded
    data = container.header_bytes({"kind": "flow", "compression": compression,
                                   "schema": list(schema.NAMES)}) + frames + \
        container.frame_bytes(container.END, {"records": records, "blocks": blocks})
    return list(FlowReader(_io.BytesIO(data), "<encoded>", threads=1))


class _Encoding:
    """A buffer's jobs encoded on forked worker processes, runs of files at a time; the
    results are taken in order, as they are ready."""

    RUN_RECORDS = 1 << 18

    def __init__(self, jobs, args):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        from . import workers
        self.jobs, self.args = jobs, args
        workers.set_job(_encode_jobs, (jobs, args))  # inherited by the workers at fork
        self.pool = ProcessPoolExecutor(workers.default_workers(),
                                        mp_context=multiprocessing.get_context("fork"))
        runs, run, size = [], [], 0
        for i, job in enumerate(jobs):
            run.append(i)
            size += job.records
            if size >= self.RUN_RECORDS:
                runs.append(run)
                run, size = [], 0
        if run:
            runs.append(run)
        self.futures = deque((run, self.pool.submit(workers.run_job, run)) for run in runs)

    @property
    def done(self):
        return not self.futures

    def results(self, block):
        """(prepared file, path, records) for each job whose run is encoded, in order."""
        while self.futures and (block or self.futures[0][1].done()):
            run, fut = self.futures.popleft()
            for i, encoded in zip(run, fut.result(), strict=True):
                job = self.jobs[i]
                yield (prepare_file(job.path, job.batches, job.meta, *self.args,
                                    encoded=encoded), job.path, encoded[1])
        if not self.futures:
            self.pool.shutdown()

    def cancel(self):
        for _, fut in self.futures:
            fut.cancel()
        self.futures.clear()
        self.pool.shutdown(cancel_futures=True)


class _Job:
    """The records of one file in a flush: a slice of the flush's grouped batch."""

    def __init__(self, path, batch, start, records, meta):
        self.path, self.batch, self.start, self.records, self.meta = \
            path, batch, start, records, meta

    def batches(self):
        return [_joined(_part(self.batch, self.start, self.start + self.records))]


def _part(batch, a, b):
    """Records a to b of a batch or a segments.Split."""
    return schema.take(batch, slice(a, b)) if isinstance(batch, dict) else batch.slice(a, b)


def _joined(batch):
    return batch if isinstance(batch, dict) else batch.joined()


def _encode_jobs(arg, run):
    """(block frames, records, blocks) of each job of the run (a worker's share).

    Files of up to a block are encoded together (segments.encode_segments: hourly files
    are small, and one block each), larger ones by a FlowWriter of their own."""
    import io as _io

    from .flowfile import _compressor
    from .segments import encode_segments
    jobs, (compression, level, block_records) = arg
    run = list(run)
    out = {}
    small = [i for i in run if jobs[i].records <= block_records]
    cctx = _compressor(level) if compression == "zstd" else None
    while small:
        # consecutive jobs are consecutive slices of the grouped batch
        k = 1
        while k < len(small) and small[k] == small[k - 1] + 1:
            k += 1
        group, small = small[:k], small[k:]
        first, last = jobs[group[0]], jobs[group[-1]]
        part = _part(first.batch, first.start, last.start + last.records)
        blocks = encode_segments(part, [jobs[i].records for i in group], cctx)
        for i, (header, payload) in zip(group, blocks, strict=True):
            out[i] = (container.frame_bytes(container.BLOCK, header) + payload,
                      jobs[i].records, 1)
    for i in run:
        if i in out:
            continue
        w = FlowWriter(_io.BytesIO(), compression=compression, level=level,
                       block_records=block_records, header=False, parallel=False)
        for b in jobs[i].batches():
            w.write(b)
        w.flush()
        out[i] = (w.f.getvalue(), w.records, w.blocks)
    return [out[i] for i in run]


_CHUNK = 256


def group_by_file(batch):
    """(keys, lengths, order) that group a batch's records by file: taken in order (None:
    as they are), the records are runs of lengths[i] records of file keys[i] =
    (hour_ms, flowtype, sensor), in key order, each in input order."""
    hour = batch["stime"] // HOUR_MS
    ft, sensor = batch["flowtype"], batch["sensor"]
    lo = [int(_MIN(c)) for c in (hour, ft, sensor)]
    span = [int(_MAX(c)) - m + 1 for c, m in zip((hour, ft, sensor), lo, strict=True)]
    if span == [1, 1, 1]:
        return [(lo[0] * HOUR_MS, lo[1], lo[2])], [len(hour)], None
    # Number the (hour, flowtype, sensor) cells densely; a flush spans few of them, so
    # the numbers usually fit 16 bits, which numpy's stable sort orders by radix.
    cell = (hour - lo[0]) * (span[1] * span[2])
    cell += (ft.astype(np.int64) - lo[1]) * span[2]
    cell += sensor.astype(np.int64) - lo[2]
    if span[0] * span[1] * span[2] <= 1 << 16:
        cell = cell.astype(np.uint16)
    order = np.argsort(cell, kind="stable")
    scell = cell[order]
    starts = np.flatnonzero(np.concatenate(([True], scell[1:] != scell[:-1])))
    lens = np.diff(np.append(starts, len(scell))).tolist()
    per_hour, per_ft = span[1] * span[2], span[2]
    keys = [((lo[0] + c // per_hour) * HOUR_MS, lo[1] + c % per_hour // per_ft,
             lo[2] + c % per_ft) for c in scell[starts].tolist()]
    return keys, lens, order


_MIN, _MAX = np.minimum.reduce, np.maximum.reduce


_READY_DIRS = {}  # directories this process has created and cleaned


def _prepare_directory(path):
    """Create the file's directory, and remove temporary files killed writers left there;
    once per directory and process (an hour of data shares a few directories)."""
    directory = os.path.dirname(path) or "."
    if directory in _READY_DIRS:
        return
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise FlowError(f"cannot create directory for {path}: {exc.strerror}") from None
    _remove_stale_temps(directory)
    _READY_DIRS[directory] = True


def append_file(path, batches, meta, compression="zstd", level=DEFAULT_LEVEL,
                block_records=DEFAULT_BLOCK_RECORDS):
    """Add batches to the flow file at path, creating it atomically when absent."""
    pending = prepare_file(path, lambda: batches, meta, compression, level, block_records)
    _sync([pending])
    pending.publish()


def prepare_file(path, batches, meta, compression="zstd", level=DEFAULT_LEVEL,
                 block_records=DEFAULT_BLOCK_RECORDS, encoded=None):
    """Write the data of an addition to a file, not yet visible: publish() makes it so.

    batches() gives the records; encoded, when given, is the same records already encoded
    by FlowWriter.flush() with this compression (frames, records, blocks), used as they are
    wherever the file's compression allows.

    A new file is written complete under a temporary name; an existing one is locked and
    the data appended past its committed end. Many files are prepared, synced to disk
    together, then published, so that safety costs one sync per batch of files."""
    _prepare_directory(path)
    content = _Content(batches, encoded, compression)
    if not os.path.exists(path):
        return _NewFile(path, content, meta, compression, level, block_records)
    return _Append(path, content, level, block_records)


class _Content:
    def __init__(self, batches, encoded, compression):
        self.batches, self.encoded, self.compression = batches, encoded, compression

    def write(self, writer):
        if self.encoded is not None and writer.meta["compression"] == self.compression:
            writer.write_frames(*self.encoded)
        else:
            for b in self.batches():
                writer.write(b)
        writer.close()


def _sync(pendings):
    if not _fsync_enabled() or not pendings:
        return
    for p in pendings:
        p.flush()
    os.sync()


class _NewFile:
    def __init__(self, path, content, meta, compression, level, block_records):
        self.path, self.content = path, content
        self.args = (level, block_records)
        fd, self.tmp = temp_beside(path, f".{os.path.basename(path)}.{os.getpid()}.")
        try:
            with os.fdopen(fd, "w+b") as f:
                content.write(FlowWriter(f, meta, compression, level, block_records,
                                         parallel=False))
                length = f.tell()
                f.seek(container.SLOT_A)
                f.write(container.slot_bytes(length, 1))
        except BaseException:
            os.unlink(self.tmp)
            raise

    def flush(self):
        pass

    def abandon(self):
        os.unlink(self.tmp)

    def publish(self):
        try:
            os.link(self.tmp, self.path)
        except FileExistsError:
            # another writer created it meanwhile: add ours to theirs
            append = _Append(self.path, self.content, *self.args)
            _sync([append])
            append.publish()
        finally:
            os.unlink(self.tmp)


class _Append:
    def __init__(self, path, content, level, block_records):
        try:
            self.f = f = open(path, "r+b")
        except OSError as exc:
            raise FlowError(f"cannot open {path} for appending: {exc.strerror}") from None
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            header = container.read_header(f, path)
            if header.meta.get("kind") != "flow":
                raise FormatError(f"{path}: not a flow file; will not append to it")
            length, seq = committed_length(f, path, header)
            self.previous = (length, seq) if seq else None
            # Whatever lies past the committed end is a crashed append: drop it.
            f.truncate(length)
            f.seek(length)
            comp = header.meta.get("compression", "zstd")
            content.write(FlowWriter(f, header.meta, comp, header.meta.get("level", level),
                                     block_records, header=False, parallel=False))
            self.length = f.tell()
        except BaseException:
            f.close()
            raise

    def flush(self):
        self.f.flush()

    def abandon(self):
        """Leave the file as committed: the data past its end is ignored and dropped."""
        self.f.close()

    def publish(self):
        """Point the commit slot at the new end (after the data is on disk)."""
        with self.f as f:
            seq = self.previous[1] + 1 if self.previous else 1
            older = container.SLOT_B if (self.previous and self.previous[1] % 2 == 1) \
                else container.SLOT_A
            f.seek(older)
            f.write(container.slot_bytes(self.length, seq))
            f.flush()


def _remove_stale_temps(directory):
    """Remove temporary files (.NAME.PID.XXXX.tmp) that killed writers left behind."""
    for name in os.listdir(directory):
        if not (name.startswith(".") and name.endswith(".tmp")):
            continue
        parts = name.split(".")
        pid = parts[-3] if len(parts) >= 5 else ""
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass
        except PermissionError:
            pass


def committed_length(f, name, header):
    """The committed length, scanning a stream-written file to its last end marker."""
    if header.committed:
        return header.committed
    frames = container.FrameReader(f, name, header)
    while True:
        frame = frames.next_frame()
        if frame is None:
            return frames.pos, 0
        kind, h, _ = frame
        if kind == container.BLOCK:
            frames.skip_payload(sum(int(c[5]) for c in h["cols"]))
