import io
import socket
import threading
import time

import numpy as np
import pytest
from conftest import shared

from flowtools import netflow5, schema
from flowtools.errors import FlowError
from flowtools.gen import generate

HOUR = 3_600_000
START = 1_700_000_000_000 - 1_700_000_000_000 % HOUR
FT = {"in": 0, "out": 1, "inweb": 2, "outweb": 3, "inicmp": 8, "outicmp": 9, "innull": 4,
      "outnull": 5, "int2int": 6, "ext2ext": 7, "other": 10}
V5_COLUMNS = ("stime", "duration", "sip", "dip", "nhip", "sport", "dport", "protocol",
              "packets", "bytes", "flags", "input", "output")


@pytest.fixture(scope="module")
def hour():
    """An hour of generated traffic: an IPv6 batch holding IPv4 and IPv6 records."""
    _, batch = next(generate(3, 20_000, START, 1, [0, 1], FT, ipv6_fraction=0.05))
    assert schema.is_v6(batch) and batch["ipv6"].any() and not batch["ipv6"].all()
    return batch


def decode_all(datagrams):
    parts = [netflow5.decode_v5(d) for d in datagrams]
    return [h for h, _ in parts], schema.concat([b for _, b in parts])


def test_round_trip_carries_every_v5_column(hour):
    datagrams, seq, skipped = netflow5.encode_v5(hour, engine_id=7, sequence=100)
    v4 = schema.to_v4(schema.take(hour, ~hour["ipv6"]))
    n = schema.nrecords(v4)
    assert skipped == int(hour["ipv6"].sum())
    assert seq == 100 + n
    assert len(datagrams) == -(-n // 30)
    headers, out = decode_all(datagrams)
    for name in V5_COLUMNS:
        np.testing.assert_array_equal(out[name], v4[name], err_msg=name)
    # What v5 cannot carry comes back as zero.
    for name in ("sensor", "flowtype", "initflags", "sessflags", "application"):
        assert not out[name].any()
    assert [h["sequence"] for h in headers] == list(range(100, 100 + n, 30))
    assert all(h["engine_id"] == 7 and h["version"] == 5 for h in headers)


def test_datagram_layout_and_times(hour):
    datagrams, _, _ = netflow5.encode_v5(hour)
    boots = set()
    for d in datagrams:
        h = np.frombuffer(d, netflow5.HEADER, count=1)[0]
        assert 1 <= h["count"] <= 30 and len(d) == 24 + 48 * h["count"]
        assert h["unix_nsecs"] == 0
        rec = np.frombuffer(d, netflow5.RECORD, offset=24)
        # No wrap: First <= Last <= sysUptime, all plain uptimes.
        assert (rec["first"] <= rec["last"]).all() and (rec["last"] <= h["sys_uptime"]).all()
        export, uptime = int(h["unix_secs"]) * 1000, int(h["sys_uptime"])
        assert uptime - int(rec["last"].max()) < 1000  # export time = latest end, rounded up
        boots.add(export - uptime)
    assert len(boots) == 1  # one exporter, one boot time


def test_sequence_wraps():
    b = schema.make_batch(45, stime=START + np.arange(45), sip=1, dip=2)
    datagrams, seq, _ = netflow5.encode_v5(b, sequence=2**32 - 10)
    assert seq == 35
    assert [netflow5.decode_v5(d)[0]["sequence"] for d in datagrams] == [2**32 - 10, 20]


def test_counters_and_interfaces_are_clamped():
    b = schema.make_batch(2, stime=START, packets=[2**40, 5], bytes=[2**63, 7],
                          input=[70_000, 3], output=[1, 2**31])
    (d,), _, _ = netflow5.encode_v5(b)
    _, out = netflow5.decode_v5(d)
    assert out["packets"].tolist() == [2**32 - 1, 5]
    assert out["bytes"].tolist() == [2**32 - 1, 7]
    assert out["input"].tolist() == [65535, 3] and out["output"].tolist() == [1, 65535]


def test_batches_spanning_months_and_too_old_flows():
    t = START + np.array([0, 60 * 86_400_000])  # two months apart
    b = schema.make_batch(60, stime=np.repeat(t, 30), duration=5)
    datagrams, _, _ = netflow5.encode_v5(b)
    _, out = decode_all(datagrams)
    np.testing.assert_array_equal(out["stime"], b["stime"])
    old = schema.make_batch(2, stime=[START, START + 30 * 86_400_000])
    with pytest.raises(FlowError):
        netflow5.encode_v5(old)


def test_empty_and_all_ipv6():
    assert netflow5.encode_v5(schema.empty(), sequence=9) == ([], 9, 0)
    b = schema.make_batch(3, v6=True, ipv6=True, stime=START)
    assert netflow5.encode_v5(b) == ([], 0, 3)


def test_bad_datagrams_raise():
    b = schema.make_batch(3, stime=START, sip=1)
    (d,), _, _ = netflow5.encode_v5(b)
    with pytest.raises(FlowError, match="truncated"):
        netflow5.decode_v5(d[:20])
    with pytest.raises(FlowError, match="cannot hold"):
        netflow5.decode_v5(d[:-1])
    with pytest.raises(FlowError, match="version 9"):
        netflow5.decode_v5(b"\x00\x09" + d[2:])
    with pytest.raises(FlowError, match="cannot hold"):
        netflow5.decode_v5(d[:2] + b"\x00\x1f" + d[4:])
    header, empty = netflow5.decode_v5(d[:2] + b"\x00\x00" + d[4:24])
    assert header["count"] == 0 and schema.nrecords(empty) == 0


def test_real_capture_decodes():
    data = open(shared("netflow-packets", "netflow5.dat"), "rb").read()
    header, b = netflow5.decode_v5(data)
    assert header["count"] == 2 and header["sequence"] == 0
    assert header["sys_uptime"] == 3381 and header["unix_secs"] == 1430591888
    assert b["sip"].tolist() == [0x0A000202, 0x0A00020F]  # 10.0.2.2, 10.0.2.15
    assert b["sport"].tolist() == [54435, 22] and b["dport"].tolist() == [22, 54435]
    assert b["protocol"].tolist() == [6, 6] and b["packets"].tolist() == [5, 4]
    assert b["bytes"].tolist() == [230, 304] and b["flags"].tolist() == [0x10, 0x18]
    # First is 0xffffffff, one ms before boot: the uptime wrapped, the flow did not.
    assert b["stime"].tolist() == [1430591884898] * 2 and b["duration"].tolist() == [2578] * 2
    # The file holds several datagrams back to back; each one's sequence counts the flows.
    off, flows = 0, 0
    while off < len(data):
        header, b = netflow5.decode_v5(data[off:])
        assert header["sequence"] == flows
        assert (b["stime"] <= header["unix_secs"] * 1000 + 1000).all()
        flows += header["count"]
        off += 24 + 48 * header["count"]
    assert off == len(data) and flows == 30


@pytest.mark.parametrize("name,count", [("netflow5_test_juniper_mx80.dat", 29),
                                        ("netflow5_test_microtik.dat", 30)])
def test_other_exporters_decode(name, count):
    header, b = netflow5.decode_v5(open(shared("netflow-packets", name), "rb").read())
    assert header["count"] == schema.nrecords(b) == count
    assert (b["stime"] <= header["unix_secs"] * 1000 + 1000).all()
    assert (b["stime"] > header["unix_secs"] * 1000 - 86_400_000).all()


@pytest.mark.parametrize("name", ["netflow5_test_invalid01.dat", "netflow5_test_invalid02.dat"])
def test_malformed_captures_raise(name):
    with pytest.raises(FlowError):
        netflow5.decode_v5(open(shared("netflow-packets", name), "rb").read())


def test_datagram_file_round_trip(hour):
    datagrams, _, _ = netflow5.encode_v5(hour)
    f = io.BytesIO()
    netflow5.write_datagrams(datagrams[:5], f)
    netflow5.write_datagrams(datagrams[5:], f)
    raw = f.getvalue()
    assert raw[:2] == len(datagrams[0]).to_bytes(2, "big")
    assert len(raw) == sum(2 + len(d) for d in datagrams)
    assert list(netflow5.read_datagrams(io.BytesIO(raw))) == datagrams
    assert list(netflow5.read_datagrams(io.BytesIO(b""))) == []
    for cut in (1, 2 + len(datagrams[0]) + 1, len(raw) - 1):
        with pytest.raises(FlowError, match="truncated"):
            list(netflow5.read_datagrams(io.BytesIO(raw[:cut])))


def receive(sock, want, out):
    while len(out) < want:
        try:
            out.append(sock.recv(65535))
        except TimeoutError:
            return


@pytest.mark.parametrize("rate", [None, 20_000])
def test_send_udp_delivers_every_datagram(hour, rate):
    datagrams, _, _ = netflow5.encode_v5(hour)
    datagrams = datagrams[:40]
    flows = sum((len(d) - 24) // 48 for d in datagrams)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        got = []
        t = threading.Thread(target=receive, args=(sock, len(datagrams), got))
        t.start()
        start = time.perf_counter()
        sent = netflow5.send_udp(datagrams, "127.0.0.1", sock.getsockname()[1], rate=rate)
        elapsed = time.perf_counter() - start
        t.join()
    assert sent == flows
    assert got == datagrams
    if rate:
        # The last datagram is due after the flows before it at the given rate.
        due = (flows - (len(datagrams[-1]) - 24) // 48) / rate
        assert due * 0.95 <= elapsed < due + 1.0


def test_send_udp_bad_target():
    with pytest.raises(FlowError):
        netflow5.send_udp([b"x"], "no-such-host.invalid", 9995)
    with pytest.raises(FlowError):
        netflow5.send_udp([b"x"], "127.0.0.1", 9995, rate=0)
