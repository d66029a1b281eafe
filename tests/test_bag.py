"""Bags: algebra laws, file round trips (pyflow and SiLK formats), cross-checks, errors."""

import io as pyio
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, SHARED, random_batch
from hypothesis import given, settings
from hypothesis import strategies as st

from flowtools import bag, container, silkbag
from flowtools.errors import FlowError, FormatError
from flowtools.ipset import IPSet, write_set
from flowtools.tools import bag as bagtool

SILK_TESTS = os.path.join(SHARED, "silk-tests")


def tool(name):
    return [sys.executable, os.path.join(ROOT, "bin", name)]


def run(args, **kw):
    env = dict(os.environ)
    env.pop("SILK_CLOBBER", None)
    return subprocess.run(args, capture_output=True, env=env, **kw)


def make(keys, counters, ipv6=False, key=("sIPv4",)):
    b = bag.Builder(key, "records", ipv6)
    b.add(np.asarray(keys), np.asarray(counters, np.uint64))
    return b.bag()


entries = st.dictionaries(st.integers(0, 2**32 - 1), st.integers(1, 2**40), max_size=40)


def bag_of(d, ipv6=False):
    k = np.array(sorted(d), np.uint32)
    c = np.array([d[x] for x in sorted(d)], np.uint64)
    b = bag.Bag(("sIPv4",), "records", False, k, c)
    return b.to_v6() if ipv6 else b


def as_dict(b):
    if b.ipv6:
        b = b.to_v4()
    return dict(zip(b.keys.tolist(), b.counters.tolist(), strict=True))


# --- algebra ------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(entries, entries, st.booleans())
def test_add_subtract_min_max_laws(a, b, v6):
    A, B = bag_of(a, v6), bag_of(b)
    s = as_dict(bag.add(A, B))
    assert s == {k: a.get(k, 0) + b.get(k, 0) for k in set(a) | set(b)}
    assert bag.add(A, B) == bag.add(B, A)
    assert as_dict(bag.subtract(bag.add(A, B), B)) == a
    d = as_dict(bag.subtract(A, B))
    assert d == {k: v - b.get(k, 0) for k, v in a.items() if v > b.get(k, 0)}
    assert as_dict(bag.minimize(A, B)) == {k: min(v, b[k]) for k, v in a.items() if k in b}
    assert as_dict(bag.maximize(A, B)) == {k: max(a.get(k, 0), b.get(k, 0))
                                           for k in set(a) | set(b)}
    assert as_dict(bag.minimize(A, A)) == a and as_dict(bag.maximize(A, A)) == a


@settings(max_examples=40, deadline=None)
@given(entries, st.booleans())
def test_coverset_is_the_keys(a, v6):
    A = bag_of(a, v6)
    cover = A.coverset()
    want = IPSet.from_addresses(np.array(sorted(a), np.uint32))
    assert cover == want
    assert cover.count() == len(a)


def test_saturation():
    top = 2**64 - 1
    A = bag_of({1: top - 5, 2: 7})
    s = bag.add(A, bag_of({1: 10}))
    assert as_dict(s) == {1: top, 2: 7} and s.saturated
    m = A.scalar_multiply(3)
    assert as_dict(m)[1] == top and as_dict(m)[2] == 21 and m.saturated
    b = bag.Builder(("sPort",), "sum-bytes")
    b.add(np.array([5, 5, 5], np.uint32), np.array([top, top, 1], np.uint64))
    out = b.bag()
    assert out.counters.tolist() == [top] and out.saturated


def test_divide_rounds_half_up_and_needs_divisor_keys():
    q = bag.divide(bag_of({1: 7, 2: 5, 3: 9}), bag_of({1: 2, 2: 4, 3: 5, 9: 1}))
    assert as_dict(q) == {1: 4, 2: 1, 3: 2}
    with pytest.raises(FlowError, match="not in the divisor"):
        bag.divide(bag_of({1: 7, 4: 1}), bag_of({1: 2}))


def test_composite_keys_pack_in_order(rng):
    b4 = random_batch(rng, 5000)
    b6 = random_batch(rng, 5000, v6=True)
    for batch, v6 in ((b4, False), (b6, True)):
        spec = bagtool.parse_spec("sIP+dPort,records,x")
        (builder,) = bagtool.build([spec], [batch])
        out = builder.bag()
        assert out.ipv6 == v6 and out.key[1] == "dPort"
        sip, dport = out.layout.unpack(out.keys)
        want = {}
        src = batch["sip"]
        for i in range(len(batch["stime"])):
            k = (tuple(src[i]) if v6 else int(src[i]), int(batch["dport"][i]))
            want[k] = want.get(k, 0) + 1
        got = {((tuple(s) if v6 else int(s)), int(d)): int(c)
               for s, d, c in zip(sip, dport, out.counters, strict=True)}
        if v6:  # IPv4 records of an IPv6 batch are ::ffff:a.b.c.d in both
            got = {(tuple(int(x) for x in k[0]), k[1]): v for k, v in got.items()}
            want = {(tuple(int(x) for x in k[0]), k[1]): v for k, v in want.items()}
        assert got == want
        assert list(want) and sorted(got) == list(got)  # key order = (sip, dport) order


# --- files --------------------------------------------------------------------------------

def _roundtrip(b, fmt, tmp_path, name):
    path = str(tmp_path / name)
    bag.write_bag(b, path, fmt, history=["x"], notes=["n"])
    return bag.read_bag(path)


@settings(max_examples=25, deadline=None)
@given(entries, st.booleans())
def test_round_trips(tmp_path_factory, a, v6):
    tmp = tmp_path_factory.mktemp("rt")
    A = bag_of(a, v6)
    for fmt in ("pyflow", "silk"):
        back = _roundtrip(A, fmt, tmp, f"b.{fmt}")
        assert back == A and back.ipv6 == A.ipv6 and back.key == A.key
        assert back.meta["format"] == fmt


def test_silk_fixtures_read_and_rewrite(tmp_path):
    if not os.path.isdir(SILK_TESTS):
        pytest.skip("shared SiLK test data absent")
    for n in ("bag1-v4", "bag2-v4", "bag3-v4", "bag1-v6", "bag2-v6", "bag3-v6"):
        b = bag.read_bag(os.path.join(SILK_TESTS, n + ".bag"))
        assert b.ipv6 == n.endswith("v6") and len(b) >= 8
        for fmt in ("silk", "pyflow"):
            assert _roundtrip(b, fmt, tmp_path, f"{n}.{fmt}") == b
    b = bag.read_bag(os.path.join(SILK_TESTS, "bag1-v4.bag"))
    assert b.keys[:2].tolist() == [0x0A000000, 0x0A010101]  # 10.0.0.0, 10.1.1.1
    assert b.counters[:2].tolist() == [12345, 9223372036854775806]


def test_composite_is_pyflow_only(tmp_path):
    spec = bagtool.parse_spec("sIP+dIP,records,x")
    b = bag.Bag(spec.key, "records")
    with pytest.raises(FlowError, match="composite key sIPv4\\+dIPv4 cannot be written"):
        bag.write_bag(b, str(tmp_path / "c.bag"), "silk")
    assert not os.listdir(tmp_path)


def test_bad_files(tmp_path):
    good = tmp_path / "good.bag"
    bag.write_bag(bag_of({1: 2, 3: 4}), str(good))
    data = good.read_bytes()
    cut = tmp_path / "cut.bag"
    cut.write_bytes(data[:-10])
    with pytest.raises(FormatError, match="truncated"):
        bag.read_bag(str(cut))
    sfile = tmp_path / "s.set"
    write_set(IPSet.from_addresses(np.array([1, 2], np.uint32)), str(sfile))
    with pytest.raises(FormatError, match="not a bag file .*ipset"):
        bag.read_bag(str(sfile))
    future = bytearray(data)
    future[8] = container.MAJOR + 1
    fpath = tmp_path / "f.bag"
    fpath.write_bytes(bytes(future))
    with pytest.raises(FormatError, match="newer than this pyflow"):
        bag.read_bag(str(fpath))
    silk = pyio.BytesIO()
    silkbag.write(bag_of({1: 2, 3: 4}), silk)
    raw = bytearray(silk.getvalue())
    raw[14:16] = (9).to_bytes(2, "big")
    with pytest.raises(FormatError, match="record version 9"):
        bag.read_bag(pyio.BytesIO(bytes(raw)), "v9.bag")
    with pytest.raises(FormatError, match="truncated Bag data"):
        bag.read_bag(pyio.BytesIO(silk.getvalue()[:-3]), "short.bag")


# --- the tools ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def flows(tmp_path_factory):
    from flowtools.io import FlowSink
    rng = np.random.default_rng(7)
    batch = random_batch(rng, 20000)
    batch["sip"] = rng.integers(0, 3000, 20000).astype(np.uint32) + np.uint32(0x0A000000)
    path = str(tmp_path_factory.mktemp("flows") / "f.pf")
    sink = FlowSink(path)
    sink.write(batch)
    sink.close()
    return path, batch


def test_records_sum_to_record_count_and_coverset_matches(flows, tmp_path):
    path, batch = flows
    out = tmp_path / "s.bag"
    r = run(tool("pyflow-bag") + [f"--bag-file=sIPv4,records,{out}",
                                  f"--sip-bytes={tmp_path / 'b.bag'}", path])
    assert r.returncode == 0, r.stderr
    b = bag.read_bag(str(out))
    assert b.total() == len(batch["stime"])
    by = bag.read_bag(str(tmp_path / "b.bag"))
    assert by.total() == int(batch["bytes"].astype(object).sum())
    cover = tmp_path / "c.set"
    r = run(tool("pyflow-bagtool") + ["--coverset", f"--output-path={cover}", str(out)])
    assert r.returncode == 0, r.stderr
    from flowtools.ipset import read_set
    assert read_set(str(cover)) == IPSet.from_addresses(batch["sip"])
    # the bar's pipeline: sources with at most 10 records
    r = run(tool("pyflow-bagtool") + ["--maxcounter=10", "--coverset", str(out)])
    few = read_set(pyio.BytesIO(r.stdout))
    u, c = np.unique(batch["sip"], return_counts=True)
    assert few == IPSet.from_addresses(u[c <= 10])


def test_pipeline_text_and_silk_format(flows, tmp_path):
    path, batch = flows
    r = run(tool("pyflow-bag") + ["--bag-file=dport,records,-", "--output-format=silk",
                                  path])
    assert r.returncode == 0 and r.stdout[:4] == b"\xde\xad\xbe\xef"
    text = run(tool("pyflow-bagcat") + ["--delimited"], input=r.stdout).stdout.decode()
    u, c = np.unique(batch["dport"], return_counts=True)
    assert text == "".join(f"{k}|{n}\n" for k, n in zip(u, c, strict=True))


def test_errors_are_one_line(flows, tmp_path):
    path, _ = flows
    port = tmp_path / "p.bag"
    assert run(tool("pyflow-bag") + [f"--dport-flows={port}", path]).returncode == 0
    r = run(tool("pyflow-bagtool") + ["--coverset", str(port)])
    assert r.returncode == 1 and r.stdout == b""
    assert r.stderr.decode().count("\n") == 1 and "IP addresses" in r.stderr.decode()
    bad = tmp_path / "bad.txt"
    bad.write_text("10.0.0.1|5|\n10.0.0.2|x|\n")
    out = tmp_path / "o.bag"
    r = run(tool("pyflow-bagbuild") + [f"--bag-input={bad}", f"--output-path={out}"])
    assert r.returncode == 1 and "line 2" in r.stderr.decode() and not out.exists()
    r = run(tool("pyflow-bag") + ["--bag-file=sip+dport,records,-", "--output-format=silk",
                                  path])
    assert r.returncode == 1 and "composite" in r.stderr.decode()
    r = run(tool("pyflow-bagcat") + [str(tmp_path / "missing.bag")])
    assert r.returncode == 1 and r.stderr.decode().count("\n") == 1
    r = run(tool("pyflow-bagtool") + ["--add", "--subtract", str(port)])
    assert r.returncode == 1 and "incompatible" in r.stderr.decode()


_words = st.lists(st.tuples(st.sampled_from([0, 0, 0, 1, 2**63]),
                            st.integers(0, 40)), max_size=60)


def _as_keys(pairs):
    return np.array(pairs, np.uint64).reshape(-1, 2)


@settings(max_examples=150, deadline=None)
@given(_words, _words)
def test_two_word_count_and_merge_equal_a_plain_sort(a, b):
    """IPv6-form keys are counted and merged with the zero-high-word keys apart from the
    rest; the result is the same as a plain lexicographic count."""
    ka, ca = bag.count(_as_keys(a)) if a else (_as_keys([]), np.zeros(0, np.uint64))
    kb, cb = bag.count(_as_keys(b)) if b else (_as_keys([]), np.zeros(0, np.uint64))
    k, c, _ = bag.merge_sorted(ka, ca, kb, cb)
    want = {}
    for pair in a + b:
        want[pair] = want.get(pair, 0) + 1
    assert [tuple(map(int, x)) for x in k] == sorted(want)
    assert list(map(int, c)) == [want[p] for p in sorted(want)]


def test_bag_of_many_files_on_workers_equals_one_stream(tmp_path):
    """pyflow-bag over 16+ archive files (worker processes) writes the bag that the same
    records read as one stream give."""
    root = tmp_path / "archive"
    p = run(tool("pyflow-gen") + [f"--data-rootdir={root}", "--flows=20000", "--seed=9",
                                  "--start-date=2024/03/01", "--hours=3", "--sensors=S0,S1"])
    assert p.returncode == 0, p.stderr
    files = sorted(str(f) for f in root.rglob("*_2024*"))
    assert len(files) >= 16
    listing = "".join(f + "\n" for f in files).encode()
    stream = tmp_path / "all.pf"
    assert run(tool("pyflow-cat") + ["--xargs", f"--output-path={stream}"],
               input=listing).returncode == 0
    for spec in ("sIPv4,records", "sIP+dPort,sum-bytes", "dPort,records"):
        a, b = tmp_path / "a.bag", tmp_path / "b.bag"
        for path in (a, b):
            path.unlink(missing_ok=True)
        pa = run(tool("pyflow-bag") + ["--xargs", f"--bag-file={spec},{a}"], input=listing)
        pb = run(tool("pyflow-bag") + [f"--bag-file={spec},{b}", str(stream)])
        assert pa.returncode == 0 and pb.returncode == 0, pa.stderr + pb.stderr
        x, y = bag.read_bag(str(a)), bag.read_bag(str(b))
        np.testing.assert_array_equal(x.keys, y.keys)
        np.testing.assert_array_equal(x.counters, y.counters)
        assert len(x) > 10


# --- pyflow-bagcat --network-structure ------------------------------------------------------

def _v6_bag(items):
    import ipaddress
    ks = [int(ipaddress.IPv6Address(a)) for a, _ in items]
    keys = np.array([[k >> 64, k & (2**64 - 1)] for k in ks], np.uint64)
    return bag.Bag(("sIPv6",), "records", True, keys, np.array([c for _, c in items],
                                                                 np.uint64))


def test_network_structure_ipv4_golden(tmp_path):
    from flowtools.tools.bagcat import network_structure
    b = make([0x0A000001, 0x0A000002, 0xC0A8010A], [2300, 120, 4000])
    # SiLK's own example (rwbagcat(1)): each block after the finer blocks inside it
    assert network_structure(b, "v4:16,24", set()) == (
        "  10.0.0.0/24       |                2420|\n"
        "10.0.0.0/16         |                2420|\n"
        "  192.168.1.0/24    |                4000|\n"
        "192.168.0.0/16      |                4000|\n")
    # the default structure: the total with the occupied /8s, /16s, /24s and /27s
    assert network_structure(b, "", set()) == (
        "TOTAL|                6420| 3 hosts in 2 /8s, 2 /16s, 2 /24s, and 2 /27s\n")
    assert network_structure(b, "v4:H,16", set(), ",", False, False) == (
        "10.0.0.1,2300\n10.0.0.2,120\n10.0.0.0/16,2420\n192.168.1.10,4000\n"
        "192.168.0.0/16,4000\n")
    assert network_structure(b, "v4:24", {"map-v4"}).splitlines()[0] == \
        "       ::ffff:10.0.0.0/120|                2420|"
    # the same through the tool, from a SiLK-format file
    path = tmp_path / "t.bag"
    bag.write_bag(b, str(path), "silk")
    r = run(tool("pyflow-bagcat") + ["--network-structure=TS/24,H", str(path)])
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"TOTAL|                6420| 3 hosts in 2 /24s\n"


def test_network_structure_ipv6_golden():
    from flowtools.tools.bagcat import network_structure
    b = _v6_bag([("2001:db8::1", 5), ("2001:db8::2", 7), ("2001:db8:0:1::9", 2**64 - 1),
                 ("2001:db8:1::1", 3)])
    # IPv6 sums are 128-bit (SiLK's ns128_t): no wrap past 2^64
    assert network_structure(b, "v6:H,48,64", set()) == (
        "    2001:db8::1                              |                   5|\n"
        "    2001:db8::2                              |                   7|\n"
        "  2001:db8::/64                              |                  12|\n"
        "    2001:db8:0:1::9                          |18446744073709551615|\n"
        "  2001:db8:0:1::/64                          |18446744073709551615|\n"
        "2001:db8::/48                                |18446744073709551627|\n"
        "    2001:db8:1::1                            |                   3|\n"
        "  2001:db8:1::/64                            |                   3|\n"
        "2001:db8:1::/48                              |                   3|\n")
    assert network_structure(b, "", set()) == (
        "TOTAL|18446744073709551630| 4 hosts in 2 /48s and 3 /64s\n")
    assert network_structure(b, "v6:48", {"zero-padded"}) == (
        "2001:0db8:0000:0000:0000:0000:0000:0000/048|18446744073709551627|\n"
        "2001:0db8:0001:0000:0000:0000:0000:0000/048|                   3|\n")
    # a v4 structure sees only ::ffff:0:0/96; none here, so an empty total
    assert network_structure(b, "v4:T", set()) == "TOTAL|                   0|\n"


@settings(max_examples=40, deadline=None)
@given(entries, st.integers(1, 31), st.booleans())
def test_network_structure_sums_match_grouping(a, bits, v6):
    """Every /bits row is the sum (IPv4: wrapping at 2^64, as SiLK) and host count of
    the keys in that block, in key order; the total covers them all."""
    from flowtools.tools.bagcat import network_structure
    A = bag_of(a, v6)
    out = network_structure(A, f"v4:T{bits}/", set(), "|", False, False)
    want = {}
    for k in sorted(a):
        net = k >> (32 - bits) << (32 - bits)
        s, n = want.get(net, (0, 0))
        want[net] = ((s + a[k]) % 2**64, n + 1)
    lines = out.splitlines()
    assert len(lines) == len(want) + 1
    for line, (net, (s, n)) in zip(lines, sorted(want.items()), strict=False):
        addr = ".".join(str(net >> sh & 255) for sh in (24, 16, 8, 0))
        assert line == f"{addr}/{bits}|{s}| {n} host{'' if n == 1 else 's'}"
    blocks = len(want)
    assert lines[-1] == (f"TOTAL|{sum(a.values()) % 2**64}| {len(a)} host"
                         f"{'' if len(a) == 1 else 's'} in {blocks} /{bits}"
                         f"{'' if blocks == 1 else 's'}")


def test_network_structure_errors(tmp_path):
    port = tmp_path / "p.bag"
    bag.write_bag(make([80, 443], [1, 2], key=("dPort",)), str(port))
    ipb = tmp_path / "i.bag"
    bag.write_bag(make([1, 2], [1, 2]), str(ipb))
    for args, words in ((["--network-structure", str(port)], "dPort keys"),
                        (["--network-structure=33", str(ipb)], "above maximum of 32"),
                        (["--network-structure=v5:8", str(ipb)], "'v6' or 'v4'"),
                        (["--network-structure=S", str(ipb)], "A numeric prefix"),
                        (["--network-structure=8/16/24", str(ipb)], "Only one '/'"),
                        (["--network-structure", "--bin-ips", str(ipb)], "--bin-ips"),
                        (["--network-structure", "--key-format=epoch", str(ipb)],
                         "only IP formats")):
        r = run(tool("pyflow-bagcat") + args)
        err = r.stderr.decode()
        assert r.returncode == 1 and r.stdout == b"", args
        assert err.startswith("pyflow-bagcat: ") and err.count("\n") == 1, err
        assert words in err, err


_v4 = st.integers(0, 50).map(lambda v: (0, 0xFFFF00000000 | v))
_v6 = st.sampled_from([(0, 5), (0, 2**48), (1, 0), (2**63, 7)])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.one_of(_v4, _v4, _v6), max_size=30), max_size=6),
       st.lists(st.integers(0, 50), max_size=20))
def test_builder_keeps_ipv4_apart_in_an_ipv6_address_bag(pieces, before):
    """IPv4 records first (an IPv4 bag), then IPv6-form pieces (the bag turns IPv6 and
    keeps its IPv4 part as 32-bit keys): the bag equals a plain count of every key."""
    b = bag.Builder(("sIPv4",), "records", False)
    b.MERGE_MIN = 4  # merge often
    want = {}
    if before:
        b.add(np.array(before, np.uint32))
        for v in before:
            key = (0, 0xFFFF00000000 | v)
            want[key] = want.get(key, 0) + 1
    for piece in pieces:
        if not piece:
            continue
        b.promote_v6()
        b.add(np.array(piece, np.uint64).reshape(-1, 2))
        for key in piece:
            want[key] = want.get(key, 0) + 1
    parts = list(b.chunks(size=3))  # what pyflow-bag writes from, a piece at a time
    out = b.bag()
    if parts:
        assert np.array_equal(np.concatenate([k for k, _ in parts]), out.keys)
        assert np.array_equal(np.concatenate([c for _, c in parts]), out.counters)
    else:
        assert len(out) == 0
    if out.ipv6:
        got = {tuple(map(int, k)): int(c) for k, c in zip(out.keys, out.counters, strict=True)}
        assert [tuple(map(int, k)) for k in out.keys] == sorted(got)
    else:
        got = {(0, 0xFFFF00000000 | int(k)): int(c)
               for k, c in zip(out.keys, out.counters, strict=True)}
    assert got == want


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([1, 2**63]), st.integers(0, 3), st.integers(0, 2**64 - 1)
                          | st.integers(0, 3)), max_size=40),
       st.lists(st.tuples(st.sampled_from([1, 2**63]), st.integers(0, 3), st.integers(0, 3)),
                max_size=40))
def test_wide_keys_merge_as_a_plain_sort(a, b):
    """Keys of three words (none zero-led), merged as big-endian byte strings."""
    def counted(pairs):
        if not pairs:
            return np.zeros((0, 3), np.uint64), np.zeros(0, np.uint64)
        return bag.count(np.array(pairs, np.uint64).reshape(-1, 3))
    k, c, _ = bag.merge_sorted(*counted(a), *counted(b))
    want = {}
    for key in a + b:
        want[key] = want.get(key, 0) + 1
    assert k.shape[1:] == (3,) and k.dtype == np.uint64
    assert [tuple(map(int, x)) for x in k] == sorted(want)
    assert list(map(int, c)) == [want[p] for p in sorted(want)]


@pytest.mark.parametrize("ipv6,keys,ok", [
    (False, [5, 3, 9], False),
    (False, [3, 3, 9], False),
    (True, [[0, 5], [0, 3], [1, 0]], False),
    (True, [[0, 5], [0, 5], [1, 0]], False),
    (True, [[0, 5], [0, 6], [1, 0]], True),
    (True, [[0, 2**63], [1, 0], [2**63, 1]], True),
])
def test_a_bag_whose_keys_are_not_strictly_increasing_is_refused(ipv6, keys, ok):
    b = bag.Bag(("sIPv6",) if ipv6 else ("sIPv4",), "records", ipv6,
                np.array(keys, np.uint64 if ipv6 else np.uint32), np.ones(3, np.uint64))
    f = pyio.BytesIO()
    bag.write_pyflow(b, f)
    f.seek(0)
    if ok:
        assert len(bag.read_bag(f, "x.bag")) == 3
        return
    with pytest.raises(FormatError, match="x.bag: corrupt bag data .keys out of order."):
        bag.read_bag(f, "x.bag")
