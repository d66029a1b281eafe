"""segments.encode_segments gives, byte for byte, the blocks flowfile.encode_block gives
for each segment alone, and they decode to the segment's records."""

import numpy as np
import pytest
import zstandard
from conftest import assert_batches_equal
from hypothesis import given, settings
from hypothesis import strategies as st

from flowtools import flowfile, schema, segments

CCTX = zstandard.ZstdCompressor(level=1)


def _column(rng, kind, n, dtype, lo, hi):
    if kind == "const":
        return np.full(n, rng.integers(lo, hi, dtype=np.uint64), np.uint64).astype(dtype)
    if kind == "narrow":
        base = rng.integers(lo, hi, dtype=np.uint64)
        return (base + rng.integers(0, 300, n).astype(np.uint64)).clip(lo, hi - 1) \
            .astype(dtype)
    if kind == "sorted":
        return np.sort(rng.integers(lo, hi, n, dtype=np.uint64)).astype(dtype)
    return rng.integers(lo, hi, n, dtype=np.uint64).astype(dtype)


def _batch(seed, n, v6, odd):
    """Records whose columns are, at random, constant, narrow, sorted or anything, with
    addresses from a small pool (so that dictionaries pay) or from anywhere."""
    rng = np.random.default_rng(seed)
    kinds = ("const", "narrow", "sorted", "any")
    out = {}
    for name, dtype in schema.COLUMNS.items():
        if name in schema.IP_COLUMNS:
            continue
        kind = kinds[rng.integers(0, 4)]
        hi = 2**63 if name == "stime" else min(2**64, np.iinfo(dtype).max + 1)
        out[name] = _column(rng, kind, n, dtype, 0, hi)
        if name == "stime" and kind in ("narrow", "sorted") and rng.random() < 0.5:
            out[name] = (out[name] % 3_600_000 + 1_700_000_000_000).astype(np.int64)
    for name in schema.IP_COLUMNS:
        pool = rng.integers(0, 2**32, int(rng.integers(1, 40)), dtype=np.uint64)
        v4 = pool[rng.integers(0, len(pool), n)] if rng.random() < 0.7 else \
            rng.integers(0, 2**32, n, dtype=np.uint64)
        out[name] = v4.astype(np.uint32)
    if not v6:
        return schema.make_batch(n, **out)
    batch = schema.to_v6(schema.make_batch(n, **out))
    ipv6 = rng.random(n) < rng.choice([0.0, 0.05, 0.5])
    for name in schema.IP_COLUMNS:
        col = batch[name]
        col[ipv6] = rng.integers(0, 2**64, (int(ipv6.sum()), 2), dtype=np.uint64)
        if odd:  # an IPv4 record whose address is not ::ffff:a.b.c.d: kept 128-bit
            col[int(rng.integers(0, n)), 0] = 7
    batch["ipv6"] = ipv6
    return batch


def _reference(batch, lens):
    out, at = [], 0
    for n in lens:
        out.append(flowfile.encode_block(schema.take(batch, slice(at, at + n)), CCTX))
        at += n
    return out


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.lists(st.integers(1, 400), min_size=1, max_size=12),
       st.booleans(), st.booleans())
def test_segments_encode_as_blocks_alone(seed, lens, v6, odd):
    batch = _batch(seed, sum(lens), v6, odd)
    got = segments.encode_segments(batch, lens, CCTX)
    want = _reference(batch, lens)
    if v6 and not odd:  # the same blocks from the batch's split form
        split = segments.Split.of(batch)
        assert segments.encode_segments(split, lens, CCTX) == want
        a, b = lens[0] // 2, sum(lens[:2])
        assert_batches_equal(split.slice(a, b).joined(), schema.take(batch, slice(a, b)))
    assert len(got) == len(want)
    at = 0
    for (gh, gp), (wh, wp), n in zip(got, want, lens, strict=True):
        assert gh == wh
        assert list(gh) == list(wh)  # the same key order: the same msgpack bytes
        assert gp == wp
        block = flowfile.Block(_Reader(), gh, gp)
        assert_batches_equal(block.decode(), schema.take(batch, slice(at, at + n)))
        at += n


class _Reader:
    compressed = True

    def where(self, block):
        return "test"


def test_large_segments_and_no_compression_go_to_encode_block(monkeypatch):
    monkeypatch.setattr(segments, "PACKED_BELOW", 100)
    monkeypatch.setattr(flowfile, "PACKED_BELOW", 100)
    lens = [50, 150, 99, 100, 3]
    batch = _batch(5, sum(lens), True, False)
    got = segments.encode_segments(batch, lens, CCTX)
    assert ["z" in h for h, _ in got] == [True, False, True, False, True]
    assert got == _reference(batch, lens)
    assert segments.encode_segments(segments.Split.of(batch), lens, CCTX) == got
    plain = segments.encode_segments(batch, lens, None)
    at = 0
    for n, (h, p) in zip(lens, plain, strict=True):
        assert (h, p) == flowfile.encode_block(schema.take(batch, slice(at, at + n)), None)
        at += n


def test_many_segments_split_the_dictionary_sort(monkeypatch):
    """More segments than one 64-bit sort key can number are sorted in halves (here the
    key is made shorter, to need halves of halves)."""
    monkeypatch.setattr(segments, "_KEY_BITS", 48)
    lens = [64] * 300 + [2000]
    rng = np.random.default_rng(3)
    vals = rng.integers(0, 5, sum(lens)).astype(np.uint32) * np.uint32(2**31 - 1)
    segs = segments._Segs(lens)
    index, counts, uniq = segments._dictionaries(vals, segs)
    at = u = 0
    for n, k in zip(lens, counts.tolist(), strict=True):
        part = vals[at: at + n]
        distinct = np.unique(part)
        assert uniq[u: u + k].tolist() == distinct.tolist()
        assert (distinct[index[at: at + n]] == part).all()
        at, u = at + n, u + k


def test_lengths_must_cover_the_batch():
    batch = _batch(1, 10, False, False)
    with pytest.raises(ValueError):
        segments.encode_segments(batch, [4, 5], CCTX)
