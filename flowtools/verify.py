"""Verifying flow files on worker processes: every block of every file decoded.

Decoding the many small files of an archive is bound by the interpreter's per-column
overhead, which threads cannot spread over cores; processes can. Files are handed out in
chunks and their verdicts come back in order.
"""

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

CHUNK = 24


def _verify(names):
    from . import io
    from .flowfile import decode_all
    counts = []
    for name in names:
        reader = io.open_flows(name, threads=1)
        n = 0
        for _, block, _ in decode_all([reader], threads=1):
            n += block.n
        reader.close()
        counts.append(n)
    return counts


def verified(names, workers=None):
    """Yield each name once all its blocks have decoded cleanly (or raise its error)."""
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    chunks = [names[i: i + CHUNK] for i in range(0, len(names), CHUNK)]
    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        futures = [pool.submit(_verify, chunk) for chunk in chunks]
        try:
            for chunk, fut in zip(chunks, futures, strict=True):
                fut.result()
                yield from chunk
        finally:
            for fut in futures:
                fut.cancel()
