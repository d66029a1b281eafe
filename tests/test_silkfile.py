"""Reading SiLK flow files: real files from SiLK 3.x and synthetic files of every layout."""

import calendar
import glob
import io as pyio
import ipaddress
import os
import struct
import zlib

import numpy as np
import pytest
from conftest import SHARED, shared
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowtools import io, schema, silkfile, siteconf
from flowtools.errors import FormatError
from flowtools.tools import fileinfo

SILK = os.path.join(SHARED, "silk")
SILK_TESTS = os.path.join(SHARED, "silk-tests")
DAT_FILES = sorted(glob.glob(os.path.join(SILK, "*.dat")))
RECORDS = 245_340


def need(path):
    if not os.path.exists(path):
        pytest.skip(f"{path} is not here")
    return path


def read_all(path):
    reader = io.open_flows(path)
    batches = list(reader.batches())
    assert all(schema.nrecords(b) <= 70_000 for b in batches)
    return reader, (schema.concat(batches) if batches else schema.empty())


def reader_of(data, name="mem"):
    return silkfile.SilkFlowReader(pyio.BytesIO(data), name)


def decode_bytes(data):
    batches = list(reader_of(data).batches())
    return schema.concat(batches) if batches else schema.empty()


@pytest.fixture(scope="module")
def dat_batches():
    if len(DAT_FILES) != 4:
        pytest.skip("the four SiLK sample files are not here")
    return {os.path.basename(p): read_all(p)[1] for p in DAT_FILES}


# ------------------------------------------------------------------- real files

def test_four_formats_decode_the_same_records(dat_batches):
    names = sorted(dat_batches)
    assert names == ["FT_RWGENERIC-v5-c1-L.dat", "FT_RWIPV6-v2-c3-L.dat",
                     "FT_RWIPV6ROUTING-v1-c1-B.dat", "FT_RWIPV6ROUTING-v3-c2-L.dat"]
    first = dat_batches[names[0]]
    assert schema.nrecords(first) == RECORDS
    for name in names[1:]:
        batch = dat_batches[name]
        assert set(batch) == set(first), name
        for col in first:
            assert batch[col].dtype == first[col].dtype, (name, col)
            assert np.array_equal(batch[col], first[col]), (name, col)


def _ms(text):
    date, clock = text.split("T")
    y, mo, d = (int(x) for x in date.split("/"))
    hms, _, frac = clock.partition(".")
    h, mi, s = (int(x) for x in hms.split(":"))
    return calendar.timegm((y, mo, d, h, mi, s)) * 1000 + int(frac or 0)


def _duration(text):
    sec, _, frac = text.partition(".")
    return int(sec) * 1000 + int(frac or 0)


def _bits(text, letters):
    value = 0
    for ch in text.replace(" ", ""):
        value |= letters[ch]
    return value


TCP_LETTERS = {"F": 1, "S": 2, "R": 4, "P": 8, "A": 16, "U": 32, "E": 64, "C": 128}
STATE_LETTERS = {"T": 0x20, "C": 0x40, "F": 0x08, "S": 0x10}  # SiLK's skTCPStateString


def _ip(text):
    addr = ipaddress.ip_address(text.strip())
    if addr.version == 4:
        return int(addr) | 0xFFFF00000000
    return int(addr)


def _ip_ints(col):
    v6 = schema.v4_to_v6(col) if col.ndim == 1 else col
    return [(int(h) << 64) | int(lo) for h, lo in v6]


def _table(path):
    with open(path) as f:
        lines = f.read().splitlines()
    head = [h.strip() for h in lines[0].split("|")[:-1]]
    return [dict(zip(head, line.split("|")[:-1], strict=True)) for line in lines[1:]]


@pytest.mark.parametrize("table", ["rwcut-first-300.txt", "rwcut-all-fields-first-300.txt"])
def test_first_records_match_rwcut(dat_batches, table):
    rows = _table(need(os.path.join(SILK, "expected", table)))
    assert len(rows) == 300
    config = siteconf.load(need(os.path.join(SILK, "silk.conf")))
    for name, batch in dat_batches.items():
        b = schema.take(batch, slice(0, 300))
        sips, dips, nhips = _ip_ints(b["sip"]), _ip_ints(b["dip"]), _ip_ints(b["nhip"])
        for i, row in enumerate(rows):
            want = {
                "sIP": _ip(row["sIP"]), "dIP": _ip(row["dIP"]),
                "sPort": int(row["sPort"]), "dPort": int(row["dPort"]),
                "pro": int(row["pro"]), "packets": int(row["packets"]),
                "bytes": int(row["bytes"]), "flags": _bits(row["flags"], TCP_LETTERS),
                "sTime": _ms(row["sTime"]), "duration": _duration(row["duration"]),
                "eTime": _ms(row["eTime"]), "sen": config.sensor_id(row["sen"].strip()),
            }
            got = {
                "sIP": sips[i], "dIP": dips[i], "sPort": int(b["sport"][i]),
                "dPort": int(b["dport"][i]), "pro": int(b["protocol"][i]),
                "packets": int(b["packets"][i]), "bytes": int(b["bytes"][i]),
                "flags": int(b["flags"][i]), "sTime": int(b["stime"][i]),
                "duration": int(b["duration"][i]),
                "eTime": int(b["stime"][i]) + int(b["duration"][i]),
                "sen": int(b["sensor"][i]),
            }
            if "nhIP" in row:
                icmp = int(b["protocol"][i]) in (1, 58)
                want.update({
                    "in": int(row["in"]), "out": int(row["out"]), "nhIP": _ip(row["nhIP"]),
                    "initialF": _bits(row["initialF"], TCP_LETTERS),
                    "sessionF": _bits(row["sessionF"], TCP_LETTERS),
                    "attribut": _bits(row["attribut"], STATE_LETTERS),
                    "appli": int(row["appli"]),
                    "flowtype": config.flowtype_id(row["cla"].strip(), row["type"].strip()),
                    "sTime+msec": _ms(row["sTime+msec"]), "dur+msec": _duration(row["dur+msec"]),
                    "iTy": row["iTy"].strip(), "iCo": row["iCo"].strip(),
                })
                got.update({
                    "in": int(b["input"][i]), "out": int(b["output"][i]), "nhIP": nhips[i],
                    "initialF": int(b["initflags"][i]), "sessionF": int(b["sessflags"][i]),
                    "attribut": int(b["attributes"][i]) & 0x78,
                    "appli": int(b["application"][i]), "flowtype": int(b["flowtype"][i]),
                    "sTime+msec": int(b["stime"][i]), "dur+msec": int(b["duration"][i]),
                    "iTy": str(int(b["dport"][i]) >> 8) if icmp else "",
                    "iCo": str(int(b["dport"][i]) & 0xFF) if icmp else "",
                })
            assert got == want, (name, i)


def test_silk_test_suite_files():
    _, data = read_all(need(os.path.join(SILK_TESTS, "data.rwf")))
    reader, v6 = read_all(need(os.path.join(SILK_TESTS, "data-v6.rwf")))
    assert schema.nrecords(data) == schema.nrecords(v6) == 501_876
    assert not schema.is_v6(data)
    assert schema.is_v6(v6) and v6["ipv6"].all()
    for col in ("sip", "dip"):
        assert (v6[col][:, 0] >> np.uint64(32) == 0x20010DB8).all()
    for col in ("stime", "duration", "sport", "dport", "packets", "bytes", "flags", "sensor",
                "flowtype", "input", "output", "initflags", "sessflags", "attributes"):
        assert np.array_equal(data[col], v6[col]), col
    assert reader.meta["history"][0].startswith("rwtuc ")
    assert reader.meta["silk"]["format_name"] == "FT_RWIPV6ROUTING"
    reader, empty = read_all(need(os.path.join(SILK_TESTS, "empty.rwf")))
    assert schema.nrecords(empty) == 0
    assert reader.describe()["count-records"] == "0"


def test_open_flows_reads_silk_and_columns(dat_batches):
    reader = io.open_flows(DAT_FILES[0])
    assert isinstance(reader, silkfile.SilkFlowReader) and reader.compressed is None
    pairs = list(reader.decoded_blocks(columns=["stime", "sip"]))
    assert all(set(batch) == {"stime", "sip"} for _, batch in pairs)
    assert sum(chunk.records for chunk, _ in pairs) == RECORDS
    assert pairs[0][0].offset == reader.header.length
    assert reader.meta["notes"] == []
    assert reader.meta["history"][0].startswith("rwallformats ")
    assert reader.meta["silk"]["packed"] == [[1434553200000, 1, 3]]


def test_describe_like_rwfileinfo():
    path = need(os.path.join(SILK, "FT_RWIPV6ROUTING-v1-c1-B.dat"))
    info = fileinfo.describe(path)
    assert list(info)[:10] == ["format", "version", "byte-order", "compression",
                               "header-length", "record-length", "record-version",
                               "silk-version", "count-records", "file-size"]
    assert info["format"] == "FT_RWIPV6ROUTING(0x0c)"
    assert info["version"] == "16"
    assert info["byte-order"] == "bigEndian"
    assert info["compression"] == "zlib(1)"
    assert info["record-length"] == "88" and info["record-version"] == "1"
    assert int(info["header-length"]) % 88 == 0
    assert info["silk-version"] == "3.17.1"
    assert info["count-records"] == str(RECORDS)
    assert info["file-size"] == str(os.path.getsize(path))
    assert info["packed-file-info"] == "2015/06/17T15:00:00Z 1 3"
    assert info["probe-name"] == "DUMMY_PROBE"
    assert info["command-lines"][0].startswith("rwallformats ")
    assert info["annotations"] == []
    config = siteconf.load(need(os.path.join(SILK, "silk.conf")))
    again = io.open_flows(path).describe(config)
    assert again["packed-file-info"] == "2015/06/17T15:00:00Z out S3"
    for path, comp in (("FT_RWIPV6-v2-c3-L.dat", "snappy(3)"),
                       ("FT_RWIPV6ROUTING-v3-c2-L.dat", "lzo1x(2)")):
        info = fileinfo.describe(os.path.join(SILK, path))
        assert info["compression"] == comp and info["count-records"] == str(RECORDS)


# ------------------------------------------------------------------- synthetic files

HOUR = 1_434_553_200_000
SENSOR, FLOWTYPE = 7, 9


def silk_file(fmt, version, reclen, records, big=False, comp=0, packed=True, block=65536,
              entries=()):
    """A SiLK file with a packed-file-info entry around already packed records."""
    head = b"\xde\xad\xbe\xef" + bytes([int(big), fmt, 16, comp])
    head += struct.pack(">IHH", 3019001, reclen, version)
    body = b""
    if packed:
        body += struct.pack(">IIqII", 1, 24, HOUR, FLOWTYPE, SENSOR)
    body += struct.pack(">II", 2, 8 + 12) + b"rwsynthetic\0"
    for eid, data in entries:
        body += struct.pack(">II", eid, 8 + len(data)) + data
    pad = (-(len(head) + len(body) + 8)) % reclen
    body += struct.pack(">II", 0, 8 + pad) + bytes(pad)
    data = b"".join(records)
    if comp == 0:
        return head + body + data
    per = block // reclen * reclen
    out = []
    for i in range(0, len(data), per):
        raw = data[i:i + per]
        if comp == 1:
            packed_raw = zlib.compress(raw)
        elif comp == 2:
            import lzallright
            packed_raw = lzallright.LZOCompressor().compress(raw)
        else:
            import cramjam
            packed_raw = bytes(cramjam.snappy.compress_raw(raw))
        out.append(struct.pack(">II", len(packed_raw), len(raw)) + packed_raw)
    return head + body + b"".join(out)


WEB_CODE = {80: 0, 443: 1, 8080: 2}
WEB_PORT = {0: 80, 1: 443, 2: 8080, 3: 0}


def make_records(n, seed, web=False, v6=False):
    """Consistent random records, as dicts, in the value ranges the packed formats hold."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        proto = 6 if web else int(rng.choice([6, 6, 17, 1, 50]))
        state = int(rng.choice([0, 0x08, 0x10, 0x20, 0x40, 0x28]))
        init = rest = 0
        if proto == 6 and rng.random() < 0.5:
            state |= 1
            init, rest = int(rng.integers(0, 256)), int(rng.integers(0, 256))
            if init == rest == 0:
                init = 2
            flags = init | rest
        else:
            flags = int(rng.integers(0, 256))
        pkts = int(rng.choice([1, 2, 3, 1000, (1 << 20) - 1, 1 << 20, 5_000_000]))
        if i < 4:
            pkts = [1, (1 << 20) - 1, 1 << 20, 67_108_863][i]
        bpp = int(rng.integers(1, 1500))
        nbytes = min(pkts * bpp + int(rng.integers(0, pkts)), 2**32 - 1)
        sport, dport = (int(x) for x in rng.integers(0, 65536, 2))
        if web:
            srv = int(rng.choice([80, 443, 8080]))
            if rng.random() < 0.5:
                sport = srv
            else:
                dport = srv
        rec = {"offset": int(rng.integers(0, 3_600_000)),
               "elapsed": int(rng.integers(0, 4_000_000)),
               "proto": proto, "state": state, "init": init, "rest": rest, "flags": flags,
               "pkts": pkts, "bytes": nbytes, "app": int(rng.integers(0, 65536)),
               "sport": sport, "dport": dport, "input": int(rng.integers(0, 65536)),
               "output": int(rng.integers(0, 65536)),
               "sip": int(rng.integers(0, 2**32)), "dip": int(rng.integers(0, 2**32)),
               "nhip": int(rng.integers(0, 2**32)), "v6": bool(v6 and rng.random() < 0.5)}
        if i == 0:
            rec["offset"], rec["elapsed"] = 0, 0
        if i == 1:
            rec["offset"], rec["elapsed"] = 3_599_999, 4_095_999
        if rec["v6"]:
            rec["sip6"] = int(rng.integers(0, 2**63)) << 65 | int(rng.integers(0, 2**63))
            rec["dip6"] = int(rng.integers(0, 2**63)) << 64 | 12345
        out.append(rec)
    return out


def _bpp(r):
    p = r["pkts"]
    return (r["bytes"] // p) << 6 | (r["bytes"] % p) * 64 // p


def _stored_pkts(r):
    return (r["pkts"], 0) if r["pkts"] < (1 << 20) else (r["pkts"] // 64, 1)


def _volumes(r):
    """Packets and bytes as SiLK's bytes-per-packet encoding gives them back."""
    pkts, pflag = _stored_pkts(r)
    if pflag:
        pkts *= 64
    bpp = _bpp(r)
    frac = (bpp & 63) * pkts
    return pkts, ((bpp >> 6) * pkts + frac // 64 + (frac % 64 >= 32)) & 0xFFFFFFFF


def _is_tcp(r):
    return r["proto"] == 6


def _expanded(r):
    return _is_tcp(r) and r["state"] & 1


def pack_tfp_head(r, order, src_is_srv=0):
    off = r["offset"]
    if not _is_tcp(r):
        word, b4 = off, r["proto"]
    elif _expanded(r):
        word, b4 = r["rest"] << 24 | 1 << 23 | off, r["init"]
    else:
        word, b4 = 1 << 23 | off, r["flags"]
    word |= src_is_srv << 22
    state = r["state"] | (0x80 if r.get("v6") else 0)
    return struct.pack(order + "IBBH", word, b4, state, r["app"])


def pack_ftv_head(r, order):
    bpp = _bpp(r)
    pkts, pflag = _stored_pkts(r)
    w0 = (r["offset"] & 0x3FFFFF) << 10 | (bpp >> 10) & 0x3FF
    w1 = (bpp & 0x3FF) << 22 | r["elapsed"] & 0x3FFFFF
    w2 = pflag << 23 | pkts & 0xFFFFF
    if not _is_tcp(r):
        w2 |= r["proto"] << 24
        b13 = r["flags"]
    else:
        w2 |= (r["init"] if _expanded(r) else r["flags"]) << 24 | 1 << 22
        b13 = r["rest"] if _expanded(r) else 0
    return w0, w1, w2, r["state"], b13


def pack_tbpf(r):
    bpp = _bpp(r)
    pkts, pflag = _stored_pkts(r)
    sec, msec = divmod(r["offset"], 1000)
    esec, emsec = divmod(r["elapsed"], 1000)
    pkts_stime = pkts << 12 | sec
    bbe = bpp << 12 | esec
    if _is_tcp(r):
        is_tcp, prot = 1, (r["init"] if _expanded(r) else r["flags"])
        rest = r["rest"] if _expanded(r) else 0
    else:
        is_tcp, prot, rest = 0, r["proto"], r["flags"]
    msec_flags = msec << 22 | emsec << 12 | pflag << 11 | is_tcp << 10 | prot
    return pkts_stime, bbe, msec_flags, rest


def _web(r):
    src = r["sport"] in WEB_CODE
    code = WEB_CODE.get(r["sport"] if src else r["dport"], 3)
    client = r["dport"] if src else r["sport"]
    return int(src), code, client


def _ip16(r, name):
    if r.get("v6"):
        return r[name + "6"].to_bytes(16, "big")
    return bytes(10) + b"\xff\xff" + r[name].to_bytes(4, "big")


def pack(fmt, version, r, order):
    """One record, written the way SiLK's *Pack_V* functions write it."""
    a = (r["sip"], r["dip"])
    if (fmt, version) == (0x0B, 2):
        return pack_tfp_head(r, order) + struct.pack(
            order + "HHIII", r["sport"], r["dport"], r["elapsed"], r["pkts"], r["bytes"]) + \
            _ip16(r, "sip") + _ip16(r, "dip")
    if version == 5:
        head = pack_tfp_head(r, order, _web(r)[0] if fmt == 0x15 else 0)
        tail = struct.pack(order + "HHIII", r["sport"], r["dport"], r["elapsed"], r["pkts"],
                           r["bytes"])
        if fmt == 0x0E:
            return head + tail + struct.pack(order + "IIIHH", *a, r["nhip"], r["input"],
                                             r["output"])
        if fmt == 0x14:
            return head + tail + struct.pack(order + "II", *a)
        if fmt == 0x0D:
            return head + tail + struct.pack(order + "IIH", *a, r["output"])
        src, code, client = _web(r)
        return head + struct.pack(order + "IIIIIH", code << 30 | r["elapsed"], r["pkts"],
                                  r["bytes"], *a, client)
    if version == 4:
        w0, w1, w2, state, b13 = pack_ftv_head(r, order)
        if fmt == 0x15:
            src, code, client = _web(r)
            w2 = (w2 & ~(7 << 20)) | code << 20 | src << 22
            return struct.pack(order + "IIIBBHIIH", w0, w1, w2, state, b13, r["app"], *a,
                               client)
        head = struct.pack(order + "IIIBBHHH", w0, w1, w2, state, b13, r["app"], r["sport"],
                           r["dport"])
        if fmt == 0x0E:
            return head + struct.pack(order + "HHIII", r["input"], r["output"], *a, r["nhip"])
        if fmt == 0x14:
            return head + struct.pack(order + "II", *a)
        return head + struct.pack(order + "IIH", *a, r["output"])
    ps, bbe, mf, rest = pack_tbpf(r)
    if fmt == 0x15:
        src, code, client = _web(r)
        a1 = r["init"] if _expanded(r) else r["flags"]
        mf = (mf & ~0x7FF) | src << 10 | code << 8 | a1
        return struct.pack(order + "IIIIIHHBB", *a, ps, bbe, mf, client, r["app"], r["state"],
                           rest)
    head = struct.pack(order + "IIHHIIIHBB", *a, r["sport"], r["dport"], ps, bbe, mf, r["app"],
                       r["state"], rest)
    if fmt == 0x0E:
        return head + struct.pack(order + "IHH", r["nhip"], r["input"], r["output"])
    if fmt == 0x14:
        return head
    return head + struct.pack(order + "H", r["output"])


# (format, version) -> record length, kind of columns it holds
PACKED = {
    (0x0E, 5): (40, "routing"), (0x14, 5): (32, "aug"), (0x0D, 5): (34, "snmp"),
    (0x15, 5): (30, "web"), (0x0B, 2): (56, "ipv6"),
    (0x0E, 4): (36, "routing"), (0x14, 4): (28, "aug"), (0x0D, 4): (30, "snmp"),
    (0x15, 4): (26, "web"),
}
for _v in (1, 2, 3):
    PACKED.update({(0x0E, _v): (36, "routing"), (0x14, _v): (28, "aug"),
                   (0x0D, _v): (30, "snmp"), (0x15, _v): (26, "web")})


def expected(fmt, version, r):
    kind = PACKED[fmt, version][1]
    exact = version == 5 or fmt == 0x0B
    pkts, nbytes = (r["pkts"], r["bytes"]) if exact else _volumes(r)
    flags = r["flags"]
    if exact and not _is_tcp(r):
        flags = 0  # the rflag_stime layouts keep no flags for other protocols
    sport, dport = r["sport"], r["dport"]
    if kind == "web":
        src, code, client = _web(r)
        sport, dport = (WEB_PORT[code], client) if src else (client, WEB_PORT[code])
    out = {"stime": HOUR + r["offset"], "duration": r["elapsed"], "protocol": r["proto"],
           "packets": pkts, "bytes": nbytes, "flags": flags,
           "initflags": r["init"] if _expanded(r) else 0,
           "sessflags": r["rest"] if _expanded(r) else 0, "attributes": r["state"],
           "application": r["app"], "sensor": SENSOR, "flowtype": FLOWTYPE,
           "sport": sport, "dport": dport,
           "input": r["input"] if kind == "routing" else 0,
           "output": r["output"] if kind in ("routing", "snmp") else 0,
           "sip": r["sip"], "dip": r["dip"], "nhip": r["nhip"] if kind == "routing" else 0}
    if r.get("v6"):
        out["sip"], out["dip"] = r["sip6"], r["dip6"]
    return out


def _rows(batch):
    n = schema.nrecords(batch)
    cols = {k: v for k, v in batch.items() if k != "ipv6"}
    rows = []
    for i in range(n):
        row = {}
        for k, v in cols.items():
            if v.ndim == 2:
                hi, lo = int(v[i, 0]), int(v[i, 1])
                v6 = bool(batch["ipv6"][i])
                row[k] = (hi << 64 | lo) if v6 else lo & 0xFFFFFFFF
            else:
                row[k] = int(v[i])
        rows.append(row)
    return rows


@pytest.mark.parametrize("fmt,version", sorted(PACKED))
@pytest.mark.parametrize("big", [False, True])
def test_packed_formats(fmt, version, big):
    reclen, kind = PACKED[fmt, version]
    records = make_records(300, seed=fmt * 10 + version, web=kind == "web",
                           v6=kind == "ipv6")
    order = ">" if big else "<"
    packed = [pack(fmt, version, r, order) for r in records]
    assert {len(p) for p in packed} == {reclen}
    for comp in (0, 1):
        data = silk_file(fmt, version, reclen, packed, big=big, comp=comp, block=4096)
        batch = decode_bytes(data)
        assert schema.is_v6(batch) == (kind == "ipv6")
        for i, (row, rec) in enumerate(zip(_rows(batch), records, strict=True)):
            assert row == expected(fmt, version, rec), (hex(fmt), version, i)


def test_packed_file_without_packed_info():
    r = make_records(3, seed=1)
    data = silk_file(0x14, 5, 32, [pack(0x14, 5, x, "<") for x in r], packed=False)
    batch = decode_bytes(data)
    assert (batch["sensor"] == 0xFFFF).all() and (batch["flowtype"] == 0xFF).all()
    assert batch["stime"][1] == r[1]["offset"]


FULL_HEAD = "qIHHBBHBBBBHH"


def pack_full(fmt, version, r, order):
    state = r["state"] | (0x80 if r.get("v6") else 0)
    head = struct.pack(order + FULL_HEAD, HOUR + r["offset"], r["elapsed"], r["sport"],
                       r["dport"], r["proto"], FLOWTYPE, SENSOR, r["flags"], r["init"],
                       r["rest"], state, r["app"], 0)
    if fmt == 0x16:
        return head + struct.pack(order + "HHIIIII", r["input"], r["output"], r["pkts"],
                                  r["bytes"], r["sip"], r["dip"], r["nhip"])
    ips = _ip16(r, "sip") + _ip16(r, "dip")
    if fmt == 0x0B:
        return head + struct.pack(order + "II", r["pkts"], r["bytes"]) + ips
    nh = bytes(10) + b"\xff\xff" + r["nhip"].to_bytes(4, "big")
    if version == 3:
        return head + struct.pack(order + "IQQ", r["input"], r["pkts"], r["bytes"]) + ips + \
            nh + struct.pack(order + "I", r["output"])
    return head + struct.pack(order + "HHII", r["input"], r["output"], r["pkts"],
                              r["bytes"]) + ips + nh


@pytest.mark.parametrize("fmt,version,reclen", [(0x16, 5, 52), (0x0B, 1, 68), (0x0C, 1, 88),
                                                (0x0C, 2, 88), (0x0C, 3, 100)])
@pytest.mark.parametrize("big", [False, True])
def test_full_formats(fmt, version, reclen, big):
    records = make_records(200, seed=version, v6=fmt != 0x16)
    # records from before SiLK 3.6 with a stray "expanded" bit, which SiLK clears on read
    records[5].update(proto=17, state=0x21, init=3, rest=4)
    records[6].update(proto=6, state=0x01, init=0, rest=0)
    order = ">" if big else "<"
    data = silk_file(fmt, version, reclen, [pack_full(fmt, version, r, order)
                                            for r in records], big=big, comp=1)
    batch = decode_bytes(data)
    for i, (row, r) in enumerate(zip(_rows(batch), records, strict=True)):
        bad = r["state"] & 1 and (r["proto"] != 6 or r["init"] == r["rest"] == 0)
        fixed = bad and version != 3
        routing = fmt != 0x0B
        want = {"stime": HOUR + r["offset"], "duration": r["elapsed"], "sport": r["sport"],
                "dport": r["dport"], "protocol": r["proto"], "flowtype": FLOWTYPE,
                "sensor": SENSOR, "flags": r["flags"], "initflags": 0 if fixed else r["init"],
                "sessflags": 0 if fixed else r["rest"],
                "attributes": r["state"] & ~1 if fixed else r["state"],
                "application": 0 if (fmt, version) == (0x0C, 2) else r["app"],
                "packets": r["pkts"], "bytes": r["bytes"],
                "input": r["input"] if routing else 0, "output": r["output"] if routing else 0,
                "sip": r.get("sip6", r["sip"]) if r.get("v6") else r["sip"],
                "dip": r.get("dip6", r["dip"]) if r.get("v6") else r["dip"],
                "nhip": 0 if fmt == 0x0B else
                ((0xFFFF << 32 | r["nhip"]) if r.get("v6") else r["nhip"])}
        assert row == want, (hex(fmt), version, i)


@pytest.mark.parametrize("comp", [2, 3])
def test_lzo_and_snappy_blocks(comp):
    records = make_records(500, seed=comp)
    packed = [pack(0x0E, 4, r, "<") for r in records]
    plain = decode_bytes(silk_file(0x0E, 4, 36, packed))
    other = decode_bytes(silk_file(0x0E, 4, 36, packed, comp=comp, block=1000))
    for k in plain:
        assert np.array_equal(plain[k], other[k]), k


def test_batches_split_and_records_span_blocks():
    records = make_records(50, seed=3)
    packed = [pack(0x14, 4, r, "<") for r in records]
    # 28-byte records in blocks of 100 bytes: most records straddle two blocks
    data = silk_file(0x14, 4, 28, packed, comp=1, block=100)
    head_len = len(silk_file(0x14, 4, 28, []))
    raw = b"".join(packed)
    blocks = b""
    for i in range(0, len(raw), 100):
        part = raw[i:i + 100]
        z = zlib.compress(part)
        blocks += struct.pack(">II", len(z), len(part)) + z
    data = data[:head_len] + blocks
    reader = silkfile.SilkFlowReader(pyio.BytesIO(data), "x", batch_records=7)
    batches = list(reader.batches())
    assert sum(schema.nrecords(b) for b in batches) == 50
    assert max(schema.nrecords(b) for b in batches) <= 7 + 100 // 28 + 1
    whole = schema.concat(batches)
    assert [int(x) for x in whole["sport"]] == [r["sport"] for r in records]
    # an end-of-data block (compressed size 0) stops reading
    assert schema.nrecords(decode_bytes(data + bytes(8) + b"junk")) == 50


def test_header_entries():
    entries = [(3, b"a note\0"), (4, b"probe-1\0"), (99, b"whatever"), (3, b"second\0")]
    data = silk_file(0x14, 5, 32, [], entries=entries)
    reader = reader_of(data)
    assert reader.meta["notes"] == ["a note", "second"]
    assert reader.meta["history"] == ["rwsynthetic"]
    assert reader.meta["silk"]["probes"] == ["probe-1"]
    info = reader.describe()
    assert info["annotations"] == ["a note", "second"]
    assert info["probe-name"] == "probe-1"
    assert info["format"] == "FT_RWAUGMENTED(0x14)"
    assert info["compression"] == "none(0)"
    assert info["count-records"] == "0"
    assert info["header-length"] == str(len(data))


# ------------------------------------------------------------------- errors

def _error(data):
    with pytest.raises(FormatError) as exc:
        decode_bytes(data)
    message = str(exc.value)
    assert "\n" not in message and message.startswith("mem: ")
    return message


def test_errors():
    records = [pack(0x14, 4, r, "<") for r in make_records(20, seed=5)]
    good = silk_file(0x14, 4, 28, records, comp=1)
    head_len = len(silk_file(0x14, 4, 28, []))
    assert "at byte 5" in _error(good[:5] + b"\x30" + good[6:])          # unknown format
    assert "FT_IPSET" in _error(good[:5] + b"\x1d" + good[6:])
    assert "record version 9" in _error(good[:14] + b"\x00\x09" + good[16:])
    assert "record length" in _error(good[:12] + b"\x00\x20" + good[14:])
    assert "compression" in _error(good[:7] + b"\x07" + good[8:])
    assert "legacy" in _error(good[:6] + b"\x02" + good[7:])
    assert "truncated SiLK header" in _error(good[:10])
    assert "truncated SiLK header" in _error(good[:head_len - 3])
    assert "truncated block at byte" in _error(good[:head_len + 20])
    assert "truncated block header" in _error(good[:head_len + 6])
    bad = bytearray(good)
    bad[head_len + 8] ^= 0xFF  # the zlib stream's first byte
    message = _error(bytes(bad))
    assert "corrupt zlib block" in message and message.endswith(f"at byte {head_len}")
    plain = silk_file(0x14, 4, 28, records)
    assert "truncated record" in _error(plain[:-5])
    wrong = bytearray(good)
    wrong[head_len + 4:head_len + 8] = struct.pack(">I", 28 * 20 + 1)
    assert "expands to" in _error(bytes(wrong))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("bad", ["corrupt", "truncated"])
@pytest.mark.parametrize("batch", [10, 64, 65536])
def test_errors_come_after_the_records_before_them(threads, bad, batch):
    records = [pack(0x14, 4, r, "<") for r in make_records(400, seed=6)]
    data = bytearray(silk_file(0x14, 4, 28, records, comp=1, block=280))  # 10 per block
    at = len(silk_file(0x14, 4, 28, []))
    for _ in range(25):  # the 26th block
        at += 8 + int.from_bytes(data[at:at + 4], "big")
    if bad == "corrupt":
        data[at + 8] ^= 0xFF
    else:
        del data[at + 12:]
    reader = silkfile.SilkFlowReader(pyio.BytesIO(bytes(data)), "mem", batch_records=batch,
                                     threads=threads)
    seen = 0
    with pytest.raises(FormatError, match=f"at byte {at}$"):
        for batch in reader.batches():
            seen += schema.nrecords(batch)
    assert seen == 250


def _slices():
    """Small real files: each sample file's header and first two blocks."""
    out = []
    for path in DAT_FILES:
        with open(path, "rb") as f:
            data = f.read()
        reader = reader_of(data)
        at = reader.header.length
        for _ in range(2):
            at += 8 + int.from_bytes(data[at:at + 4], "big")
        out.append(data[:at])
    return out


@pytest.fixture(scope="module")
def slices():
    if len(DAT_FILES) != 4:
        pytest.skip("the four SiLK sample files are not here")
    return _slices()


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 3), cut=st.integers(0, 10**6),
       flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), max_size=4))
def test_fuzz_truncated_and_flipped(slices, which, cut, flips):
    data = bytearray(slices[which])
    for pos, xor in flips:
        data[pos % len(data)] ^= xor
    data = bytes(data[:cut % (len(data) + 1)])
    try:
        batches = list(reader_of(data).batches())
    except FormatError as exc:
        assert "\n" not in str(exc) and " at byte " in str(exc)
        return
    for b in batches:
        assert set(schema.NAMES) <= set(b)
    try:
        reader_of(data).describe()
    except FormatError:
        pass


def test_a_silk_repository_is_a_read_only_archive_root(tmp_path):
    """SiLK's silk.conf and hourly files, used through pyflow's archive selection."""
    import shutil

    from flowtools import api
    src = shared("silk", "FT_RWIPV6ROUTING-v1-c1-B.dat")
    root = tmp_path / "silk-data"
    target = root / "out" / "2015" / "06" / "17" / "out-S3_20150617.15"
    target.parent.mkdir(parents=True)
    shutil.copy(src, target)
    shutil.copy(shared("silk", "silk.conf"), root / "silk.conf")
    files = api.archive_files(str(root), start="2015/06/17:15", types=["out"],
                              sensors=["S3"])
    assert files == [str(target)]
    batch = api.archive_flows(str(root), start="2015/06/17", types=["out"])
    assert len(batch["stime"]) == 245_340
    assert api.archive_files(str(root), start="2015/06/17", types=["in"]) == []


@settings(max_examples=30, deadline=None)
@given(data=st.binary(min_size=0, max_size=5000), level=st.integers(0, 9))
def test_zlib_blocks_inflate_alike_with_isal_and_cramjam(data, level):
    """SiLK's zlib blocks: ISA-L's inflate and cramjam's (its fallback) give the same
    bytes, and both refuse a corrupt stream; block checksums are zlib's CRC-32."""
    from flowtools import container
    packed = zlib.compress(data, level)
    assert container.crc32(packed) == zlib.crc32(packed)
    for inflate in (silkfile._zlib, silkfile._zlib_cramjam):
        assert bytes(inflate(packed, len(data))) == data
        # a header that understates the size: the longer result tells the caller
        if data:
            assert len(inflate(packed, len(data) - 1)) > len(data) - 1
        with pytest.raises(ValueError):
            inflate(packed[: len(packed) // 2], len(data))
