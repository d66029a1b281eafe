"""Timing and reporting helpers shared by every benchmark step.

    t = timed(["pyflow-cat", "--version"])          # seconds, max_rss (bytes), returncode
    seconds, rss, rc = t                            # it unpacks as a 3-tuple
    t.cpu                                           # user + system CPU seconds of the child
    report.add(Result("read", "full read", "pyflow", seconds=..., records=..., max_rss=...))

Peak memory is the child's own ``ru_maxrss`` from ``os.wait4``, so only the measured process
counts (not the harness, nor a producer feeding it through a pipe).
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from subprocess import DEVNULL

__all__ = ["DEVNULL", "Timing", "Spawned", "timed", "timed_capture", "best_of", "Result", "Check",
           "Report", "fmt_seconds", "fmt_bytes", "fmt_rate", "fmt_count"]


@dataclass
class Timing:
    seconds: float
    max_rss: int          # bytes
    returncode: int
    cpu: float = 0.0      # user + system seconds of the child

    def __iter__(self):
        return iter((self.seconds, self.max_rss, self.returncode))


# The measured command runs under a small launcher (a fresh "python -S -I") that forks it,
# times it and takes its rusage with os.wait4. Spawning it straight from this process would
# not do: subprocess uses vfork, and Linux carries the parent's peak RSS into the child's
# ru_maxrss at exec, so every child would report at least the harness's own peak. A forked
# child starts from the launcher's few MB instead (about 7 MB: the floor of "peak RSS").
_LAUNCHER = """
import os, signal, sys, time
out, cmd = sys.argv[1], sys.argv[2:]
signal.signal(signal.SIGINT, signal.SIG_IGN)
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        os.execvp(cmd[0], cmd)
    except OSError as exc:
        os.write(2, f"cannot run {cmd[0]}: {exc.strerror}\\n".encode())
    os._exit(127)
def forward(signum, frame):
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
signal.signal(signal.SIGTERM, forward)
signal.signal(signal.SIGHUP, forward)
_, status, ru = os.wait4(pid, 0)
seconds = time.perf_counter() - t0
with open(out, "w") as f:
    f.write(f"{seconds!r} {ru.ru_maxrss} {os.waitstatus_to_exitcode(status)} "
            f"{ru.ru_utime + ru.ru_stime!r}\\n")
sys.exit(0)
"""


class Spawned:
    """A command started under the launcher; wait() gives its Timing.

    For long-running children (a collector): start, later terminate() (SIGTERM is passed on
    to the command), then wait().
    """

    def __init__(self, cmd, stdin=None, stdout=DEVNULL, stderr=None, env=None):
        self.cmd = [str(c) for c in cmd]
        fd, self._result = tempfile.mkstemp(prefix="pyflow-bench-", suffix=".rusage")
        os.close(fd)
        self._t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-S", "-I", "-c", _LAUNCHER, self._result, *self.cmd],
            stdin=stdin, stdout=stdout, stderr=stderr, env=env)
        self.timing = None

    def poll(self):
        return self.proc.poll()

    def terminate(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout=None):
        if self.timing is not None:
            return self.timing
        try:
            self.proc.wait(timeout)
        except BaseException:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self._cleanup()
            raise
        try:
            with open(self._result) as f:
                seconds, rss, rc, cpu = f.read().split()
            self.timing = Timing(float(seconds), int(rss) * 1024, int(rc), float(cpu))
        except (OSError, ValueError):   # the launcher itself failed
            self.timing = Timing(time.perf_counter() - self._t0, 0,
                                 self.proc.returncode or 1, 0.0)
        self._cleanup()
        return self.timing

    def _cleanup(self):
        try:
            os.unlink(self._result)
        except OSError:
            pass


def timed(cmd, stdin=None, stdout=DEVNULL, stderr=None, env=None):
    """Run cmd to completion: Timing(seconds, max_rss_bytes, returncode) of that one command.

    stdin/stdout/stderr are as for subprocess.Popen (a file object, a pipe's end, DEVNULL,
    None to inherit). Wall time runs from the command's fork to its exit; peak memory is its
    ru_maxrss from os.wait4 (floored at about 7 MB, see _LAUNCHER); cpu is user + system.
    """
    return Spawned(cmd, stdin=stdin, stdout=stdout, stderr=stderr, env=env).wait()


def timed_capture(cmd, stdin=None, stdout=DEVNULL, env=None):
    """timed() that also returns the child's standard error as text (via a temporary file,
    so a chatty child cannot block on a full pipe)."""
    with tempfile.TemporaryFile() as err:
        t = timed(cmd, stdin=stdin, stdout=stdout, stderr=err, env=env)
        err.seek(0)
        return t, err.read().decode(errors="replace")


def best_of(n, cmd, **kw):
    """Run cmd n times: (fastest Timing, highest max_rss seen, stderr of the fastest run).

    Stops at the first failing run and returns it.
    """
    best = None
    best_err = ""
    peak = 0
    for _ in range(n):
        t, err = timed_capture(cmd, **kw)
        peak = max(peak, t.max_rss)
        if t.returncode != 0:
            return t, peak, err
        if best is None or t.seconds < best.seconds:
            best, best_err = t, err
    return best, peak, best_err


def fmt_seconds(s):
    if s is None:
        return "-"
    if s < 1:
        return f"{s * 1000:.0f} ms"
    return f"{s:.2f} s"


def fmt_bytes(n):
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return "-"


def fmt_rate(r):
    if r is None:
        return "-"
    if r >= 1e6:
        return f"{r / 1e6:.2f} M"
    if r >= 1e3:
        return f"{r / 1e3:.0f} k"
    return f"{r:.0f}"


def fmt_count(n):
    return "-" if n is None else f"{n:,}"


@dataclass
class Result:
    """One measured row: a tool doing one operation.

    ratio is pyflow's value divided by this (peer) row's value of the step's main metric,
    named by ratio_of ("records/s", "bytes/flow", "seconds", ...); it is set on peer rows.
    value/unit carry a non-time figure (bytes per flow, a count).
    """
    step: str
    operation: str
    tool: str
    seconds: float | None = None
    records: int | None = None
    max_rss: int | None = None
    cpu: float | None = None
    value: float | None = None
    unit: str = ""
    ratio: float | None = None
    ratio_of: str = ""
    note: str = ""

    @property
    def records_per_sec(self):
        if self.seconds and self.records is not None:
            return self.records / self.seconds
        return None

    def as_dict(self):
        d = asdict(self)
        d["records_per_sec"] = self.records_per_sec
        return d


@dataclass
class Check:
    """A bar the results must clear (ok None: could not be measured)."""
    name: str
    ok: bool | None
    detail: str = ""

    @property
    def verdict(self):
        return {True: "PASS", False: "FAIL", None: "n/a"}[self.ok]


COLUMNS = [
    ("operation", "<"), ("tool", "<"), ("wall", ">"), ("cpu", ">"), ("records", ">"),
    ("rec/s", ">"), ("peak RSS", ">"), ("value", ">"), ("pyflow/peer", ">"), ("note", "<"),
]


def _cells(r):
    value = "-"
    if r.value is not None:
        value = f"{r.value:,.2f} {r.unit}".strip() if isinstance(r.value, float) \
            else f"{r.value:,} {r.unit}".strip()
    ratio = "-" if r.ratio is None else f"{r.ratio:.2f}x {r.ratio_of}".strip()
    return [r.operation, r.tool, fmt_seconds(r.seconds), fmt_seconds(r.cpu),
            fmt_count(r.records),
            fmt_rate(r.records_per_sec), fmt_bytes(r.max_rss), value, ratio, r.note]


class Report:
    """Collects rows and checks; prints each row as it arrives and the table at the end."""

    def __init__(self, out=None):
        import sys
        self.out = out or sys.stdout
        self.results = []
        self.checks = []
        self.facts = {}
        self.params = {}
        self.messages = []

    def say(self, text):
        """A progress or explanatory line (also kept for the JSON)."""
        self.messages.append(text)
        print(text, file=self.out, flush=True)

    def add(self, result):
        self.results.append(result)
        cells = _cells(result)
        parts = [f"{name}={cell}" for (name, _), cell in zip(COLUMNS, cells, strict=True)
                 if cell not in ("-", "")]
        print("  -> " + "  ".join(parts), file=self.out, flush=True)
        return result

    def check(self, name, ok, detail=""):
        c = Check(name, ok, detail)
        self.checks.append(c)
        print(f"  [{c.verdict}] {name}: {detail}", file=self.out, flush=True)
        return c

    def table(self):
        rows = [[name for name, _ in COLUMNS]] + [_cells(r) for r in self.results]
        widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
        lines = []
        step = None
        for n, row in enumerate(rows):
            if n and self.results[n - 1].step != step:
                step = self.results[n - 1].step
                lines.append(f"[{step}]")
            cells = [f"{cell:{align}{w}}" for cell, (_, align), w
                     in zip(row, COLUMNS, widths, strict=True)]
            lines.append("  ".join(cells).rstrip())
            if n == 0:
                lines.append("  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def checks_text(self):
        return "\n".join(f"[{c.verdict:4}] {c.name}: {c.detail}" for c in self.checks)

    def write_json(self, path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        data = {
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": self.facts,
            "params": self.params,
            "results": [r.as_dict() for r in self.results],
            "checks": [asdict(c) | {"verdict": c.verdict} for c in self.checks],
            "messages": self.messages,
        }
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
