"""The twoway packing logic: which flowtype each record of a sensor goes to.

For each sensor a record's source network (external, internal, null) is found from sIP
against the NET-ipblocks or from the input interface against the NET-interfaces (or
source-network forces it), its destination network likewise from dIP / output, and the
pair picks the type as packlogic-twoway(3) describes: in/inweb, out/outweb, innull,
outnull, int2int, ext2ext, other (inicmp and outicmp are not used by default, as SiLK).
Everything is a few boolean masks over the batch.
"""

import numpy as np

from ..addrs import parse_cidr_list
from ..errors import ConfigError, FlowError
from ..schema import nrecords, take

TYPES = ("in", "out", "inweb", "outweb", "innull", "outnull", "int2int", "ext2ext",
         "inicmp", "outicmp", "other")
WEB_PORTS = (80, 443, 8080)


class SensorPacker:
    """Packs a batch for one sensor of the sensor.conf."""

    def __init__(self, sensor, site, class_name="all"):
        self.sensor = sensor
        try:
            self.sensor_id = site.sensor_id(sensor.name)
        except FlowError:
            raise ConfigError(f"sensor '{sensor.name}' is not defined in the site "
                              f"configuration {site.path}") from None
        self.fixed = None
        if sensor.fixed_flowtype:
            cls, _, typ = sensor.fixed_flowtype.partition("/")
            self.fixed = site.flowtype_id(cls, typ)
            return
        self.types = {}
        for t in TYPES:
            try:
                self.types[t] = site.flowtype_id(class_name, t)
            except FlowError:
                raise ConfigError(f"type '{t}' of class '{class_name}' is not defined in "
                                  f"the site configuration {site.path} (twoway packing "
                                  "needs it)") from None
        self.blocks = {net: _addresses(v)
                       for net, v in sensor.ipblocks.items() if v != "remainder"}
        self.ifaces = {net: np.array(sorted(set(v)), np.uint32)
                       for net, v in sensor.interfaces.items() if v != "remainder"}
        self.discard = [(prop, _addresses(v) if prop.endswith("ipblocks")
                         else np.array(v, np.uint32), when)
                        for when, table in ((True, sensor.discard_when),
                                            (False, sensor.discard_unless))
                        for prop, v in table.items()]

    def pack(self, batch):
        """The batch's records kept for this sensor, with sensor and flowtype set."""
        n = nrecords(batch)
        if self.fixed is not None:
            return dict(batch, sensor=np.full(n, self.sensor_id, np.uint16),
                        flowtype=np.full(n, self.fixed, np.uint8))
        keep = np.ones(n, bool)
        for prop, values, when in self.discard:
            side, kind = prop.split("-")
            cols = {"source": ["sip" if kind == "ipblocks" else "input"],
                    "destination": ["dip" if kind == "ipblocks" else "output"]}
            names = cols.get(side, cols["source"] + cols["destination"])
            hit = np.zeros(n, bool)
            for c in names:
                hit |= (values.contains(batch[c]) if kind == "ipblocks"
                        else np.isin(batch[c], values))
            keep &= ~hit if when else hit
        if not keep.all():
            batch = take(batch, keep)
            n = nrecords(batch)
        src = {net: self._member(batch, net, "sip", "input") for net in
               ("external", "internal", "null")}
        dst = {net: self._member(batch, net, "dip", "output") for net in
               ("external", "internal", "null")}
        s = self.sensor
        if s.source_network:
            src = {net: np.full(n, net == s.source_network) for net in src}
        if s.destination_network:
            dst = {net: np.full(n, net == s.destination_network) for net in dst}
        proto = batch["protocol"]
        web = (proto == 6) & (np.isin(batch["sport"], WEB_PORTS) |
                              np.isin(batch["dport"], WEB_PORTS))
        t = self.types
        ext_src = src["external"]
        int_src = ~ext_src & src["internal"]
        ftype = np.select(
            [ext_src & dst["null"], ext_src & dst["internal"] & web,
             ext_src & dst["internal"], ext_src & dst["external"],
             int_src & dst["null"], int_src & dst["external"] & web,
             int_src & dst["external"], int_src & dst["internal"]],
            [t["innull"], t["inweb"], t["in"], t["ext2ext"],
             t["outnull"], t["outweb"], t["out"], t["int2int"]], t["other"])
        return dict(batch, sensor=np.full(n, self.sensor_id, np.uint16),
                    flowtype=ftype.astype(np.uint8))

    def _member(self, batch, net, addr_col, iface_col):
        s = self.sensor
        n = nrecords(batch)
        if s.ipblocks:
            col, table, matchers = batch[addr_col], s.ipblocks, self.blocks
        elif s.interfaces:
            col, table, matchers = batch[iface_col], s.interfaces, self.ifaces
        else:
            return np.zeros(n, bool)
        if net == "null" and net in s.interfaces and s.ipblocks:
            return np.isin(batch[iface_col], self.ifaces["null"])
        spec = table.get(net)
        if spec is None:
            # One of internal/external given without remainder: the other is the rest.
            other = {"internal": "external", "external": "internal"}.get(net)
            if other and other in table and "remainder" not in table.values():
                return ~self._test(col, matchers[other], table is s.ipblocks)
            return np.zeros(n, bool)
        if spec == "remainder":
            hit = np.zeros(n, bool)
            for m in matchers.values():
                hit |= self._test(col, m, table is s.ipblocks)
            return ~hit
        return self._test(col, matchers[net], table is s.ipblocks)

    @staticmethod
    def _test(col, matcher, is_ip):
        return matcher.contains(col) if is_ip else np.isin(col, matcher)


def packers(conf, site, class_name="all"):
    """probe name -> [SensorPacker] for every sensor reading that probe."""
    out = {}
    for s in conf.sensors:
        p = SensorPacker(s, site, class_name)
        for name in s.probes:
            out.setdefault(name, []).append(p)
    return out


def pack(batch, sensor_packers):
    """The records of a batch from one probe, packed by each of its sensors."""
    return [p.pack(batch) for p in sensor_packers]


def _addresses(items):
    """One matcher of the addresses of ipblocks (CIDR text) and ipsets (IPSets)."""
    from ..ipset import IPSet
    text = [x for x in items if isinstance(x, str)]
    sets = [x for x in items if not isinstance(x, str)]
    if text:
        r = parse_cidr_list(",".join(text), "ipblocks")
        if not sets:
            return r
        sets.append(IPSet(r.starts, r.ends, r.is_ipv6))
    return sets[0].union(*sets[1:]) if len(sets) > 1 else sets[0]

