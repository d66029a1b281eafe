import numpy as np
import pytest

from flowtools import fields, schema, unique
from flowtools.errors import FlowError
from flowtools.unique import BloomSet, FirstSeen

MAPPED = 0xFFFF << 32


def pools(rng):
    """Small pools of values, so that keys repeat often."""
    return {
        "v4": rng.integers(0, 2**32, 40, dtype=np.uint64).astype(np.uint32),
        "v6": rng.integers(0, 2**64, (15, 2), dtype=np.uint64),
        "port": np.array([0, 22, 53, 80, 443, 65535], np.uint16),
        "protocol": np.array([1, 6, 17], np.uint8),
    }


def pool_batch(rng, pool, n, v6):
    """n records from the pools: an IPv4 batch, or an IPv6 batch mixing IPv4 records
    (::ffff:a.b.c.d) and IPv6 ones."""
    cols = {c: rng.choice(pool["port"], n) for c in ("sport", "dport")}
    cols["protocol"] = rng.choice(pool["protocol"], n)
    cols["stime"] = rng.integers(0, 4, n) * 1000
    cols["bytes"] = rng.choice(np.array([1, 2**64 - 1], np.uint64), n)
    if not v6:
        for c in ("sip", "dip"):
            cols[c] = rng.choice(pool["v4"], n)
        return schema.make_batch(n, **cols)
    is6 = rng.random(n) < 0.5
    for c in ("sip", "dip"):
        col = schema.v4_to_v6(rng.choice(pool["v4"], n))
        col[is6] = pool["v6"][rng.integers(0, len(pool["v6"]), is6.sum())]
        cols[c] = col
    return schema.make_batch(n, v6=True, ipv6=is6, **cols)


def python_key(flds, batch, i):
    out = []
    for f in flds:
        v = f.values(batch)
        if v.ndim == 2:
            out.append(int(v[i, 0]) << 64 | int(v[i, 1]))
        elif f.kind == "ip":
            out.append(MAPPED | int(v[i]))
        else:
            out.append(int(v[i]))
    return tuple(out)


def reference(flds, batches):
    """First occurrence of each key over the batches, one record at a time."""
    seen, out = set(), []
    for b in batches:
        m = np.zeros(schema.nrecords(b), bool)
        for i in range(len(m)):
            k = python_key(flds, b, i)
            if k not in seen:
                seen.add(k)
                m[i] = True
        out.append(m)
    return out


def run(fs, batches):
    return [fs.first(b) for b in batches]


def mixed_batches(seed, count=12, n=400):
    rng = np.random.default_rng(seed)
    pool = pools(rng)
    return [pool_batch(rng, pool, int(rng.integers(0, n)), v6=bool(i % 3 == 1))
            for i in range(count)]


@pytest.mark.parametrize("names", ["sip,dip", "sip,dip,protocol", "dip", "sport,dport,protocol",
                                   "protocol,sip,bytes,stime,dport", "eTime,sIP"])
@pytest.mark.parametrize("seed", [1, 2])
def test_exact_matches_reference(names, seed):
    batches = mixed_batches(seed)
    flds = fields.parse_list(names)
    got = run(FirstSeen(flds, exact=True), batches)
    for g, want in zip(got, reference(flds, batches), strict=True):
        np.testing.assert_array_equal(g, want)


def test_field_text_and_columns():
    fs = FirstSeen("sip,dip,proto")
    assert fs.columns == ("sip", "dip", "protocol")
    assert FirstSeen("eTime,sIP").columns == ("stime", "duration", "sip")
    with pytest.raises(FlowError, match="--unique"):
        FirstSeen("sip,nosuch")


def test_batch_needs_only_its_columns():
    rng = np.random.default_rng(3)
    b = pool_batch(rng, pools(rng), 200, v6=True)
    want = FirstSeen("sip,dip", exact=True).first(b)
    for exact in (False, True):
        cols = {"sip": b["sip"], "dip": b["dip"], "ipv6": b["ipv6"]}
        np.testing.assert_array_equal(FirstSeen("sip,dip", exact=exact).first(cols), want)


def test_first_occurrence_within_a_batch():
    for exact in (False, True):
        fs = FirstSeen("sport", exact=exact)
        b = schema.make_batch(7, sport=[5, 6, 5, 5, 7, 6, 8])
        np.testing.assert_array_equal(fs.first(b), [1, 1, 0, 0, 1, 0, 1])
        b = schema.make_batch(4, sport=[8, 9, 5, 9])
        np.testing.assert_array_equal(fs.first(b), [0, 1, 0, 0])
        assert fs.first(schema.empty()).shape == (0,)


@pytest.mark.parametrize("exact", [False, True])
def test_ipv4_key_is_the_same_in_ipv4_and_ipv6_batches(exact):
    a, b = 0x0A000001, 0xC0A80101
    fs = FirstSeen("sip,dip,dport", exact=exact)
    v4 = schema.make_batch(2, sip=[a, b], dip=[b, a], dport=[80, 80])
    np.testing.assert_array_equal(fs.first(v4), [True, True])
    v6 = schema.to_v6(schema.make_batch(3, sip=[b, a, a], dip=[a, b, a], dport=[80, 80, 80]))
    np.testing.assert_array_equal(fs.first(v6), [False, False, True])
    v6["sip"][:] = [0x20010DB8 << 32, a]  # a genuine IPv6 address is another key
    v6["ipv6"][:] = True
    np.testing.assert_array_equal(fs.first(v6), [True, True, False])
    np.testing.assert_array_equal(fs.first(v4), [False, False])


def test_bloom_is_exact_but_for_false_positives():
    """Bloom mode never passes a repeated key, and misses a new key (a false positive)
    about as often as the rate says."""
    rng = np.random.default_rng(5)
    pool = pools(rng)
    pool["v4"] = rng.integers(0, 2**32, 250, dtype=np.uint64).astype(np.uint32)
    pool["v6"] = rng.integers(0, 2**64, (100, 2), dtype=np.uint64)
    batches = [pool_batch(rng, pool, 4000, v6=bool(i % 2)) for i in range(30)]
    exact = run(FirstSeen("sip,dip", exact=True), batches)
    new = sum(int(e.sum()) for e in exact)
    assert 40_000 < new < 80_000
    bloom = run(FirstSeen("sip,dip", capacity=new, fp_rate=0.01), batches)
    for e, b in zip(exact, bloom, strict=True):
        assert not (b & ~e).any()  # never a repeat passed
    missed = sum(int((e & ~b).sum()) for e, b in zip(exact, bloom, strict=True))
    # every new key met a filter holding fewer keys than its capacity
    assert 0 < missed < 0.01 * new


@pytest.mark.parametrize("capacity, fp_rate", [(1000, 0.001), (30_000, 1e-6)])
def test_bloom_growing_or_with_two_probes(capacity, fp_rate):
    """The other paths of FirstSeen in Bloom mode: stages added as keys pass the capacity,
    and rates under 1e-3 (two probes a key)."""
    batches = mixed_batches(11, count=20, n=3000)
    exact = run(FirstSeen("sip,dip,dport", exact=True), batches)
    fs = FirstSeen("sip,dip,dport", capacity=capacity, fp_rate=fp_rate)
    bloom = run(fs, batches)
    new = sum(int(e.sum()) for e in exact)
    stages = 1
    while capacity * (2**stages - 1) < fs.seen.count:  # capacities 1x, 2x, 4x...
        stages += 1
    assert len(fs.seen.stages) == stages and (stages > 3 or capacity > new)
    assert fs.seen.stages[0].probes == (2 if fp_rate < 1e-3 else 1)
    assert fs.seen.count == sum(int(b.sum()) for b in bloom) > 0.99 * new
    for e, b in zip(exact, bloom, strict=True):
        assert not (b & ~e).any()


@pytest.mark.parametrize("fp_rate", [0.01, 0.001, 1e-4])
def test_bloom_false_positive_rate_at_capacity(fp_rate):
    rng = np.random.default_rng(7)
    capacity = 200_000
    bloom = BloomSet(capacity, fp_rate)
    keys = rng.integers(0, 2**64, capacity, dtype=np.uint64)
    early = 0
    for part in np.array_split(keys, 7):
        early += int(bloom.contains(part).sum())  # false positives while filling
        bloom.add(part)
    assert early <= fp_rate * capacity
    assert bloom.contains(keys).all()  # no false negatives
    probes = 2_000_000
    fp = bloom.contains(rng.integers(0, 2**64, probes, dtype=np.uint64)).mean()
    assert fp < 1.2 * fp_rate
    assert fp > 0.2 * fp_rate  # the filter is not wastefully large either
    assert len(bloom.stages) == 1


def test_bloom_grows_past_its_capacity():
    rng = np.random.default_rng(8)
    bloom = BloomSet(10_000, 0.01)
    keys = rng.integers(0, 2**64, 100_000, dtype=np.uint64)
    for part in np.array_split(keys, 10):
        bloom.add(part[~bloom.contains(part)])
    assert len(bloom.stages) == 4  # 10k, 20k, 40k, 80k keys
    assert bloom.contains(keys).all()
    fp = bloom.contains(rng.integers(0, 2**64, 500_000, dtype=np.uint64)).mean()
    assert fp < 2 * 0.01  # the rates of the stages add: 1/100 + 1/200 + ...


def test_bloom_sizing():
    k, bits = unique.word_design(0.001)
    assert 5 <= k <= 9 and 20 < bits < 30
    assert unique.word_fp(bits, k) <= 0.001
    small = BloomSet(1000, 0.001).stages[0]
    assert small.probes == 1 and small.words.nbytes < 4000
    assert BloomSet(1000, 1e-6).stages[0].probes == 2
    for bad in ({"fp_rate": 0}, {"fp_rate": 1.5}, {"capacity": 0}):
        with pytest.raises(FlowError):
            FirstSeen("sip", **bad)


def test_exact_survives_hash_collisions(monkeypatch):
    """Exact mode compares whole keys: with a hash of 5 useful bits it must still be right
    (groups in a batch share hashes, and the table holds many equal hashes)."""
    real = unique.hash_words

    def weak(high, words, n):
        return real(high, words, n) & np.uint64(0xF800000000000000)

    monkeypatch.setattr(unique, "hash_words", weak)
    batches = mixed_batches(9, count=8, n=300)
    flds = fields.parse_list("sip,dport")
    got = run(FirstSeen(flds, exact=True), batches)
    for g, want in zip(got, reference(flds, batches), strict=True):
        np.testing.assert_array_equal(g, want)


def test_exact_set_grows():
    rng = np.random.default_rng(10)
    s = unique.ExactSet(slots=16)
    words = rng.integers(0, 2**64, (5000, 3), dtype=np.uint64)
    keys = unique.key_rows([words[:, i] for i in range(3)], 5000)
    h = unique.hash_words([], [words[:, i] for i in range(3)], 5000)
    for part in np.array_split(np.arange(5000), 9):
        assert not s.contains(h[part], keys[part]).any()
        s.add(h[part], keys[part])
        assert s.contains(h[part], keys[part]).all()
    assert s.count == 5000 and s.contains(h, keys).all()
    other = words.copy()
    other[:, 2] ^= np.uint64(1)
    okeys = unique.key_rows([other[:, i] for i in range(3)], 5000)
    assert not s.contains(h, okeys).any()  # same hashes, other keys


def test_first_in_batch():
    h = np.array([5, 3, 5, 9, 3, 3], np.uint64) << np.uint64(40)
    assert sorted(unique.first_in_batch(h)) == [0, 1, 3]
    assert unique.first_in_batch(h[:0]).shape == (0,)
