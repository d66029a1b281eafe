"""A seeded generator of realistic flow traffic for one monitored network.

The monitored network ("inside") is 198.18.0.0/22 (RFC 2544 benchmarking space: public-looking,
never routed) and 2001:db8:1234::/48 for IPv6, with about 100 active hosts: web, DNS, NTP, game,
peer-to-peer and SSH servers, a gateway (198.18.0.1) and clients. Everything else is "outside".

The shape follows published measurements of a monitored /22: outside sources are heavy tailed
(about half send one flow, about 90% at most ten, under 1% send over a hundred yet carry over
half of all flows), scanners sweep the /24s on 445, 1433, 3389, 22 and 23 with mostly unanswered
SYNs, answered connections show as an inbound and an outbound flow, UDP to 53, 123, 4672, 27015
and 7986, ICMP with SiLK's encoding (sport 0, dport = type*256 + code), a little IPv6, uneven
sensors, and a daily cycle peaking in the local afternoon (the site's clock is UTC-5).

Records are made an hour at a time as numpy column batches; memory holds one hour of records plus
a block of pending outside sources (16 bytes per source, at most 2^22 sources a block).
"""

import math

import numpy as np

from .errors import FlowError
from .schema import COLUMNS, IP_COLUMNS, concat, make_batch

HOUR = 3_600_000
LOCAL_UTC_OFFSET_H = -5
INSIDE_V4 = 0xC6120000  # 198.18.0.0/22
INSIDE_V6_HI = 0x20010DB812340000  # 2001:db8:1234::/48; the /24 number picks the /64
ROUTER_V4 = 0xC0000200  # 192.0.2.0: per-sensor upstream next hops 192.0.2.1...
ROUTER_V6_HI = 0x20010DB8FFFF0000
MAPPED = np.uint64(0xFFFF00000000)
MAX_ACTIVE_MS = 1_800_000  # flows longer than the meter's active timeout are split

F, S, R, P, A = 1, 2, 4, 8, 16

# Roles of outside sources.  OUTSRV is an outside server an inside client talks to: its
# "sent" flow is the reply, so it is always answered.
SCAN, UPROBE, WEBCLI, SVCCLI, OUTSRV, ICMPSRC = range(6)
# Role mix by a source's total flow count (1, 2-10, 11-100, >100): heavy hitters are mostly
# scanners and busy servers, one-flow sources mostly scan probes.
ROLE_P = np.array([
    [0.50, 0.10, 0.14, 0.08, 0.10, 0.08],
    [0.30, 0.06, 0.24, 0.14, 0.18, 0.08],
    [0.30, 0.04, 0.18, 0.14, 0.30, 0.04],
    [0.52, 0.02, 0.05, 0.12, 0.28, 0.01],
])
P_ANSWER = np.array([0.04, 0.20, 0.97, 0.95, 1.0, 0.60])

# Services (traffic profiles).
WEB, SSH, DNS, NTP, GAME, P2P, SCANP, PROBE, ECHO, ICMPERR, OTHERUDP = range(11)
SVCCLI_SVC = ([SSH, DNS, NTP, GAME, P2P], [0.10, 0.30, 0.15, 0.20, 0.25])
OUTSRV_SVC = ([WEB, DNS, NTP, GAME, P2P], [0.55, 0.20, 0.07, 0.05, 0.13])
SCAN_PORTS = ([445, 23, 22, 3389, 1433], [0.35, 0.20, 0.15, 0.15, 0.15])
PROBE_PORTS = ([53, 123, 1900, 161, 5060], [0.35, 0.25, 0.15, 0.15, 0.10])
WEB_PORTS = ([443, 80, 8080], [0.70, 0.27, 0.03])
GAME_PORTS = ([27015, 7986], [0.6, 0.4])
SVC_PORT = np.array([0, 22, 53, 123, 0, 4672, 0, 0, 0, 0, 67], np.int64)
# (type, code) pairs as dport values, and their ICMPv6 counterparts.
ICMP4 = np.array([0x0000, 0x0301, 0x0303, 0x030D, 0x0800, 0x0B00])
ICMP6 = np.array([0x8100, 0x0103, 0x0104, 0x0101, 0x8000, 0x0300])
ICMP_ERRS = ([0x0B00, 0x0301, 0x0303, 0x030D], [0.45, 0.20, 0.25, 0.10])

_NO = -50.0  # log of "no extra packets": exp(-50) floors to 0
# Per service: protocol, min packets, log-normal extra packets (mu, sigma), responder/initiator
# packet ratio (mu, sigma), bytes per packet of initiator and responder (mu, sigma), and the
# gap between packets in ms (mu, sigma).
_L = math.log
PROFILE = np.array([
    [6, 3, _L(6), 1.3, _L(1.4), 0.35, _L(150), 0.6, _L(900), 0.35, _L(40), 1.0],  # web
    [6, 4, _L(20), 1.6, 0.0, 0.30, _L(100), 0.5, _L(160), 0.7, _L(400), 1.2],  # ssh
    [17, 1, _NO, 0, 0.0, 0.0, _L(72), 0.12, _L(180), 0.6, 0, 0],  # dns
    [17, 1, _NO, 0, 0.0, 0.0, _L(76), 0.0, _L(76), 0.0, 0, 0],  # ntp
    [17, 5, _L(150), 1.3, _L(1.2), 0.3, _L(90), 0.4, _L(170), 0.5, _L(50), 0.4],  # game
    [17, 1, _L(0.7), 1.0, 0.0, 0.3, _L(95), 0.4, _L(120), 0.4, _L(300), 1.0],  # p2p
    [6, 1, _NO, 0, 0.0, 0.0, _L(46), 0.1, _L(40), 0.0, 0, 0],  # scan (sizes redrawn)
    [17, 1, _NO, 0, 0.0, 0.0, _L(60), 0.3, _L(72), 0.15, 0, 0],  # udp probe
    [1, 1, _L(1.2), 0.9, 0.0, 0.0, _L(84), 0.15, _L(84), 0.15, _L(1000), 0.05],  # echo
    [1, 1, _NO, 0, 0.0, 0.0, _L(70), 0.2, _L(70), 0.2, 0, 0],  # icmp error
    [17, 1, _NO, 0, 0.0, 0.0, _L(330), 0.1, _L(330), 0.1, 0, 0],  # dhcp, mdns
])
PROTO = PROFILE[:, 0].astype(np.uint8)
(MIN_A, MU_A, SIG_A, MU_R, SIG_R, MU_BA, SIG_BA, MU_BB, SIG_BB, MU_GAP,
 SIG_GAP) = PROFILE[:, 1:].T.copy()
# Drawn by indexing with a uniform: FIN 85%, none 10%, reset 5%; SYN sizes; scan flags (with the
# answered 4%, bare SYNs are 92% of scans, then RST-ACK, RST and SYN-ACK backscatter).
SESS_FLAGS = np.array([F | P | A] * 17 + [P | A] * 2 + [R | P | A], np.uint8)
SYN_SIZES = np.array([40] * 6 + [44] * 7 + [48] * 2 + [52] * 2 + [60] * 3, np.float64)
SCAN_FLAGS = np.array([S] * 1100 + [R | A] * 50 + [R] * 31 + [S | A] * 19, np.uint8)
WEB_PORT = np.zeros(65536, bool)
WEB_PORT[[80, 443, 8080]] = True
MAX_PACKETS = 5_000_000

# Record directions and the flowtype names each maps to by class (plain, web, icmp, null),
# with SiLK twoway's fallbacks when a site lacks a type.
IN, OUT, INT2INT, EXT2EXT, OTHER = range(5)
TYPE_NAMES = [("in", "inweb", "inicmp", "innull"), ("out", "outweb", "outicmp", "outnull"),
              ("int2int",) * 4, ("ext2ext",) * 4, ("other",) * 4]
# Traffic that touches no outside source: share of all flows and mix.
P_FIXED = 0.04
FIXED_KINDS = [(INT2INT, 0.37), (EXT2EXT, 0.10), (OUT, 0.20), (OTHER, 0.08), (OUT, 0.25)]

# Outside-source flow counts: P(1), P(2..10), P(11..100) with power-law shapes inside each
# range; the rest (0.7%) is a Pareto tail tuned per block so that it carries TAIL_SHARE.
COUNT_P = (0.52, 0.385, 0.088)
COUNT_SHAPES = (3.2, 3.5)
TAIL_SHARE = 0.58
FLOWS_PER_SLOT = 1.45  # flows per outside-source flow (answers add the other direction)
MAX_BLOCK = 1 << 22
BINS = 1024
MASK10 = np.uint64(BINS - 1)

FIRST_OCTETS = np.array([o for o in range(1, 224)
                         if o not in (10, 100, 127, 169, 172, 192, 198, 203)], np.uint64)


def _mix(x, salt):
    """splitmix64 of x ^ salt: per-source attributes without storing them."""
    with np.errstate(over="ignore"):
        z = np.asarray(x).astype(np.uint64) ^ np.uint64(salt & 0xFFFFFFFFFFFFFFFF)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _table(choices):
    """Values laid out over BINS slots by probability: indexing by random bits draws one."""
    values, probs = np.asarray(choices[0]), np.asarray(choices[1], np.float64)
    cum = np.cumsum(probs / probs.sum())[:-1]
    return values[np.searchsorted(cum, (np.arange(BINS) + 0.5) / BINS, side="right")]


def _count_pmf():
    p1, p2, p3 = COUNT_P
    k2, k3 = np.arange(2.0, 11), np.arange(11.0, 101)
    w2, w3 = k2 ** -COUNT_SHAPES[0], k3 ** -COUNT_SHAPES[1]
    return np.concatenate([[p1], p2 * w2 / w2.sum(), p3 * w3 / w3.sum()])


# Lookup tables, indexed by 10 random bits.
ROLE_TABLE = np.array([_table((np.arange(6), row)) for row in ROLE_P])
ROLE_SVC = np.array([np.full(BINS, SCANP), np.full(BINS, PROBE), np.full(BINS, WEB),
                     _table(SVCCLI_SVC), _table(OUTSRV_SVC), np.full(BINS, ECHO)])
PORT_TABLE = np.array([_table(WEB_PORTS) if v == WEB else _table(GAME_PORTS) if v == GAME
                       else _table(SCAN_PORTS) if v == SCANP else _table(PROBE_PORTS)
                       if v == PROBE else _table(ICMP_ERRS) if v == ICMPERR
                       else np.full(BINS, 0x0800 if v == ECHO else SVC_PORT[v])
                       for v in range(len(PROFILE))])
PER_EVENT_PORT = np.isin(np.arange(6), [WEBCLI, SVCCLI, ICMPSRC])
BLOCKED = np.zeros(65536, bool)
BLOCKED[[445, 1433, 23, 1900, 161]] = True


class _Sources:
    """The outside sources, as a stream of (source, its n-th flow) slots.

    Sources come in blocks whose flow counts are drawn by stratified sampling (so every run has
    the designed proportions) and shuffled. A source with up to 100 flows sends them all in the
    hour it starts; a bigger one spreads them over a few hours, so heavy hitters persist.
    """

    def __init__(self, rng):
        self.rng = rng
        pmf = _count_pmf()
        self.cdf = np.cumsum(pmf)
        self.body_mean = float((np.arange(1, 101) * pmf).sum())
        self.base = 0  # id of the block's first source
        self.counts = self.rates = np.zeros(0, np.int64)
        self.cur = 0
        self.act = {k: np.zeros(0, np.int64) for k in ("id", "count", "done", "rate")}

    def _new_block(self, slots_hint):
        rng = self.rng
        self.base += len(self.counts)
        slots = max(slots_hint, 2048.0)
        k = int(min(MAX_BLOCK, max(256, slots * (1 - TAIL_SHARE) / self.body_mean)))
        u = (np.arange(k) + rng.random(k)) / k
        c = np.searchsorted(self.cdf, u, side="right") + 1
        tail = c > 100
        v = (u[tail] - self.cdf[-1]) / (1 - self.cdf[-1])
        cap = max(1000.0, 0.03 * slots)
        want = TAIL_SHARE / (1 - TAIL_SHARE) * c[~tail].sum()
        lo, hi = 0.3, 4.0  # the tail's Pareto index: solve for the wanted tail flows
        for _ in range(40):
            a = (lo + hi) / 2
            t = np.floor(101 * (1 - v * (1 - (101 / cap) ** a)) ** (-1 / a))
            lo, hi = (a, hi) if t.sum() > want else (lo, a)
        c[tail] = np.minimum(t, cap)
        c = rng.permutation(c)
        span = np.clip(np.rint(np.exp(rng.normal(math.log(4), 1.0, k))), 1, 48)
        self.counts = c
        self.rates = np.where(c > 100, np.ceil(c / span), c).astype(np.int64)
        self.cur = 0

    def take(self, need, plan, slots_hint):
        """Slots worth need or need-1 flows; plan(ids, counts) -> dict with 'answered'."""
        parts = []
        act = self.act
        if len(act["id"]) and need > 0:
            give = np.minimum(act["count"] - act["done"], act["rate"])
            src = self.rng.permutation(np.repeat(np.arange(len(give)), give))
            seq = act["done"][src] + self.rng.integers(0, np.maximum(give[src], 1))
            info = plan(act["id"][src], act["count"][src])
            cs = np.cumsum(1 + info["answered"])
            j = int(np.searchsorted(cs, 0.8 * need, side="right"))
            if j:
                need -= int(cs[j - 1])
                parts.append(_slots(act["id"][src], seq, act["count"][src], info, j))
                act["done"] = act["done"] + np.bincount(src[:j], minlength=len(give))
                keep = act["done"] < act["count"]
                for key in act:
                    act[key] = act[key][keep]
        while need > 1:
            if self.cur >= len(self.counts):
                self._new_block(slots_hint)
            w = min(len(self.counts) - self.cur, int(need / 3) + 64)
            cnt = self.counts[self.cur:self.cur + w]
            first = np.minimum(cnt, self.rates[self.cur:self.cur + w])
            src = np.repeat(np.arange(w), first)
            starts = np.cumsum(first) - first
            seq = np.arange(len(src)) - starts[src]
            ids = self.base + self.cur + src
            info = plan(ids, cnt[src])
            cs = np.cumsum(1 + info["answered"])
            j = int(np.searchsorted(cs, need, side="right"))
            if j:
                need -= int(cs[j - 1])
                parts.append(_slots(ids, seq, cnt[src], info, j))
            # Sources started here and not finished continue in later hours.
            nfull = w if j == len(src) else int(src[j])
            used = first[:nfull].copy()
            if j < len(src) and j > starts[nfull]:
                nfull += 1
                used = np.append(used, j - starts[nfull - 1])
            left = cnt[:nfull] - used
            more = left > 0
            if more.any():
                idx = np.flatnonzero(more)
                new = {"id": self.base + self.cur + idx, "count": cnt[idx], "done": used[idx],
                       "rate": self.rates[self.cur + idx]}
                for key in act:
                    act[key] = np.concatenate([act[key], new[key]])
            self.cur += nfull
            if j < len(src):
                break
        if not parts:
            return None
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _slots(ids, seq, counts, info, j):
    out = {k: v[:j] for k, v in info.items()}
    out.update(id=ids[:j], seq=seq[:j], count=counts[:j])
    return out


class _Generator:
    def __init__(self, seed, sensors, flowtypes, ipv6_fraction):
        self.rng = rng = np.random.default_rng(seed)
        self.salt = int(rng.integers(1 << 62))
        self.sources = _Sources(rng)
        self.v6 = float(ipv6_fraction)
        # The body (sources of up to 100 flows) carries about 45% of the outside traffic, so
        # IPv6 goes to body sources first; heavy hitters are IPv6 only when that is not enough.
        self.p6_body = min(1.0, self.v6 / 0.45)
        self.p6_tail = max(0.0, (self.v6 - 0.45) / 0.55)
        # Sensors carry uneven shares: 1, 1/2, 1/3, ... in a seeded order.
        k = len(sensors)
        w = 1.0 / np.arange(1, k + 1)
        self.sensor_ids = np.array(sensors, np.uint16)[rng.permutation(k)]
        self.sensor_cum = np.cumsum(w / w.sum())[:-1]
        idx = np.arange(k)
        ext, int_ = 1 + 2 * (idx % 4), 2 + 2 * (idx % 4)  # interfaces by sensor
        zero = np.zeros(k, np.int64)
        # By direction (in, out, int2int, ext2ext, other) and sensor.
        self.if_in = np.array([ext, int_, int_, ext, int_], np.uint32)
        self.if_out = np.array([int_, ext, int_ + 16, ext + 16, zero], np.uint32)
        self.nexthop = np.array([zero, idx + 1, zero, zero, zero], np.uint64)
        self._types(flowtypes)
        self._hosts(rng)

    def _types(self, flowtypes):
        if "in" not in flowtypes or "out" not in flowtypes:
            raise FlowError("flowtypes must name at least 'in' and 'out'")
        table = np.zeros((5, 4), np.int64)
        for d, names in enumerate(TYPE_NAMES):
            for c, name in enumerate(names):
                fallback = names[0] if names[0] in flowtypes else None
                table[d, c] = flowtypes.get(name, flowtypes.get(fallback, -1))
        self.type_table = table
        kinds = [(d, p if table[d, 0] >= 0 else 0.0) for d, p in FIXED_KINDS]
        total = sum(p for _, p in kinds)
        self.fixed_cum = np.cumsum([p / total for _, p in kinds])[:-1]

    def _hosts(self, rng):
        offs = np.arange(1024)
        valid = offs[(offs % 256 > 1) & (offs % 256 < 255)]
        h = rng.permutation(valid)[:99]
        sizes = [6, 2, 1, 3, 4, 2]  # web, dns, ntp, game, p2p, ssh; then 81 clients
        groups, at = [], 0
        for n in sizes + [99 - sum(sizes)]:
            groups.append(h[at:at + n])
            at += n
        groups.append(np.concatenate([[1], h]))  # every host, gateway included (for pings)
        # Busier hosts first (weights 1, 1/2^.9, 1/3^.9, ...); the last row is for sweeps.
        rows = [_table((g, 1.0 / np.arange(1, len(g) + 1) ** 0.9)) for g in groups]
        self.host_table = np.array(rows + [np.zeros(BINS, np.int64)])

    # Host groups: 0 web, 1 dns, 2 ntp, 3 game, 4 p2p, 5 ssh, 6 clients, 7 all, 8 swept.
    IN_GROUP = np.array([0, 5, 1, 2, 3, 4, 8, 8, 7, 6, 6])
    OUT_GROUP = np.array([6, 6, 1, 2, 6, 4, 8, 8, 7, 6, 6])

    def _plan(self, ids, counts):
        """A source's role follows from its id and flow count; answers are drawn per flow."""
        h = _mix(ids, self.salt + 1)
        cls = (counts > 1).astype(np.intp) + (counts > 10) + (counts > 100)
        role = ROLE_TABLE[cls, (h & MASK10).astype(np.intp)]
        return {"role": role, "h": h, "answered": self.rng.random(len(ids)) < P_ANSWER[role]}

    # -- events -------------------------------------------------------------------------
    def _stream_events(self, s, t0, t1):
        """Events started by outside sources: the slot's flow comes from the outside."""
        rng = self.rng
        ids, role, h, ans, n = s["id"], s["role"], s["h"], s["answered"], len(s["id"])
        # One hash per source gives its service, port, IPv6-ness and sweep start.
        bits = [((h >> np.uint64(k)) & MASK10).astype(np.intp) for k in (10, 20, 30, 40)]
        r = rng.integers(0, 1 << 30, n)
        ev_bits = [(r >> k) & 1023 for k in (0, 10, 20)]
        svc = ROLE_SVC[role, bits[0]]
        m = np.flatnonzero(role == ICMPSRC)
        svc[m] = np.where(ans[m] | (ev_bits[2][m] < 205), ECHO, ICMPERR)
        # Outside servers and scanners keep their port; clients choose per connection.
        port = PORT_TABLE[svc, np.where(PER_EVENT_PORT[role], ev_bits[0], bits[1])]
        v6 = bits[2] < np.where(s["count"] > 100, self.p6_tail, self.p6_body) * BINS
        o_hi, o_lo = self._outside(ids, v6)
        srv = role == OUTSRV
        off = self.host_table[np.where(srv, self.OUT_GROUP[svc], self.IN_GROUP[svc]),
                              ev_bits[1]]
        sweep = np.flatnonzero((svc == SCANP) | (svc == PROBE))
        # Scanners sweep the /22; the probes that get an answer are those that hit a live host.
        off[sweep] = np.where(ans[sweep], self.host_table[7, ev_bits[1][sweep]],
                              (bits[3][sweep] + s["seq"][sweep]) % 1024)
        i_hi, i_lo = self._inside(off, v6)
        ev = {"t": self._times(n, t0, t1), "svc": svc, "v6": v6, "answered": ans,
              "complete": ans & (svc != SCANP), "null": np.zeros(n, bool)}
        # Outside servers answer inside clients; every other role initiates from outside.
        ev["dir"] = np.where(srv, OUT, IN)
        ev["a_hi"], ev["a_lo"] = np.where(srv, i_hi, o_hi), np.where(srv, i_lo, o_lo)
        ev["b_hi"], ev["b_lo"] = np.where(srv, o_hi, i_hi), np.where(srv, o_lo, i_lo)
        ev["a_port"] = np.where((svc == ECHO) | (svc == ICMPERR), 0, self._ephemeral(n))
        ev["b_port"] = port
        # Blocked scans and probes die at the border router (SiLK's innull).
        ev["null"][sweep] = BLOCKED[port[sweep]] & ~ans[sweep] & (rng.random(len(sweep)) < 0.4)
        return ev

    def _fixed_events(self, n, t0, t1):
        """Traffic that no outside source sends: internal, transit, blocked, broadcast."""
        rng = self.rng
        kind = np.searchsorted(self.fixed_cum, rng.random(n), side="right")
        d = np.array([k for k, _ in FIXED_KINDS])[kind]
        u = rng.random(n)
        svc = np.select([kind == 0, kind == 1, kind == 2, kind == 3],
                        [np.where(u < 0.6, DNS, WEB), np.where(u < 0.5, WEB, DNS), WEB,
                         OTHERUDP], ICMPERR)
        v6 = rng.random(n) < self.v6
        r = rng.integers(0, 1 << 20, n)
        client = self.host_table[6, r & 1023]
        server = self.host_table[np.where(svc == DNS, 1, 0), r >> 10]
        c_hi, c_lo = self._inside(client, v6)
        s_hi, s_lo = self._inside(server, v6)
        g_hi, g_lo = self._inside(np.ones(n, np.int64), v6)
        x = rng.integers(1 << 62, 1 << 63, size=(2, n))
        x_hi, x_lo = self._outside(x[0], v6)
        y_hi, y_lo = self._outside(x[1], v6)
        a_hi = np.select([kind == 1, kind == 4], [x_hi, g_hi], c_hi)
        a_lo = np.select([kind == 1, kind == 4], [x_lo, g_lo], c_lo)
        b_hi = np.select([kind == 0, kind == 1], [s_hi, y_hi], x_hi)
        b_lo = np.select([kind == 0, kind == 1], [s_lo, y_lo], x_lo)
        # "other": DHCP from 0.0.0.0 to the broadcast address, mDNS to 224.0.0.251.
        oth = kind == 3
        dhcp = oth & (u < 0.5) & ~v6
        a_hi[dhcp], a_lo[dhcp] = 0, MAPPED
        b_hi[oth], b_lo[oth] = 0, np.where(dhcp, MAPPED | np.uint64(0xFFFFFFFF),
                                           MAPPED | np.uint64(0xE00000FB))[oth]
        b_hi[oth & v6], b_lo[oth & v6] = 0xFF02000000000000, 0xFB  # ff02::fb
        port = SVC_PORT[svc]
        m = svc == WEB
        port[m] = np.where(kind[m] == 2, np.where(u[m] < 0.7, 445, 25), 443)
        port[oth] = np.where(dhcp, 67, 5353)[oth]
        m = svc == ICMPERR
        port[m] = _table(([0x030D, 0x0301, 0x0B00], [0.5, 0.3, 0.2]))[r[m] & 1023]
        eph = self._ephemeral(n)
        a_port = np.where(svc == ICMPERR, 0, eph)
        a_port[oth] = np.where(dhcp, 68, 5353)[oth]
        return {"t": self._times(n, t0, t1), "svc": svc, "v6": v6, "dir": d,
                "answered": np.zeros(n, bool), "complete": (kind == 0) & (svc == WEB),
                "null": kind == 2, "a_hi": a_hi, "a_lo": a_lo, "b_hi": b_hi, "b_lo": b_lo,
                "a_port": a_port, "b_port": port}

    def _outside(self, ids, v6):
        h = _mix(ids, self.salt + 3)
        first = FIRST_OCTETS[(h >> np.uint64(56)) % np.uint64(len(FIRST_OCTETS))]
        lo = MAPPED | (first << np.uint64(24)) | (h & np.uint64(0xFFFFFF))
        hi = np.zeros(len(h), np.uint64)
        if v6.any():
            h2 = _mix(ids[v6], self.salt + 4)
            hi[v6] = np.uint64(0x2000000000000000) | (h[v6] >> np.uint64(4))
            lo[v6] = h2
        return hi, lo

    def _inside(self, off, v6):
        off = off.astype(np.uint64)
        hi = np.where(v6, np.uint64(INSIDE_V6_HI) | (off >> np.uint64(8)), np.uint64(0))
        lo = np.where(v6, off & np.uint64(255), MAPPED | (np.uint64(INSIDE_V4) + off))
        return hi, lo

    def _ephemeral(self, n):
        """Client ports: mostly the IANA dynamic range, else any unprivileged port."""
        u = self.rng.random(n)
        port = np.where(u < 0.6, 49152 + (u / 0.6 * 16384).astype(np.int64),
                        1024 + ((u - 0.6) / 0.4 * 64512).astype(np.int64))
        port[port == 8080] = 8081  # a client on a web port would make the flow "web"
        return port

    def _times(self, n, t0, t1):
        return t0 + (self.rng.random(n) * max(1, t1 - t0 - 200)).astype(np.int64)

    # -- records ------------------------------------------------------------------------
    def hour(self, t0, t1, n, slots_hint):
        """The records of n flows with stime in [t0, t1)."""
        slots = self.sources.take(n - int(self.rng.binomial(n, P_FIXED)), self._plan, slots_hint)
        evs = []
        if slots is not None:
            evs.append(self._stream_events(slots, t0, t1))
            n -= len(slots["id"]) + int(slots["answered"].sum())
        if n:  # what the outside sources left (a flow or so more than planned)
            evs.append(self._fixed_events(n, t0, t1))
        if not evs:
            return make_batch(0)
        return self._records({k: np.concatenate([e[k] for e in evs]) for k in evs[0]}, t1)

    def _records(self, ev, t1):
        """Both directions' records of the events, as one batch sorted by stime."""
        rng = self.rng
        n, svc, v6, t = len(ev["t"]), ev["svc"], ev["v6"], ev["t"]
        a = np.flatnonzero(ev["answered"])
        tcp = PROTO[svc] == 6
        syn_only = tcp & ~ev["complete"]
        so = np.flatnonzero(syn_only)
        u = rng.random((3, n))
        # Initiator: packets (log-normal extras over a minimum), sizes, durations.
        pk_a = MIN_A[svc]
        multi = np.flatnonzero((SIG_A[svc] > 0) & ~syn_only)
        sm = svc[multi]
        z = rng.standard_normal(2 * len(multi) + n)
        zm, zb = z[:2 * len(multi)].reshape(2, -1), z[2 * len(multi):]
        pk_a[multi] += np.floor(np.exp(MU_A[sm] + SIG_A[sm] * zm[0]))
        np.minimum(pk_a, MAX_PACKETS, out=pk_a)
        dur_a = np.zeros(n)
        dur_a[multi] = np.minimum(MAX_ACTIVE_MS, np.rint(
            (pk_a[multi] - 1) * np.exp(MU_GAP[sm] + SIG_GAP[sm] * zm[1])))
        bpp_a = np.clip(np.exp(MU_BA[svc] + SIG_BA[svc] * zb), 40, 1500)
        # SYNs nobody answers (scans, failed connections): 1-3 packets of 40-60 bytes, and
        # retransmissions about a second apart, or at once from a scanner.
        us = u[0][so]
        pk_a[so] = 1 + (us > 0.75) + (us > 0.93)
        bpp_a[so] = SYN_SIZES[(u[1][so] * len(SYN_SIZES)).astype(np.intp)]
        gap = np.where(svc[so] == SCANP, 1 + 24 * us, 1000 + 2000 * u[1][so])
        dur_a[so] = np.rint((pk_a[so] - 1) * gap)

        # Responder, for answered events only.
        sa = svc[a]
        z = rng.standard_normal((2, len(a)))
        pk_b = np.maximum(1, np.rint(pk_a[a] * np.exp(MU_R[sa] + SIG_R[sa] * z[0])))
        bpp_b = np.clip(np.exp(MU_BB[sa] + SIG_BB[sa] * z[1]), 40, 1500)
        echo = sa == ECHO
        bpp_b[echo] = bpp_a[a][echo]  # a reply is as big as its request
        rtt = np.minimum(1 + np.floor(39 * rng.random(len(a)) ** 2.5), t1 - 1 - t[a])
        probe = sa == PROBE
        closed = (sa == SCANP) | probe  # a reset, or an ICMP port unreachable
        pk_b[closed] = 1
        bpp_b[probe] = 70
        dur_b = np.where(pk_b > 1, np.clip(dur_a[a] - rtt, 1, MAX_ACTIVE_MS), 0)
        proto_b = np.where(probe, 1, PROTO[sa])
        sport_b = np.where(probe | echo, 0, ev["b_port"][a])
        dport_b = np.where(probe, 0x0303, np.where(echo, 0, ev["a_port"][a]))

        # TCP flags: initial (first packet) and session (the rest) of each side.
        init_a = np.where(tcp, S, 0).astype(np.uint8)
        sess_a = np.where(tcp, SESS_FLAGS[(u[2] * len(SESS_FLAGS)).astype(np.intp)], 0)
        scan = np.flatnonzero(svc == SCANP)
        init_a[scan] = np.where(ev["answered"][scan], S,
                                SCAN_FLAGS[(u[2][scan] * len(SCAN_FLAGS)).astype(np.intp)])
        sess_a[so] = np.where(pk_a[so] > 1, init_a[so], 0)
        init_b = np.where(tcp[a], S | A, 0).astype(np.uint8)
        sess_b = sess_a[a]
        init_b[closed & tcp[a]] = R | A
        sess_b[closed] = 0

        sensor = np.searchsorted(self.sensor_cum, rng.random(n), side="right")
        d = ev["dir"]
        cols = {"stime": (t, t[a] + rtt), "duration": (dur_a, dur_b),
                "sport": (ev["a_port"], sport_b), "dport": (ev["b_port"], dport_b),
                "protocol": (PROTO[svc], proto_b), "packets": (pk_a, pk_b),
                "bytes": (np.rint(pk_a * bpp_a), np.rint(pk_b * bpp_b)),
                "initflags": (init_a, init_b), "sessflags": (sess_a, sess_b),
                "sip_hi": (ev["a_hi"], ev["b_hi"][a]), "sip_lo": (ev["a_lo"], ev["b_lo"][a]),
                "dip_hi": (ev["b_hi"], ev["a_hi"][a]), "dip_lo": (ev["b_lo"], ev["a_lo"][a]),
                "dir": (d, np.where(d[a] == IN, OUT, IN)),
                "null": (ev["null"], np.zeros(len(a), bool)),
                "v6": (v6, v6[a]), "sensor": (sensor, sensor[a])}
        return self._batch({k: np.concatenate(v) for k, v in cols.items()})

    def _batch(self, c):
        n = len(c["stime"])
        proto, sport, dport, v6 = c["protocol"], c["sport"], c["dport"], c["v6"]
        icmp = (proto == 1) | (proto == 58)
        m = np.flatnonzero(v6 & icmp)
        if len(m):
            dport[m] = ICMP6[np.searchsorted(ICMP4, dport[m])]
            proto[m] = 58
        null, d, sensor = c["null"], c["dir"], c["sensor"]
        web = (proto == 6) & (WEB_PORT[sport] | WEB_PORT[dport])
        cls = np.where(null, 3, np.where(icmp, 2, web))
        out = {"stime": c["stime"], "duration": c["duration"], "sport": sport, "dport": dport,
               "protocol": proto, "packets": c["packets"], "bytes": c["bytes"],
               "flags": c["initflags"] | c["sessflags"], "initflags": c["initflags"],
               "sessflags": c["sessflags"], "sensor": self.sensor_ids[sensor],
               "flowtype": self.type_table[d, cls], "input": self.if_in[d, sensor],
               "output": np.where(null, 0, self.if_out[d, sensor])}
        nh = self.nexthop[d, sensor]  # outbound flows leave through the sensor's router
        nh4 = np.where(nh > 0, nh + np.uint64(ROUTER_V4), np.uint64(0))
        v6_any = bool(v6.any())
        if v6_any:
            out["ipv6"] = v6
            out["nhip_hi"] = np.where(v6 & (nh > 0), np.uint64(ROUTER_V6_HI), np.uint64(0))
            out["nhip_lo"] = np.where(v6, nh, MAPPED | nh4)
            for k in ("sip_hi", "sip_lo", "dip_hi", "dip_lo"):
                out[k] = c[k]
        else:
            low = np.uint64(0xFFFFFFFF)
            out["sip"], out["dip"], out["nhip"] = c["sip_lo"] & low, c["dip_lo"] & low, nh4
        # Cast before sorting: gathering narrow columns is cheaper.
        order = np.argsort(out["stime"])
        cols = {}
        for k, v in out.items():
            dtype = np.uint32 if k in IP_COLUMNS else COLUMNS.get(k) or v.dtype
            cols[k] = v.astype(dtype, copy=False)[order]
        if v6_any:
            for k in IP_COLUMNS:
                cols[k] = np.stack([cols.pop(k + "_hi"), cols.pop(k + "_lo")], 1)
        return make_batch(n, v6=v6_any, **cols)


def _hour_counts(rng, flows, start_ms, hours):
    """The run split at UTC hours: (hour_ms, first ms, end ms, flows) with a daily cycle."""
    end = start_ms + hours * HOUR
    hour = np.arange(start_ms - start_ms % HOUR, end, HOUR, dtype=np.int64)
    t0, t1 = np.maximum(hour, start_ms), np.minimum(hour + HOUR, end)
    local = hour // HOUR + LOCAL_UTC_OFFSET_H
    weekday = (local // 24 + 3) % 7  # 1970-01-01 was a Thursday; Monday is 0
    w = (t1 - t0) / HOUR * (1 + 0.55 * np.cos(2 * np.pi * (local % 24 + 0.5 - 15) / 24))
    w *= np.where(weekday >= 5, 0.8, 1.0) * np.exp(rng.normal(0, 0.08, len(w)))
    share = flows * w / w.sum()
    n = np.floor(share).astype(np.int64)
    n[np.argsort(n - share, kind="stable")[:flows - n.sum()]] += 1  # largest remainders
    return hour, t0, t1, n


def generate(seed, flows, start_ms, hours, sensors, flowtypes, ipv6_fraction=0.02,
             batch_hours=1):
    """Yield (hour_ms, batch) in time order, batch_hours hours per batch, flows records in all.

    The run covers [start_ms, start_ms + hours h), split at UTC hours; hour_ms is the start of a
    batch's first UTC hour and its records are sorted by stime. A batch is an IPv6 batch when
    it holds an IPv6 record. The same arguments always give the same records.
    """
    if flows < 0 or hours < 1 or batch_hours < 1:
        raise FlowError("flows must be at least 0, hours and batch_hours at least 1")
    if not sensors:
        raise FlowError("at least one sensor is needed")
    if not 0 <= ipv6_fraction <= 1:
        raise FlowError("ipv6_fraction must be between 0 and 1")
    gen = _Generator(seed, sensors, flowtypes, ipv6_fraction)
    hour, t0, t1, counts = _hour_counts(gen.rng, int(flows), int(start_ms), int(hours))
    left = int(flows)
    pending = []
    for i in range(len(hour)):
        hint = left * (1 - P_FIXED) / FLOWS_PER_SLOT
        batch = gen.hour(int(t0[i]), int(t1[i]), int(counts[i]), hint)
        left -= int(counts[i])
        pending.append(batch)
        if len(pending) == batch_hours or i == len(hour) - 1:
            yield int(hour[i + 1 - len(pending)]), concat(pending)
            pending = []
