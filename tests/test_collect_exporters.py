"""Real exporters against pyflow-collect, with nfcapd as the referee.

softflowd turns the packet captures in ../shared/data/pcaps into NetFlow v5, v9 and IPFIX
and sends them to nfcapd, which repeats every datagram (-R) to pyflow-collect: both see the
same export stream, and the records stored must be the same (count, addresses, ports,
protocol, packets, bytes, and times where nfdump reads them the same way). fprobe exports
v5 of traffic this test sends over loopback. Skipped when the programs are absent
(`make test` installs them when it can).
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import shared
from test_collect import free_port, no_stray_collectors, read_archive, start, wait_listening  # noqa: F401 (the fixture)

from flowtools import schema

pytestmark = pytest.mark.skipif(
    not (shutil.which("softflowd") and shutil.which("nfcapd") and shutil.which("nfdump")),
    reason="softflowd, nfcapd or nfdump not installed")


def _ms(text):
    return int(round(float(text) * 1000))


def nfdump_rows(directory):
    out = subprocess.run(
        ["nfdump", "-R", str(directory), "-q", "-N", "-6", "-o",
         "fmt:%tsr,%td,%sa,%da,%sp,%dp,%pr,%pkt,%byt"],
        capture_output=True, text=True, env=dict(os.environ, TZ="UTC"), check=True).stdout
    rows = []
    for line in out.splitlines():
        f = [x.strip() for x in line.split(",")]
        if len(f) != 9:
            continue
        proto = int(f[6])
        dport = None if proto in (1, 58) else int(f[5])  # ICMP shown as type.code
        rows.append((f[2], f[3], int(f[4]), dport, proto, int(f[7]), int(f[8]),
                     _ms(f[0]), _ms(f[1])))
    return rows


def pyflow_rows(root):
    import ipaddress
    b, _ = read_archive(root)
    if b is None:
        return []
    rows = []

    def ip(col, i):
        hi, lo = (int(x) for x in b[col][i])
        a = ipaddress.IPv6Address((hi << 64) | lo)
        return str(a.ipv4_mapped or a) if not b["ipv6"][i] else str(a)

    for i in range(schema.nrecords(b)):
        proto = int(b["protocol"][i])
        rows.append((ip("sip", i), ip("dip", i), int(b["sport"][i]),
                     None if proto in (1, 58) else int(b["dport"][i]), proto,
                     int(b["packets"][i]), int(b["bytes"][i]), int(b["stime"][i]),
                     int(b["duration"][i])))
    return rows


def run_pair(tmp_path, exporter_cmd, probe_type):
    """Start nfcapd (repeating to pyflow-collect) and pyflow-collect, run the exporter,
    stop both: (nfdump rows, pyflow rows)."""
    nf_port, pf_port = free_port(), free_port()
    nfdir, root, log = tmp_path / "nf", tmp_path / "pf", tmp_path / "log"
    nfdir.mkdir()
    p = start(root, "--sensor=S0", f"--probe-type={probe_type}",
              f"--listen=127.0.0.1:{pf_port}", "--flush-timeout=0.5", log=log)
    nf = subprocess.Popen(["nfcapd", "-p", str(nf_port), "-b", "127.0.0.1", "-w", str(nfdir),
                           "-R", f"127.0.0.1/{pf_port}", "-t", "3600",
                           "-P", str(tmp_path / "nfcapd.pid")],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(log)
        time.sleep(0.5)  # nfcapd binds
        exporter_cmd(nf_port)
        time.sleep(1.0)
    finally:
        nf.send_signal(signal.SIGTERM)
        nf.wait(30)
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0
    text = open(log).read()
    assert "bad=0" in text and "missing-template=0" in text, text
    return sorted(nfdump_rows(nfdir), key=str), sorted(pyflow_rows(root), key=str)


def softflowd(pcap, version, *flags, tmp_path):
    def go(port):
        # "-c none": without a control socket; with one, softflowd -r sometimes blocks
        # accepting on it instead of reading the capture
        subprocess.run(["softflowd", "-r", pcap, "-n", f"127.0.0.1:{port}", "-v", str(version),
                        "-d", "-c", "none", "-p", str(tmp_path / "softflowd.pid"), *flags],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60, check=True)
    return go


CASES = [  # (pcap, version, softflowd flags, compare times)
    ("ndpi_gnutella.pcap", 5, (), True),
    ("ndpi_gnutella.pcap", 9, ("-A", "milli"), True),
    ("ndpi_gnutella.pcap", 10, ("-A", "milli"), True),
    ("slips_test-cc-capture-1.pcap", 10, ("-A", "milli"), True),
    # sysUpTime-relative times: softflowd -r puts First more than 2^31 ms ahead of the
    # header's uptime; nfcapd 1.7.1 reads that as the future, pyflow (and nfdump since)
    # as an uptime wrap. Everything but the times must agree.
    ("slips_test-cc-capture-1.pcap", 9, (), False),
]


@pytest.mark.parametrize("pcap,version,flags,times", CASES)
def test_softflowd_matches_nfcapd(tmp_path, pcap, version, flags, times):
    path = shared("pcaps", pcap)
    probe = {5: "netflow-v5", 9: "netflow-v9", 10: "ipfix"}[version]
    nf, pf = run_pair(tmp_path, softflowd(path, version, *flags, tmp_path=tmp_path), probe)
    assert len(nf) > 100
    if not times:
        nf, pf = sorted((r[:7] for r in nf), key=str), sorted((r[:7] for r in pf), key=str)
    assert pf == nf


def test_softflowd_ipfix_biflows_fold_into_two_records(tmp_path):
    """softflowd -b sends RFC 5103 biflows (nanosecond times nfdump does not read): folded,
    they are exactly the uniflow records softflowd sends without -b."""
    path = shared("pcaps", "slips_test-cc-capture-1.pcap")
    rows = {}
    for name, flags in (("bi", ("-b", "-A", "milli")), ("uni", ("-A", "milli"))):
        d = tmp_path / name
        d.mkdir()
        _, rows[name] = run_pair(d, softflowd(path, 10, *flags, tmp_path=d), "ipfix")
    strip = sorted((r[:7] for r in rows["bi"]), key=str)
    assert strip == sorted((r[:7] for r in rows["uni"]), key=str) and len(strip) > 100


def _stop_daemons(mark):
    """Stop the fprobe that put itself in the background (its own session, so the
    process we started is not it), found by the capture filter unique to this test."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if args and os.path.basename(args[0]) == b"fprobe" and \
                any(mark.encode() in a for a in args):
            try:
                os.kill(int(entry), signal.SIGTERM)
            except OSError:
                pass


@pytest.mark.skipif(not shutil.which("fprobe"), reason="fprobe not installed")
def test_fprobe_v5_matches_nfcapd(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("fprobe captures on lo: needs root")
    target = free_port()

    def go(port):
        fp = subprocess.Popen(["fprobe", "-i", "lo", "-f", f"udp and dst port {target}",
                               "-e", "1", "-d", "1", "-l", "1", f"127.0.0.1:{port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(1.5)
            for i in range(200):  # 200 flows: each from its own source port
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
                    for _ in range(1 + i % 3):
                        c.sendto(b"x" * (10 + i), ("127.0.0.1", target))
            time.sleep(4)
        finally:
            fp.send_signal(signal.SIGTERM)
            try:
                fp.wait(10)
            except subprocess.TimeoutExpired:
                fp.kill()
            _stop_daemons(f"dst port {target}")
        time.sleep(0.5)

    nf, pf = run_pair(tmp_path, go, "netflow-v5")
    if not nf:
        pytest.skip("fprobe exported nothing (no capture on lo here)")
    assert pf == nf and len(nf) >= 20  # fprobe drops some at its stop; both see the same


def test_nfcapd_repeats_captured_exports(tmp_path):
    """The captured export traffic of other exporters, replayed over loopback to nfcapd and
    (repeated) to pyflow-collect: the same records, addresses to bytes. (nfdump 1.7.1 does
    not read this exporter's times and shows 0; pyflow's are those of the capture.)"""
    from flowtools.collect import pcap as pcapmod
    name = "pmacct_111-IPFIXv10-NFv9-IPv6-IPv4-mix_sources_traffic-01.pcap"
    payloads = [p for _, _, _, p in pcapmod.read(shared("netflow-pcaps", name))]

    def go(port):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for d in payloads:
                s.sendto(d, ("127.0.0.1", port))
                time.sleep(0.01)

    nf, pf = run_pair(tmp_path, go, "ipfix")
    assert len(pf) == 13
    assert sorted((r[:7] for r in pf), key=str) == sorted((r[:7] for r in nf), key=str)
    may_2023 = 1_682_899_200_000
    assert all(may_2023 <= r[7] < may_2023 + 31 * 86_400_000 for r in pf)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
