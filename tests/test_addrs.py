"""Address matchers against a plain Python model (ipaddress and sets of block values)."""

import ipaddress
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowtools import addrs, schema
from flowtools.errors import FlowError

MAPPED = 0xFFFF << 32
SETTINGS = dict(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def v6col(values):
    return addrs.pairs(values)


def v4_of(v128):
    """The IPv4 address of a ::ffff:a.b.c.d value, else None."""
    return v128 - MAPPED if MAPPED <= v128 <= MAPPED | 0xFFFFFFFF else None


# --- wildcard patterns: text and per-block value sets --------------------------------

def block_strategy(maxv, hexa):
    fmt = (lambda v: f"{v:x}") if hexa else str

    def item():
        single = st.integers(0, maxv).map(lambda v: (fmt(v), {v}))
        rng = st.tuples(st.integers(0, maxv), st.integers(0, maxv)).map(
            lambda ab: (f"{fmt(min(ab))}-{fmt(max(ab))}",
                        set(range(min(ab), max(ab) + 1))) if max(ab) - min(ab) < 5000
            else (f"{fmt(min(ab))}-{fmt(max(ab))}", (min(ab), max(ab))))
        return st.one_of(single, rng)

    def join(items):
        text = ",".join(t for t, _ in items)
        return text, [v for _, v in items]

    return st.one_of(st.just(("x", None)), st.lists(item(), min_size=1, max_size=3).map(join))


def in_block(spec, v):
    if spec is None:
        return True
    for part in spec:
        if isinstance(part, tuple):
            if part[0] <= v <= part[1]:
                return True
        elif v in part:
            return True
    return False


def block_values(spec, maxv):
    """A few values inside a block's spec (to aim test addresses at the pattern)."""
    if spec is None:
        return [0, maxv, 7]
    out = []
    for part in spec:
        out.extend(part if isinstance(part, tuple) else sorted(part)[:3] + [max(part)])
    return out


@st.composite
def v4_wildcards(draw):
    blocks = [draw(block_strategy(255, False)) for _ in range(4)]
    text = ".".join(t for t, _ in blocks)
    return text, [s for _, s in blocks]


@st.composite
def v6_wildcards(draw):
    blocks = [draw(block_strategy(0xFFFF, True)) for _ in range(8)]
    texts = [t for t, _ in blocks]
    specs = [s for _, s in blocks]
    # compress a run of zero groups with '::' sometimes
    zero = [t == "0" for t in texts]
    if any(zero) and draw(st.booleans()):
        i = zero.index(True)
        j = i
        while j < 8 and zero[j]:
            j += 1
        text = ":".join(texts[:i]) + "::" + ":".join(texts[j:])
    else:
        text = ":".join(texts)
    return text, specs


def wild_ref(specs, v, ipv6):
    bits = 16 if ipv6 else 8
    n = len(specs)
    return all(in_block(specs[i], (v >> (bits * (n - 1 - i))) & ((1 << bits) - 1))
               for i in range(n))


def aimed(draw, specs, ipv6):
    """Addresses near the pattern: block values mostly drawn from its specs."""
    bits = 16 if ipv6 else 8
    maxv = (1 << bits) - 1
    rnd = random.Random(draw(st.integers(0, 2**32)))
    choices = [block_values(spec, maxv) for spec in specs]
    out = []
    for _ in range(60):
        v = 0
        for c in choices:
            v = (v << bits) | (rnd.choice(c) if rnd.random() < 0.9 else rnd.randint(0, maxv))
        out.append(v)
    return out


@settings(**SETTINGS)
@given(v4_wildcards(), st.data())
def test_v4_wildcard(pattern, data):
    text, specs = pattern
    m = addrs.parse_wildcard(text)
    assert not m.is_ipv6
    values = aimed(data.draw, specs, False)
    values += data.draw(st.lists(st.integers(0, 2**32 - 1), max_size=20))
    col = np.array(values, np.uint32)
    want = np.array([wild_ref(specs, v, False) for v in values])
    np.testing.assert_array_equal(m.contains(col), want)
    # the same addresses in an IPv6 batch, with genuinely IPv6 addresses that share the low
    # 32 bits and must never match an IPv4 pattern
    v6 = [MAPPED | v for v in values] + [(1 << 100) | MAPPED | v for v in values] + \
         [v for v in values]
    want6 = np.r_[want, np.zeros(2 * len(values), bool)]
    np.testing.assert_array_equal(m.contains(v6col(v6)), want6)
    check_may_contain(m, values, data, False)


@settings(**SETTINGS)
@given(v6_wildcards(), st.data())
def test_v6_wildcard(pattern, data):
    text, specs = pattern
    m = addrs.parse_wildcard(text)
    assert m.is_ipv6
    values = aimed(data.draw, specs, True)
    values += data.draw(st.lists(st.integers(0, 2**128 - 1), max_size=10))
    want = np.array([wild_ref(specs, v, True) for v in values])
    np.testing.assert_array_equal(m.contains(v6col(values)), want)
    # an IPv4 column is seen as ::ffff:a.b.c.d
    v4 = [v & 0xFFFFFFFF for v in values]
    want4 = np.array([wild_ref(specs, MAPPED | v, True) for v in v4])
    np.testing.assert_array_equal(m.contains(np.array(v4, np.uint32)), want4)
    check_may_contain(m, values, data, True)


def check_may_contain(m, values, data, ipv6):
    """may_contain must be True for any span holding a matching address."""
    width = 128 if ipv6 else 32
    for _ in range(5):
        a, b = sorted(data.draw(st.sampled_from(values)) for _ in range(2))
        inside = [v for v in values if a <= v <= b]
        col = v6col(inside) if ipv6 else np.array(inside, np.uint32)
        if len(inside) and m.contains(col).any():
            span = ((a >> 64, a & addrs.M64), (b >> 64, b & addrs.M64)) if ipv6 else (a, b)
            assert m.may_contain(*span)
    full = ((0, 0), (2**64 - 1, 2**64 - 1)) if ipv6 else (0, 2**width - 1)
    assert m.may_contain(*full) == (m.bounds() is not None)


def test_v6_wildcard_with_embedded_v4():
    m = addrs.parse_wildcard("::ffff:10.x.1-2.3")
    col = np.array([0x0A000103, 0x0A050203, 0x0A050303, 0x0B000103], np.uint32)
    np.testing.assert_array_equal(m.contains(col), [True, True, False, False])
    np.testing.assert_array_equal(m.contains(schema.v4_to_v6(col)), [True, True, False, False])
    assert m.is_ipv6
    m = addrs.parse_wildcard("1:2:3:4:5:6:1.2.3.4")
    assert m.bounds() == (int(ipaddress.ip_address("1:2:3:4:5:6:102:304")),) * 2


@pytest.mark.parametrize("text,match,miss", [
    ("10.1.24-27.x", ["10.1.24.0", "10.1.27.255"], ["10.1.28.0", "10.2.24.1"]),
    ("10.1.1.1,3,5", ["10.1.1.3", "10.1.1.5"], ["10.1.1.2"]),
    ("10.x.x.1", ["10.200.3.1"], ["10.200.3.2"]),
    ("10.0.0.0/8", ["10.255.0.1"], ["11.0.0.0"]),
    ("10.1.2.3/8", ["10.0.0.0"], ["9.255.255.255"]),  # host bits are ignored
    ("167772161", ["10.0.0.1"], ["10.0.0.2"]),  # a lone integer is an IPv4 address
    (" 10.0.0.1 ", ["10.0.0.1"], []),
    ("x.x.x.x", ["0.0.0.0", "255.255.255.255"], []),
    ("::ffff:0:0/96", ["1.2.3.4"], []),
    ("2001:db8::/32", ["2001:db8::1"], ["2001:db9::", "1.2.3.4"]),
    ("2001:db8::x", ["2001:db8::ffff"], ["2001:db8::1:0"]),
    ("x::", ["1234::"], ["::1"]),
    ("::x", ["::1234"], ["1::"]),
    ("0:0:0:0:0:ffff:a00-a01:x", ["10.0.1.2", "10.1.255.255"], ["10.2.0.0"]),
    ("::", ["::"], ["::1"]),
])
def test_examples(text, match, miss):
    m = addrs.parse_wildcard(text)
    for addr, want in [(a, True) for a in match] + [(a, False) for a in miss]:
        ip = ipaddress.ip_address(addr)
        v = int(ip) if ip.version == 6 else MAPPED | int(ip)
        assert m.contains(v6col([v]))[0] == want, (text, addr)
        if ip.version == 4:
            assert m.contains(np.array([int(ip)], np.uint32))[0] == want, (text, addr)


@pytest.mark.parametrize("text,reason", [
    ("", "empty address"),
    ("x", "only 1/4 octets given"),
    ("1.2.3", "only 3/4 octets given"),
    ("1.2.3.4.5", "more than 4 octets given"),
    ("1.2.3.0/24,5", "bad prefix length '24,5'"),
    ("1.2.3.256", "value '256' is larger than 255"),
    ("1.2.5-3.x", "range '5-3' is reversed"),
    ("1.2.3-.x", "range '3-' is missing its upper limit"),
    ("1.2.3,,4.x", "empty item in a list"),
    ("1..3.4", "empty address block"),
    ("1.2.3.4/33", "prefix length 33 is not between 1 and 32"),
    ("1.2.3.4/0", "prefix length 0 is not between 1 and 32"),
    ("::/129", "prefix length 129 is not between 1 and 128"),
    ("1.2.3.4/", "expected a prefix length after '/'"),
    ("1.2.3.x/24", "a CIDR prefix needs a single address before '/'"),
    ("1.2.a.4", "unexpected character 'a'"),
    ("1:2::3::4", "only one '::' is allowed"),
    ("1:2:3:4:5:6:7:8::", "'::' in an address with 8 groups"),
    ("1:2:3", "3 groups given where 8 are needed"),
    ("1:2:3:4:5:6:7:10000", "value '10000' is larger than ffff"),
    ("1.2.3.4 5", "embedded whitespace"),
    ("4294967296", "integer too large for an IPv4 address"),
    ("1.2.3.4:5::", "':' after '.'"),
])
def test_wildcard_errors(text, reason):
    with pytest.raises(FlowError) as exc:
        addrs.parse_wildcard(text, "--daddress")
    assert str(exc.value) == f"invalid --daddress value '{text}': {reason}"


# --- CIDR lists -------------------------------------------------------------------------

@st.composite
def cidr_items(draw):
    if draw(st.booleans()):
        p = draw(st.integers(1, 32))
        net = ipaddress.ip_network((draw(st.integers(0, 2**32 - 1)), p), strict=False)
    else:
        p = draw(st.integers(1, 128))
        base = draw(st.one_of(st.integers(0, 2**128 - 1),
                              st.integers(0, 2**32 - 1).map(lambda v: MAPPED | v)))
        net = ipaddress.ip_network((base, p), strict=False)
    text = str(net) if (draw(st.booleans()) or net.prefixlen < net.max_prefixlen) \
        else str(net.network_address)
    return text, net


def cidr_ref(nets, v128):
    """Membership of a 128-bit column value, IPv4 networks seen through ::ffff:0:0/96."""
    v4 = v4_of(v128)
    for net in nets:
        if net.version == 6 and ipaddress.IPv6Address(v128) in net:
            return True
        if net.version == 4 and v4 is not None and ipaddress.IPv4Address(v4) in net:
            return True
    return False


@settings(**SETTINGS)
@given(st.lists(cidr_items(), min_size=1, max_size=6), st.data())
def test_cidr_list(items, data):
    text = ",".join(t for t, _ in items)
    nets = [n for _, n in items]
    m = addrs.parse_cidr_list(text)
    assert m.is_ipv6 == any(n.version == 6 for n in nets)
    values = []
    for net in nets:
        lo, hi = int(net.network_address), int(net.broadcast_address)
        if net.version == 4:
            lo, hi = MAPPED | lo, MAPPED | hi
        values += [lo, hi, max(lo - 1, 0), min(hi + 1, 2**128 - 1), (lo + hi) // 2]
    values += data.draw(st.lists(st.integers(0, 2**128 - 1), max_size=10))
    values += [MAPPED | v for v in data.draw(st.lists(st.integers(0, 2**32 - 1), max_size=10))]
    want = np.array([cidr_ref(nets, v) for v in values])
    np.testing.assert_array_equal(m.contains(v6col(values)), want)
    v4 = [v4_of(v) for v in values if v4_of(v) is not None]
    want4 = np.array([cidr_ref(nets, MAPPED | v) for v in v4], bool)
    np.testing.assert_array_equal(m.contains(np.array(v4, np.uint32)), want4)
    # may_contain is exact for ranges
    for _ in range(5):
        a, b = sorted(data.draw(st.sampled_from(values)) for _ in range(2))
        exact = any(
            max(a, s) <= min(b, e) for s, e in
            ((int(n.network_address) | (MAPPED if n.version == 4 else 0),
              int(n.broadcast_address) | (MAPPED if n.version == 4 else 0)) for n in nets))
        got = m.may_contain((a >> 64, a & addrs.M64), (b >> 64, b & addrs.M64))
        assert got == exact
        va, vb = v4_of(a), v4_of(b)
        if va is not None and vb is not None:
            assert m.may_contain(va, vb) == exact


@pytest.mark.parametrize("text,reason", [
    ("10.0.0.0/8,", "empty address (item '')"),
    ("10.0.0.1-5", "not an address or CIDR block (no wildcards here)"),
    ("10.0.0.x", "not an address or CIDR block (no wildcards here)"),
    ("10.0.0.0/33", "prefix length 33 is not between 1 and 32"),
    ("1.2.3.4,::/0", "prefix length 0 is not between 1 and 128 (item '::/0')"),
])
def test_cidr_errors(text, reason):
    with pytest.raises(FlowError) as exc:
        addrs.parse_cidr_list(text)
    assert str(exc.value) == f"invalid --scidr value '{text}': {reason}"


def test_ranges_large_paths(rng):
    """The sorted-query paths (many ranges) agree with the small-set paths."""
    k = addrs._SORT_QUERIES * 2
    starts = np.unique(rng.integers(0, 2**32, k, dtype=np.uint64))[::2].astype(np.uint32)
    ends = starts + rng.integers(0, 3, len(starts)).astype(np.uint32)
    keep = np.r_[True, starts[1:] > ends[:-1].astype(np.int64) + 1]
    starts, ends = starts[keep], ends[keep]
    ends = np.minimum(ends, np.r_[starts[1:] - 2, 2**32 - 1].astype(np.int64)).astype(np.uint32)
    x = np.r_[rng.integers(0, 2**32, 50_000, dtype=np.uint64).astype(np.uint32), starts[:500],
              ends[:500], starts[:500] - 1]
    j = np.searchsorted(starts, x, "right") - 1
    want = (j >= 0) & (x <= ends[np.maximum(j, 0)])
    np.testing.assert_array_equal(addrs.member32(starts, ends, x), want)
    # the same ranges moved into IPv6 space (and once more at a high half with ties)
    m = addrs.Ranges(np.stack([np.full(len(starts), 7, np.uint64), starts.astype(np.uint64)], 1),
                     np.stack([np.full(len(ends), 7, np.uint64), ends.astype(np.uint64)], 1),
                     True)
    col = np.stack([np.full(len(x), 7, np.uint64), x.astype(np.uint64)], 1)
    np.testing.assert_array_equal(m.contains(col), want)
    assert not m.contains(schema.v4_to_v6(x)).any()
    assert not m.contains(x).any()


def test_wildcard_ranges():
    for text in ["10.1.24-27.x", "10.1,2.255,0.x", "1.2.3.4", "x.x.5.1-2", "x.x.x.x",
                 "2001:db8::x", "1-2:x::5,7"]:
        m = addrs.parse_wildcard(text)
        if not isinstance(m, addrs.Wildcard):
            continue
        s, e = m.ranges()
        if m.is_ipv6:
            r = addrs.Ranges(s, e, True)
            total = sum(addrs.to_int128(b) - addrs.to_int128(a) + 1
                        for a, b in zip(s, e, strict=True))
        else:
            r = addrs.Ranges(s, e)
            total = int((e.astype(np.int64) - s + 1).sum())
            assert (s[1:].astype(np.int64) > e[:-1].astype(np.int64) + 1).all()
        assert total == m.count()
        probe = np.random.default_rng(1).integers(0, 2**32, 20000, dtype=np.uint64)
        probe = probe.astype(np.uint32)
        np.testing.assert_array_equal(r.contains(probe), m.contains(probe))
    with pytest.raises(FlowError):
        addrs.parse_wildcard("x:x:x:x:x:x:x:1").ranges()
