"""Benchmark steps of pyflow-count and pyflow-match (issue 6).

  count   pyflow-count --bin-size=300 (time-proportional, rwcount's default scheme) over every
          file of the archive; nfdump has no time-binned count, its nearest equivalent is
          the totals of nfdump -R DIR -I, shown for scale
  match   pyflow-match of 1M inbound (query) and 1M outbound (response) generated records,
          5-tuple reversed, --symmetric-delta --time-delta=2 (bar: >= 500k records/s over
          both inputs); the same with --relative-delta for information
"""

import os

from harness import Result, best_of

MATCH_BAR = 500_000  # records/s, query and response records together
MATCH_EACH = 1_000_000
FIVE = ["--relate=1,2", "--relate=4,3", "--relate=2,1", "--relate=3,4", "--relate=5,5"]


class StepFailed(RuntimeError):
    pass


def _best(b, cmd, n, label):
    b.say("$ " + " ".join(cmd) + f"   (best of {n})")
    t, peak, err = best_of(n, cmd, env=dict(b.env, SILK_CLOBBER="1"))
    if t.returncode != 0:
        raise StepFailed(f"{label} exited {t.returncode}: {err.strip()[-500:]}")
    return t, peak


def step_count(b):
    """pyflow-count --bin-size=300 over the archive; nfdump -I totals for scale."""
    b.need_archive()
    cmd = [*b.pyflow("pyflow-count"), "--bin-size=300", f"--xargs={b.list_file}",
           "--output-path=/dev/null"]
    t, peak = _best(b, cmd, 3, "pyflow-count")
    b.report.add(Result("count", "300 s bins, time-proportional", "pyflow-count",
                        seconds=t.seconds, records=b.flows, max_rss=peak, cpu=t.cpu))
    cmd[cmd.index("--bin-size=300") + 1: cmd.index("--bin-size=300") + 1] = \
        ["--load-scheme=start-spike"]
    t, peak = _best(b, cmd, 3, "pyflow-count")
    b.report.add(Result("count", "300 s bins, start-spike", "pyflow-count",
                        seconds=t.seconds, records=b.flows, max_rss=peak, cpu=t.cpu))
    cap = b.need_capture()
    if cap is not None:
        cmd = ["nfdump", "-R", b.capture, "-I"]
        t, peak = _best(b, cmd, 3, "nfdump")
        b.report.add(Result("count", "totals only (nearest equivalent)", "nfdump -I",
                            seconds=t.seconds, records=cap["stored"], max_rss=peak, cpu=t.cpu,
                            note="no time bins"))


def _inputs(b):
    """1M query (in, inweb) and 1M response (out, outweb) TCP/UDP records, generated."""
    q = os.path.join(b.work, "match-query.pf")
    r = os.path.join(b.work, "match-response.pf")
    if os.path.exists(q) and os.path.exists(r):
        return q, r
    gen = os.path.join(b.work, "match-gen.pf")
    b.run(b.gen(int(MATCH_EACH * 3.2), f"--output-path={gen}"))
    for path, types in ((q, "in,inweb"), (r, "out,outweb")):
        b.run([*b.pyflow("pyflow-filter"), f"--type={types}", "--proto=6,17",
               f"--max-pass-records={MATCH_EACH}", f"--pass={path}", gen])
    os.unlink(gen)
    return q, r


def _records(b, path):
    import subprocess
    out = subprocess.run([*b.pyflow("pyflow-fileinfo"), "--fields=count-records", path],
                         capture_output=True, text=True, env=b.env, check=True).stdout
    return int(out.split()[-1])


def step_match(b):
    """pyflow-match of 1M + 1M generated records (bar: 500k records/s)."""
    q, r = _inputs(b)
    n = _records(b, q) + _records(b, r)
    out = os.path.join(b.work, "match-out.pf")
    rows = {}
    for label, extra in (("absolute delta", []), ("relative delta", ["--relative-delta"])):
        cmd = [*b.pyflow("pyflow-match"), *FIVE, "--symmetric-delta", "--time-delta=2",
               *extra, q, r, out]
        t, peak = _best(b, cmd, 3, "pyflow-match")
        rows[label] = b.report.add(Result("match", f"5-tuple, 2 s, {label}", "pyflow-match",
                                          seconds=t.seconds, records=n, max_rss=peak,
                                          cpu=t.cpu))
        os.unlink(out)
    mine = rows["absolute delta"]
    b.report.check("match >= 500k records/s", mine.records_per_sec >= MATCH_BAR,
                   f"{mine.records_per_sec / 1e3:.0f}k records/s over {n:,} records")
