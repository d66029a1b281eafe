"""The nfdump peer: installing it, running nfcapd as a collector, reading its statistics.

Written against nfdump 1.7.1 (Debian 12), whose options differ from later 1.7.x releases:
``-w DIR`` for nfcapd's output directory, ``-z``/``-j``/``-y`` (LZO/BZ2/LZ4) rather than
``-z=MODE``, and no ZSTD. Every mode is tried the new way first, then the old way.
"""

import os
import re
import shutil
import socket
import subprocess
import time

from harness import Spawned, timed_capture

# mode -> option lists to try, newest syntax first
COMPRESSION_MODES = {
    "lzo": (["-z=lzo"], ["-z"]),
    "bz2": (["-z=bz2"], ["-j"]),
    "lz4": (["-z=lz4"], ["-y"]),
    "zstd": (["-z=zstd"],),
}


def available():
    return bool(shutil.which("nfcapd") and shutil.which("nfdump"))


def ensure_installed(say):
    """True when nfcapd and nfdump are there, installing Debian's nfdump if they are not."""
    if available():
        return True
    say("nfcapd not found: installing it with 'apt-get install -y nfdump'")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    apt = ["apt-get", "install", "-y", "nfdump"]
    if os.geteuid() != 0 and shutil.which("sudo"):
        apt = ["sudo", "-n"] + apt
    tries = [apt, [*apt[:-3], "update"], apt]
    for cmd in tries:
        say("  $ " + " ".join(cmd))
        try:
            rc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True).returncode
        except OSError as exc:
            say(f"  cannot run {cmd[0]}: {exc}")
            break
        if available():
            return True
        if rc != 0 and cmd[-1] == "update":
            say("  apt-get update failed")
            break
    say("nfdump could not be installed here: running the pyflow-only part of the benchmark")
    return False


def version():
    try:
        out = subprocess.run(["nfdump", "-V"], capture_output=True, text=True).stdout
    except OSError:
        return None
    m = re.search(r"Version:\s*(\S+)", out)
    return m.group(1) if m else out.strip() or None


def free_udp_port(host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def udp_socket_stats(port):
    """(rx_queue bytes, drops) of the IPv4 UDP socket bound to port, from /proc/net/udp."""
    try:
        with open("/proc/net/udp") as f:
            lines = f.readlines()[1:]
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        local = parts[1]
        if int(local.rsplit(":", 1)[1], 16) == port:
            rx = int(parts[4].split(":")[1], 16)
            return rx, int(parts[-1])
    return None


class Collector:
    """nfcapd receiving NetFlow on 127.0.0.1:port into flowdir, run as our child."""

    def __init__(self, flowdir, port, log_path, interval=3600, bufsize=8 * 1024 * 1024):
        self.flowdir = flowdir
        self.port = port
        self.log_path = log_path
        self.cmd = ["nfcapd", "-w", flowdir, "-p", str(port), "-b", "127.0.0.1",
                    "-t", str(interval), "-B", str(bufsize)]
        self.proc = None
        self.timing = None

    def start(self, timeout=10):
        os.makedirs(self.flowdir, exist_ok=True)
        self.log = open(self.log_path, "wb")
        self.proc = Spawned(self.cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                t = self.stop()
                raise RuntimeError(f"nfcapd exited at start ({t.returncode}): "
                                   + self.log_text().strip()[-500:])
            if udp_socket_stats(self.port) is not None and "Startup" in self.log_text():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("nfcapd did not start listening within "
                           f"{timeout} s: {self.log_text().strip()[-500:]}")

    def drain(self, timeout=60):
        """Wait until the socket's receive queue is empty (nfcapd has read everything);
        returns the socket's (rx_queue, drops) then."""
        deadline = time.monotonic() + timeout
        empty = 0
        stats = udp_socket_stats(self.port)
        while time.monotonic() < deadline and empty < 3:
            stats = udp_socket_stats(self.port) or stats
            empty = empty + 1 if stats is None or stats[0] == 0 else 0
            time.sleep(0.1)
        return stats

    def stop(self, timeout=300):
        """SIGTERM (nfcapd flushes and closes its last file); the Timing of its whole life."""
        if self.proc is None:
            return self.timing
        self.proc.terminate()
        try:
            self.timing = self.proc.wait(timeout)
        finally:
            self.log.close()
            self.proc = None
        return self.timing

    def log_text(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def logged_totals(self):
        """Flows and sequence errors from nfcapd's per-file 'Ident: ... Flows: N' lines."""
        flows = seq = bad = 0
        for m in re.finditer(r"Flows: (\d+),.*?Sequence Errors: (\d+), Bad Packets: (\d+)",
                             self.log_text()):
            flows += int(m.group(1))
            seq += int(m.group(2))
            bad += int(m.group(3))
        return {"flows": flows, "sequence_errors": seq, "bad_packets": bad}


def files(flowdir):
    """nfcapd's finished files in flowdir (not a still-open nfcapd.current.*)."""
    if not os.path.isdir(flowdir):
        return []
    return sorted(os.path.join(flowdir, n) for n in os.listdir(flowdir)
                  if n.startswith("nfcapd.") and not n.startswith("nfcapd.current"))


def stats(args):
    """Summary statistics of 'nfdump ARGS -I' (e.g. ['-R', DIR]) as a dict of ints."""
    out = subprocess.run(["nfdump", *args, "-I"], capture_output=True, text=True)
    result = {}
    for line in out.stdout.splitlines():
        key, sep, value = line.partition(":")
        if sep and value.strip().isdigit():
            result[key.strip()] = int(value.strip())
    if "Flows" not in result:
        raise RuntimeError(f"nfdump {' '.join(args)} -I: no 'Flows:' line: "
                           f"{(out.stdout + out.stderr).strip()[-300:]}")
    return result


def recompress(flowdir, mode, out_path):
    """Rewrite every file of flowdir into one file compressed with mode.

    Returns (Timing, options used) or (None, reason) when this nfdump rejects the mode.
    """
    reasons = []
    for opts in COMPRESSION_MODES[mode]:
        if os.path.exists(out_path):
            os.unlink(out_path)
        t, err = timed_capture(["nfdump", "-R", flowdir, *opts, "-w", out_path])
        ok = t.returncode == 0 and os.path.exists(out_path) and "invalid option" not in err \
            and "usage" not in err.lower()
        if ok:
            return t, opts
        first = next((line for line in err.splitlines() if line.strip()), "no output file")
        reasons.append(f"'{' '.join(opts)}': {first.strip()}")
    if os.path.exists(out_path):
        os.unlink(out_path)
    return None, "; ".join(reasons)


def read_all(args):
    """The command that decodes every record without printing: nfdump -q -o null."""
    return ["nfdump", *args, "-q", "-o", "null"]


__all__ = ["COMPRESSION_MODES", "Collector", "available", "ensure_installed", "files",
           "free_udp_port", "read_all", "recompress", "stats", "udp_socket_stats",
           "version"]
