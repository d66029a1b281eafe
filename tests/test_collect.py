"""pyflow-collect: decoders on real exporters' datagrams, pcap input, sensor.conf, packing,
and the tool end to end (files, UDP, counters, restart appends)."""

import datetime as dt
import gzip
import ipaddress
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ROOT, shared

from flowtools import netflow5, schema
from flowtools.collect import BadDatagram, ipfix, packing, pcap, sensorconf, v5
from flowtools.errors import ConfigError
from flowtools.siteconf import load as load_site
from flowtools.tools.collect import read_datagram_file

BIN = os.path.join(ROOT, "bin")
SITE = os.path.join(ROOT, "flowtools", "data", "silk.conf")
ENV = dict(os.environ, PYFLOW_FSYNC="0", PATH=os.path.dirname(sys.executable) + ":"
           + os.environ.get("PATH", ""))


def packets_dir():
    return shared("netflow-packets")


def groups():
    """The captured datagrams by exporter: template files first, then the data files."""
    out = {}
    for name in sorted(os.listdir(packets_dir())):
        key = re.split(r"_(?:data|tpl|opttpl|tplopt|tpldata)", name[:-4])[0]
        out.setdefault(key, []).append(name)
    return {k: sorted(v, key=lambda n: ("tpl" not in n, n)) for k, v in out.items()}


def decode_file(name, store):
    """(records, data records, missing) of one captured datagram; BadDatagram if bad."""
    with open(os.path.join(packets_dir(), name), "rb") as f:
        d = f.read()
    if d[:2] == b"\x00\x05":
        why = v5.check(d)
        if why:
            raise BadDatagram(why)
        head, batch = v5.decode_many([d])
        return batch, int(head["count"][0]), 0
    msg = ipfix.decode(d, "file", store)
    return msg.batch(), msg.data_records, msg.missing


# Flow records each data file holds (options data and templates without addresses give none).
EXPECTED = {
    "ipfix.dat": 6, "ipfix_test_barracuda_data256.dat": 8,
    "ipfix_test_barracuda_extended_uniflow_data256.dat": 2,
    "ipfix_test_ixia_tpldata256.dat": 1, "ipfix_test_ixia_tpldata271.dat": 2,
    "ipfix_test_juniper_mx240_junos151r6s3_data512.dat": 0,
    "ipfix_test_mikrotik_data258.dat": 28, "ipfix_test_mikrotik_data259.dat": 18,
    "ipfix_test_netscaler_data.dat": 3, "ipfix_test_nokia_bras_data256.dat": 1,
    "ipfix_test_openbsd_pflow_data.dat": 26, "ipfix_test_procera_data52935.dat": 8,
    "ipfix_test_viptela_data257.dat": 1, "ipfix_test_vmware_vds_data264.dat": 1,
    "ipfix_test_vmware_vds_data266.dat": 2, "ipfix_test_vmware_vds_data266_267.dat": 2,
    "ipfix_test_yaf_data45841.dat": 1, "ipfix_test_yaf_data45873.dat": 1,
    "ipfix_test_yaf_data53248.dat": 0, "netflow5.dat": 2,
    "netflow5_test_juniper_mx80.dat": 29, "netflow5_test_microtik.dat": 30,
    "netflow9_cisco_asr1001x_tpl259.dat": 25, "netflow9_test_0length_fields_tpl_data.dat": 10,
    "netflow9_test_cisco_1941K9.dat": 29, "netflow9_test_cisco_aci_data256.dat": 3,
    "netflow9_test_cisco_asa_1_data.dat": 14, "netflow9_test_cisco_asa_2_data.dat": 19,
    "netflow9_test_cisco_asr9k_data256.dat": 0, "netflow9_test_cisco_asr9k_data260.dat": 21,
    "netflow9_test_cisco_nbar_data262.dat": 5, "netflow9_test_cisco_wlc_data261.dat": 0,
    "netflow9_test_field_layer2segmentid_data.dat": 1,
    "netflow9_test_fortigate_fortios_521_data256.dat": 0,
    "netflow9_test_fortigate_fortios_521_data257.dat": 1,
    "netflow9_test_fortigate_fortios_542_appid_data258_262.dat": 17,
    "netflow9_test_h3c_data3281.dat": 16, "netflow9_test_h3c_netstream_varstring_data3281.dat": 1,
    "netflow9_test_huawei_netstream_data.dat": 1, "netflow9_test_invalid01.dat": 2,
    "netflow9_test_iptnetflow_reduced_size_encoding_tpldata260.dat": 12,
    "netflow9_test_macaddr_data.dat": 29, "netflow9_test_nprobe_data.dat": 1,
    "netflow9_test_paloalto_81_data257_1flowset_in_large_zerofilled_packet.dat": 1,
    "netflow9_test_paloalto_panos_data.dat": 8, "netflow9_test_softflowd_tpl_data.dat": 7,
    "netflow9_test_streamcore_tpl_data256.dat": 2, "netflow9_test_streamcore_tpl_data260.dat": 2,
    "netflow9_test_ubnt_edgerouter_data1024.dat": 8,
    "netflow9_test_ubnt_edgerouter_data1025.dat": 8,
    "netflow9_test_unknown_tpl266_292_data.dat": 2, "netflow9_test_valid01.dat": 7,
}
# Malformed on purpose: a v5 count beyond the datagram, and (nprobe_dpi) a v9 data set
# ending in a truncated record. (netflow9_test_invalid01 is well-formed by RFC 3954: only
# its flowsets are not 4-byte aligned, which the decoder that named it did not accept.)
BAD = {"netflow5_test_invalid01.dat", "netflow5_test_invalid02.dat",
       "netflow9_test_nprobe_dpi.dat"}


def test_every_captured_datagram_decodes():
    seen = {}
    for names in groups().values():
        store = ipfix.TemplateStore()
        for name in names:
            try:
                batch, _, _ = decode_file(name, store)
            except BadDatagram:
                seen[name] = "bad"
                continue
            seen[name] = 0 if batch is None else schema.nrecords(batch)
    assert {n for n, v in seen.items() if v == "bad"} == BAD
    assert {n: seen[n] for n in EXPECTED} == EXPECTED
    # every template file decoded too (they are in seen and not bad)
    assert len(seen) == len(os.listdir(packets_dir()))


def _ip(v):
    return str(ipaddress.ip_address(int(v)))


def _utc(ms):
    return dt.datetime.fromtimestamp(int(ms) / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


def test_v5_values_softflowd():
    batch, _, _ = decode_file("netflow5.dat", None)
    # softflowd's First is 0xFFFFFFFF (1 ms before boot): 3382 ms before the export time
    # 2015-05-02T18:38:08.280, Last 2577 ms after boot.
    assert [_ip(a) for a in batch["sip"]] == ["10.0.2.2", "10.0.2.15"]
    assert _utc(batch["stime"][0]) == "2015-05-02T18:38:04.898"
    assert _utc(batch["stime"][0] + batch["duration"][0]) == "2015-05-02T18:38:07.476"
    assert batch["packets"].tolist() == [5, 4] and batch["bytes"].tolist() == [230, 304]
    assert batch["sport"].tolist() == [54435, 22] and batch["dport"].tolist() == [22, 54435]
    assert batch["flags"].tolist() == [16, 24] and batch["protocol"].tolist() == [6, 6]


def test_v5_many_equals_one_at_a_time(rng):
    from conftest import random_batch
    b = random_batch(rng, 1000)
    datagrams, _, _ = netflow5.encode_v5(b, sequence=7)
    head, many = v5.decode_many(datagrams)
    ones = [netflow5.decode_v5(d)[1] for d in datagrams]
    one = schema.concat(ones)
    for k in ("stime", "duration", "sip", "dip", "sport", "dport", "packets", "bytes"):
        np.testing.assert_array_equal(many[k], one[k], err_msg=k)
    assert head["flow_sequence"][1] == 37


def test_v9_softflowd_values_and_ipv6():
    store = ipfix.TemplateStore()
    msg = ipfix.decode(open(os.path.join(packets_dir(), "netflow9_test_softflowd_tpl_data.dat"),
                            "rb").read(), "x", store)
    b4, b6 = msg.batches
    # uptime 45076 ms at 2015-10-08T19:04:30; the first flow's First is 1216 ms
    assert (_ip(b4["sip"][0]), _ip(b4["dip"][0])) == ("172.16.32.100", "172.16.32.248")
    assert _utc(b4["stime"][0]) == "2015-10-08T19:03:46.140"
    assert (b4["bytes"][0], b4["packets"][0], b4["sport"][0], b4["dport"][0],
            b4["protocol"][0]) == (76, 1, 123, 123, 17)
    assert b6["ipv6"].all() and schema.nrecords(b6) == 1
    assert b6["sip"][0, 0] >> np.uint64(48) == 0xFE80


def test_ipfix_yaf_cert_elements():
    store = ipfix.TemplateStore()
    for name in ("ipfix_test_yaf_tpl45841.dat", "ipfix_test_yaf_tpls_option_tpl.dat"):
        decode_file(name, store)
    b, _, _ = decode_file("ipfix_test_yaf_data45873.dat", store)
    # YAF's initial and union TCP flags (CERT elements) fill flags/initflags/sessflags.
    assert (b["initflags"][0], b["sessflags"][0], b["flags"][0]) == (194, 17, 211)
    assert (b["sport"][0], b["dport"][0], b["packets"][0], b["bytes"][0]) == (63499, 9997, 4, 172)
    b, _, _ = decode_file("ipfix_test_yaf_data45841.dat", store)
    assert b["application"][0] == 53


def test_template_withdrawal_and_missing():
    store = ipfix.TemplateStore()
    tpl = _ipfix([_set(2, struct.pack(">HH", 300, 2) + struct.pack(">HHHH", 8, 4, 12, 4))])
    data = _ipfix([_set(300, bytes(range(1, 9)))])
    ipfix.decode(tpl, "e", store)
    assert schema.nrecords(ipfix.decode(data, "e", store).batch()) == 1
    assert ipfix.decode(data, "other", store).missing == 1  # templates are per exporter
    ipfix.decode(_ipfix([_set(2, struct.pack(">HH", 300, 0))]), "e", store)
    assert ipfix.decode(data, "e", store).missing == 1


def _set(sid, body):
    return struct.pack(">HH", sid, 4 + len(body)) + body


def _ipfix(sets, seq=0, domain=1, export=1_700_000_000):
    body = b"".join(sets)
    return struct.pack(">HHIII", 10, 16 + len(body), export, seq, domain) + body


def _template(tid, fields):
    out = struct.pack(">HH", tid, len(fields))
    for ie, length, *pen in fields:
        out += struct.pack(">HH", ie | (0x8000 if pen else 0), length)
        if pen:
            out += struct.pack(">I", pen[0])
    return out


def test_ipfix_times_varlen_enterprise_and_biflow():
    fields = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (2, 8), (1, 8), (152, 8), (153, 8),
              (2, 8, 29305), (1, 8, 29305), (82, 0xFFFF), (999, 4, 12345)]
    store = ipfix.TemplateStore()
    rec = (struct.pack(">IIHHB", 0x0A000001, 0xC0A80001, 1234, 80, 6)
           + struct.pack(">QQQQ", 3, 300, 1_700_000_000_123, 1_700_000_001_000)
           + struct.pack(">QQ", 2, 120) + b"\x03eth" + b"\xff\x00\x00\x00")
    long_name = b"\xff\x01\x00" + b"x" * 256  # the 3-byte variable-length form
    rec2 = rec[:-8] + long_name + b"\x00\x00\x00\x00"
    rec2 = rec2[:37] + struct.pack(">QQ", 0, 0) + rec2[53:]
    msg = ipfix.decode(_ipfix([_set(2, _template(400, fields)), _set(400, rec + rec2)]),
                       "e", store)
    fwd, rev = msg.batches
    assert schema.nrecords(fwd) == 2 and schema.nrecords(rev) == 1  # no reverse in rec2
    assert fwd["stime"][0] == 1_700_000_000_123 and fwd["duration"][0] == 877
    assert (rev["sip"][0], rev["sport"][0], rev["dport"][0]) == (0xC0A80001, 80, 1234)
    assert (rev["packets"][0], rev["bytes"][0]) == (2, 120)


def test_ipfix_time_encodings():
    export = 1_700_000_000
    ntp = (export + ipfix.NTP_EPOCH_S - 10) << 32 | (1 << 31)  # 10 s before, +0.5 s
    cases = [((150, 4), struct.pack(">I", export - 5), -5000),
             ((154, 8), struct.pack(">Q", ntp), -9500),
             ((156, 8), struct.pack(">Q", ntp), -9500),
             ((158, 4), struct.pack(">I", 2_500_000), -2500)]
    for (ie, length), raw, offset in cases:
        store = ipfix.TemplateStore()
        t = _template(500, [(8, 4), (12, 4), (ie, length)])
        m = ipfix.decode(_ipfix([_set(2, t), _set(500, b"\x01" * 8 + raw)], export=export),
                         "e", store)
        assert m.batch()["stime"][0] == export * 1000 + offset, ie


@pytest.mark.parametrize("bad", [
    b"", b"\x00\x0a\x00\x10", struct.pack(">HHIII", 10, 400, 0, 0, 0),
    _ipfix([struct.pack(">HH", 2, 2)]), _ipfix([_set(2, struct.pack(">HHHH", 255, 1, 8, 4))]),
    _ipfix([_set(2, struct.pack(">HHHH", 300, 1, 8, 0))]),  # only a zero-length field
    _ipfix([_set(2, struct.pack(">HH", 300, 50000))]),  # absurd field count
    b"\x00\x07" + bytes(30)])
def test_bad_messages_raise_bad_datagram(bad):
    with pytest.raises(BadDatagram):
        if bad[:2] == b"\x00\x05":
            raise BadDatagram(v5.check(bad))
        ipfix.decode(bad, "e", ipfix.TemplateStore())


# (datagrams, records, bad, data sets without template, IPv6 records)
PCAPS = {
    "ndpi_netflow-fritz.pcap": (1, 0, 0, 0, 0),
    "ndpi_netflowv9.pcap": (10, 0, 0, 23, 0),  # its templates are not in the capture
    "ndpi_sflow.pcap": (9, 0, 9, 0, 0),  # sFlow: not ours, all bad
    "pmacct_100-IPFIXv10-CISCO_traffic-00.pcap": (6, 12, 0, 0, 4),
    "pmacct_101-NFv9-CISCO-cust_primitives_traffic-00.pcap": (40, 51, 0, 0, 51),
    "pmacct_102-NFv9-CISCO-f2rd-pretag-sampling-reload_traffic-00.pcap": (25, 35, 0, 0, 7),
    "pmacct_103-IPFIXv10-CISCO-pretag-JSON_encoding_traffic-00.pcap": (6, 12, 0, 0, 4),
    "pmacct_104-IPFIXv10-IPv6-CISCO-sampling_option_traffic-00.pcap": (5, 3, 0, 0, 3),
    "pmacct_106-IPFIXv10-HUAWEI-vrf_name_traffic-00.pcap": (6, 3, 0, 0, 3),
    "pmacct_110-IPFIXv10-NFv9-multiple-sources_traffic-00.pcap": (6, 12, 0, 0, 4),
    "pmacct_110-IPFIXv10-NFv9-multiple-sources_traffic-01.pcap": (40, 51, 0, 0, 51),
    "pmacct_110-IPFIXv10-NFv9-multiple-sources_traffic-02.pcap": (25, 35, 0, 0, 7),
    "pmacct_111-IPFIXv10-NFv9-IPv6-IPv4-mix_sources_traffic-00.pcap": (11, 11, 0, 0, 11),
    "pmacct_111-IPFIXv10-NFv9-IPv6-IPv4-mix_sources_traffic-01.pcap": (11, 13, 0, 0, 13),
    "pmacct_112-IPFIXv10-CISCO-options-map-reassignment_traffic-00.pcap": (21, 9, 0, 4, 0),
}


def test_export_pcaps_decode():
    d = shared("netflow-pcaps")
    got = {}
    for name in sorted(os.listdir(d)):
        store = ipfix.TemplateStore()
        n = recs = bad = miss = v6 = 0
        for host, _, _, payload in pcap.read(os.path.join(d, name)):
            n += 1
            try:
                msg = ipfix.decode(payload, host, store)
            except BadDatagram:
                bad += 1
                continue
            miss += msg.missing
            b = msg.batch()
            if b is not None:
                recs += schema.nrecords(b)
                v6 += int(b["ipv6"].sum()) if "ipv6" in b else 0
        got[name] = (n, recs, bad, miss, v6)
    assert got == PCAPS


def test_pcapng_and_gzip_and_linktypes(tmp_path):
    src = os.path.join(shared("netflow-pcaps"), "pmacct_100-IPFIXv10-CISCO_traffic-00.pcap")
    want = list(pcap.read(src))
    raw = open(src, "rb").read()
    # The same frames as pcapng: a section header, an Ethernet interface, enhanced packets.
    shb = struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack("<I", 28)
    idb = struct.pack("<IIHHI", 1, 20, 1, 0, 0) + struct.pack("<I", 20)
    blocks = [shb, idb]
    pos = 24
    while pos + 16 <= len(raw):
        _, _, caplen, _ = struct.unpack_from("<IIII", raw, pos)
        frame = raw[pos + 16:pos + 16 + caplen]
        pad = b"\0" * (-len(frame) % 4)
        size = 32 + len(frame) + len(pad)
        blocks.append(struct.pack("<IIIIIII", 6, size, 0, 0, 0, caplen, caplen) + frame + pad
                      + struct.pack("<I", size))
        pos += 16 + caplen
    ng = tmp_path / "x.pcapng"
    ng.write_bytes(b"".join(blocks))
    assert list(pcap.read(str(ng))) == want
    gz = tmp_path / "x.pcap.gz"
    gz.write_bytes(gzip.compress(raw))
    assert list(pcap.read(str(gz))) == want
    # Linux cooked capture (v1) of one datagram from 10.1.2.3:2055 to port 4739
    udp = struct.pack(">HHHH", 2055, 4739, 8 + 4, 0) + b"abcd"
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                     bytes([10, 1, 2, 3]), bytes([10, 0, 0, 1])) + udp
    frame = struct.pack(">HHH8sH", 0, 1, 6, b"", 0x0800) + ip
    sll = tmp_path / "sll.pcap"
    sll.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 113)
                    + struct.pack("<IIII", 0, 0, len(frame), len(frame)) + frame)
    assert list(pcap.read(str(sll))) == [("10.1.2.3", 2055, 4739, b"abcd")]


# ------------------------------------------------------------------ sensor.conf, packing

CONF = """
# the examples of sensor.conf(5), adapted
probe S1 netflow-v5
    listen-on-port 9901
    protocol udp
    accept-from-host 127.0.0.1, 172.16.22.22
end probe
probe S2 ipfix
    listen-on-port 9902
    protocol udp
end probe
group my-net
    ipblocks 128.2.0.0/16
end group
group ifs
    interfaces 1 2,3
end group
sensor S1
    netflow-v5-probes S1
    external-interfaces @ifs
    internal-interfaces 8
    null-interfaces 0
end sensor
sensor S2
    ipfix-probes S2
    internal-ipblocks @my-net 10.0.0.0/8
    external-ipblocks remainder
    discard-when source-ipblocks 10.9.0.0/16
end sensor
"""


def _records(**cols):
    n = len(next(iter(cols.values())))
    base = dict(packets=np.ones(n), bytes=np.full(n, 40), protocol=np.full(n, 17))
    return schema.make_batch(n, **(base | cols))


def _ip4(*texts):
    return np.array([int(ipaddress.IPv4Address(t)) for t in texts], np.uint32)


def test_sensorconf_and_twoway_packing():
    site = load_site(SITE)
    conf = sensorconf.parse(CONF, "sensor.conf")
    assert conf.probes["S1"].accept_from == ["127.0.0.1", "172.16.22.22"]
    by_probe = packing.packers(conf, site)
    ft = {site.flowtypes[i].type_name: i for i in site.flowtypes}
    b = _records(input=np.array([1, 8, 1, 8, 3, 7]), output=np.array([8, 1, 0, 8, 2, 8]),
                 protocol=np.array([17, 6, 17, 17, 17, 17]), dport=np.array([0, 443, 0, 0, 0, 0]))
    out = packing.pack(b, by_probe["S1"])[0]
    assert [site.flowtypes[i].type_name for i in out["flowtype"]] == \
        ["in", "outweb", "innull", "int2int", "ext2ext", "other"]
    assert (out["sensor"] == site.sensor_id("S1")).all()
    b = _records(sip=_ip4("128.2.1.1", "8.8.8.8", "10.1.1.1", "10.9.1.1", "8.8.8.8"),
                 dip=_ip4("8.8.8.8", "128.2.3.4", "10.2.2.2", "8.8.8.8", "9.9.9.9"))
    out = packing.pack(b, by_probe["S2"])[0]
    assert out["flowtype"].tolist() == [ft["out"], ft["in"], ft["int2int"], ft["ext2ext"]]
    # IPv6 records compare as IPv6 (IPv4 records inside ::ffff:0:0/96 still match)
    out6 = packing.pack(schema.to_v6(b), by_probe["S2"])[0]
    assert out6["flowtype"].tolist() == out["flowtype"].tolist()


def test_ipsets_classify_as_the_same_ipblocks(tmp_path):
    """NET-ipsets (IPset files, in groups too) and discard-when ...-ipsets pack records as
    the same addresses given as ipblocks do; SiLK's and pyflow's set files both serve."""
    from flowtools import ipset
    site = load_site(SITE)
    mine = ipset.IPSet.from_addresses(_ip4("128.2.0.0", "128.2.255.255"))
    mine = ipset.IPSet.from_ranges(mine.starts[:1], mine.ends[-1:])       # 128.2.0.0/16
    ipset.write_set(mine, str(tmp_path / "cmu.set"))
    ipset.write_set(ipset.IPSet.from_ranges(_ip4("10.0.0.0"), _ip4("10.255.255.255")),
                    str(tmp_path / "ten.set"), format="silk")
    ipset.write_set(ipset.IPSet.from_ranges(_ip4("10.9.0.0"), _ip4("10.9.255.255")),
                    str(tmp_path / "drop.set"))
    sets = CONF.replace("    ipblocks 128.2.0.0/16", f"    ipsets {tmp_path}/cmu.set") \
        .replace("internal-ipblocks @my-net 10.0.0.0/8",
                 f"internal-ipsets @my-net {tmp_path}/ten.set") \
        .replace("discard-when source-ipblocks 10.9.0.0/16",
                 f"discard-when source-ipsets {tmp_path}/drop.set")
    assert sets.count(str(tmp_path)) == 3
    b = _records(sip=_ip4("128.2.1.1", "8.8.8.8", "10.1.1.1", "10.9.1.1", "8.8.8.8"),
                 dip=_ip4("8.8.8.8", "128.2.3.4", "10.2.2.2", "8.8.8.8", "9.9.9.9"))
    got = {}
    for name, text in (("ipblocks", CONF), ("ipsets", sets)):
        by_probe = packing.packers(sensorconf.parse(text, "sensor.conf"), site)
        for batch in (b, schema.to_v6(b)):
            out = packing.pack(batch, by_probe["S2"])[0]
            got.setdefault(name, []).append(out["flowtype"].tolist())
    assert got["ipsets"] == got["ipblocks"] and len(got["ipsets"][0]) == 4
    with pytest.raises(ConfigError, match=r"s.conf:2: IPset file: cannot open .*absent.set"):
        sensorconf.parse(f"sensor S0\n  internal-ipsets {tmp_path}/absent.set\n", "s.conf")
    (tmp_path / "bad.set").write_bytes(b"not a set")
    with pytest.raises(ConfigError, match="s.conf:2: IPset file: .*bad.set"):
        sensorconf.parse(f"sensor S0\n  internal-ipsets {tmp_path}/bad.set\n", "s.conf")


@pytest.mark.parametrize("text,message", [
    ("probe 1x netflow-v5\nend probe\n", "begin with a letter"),
    ("probe P sflow\n", "unsupported probe type"),
    ("probe P ipfix\n  listen-on-port 99999\n", "invalid port"),
    ("probe P ipfix\n  listen-on-port 9\nend probe\n", "needs 'protocol udp'"),
    ("sensor S0\n  ipfix-probes P\n  internal-ipblocks remainder\nend sensor\n",
     "cannot be remainder"),
    ("sensor S0\n  internal-ipblocks 10.0.0.0/33\n", "invalid IP block"),
    ("sensor S0\n  ipfix-probes P\nend sensor\n", "needs internal or external"),
    ("group g\n  interfaces 1\nend group\nsensor S0\n  internal-ipblocks @g\n", "holds"),
    ("group g\n  interfaces 1\n  ipsets /x.set\n", "mixes addresses and interfaces"),
    ("sensor S0\n  internal-ipblocks 10.0.0.0/8\n  internal-ipsets /x.set\n",
     "addresses are already given"),
    ("bogus\n", "unknown command"),
])
def test_sensorconf_errors(text, message):
    with pytest.raises(ConfigError, match=message) as exc:
        sensorconf.parse(text, "s.conf")
    assert str(exc.value).startswith("s.conf:")


def test_unknown_sensor_is_an_error():
    conf = sensorconf.parse("sensor NOPE\n  ipfix-probes P\n  source-network external\n"
                            "  destination-network internal\nend sensor\n")
    with pytest.raises(ConfigError, match="not defined in the site"):
        packing.packers(conf, load_site(SITE))


# ------------------------------------------------------------------ the tool


def tool(*args, check=True):
    p = subprocess.run([sys.executable, os.path.join(BIN, "pyflow-collect"), *args],
                       capture_output=True, text=True, env=ENV, timeout=120)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def read_archive(root):
    """All records of an archive, sorted, as one batch (and the files)."""
    from flowtools import io
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs
                   if not f.startswith(".") and f != "silk.conf")
    batches = [b for f in files for b in io.open_flows(f)]
    return (schema.concat([schema.to_v6(b) for b in batches]) if batches else None), files


def test_read_pcaps_into_archive(tmp_path):
    d = shared("netflow-pcaps")
    args = [f"--read-pcap={os.path.join(d, n)}" for n in sorted(PCAPS) if "110" not in n]
    root = tmp_path / "arch"
    p = tool(f"--data-rootdir={root}", "--sensor=S0", "--probe-type=ipfix", *args)
    b, files = read_archive(root)
    want = sum(v[1] for n, v in PCAPS.items() if "110" not in n)
    assert schema.nrecords(b) == want
    assert "stopped: " in p.stderr and f"{want} records written" in p.stderr
    assert (b["sensor"] == 0).all() and (b["flowtype"] == 0).all()


def test_gen_v5_file_round_trip(tmp_path):
    """pyflow-gen's flows, sent as v5 datagrams to a file, come back as pyflow-gen stored them."""
    gen_root, dgrams = tmp_path / "gen", tmp_path / "v5.dat"
    subprocess.run([sys.executable, os.path.join(BIN, "pyflow-gen"), f"--data-rootdir={gen_root}",
                    "--flows=20000", "--hours=3", "--sensors=S1", "--ipv6-fraction=0",
                    f"--netflow-v5-file={dgrams}"], check=True, env=ENV, capture_output=True)
    root = tmp_path / "coll"
    tool(f"--data-rootdir={root}", "--sensor=S1", "--probe-type=netflow-v5",
         "--internal-blocks=10.0.0.0/8,192.168.0.0/16,172.16.0.0/12",
         f"--read-datagrams={dgrams}")
    a, _ = read_archive(gen_root)
    b, _ = read_archive(root)
    keys = ("stime", "duration", "sport", "dport", "protocol", "packets", "bytes", "flags")

    def rows(x):
        cols = [x[k].astype(np.int64) for k in keys] + [x["sip"][:, 1].astype(np.int64),
                                                        x["dip"][:, 1].astype(np.int64)]
        return np.unique(np.stack(cols, 1), axis=0)
    # v5 clamps nothing here; zero-byte flows (if any) are SiLK-invalid and dropped
    ok = (a["packets"] > 0) & (a["bytes"] >= a["packets"])
    assert np.array_equal(rows(schema.take(a, ok)), rows(b))


def test_datagram_file_formats(tmp_path):
    one = open(os.path.join(packets_dir(), "netflow5_test_microtik.dat"), "rb").read()
    p = tmp_path / "silk.v5"
    p.write_bytes(one + one)  # SiLK's 1464-byte blocks
    assert read_datagram_file(str(p), Exception) == [one, one]
    p.write_bytes(gzip.compress(one))
    assert read_datagram_file(str(p), Exception) == [one]
    with open(p, "wb") as f:
        netflow5.write_datagrams([one[:100], one], f)
    assert read_datagram_file(str(p), Exception) == [one[:100], one]


def test_bad_options(tmp_path):
    p = tool(f"--data-rootdir={tmp_path}", check=False)
    assert p.returncode == 1 and "give --sensor-configuration" in p.stderr
    p = tool(f"--data-rootdir={tmp_path}", "--sensor=NOPE", "--probe-type=ipfix",
             "--read-pcap=/dev/null", check=False)
    assert p.returncode == 1 and "NOPE" in p.stderr and "Traceback" not in p.stderr
    p = tool(f"--data-rootdir={tmp_path}", "--sensor=S0", "--probe-type=ipfix",
             "--listen=1.2.3.4:x", check=False)
    assert p.returncode == 1 and "invalid --listen" in p.stderr
    conf = tmp_path / "s.conf"
    conf.write_text("probe P ipfix\n  listen-on-port 4739\n  protocol tcp\nend probe\n")
    p = tool(f"--data-rootdir={tmp_path}", f"--sensor-configuration={conf}", check=False)
    assert p.returncode == 1 and f"{conf}:3:" in p.stderr


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_STARTED = []


def start(root, *args, log=None):
    cmd = [sys.executable, os.path.join(BIN, "pyflow-collect"), f"--data-rootdir={root}", *args]
    p = subprocess.Popen(cmd, env=ENV, stderr=open(log, "w") if log else subprocess.PIPE,
                         text=True)
    _STARTED.append(p)
    return p


@pytest.fixture(autouse=True)
def no_stray_collectors():
    """A test that fails midway must not leave its collector running."""
    yield
    while _STARTED:
        p = _STARTED.pop()
        if p.poll() is None:
            p.kill()
            p.wait()


def wait_listening(log, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        if os.path.exists(log) and "listening on" in open(log).read():
            return
        time.sleep(0.05)
    raise AssertionError("collector did not start: " + open(log).read())


def test_udp_counters_sigusr1_garbage_and_restart_append(tmp_path):
    port = free_port()
    root, log = tmp_path / "arch", tmp_path / "log"
    datagrams, _, _ = netflow5.encode_v5(_v5_flows(3000), sequence=0)
    args = ["--sensor=S2", "--probe-type=netflow-v5", f"--listen=127.0.0.1:{port}",
            "--flush-timeout=0.5"]
    p = start(root, *args, log=log)
    wait_listening(log)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i, d in enumerate(datagrams):
            if i == 50:
                continue  # a datagram lost on the way: 30 flows missing by the sequence
            s.sendto(d, ("127.0.0.1", port))
        for junk in (b"", b"\x00\x05", b"\x00\x05\x00\x1e" + bytes(40), os.urandom(500),
                     b"\x00\x09" + bytes(18), b"\x00\x0a\x00\x10" + bytes(12)):
            s.sendto(junk, ("127.0.0.1", port))
    time.sleep(1.0)
    p.send_signal(signal.SIGUSR1)
    time.sleep(0.5)
    text = open(log).read()
    # the last two junk datagrams are valid, empty v9 and IPFIX messages
    assert "records=2970" in text and "lost=30" in text and "bad=4" in text, text
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(50):  # a port scanner's garbage: counted, logged a few times only
            s.sendto(b"\x47\x45\x54 / HTTP/1.0\r\n\r\n", ("127.0.0.1", port))
    time.sleep(0.5)
    p.send_signal(signal.SIGUSR1)
    time.sleep(0.5)
    text = open(log).read()
    assert "bad=54" in text and text.count("bad datagram from") == 5, text
    b, files = read_archive(root)  # already flushed, while running
    assert schema.nrecords(b) == 2970
    p.send_signal(signal.SIGTERM)
    assert p.wait(20) == 0
    # restarted, it appends to the same hourly files
    p = start(root, *args, log=log)
    wait_listening(log)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for d in datagrams:
            s.sendto(d, ("127.0.0.1", port))
    time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    assert p.wait(20) == 0
    b2, files2 = read_archive(root)
    assert files2 == files and schema.nrecords(b2) == 2970 + 3000


def _v5_flows(n, start=1_700_000_000_000):
    rng = np.random.default_rng(5)
    return schema.make_batch(
        n, stime=start + np.sort(rng.integers(0, 3_000_000, n)),
        duration=rng.integers(0, 60_000, n), sip=rng.integers(0, 2**32, n, dtype=np.uint64),
        dip=rng.integers(0, 2**32, n, dtype=np.uint64), sport=rng.integers(0, 65536, n),
        dport=rng.integers(0, 65536, n), protocol=np.full(n, 6),
        packets=rng.integers(1, 100, n), bytes=rng.integers(100, 10000, n))


def test_accept_from_host_drops_others(tmp_path):
    port = free_port()
    root, log = tmp_path / "arch", tmp_path / "log"
    p = start(root, "--sensor=S0", "--probe-type=netflow-v5", f"--listen=127.0.0.1:{port}",
              "--accept-from-host=127.0.0.9", log=log)
    wait_listening(log)
    datagrams, _, _ = netflow5.encode_v5(_v5_flows(60))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for d in datagrams:
            s.sendto(d, ("127.0.0.1", port))
    time.sleep(0.3)
    p.send_signal(signal.SIGTERM)
    assert p.wait(20) == 0
    assert "refused" in open(log).read()
    assert read_archive(root)[0] is None


def test_daemon_pidfile(tmp_path):
    port = free_port()
    root, log, pid = tmp_path / "arch", tmp_path / "log", tmp_path / "pid"
    p = tool(f"--data-rootdir={root}", "--sensor=S0", "--probe-type=netflow-v5",
             f"--listen=127.0.0.1:{port}", "--daemon", f"--pidfile={pid}",
             f"--log-destination={log}")
    assert p.returncode == 0
    wait_listening(log)
    daemon = int(pid.read_text())
    os.kill(daemon, signal.SIGTERM)
    end = time.time() + 20
    while os.path.exists(pid) and time.time() < end:
        time.sleep(0.05)
    assert not os.path.exists(pid) and "stopped:" in open(log).read()


def test_sensor_conf_udp_and_poll_directory(tmp_path):
    """A sensor.conf with a UDP probe and a directory probe: records packed by the twoway
    logic into in/out/inweb... of their sensors; polled files are moved aside once read."""
    port = free_port()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    conf = tmp_path / "sensor.conf"
    conf.write_text(f"""
probe P1 netflow-v5
    listen-on-port {port}
    protocol udp
    listen-as-host 127.0.0.1
end probe
probe P2 netflow-v5
    poll-directory {inbox}
end probe
group inside
    ipblocks 10.0.0.0/8
end group
sensor S3
    netflow-v5-probes P1
    internal-ipblocks @inside
    external-ipblocks remainder
end sensor
sensor S4
    netflow-v5-probes P2
    source-network external
    destination-network internal
end sensor
""")
    root, log = tmp_path / "arch", tmp_path / "log"
    flows = _v5_flows(600)
    flows["sip"][:300] = 0x0A000001  # 10.0.0.1 -> outside: out (or outweb)
    flows["dip"][:300] = 0x08080808
    flows["sip"][300:] = 0x08080808  # outside -> 10.0.0.2: in (or inweb)
    flows["dip"][300:] = 0x0A000002
    flows["dport"][:] = np.where(np.arange(600) % 2 == 0, 443, 5000)
    datagrams, _, _ = netflow5.encode_v5(flows)
    with open(inbox / "export.v5", "wb") as f:
        netflow5.write_datagrams(datagrams, f)
    p = start(root, f"--sensor-configuration={conf}", "--flush-timeout=0.3", log=log)
    wait_listening(log)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for d in datagrams:
            s.sendto(d, ("127.0.0.1", port))
    end = time.time() + 20
    while not (inbox / ".processed" / "export.v5").exists() and time.time() < end:
        time.sleep(0.1)
    time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    assert p.wait(20) == 0
    assert not (inbox / "export.v5").exists()
    b, files = read_archive(root)
    site = load_site(SITE)
    names = [site.flowtypes[int(f)].type_name + "/" + site.sensor_name(int(s))
             for f, s in zip(b["flowtype"], b["sensor"], strict=True)]
    counts = {n: names.count(n) for n in set(names)}
    assert counts == {"out/S3": 150, "outweb/S3": 150, "in/S3": 150, "inweb/S3": 150,
                      "in/S4": 300, "inweb/S4": 300}
    assert all("/S3_" in f or "/S4_" in f or "-S3_" in f or "-S4_" in f for f in files)
