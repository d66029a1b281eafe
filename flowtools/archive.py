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
import tempfile

import numpy as np

from . import container, schema
from .errors import FlowError, FormatError
from .flowfile import DEFAULT_BLOCK_RECORDS, DEFAULT_LEVEL, FlowWriter

HOUR_MS = 3_600_000


def _fsync_enabled():
    from .io import env
    return env("FSYNC", "1") not in ("0", "")


class ArchiveWriter:
    """Buffers batches and writes them to their hourly files on flush() and close()."""

    def __init__(self, root, config, meta=None, compression="zstd", level=DEFAULT_LEVEL,
                 buffer_records=4_000_000, block_records=DEFAULT_BLOCK_RECORDS):
        self.root = root
        self.config = config
        self.meta = dict(meta or {})
        self.compression = compression
        self.level = level
        self.buffer_records = buffer_records
        self.block_records = block_records
        self.pending = {}  # key -> list of batches
        self.buffered = 0
        self.records = 0
        self.files = set()

    def write(self, batch):
        n = schema.nrecords(batch)
        if not n:
            return
        for key, index in split_by_file(batch):
            self.pending.setdefault(key, []).append((batch, index))
        self.buffered += n
        if self.buffered >= self.buffer_records:
            self.flush()

    def flush(self):
        jobs = []
        for key in sorted(self.pending):
            hour, flowtype, sensor = key
            if flowtype not in self.config.flowtypes:
                raise FlowError(f"flowtype {flowtype} is not defined in the site "
                                f"configuration {self.config.path}")
            path = self.config.path_for(self.root, flowtype, sensor, hour)
            meta = dict(self.meta, sensor=sensor, flowtype=flowtype, hour=hour)
            jobs.append((path, self.pending[key], meta))
        self.pending.clear()
        self.buffered = 0
        # Files are independent: gathering and compressing them on both cores.
        pool = _pool()
        futures = [pool.submit(self._write_file, path, parts, meta)
                   for path, parts, meta in jobs]
        for (path, _, _), fut in zip(jobs, futures, strict=True):
            self.records += fut.result()
            self.files.add(path)

    def _write_file(self, path, parts, meta):
        batch = schema.concat([b if index is None else schema.take(b, index)
                               for b, index in parts])
        append_file(path, [batch], meta, self.compression, self.level, self.block_records)
        return schema.nrecords(batch)

    def close(self):
        self.flush()


_POOL = []


def _pool():
    if not _POOL:
        from concurrent.futures import ThreadPoolExecutor
        _POOL.append(ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1)),
                                        thread_name_prefix="pyflow-pack"))
    return _POOL[0]


def split_by_file(batch):
    """Yield ((hour_ms, flowtype, sensor), index) where index selects, in input order, the
    records of that file (None: all of them)."""
    hour = batch["stime"] // HOUR_MS
    key = (hour.astype(np.int64) << 24) | (batch["flowtype"].astype(np.int64) << 16) | \
        batch["sensor"].astype(np.int64)
    first = key[0]
    if (key == first).all():
        yield _unkey(int(first)), None
        return
    order = np.argsort(key, kind="stable")
    skey = key[order]
    cuts = np.flatnonzero(skey[1:] != skey[:-1]) + 1
    starts = np.concatenate(([0], cuts))
    ends = np.concatenate((cuts, [len(skey)]))
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        yield _unkey(int(skey[a])), order[a:b]


def _unkey(k):
    return ((k >> 24) * HOUR_MS, (k >> 16) & 0xFF, k & 0xFFFF)


def _makedirs(path):
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    except OSError as exc:
        raise FlowError(f"cannot create directory for {path}: {exc.strerror}") from None


def append_file(path, batches, meta, compression="zstd", level=DEFAULT_LEVEL,
                block_records=DEFAULT_BLOCK_RECORDS):
    """Add batches to the flow file at path, creating it atomically when absent."""
    _makedirs(path)
    _remove_stale_temps(path)
    if not os.path.exists(path) and _create(path, batches, meta, compression, level,
                                             block_records):
        return
    _append(path, batches, level, block_records)


def _create(path, batches, meta, compression, level, block_records):
    """Write a new file; False when another writer created it first."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.{os.getpid()}.",
                               suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w+b") as f:
            w = FlowWriter(f, meta, compression, level, block_records)
            for b in batches:
                w.write(b)
            w.close()
            _commit(f, f.tell(), None)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        os.unlink(tmp)


def _remove_stale_temps(path):
    """Remove temporary files that killed writers left for this file."""
    prefix = f".{os.path.basename(path)}."
    directory = os.path.dirname(path) or "."
    for name in os.listdir(directory):
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid = name[len(prefix):].split(".", 1)[0]
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


def _commit(f, length, previous):
    if _fsync_enabled():
        return container.commit(f, length, previous)
    f.flush()
    f.seek(container.SLOT_A if not previous or previous[1] % 2 == 0 else container.SLOT_B)
    seq = previous[1] + 1 if previous else 1
    f.write(container._slot_bytes(length, seq))
    f.flush()
    return length, seq


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


def _append(path, batches, level, block_records):
    try:
        f = open(path, "r+b")
    except OSError as exc:
        raise FlowError(f"cannot open {path} for appending: {exc.strerror}") from None
    with f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        header = container.read_header(f, path)
        if header.meta.get("kind") != "flow":
            raise FormatError(f"{path}: not a flow file; will not append to it")
        f.seek(0)
        header = container.read_header(f, path)
        length, seq = committed_length(f, path, header)
        previous = (length, seq) if seq else None
        # Whatever lies past the committed end is a crashed append: drop it.
        f.truncate(length)
        f.seek(length)
        comp = header.meta.get("compression", "zstd")
        w = FlowWriter(f, header.meta, comp, header.meta.get("level", level), block_records,
                       header=False)
        for b in batches:
            w.write(b)
        w.close()
        _commit(f, f.tell(), previous)
