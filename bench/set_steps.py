"""Benchmark step of the IP set tools (issue 5).

  setops   two sets of 5M random IPv4 addresses each (built with the library, written as
           pyflow set files), then pyflow-settool --union, --intersect and --difference on
           them, file in and file out, best of 3 each (bar: < 2 s per operation). nfdump
           has no set algebra, so there is no peer row.
"""

import os

import numpy as np
from harness import Result, best_of, fmt_seconds

SET_SIZE = 5_000_000
SETOPS_BAR = 2.0


class StepFailed(RuntimeError):
    pass


def make_sets(work, n=SET_SIZE, seed=5):
    """Two overlapping sets of n distinct random IPv4 addresses as pyflow set files."""
    import sys
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from flowtools import ipset
    rng = np.random.default_rng(seed)
    paths = []
    for name in ("a", "b"):
        path = os.path.join(work, f"setops-{name}.set")
        got = ipset.IPSet()
        while got.count() < n:  # top up until exactly n distinct addresses
            more = rng.integers(0, 2**32, n - got.count() + n // 100, dtype=np.uint64)
            got = got | ipset.IPSet.from_addresses(more.astype(np.uint32))
        if got.count() > n:
            got = got.nth(np.arange(n))
        if os.path.exists(path):
            os.unlink(path)
        ipset.write_set(got, path)
        paths.append(path)
    return paths


def step_setops(b):
    """pyflow-settool --union/--intersect/--difference of two 5M-address sets."""
    os.makedirs(b.work, exist_ok=True)
    a, c = make_sets(b.work)
    env = dict(b.env, SILK_CLOBBER="1")
    for op in ("union", "intersect", "difference"):
        out = os.path.join(b.work, f"setops-{op}.set")
        cmd = [*b.pyflow("pyflow-settool"), f"--{op}", a, c, f"--output-path={out}"]
        b.say("$ " + " ".join(cmd) + "   (best of 3)")
        t, peak, err = best_of(3, cmd, env=env)
        if t.returncode != 0:
            raise StepFailed(f"pyflow-settool exited {t.returncode}: {err.strip()[-500:]}")
        b.report.add(Result("setops", f"--{op} of two {SET_SIZE:,}-address sets",
                            "pyflow-settool", seconds=t.seconds, records=2 * SET_SIZE,
                            max_rss=peak, cpu=t.cpu))
        b.report.check(f"settool --{op} of 2 x 5M addresses < 2 s", t.seconds < SETOPS_BAR,
                       fmt_seconds(t.seconds))
        os.unlink(out)
    for path in (a, c):
        os.unlink(path)
