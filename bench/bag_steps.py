"""Benchmark step of the bag tools (issue 5), side by side with nfdump on the same flows.

  bag   sources with at most 10 records: pyflow-bag --bag-file=sIPv4,records,- then
        pyflow-bagtool --maxcounter=10 --coverset, both as a pipeline behind pyflow-filter
        and reading the archive files directly (--xargs), vs nfdump -R DIR -A srcip -o csv
        -q and the same count filter (bar: 5x nfdump's records/s, the same number of
        sources); also pyflow-bag's peak memory per distinct key (bar: <= 40 bytes).
"""

import os
import shlex
import subprocess

from filter_steps import StepFailed, _archive_args
from harness import Result, best_of

BAG_BAR = 5.0
BYTES_PER_KEY_BAR = 40


def _sh(script):
    return ["bash", "-o", "pipefail", "-c", script]


def _archive_files(b):
    out = []
    for root, _, files in os.walk(b.archive):
        out += [os.path.join(root, f) for f in files if not f.startswith(".")]
    return sorted(out)


def _sources(b, path):
    """Addresses in a pyflow set file (through the library, not a tool)."""
    import sys
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from flowtools.ipset import read_set
    return read_set(path).count()


def step_bag(b):
    """pyflow-bag | pyflow-bagtool --maxcounter=10 --coverset vs nfdump -A srcip, best of 3."""
    meta, sel = _archive_args(b)
    flows = meta.get("flows") or b.flows
    bag_ = " ".join(shlex.quote(x) for x in b.pyflow("pyflow-bag"))
    tool = " ".join(shlex.quote(x) for x in b.pyflow("pyflow-bagtool"))
    filt = " ".join(shlex.quote(x) for x in b.pyflow("pyflow-filter"))
    listing = os.path.join(b.work, "bag-files.txt")
    with open(listing, "w") as f:
        f.write("\n".join(_archive_files(b)) + "\n")
    cover = os.path.join(b.work, "bag-few.set")
    bagfile = os.path.join(b.work, "bag-sip.bag")
    env = dict(b.env, SILK_CLOBBER="1")
    runs = {
        "xargs": f"{bag_} --bag-file=sIPv4,records,- --xargs={shlex.quote(listing)} | "
                 f"{tool} --maxcounter=10 --coverset --output-path={shlex.quote(cover)}",
        "filter": f"{filt} {' '.join(shlex.quote(s) for s in sel)} --proto=0-255 "
                  f"--pass=stdout | {bag_} --bag-file=sIPv4,records,- | "
                  f"{tool} --maxcounter=10 --coverset --output-path={shlex.quote(cover)}",
    }
    mine = {}
    for label, script in runs.items():
        b.say(f"$ {script}   (best of 3)")
        t, peak, err = best_of(3, _sh(script), env=env)
        if t.returncode != 0:
            raise StepFailed(f"bag pipeline ({label}) exited {t.returncode}: "
                             f"{err.strip()[-500:]}")
        n = _sources(b, cover)
        mine[label] = b.report.add(Result(
            "bag", f"sIPv4 records, <= 10 -> set ({label})", "pyflow-bag|bagtool",
            seconds=t.seconds, records=flows, max_rss=peak, cpu=t.cpu,
            note=f"{n:,} sources"))
        mine[label].sources = n
    # memory: pyflow-bag alone, per distinct key
    t, peak, err = best_of(1, [*b.pyflow("pyflow-bag"), f"--bag-file=sIPv4,records,{bagfile}",
                               f"--xargs={listing}"], env=env)
    if t.returncode != 0:
        raise StepFailed(f"pyflow-bag exited {t.returncode}: {err.strip()[-500:]}")
    import sys
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from flowtools.bag import read_bag
    keys = len(read_bag(bagfile))
    per_key = peak / max(keys, 1)
    b.report.add(Result("bag", "pyflow-bag peak RSS per distinct sIPv4", "pyflow-bag",
                        seconds=t.seconds, records=flows, max_rss=peak, value=per_key,
                        unit="B/key", note=f"{keys:,} keys (RSS includes the interpreter)"))
    b.report.check("pyflow-bag <= 40 bytes per distinct IPv4 key", per_key <=
                   BYTES_PER_KEY_BAR, f"{per_key:.1f} B/key over {keys:,} keys")
    cap = b.need_capture()
    if cap is None:
        b.report.check("bag >= 5x nfdump records/s", None, "nfdump not available")
        return
    cmd = ["nfdump", "-R", b.capture, "-A", "srcip", "-o", "csv", "-q"]
    b.say("$ " + " ".join(cmd) + "   (best of 3)")
    t, peak, err = best_of(3, cmd, env=b.env)
    if t.returncode != 0:
        raise StepFailed(f"nfdump exited {t.returncode}: {err.strip()[-500:]}")
    # the count filter, as a user would: flows column <= 10 (the header names the column)
    text = subprocess.run(["nfdump", "-R", b.capture, "-A", "srcip", "-o", "csv"],
                          capture_output=True, text=True, env=b.env).stdout.splitlines()
    head = text[0].split(",") if text else []
    col = head.index("fl") if "fl" in head else None
    few = 0
    if col is not None:
        for line in text[1:]:
            parts = line.split(",")
            if len(parts) > col and parts[col].strip().isdigit() and \
                    int(parts[col]) <= 10:
                few += 1
    peer = Result("bag", "srcip aggregation, <= 10", "nfdump -A srcip -o csv",
                  seconds=t.seconds, records=cap["stored"], max_rss=peak, cpu=t.cpu,
                  note=f"{few:,} sources (IPv4 only)")
    best = max(mine.values(), key=lambda r: r.records_per_sec)
    peer.ratio, peer.ratio_of = best.records_per_sec / peer.records_per_sec, "rec/s"
    b.report.add(peer)
    b.report.check("bag >= 5x nfdump records/s", peer.ratio >= BAG_BAR,
                   f"pyflow {best.records_per_sec / 1e6:.2f} M/s vs nfdump "
                   f"{peer.records_per_sec / 1e6:.2f} M/s = {peer.ratio:.2f}x")
    b.report.check("bag: same number of sources as nfdump", few == best.sources,
                   f"pyflow {best.sources:,}, nfdump {few:,}")
