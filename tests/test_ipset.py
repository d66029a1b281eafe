"""IP sets: algebra against Python sets of ints, SiLK's IPset files, pyflow set files."""

import glob
import io
import ipaddress
import os
import struct

import numpy as np
import pytest
from conftest import SHARED, shared
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowtools import addrs, container, flowfile, ipset, schema, silkset
from flowtools.errors import FlowError, FormatError
from flowtools.ipset import IPSet

M64 = 2**64 - 1
MAPPED = 0xFFFF << 32
SETTINGS = dict(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def ints_of(s):
    """A set's addresses as Python ints (128-bit for IPv6 sets)."""
    out = set()
    for a, b in zip(*s.ranges(), strict=True):
        lo, hi = (addrs.to_int128(a), addrs.to_int128(b)) if s.is_ipv6 else (int(a), int(b))
        out.update(range(lo, hi + 1))
    return out


def make(values, v6):
    values = sorted(values)
    if v6:
        return IPSet.from_addresses(addrs.pairs(values).reshape(-1, 2), ipv6=True) \
            if values else IPSet.empty(True)
    return IPSet.from_addresses(np.array(values, np.uint32))


# values clustered at the edges where carries and boundaries bite
V4 = st.one_of(st.integers(0, 70), st.integers(2**32 - 70, 2**32 - 1),
               st.integers(0x7FFFFFC0, 0x80000040))
V6 = st.one_of(st.integers(0, 40), st.integers(2**64 - 40, 2**64 + 40),
               st.integers(MAPPED - 20, MAPPED + 20), st.integers(2**128 - 40, 2**128 - 1),
               st.integers(MAPPED | 0xFFFFFFF0, (MAPPED | 0xFFFFFFFF) + 20))


def value_sets(v6):
    return st.sets(V6 if v6 else V4, max_size=60)


@settings(**SETTINGS)
@given(st.booleans(), st.data())
def test_algebra(v6, data):
    a, b = data.draw(value_sets(v6)), data.draw(value_sets(v6))
    sa, sb = make(a, v6), make(b, v6)
    assert ints_of(sa) == a and sa.count() == len(a)
    assert ints_of(sa | sb) == a | b
    assert ints_of(sa & sb) == a & b
    assert ints_of(sa - sb) == a - b
    assert ints_of(sa ^ sb) == a ^ b
    assert (sa | sb) == (sb | sa) and (sa & sb) == (sb & sa)
    assert ((sa - sb) | (sa & sb)) == sa
    assert (sa ^ sb) == ((sa | sb) - (sa & sb))
    assert (sa & sb).issubset(sa)
    c = make(data.draw(value_sets(v6)), v6)
    assert sa.union(sb, c) == (sa | sb) | c
    assert sa.intersection(sb, c) == (sa & sb) & c
    # normalized: sorted, disjoint, never adjacent
    s, e = (sa | sb).ranges()
    if v6:
        s = [addrs.to_int128(x) for x in s]
        e = [addrs.to_int128(x) for x in e]
    assert all(e[i] + 1 < s[i + 1] for i in range(len(s) - 1))
    assert all(x <= y for x, y in zip(s, e, strict=True))


@settings(**SETTINGS)
@given(st.booleans(), st.data())
def test_from_sorted(v6, data):
    """from_sorted (a bag's keys, no sort) gives the set from_addresses gives, whatever
    mix of IPv4-mapped and other addresses, runs across carries included."""
    values = sorted(data.draw(value_sets(v6)))
    if v6:
        col = addrs.pairs(values).reshape(-1, 2) if values else np.zeros((0, 2), np.uint64)
        got = IPSet.from_sorted(col, True)
        want = IPSet.from_addresses(col[::-1], ipv6=True) if values else IPSet.empty(True)
        assert got == want
    else:
        col = np.array(values, np.uint32)
        got = IPSet.from_sorted(col)
        assert got == IPSet.from_addresses(col[::-1])
        assert IPSet.from_sorted(col, True) == IPSet.from_addresses(col, ipv6=True)
    assert ints_of(got) == set(values)


@settings(**SETTINGS)
@given(st.booleans(), st.data())
def test_from_ranges(v6, data):
    """Ranges in any order, overlapping, adjacent or repeated, normalize to their union."""
    pairs = [tuple(sorted(p)) for p in data.draw(
        st.lists(st.tuples(V6 if v6 else V4, V6 if v6 else V4), max_size=12))]
    if data.draw(st.booleans()):
        pairs.sort()
    merged = []  # the reference: plain interval merging
    for a, b in sorted(pairs):
        if merged and a <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    starts, ends = [a for a, _ in pairs], [b for _, b in pairs]
    if v6:
        got = IPSet.from_ranges(addrs.pairs(starts).reshape(-1, 2),
                                addrs.pairs(ends).reshape(-1, 2), True)
        conv = addrs.to_int128
    else:
        got = IPSet.from_ranges(starts, ends)
        conv = int
    assert [[conv(a), conv(b)] for a, b in zip(*got.ranges(), strict=True)] == merged
    assert got.count() == sum(b - a + 1 for a, b in merged)


@settings(**SETTINGS)
@given(st.booleans(), st.data())
def test_membership_and_cidrs(v6, data):
    values = data.draw(value_sets(v6))
    s = make(values, v6)
    probe = sorted(values | data.draw(value_sets(v6)))
    if v6:
        got = s.contains(addrs.pairs(probe).reshape(-1, 2))
        np.testing.assert_array_equal(got, [p in values for p in probe])
        v4probe = [p - MAPPED for p in probe if MAPPED <= p <= MAPPED | 0xFFFFFFFF]
        got4 = s.contains(np.array(v4probe, np.uint32))
        np.testing.assert_array_equal(got4, [MAPPED | p in values for p in v4probe])
    else:
        np.testing.assert_array_equal(s.contains(np.array(probe, np.uint32)),
                                      [p in values for p in probe])
        np.testing.assert_array_equal(s.contains(schema.v4_to_v6(np.array(probe, np.uint32))),
                                      [p in values for p in probe])
    # the minimal CIDR cover, as ipaddress computes it range by range
    blocks, prefixes = s.cidr_blocks()
    want = []
    cls = ipaddress.IPv6Address if v6 else ipaddress.IPv4Address
    for a, b in zip(*s.ranges(), strict=True):
        lo, hi = (addrs.to_int128(a), addrs.to_int128(b)) if v6 else (int(a), int(b))
        want += [(int(n.network_address), n.prefixlen)
                 for n in ipaddress.summarize_address_range(cls(lo), cls(hi))]
    got = [((addrs.to_int128(x) if v6 else int(x)), int(p))
           for x, p in zip(blocks, prefixes, strict=True)]
    assert got == want
    assert IPSet.from_cidrs(blocks, prefixes, v6) == s
    # may_contain is exact for sets
    for _ in range(4 if probe else 0):
        lo, hi = sorted(data.draw(st.sampled_from(probe)) for _ in range(2))
        exact = any(lo <= v <= hi for v in values)
        if v6:
            assert s.may_contain((lo >> 64, lo & M64), (hi >> 64, hi & M64)) == exact
        else:
            assert s.may_contain(lo, hi) == exact
            assert s.may_contain([0, MAPPED | lo], [0, MAPPED | hi]) == exact


def test_mixed_families():
    v4 = IPSet.from_cidrs([0x0A000000], [8])
    v6 = IPSet.from_cidrs([[0x20010DB800000000, 0]], [32], ipv6=True)
    both = v4 | v6
    assert both.is_ipv6 and both.count() == 2**24 + 2**96
    assert (both & v4) == v4.to_v6() and (both - v6).to_v4() == v4
    assert not both.ipv4_only() and v4.to_v6().ipv4_only()
    with pytest.raises(FlowError):
        both.to_v4()
    col = schema.v4_to_v6(np.array([0x0A010203, 0x0B000000], np.uint32))
    col = np.vstack([col, np.array([[0x20010DB800000000, 7], [0x20010DB900000000, 0]],
                                   np.uint64)])
    np.testing.assert_array_equal(both.contains(col), [True, False, True, False])
    np.testing.assert_array_equal(both.contains(np.array([0x0A000001, 1], np.uint32)),
                                  [True, False])
    assert len(v4) == 2**24 and bool(v4) and not IPSet.empty()


def test_from_matcher_and_addresses(rng):
    m = addrs.parse_wildcard("10.1.x.1-3")
    s = IPSet.from_matcher(m)
    assert s.count() == 256 * 3
    col = rng.integers(0, 2**32, 10000, dtype=np.uint64).astype(np.uint32)
    col[:100] = s.addresses()[:100]
    np.testing.assert_array_equal(s.contains(col), m.contains(col))
    six = IPSet.from_matcher(addrs.parse_cidr_list("2001:db8::/126,10.0.0.0/30"))
    assert six.count() == 8 and len(six.addresses()) == 8
    assert IPSet.from_addresses(six.addresses()) == six
    # duplicates and order do not matter
    c = rng.integers(0, 1000, 5000).astype(np.uint32)
    assert ints_of(IPSet.from_addresses(c)) == set(c.tolist())


# --- files ------------------------------------------------------------------------------


def text_set(path):
    """The addresses rwsetbuild built a test set from: one IP or CIDR block a line."""
    nets = [ipaddress.ip_network(line.split("#")[0].strip(), strict=False)
            for line in open(path) if line.split("#")[0].strip()]
    v6 = nets[0].version == 6
    starts = [int(n.network_address) for n in nets]
    ends = [int(n.broadcast_address) for n in nets]
    if v6:
        return IPSet.from_ranges(addrs.pairs(starts), addrs.pairs(ends), True)
    return IPSet.from_ranges(starts, ends)


SILK_SETS = sorted(glob.glob(os.path.join(SHARED, "silk-tests", "set*.set"))) or \
    ["set1-v4.set"]


@pytest.mark.parametrize("path", SILK_SETS, ids=os.path.basename)
def test_silk_files(path):
    path = shared("silk-tests", os.path.basename(path))
    s = ipset.read_set(path)
    assert s == text_set(path[:-4] + ".txt")
    assert s.is_ipv6 == path.endswith("-v6.set")
    assert s.meta["history"][0].startswith("rwsetbuild")
    # the radix (v3) files again in big-endian order
    raw = open(path, "rb").read()
    if s.meta["silk"]["record_version"] == 3:
        assert ipset.read_set(io.BytesIO(big_endian_radix(raw)), "be") == s
    # and back out in every version we write, both byte orders, both compressions
    for v in (None, 2, 4, 5):
        if v == 2 and s.is_ipv6:
            continue
        for comp in ("none", "zlib"):
            for big in (False, True):
                b = io.BytesIO()
                silkset.write(s, b, v, comp, ["pyflow-set"], ["a note"], big_endian=big)
                b.seek(0)
                back = ipset.read_set(b, "x")
                assert back == s and back.is_ipv6 == s.is_ipv6
                assert back.meta["silk"]["byte_order"] == ("big" if big else "little")
                assert back.meta["notes"] == ["a note"]


def big_endian_radix(raw):
    """A SiLK v3 IPset file with its leaves byte-swapped and the big-endian flag set."""
    at = 16
    while True:
        eid, elen = struct.unpack_from(">II", raw, at)
        if eid == 7:
            _, leaves, leaf_size, nodes, node_size, _ = struct.unpack_from(">6I", raw, at + 8)
        at += elen
        if eid == 0:
            break
    out = bytearray(raw)
    out[4] |= 1
    base = at + nodes * node_size
    for i in range(leaves):
        p = base + i * leaf_size
        if leaf_size == 24:
            for off in (8, 16):
                out[p + off:p + off + 8] = out[p + off:p + off + 8][::-1]
        else:
            out[p + 4:p + 8] = out[p + 4:p + 8][::-1]
    return bytes(out)


def sample_sets(rng):
    v4 = IPSet.from_addresses(rng.integers(0, 2**32, 3000, dtype=np.uint64).astype(np.uint32))
    v4 = v4 | IPSet.from_cidrs([0x0A000000, 0xC0A80000, 0xC0A80180], [8, 23, 25])
    v4 = v4 | IPSet.from_addresses(np.arange(0xAC100000, 0xAC100100, 3, dtype=np.uint32))
    col = rng.integers(0, 2**64, (2000, 2), dtype=np.uint64)
    col[:300, 0] = 7
    col[:300, 1] = np.arange(300, dtype=np.uint64) * 5
    v6 = IPSet.from_addresses(col) | v4.to_v6()
    v6 = v6 | IPSet.from_cidrs([[0x20010DB800000000, 0], [0xFFFF_FFFF_FFFF_FFFF, 0]],
                               [48, 64], True)
    return [IPSet.empty(), IPSet.empty(True), v4, v6, v4.to_v6(),
            IPSet.from_ranges([0], [2**32 - 1]),
            IPSet.from_ranges([[0, 0]], [[M64, M64]], True)]


def test_round_trips(rng, tmp_path):
    for i, s in enumerate(sample_sets(rng)):
        for fmt, versions in (("pyflow", [None]), ("silk", [None, 2, 4, 5])):
            for v in versions:
                if v in (None, 2) and fmt == "silk" and s.count() == 2**32:
                    continue  # one bitmap per /24: 600 MB, as SiLK's would be
                if v == 2 and not s.ipv4_only():
                    with pytest.raises(FlowError):
                        ipset.write_set(s, str(tmp_path / f"bad{i}"), "silk",
                                        record_version=2)
                    continue
                path = str(tmp_path / f"s{i}-{fmt}-{v}")
                ipset.write_set(s, path, fmt, history=["pyflow-settool --union"],
                                record_version=v)
                back = ipset.read_set(path)
                want = s.to_v4() if v == 2 else s
                assert back == want, (i, fmt, v)
                assert back.is_ipv6 == want.is_ipv6
                assert back.meta["history"] == ["pyflow-settool --union"]
                with open(path, "rb") as f:  # as a stream, too
                    assert ipset.read_set(Pipe(f.read()), "pipe") == want


class Pipe:
    """A stream that cannot seek (io.BytesIO can, but has no file descriptor)."""

    def __init__(self, data):
        self.b = io.BytesIO(data)

    def read(self, n=-1):
        return self.b.read(n)


def test_stream_and_committed(rng, tmp_path):
    s = sample_sets(rng)[3]
    b = io.BytesIO()
    ipset.write_pyflow(s, b)
    assert ipset.read_set(io.BytesIO(b.getvalue()), "stdin") == s
    path = str(tmp_path / "c.set")
    ipset.write_set(s, path)
    assert container.read_header(open(path, "rb"), path).committed is not None
    # a block limit smaller than the set gives several blocks
    old = ipset.BLOCK_RANGES
    ipset.BLOCK_RANGES = 1000
    try:
        b = io.BytesIO()
        ipset.write_pyflow(s, b)
    finally:
        ipset.BLOCK_RANGES = old
    assert ipset.read_set(io.BytesIO(b.getvalue()), "x") == s


def test_kinds_refused(tmp_path, rng):
    flows = str(tmp_path / "f.pf")
    with open(flows, "wb") as f:
        w = flowfile.FlowWriter(f)
        w.write(schema.make_batch(3, stime=[1, 2, 3]))
        w.close()
    with pytest.raises(FormatError, match="f.pf: not an IP set file \\(it holds a flow\\)"):
        ipset.read_set(flows)
    sets = str(tmp_path / "s.set")
    ipset.write_set(sample_sets(rng)[2], sets)
    with pytest.raises(FormatError, match="not a flow file \\(it holds a ipset\\)"):
        flowfile.FlowReader(open(sets, "rb"), sets)
    silk_flows = os.path.join(SHARED, "silk-tests", "empty.rwf")
    if os.path.exists(silk_flows):
        with pytest.raises(FormatError, match="not an IP set file \\(it is a FT_RWIPV6ROUTING"):
            ipset.read_set(silk_flows)
    with pytest.raises(FormatError, match="x: empty input"):
        ipset.read_set(io.BytesIO(b""), "x")
    with pytest.raises(FormatError, match="x: not an IP set file \\(unknown magic"):
        ipset.read_set(io.BytesIO(b"hello world"), "x")


def silk_bytes(s, v=None, comp="none"):
    b = io.BytesIO()
    silkset.write(s, b, v, comp)
    return b.getvalue()


def test_silk_errors(rng):
    v4 = sample_sets(rng)[2]
    good = silk_bytes(v4, 4)
    future = bytearray(good)
    future[15] = 6
    with pytest.raises(FormatError, match="x: IPset record version 6 is newer"):
        ipset.read_set(io.BytesIO(bytes(future)), "x")
    with pytest.raises(FormatError, match="x: truncated SiLK header"):
        ipset.read_set(io.BytesIO(good[:20]), "x")
    with pytest.raises(FormatError, match="x: corrupt IPset data \\(record version 2\\)"):
        ipset.read_set(io.BytesIO(silk_bytes(v4, 2)[:-5]), "x")
    with pytest.raises(FormatError, match="x: corrupt IPset data \\(record version 4\\)"):
        ipset.read_set(io.BytesIO(good[:-3]), "x")
    zl = silk_bytes(v4, 2, "zlib")
    with pytest.raises(FormatError, match="x: truncated block"):
        ipset.read_set(io.BytesIO(zl[:-10]), "x")
    with pytest.raises(FlowError, match="cannot write IPset record version 3"):
        silkset.write(v4, io.BytesIO(), 3)


def test_pyflow_errors(rng, tmp_path):
    s = sample_sets(rng)[3]
    path = str(tmp_path / "p.set")
    ipset.write_set(s, path)
    raw = open(path, "rb").read()
    with pytest.raises(FormatError, match="p.set: truncated"):
        ipset.read_set(Pipe(raw[:-30]), "p.set")
    cut = str(tmp_path / "cut.set")
    with open(cut, "wb") as f:
        f.write(raw[:-30])
    with pytest.raises(FormatError, match="cut.set: truncated file"):
        ipset.read_set(cut)
    newer = bytearray(raw)
    newer[8] = container.MAJOR + 1
    with pytest.raises(FormatError, match="newer than this pyflow reads"):
        ipset.read_set(Pipe(bytes(newer)), "p.set")


def corpus(rng):
    sets = sample_sets(rng)
    out = []
    for s in (sets[2], sets[3]):
        b = io.BytesIO()
        ipset.write_pyflow(s, b)
        out.append(b.getvalue())
        for v in ((2, 4) if not s.is_ipv6 else (4, 5)):
            out.append(silk_bytes(s, v))
            out.append(silk_bytes(s, v, "zlib"))
    for path in glob.glob(os.path.join(SHARED, "silk-tests", "set*-v6.set"))[:1]:
        out.append(open(path, "rb").read())
    return out


CORPUS = corpus(np.random.default_rng(7))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz(data):
    """Damaged set files fail with FormatError (naming the file) or read as some set."""
    raw = bytearray(data.draw(st.sampled_from(CORPUS)))
    for _ in range(data.draw(st.integers(1, 4))):
        what = data.draw(st.sampled_from(["flip", "cut", "byte"]))
        if what == "cut":
            raw = raw[:data.draw(st.integers(0, len(raw)))]
        elif raw:
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] = data.draw(st.integers(0, 255)) if what == "byte" else raw[i] ^ 0x10
    try:
        s = ipset.read_set(io.BytesIO(bytes(raw)), "fuzz.set")
    except FormatError as exc:
        assert str(exc).startswith("fuzz.set")
    else:
        assert isinstance(s, IPSet)


def test_radix_v4_and_legacy_versions():
    """An IPv4 radix (v3) file, as SiLK 3.0-3.5 wrote them, and v0/v1 classc files."""
    leaves = [(0, 0), (24, 0x0A000100), (32, 0x0A000203), (8, 0x0B000000)]
    body = bytes(80 * 2)  # two nodes the reader passes over
    body += b"".join(struct.pack("<B3xI", p, ip) for p, ip in leaves)
    head = silkset.MAGIC + bytes([0, silkset.FT_IPSET, 16, 0])
    head += struct.pack(">IHH", silkset.SILK_VERSION, 1, 3)
    head += struct.pack(">II6I", 7, 32, 16, len(leaves), 8, 2, 80, 0) + struct.pack(">II", 0, 8)
    s = ipset.read_set(io.BytesIO(head + body), "radix4")
    assert not s.is_ipv6
    assert s == IPSet.from_cidrs([0x0A000100, 0x0A000203, 0x0B000000], [24, 32, 8])
    classc = bytearray(silk_bytes(s, 2))
    for v in (0, 1):
        classc[15] = v
        assert ipset.read_set(io.BytesIO(bytes(classc)), "old") == s
