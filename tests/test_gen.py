import numpy as np
import pytest
from conftest import assert_batches_equal

from flowtools import schema
from flowtools.errors import FlowError
from flowtools.gen import INSIDE_V4, LOCAL_UTC_OFFSET_H, generate

HOUR = 3_600_000
START = 1_700_000_000_000 - 1_700_000_000_000 % HOUR
FT = {"in": 0, "out": 1, "inweb": 2, "outweb": 3, "inicmp": 8, "outicmp": 9, "innull": 4,
      "outnull": 5, "int2int": 6, "ext2ext": 7, "other": 10}
INBOUND = [FT["in"], FT["inweb"], FT["inicmp"], FT["innull"]]
F, S, R, P, A = 1, 2, 4, 8, 16


def run(flows, seed=1, hours=24, **kw):
    kw.setdefault("sensors", [0, 1, 2])
    kw.setdefault("flowtypes", FT)
    return list(generate(seed, flows, kw.pop("start_ms", START), hours, **kw))


def v4_part(col):
    """Low 32 bits of an address column (IPv4 addresses of either kind of batch)."""
    return (col[:, 1] if col.ndim == 2 else col).astype(np.uint64) & np.uint64(0xFFFFFFFF)


def is_inside(batch, name):
    a = v4_part(batch[name])
    inside = (a >> np.uint64(10)) == np.uint64(INSIDE_V4 >> 10)
    if schema.is_v6(batch):
        inside &= ~batch["ipv6"]
        inside |= batch["ipv6"] & (batch[name][:, 0] >> np.uint64(16)
                                   == np.uint64(0x20010DB81234))
    return inside


@pytest.fixture(scope="module")
def big():
    """A million flows over three days: (hour list, all records as one batch)."""
    out = run(1_000_000, seed=42, hours=72, sensors=[0, 1, 2, 3, 5])
    return out, schema.concat([b for _, b in out])


def test_same_seed_same_records_other_seed_differs():
    a, b, c = run(20_000, seed=5), run(20_000, seed=5), run(20_000, seed=6)
    assert [h for h, _ in a] == [h for h, _ in b]
    for (_, x), (_, y) in zip(a, b, strict=True):
        assert_batches_equal(x, y)
    assert not np.array_equal(a[3][1]["sip"], c[3][1]["sip"])


@pytest.mark.parametrize("flows,hours", [(0, 3), (1, 1), (7, 5), (12_345, 30), (50_001, 2)])
def test_exact_total_one_sorted_batch_per_hour(flows, hours):
    out = run(flows, hours=hours)
    assert [h for h, _ in out] == [START + i * HOUR for i in range(hours)]
    assert sum(schema.nrecords(b) for _, b in out) == flows
    for h, b in out:
        t = b["stime"]
        assert (np.diff(t) >= 0).all()
        assert ((t >= h) & (t < h + HOUR)).all()


def test_unaligned_start_and_batch_hours():
    start = START + 1_234_567
    out = run(10_000, hours=5, start_ms=start, batch_hours=2)
    assert [h for h, _ in out] == [START, START + 2 * HOUR, START + 4 * HOUR]
    b = schema.concat([b for _, b in out])
    assert schema.nrecords(b) == 10_000
    assert (np.diff(b["stime"]) >= 0).all()
    assert b["stime"].min() >= start and b["stime"].max() < start + 5 * HOUR


def test_bad_arguments():
    with pytest.raises(FlowError):
        run(-1)
    with pytest.raises(FlowError):
        run(10, hours=0)
    with pytest.raises(FlowError):
        run(10, sensors=[])
    with pytest.raises(FlowError):
        run(10, flowtypes={"in": 0})
    with pytest.raises(FlowError):
        run(10, ipv6_fraction=1.5)


def test_sites_with_only_in_and_out():
    b = schema.concat([b for _, b in run(20_000, flowtypes={"in": 3, "out": 4})])
    assert schema.nrecords(b) == 20_000
    assert set(np.unique(b["flowtype"])) == {3, 4}


def test_record_invariants(big):
    _, b = big
    p, by = b["packets"], b["bytes"]
    assert (b["flags"] == b["initflags"] | b["sessflags"]).all()
    assert (p >= 1).all() and (by >= 40 * p).all() and (by <= 1500 * p).all()
    assert (b["duration"][p == 1] == 0).all()
    assert (b["duration"] <= 1_800_000).all()
    assert np.percentile(p, 99.9) > 50 * np.median(p)  # heavy tailed
    assert not b["application"].any() and not b["attributes"].any()
    tcp = b["protocol"] == 6
    assert not b["flags"][~tcp].any()
    assert set(np.unique(b["flowtype"])) == set(FT.values())
    # Interfaces are small constants; null types go to interface 0.
    assert b["input"].max() < 32 and b["output"].max() < 32
    null = np.isin(b["flowtype"], [FT["innull"], FT["outnull"]])
    assert not b["output"][null].any()


def test_sensors_uneven(big):
    _, b = big
    ids, counts = np.unique(b["sensor"], return_counts=True)
    assert list(ids) == [0, 1, 2, 3, 5]
    assert counts.max() > 3 * counts.min()


def test_about_100_inside_hosts(big):
    _, b = big
    out = np.isin(b["flowtype"], [FT["out"], FT["outweb"], FT["outicmp"]]) & ~b["ipv6"]
    hosts = np.unique(v4_part(b["sip"])[out])
    assert 80 <= len(hosts) <= 110
    assert (b["sensor"] >= 0).all()


def test_heavy_tailed_outside_sources(big):
    _, b = big
    inbound = np.isin(b["flowtype"], INBOUND)
    assert not is_inside(b, "sip")[inbound].any()
    src = b["sip"][inbound]
    _, counts = np.unique(src, axis=0, return_counts=True) if src.ndim == 2 else \
        np.unique(src, return_counts=True)
    one, ten, over100 = (counts == 1).mean(), (counts <= 10).mean(), counts > 100
    assert 0.45 <= one <= 0.58
    assert 0.86 <= ten <= 0.94
    assert 0.002 <= over100.mean() < 0.01
    assert counts[over100].sum() > 0.5 * counts.sum()
    assert len(counts) > 50_000


def scans(b):
    return (np.isin(b["flowtype"], [FT["in"], FT["innull"]]) & (b["protocol"] == 6)
            & np.isin(b["dport"], [445, 1433, 3389, 23]) & (b["packets"] <= 3))


def test_scans(big):
    _, b = big
    m = scans(b)
    assert m.mean() > 0.15  # a large part of inbound traffic
    flags = b["flags"][m]
    share = {f: (flags == f).mean() for f in (S, R | A, R, S | A)}
    assert 0.88 <= share[S] <= 0.95
    assert share[R | A] > share[R] > share[S | A] > 0.005
    assert sum(share.values()) > 0.999
    bpp = b["bytes"][m] / b["packets"][m]
    assert ((bpp >= 40) & (bpp <= 60)).all()
    assert (b["duration"][m] < 100).all()
    # Sweeps: a scanner's probes cover consecutive addresses of the inside /22.
    dst = v4_part(b["dip"][m & ~b["ipv6"]])
    assert len(np.unique(dst)) > 1000


def test_answered_connections_show_both_directions(big):
    _, b = big
    b = schema.to_v4(schema.take(b, ~b["ipv6"]))

    def key(sip, dip, sport, dport):
        return (sip.astype(np.uint64) << np.uint64(32) | dip).astype(object) * 2**32 + \
            (sport.astype(np.uint64) << np.uint64(16) | dport)

    complete = b["flags"] == F | S | P | A
    checks = ((FT["inweb"], FT["outweb"], complete, 0.9), (FT["in"], FT["out"], complete, 0.9),
              (FT["in"], FT["out"], (b["protocol"] == 17) & (b["dport"] == 53), 0.5))
    for tin, tout, what, share in checks:
        req = (b["flowtype"] == tin) & is_inside(b, "dip") & (b["dport"] < 1024) & what
        rep = b["flowtype"] == tout
        replies = {}
        for k, t in zip(key(b["dip"][rep], b["sip"][rep], b["dport"][rep], b["sport"][rep]),
                        b["stime"][rep].tolist(), strict=True):
            replies.setdefault(k, []).append(t)
        ks = key(b["sip"][req], b["dip"][req], b["sport"][req], b["dport"][req])[:3000]
        ts = b["stime"][req][:3000].tolist()
        matched = sum(any(0 <= r - t <= 50 for r in replies.get(k, ()))
                      for k, t in zip(ks, ts, strict=True))
        assert len(ks) > 1000 and matched >= share * len(ks)
    # The server side of a complete web connection starts with a SYN-ACK.
    srv = (b["flowtype"] == FT["outweb"]) & np.isin(b["sport"], [80, 443, 8080])
    assert ((b["initflags"][srv] == S | A) | (b["initflags"][srv] == R | A)).all()


def test_icmp_encoding(big):
    _, b = big
    icmp = np.isin(b["protocol"], [1, 58])
    assert not b["sport"][icmp].any()
    assert set(np.unique(b["flowtype"][icmp])) == {FT["inicmp"], FT["outicmp"]}
    v4 = icmp & (b["protocol"] == 1)
    assert set(np.unique(b["dport"][v4])) == {0x0800, 0x0000, 0x0301, 0x0303, 0x030D, 0x0B00}
    assert not b["ipv6"][v4].any() and b["ipv6"][b["protocol"] == 58].all()
    echo = v4 & (b["dport"] == 0x0800)
    assert (b["flowtype"][echo] == FT["inicmp"]).mean() > 0.9
    reply = v4 & (b["dport"] == 0)
    assert (b["flowtype"][reply] == FT["outicmp"]).all()
    v6 = b["protocol"] == 58
    assert set(np.unique(b["dport"][v6])) <= {0x8000, 0x8100, 0x0101, 0x0103, 0x0104, 0x0300}


def test_udp_services(big):
    _, b = big
    udp = b["protocol"] == 17
    ports = set(np.unique(b["dport"][udp])) | set(np.unique(b["sport"][udp]))
    assert {53, 123, 4672, 27015, 7986} <= ports
    ntp = udp & (b["sport"] == 123)  # replies of NTP servers (requests include probes)
    assert (b["bytes"][ntp] == 76).mean() > 0.99


def test_web_types(big):
    _, b = big
    web = (b["protocol"] == 6) & (np.isin(b["sport"], [80, 443, 8080])
                                  | np.isin(b["dport"], [80, 443, 8080]))
    inout = np.isin(b["flowtype"], [FT["in"], FT["out"], FT["inweb"], FT["outweb"]])
    assert np.isin(b["flowtype"][web & inout], [FT["inweb"], FT["outweb"]]).all()
    assert not np.isin(b["flowtype"][~web], [FT["inweb"], FT["outweb"]]).any()


def test_ipv6(big):
    out, b = big
    assert 0.012 <= b["ipv6"].mean() <= 0.03
    for _, x in out:
        if schema.is_v6(x):
            assert x["ipv6"].any()
            v4 = ~x["ipv6"]
            for name in schema.IP_COLUMNS:
                assert (x[name][v4, 0] == 0).all()
                assert ((x[name][v4, 1] >> np.uint64(32)) == np.uint64(0xFFFF)).all()
    assert (is_inside(b, "sip") | is_inside(b, "dip"))[b["ipv6"]].mean() > 0.95
    assert all(not schema.is_v6(x) for _, x in run(20_000, ipv6_fraction=0))


def test_daily_cycle(big):
    out, _ = big
    local = {}
    for h, x in out:
        local.setdefault((h // HOUR + LOCAL_UTC_OFFSET_H) % 24, []).append(schema.nrecords(x))
    afternoon = np.mean([np.mean(local[h]) for h in (13, 14, 15, 16)])
    night = np.mean([np.mean(local[h]) for h in (1, 2, 3, 4)])
    assert afternoon > 2 * night
