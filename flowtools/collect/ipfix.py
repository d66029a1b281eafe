"""NetFlow v9 (RFC 3954) and IPFIX (RFC 7011) messages: templates and data sets.

Templates and options templates live per (exporter, version, observation domain or source
id, template id) in a TemplateStore, are replaced when sent again and withdrawn by IPFIX
withdrawal records. parse() reads a datagram's sets; decode_sets() decodes the data sets of
one template from many datagrams together: their records are cut into a (records, bytes)
uint8 matrix (one numpy reshape of the joined sets when the template has no variable-length
field; a short loop over the records that drops the variable-length fields otherwise) and
every column of interest is read out of that matrix as one numpy operation.
Elements pyflow does not store, enterprise-specific ones included, are simply not read.

Times: flowStart/End in seconds, milliseconds, NTP microseconds and nanoseconds, delta
microseconds before the export time, and sysUpTime milliseconds (relative to the v9 header's
uptime, or to the systemInitTimeMilliseconds an IPFIX exporter sends in options data).
Biflows (RFC 5103 reverse elements) are folded as SiLK does: a record with reverse packets
becomes a forward record and a reverse one (endpoints, ports and interfaces swapped).
"""

import numpy as np

from ..schema import concat, make_batch
from . import BadDatagram

REVERSE_PEN = 29305  # RFC 5103 reverse information elements
CERT_PEN = 6871      # CERT's elements (YAF): initial/union TCP flags, app label, rev delta
SCOPE = -1           # "enterprise" of v9 options scope fields: their own number space
VARLEN = 0xFFFF
NTP_EPOCH_S = 2_208_988_800
MAX_FIELDS = 1024          # fields of one template
MAX_STORED_FIELDS = 1 << 20  # fields of all templates: bounds what garbage can claim

# Elements read, as (enterprise, element id); enterprise 0 is IANA's (and v9's) space.
E = {
    "bytes": (0, 1), "packets": (0, 2), "protocol": (0, 4), "flags": (0, 6),
    "sport": (0, 7), "sip4": (0, 8), "input": (0, 10), "dport": (0, 11), "dip4": (0, 12),
    "output": (0, 14), "nhip4": (0, 15), "end_up": (0, 21), "start_up": (0, 22),
    "sip6": (0, 27), "dip6": (0, 28), "icmp4": (0, 32), "nhip6": (0, 62),
    "bytes_total": (0, 85), "packets_total": (0, 86), "icmp6": (0, 139),
    "start_s": (0, 150), "end_s": (0, 151), "start_ms": (0, 152), "end_ms": (0, 153),
    "start_us": (0, 154), "end_us": (0, 155), "start_ns": (0, 156), "end_ns": (0, 157),
    "start_delta": (0, 158), "end_delta": (0, 159), "init_ms": (0, 160),
    "dur_ms": (0, 161), "dur_us": (0, 162), "icmp_type4": (0, 176), "icmp_code4": (0, 177),
    "icmp_type6": (0, 178), "icmp_code6": (0, 179),
    "rbytes": (REVERSE_PEN, 1), "rpackets": (REVERSE_PEN, 2), "rflags": (REVERSE_PEN, 6),
    "initflags": (CERT_PEN, 14), "unionflags": (CERT_PEN, 15),
    "rinitflags": (CERT_PEN, 16398), "runionflags": (CERT_PEN, 16399),
    "application": (CERT_PEN, 33), "rdelta_ms": (CERT_PEN, 21),
}


class Template:
    """A template's fields and the plan to read its records."""

    def __init__(self, tid, fields, scope=0):
        self.tid = tid
        self.fields = fields  # [(enterprise, element, length)]
        self.scope = scope
        self.variable = any(length == VARLEN for _, _, length in fields)
        self.fixed_size = sum(length for _, _, length in fields if length != VARLEN)
        # Smallest possible record: fixed fields plus a one-byte length per variable one.
        self.min_size = self.fixed_size + sum(length == VARLEN for _, _, length in fields)
        self.offsets = {}  # (enterprise, element) -> (offset, length) in the fixed layout
        at = 0
        for pen, ie, length in fields:
            if length == VARLEN:
                continue
            self.offsets.setdefault((pen, ie), (at, length))
            at += length
        self.is_flow = ((E["sip4"] in self.offsets or E["sip6"] in self.offsets)
                        and (E["dip4"] in self.offsets or E["dip6"] in self.offsets))


class TemplateStore:
    """Templates of every exporter and domain, and options values learnt from them."""

    def __init__(self):
        self.templates = {}
        self.init_ms = {}  # (exporter, domain) -> systemInitTimeMilliseconds
        self.fields = 0

    def put(self, key, template):
        old = self.templates.get(key)
        grown = self.fields + len(template.fields) - (len(old.fields) if old else 0)
        if grown > MAX_STORED_FIELDS:
            raise BadDatagram("too many templates")
        self.templates[key] = template
        self.fields = grown

    def withdraw(self, exporter, version, domain, tid, options):
        if tid in (2, 3):  # all templates (or options templates) of the domain
            for k in [k for k, t in self.templates.items()
                      if k[:3] == (exporter, version, domain) and (t.scope > 0) == options]:
                self.fields -= len(self.templates.pop(k).fields)
        elif (old := self.templates.pop((exporter, version, domain, tid), None)) is not None:
            self.fields -= len(old.fields)


class Message:
    """What one v9/IPFIX datagram held."""

    def __init__(self, version, domain, sequence, export_ms):
        self.version, self.domain, self.sequence = version, domain, sequence
        self.export_ms = export_ms
        self.batches = []
        self.sets = []          # (template, records: bytes or matrix, init_ms) to decode
        self.data_records = 0   # data records of every kind (IPFIX sequence unit)
        self.missing = 0        # data sets whose template is not known
        self.templates = 0

    def batch(self):
        return concat(self.batches) if self.batches else None


def decode(data, exporter, store):
    """Decode one v9 or IPFIX datagram into a Message; BadDatagram when malformed."""
    msg = parse(data, exporter, store)
    msg.batches = decode_sets([msg])
    return msg


def parse(data, exporter, store):
    """Read one datagram's structure: templates are stored at once, the data sets of known
    flow templates are kept in msg.sets for decode_sets (many datagrams' sets are decoded
    together). BadDatagram when malformed."""
    data = bytes(data)
    if len(data) < 16:
        raise BadDatagram(f"truncated datagram ({len(data)} bytes)")
    version = int.from_bytes(data[0:2], "big")
    if version == 9:
        if len(data) < 20:
            raise BadDatagram(f"truncated v9 datagram ({len(data)} bytes)")
        uptime = int.from_bytes(data[4:8], "big")
        secs = int.from_bytes(data[8:12], "big")
        msg = Message(9, int.from_bytes(data[16:20], "big"),
                      int.from_bytes(data[12:16], "big"), secs * 1000)
        msg.uptime = uptime
        pos, end, tpl_ids, opt_ids = 20, len(data), (0,), (1,)
    elif version == 10:
        length = int.from_bytes(data[2:4], "big")
        if length < 16 or length > len(data):
            raise BadDatagram(f"IPFIX message length {length} in a datagram of {len(data)}")
        msg = Message(10, int.from_bytes(data[12:16], "big"),
                      int.from_bytes(data[8:12], "big"),
                      int.from_bytes(data[4:8], "big") * 1000)
        msg.uptime = None
        pos, end, tpl_ids, opt_ids = 16, length, (2,), (3,)
    else:
        raise BadDatagram(f"unknown version {version}")
    while pos + 4 <= end:
        sid = int.from_bytes(data[pos:pos + 2], "big")
        slen = int.from_bytes(data[pos + 2:pos + 4], "big")
        if sid == 0 and slen == 0 and version == 9 and not any(data[pos:end]):
            break  # zero padding after the last flowset (seen from Palo Alto)
        if slen < 4 or pos + slen > end:
            raise BadDatagram(f"set {sid} of length {slen} at byte {pos} overruns the "
                              f"{end}-byte message")
        body = data[pos + 4:pos + slen]
        if sid in tpl_ids:
            _templates(body, msg, exporter, store, options=False)
        elif sid in opt_ids:
            _templates(body, msg, exporter, store, options=True)
        elif sid >= 256:
            _data(body, sid, msg, exporter, store)
        pos += slen
    if version == 10 and pos != end:
        raise BadDatagram(f"{end - pos} stray bytes after the last set")
    return msg


def _u16(b, at):
    return int.from_bytes(b[at:at + 2], "big")


def _templates(body, msg, exporter, store, options):
    pos, n = 0, len(body)
    v9 = msg.version == 9
    while n - pos >= 4:
        tid = _u16(body, pos)
        if v9 and options:
            if n - pos < 6:
                break
            scope_len, opt_len = _u16(body, pos + 2), _u16(body, pos + 4)
            if scope_len % 4 or opt_len % 4:
                raise BadDatagram(f"options template {tid}: lengths not multiples of 4")
            nscope, count = scope_len // 4, (scope_len + opt_len) // 4
            pos += 6
        else:
            count = _u16(body, pos + 2)
            pos += 4
            nscope = 0
            if not v9 and options and count:
                if n - pos < 2:
                    raise BadDatagram(f"truncated options template {tid}")
                nscope = _u16(body, pos)
                pos += 2
                if nscope == 0 or nscope > count:
                    raise BadDatagram(f"options template {tid} with {nscope} scope fields")
        if tid == 0 and v9 and count == 0:
            break  # padding
        if count == 0 and not v9:
            store.withdraw(exporter, msg.version, msg.domain, tid, options)
            continue
        if tid < 256 or count > MAX_FIELDS:
            raise BadDatagram(f"template {tid} with {count} fields")
        fields = []
        for i in range(count):
            if n - pos < 4:
                raise BadDatagram(f"truncated template {tid}")
            ie, length = _u16(body, pos), _u16(body, pos + 2)
            pos += 4
            pen = 0
            if v9:
                pen = SCOPE if i < nscope else 0
            elif ie & 0x8000:
                if n - pos < 4:
                    raise BadDatagram(f"truncated template {tid}")
                pen = int.from_bytes(body[pos:pos + 4], "big")
                ie &= 0x7FFF
                pos += 4
            fields.append((pen, ie, length))
        t = Template(tid, fields, nscope if options else 0)
        if t.min_size == 0:
            raise BadDatagram(f"template {tid} describes empty records")
        store.put((exporter, msg.version, msg.domain, tid), t)
        msg.templates += 1


def _matrix(t, body):
    """The set's records as a (records, fixed bytes) uint8 matrix, variable fields dropped."""
    if not t.variable:
        k = len(body) // t.fixed_size
        _padding(body[k * t.fixed_size:], t)
        return np.frombuffer(body, np.uint8, k * t.fixed_size).reshape(k, t.fixed_size)
    rows, pos, n = [], 0, len(body)
    while n - pos >= t.min_size:
        parts = []
        for _, _, length in t.fields:
            if length == VARLEN:
                if pos >= n:
                    raise BadDatagram(f"truncated record of template {t.tid}")
                length, pos = body[pos], pos + 1
                if length == 255:
                    length, pos = _u16(body, pos), pos + 2
                if pos + length > n:
                    raise BadDatagram(f"variable-length field overruns template {t.tid}'s set")
                pos += length
                continue
            if pos + length > n:
                raise BadDatagram(f"truncated record of template {t.tid}")
            parts.append(body[pos:pos + length])
            pos += length
        rows.append(b"".join(parts))
    _padding(body[pos:], t)
    return np.frombuffer(b"".join(rows), np.uint8).reshape(len(rows), t.fixed_size)


def _padding(rest, t):
    # Padding aligns a set to 4 bytes (or is zeros); more is a record cut short.
    if len(rest) > 3 and any(rest):
        raise BadDatagram(f"data set of template {t.tid} ends in a truncated record "
                          f"({len(rest)} bytes)")


def _col(mat, t, name):
    """The unsigned value of an element in every record (uint64), or None if absent."""
    hit = t.offsets.get(E[name])
    if hit is None:
        return None
    off, n = hit
    if n > 8:  # not an integer of ours: read the last 8 bytes rather than fail
        off, n = off + n - 8, 8
    if n in (1, 2, 4, 8):
        part = np.ascontiguousarray(mat[:, off:off + n])
        return part.view(f">u{n}").ravel().astype(np.uint64)
    acc = np.zeros(len(mat), np.uint64)
    for i in range(n):  # reduced-size encoding of odd widths: 3, 5, 6, 7 bytes
        acc = (acc << np.uint64(8)) | mat[:, off + i].astype(np.uint64)
    return acc


def _addr6(mat, t, name):
    hit = t.offsets.get(E[name])
    if hit is None or hit[1] != 16:
        return None
    part = np.ascontiguousarray(mat[:, hit[0]:hit[0] + 16])
    return part.view(">u8").astype(np.uint64).reshape(-1, 2)


def _data(body, sid, msg, exporter, store):
    t = store.templates.get((exporter, msg.version, msg.domain, sid))
    if t is None:
        msg.missing += 1
        return
    if t.variable or t.scope:
        part = _matrix(t, body)
        k = len(part)
    else:
        k = len(body) // t.fixed_size
        _padding(body[k * t.fixed_size:], t)
        part = body[:k * t.fixed_size]
    msg.data_records += k
    if not k:
        return
    if t.scope:
        init = _col(part, t, "init_ms")
        if init is not None:
            store.init_ms[(exporter, msg.domain)] = int(init[-1])
        return
    if t.is_flow:
        msg.sets.append((t, part, store.init_ms.get((exporter, msg.domain))))


class _Ctx:
    """Per-record export time (ms) and, for v9, header uptime (uint32) of a group of sets."""

    def __init__(self, export_ms, uptime):
        self.export_ms, self.uptime = export_ms, uptime


def decode_sets(messages):
    """The flow records of the data sets the messages hold, as batches: the sets of one
    template (and time base) are decoded together, whatever datagram they came in."""
    groups = {}
    for msg in messages:
        for t, part, init_ms in msg.sets:
            groups.setdefault((id(t), init_ms, msg.uptime is None), []).append((msg, t, part))
    out = []
    for (_, init_ms, _), items in groups.items():
        t = items[0][1]
        if t.variable:
            mats = [part for _, _, part in items]
            counts = [len(m) for m in mats]
            mat = np.concatenate(mats) if len(mats) > 1 else mats[0]
        else:
            counts = [len(part) // t.fixed_size for _, _, part in items]
            joined = b"".join([part for _, _, part in items])
            mat = np.frombuffer(joined, np.uint8).reshape(-1, t.fixed_size)
        msgs = [m for m, _, _ in items]
        export = np.repeat(np.array([m.export_ms for m in msgs], np.int64), counts)
        uptime = None
        if msgs[0].uptime is not None:
            uptime = np.repeat(np.array([m.uptime for m in msgs], np.uint32), counts)
        out.extend(records(mat, t, _Ctx(export, uptime), init_ms))
    return out


def _first(mat, t, *names):
    for name in names:
        v = _col(mat, t, name)
        if v is not None:
            return v
    return None


def _ntp_ms(v):
    secs = (v >> np.uint64(32)).astype(np.int64) - NTP_EPOCH_S
    frac = (v & np.uint64(0xFFFFFFFF)) * np.uint64(1000) >> np.uint64(32)
    return secs * 1000 + frac.astype(np.int64)


def _time(mat, t, ctx, init_ms, which):
    """Epoch ms of the flows' start or end (which = 'start' / 'end'), or None."""
    v = _col(mat, t, f"{which}_ms")
    if v is not None:
        return v.astype(np.int64)
    v = _col(mat, t, f"{which}_s")
    if v is not None:
        return v.astype(np.int64) * 1000
    for unit in ("us", "ns"):
        v = _col(mat, t, f"{which}_{unit}")
        if v is not None:
            return _ntp_ms(v)
    v = _col(mat, t, f"{which}_delta")
    if v is not None:
        return ctx.export_ms - (v // np.uint64(1000)).astype(np.int64)
    v = _col(mat, t, f"{which}_up")
    if v is not None:
        if ctx.uptime is not None:
            # Ages modulo the 32-bit uptime, as in v5.
            age = (ctx.uptime - v.astype(np.uint32)).view(np.int32)
            return ctx.export_ms - age.astype(np.int64)
        rec_init = _col(mat, t, "init_ms")
        if rec_init is not None:
            return rec_init.astype(np.int64) + v.astype(np.int64)
        if init_ms is not None:
            return init_ms + v.astype(np.int64)
    return None


def records(mat, t, ctx, init_ms=None):
    """The flow records of a decoded data set: one batch, two with biflows."""
    n = len(mat)
    start = _time(mat, t, ctx, init_ms, "start")
    end = _time(mat, t, ctx, init_ms, "end")
    dur = _first(mat, t, "dur_ms")
    if dur is None and (v := _col(mat, t, "dur_us")) is not None:
        dur = v // np.uint64(1000)
    if start is None and end is None:
        start = ctx.export_ms.copy()
    if start is None:
        start = end - (dur.astype(np.int64) if dur is not None else 0)
    if end is None:
        end = start + (dur.astype(np.int64) if dur is not None else 0)
    duration = np.clip(end - start, 0, 0xFFFFFFFF)

    v6 = t.offsets.get(E["sip6"]) is not None
    if v6:
        sip, dip = _addr6(mat, t, "sip6"), _addr6(mat, t, "dip6")
        nhip = _addr6(mat, t, "nhip6")
        if sip is None or dip is None:
            v6 = False
    if not v6:
        sip = _col(mat, t, "sip4")
        dip = _col(mat, t, "dip4")
        nhip = _col(mat, t, "nhip4")
    zero = np.zeros(n, np.uint64)
    protocol = _first(mat, t, "protocol")
    protocol = zero if protocol is None else protocol
    sport = _first(mat, t, "sport")
    dport = _first(mat, t, "dport")
    sport = zero if sport is None else sport
    dport = zero if dport is None else dport.copy()
    icmp = (protocol == 1) | (protocol == 58)
    if icmp.any():
        typecode = _first(mat, t, "icmp6" if v6 else "icmp4", "icmp4", "icmp6")
        if typecode is None:
            typ = _first(mat, t, "icmp_type6" if v6 else "icmp_type4")
            code = _first(mat, t, "icmp_code6" if v6 else "icmp_code4")
            if typ is not None:
                typecode = (typ << np.uint64(8)) | (code if code is not None else zero)
        if typecode is not None:
            dport[icmp] = typecode[icmp] & np.uint64(0xFFFF)
            sport = np.where(icmp, 0, sport)
    packets = _first(mat, t, "packets", "packets_total")
    nbytes = _first(mat, t, "bytes", "bytes_total")
    flags = _first(mat, t, "flags")
    initf = _first(mat, t, "initflags")
    unionf = _first(mat, t, "unionflags")
    if flags is None and initf is not None:
        flags = initf | (unionf if unionf is not None else zero)
    app = _first(mat, t, "application")
    cols = dict(
        stime=start, duration=duration, sip=sip if sip is not None else zero,
        dip=dip if dip is not None else zero, nhip=nhip if nhip is not None else zero,
        sport=sport, dport=dport, protocol=protocol,
        packets=packets if packets is not None else zero,
        bytes=nbytes if nbytes is not None else zero,
        flags=(flags if flags is not None else zero) & np.uint64(0xFF),
        initflags=(initf if initf is not None else zero) & np.uint64(0xFF),
        sessflags=(unionf if unionf is not None else zero) & np.uint64(0xFF),
        application=app if app is not None else zero,
        input=_first(mat, t, "input") if E["input"] in t.offsets else zero,
        output=_first(mat, t, "output") if E["output"] in t.offsets else zero)
    if v6:
        cols["nhip"] = nhip if nhip is not None else np.zeros((n, 2), np.uint64)
    cols = {k: (v.astype(np.uint32) if k in ("sip", "dip", "nhip") and not v6 else v)
            for k, v in cols.items()}
    out = [_batch(n, v6, cols)]
    rpackets = _col(mat, t, "rpackets")
    if rpackets is not None and (rpackets > 0).any():
        keep = rpackets > 0
        rbytes = _col(mat, t, "rbytes")
        rflags = _col(mat, t, "rflags")
        rinit, runion = _col(mat, t, "rinitflags"), _col(mat, t, "runionflags")
        if rflags is None and rinit is not None:
            rflags = rinit | (runion if runion is not None else zero)
        delta = _col(mat, t, "rdelta_ms")
        rev = dict(cols, sip=cols["dip"], dip=cols["sip"], sport=cols["dport"],
                   dport=cols["sport"], input=cols["output"], output=cols["input"],
                   packets=rpackets, bytes=rbytes if rbytes is not None else zero,
                   flags=(rflags if rflags is not None else zero) & np.uint64(0xFF),
                   initflags=(rinit if rinit is not None else zero) & np.uint64(0xFF),
                   sessflags=(runion if runion is not None else zero) & np.uint64(0xFF))
        if delta is not None:
            rev["stime"] = start + delta.astype(np.int64)
            rev["duration"] = np.clip(end - rev["stime"], 0, 0xFFFFFFFF)
        rev = {k: v[keep] for k, v in rev.items()}
        out.append(_batch(int(keep.sum()), v6, rev))
    return out


def _batch(n, v6, cols):
    if v6:
        cols = dict(cols, ipv6=np.ones(n, bool))
    return make_batch(n, v6=v6, **cols)
