import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")
sys.path.insert(0, ROOT)

from flowtools import schema  # noqa: E402


def random_batch(rng, n, v6=False, extremes=False):
    """Random records; v6=True gives an IPv6 batch with a mix of IPv4 and IPv6 records."""
    hour = 1_700_000_000_000 - 1_700_000_000_000 % 3_600_000
    cols = {
        "stime": hour + rng.integers(0, 3_600_000, n),
        "duration": rng.integers(0, 2**32 if extremes else 100_000, n, dtype=np.uint64),
        "sport": rng.integers(0, 65536, n), "dport": rng.integers(0, 65536, n),
        "protocol": rng.integers(0, 256, n),
        "packets": rng.integers(1, 2**64 if extremes else 1000, n, dtype=np.uint64),
        "bytes": rng.integers(1, 2**64 if extremes else 10**6, n, dtype=np.uint64),
        "flags": rng.integers(0, 256, n), "initflags": rng.integers(0, 256, n),
        "sessflags": rng.integers(0, 256, n), "attributes": rng.integers(0, 256, n),
        "application": rng.integers(0, 65536, n), "sensor": rng.integers(0, 5, n),
        "flowtype": rng.integers(0, 11, n),
        "input": rng.integers(0, 2**32, n, dtype=np.uint64),
        "output": rng.integers(0, 2**32, n, dtype=np.uint64),
    }
    if extremes and n >= 4:
        cols["duration"][:2] = 0
        cols["packets"][:2] = [0, 2**64 - 1]
        cols["bytes"][:2] = [2**64 - 1, 0]
        cols["stime"][2] = hour
        cols["stime"][3] = hour + 3_599_999
    if not v6:
        for name in schema.IP_COLUMNS:
            cols[name] = rng.integers(0, 2**32, n, dtype=np.uint64)
        return schema.make_batch(n, **cols)
    for name in schema.IP_COLUMNS:
        col = rng.integers(0, 2**64, (n, 2), dtype=np.uint64)
        cols[name] = col
    ipv6 = rng.random(n) < 0.5
    for name in schema.IP_COLUMNS:
        v4 = schema.v4_to_v6(rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32))
        cols[name][~ipv6] = v4[~ipv6]
    cols["ipv6"] = ipv6
    return schema.make_batch(n, v6=True, **cols)


def assert_batches_equal(a, b):
    assert set(a) == set(b), (sorted(a), sorted(b))
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def shared(*parts):
    path = os.path.join(SHARED, *parts)
    if not os.path.exists(path):
        pytest.skip(f"{path} is absent")
    return path
