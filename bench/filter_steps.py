"""Benchmark steps of pyflow-filter (issue 4), side by side with nfdump on the same flows.

  filter   --proto=6 --dport=445 over the whole archive, passing records to a file, vs
           nfdump -R DIR -w FILE 'proto tcp and dst port 445' (bar: 2x nfdump's records/s)
  select   one hour of one day and an outside /24 (--any-cidr) vs nfdump -t and 'net'
           (bar: 10x nfdump's speed, i.e. a tenth of its time)
  unique   --unique=sip,dip over the whole archive (bar: 10M records/s); nfdump's nearest
           equivalent, -A srcip,dstip, for scale
"""

import os
import subprocess

from harness import Result, best_of, fmt_seconds

FILTER_BAR = 2.0
SELECT_BAR = 10.0
UNIQUE_BAR = 10_000_000


class StepFailed(RuntimeError):
    pass


def _run_best(b, cmd, n=3, label=None):
    b.say("$ " + " ".join(cmd) + f"   (best of {n})")
    t, peak, err = best_of(n, cmd, env=b.env)
    if t.returncode != 0:
        raise StepFailed(f"{label or cmd[0]} exited {t.returncode}: {err.strip()[-500:]}")
    return t, peak, err


def _archive_args(b):
    """The archive's metadata and the selection switches naming all of it."""
    import calendar
    import time
    meta = b.need_archive()
    gen = dict(a[2:].split("=", 1) for a in b.gen_args if a.startswith("--"))
    start, hours = gen["start-date"], int(gen["hours"])
    first = calendar.timegm(time.strptime(start, "%Y/%m/%d"))
    last = time.strftime("%Y/%m/%d", time.gmtime(first + (hours - 1) * 3600))
    meta = dict(meta, hours=hours)
    return meta, [f"--data-rootdir={b.archive}", f"--start-date={start}",
                  f"--end-date={last}", "--type=all"]


def _pass_count(text):
    return int(text.split("Pass")[1].split(".")[0])


def step_filter(b):
    """--proto=6 --dport=445 over the archive to a file vs nfdump -w, best of 3."""
    meta, sel = _archive_args(b)
    out = os.path.join(b.work, "filter-445.pf")
    stats = os.path.join(b.work, "filter-445.txt")
    cmd = [*b.pyflow("pyflow-filter"), *sel, "--proto=6", "--dport=445",
           f"--pass={out}", f"--print-statistics={stats}"]
    env = dict(b.env, SILK_CLOBBER="1")
    b.say("$ " + " ".join(cmd) + "   (best of 3)")
    t, peak, err = best_of(3, cmd, env=env)
    if t.returncode != 0:
        raise StepFailed(f"pyflow-filter exited {t.returncode}: {err.strip()[-500:]}")
    with open(stats) as f:
        text = f.read()
    read = int(text.split("Read")[1].split(".")[0])
    passed = _pass_count(text)
    mine = b.report.add(Result("filter", "proto 6, dport 445 -> file", "pyflow-filter",
                               seconds=t.seconds, records=read, max_rss=peak, cpu=t.cpu,
                               note=f"{passed:,} passed; {meta['files']:,} files"))
    cap = b.need_capture()
    if cap is None:
        b.report.check("filter >= 2x nfdump records/s", None, "nfdump not available")
        return
    nf_out = os.path.join(b.work, "filter-445.nf")
    cmd = ["nfdump", "-R", b.capture, "-w", nf_out, "proto tcp and dst port 445"]
    t, peak, _ = _run_best(b, cmd, label="nfdump")
    peer = Result("filter", "proto 6, dport 445 -> file", "nfdump -w", seconds=t.seconds,
                  records=cap["stored"], max_rss=peak, cpu=t.cpu)
    peer.ratio, peer.ratio_of = mine.records_per_sec / peer.records_per_sec, "rec/s"
    counted = subprocess.run(["nfdump", "-r", nf_out, "-q", "-o", "fmt:%pr", "-n", "0"],
                             capture_output=True, text=True, env=b.env).stdout
    nf_passed = len(counted.splitlines())
    peer.note = f"{nf_passed:,} passed (IPv4 only)"
    b.report.add(peer)
    for path in (out, nf_out):
        if os.path.exists(path):
            os.unlink(path)
    b.report.check("filter >= 2x nfdump records/s", peer.ratio >= FILTER_BAR,
                   f"pyflow {mine.records_per_sec / 1e6:.2f} M/s vs nfdump "
                   f"{peer.records_per_sec / 1e6:.2f} M/s = {peer.ratio:.2f}x")


def _outside_net(b, day, hour):
    """An outside /24 seen in the hour: the source of the first inbound record."""
    path = os.path.join(b.archive, "in", day.replace("/", "/"),
                        f"in-S0_{day.replace('/', '')}.{hour:02d}")
    text = subprocess.run([*b.pyflow("pyflow-cut"), "--fields=sip", "--no-titles",
                           "--delimited", "--num-recs=1", path], capture_output=True,
                          text=True, env=b.env, check=True).stdout.strip()
    return text.rsplit(".", 1)[0] + ".0/24"


def step_select(b):
    """One hour and one outside /24: pyflow's file and block selection vs nfdump -t."""
    meta, sel = _archive_args(b)
    day = sel[1].split("=", 1)[1]
    day = day[:8] + f"{int(day[8:10]) + 1:02d}" if meta.get("hours", 72) > 24 else day
    hour = 13
    net = _outside_net(b, day, hour)
    cmd = [*b.pyflow("pyflow-filter"), f"--data-rootdir={b.archive}",
           f"--start-date={day}:{hour}", f"--end-date={day}:{hour}", "--type=all",
           f"--any-cidr={net}", "--pass=/dev/null", "--print-statistics=stdout"]
    b.say("$ " + " ".join(cmd) + "   (best of 5)")
    import harness
    t, peak, _ = harness.best_of(5, cmd, env=b.env)
    text = subprocess.run(cmd, capture_output=True, text=True, env=b.env).stdout
    mine = b.report.add(Result("select", f"hour {hour}, any {net}", "pyflow-filter",
                               seconds=t.seconds, max_rss=peak, cpu=t.cpu,
                               note=f"{_pass_count(text):,} passed"))
    cap = b.need_capture()
    if cap is None:
        b.report.check("one hour and a /24 >= 10x nfdump", None, "nfdump not available")
        return
    ymd = day
    window = f"{ymd}.{hour:02d}:00:00-{ymd}.{hour:02d}:59:59"
    cmd = ["nfdump", "-R", b.capture, "-t", window, "-q", "-o", "fmt:%pr",
           f"net {net}"]
    b.say("$ " + " ".join(cmd) + "   (best of 5)")
    t, peak, _ = harness.best_of(5, cmd, env=b.env)
    got = subprocess.run(cmd, capture_output=True, text=True, env=b.env).stdout
    peer = Result("select", f"hour {hour}, any {net}", "nfdump -t", seconds=t.seconds,
                  max_rss=peak, cpu=t.cpu, note=f"{len(got.splitlines()):,} passed")
    peer.ratio, peer.ratio_of = peer.seconds / mine.seconds, "speed"
    b.report.add(peer)
    b.report.check("one hour and a /24 >= 10x nfdump", peer.ratio >= SELECT_BAR,
                   f"pyflow {fmt_seconds(mine.seconds)} vs nfdump "
                   f"{fmt_seconds(peer.seconds)} = {peer.ratio:.2f}x")


def step_unique(b):
    """--unique=sip,dip over the whole archive (first record of each pair)."""
    meta, sel = _archive_args(b)
    stats = os.path.join(b.work, "unique.txt")
    cmd = [*b.pyflow("pyflow-filter"), *sel, "--unique=sip,dip", "--pass=/dev/null",
           f"--print-statistics={stats}"]
    env = dict(b.env, SILK_CLOBBER="1")
    b.say("$ " + " ".join(cmd) + "   (best of 3)")
    t, peak, err = best_of(3, cmd, env=env)
    if t.returncode != 0:
        raise StepFailed(f"pyflow-filter exited {t.returncode}: {err.strip()[-500:]}")
    with open(stats) as f:
        passed = _pass_count(f.read())
    mine = b.report.add(Result("unique", "--unique=sip,dip (Bloom)", "pyflow-filter",
                               seconds=t.seconds, records=b.flows, max_rss=peak,
                               cpu=t.cpu, note=f"{passed:,} distinct pairs"))
    cmd[cmd.index("--unique=sip,dip") + 1: cmd.index("--unique=sip,dip") + 1] = \
        ["--unique-exact"]
    t2, peak2, _ = best_of(1, cmd, env=env)
    with open(stats) as f:
        exact = _pass_count(f.read())
    b.report.add(Result("unique", "--unique=sip,dip --unique-exact", "pyflow-filter",
                        seconds=t2.seconds, records=b.flows, max_rss=peak2, cpu=t2.cpu,
                        note=f"{exact:,} distinct pairs"))
    b.report.check("--unique=sip,dip >= 10M records/s",
                   mine.records_per_sec >= UNIQUE_BAR,
                   f"{mine.records_per_sec / 1e6:.2f} M/s; Bloom {passed:,} vs exact "
                   f"{exact:,} pairs")
