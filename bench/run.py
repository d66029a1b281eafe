#!/usr/bin/env python3
"""pyflow side by side with its peers (nfdump 1.7) on the same generated flows.

    .venv/bin/python bench/run.py --flows=10000000 [--reuse] [--only=read,disk] [--rate=R]

Steps (each a function below, registered in STEPS; add new ones the same way):
  write    pyflow-gen writes N flows into an hourly archive (records/s; the write bar, >= 3M/s,
           is for pyflow-gen or pyflow-pack: see stream)
  nfdump   the same flows as NetFlow v5 over UDP into nfcapd, paced so none is lost, and
           the stored count checked against pyflow's IPv4 flows
  read     pyflow-cat of every archive file vs nfdump -R DIR -q -o null, best of 3
           (bar: pyflow >= 1.5x nfdump's records/s)
  disk     bytes per flow: the pyflow archive vs nfcapd's files and their recompressions
           (bar: pyflow <= 12 B/flow and <= nfdump's smallest)
  startup  pyflow-cat --version, best of 10 (bar < 0.15 s)
  memory   peak RSS of pyflow-cat reading a stream of N vs N/10 records (must not grow)
  stream   pyflow-pack of the N records from a time-ordered stream (write bar >= 3M/s) and
           from the archive's files concatenated; pyflow-cat of one stream file
  text     pyflow-cut and pyflow-tuc (text out and in) vs nfdump -o csv
  sort     pyflow-sort --fields=sip,stime of the stream: --sort-buffer-size=512M (runs in
           temporary files; bars: >= 2M records/s, peak RSS <= 512 MiB + 200 MiB) and the
           default buffer (all in memory at 10M)
  filter   pyflow-filter --proto=6 --dport=445 to a file vs nfdump -w (bar: 2x records/s)
  select   one hour and an outside /24 vs nfdump -t (bar: 10x faster)
  unique   pyflow-filter --unique=sip,dip over the archive (bar: 10M records/s)
  setops   pyflow-settool union/intersect/difference of two 5M-address sets (bar: < 2 s)
  bag      pyflow-bag | pyflow-bagtool --maxcounter=10 --coverset vs nfdump -A srcip
           (bars: 5x records/s, same sources, <= 40 B per key)
  stats    top-10 sIP and top-10 TCP dPort vs nfdump -s (bars: 2x records/s)
  uniq     --fields=sip --values=records,distinct:dip (bars: 3M records/s, < 60 B per key)
  count    pyflow-count --bin-size=300 over the archive (nfdump -I totals for scale)
  match    pyflow-match of 1M+1M generated records (bar: 500k records/s)
  collect  NetFlow v5 into pyflow-collect and nfcapd: highest loss-free rate (bar: 300k/s)
  collect-ipfix  IPFIX with a fixed template, the same (bar: 200k/s)

Work files go to bench/work/ (recreated each run; --reuse keeps the archive and the nfcapd
capture when they were made for the same --flows). Results: bench/results/latest.json.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from importlib import metadata

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import analysis_steps  # noqa: E402
import bag_steps  # noqa: E402
import collect_steps  # noqa: E402
import filter_steps  # noqa: E402
import match_steps  # noqa: E402
import nfdump  # noqa: E402
import set_steps  # noqa: E402
import silk_steps  # noqa: E402
from harness import (  # noqa: E402
    DEVNULL,
    Report,
    Result,
    best_of,
    fmt_bytes,
    fmt_count,
    fmt_rate,
    fmt_seconds,
    timed,
    timed_capture,
)

GEN_ARGS = ["--seed=1", "--start-date=2024/03/01", "--hours=72", "--sensors=S0,S1,S2"]
WRITE_BAR = 3_000_000          # records/s
READ_BAR = 1.5                 # pyflow records/s over nfdump's
BYTES_BAR = 12.0               # bytes per flow
STARTUP_BAR = 0.15             # seconds
MEMORY_SLACK = (0.20, 16 << 20)  # N-record peak may exceed the N/10 one by 20% or 16 MiB
SORT_BAR = 2_000_000           # records/s
SORT_BUFFER = 512 << 20        # --sort-buffer-size of the timed sort
SORT_SLACK = 200 << 20         # its peak RSS may exceed the buffer by this much


class Bench:
    """State shared by the steps: options, paths, commands, the report, cached facts."""

    def __init__(self, args):
        self.args = args
        self.gen_args = GEN_ARGS
        self.flows = args.flows
        self.work = os.path.abspath(args.work)
        self.archive = os.path.join(self.work, "archive")
        self.capture = os.path.join(self.work, "nfcapd")
        self.list_file = os.path.join(self.work, "archive-files.txt")
        self.report = Report()
        self.say = self.report.say
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("SILK_", "PYFLOW_"))}
        self.peer = None          # True/False once nfdump's availability is known
        self.archive_meta = None
        self.capture_meta = None
        self._pyflow = {}

    # -- commands ---------------------------------------------------------------------------

    def pyflow(self, tool):
        """argv prefix of a pyflow tool: the venv's console script, else bin/ with this
        interpreter."""
        if tool not in self._pyflow:
            script = os.path.join(os.path.dirname(sys.executable), tool)
            if os.access(script, os.X_OK):
                self._pyflow[tool] = [script]
            else:
                self.say(f"note: {script} missing (run '.venv/bin/pip install -e .'); "
                         f"using {sys.executable} bin/{tool}")
                self._pyflow[tool] = [sys.executable, os.path.join(ROOT, "bin", tool)]
        return self._pyflow[tool]

    def gen(self, flows, *extra):
        return [*self.pyflow("pyflow-gen"), f"--flows={flows}", *GEN_ARGS, *extra]

    def run(self, cmd, **kw):
        """timed_capture in the bench environment; a failure is raised with its stderr."""
        t, err = timed_capture(cmd, env=self.env, **kw)
        if t.returncode != 0:
            raise StepFailed(f"{' '.join(map(str, cmd))} exited {t.returncode}: "
                             + (err.strip()[-800:] or "(no message)"))
        return t, err

    def need_peer(self):
        if self.peer is None:
            self.peer = nfdump.ensure_installed(self.say)
        return self.peer

    # -- the generated archive --------------------------------------------------------------

    def archive_files(self):
        """Flow files of the archive (ROOT/TYPE/YYYY/MM/DD/FILE), sorted."""
        out = []
        for dirpath, _, names in os.walk(self.archive):
            depth = os.path.relpath(dirpath, self.archive).count(os.sep)
            if depth == 3:
                out.extend(os.path.join(dirpath, n) for n in names if not n.startswith("."))
        return sorted(out)

    def need_archive(self, report_write=False):
        """Build the archive (timed) unless a reusable one is there; returns its meta."""
        if self.archive_meta is not None:
            return self.archive_meta
        meta_path = os.path.join(self.work, "archive.json")
        meta = _load_json(meta_path)
        if meta and meta.get("flows") == self.flows and os.path.isdir(self.archive):
            self.say(f"reusing the archive of {self.flows:,} flows in {self.archive} "
                     f"(write timing below is from the run that built it)")
            reused = True
        else:
            shutil.rmtree(self.archive, ignore_errors=True)
            cmd = self.gen(self.flows, f"--data-rootdir={self.archive}", "--verbose")
            self.say("$ " + " ".join(cmd))
            t, err = self.run(cmd)
            files = self.archive_files()
            meta = {"flows": self.flows, "seconds": t.seconds, "max_rss": t.max_rss,
                    "cpu": t.cpu, "files": len(files),
                    "bytes": sum(os.path.getsize(f) for f in files),
                    "generated": _parse_int(err, r"(\d+) flows generated")}
            reused = False
        with open(self.list_file, "w") as f:
            f.writelines(p + "\n" for p in self.archive_files())
        if report_write or not reused:
            rate = self.flows / meta["seconds"]
            note = f"{meta['files']:,} files" + (", reused" if reused else "")
            if report_write:
                self.report.add(Result("write", "generate + write archive", "pyflow-gen",
                                       seconds=meta["seconds"], records=self.flows,
                                       max_rss=meta["max_rss"], cpu=meta["cpu"], note=note))
                self.report.check("write >= 3M records/s", rate >= WRITE_BAR,
                                  f"{rate / 1e6:.2f} M records/s")
            else:
                self.say(f"archive built in {fmt_seconds(meta['seconds'])} "
                         f"({fmt_rate(rate)} records/s; write step not selected)")
        if meta.get("generated") not in (None, self.flows):
            self.say(f"WARNING: pyflow-gen said it generated {meta['generated']:,} flows, "
                     f"not {self.flows:,}")
        _save_json(meta_path, meta)
        self.archive_meta = meta
        return meta

    def archive_counts(self):
        """Records, IPv4 records and their packet/byte totals, read through the Python API."""
        meta = self.need_archive()
        if "ipv4" not in meta:
            sys.path.insert(0, ROOT)
            from flowtools import read_flows
            t0 = time.perf_counter()
            n = v4 = pkts = byts = 0
            for path in self.archive_files():
                for b in read_flows(path, columns=["packets", "bytes"]):
                    k = len(b["bytes"])
                    n += k
                    mask = ~b["ipv6"] if "ipv6" in b else slice(None)
                    v4 += k if "ipv6" not in b else int(mask.sum())
                    pkts += int(b["packets"][mask].sum())
                    byts += int(b["bytes"][mask].sum())
            meta.update(records=n, ipv4=v4, ipv4_packets=pkts, ipv4_bytes=byts)
            _save_json(os.path.join(self.work, "archive.json"), meta)
            self.say(f"archive scanned through flowtools.read_flows in "
                     f"{fmt_seconds(time.perf_counter() - t0)}: {n:,} records, "
                     f"{v4:,} IPv4")
        return meta

    # -- the nfcapd capture of the same flows -----------------------------------------------

    def need_capture(self, report_rows=False):
        """Send the flows as NetFlow v5 into nfcapd until none is lost (at most 3 tries).

        Returns the capture meta (stored flow count...) or None without a usable capture.
        """
        if self.capture_meta is not None:
            return self.capture_meta
        if not self.need_peer():
            return None
        meta_path = os.path.join(self.work, "nfcapd.json")
        meta = _load_json(meta_path)
        if meta and meta.get("flows") == self.flows and nfdump.files(self.capture):
            self.say(f"reusing the nfcapd capture in {self.capture} "
                     f"({meta['stored']:,} flows stored)")
            if report_rows:
                self._capture_rows(meta, reused=True)
            self.capture_meta = meta
            return meta
        rate = self.args.rate
        for attempt in range(1, 4):
            meta = self._capture_once(rate)
            if meta is None:
                return None
            meta["attempt"] = attempt
            if report_rows:
                self._capture_rows(meta)
            if meta["missing"] <= 0:
                break
            if attempt < 3:
                self.say(f"{meta['missing']:,} of {meta['sent']:,} flows missing at "
                         f"--rate={rate:g}: retrying at {rate / 2:g} flows/s")
                rate /= 2
            else:
                self.say(f"{meta['missing']:,} flows still missing after 3 tries; the "
                         "comparison uses what nfcapd stored")
        _save_json(meta_path, meta)
        if not report_rows:
            self.say(f"nfcapd stored {meta['stored']:,} of the {fmt_count(meta['sent'])} "
                     f"flows sent at --rate={meta['rate']:g}")
        self.capture_meta = meta
        return meta

    def _capture_once(self, rate):
        shutil.rmtree(self.capture, ignore_errors=True)
        port = nfdump.free_udp_port()
        collector = nfdump.Collector(self.capture, port,
                                     os.path.join(self.work, "nfcapd.log"))
        cmd = self.gen(self.flows, "--no-archive", f"--netflow-v5=127.0.0.1:{port}",
                       f"--rate={rate:g}", "--verbose")
        self.say("$ " + " ".join(collector.cmd))
        self.say("$ " + " ".join(cmd))
        try:
            collector.start()
            t, err = timed_capture(cmd, env=self.env)
            queue = collector.drain()
        finally:
            ct = collector.stop()
        if t.returncode != 0:
            self.say(f"pyflow-gen (NetFlow v5) failed with status {t.returncode}: "
                     + (err.strip()[-800:] or "(no message)"))
            self.say("no nfdump capture: nfdump parts are skipped")
            return None
        sent = _parse_int(err, r"(\d+) flows in \d+ NetFlow")
        if sent is None:
            self.say("pyflow-gen --verbose did not say how many flows went out in v5 "
                     f"datagrams: {err.strip()[-300:]!r}")
        st = nfdump.stats(["-R", self.capture])
        files = nfdump.files(self.capture)
        logged = collector.logged_totals()
        return {
            "flows": self.flows, "rate": rate, "port": port,
            "sent": sent, "generated": _parse_int(err, r"(\d+) flows generated"),
            "datagrams": _parse_int(err, r"flows in (\d+) NetFlow"),
            "ipv6_skipped": _parse_int(err, r"\((\d+) IPv6 flows"),
            "send_seconds": t.seconds, "send_cpu": t.cpu, "send_max_rss": t.max_rss,
            "nfcapd_seconds": ct.seconds, "nfcapd_cpu": ct.cpu,
            "nfcapd_max_rss": ct.max_rss, "nfcapd_status": ct.returncode,
            "socket_drops": queue[1] if queue else None,
            "stored": st["Flows"], "stored_packets": st.get("Packets"),
            "stored_bytes": st.get("Bytes"), "sequence_failures": st.get("Sequence failures"),
            "logged": logged, "files": len(files),
            "bytes": sum(os.path.getsize(f) for f in files),
            "missing": (sent - st["Flows"]) if sent is not None else 0,
        }

    def _capture_rows(self, m, reused=False):
        tag = ", reused" if reused else ""
        self.report.add(Result(
            "nfdump", "NetFlow v5 export (paced)", "pyflow-gen", seconds=m["send_seconds"],
            records=m["sent"], max_rss=m["send_max_rss"], cpu=m["send_cpu"],
            note=f"--rate={m['rate']:g}, {fmt_count(m['datagrams'])} datagrams{tag}"))
        self.report.add(Result(
            "nfdump", "NetFlow v5 collect", "nfcapd", cpu=m["nfcapd_cpu"],
            records=m["stored"], max_rss=m["nfcapd_max_rss"],
            note=f"stored {fmt_count(m['stored'])}, missing {fmt_count(m['missing'])}, "
                 f"socket drops {fmt_count(m['socket_drops'])}, seq. failures "
                 f"{fmt_count(m['sequence_failures'])}{tag}"))


class StepFailed(Exception):
    pass


# -- the steps ------------------------------------------------------------------------------

def step_write(b):
    """pyflow-gen writing N flows into an archive."""
    b.need_archive(report_write=True)


def step_nfdump(b):
    """The same flows into nfcapd over NetFlow v5; the stored count checked."""
    if not b.need_peer():
        b.report.check("nfdump stored every IPv4 flow", None, "nfdump not available")
        return
    meta = b.need_capture(report_rows=True)
    if meta is None:
        b.report.check("nfdump stored every IPv4 flow", None, "no capture")
        return
    counts = b.archive_counts()
    sent, stored, v4 = meta["sent"], meta["stored"], counts["ipv4"]
    detail = (f"archive: {counts['records']:,} records, {v4:,} IPv4; pyflow-gen sent "
              f"{fmt_count(sent)} in v5 datagrams ({fmt_count(meta['ipv6_skipped'])} IPv6 "
              f"skipped); nfcapd stored {stored:,}")
    if sent is not None and sent != stored:
        detail += f" ({sent - stored:+,} missing)"
    if sent is not None and sent != v4:
        detail += f"; pyflow-gen's v5 count differs from the archive's IPv4 count by " \
                  f"{sent - v4:+,}"
    b.report.check("nfdump stored every IPv4 flow", sent == stored == v4, detail)
    same = (meta["stored_packets"] == counts["ipv4_packets"]
            and meta["stored_bytes"] == counts["ipv4_bytes"])
    b.report.check("same packet and byte totals", same,
                   f"archive IPv4: {counts['ipv4_packets']:,} packets, "
                   f"{counts['ipv4_bytes']:,} bytes; nfdump: "
                   f"{fmt_count(meta['stored_packets'])} packets, "
                   f"{fmt_count(meta['stored_bytes'])} bytes")


def step_read(b):
    """Every record decoded: pyflow-cat to /dev/null vs nfdump -o null, best of 3."""
    meta = b.need_archive()
    cmd = [*b.pyflow("pyflow-cat"), f"--xargs={b.list_file}", "--output-path=/dev/null",
           "--print-filenames"]
    b.say("$ " + " ".join(cmd) + "   (best of 3)")
    t, peak, err = best_of(3, cmd, env=b.env)
    if t.returncode != 0:
        raise StepFailed(f"pyflow-cat exited {t.returncode}: {err.strip()[-500:]}")
    counted = sum(int(line.rsplit(": ", 1)[1].split()[0]) for line in err.splitlines()
                  if line.endswith(" records"))
    note = f"{meta['files']:,} files"
    if counted != b.flows:
        note += f"; pyflow-cat counted {counted:,} records, not {b.flows:,}"
    mine = b.report.add(Result("read", "full read, all records", "pyflow-cat",
                               seconds=t.seconds, records=counted, max_rss=peak,
                               cpu=t.cpu, note=note))
    cap = b.need_capture()
    if cap is None:
        b.report.check("read >= 1.5x nfdump records/s", None, "nfdump not available")
        return
    cmd = nfdump.read_all(["-R", b.capture])
    b.say("$ " + " ".join(cmd) + "   (best of 3; '-o null' decodes every record and "
          "prints none)")
    t, peak, err = best_of(3, cmd, env=b.env)
    if t.returncode != 0:
        raise StepFailed(f"nfdump exited {t.returncode}: {err.strip()[-500:]}")
    peer = Result("read", "full read, all records", "nfdump -o null", seconds=t.seconds,
                  records=cap["stored"], max_rss=peak, cpu=t.cpu,
                  note=f"{cap['files']} file(s), uncompressed")
    peer.ratio, peer.ratio_of = mine.records_per_sec / peer.records_per_sec, "rec/s"
    b.report.add(peer)
    b.report.check("read >= 1.5x nfdump records/s", peer.ratio >= READ_BAR,
                   f"pyflow {mine.records_per_sec / 1e6:.2f} M/s vs nfdump "
                   f"{peer.records_per_sec / 1e6:.2f} M/s = {peer.ratio:.2f}x")


_FLOOR_SCRIPT = r"""
import sys, time
import zstandard
from flowtools import container, io
names = open(sys.argv[1]).read().split()
payloads = []
for name in names:
    reader = io.open_flows(name, threads=1)
    for pending in reader.blocks():
        block = pending.load()
        payloads.append((block.payload, block.header))
    reader.close()
d = zstandard.ZstdDecompressor()
t = time.process_time()
for payload, header in payloads:
    if "z" in header:
        d.decompress(payload, max_output_size=header["z"])
    else:
        at = 0
        for c in header["cols"]:
            if c[5] and c[1] != "c":
                d.decompress(payload[at: at + c[5]], max_output_size=c[2] * c[7])
            at += c[5]
zstd_s = time.process_time() - t
t = time.process_time()
for payload, header in payloads:
    container.crc32(payload)
print(zstd_s, time.process_time() - t)
"""


def step_floor(b):
    """The ceiling of any Python reader of this archive: interpreter + numpy start-up plus
    the zstandard decompression and CRC of every block, spread over the cores, with the
    decoding itself free. A read bar above this ceiling cannot be met by decoding cleverly."""
    b.need_archive()
    cmd = [sys.executable, "-c", "import numpy, zstandard, msgpack"]
    env = dict(b.env, OPENBLAS_NUM_THREADS="1")
    t, peak, _ = best_of(5, cmd, env=env)
    start = t.seconds
    b.report.add(Result("floor", "python -c 'import numpy, zstandard, msgpack'", "python",
                        seconds=start, max_rss=peak, cpu=t.cpu, note="best of 5"))
    out = subprocess.run([sys.executable, "-c", _FLOOR_SCRIPT, b.list_file], env=env,
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    zstd_s, crc_s = (float(x) for x in out.split())
    cores = os.cpu_count() or 1
    b.report.add(Result("floor", "zstd decompression of every block (1 core)", "zstandard",
                        seconds=zstd_s, records=b.flows, cpu=zstd_s))
    b.report.add(Result("floor", "CRC32 of every block (1 core)", "container.crc32",
                        seconds=crc_s,
                        records=b.flows, cpu=crc_s))
    ceiling = b.flows / (start + (zstd_s + crc_s) / cores)
    b.report.add(Result("floor", f"ceiling: start-up + (zstd + CRC) / {cores} cores",
                        "any Python reader", seconds=b.flows / ceiling, records=b.flows,
                        note="decoding free; the read bar needs 1.5x nfdump"))


def step_disk(b):
    """Bytes per flow on disk: the pyflow archive vs nfcapd's files and recompressions."""
    meta = b.need_archive()
    ours = meta["bytes"] / b.flows
    b.report.add(Result("disk", "bytes on disk", "pyflow archive", records=b.flows,
                        value=ours, unit="B/flow",
                        note=f"{meta['files']:,} files, {fmt_bytes(meta['bytes'])}, zstd"))
    cap = b.need_capture()
    if cap is None:
        b.report.check("bytes/flow <= 12 and <= nfdump's smallest", ours <= BYTES_BAR,
                       f"pyflow {ours:.2f} B/flow; nfdump not available")
        return
    sizes = {}

    def peer_row(label, nbytes, t=None, note=""):
        bpf = nbytes / cap["stored"]
        sizes[label] = bpf
        b.report.add(Result("disk", "bytes on disk" if t is None else "recompress + size",
                            label, seconds=t.seconds if t else None, records=cap["stored"],
                            max_rss=t.max_rss if t else None, cpu=t.cpu if t else None,
                            value=bpf, unit="B/flow", ratio=ours / bpf, ratio_of="B/flow",
                            note=note or fmt_bytes(nbytes)))

    peer_row("nfcapd (as written)", cap["bytes"],
             note=f"{fmt_bytes(cap['bytes'])}, uncompressed")
    for mode in nfdump.COMPRESSION_MODES:
        out = os.path.join(b.work, f"nfdump-{mode}.nf")
        t, used = nfdump.recompress(b.capture, mode, out)
        if t is None:
            b.say(f"nfdump {nfdump.version()} rejects {mode}: {used}; skipped")
            b.report.add(Result("disk", "recompress + size", f"nfdump {mode}",
                                note="not supported by this nfdump: skipped"))
            continue
        flows = nfdump.stats(["-r", out])["Flows"]
        note = f"{fmt_bytes(os.path.getsize(out))}, nfdump -R DIR {' '.join(used)} -w F"
        if flows != cap["stored"]:
            note += f"; holds {flows:,} flows, not {cap['stored']:,}"
        peer_row(f"nfdump {mode}", os.path.getsize(out), t, note)
    best = min(sizes, key=sizes.get)
    b.report.check("bytes/flow <= 12 and <= nfdump's smallest",
                   ours <= BYTES_BAR and ours <= sizes[best],
                   f"pyflow {ours:.2f} B/flow; nfdump's smallest {sizes[best]:.2f} B/flow "
                   f"({best})")


def step_startup(b):
    """Start-up time: pyflow-cat --version, best of 10 (nfdump -V alongside)."""
    cmd = [*b.pyflow("pyflow-cat"), "--version"]
    t, peak, err = best_of(10, cmd, env=b.env, stdout=DEVNULL)
    mine = b.report.add(Result("startup", "--version, best of 10", "pyflow-cat",
                               seconds=t.seconds, max_rss=peak, cpu=t.cpu))
    if t.returncode != 0:
        raise StepFailed(f"pyflow-cat --version exited {t.returncode}: {err.strip()[-300:]}")
    if nfdump.available():
        pt, ppeak, _ = best_of(10, ["nfdump", "-V"], env=b.env)
        b.report.add(Result("startup", "-V, best of 10", "nfdump", seconds=pt.seconds,
                            max_rss=ppeak, cpu=pt.cpu, ratio=mine.seconds / pt.seconds,
                            ratio_of="time"))
    b.report.check("start-up < 0.15 s", t.seconds < STARTUP_BAR,
                   f"pyflow-cat --version {t.seconds * 1000:.0f} ms")


def step_memory(b):
    """Peak RSS of pyflow-cat reading a piped stream of N records vs N/10 records."""
    b.need_archive()
    full = os.path.join(b.work, "stream-full.pf")
    tenth = os.path.join(b.work, "stream-tenth.pf")
    n10 = max(1, b.flows // 10)
    for path in (full, tenth):
        if os.path.exists(path):
            os.unlink(path)
    cmd = [*b.pyflow("pyflow-cat"), f"--xargs={b.list_file}", f"--output-path={full}"]
    b.say("$ " + " ".join(cmd))
    t, _ = b.run(cmd)
    b.report.add(Result("memory", "archive -> one stream file", "pyflow-cat",
                        seconds=t.seconds, records=b.flows, max_rss=t.max_rss, cpu=t.cpu,
                        note=fmt_bytes(os.path.getsize(full))))
    b.run(b.gen(n10, f"--output-path={tenth}"))
    peaks = {}
    for label, path, n in (("N", full, b.flows), ("N/10", tenth, n10)):
        cmd = [*b.pyflow("pyflow-cat"), "-", "--output-path=/dev/null"]
        b.say(f"$ cat {path} | " + " ".join(cmd))
        producer = subprocess.Popen(["cat", path], stdout=subprocess.PIPE)
        try:
            t = timed(cmd, stdin=producer.stdout, env=b.env)
        finally:
            producer.stdout.close()
            producer.wait()
        if t.returncode != 0:
            raise StepFailed(f"pyflow-cat - exited {t.returncode} reading {path}")
        peaks[label] = t.max_rss
        b.report.add(Result("memory", f"read piped stream, {label} records", "pyflow-cat",
                            seconds=t.seconds, records=n, max_rss=t.max_rss, cpu=t.cpu))
    grow = peaks["N"] - peaks["N/10"]
    bounded = grow <= max(MEMORY_SLACK[0] * peaks["N/10"], MEMORY_SLACK[1])
    b.report.check(
        "memory does not grow with input size", bounded,
        f"peak RSS {fmt_bytes(peaks['N'])} for {b.flows:,} records vs "
        f"{fmt_bytes(peaks['N/10'])} for {n10:,}: "
        + ("bounded, it does not grow with input size" if bounded
           else f"it GROWS with input size (+{fmt_bytes(grow)})"))


def step_stream(b):
    """pyflow-pack writing N records from one stream file into a fresh archive, best of 3:
    a time-ordered stream as pyflow-gen or a collector writes it (every block spans many
    files: the write bar is checked on it) and the archive's own files concatenated (each
    block one file's); then pyflow-cat reading a stream (large blocks, one file)."""
    b.need_archive()
    stream = os.path.join(b.work, "stream-full.pf")
    if not os.path.exists(stream):
        b.run([*b.pyflow("pyflow-cat"), f"--xargs={b.list_file}", f"--output-path={stream}"])
    timed = os.path.join(b.work, "stream-time.pf")
    if not os.path.exists(timed):
        b.run(b.gen(b.flows, f"--output-path={timed}"))
    packed = os.path.join(b.work, "packed")
    for label, path in (("time-ordered stream", timed), ("archive-ordered stream", stream)):
        cmd = [*b.pyflow("pyflow-pack"), f"--data-rootdir={packed}", path]
        b.say("$ " + " ".join(cmd) + "   (best of 3, into a fresh archive each time)")
        best = None
        for _ in range(3):
            shutil.rmtree(packed, ignore_errors=True)
            t, _ = b.run(cmd)
            best = t if best is None or t.seconds < best.seconds else best
        shutil.rmtree(packed, ignore_errors=True)
        b.report.add(Result("stream", f"pack a {label} into an archive", "pyflow-pack",
                            seconds=best.seconds, records=b.flows, max_rss=best.max_rss,
                            cpu=best.cpu, note=fmt_bytes(os.path.getsize(path))))
        if path == timed:
            rate = b.flows / best.seconds
            b.report.check("write (pyflow-pack) >= 3M records/s", rate >= WRITE_BAR,
                           f"{rate / 1e6:.2f} M records/s from a time-ordered stream")
    cmd = [*b.pyflow("pyflow-cat"), stream, "--output-path=/dev/null"]
    b.say("$ " + " ".join(cmd) + "   (best of 3)")
    t, peak, _ = best_of(3, cmd, env=b.env)
    b.report.add(Result("stream", "full read of one stream file", "pyflow-cat",
                        seconds=t.seconds, records=b.flows, max_rss=peak, cpu=t.cpu,
                        note=fmt_bytes(os.path.getsize(stream))))


def step_text(b):
    """Text out and in: pyflow-cut (default layout; 5 fields delimited) vs nfdump -o csv,
    and pyflow-tuc importing a CSV of the generated flows."""
    b.need_archive()
    stream = os.path.join(b.work, "stream-full.pf")
    if not os.path.exists(stream):
        b.run([*b.pyflow("pyflow-cat"), f"--xargs={b.list_file}", f"--output-path={stream}"])
    runs = [("pyflow-cut, default fields", [*b.pyflow("pyflow-cut"), stream]),
            ("pyflow-cut, 5 fields --delimited",
             [*b.pyflow("pyflow-cut"), "--fields=sip,dip,sport,dport,protocol", "--delimited",
              stream])]
    for label, cmd in runs:
        b.say("$ " + " ".join(cmd) + " > /dev/null")
        t, _ = b.run(cmd)
        b.report.add(Result("text", label, "pyflow-cut", seconds=t.seconds, records=b.flows,
                            max_rss=t.max_rss, cpu=t.cpu))
    cap = b.need_capture()
    if cap is not None:
        cmd = ["nfdump", "-R", b.capture, "-q", "-o", "csv"]
        b.say("$ " + " ".join(cmd) + " > /dev/null")
        t, _ = b.run(cmd)
        b.report.add(Result("text", "csv output", "nfdump -o csv", seconds=t.seconds,
                            records=cap["stored"], max_rss=t.max_rss, cpu=t.cpu))
    if os.path.exists(os.path.join(ROOT, "bin", "pyflow-tuc")):
        csv = os.path.join(b.work, "flows.csv")
        with open(csv, "wb") as f:
            subprocess.run([*b.pyflow("pyflow-cut"), "--fields=sip,dip,sport,dport,protocol,"
                            "packets,bytes,stime", "--output-format=csv", stream], stdout=f,
                           check=True, env=b.env)
        cmd = [*b.pyflow("pyflow-tuc"), "--input-format=csv", csv, "--output-path=/dev/null"]
        b.say("$ " + " ".join(cmd))
        t, _ = b.run(cmd)
        b.report.add(Result("text", "CSV import", "pyflow-tuc", seconds=t.seconds,
                            records=b.flows, max_rss=t.max_rss, cpu=t.cpu,
                            note=fmt_bytes(os.path.getsize(csv))))
        os.unlink(csv)


def step_sort(b):
    """pyflow-sort --fields=sip,stime of the N-record stream, with a 512 MiB buffer (sorted
    runs through temporary files) and with the default buffer (in memory at 10M)."""
    b.need_archive()
    stream = os.path.join(b.work, "stream-full.pf")
    if not os.path.exists(stream):
        b.run([*b.pyflow("pyflow-cat"), f"--xargs={b.list_file}", f"--output-path={stream}"])
    temp = os.path.join(b.work, "sort-tmp")
    os.makedirs(temp, exist_ok=True)
    rows = {}
    for label, size in (("512M buffer, external", "--sort-buffer-size=512M"),
                        ("default buffer (1920m)", None)):
        cmd = [*b.pyflow("pyflow-sort"), "--fields=sip,stime", f"--temp-directory={temp}",
               *([size] if size else []), stream, "--output-path=/dev/null"]
        b.say("$ " + " ".join(cmd))
        t, _ = b.run(cmd)
        left = os.listdir(temp)
        rows[label] = b.report.add(Result(
            "sort", f"sort by sip,stime, {label}", "pyflow-sort", seconds=t.seconds,
            records=b.flows, max_rss=t.max_rss, cpu=t.cpu,
            note="temporary files left behind!" if left else ""))
    shutil.rmtree(temp, ignore_errors=True)
    ext = rows["512M buffer, external"]
    b.report.check("sort >= 2M records/s (512M buffer)", ext.records_per_sec >= SORT_BAR,
                   f"{ext.records_per_sec / 1e6:.2f} M records/s")
    b.report.check("sort peak RSS <= buffer + 200 MiB", ext.max_rss <= SORT_BUFFER + SORT_SLACK,
                   f"peak RSS {fmt_bytes(ext.max_rss)} with --sort-buffer-size=512M")


STEPS = {
    "write": step_write,
    "nfdump": step_nfdump,
    "read": step_read,
    "disk": step_disk,
    "floor": step_floor,
    "startup": step_startup,
    "memory": step_memory,
    "stream": step_stream,
    "text": step_text,
    "silk": silk_steps.step_silk,
    "sort": step_sort,
    "filter": filter_steps.step_filter,
    "select": filter_steps.step_select,
    "unique": filter_steps.step_unique,
    "setops": set_steps.step_setops,
    "bag": bag_steps.step_bag,
    "stats": analysis_steps.step_stats,
    "uniq": analysis_steps.step_uniq,
    "count": match_steps.step_count,
    "match": match_steps.step_match,
    "collect": collect_steps.step_collect,
    "collect-ipfix": collect_steps.step_collect_ipfix,
}


# -- machine facts, work dir, main ----------------------------------------------------------

def machine_facts(b):
    facts = {"nproc": len(os.sched_getaffinity(0)), "cpus_online": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            facts["cpu"] = next((line.split(":", 1)[1].strip() for line in f
                                 if line.startswith("model name")), platform.processor())
        with open("/proc/meminfo") as f:
            facts["memory"] = f.readline().split(":", 1)[1].strip()
    except OSError:
        pass
    facts["loadavg_start"] = _loadavg()
    facts["kernel"] = platform.release()
    facts["python"] = platform.python_version()
    for dist in ("numpy", "zstandard", "pyflow"):
        try:
            facts[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            facts[dist] = None
    try:
        out = subprocess.run([*b.pyflow("pyflow-cat"), "--version"], capture_output=True,
                             text=True, env=b.env)
        facts["pyflow-cat --version"] = (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError):
        pass
    facts["nfdump"] = nfdump.version() if nfdump.available() else None
    facts["git"] = _git_head()
    return facts


def _git_head():
    try:
        return subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True).stdout.strip() or None
    except OSError:
        return None


def prepare_work(b):
    """Recreate the work dir; with --reuse keep the archive/capture made for these --flows."""
    keep = set()
    if b.args.reuse:
        for name, meta in (("archive", "archive.json"), ("nfcapd", "nfcapd.json")):
            m = _load_json(os.path.join(b.work, meta))
            if m and m.get("flows") == b.flows:
                keep |= {name, meta}
    if os.path.isdir(b.work):
        for name in os.listdir(b.work):
            if name not in keep:
                path = os.path.join(b.work, name)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
    os.makedirs(b.work, exist_ok=True)


def _loadavg():
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return None


def _load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _save_json(path, data):
    with open(path, "w") as f:
        json.dump(data, f, indent=1)


def _parse_int(text, pattern):
    import re
    m = re.search(pattern, text)
    return int(m.group(1)) if m else None


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 2)[2])
    p.add_argument("--flows", type=int, default=10_000_000, metavar="N",
                   help="flows to generate (default 10000000)")
    p.add_argument("--reuse", action="store_true",
                   help="keep the archive and nfcapd capture of a previous run with the "
                        "same --flows")
    p.add_argument("--only", metavar="STEP[,STEP]",
                   help=f"run only these steps, of {','.join(STEPS)}")
    p.add_argument("--rate", type=float, default=200_000, metavar="R",
                   help="NetFlow v5 flows/s into nfcapd (default 200000; halved on loss)")
    p.add_argument("--work", default=os.path.join(HERE, "work"), help=argparse.SUPPRESS)
    p.add_argument("--json", default=os.path.join(HERE, "results", "latest.json"),
                   metavar="PATH", help="where to write the results (default "
                                        "bench/results/latest.json)")
    args = p.parse_args(argv)
    if args.flows < 10:
        p.error("--flows must be at least 10")
    if args.rate <= 0:
        p.error("--rate must be positive")
    steps = list(STEPS)
    if args.only:
        steps = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = [s for s in steps if s not in STEPS]
        if unknown:
            p.error(f"unknown step(s) {','.join(unknown)}; steps are {','.join(STEPS)}")
    args.steps = steps
    return args


def main(argv=None):
    args = parse_args(argv)
    b = Bench(args)
    r = b.report
    r.params = {"flows": args.flows, "steps": args.steps, "rate": args.rate,
                "reuse": args.reuse, "gen": GEN_ARGS}
    prepare_work(b)
    # as an installed package has them: without, tools would compile the modules changed
    # since the last install on every start (PYTHONDONTWRITEBYTECODE keeps them uncached)
    subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(ROOT, "flowtools")],
                   check=False, stdout=subprocess.DEVNULL)
    r.facts = machine_facts(b)
    r.say("== pyflow benchmark: " + ", ".join(f"{k}={v}" for k, v in r.params.items()))
    r.say("== machine: " + "; ".join(f"{k}: {v}" for k, v in r.facts.items()))
    t0 = time.perf_counter()
    failed = []
    for name in args.steps:
        r.say(f"\n== {name}: {STEPS[name].__doc__.strip()}  (load average {_loadavg()})")
        try:
            STEPS[name](b)
        except (StepFailed, RuntimeError, OSError) as exc:
            failed.append(name)
            r.say(f"step {name} FAILED: {exc}")
            r.check(f"step {name} ran", False, str(exc).splitlines()[0][:300])
    r.facts["bench_seconds"] = round(time.perf_counter() - t0, 1)
    r.facts["loadavg_end"] = _loadavg()
    head = _git_head()
    if head != r.facts.get("git"):
        r.say(f"WARNING: the checkout changed during the run (git {r.facts.get('git')} -> "
              f"{head}): files written before the change were read by newer code")
        r.facts["git_end"] = head
    r.write_json(args.json)
    print("\n== results (pyflow/peer: pyflow's figure over the peer's on that row)")
    print(r.table())
    print("\n== checks")
    print(r.checks_text())
    print(f"\n{len(r.results)} rows in {fmt_seconds(r.facts['bench_seconds'])}; JSON in "
          f"{os.path.relpath(args.json)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
