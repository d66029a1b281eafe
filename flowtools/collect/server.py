"""The collector: datagrams in (sockets, captures, files), packed records out to the archive.

The receiving thread reads datagrams and, every few milliseconds, decodes what it gathered
(all v5 datagrams of a probe in one numpy pass; v9/IPFIX per datagram, per data set),
packs the records by sensor and flowtype, and keeps them until the flush interval ends.
Then the batches go to a writer thread that appends them to the hourly files, so that
receiving never waits for the disk. A file's new records become visible at once and
atomically when the archive writer commits them (archive.py), so a kill -9 loses at most
the records not yet flushed, and a restart appends to the same hours.

Bad input never stops the collector: every problem is counted per exporter and logged,
at most a few lines per kind and exporter a minute.
"""

import os
import queue
import selectors
import signal
import socket
import sys
import threading
import time

import numpy as np

from ..schema import concat, nrecords, take
from . import BadDatagram, ipfix, v5

U32 = 1 << 32
DECODE_EVERY = 0.05       # seconds between decodes of what was received
DECODE_DATAGRAMS = 4096   # ... or sooner when this many are waiting
MAX_DATAGRAM = 65535
MAX_READY = 1_000_000     # records kept before an early flush: bounds the memory
COUNTERS = ("datagrams", "records", "bytes", "bad", "missing", "lost", "dropped")


class Log:
    """Timestamped lines to a stream or file; `limited` allows a few lines per key a minute."""

    def __init__(self, dest="stderr", name="pyflow-collect", burst=5, window=60.0):
        self.name = name
        self.burst, self.window = burst, window
        self.limits = {}  # key -> [window start, lines in window, suppressed]
        self.lock = threading.Lock()
        if dest in (None, "stderr"):
            self.f = sys.stderr
        elif dest == "none":
            self.f = None
        else:
            self.f = open(dest, "a", buffering=1)

    def __call__(self, msg):
        if self.f is None:
            return
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with self.lock:
            try:
                self.f.write(f"{stamp} {self.name}[{os.getpid()}]: {msg}\n")
                self.f.flush()
            except (OSError, ValueError):
                pass

    def limited(self, key, msg):
        now = time.monotonic()
        state = self.limits.get(key)
        if state is None or now - state[0] >= self.window:
            if state and state[2]:
                self(f"{state[2]} more like: {key[1]} from {key[0]} (suppressed)")
            state = self.limits[key] = [now, 0, 0]
            if len(self.limits) > 10_000:  # garbage from many hosts must not grow this
                self.limits = {key: state}
        if state[1] < self.burst:
            state[1] += 1
            self(msg)
        else:
            state[2] += 1


class Exporter:
    """Counters and sequence state of one exporting host seen by one probe."""

    def __init__(self, name):
        self.name = name
        self.c = dict.fromkeys(COUNTERS, 0)
        self.seq = {}  # (version, engine/domain) -> next expected sequence number

    def sequence(self, key, seq, advance, unit="lost"):
        """Count the gap between the expected and the received sequence number."""
        expected = self.seq.get(key)
        self.seq[key] = (seq + advance) % U32
        if expected is None:
            return
        gap = (seq - expected) % U32
        if 0 < gap < (1 << 31):
            self.c[unit] += gap


class Probe:
    """A probe at run time: its configuration, packers, exporters and received data."""

    def __init__(self, conf, packers):
        self.conf = conf
        self.name = conf.name
        self.packers = packers
        self.exporters = {}
        self.pending = []  # (exporter, datagram)
        self.accept = None
        if conf.accept_from:
            self.accept = set()
            for host in conf.accept_from:
                try:
                    for info in socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM):
                        self.accept.add(_host(info[4][0]))
                except socket.gaierror:
                    raise _config_error(f"probe '{conf.name}': cannot resolve "
                                        f"accept-from-host '{host}'") from None

    def exporter(self, host):
        e = self.exporters.get(host)
        if e is None:
            if len(self.exporters) >= 4096:  # bound the state garbage can create
                host = "other"
                e = self.exporters.get(host)
            if e is None:
                e = self.exporters[host] = Exporter(host)
        return e


def _config_error(msg):
    from ..errors import ConfigError
    return ConfigError(msg)


def _host(addr):
    return addr[7:] if addr.startswith("::ffff:") else addr


class Sink:
    """The writer thread: appends each flushed interval's batches to the archive."""

    def __init__(self, make_writer, log):
        self.make_writer = make_writer
        self.log = log
        # A writer far behind makes the receiver wait (and the kernel drop) rather than
        # memory grow without bound.
        self.q = queue.Queue(maxsize=4)
        self.records = 0
        self.errors = 0
        self.retry = []
        self.thread = threading.Thread(target=self._run, name="pyflow-collect-writer",
                                       daemon=True)
        self.thread.start()

    def submit(self, batches):
        self.q.put(batches)

    def close(self):
        self.q.put(None)
        self.thread.join()

    def _run(self):
        while True:
            item = self.q.get()
            if item is None:
                if self.retry:
                    self._write([])
                return
            self._write(item)

    def _write(self, batches):
        batches = self.retry + batches
        if not batches:
            return
        try:
            w = self.make_writer()
            for b in batches:
                w.write(b)
            w.flush()
            self.records += sum(nrecords(b) for b in batches)
            self.retry = []
        except Exception as exc:  # disk full, permissions: keep the data and retry
            self.errors += 1
            self.log(f"cannot write to the archive: {exc}; will retry")
            kept = sum(nrecords(b) for b in batches)
            self.retry = batches if kept < 20_000_000 else []
            if not self.retry:
                self.log(f"dropped {kept} records that could not be written")


class Collector:
    def __init__(self, probes, sink, log, flush_interval=5.0, stats_interval=60.0):
        self.probes = probes          # name -> Probe
        self.sink = sink
        self.log = log
        self.flush_interval = flush_interval
        self.stats_interval = stats_interval
        self.ready = []               # packed batches waiting for the next flush
        self.ready_records = 0
        self.stop = False
        self.want_stats = False
        self.store = ipfix.TemplateStore()
        self.refused = 0

    # ---------------------------------------------------------------- decoding

    def feed(self, probe, host, datagram):
        probe.pending.append((host, datagram))

    def decode_pending(self):
        for probe in self.probes.values():
            if probe.pending:
                pending, probe.pending = probe.pending, []
                self._decode(probe, pending)

    def _decode(self, probe, pending):
        # v5 datagrams of each exporter are decoded together (the common, fast case);
        # anything else one at a time.
        by_host5, out, parsed = {}, [], {}
        for host, d in pending:
            if len(d) >= v5.HSIZE and d[0] == 0 and d[1] == 5:
                by_host5.setdefault(host, []).append(d)
                continue
            e = probe.exporter(host)
            e.c["datagrams"] += 1
            e.c["bytes"] += len(d)
            version = int.from_bytes(d[:2], "big") if len(d) >= 2 else -1
            try:
                if version in (9, 10):
                    msg = ipfix.parse(d, (probe.name, host), self.store)
                    self._ipfix_counts(e, msg)
                    if msg.sets:
                        parsed.setdefault(host, (e, []))[1].append(msg)
                elif version == 5:
                    raise BadDatagram(v5.check(d))
                elif version < 0:
                    raise BadDatagram(f"datagram of {len(d)} bytes")
                else:
                    raise BadDatagram(f"unknown version {version}")
            except BadDatagram as exc:
                self._bad(probe, e, exc)
        for e, msgs in parsed.values():
            # data sets of one template, from all these datagrams, decoded together
            out.extend((e, b) for b in ipfix.decode_sets(msgs))
        for host, datagrams in by_host5.items():
            e = probe.exporter(host)
            e.c["datagrams"] += len(datagrams)
            e.c["bytes"] += sum(map(len, datagrams))
            head = v5.headers(datagrams)
            sizes = np.fromiter(map(len, datagrams), np.int64, len(datagrams))
            ok = v5.valid(head, sizes)
            if not ok.all():
                for i in np.flatnonzero(~ok).tolist():
                    self._bad(probe, e, BadDatagram(v5.check(datagrams[i])))
                datagrams = [d for d, good in zip(datagrams, ok.tolist(), strict=True) if good]
                head = head[ok]
            if not datagrams:
                continue
            self._v5_sequences(e, head)
            out.append((e, v5.decode_many(datagrams, head)[1]))
        for e, b in out:
            b = self._valid(probe, e, b)
            if nrecords(b):
                e.c["records"] += nrecords(b)
                for p in probe.packers:
                    packed = p.pack(b)
                    if nrecords(packed):
                        self.ready.append(packed)
                        self.ready_records += nrecords(packed)
        if self.ready_records >= MAX_READY:
            self.flush()

    def _bad(self, probe, e, exc):
        e.c["bad"] += 1
        self.log.limited((e.name, "bad datagram"),
                         f"probe {probe.name}: bad datagram from {e.name}: {exc}")

    def _v5_sequences(self, e, head):
        """Flows lost by the sequence numbers, per engine, over a run of datagrams."""
        engine = (head["engine_type"].astype(np.int64) << 8) | head["engine_id"]
        seq = head["flow_sequence"].astype(np.int64)
        count = head["count"].astype(np.int64)
        for eng in np.unique(engine).tolist():
            sel = engine == eng
            s, c = seq[sel], count[sel]
            key = (5, eng)
            expected = e.seq.get(key)
            gaps = (s[1:] - (s[:-1] + c[:-1])) % U32
            lost = int(gaps[gaps < (1 << 31)].sum())
            if expected is not None:
                gap = (int(s[0]) - expected) % U32
                lost += gap if gap < (1 << 31) else 0
            e.c["lost"] += lost
            e.seq[key] = int(s[-1] + c[-1]) % U32

    def _ipfix_counts(self, e, msg):
        e.c["missing"] += msg.missing
        if msg.missing:
            self.log.limited((e.name, "missing template"),
                             f"data from {e.name} (domain {msg.domain}) for a template "
                             "not received yet")
        if msg.version == 9:
            # v9 sequence numbers count export packets: a gap is datagrams lost
            e.sequence((9, msg.domain), msg.sequence, 1, "lost")
        else:
            e.sequence((10, msg.domain), msg.sequence, msg.data_records)

    def _valid(self, probe, e, b):
        """SiLK's sanity rules: no zero packets or bytes, no more packets than bytes."""
        packets, nbytes = b["packets"], b["bytes"]
        if "zero-packets" in probe.conf.quirks:
            zero = packets == 0
            if zero.any():
                b = dict(b, packets=np.where(zero, 1, packets).astype(np.uint64))
                packets = b["packets"]
        ok = (packets > 0) & (nbytes > 0) & (packets <= nbytes)
        if ok.all():
            return b
        e.c["dropped"] += int((~ok).sum())
        self.log.limited((e.name, "dropped records"),
                         f"probe {probe.name}: records from {e.name} with zero packets or "
                         "bytes or more packets than bytes dropped")
        return take(b, ok)

    # ---------------------------------------------------------------- flushing, stats

    def flush(self):
        self.decode_pending()
        if self.ready:
            batches, self.ready, self.ready_records = _merge(self.ready), [], 0
            self.sink.submit(batches)

    def stats(self):
        for probe in self.probes.values():
            for e in probe.exporters.values():
                c = e.c
                self.log(f"probe {probe.name} exporter {e.name}: datagrams={c['datagrams']} "
                         f"records={c['records']} bytes={c['bytes']} bad={c['bad']} "
                         f"missing-template={c['missing']} lost={c['lost']} "
                         f"dropped={c['dropped']}")
        if self.refused:
            self.log(f"datagrams refused from hosts not accepted: {self.refused}")

    def totals(self):
        t = dict.fromkeys(COUNTERS, 0)
        for probe in self.probes.values():
            for e in probe.exporters.values():
                for k in COUNTERS:
                    t[k] += e.c[k]
        return t

    # ---------------------------------------------------------------- inputs

    def bind(self, bindings, rcvbuf):
        """Open the sockets of the (host, port) -> [Probe] bindings: [(socket, probes)]."""
        bound = []
        try:
            for (host, port), probes in bindings.items():
                bound.append((_bind(host, port, rcvbuf), probes))
        except BaseException:
            for s, _ in bound:
                s.close()
            raise
        return bound

    def run_sockets(self, bound):
        """Receive on the bound sockets until SIGTERM or SIGINT, then flush everything."""
        sel = selectors.DefaultSelector()
        socks = []
        for s, probes in bound:
            socks.append(s)
            sel.register(s, selectors.EVENT_READ, probes)
            host, port = s.getsockname()[:2]
            self.log(f"listening on {host}:{port}/udp for "
                     f"{', '.join(p.name + ' (' + p.conf.type + ')' for p in probes)}")
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        sel.register(wake_r, selectors.EVENT_READ, None)
        old = _signals(self, wake_w)
        now = time.monotonic()
        next_flush, next_stats = now + self.flush_interval, now + self.stats_interval
        next_decode, waiting = now + DECODE_EVERY, 0
        try:
            while not self.stop:
                now = time.monotonic()
                due = min(next_flush, next_stats, next_decode if waiting else next_flush)
                for key, _ in sel.select(max(0.0, due - now)):
                    if key.data is None:
                        try:
                            while wake_r.recv(64):
                                pass
                        except BlockingIOError:
                            pass
                        continue
                    if not waiting:
                        next_decode = time.monotonic() + DECODE_EVERY
                    waiting += self._drain(key.fileobj, key.data)
                now = time.monotonic()
                if waiting and (waiting >= DECODE_DATAGRAMS or now >= next_decode):
                    self.decode_pending()
                    waiting, next_decode = 0, now + DECODE_EVERY
                if now >= next_flush:
                    self.poll_directories()
                    self.flush()
                    next_flush = now + self.flush_interval
                if now >= next_stats or self.want_stats:
                    self.want_stats = False
                    self.stats()
                    next_stats = now + self.stats_interval
        finally:
            for s in socks:
                # What the kernel still holds for us is read before the last flush (up to
                # about a socket buffer's worth: an exporter that keeps sending cannot
                # hold the stop off).
                probes = sel.get_key(s).data
                for _ in range(64):
                    if not self._drain(s, probes):
                        break
                    self.decode_pending()
                s.close()
            self.flush()
            _restore(old)
            wake_r.close()
            wake_w.close()

    def _drain(self, sock, probes):
        got = 0
        while got < 2048:
            try:
                d, addr = sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            host = _host(addr[0])
            probe = _route(probes, host)
            if probe is None:
                self.refused += 1
                self.log.limited((host, "refused"),
                                 f"datagram from {host} refused: not an accept-from-host")
            else:
                probe.pending.append((host, d))
            got += 1
        return got

    def poll_directories(self):
        """Process the new files of poll-directory probes, then move each into the
        directory's .processed/ (names beginning with '.' are never read)."""
        from ..errors import FlowError
        for probe in self.probes.values():
            d = probe.conf.poll_directory
            if not d:
                continue
            try:
                names = sorted(n for n in os.listdir(d) if not n.startswith("."))
            except OSError as exc:
                self.log.limited((d, "poll"), f"cannot list poll-directory {d}: {exc}")
                continue
            for name in names:
                path = os.path.join(d, name)
                try:
                    if not os.path.isfile(path) or os.path.getsize(path) == 0:
                        continue
                    self.run_datagrams(probe, f"file:{name}"[:64], read_datagram_file(path))
                    done = os.path.join(d, ".processed")
                    os.makedirs(done, exist_ok=True)
                    os.replace(path, os.path.join(done, name))
                except (OSError, FlowError) as exc:
                    self.log.limited((d, "poll"), f"cannot process {path}: {exc}")

    def run_datagrams(self, probe, host, datagrams):
        """Feed datagrams from a file or capture (no pacing), decoding in chunks."""
        for d in datagrams:
            probe.pending.append((host, d))
            if len(probe.pending) >= DECODE_DATAGRAMS:
                self.decode_pending()


def _route(probes, host):
    for p in probes:
        if p.accept is None or host in p.accept:
            return p
    return None


def _bind(host, port, rcvbuf):
    from ..errors import FlowError
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise FlowError(f"cannot resolve listen address {host}: {exc}") from None
    s = socket.socket(info[0], socket.SOCK_DGRAM)
    if rcvbuf:
        try:
            s.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), rcvbuf)
        except OSError:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    try:
        s.bind(info[4])
    except OSError as exc:
        s.close()
        raise FlowError(f"cannot listen on {host}:{port}/udp: {exc.strerror}") from None
    s.setblocking(False)
    return s


def _signals(collector, wake):
    def stop(signum, frame):
        collector.stop = True

    def usr1(signum, frame):
        collector.want_stats = True

    old = {sig: signal.signal(sig, h) for sig, h in
           ((signal.SIGTERM, stop), (signal.SIGINT, stop), (signal.SIGUSR1, usr1))}
    old["wakeup"] = signal.set_wakeup_fd(wake.fileno(), warn_on_full_buffer=False)
    return old


def _restore(old):
    signal.set_wakeup_fd(old.pop("wakeup"))
    for sig, h in old.items():
        signal.signal(sig, h)


def _merge(batches):
    """Fewer, larger batches: IPv4 ones together and IPv6 ones together."""
    v4 = [b for b in batches if "ipv6" not in b]
    v6 = [b for b in batches if "ipv6" in b]
    return [concat(group) for group in (v4, v6) if group]


def read_datagram_file(path):
    """The datagrams of a file: pyflow-gen's length-prefixed datagram file, SiLK's 1464-byte
    NetFlow v5 blocks, or else one datagram; gzip-compressed files are accepted."""
    import gzip

    from ..errors import FlowError
    try:
        with open(path, "rb") as f:
            data = f.read()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise FlowError(f"cannot read datagram file {path}: "
                        f"{getattr(exc, 'strerror', None) or exc}") from None
    out, pos = [], 0
    while pos + 2 <= len(data):
        size = int.from_bytes(data[pos:pos + 2], "big")
        if size == 0 or pos + 2 + size > len(data):
            break
        out.append(data[pos + 2:pos + 2 + size])
        pos += 2 + size
    if pos == len(data) and out:
        return out
    if data[:2] == b"\x00\x05" and len(data) % 1464 == 0:
        return [data[i:i + 1464] for i in range(0, len(data), 1464)]
    return [data] if data else []
