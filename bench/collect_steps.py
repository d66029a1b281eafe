"""Benchmark steps of pyflow-collect (issue 7), side by side with nfcapd on loopback.

  collect   NetFlow v5 sent at increasing rates to pyflow-collect and to nfcapd, each rate
            sustained for PYFLOW_BENCH_COLLECT_SECONDS (default 60) s: the highest rate each
            keeps with zero loss (records stored = records sent, no sequence gap), and the
            collector's CPU seconds per 1M records (bar: 300k records/s for pyflow)
  collect_ipfix  the same with IPFIX of one fixed template (bar: 200k records/s)

The flows come from pyflow-gen (--netflow-v5-file) for v5 and from the same generator encoded
here for IPFIX; a separate sender process replays the datagrams, paced, looping over the
file and renumbering the sequence numbers, so that a loss is visible to both collectors.
Rates tried: PYFLOW_BENCH_COLLECT_RATES (default 100k,200k,300k,400k,600k,800k,1000k);
a collector's ladder stops at its first rate with loss.
"""

import os
import re
import shutil
import subprocess
import sys
import time

import nfdump
from harness import Result, Spawned

V5_BAR = 300_000
IPFIX_BAR = 200_000

# The sender: a process of its own so that the collector's CPU is measured alone.
SENDER = r"""
import socket, struct, sys, time
path, kind, host, port, rate, seconds = sys.argv[1:7]
rate, seconds, port = float(rate), float(seconds), int(port)
data = open(path, "rb").read()
grams, pos = [], 0
while pos < len(data):
    n = int.from_bytes(data[pos:pos + 2], "big")
    grams.append(bytearray(data[pos + 2:pos + 2 + n]))
    pos += 2 + n
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
addr = (host, port)
if kind == "ipfix":
    s.sendto(grams.pop(0), addr)  # the template, once
    time.sleep(0.2)
counts = [(len(d) - 24) // 48 if kind == "v5" else (len(d) - 20) // 46 for d in grams]
total = int(rate * seconds)
sent, i, seq = 0, 0, 0
seq_at = 16 if kind == "v5" else 8
start = time.perf_counter()
while sent < total:
    d, c = grams[i], counts[i]
    i = (i + 1) % len(grams)
    struct.pack_into(">I", d, seq_at, seq % (1 << 32))
    wait = start + sent / rate - time.perf_counter()
    if wait > 0.001:
        time.sleep(wait)
    s.sendto(d, addr)
    seq += c
    sent += c
print(sent, time.perf_counter() - start)
"""


def _seconds():
    return float(os.environ.get("PYFLOW_BENCH_COLLECT_SECONDS", "60"))


def _rates():
    text = os.environ.get("PYFLOW_BENCH_COLLECT_RATES", "100k,200k,300k,400k,600k,800k,1000k")
    return [int(float(r[:-1]) * 1000) if r.endswith("k") else int(r)
            for r in text.split(",") if r]


def _v5_file(b):
    path = os.path.join(b.work, "collect", "v5.dgrams")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        b.run([*b.gen(300_000, "--no-archive", f"--netflow-v5-file={path}",
                      "--ipv6-fraction=0")])
    return path


def _ipfix_file(b):
    """300k generated flows as IPFIX datagrams: a template, then 30 records each."""
    path = os.path.join(b.work, "collect", "ipfix.dgrams")
    if os.path.exists(path):
        return path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import numpy as np

    from flowtools.collect import v5 as v5mod
    from flowtools.tools.collect import read_datagram_file

    # The same flows as the v5 step: its datagrams decoded back into records.
    batch = v5mod.decode_many(read_datagram_file(_v5_file(b), RuntimeError))[1]
    rec = np.dtype([("sip", ">u4"), ("dip", ">u4"), ("sport", ">u2"), ("dport", ">u2"),
                    ("proto", "u1"), ("flags", "u1"), ("packets", ">u8"), ("bytes", ">u8"),
                    ("start", ">u8"), ("end", ">u8")])
    assert rec.itemsize == 46
    r = np.zeros(len(batch["stime"]), rec)
    r["sip"], r["dip"] = batch["sip"], batch["dip"]
    r["sport"], r["dport"], r["proto"] = batch["sport"], batch["dport"], batch["protocol"]
    r["flags"], r["packets"], r["bytes"] = batch["flags"], batch["packets"], batch["bytes"]
    r["start"] = batch["stime"]
    r["end"] = batch["stime"] + batch["duration"].astype(np.int64)
    fields = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (6, 1), (2, 8), (1, 8), (152, 8),
              (153, 8)]
    tpl = (2, 4 + 4 + 4 * len(fields), 256, len(fields))
    tset = np.array(tpl, ">u2").tobytes() + np.array(fields, ">u2").tobytes()
    export = int(batch["stime"].max() // 1000)

    def message(body):
        return np.array([10, 16 + len(body)], ">u2").tobytes() + \
            np.array([export, 0, 1], ">u4").tobytes() + body

    grams = [message(tset)]
    raw = r.tobytes()
    for at in range(0, len(r), 30):
        chunk = raw[at * 46:(at + 30) * 46]
        grams.append(message(np.array([256, 4 + len(chunk)], ">u2").tobytes() + chunk))
    with open(path, "wb") as f:
        for g in grams:
            f.write(len(g).to_bytes(2, "big") + g)
    return path


def _send(b, path, kind, port, rate, seconds):
    out = subprocess.run([sys.executable, "-c", SENDER, path, kind, "127.0.0.1", str(port),
                          str(rate), str(seconds)], capture_output=True, text=True,
                         timeout=seconds * 4 + 60)
    if out.returncode != 0:
        raise RuntimeError(f"sender failed: {out.stderr.strip()[-300:]}")
    sent, took = out.stdout.split()
    return int(sent), float(took)


def _pyflow_run(b, path, kind, rate, seconds):
    """(stored, lost by sequence, Timing, sender seconds) of pyflow-collect at one rate."""
    root = os.path.join(b.work, "collect", "pyflow-archive")
    shutil.rmtree(root, ignore_errors=True)
    log = os.path.join(b.work, "collect", "pyflow-collect.log")
    port = nfdump.free_udp_port()
    probe = "netflow-v5" if kind == "v5" else "ipfix"
    cmd = [*b.pyflow("pyflow-collect"), f"--data-rootdir={root}", "--sensor=S0",
           f"--probe-type={probe}", f"--listen=127.0.0.1:{port}", "--socket-buffer=32m",
           f"--log-destination={log}"]
    if os.path.exists(log):
        os.unlink(log)
    proc = Spawned(cmd, env=b.env)
    deadline = time.monotonic() + 30
    while not (os.path.exists(log) and "listening" in open(log).read()):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.terminate()
            proc.wait(30)
            raise RuntimeError("pyflow-collect did not start: " + open(log).read()[-300:])
        time.sleep(0.05)
    try:
        sent, took = _send(b, path, kind, port, rate, seconds)
        _wait_drained(port)
    finally:
        proc.terminate()
        t = proc.wait(600)
    text = open(log).read()
    m = re.search(r"stopped: (\d+) records", text)
    # the counters logged at the stop: the last line of each exporter
    last = {}
    for hit in re.finditer(r"exporter (\S+): .*?lost=(\d+)", text):
        last[hit.group(1)] = int(hit.group(2))
    lost = sum(last.values())
    stored = int(m.group(1)) if m else 0
    shutil.rmtree(root, ignore_errors=True)
    return sent, stored, lost, t, took


def _nfcapd_run(b, path, kind, rate, seconds):
    flowdir = os.path.join(b.work, "collect", "nfcapd")
    shutil.rmtree(flowdir, ignore_errors=True)
    port = nfdump.free_udp_port()
    nf = nfdump.Collector(flowdir, port, os.path.join(b.work, "collect", "nfcapd.log"),
                          bufsize=32 * 1024 * 1024)
    nf.start()
    try:
        sent, took = _send(b, path, kind, port, rate, seconds)
        nf.drain()
    finally:
        t = nf.stop()
    st = nfdump.stats(["-R", flowdir])
    shutil.rmtree(flowdir, ignore_errors=True)
    return sent, st["Flows"], st.get("Sequence failures", 0), t, took


def _wait_drained(port, timeout=60):
    deadline = time.monotonic() + timeout
    empty = 0
    while time.monotonic() < deadline and empty < 3:
        stats = nfdump.udp_socket_stats(port)
        empty = empty + 1 if stats is None or stats[0] == 0 else 0
        time.sleep(0.1)


def _ladder(b, step, kind, bar):
    path = _v5_file(b) if kind == "v5" else _ipfix_file(b)
    seconds = _seconds()
    runners = [("pyflow-collect", _pyflow_run)]
    if b.need_peer():
        runners.append(("nfcapd", _nfcapd_run))
    best = {}
    for name, run in runners:
        for rate in _rates():
            b.say(f"{name}: {kind} at {rate:,} records/s for {seconds:.0f} s")
            sent, stored, lost, t, took = run(b, path, kind, rate, seconds)
            ok = stored == sent and lost == 0
            cpu = t.cpu / max(stored, 1) * 1e6
            b.report.add(Result(step, f"{kind} at {rate // 1000}k/s, {seconds:.0f} s", name,
                                seconds=took, records=stored, max_rss=t.max_rss, cpu=t.cpu,
                                note=f"sent {sent:,}, stored {stored:,}, seq. lost {lost:,}; "
                                     f"{cpu:.2f} CPU s per 1M records"
                                     + ("" if ok else "; LOSS")))
            if not ok:
                break
            best[name] = rate
    mine = best.get("pyflow-collect", 0)
    peer = best.get("nfcapd")
    b.report.check(f"pyflow-collect {kind} >= {bar // 1000}k records/s without loss",
                   mine >= bar, f"highest loss-free rate {mine:,}/s"
                   + (f"; nfcapd {peer:,}/s" if peer is not None else ""))


def step_collect(b):
    """NetFlow v5 into pyflow-collect and nfcapd: the highest loss-free rate, CPU per 1M."""
    _ladder(b, "collect", "v5", V5_BAR)


def step_collect_ipfix(b):
    """IPFIX (one fixed template) into pyflow-collect and nfcapd: highest loss-free rate."""
    _ladder(b, "collect_ipfix", "ipfix", IPFIX_BAR)

