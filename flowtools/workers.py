"""Runs of input files handled on worker processes, results returned in input order.

Decoding the many small files of an archive is bound by the interpreter's per-column
overhead, which threads cannot spread over cores; processes can. The job is set before the
pool forks, so workers inherit it (compiled predicates, sets) instead of unpickling it, and
only file names go out and results come back. At most `ahead` runs are in flight, which
bounds the memory held by results not yet consumed.
"""

import multiprocessing
import os
from collections import deque
from concurrent.futures import ProcessPoolExecutor

CHUNK_FILES = 32
# A run also stops at this many bytes of input: an archive's busy hours hold files several
# times the size of its quiet ones, and a worker holds a run's decoded records at once
# (pyflow-uniq's workers peaked at 123 MiB on runs of 32 busy files, 8.4 MB of input).
RUN_BYTES = 2 << 20
# Runs of a scan whose combine streams (see scan): some 16 runs of the bench archive
STREAMED_RUN_FILES, STREAMED_RUN_BYTES = 256, 8 << 20
_job = None  # (function, argument) for the workers: set before the pool forks


def _run(names):
    fn, arg = _job
    return fn(arg, names)


def set_job(fn, arg):
    """Set the job of the workers of a fork pool made after this call (for callers that
    run their own pool; ordered_chunks sets it itself)."""
    global _job
    _job = (fn, arg)


run_job = _run


def default_workers():
    return max(1, min(2, os.cpu_count() or 1))


def ordered_chunks(fn, arg, names, chunk=CHUNK_FILES, workers=None, ahead=None,
                   run_bytes=RUN_BYTES):
    """(run of names, fn(arg, run)) for consecutive runs of names, in order."""
    global _job
    _job = (fn, arg)
    workers = workers or default_workers()
    ahead = ahead or 4 * workers
    runs = iter(_runs(names, chunk, run_bytes))
    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init) as pool:
        pending = deque()
        try:
            for run in runs:
                pending.append((run, pool.submit(_run, run)))
                if len(pending) >= ahead:
                    break
            while pending:
                run, fut = pending.popleft()
                result = fut.result()
                nxt = next(runs, None)
                if nxt is not None:
                    pending.append((nxt, pool.submit(_run, nxt)))
                yield run, result
        finally:
            for _, fut in pending:
                fut.cancel()


def _init():
    # A worker decodes run after run into arrays of the same sizes: reusing the freed
    # ones' pages halved the decoding's time per record (page faults, measured)
    from .heap import keep_freed
    keep_freed()


def _runs(names, chunk, limit):
    """Consecutive runs of names, each of at most chunk names and (but for a run of one)
    at most limit bytes of input."""
    runs, run, size = [], [], 0
    for name in names:
        try:
            n = os.path.getsize(name)
        except OSError:
            n = 0                   # reported when opened
        if run and (len(run) == chunk or size + n > limit):
            runs.append(run)
            run, size = [], 0
        run.append(name)
        size += n
    if run:
        runs.append(run)
    return runs


def scan(names, columns, fn, combine=list, threads=2, parallel=None, families=False,
         streamed=False):
    """fn(batch) for batches of every record of the named inputs, in order, with only
    `columns` decoded, yielded as combine([fn(batch), ...]) per run of inputs, in input
    order. A batch holds the records of one block or of many (decoding.decoded_runs
    decodes many small blocks at once). With families, every batch holds records of one
    address family (IPv4 records with 32-bit addresses, or IPv6 ones:
    schema.split_families).

    Aggregating tools (bags, uniq, stats) pass a fn that reduces a block to a small
    partial result and a combine that merges a run's partials, so that only those cross
    between processes. Many named files (parallel=None: 16 or more, none standard input)
    are read by worker processes; otherwise blocks decode on this process's threads.

    streamed: combine takes an iterator and holds no more than its result, so that a
    worker's run can be many times longer (STREAMED_RUN_BYTES): fewer, larger partial
    results to merge in this process, which had been pyflow-bag's bottleneck."""
    from . import io
    if parallel is None:
        parallel = len(names) >= 16 and not any(n in io.STDIN_NAMES for n in names) and \
            default_workers() > 1
    if not parallel:
        for name in names:
            yield combine([fn(batch) for batch in _batches(
                [io.open_flows(name, threads=threads)], columns, threads, families)])
        return
    from . import decoding  # noqa: F401  (imported once, before the workers fork)
    sizes = dict(chunk=STREAMED_RUN_FILES, run_bytes=STREAMED_RUN_BYTES) if streamed else {}
    for _, result in ordered_chunks(_scan_run, (columns, fn, combine, families, streamed),
                                    names, **sizes):
        yield result


def _batches(readers, columns, threads, families):
    from .flowfile import decode_all, families_work
    if not families:
        for _, _, batch in decode_all(readers, columns, threads=threads):
            yield batch
        return
    for _, _, parts in decode_all(readers, columns, threads=threads,
                                  work=families_work(columns)):
        yield from parts


def _scan_run(job, names):
    from . import io
    from .decoding import decoded_runs
    columns, fn, combine, families, streamed = job
    readers = (io.open_flows(name, threads=1) for name in names)
    results = (fn(batch) for batch in decoded_runs(readers, columns, families))
    return combine(results if streamed else list(results))
