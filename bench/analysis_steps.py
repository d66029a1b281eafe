"""Benchmark steps of pyflow-stats and pyflow-uniq (issue 6), side by side with nfdump.

  stats   top-10 source addresses by records over the archive, both with --xargs and fed by
          a pyflow-filter data pull, vs nfdump -s srcip/flows -n 10 (bar: 2x nfdump's
          records/s); top-10 TCP destination ports, pyflow-filter --proto=6 | pyflow-stats
          --fields=dport --count=10 vs nfdump -s dstport/flows -n 10 'proto tcp' (bar: 2x)
  uniq    pyflow-uniq --fields=sip --values=records,distinct:dip over the archive (bars:
          3M records/s, peak RSS under 60 bytes per distinct key, counted above the peak
          of the same run over the first 16 files, as the bag step counts it)
"""

import os
import subprocess

from harness import Result, best_of

STATS_BAR = 2.0
UNIQ_BAR = 3_000_000          # records/s
UNIQ_BYTES_PER_KEY = 60


class StepFailed(RuntimeError):
    pass


def _best(b, cmd, n=3, label=None):
    b.say("$ " + " ".join(cmd) + f"   (best of {n})")
    t, peak, err = best_of(n, cmd, env=b.env)
    if t.returncode != 0:
        raise StepFailed(f"{label or cmd[0]} exited {t.returncode}: {err.strip()[-500:]}")
    return t, peak


def _selection(b):
    """pyflow-filter's switches selecting the whole archive."""
    import calendar
    import time
    b.need_archive()
    gen = dict(a[2:].split("=", 1) for a in b.gen_args if a.startswith("--"))
    start, hours = gen["start-date"], int(gen["hours"])
    first = calendar.timegm(time.strptime(start, "%Y/%m/%d"))
    last = time.strftime("%Y/%m/%d", time.gmtime(first + (hours - 1) * 3600))
    return [f"--data-rootdir={b.archive}", f"--start-date={start}", f"--end-date={last}",
            "--type=all"]


def _pipe(*cmds):
    """One shell command running the argv lists as a pipeline (timed as a whole)."""
    import shlex
    return ["sh", "-c", " | ".join(" ".join(shlex.quote(a) for a in c) for c in cmds)]


def _top_lines(b, cmd):
    out = subprocess.run(cmd, capture_output=True, text=True, env=b.env).stdout
    return [line.split("|")[:2] for line in out.splitlines()[3:]]


def _nfdump_top(b, args):
    out = subprocess.run(["nfdump", "-R", b.capture, *args, "-q"], capture_output=True,
                         text=True, env=b.env).stdout
    import re
    keys = []
    for line in out.splitlines():
        # ... proto KEY FLOWS(PCT) ...: the key precedes the flow count and its "(pct)"
        m = re.search(r"(\S+)\s+[\d.]+(?:\s[KMGT])?\(", line)
        if m:
            keys.append(m.group(1))
    return keys


def step_stats(b):
    """Top-10 sources by records and top-10 TCP ports: pyflow-stats vs nfdump -s."""
    b.need_archive()
    records = b.flows
    xargs = [*b.pyflow("pyflow-stats"), "--fields=sip", "--count=10", f"--xargs={b.list_file}"]
    t, peak = _best(b, xargs, label="pyflow-stats")
    mine = b.report.add(Result("stats", "top-10 sIP by records", "pyflow-stats --xargs",
                               seconds=t.seconds, records=records, max_rss=peak, cpu=t.cpu))
    pull = _pipe([*b.pyflow("pyflow-filter"), *_selection(b), "--all=-"],
                 [*b.pyflow("pyflow-stats"), "--fields=sip", "--count=10"])
    t, peak = _best(b, pull, label="pyflow-filter | pyflow-stats")
    pulled = b.report.add(Result("stats", "top-10 sIP by records", "filter | stats",
                                 seconds=t.seconds, records=records, max_rss=peak,
                                 cpu=t.cpu, note="pyflow-filter --all=- data pull"))
    tcp = _pipe([*b.pyflow("pyflow-filter"), *_selection(b), "--proto=6", "--pass=-"],
                [*b.pyflow("pyflow-stats"), "--fields=dport", "--count=10"])
    t, peak = _best(b, tcp, label="pyflow-filter --proto=6 | pyflow-stats")
    ports = b.report.add(Result("stats", "top-10 TCP dPort by records", "filter | stats",
                                seconds=t.seconds, records=records, max_rss=peak, cpu=t.cpu))
    # nfdump holds the IPv4 flows only: the lists are compared over those
    top_sip = [ip for ip, _ in _top_lines(b, xargs + ["--ipv6-policy=ignore"])]
    top_port = [p for p, _ in _top_lines(b, _pipe(
        [*b.pyflow("pyflow-filter"), *_selection(b), "--proto=6", "--pass=-"],
        [*b.pyflow("pyflow-stats"), "--fields=dport", "--count=10", "--ipv6-policy=ignore"]))]
    cap = b.need_capture()
    if cap is None:
        for what in ("top-10 sIP", "top-10 TCP dPort"):
            b.report.check(f"stats {what} >= 2x nfdump records/s", None,
                           "nfdump not available")
        return
    for label, mine_rows, args, ours in (
            ("top-10 sIP by records", (mine, pulled), ["-s", "srcip/flows", "-n", "10"],
             top_sip),
            ("top-10 TCP dPort by records", (ports,),
             ["-s", "dstport/flows", "-n", "10", "proto tcp"], top_port)):
        cmd = ["nfdump", "-R", b.capture, *args, "-q"]
        t, peak = _best(b, cmd, label="nfdump")
        theirs = _nfdump_top(b, args)
        same = [x.strip() for x in ours] == theirs
        peer = Result("stats", label, "nfdump -s", seconds=t.seconds, records=cap["stored"],
                      max_rss=peak, cpu=t.cpu,
                      note="same top 10" if same else f"top 10 differ: nfdump {theirs}")
        best = max(mine_rows, key=lambda r: r.records_per_sec)
        peer.ratio, peer.ratio_of = best.records_per_sec / peer.records_per_sec, "rec/s"
        b.report.add(peer)
        b.report.check(f"stats {label} >= 2x nfdump records/s", peer.ratio >= STATS_BAR,
                       f"pyflow {best.records_per_sec / 1e6:.2f} M/s ({best.tool}) vs "
                       f"nfdump {peer.records_per_sec / 1e6:.2f} M/s = {peer.ratio:.2f}x")


def step_uniq(b):
    """pyflow-uniq --fields=sip --values=records,distinct:dip over the archive."""
    b.need_archive()
    out = os.path.join(b.work, "uniq-sip.txt")
    env = dict(b.env, SILK_CLOBBER="1")

    def uniq(listing, runs):
        cmd = [*b.pyflow("pyflow-uniq"), "--fields=sip", "--values=records,distinct:dip",
               f"--xargs={listing}", f"--output-path={out}", "--delimited", "--no-titles"]
        b.say("$ " + " ".join(cmd) + f"   (best of {runs})")
        t, peak, err = best_of(runs, cmd, env=env)
        if t.returncode != 0:
            raise StepFailed(f"pyflow-uniq exited {t.returncode}: {err.strip()[-500:]}")
        keys = pairs = total = 0
        with open(out) as f:
            for line in f:
                _, n, d = line.split("|")[:3]
                keys += 1
                total += int(n)
                pairs += int(d)
        os.unlink(out)
        return t, peak, keys, pairs, total

    t, peak, keys, pairs, total = uniq(b.list_file, 3)
    mine = b.report.add(Result("uniq", "sIP: records, distinct:dIP", "pyflow-uniq",
                               seconds=t.seconds, records=b.flows, max_rss=peak, cpu=t.cpu,
                               note=f"{keys:,} sIPs, {pairs:,} (sIP, dIP) pairs"))
    b.report.check("uniq totals equal the records", total == b.flows,
                   f"{total:,} of {b.flows:,}")
    b.report.check("uniq >= 3M records/s", mine.records_per_sec >= UNIQ_BAR,
                   f"{mine.records_per_sec / 1e6:.2f} M/s")
    # memory per key as the bag step measures it: over the same run on the first 16
    # files (few keys), which gives the interpreter's, numpy's, the worker processes'
    # and the decoders' share, a constant that does not grow with the keys
    small = os.path.join(b.work, "uniq-files-16.txt")
    with open(b.list_file) as f:
        first = [line for line in f if line.strip()][:16]
    with open(small, "w") as f:
        f.writelines(first)
    _, base, base_keys, _, _ = uniq(small, 1)
    os.unlink(small)
    per_key = (peak - base) / max(keys - base_keys, 1)
    b.report.add(Result("uniq", "pyflow-uniq peak RSS per distinct sIP", "pyflow-uniq",
                        max_rss=peak, value=per_key, unit="B/key",
                        note=f"{keys:,} keys; {peak / max(keys, 1):.0f} B/key with the "
                        f"{base / 2**20:.0f} MiB baseline of a 16-file run"))
    b.report.check(f"uniq peak RSS < {UNIQ_BYTES_PER_KEY} B per distinct key",
                   per_key < UNIQ_BYTES_PER_KEY,
                   f"{per_key:.1f} B/key over {keys:,} keys ({peak / 2**20:.0f} MiB peak, "
                   f"{base / 2**20:.0f} MiB of it the baseline of a 16-file run; "
                   f"{pairs / max(keys, 1):.1f} (sIP, dIP) pairs per key)")
