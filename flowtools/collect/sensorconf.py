"""SiLK's sensor.conf: probes (where flows come from), groups and sensors (how to pack them).

The syntax is SiLK's (see sensor.conf(5)): '#' comments, one command and its arguments a
line, ``probe NAME TYPE ... end probe``, ``group NAME ... end group``, ``sensor NAME ...
end sensor``, top-level ``include "FILE"``. Lists are separated by blanks and/or a comma;
``@NAME`` references a group. Errors are ``ConfigError("FILE:LINE: message")``.
Not supported (an error says so): TCP and UNIX-socket probes, IPset files, sflow and silk
probes.
"""

import os
import re
from dataclasses import dataclass, field

from ..errors import ConfigError

PROBE_TYPES = {"netflow-v5": "netflow-v5", "netflow": "netflow-v5",
               "netflow-v9": "netflow-v9", "ipfix": "ipfix"}
NETWORKS = ("internal", "external", "null")
_NAME = re.compile(r"[A-Za-z][^\s/]*\Z")
QUIRKS = {"none", "firewall-event", "missing-ips", "nf9-out-is-reverse",
          "nf9-sysuptime-seconds", "zero-packets"}


@dataclass
class Probe:
    name: str
    type: str
    port: int | None = None
    protocol: str | None = None
    listen_as_host: str | None = None
    accept_from: list = field(default_factory=list)
    read_from_file: str | None = None
    poll_directory: str | None = None
    quirks: set = field(default_factory=set)
    log_flags: set = field(default_factory=lambda: {"default"})
    where: str = ""


@dataclass
class Sensor:
    name: str
    probes: list = field(default_factory=list)            # probe names
    source_network: str | None = None
    destination_network: str | None = None
    # network -> [CIDR text (ipblocks) or IPSet (ipsets)] | "remainder"
    ipblocks: dict = field(default_factory=dict)
    interfaces: dict = field(default_factory=dict)        # network -> {int} | "remainder"
    discard_when: dict = field(default_factory=dict)      # property -> values
    discard_unless: dict = field(default_factory=dict)
    fixed_flowtype: str | None = None  # "class/type": pyflow's quick mode, no packing
    where: str = ""


@dataclass
class SensorConfig:
    probes: dict = field(default_factory=dict)   # name -> Probe
    sensors: list = field(default_factory=list)  # Sensor, in file order
    groups: dict = field(default_factory=dict)   # name -> ("ipblocks"|"interfaces", list)


def load(path):
    conf = SensorConfig()
    _Parser(conf).parse_file(path, 0)
    _check(conf)
    return conf


def parse(text, path="<string>"):
    conf = SensorConfig()
    _Parser(conf).parse_text(text, path, 0)
    _check(conf)
    return conf


def _split(args):
    return [a for arg in args for a in arg.split(",") if a]


class _Parser:
    def __init__(self, conf):
        self.conf = conf
        self.block = None  # ("probe"|"group"|"sensor", object)

    def fail(self, msg):
        raise ConfigError(f"{self.where}: {msg}")

    def parse_file(self, path, depth):
        try:
            with open(path) as f:
                text = f.read()
        except OSError as exc:
            raise ConfigError(f"cannot read sensor configuration {path}: "
                              f"{exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not a text file") from None
        self.parse_text(text, path, depth)

    def parse_text(self, text, path, depth):
        for lineno, line in enumerate(text.splitlines(), 1):
            self.where = f"{path}:{lineno}"
            words = line.split("#", 1)[0].split()
            if not words:
                continue
            cmd, args = words[0], words[1:]
            if cmd == "include":
                if self.block or len(args) != 1 or not re.fullmatch(r'"[^"]+"', args[0]):
                    self.fail('include takes one double-quoted path, at top level')
                if depth >= 16:
                    self.fail("includes nested too deeply")
                inc = args[0][1:-1]
                if not os.path.isabs(inc):
                    inc = os.path.join(os.path.dirname(path), inc)
                self.parse_file(inc, depth + 1)
                self.where = f"{path}:{lineno}"
                continue
            self.command(cmd, args)
        if self.block and depth == 0:
            self.fail(f"{self.block[0]} block '{self.block[1].name}' is not ended")

    def command(self, cmd, args):
        if cmd == "end":
            if not self.block or args != [self.block[0]]:
                self.fail(f"unexpected 'end {' '.join(args)}'")
            self.block = None
            return
        if self.block is None:
            return self.top(cmd, args)
        kind, obj = self.block
        getattr(self, f"in_{kind}")(obj, cmd, args)

    def top(self, cmd, args):
        if cmd not in ("probe", "group", "sensor"):
            self.fail(f"unknown command '{cmd}' at top level")
        need = 2 if cmd == "probe" else 1
        if len(args) != need:
            self.fail(f"'{cmd}' takes {need} argument{'s' if need > 1 else ''}")
        name = args[0]
        if not _NAME.match(name):
            self.fail(f"invalid {cmd} name '{name}': must begin with a letter and "
                      "have no whitespace or '/'")
        if cmd == "probe":
            if name in self.conf.probes:
                self.fail(f"probe '{name}' is already defined")
            if args[1] not in PROBE_TYPES:
                self.fail(f"unsupported probe type '{args[1]}' (netflow-v5, netflow-v9 "
                          "or ipfix)")
            obj = self.conf.probes[name] = Probe(name, PROBE_TYPES[args[1]],
                                                 where=self.where)
        elif cmd == "group":
            if name in self.conf.groups:
                self.fail(f"group '{name}' is already defined")
            obj = _Group(name)
        else:
            obj = Sensor(name, where=self.where)
            self.conf.sensors.append(obj)
        self.block = (cmd, obj)

    def in_probe(self, p, cmd, args):
        if not args:
            self.fail(f"'{cmd}' needs a value")
        if cmd == "listen-on-port":
            if len(args) != 1 or not args[0].isdigit() or not 0 < int(args[0]) < 65536:
                self.fail(f"invalid port '{' '.join(args)}'")
            p.port = int(args[0])
        elif cmd == "protocol":
            if args != ["udp"]:
                self.fail(f"protocol '{' '.join(args)}' is not supported (only udp)")
            p.protocol = "udp"
        elif cmd == "listen-as-host":
            p.listen_as_host = args[0]
        elif cmd == "accept-from-host":
            p.accept_from.extend(_split(args))
        elif cmd == "read-from-file":
            p.read_from_file = args[0]
        elif cmd == "poll-directory":
            p.poll_directory = args[0]
        elif cmd == "quirks":
            q = set(_split(args))
            if q - QUIRKS:
                self.fail(f"unknown quirks {sorted(q - QUIRKS)}")
            p.quirks = q - {"none"}
        elif cmd == "log-flags":
            p.log_flags = set(_split(args))
        elif cmd in ("interface-values", "priority"):
            pass
        elif cmd == "listen-on-unix-socket":
            self.fail("listen-on-unix-socket is not supported")
        else:
            self.fail(f"unknown probe command '{cmd}'")

    def in_group(self, g, cmd, args):
        if cmd not in ("ipblocks", "ipsets", "interfaces"):
            self.fail(f"unsupported group command '{cmd}' (ipblocks, ipsets or interfaces)")
        # ipblocks and ipsets both give addresses: a group may hold both
        kind = "interfaces" if cmd == "interfaces" else "ipblocks"
        if g.kind and g.kind != kind:
            self.fail(f"group '{g.name}' mixes addresses and interfaces")
        g.kind = kind
        g.values.extend(self.values(cmd, _split(args)))
        self.conf.groups[g.name] = (g.kind, g.values)

    def values(self, kind, items):
        """The values of an ipblocks, ipsets or interfaces statement: interface numbers,
        or addresses as CIDR text (ipblocks) and IPSets (the files of ipsets, read now)."""
        out = []
        for item in items:
            if item.startswith("@"):
                ref = self.conf.groups.get(item[1:])
                if ref is None:
                    self.fail(f"unknown group '{item[1:]}'")
                if (ref[0] == "interfaces") != (kind == "interfaces"):
                    self.fail(f"group '{item[1:]}' holds "
                              f"{'interfaces' if ref[0] == 'interfaces' else 'addresses'}, "
                              f"not {'interfaces' if kind == 'interfaces' else 'addresses'}")
                out.extend(ref[1])
            elif kind == "ipsets":
                from ..errors import FlowError
                from ..ipset import read_set
                try:
                    out.append(read_set(item))
                except FlowError as exc:       # names the file
                    self.fail(f"IPset file: {exc}")
            elif kind == "interfaces":
                if not item.isdigit() or int(item) > 65535:
                    self.fail(f"invalid interface '{item}' (0-65535)")
                out.append(int(item))
            else:
                from ..addrs import parse_ip
                try:
                    parse_ip(item)
                except ValueError as exc:
                    self.fail(f"invalid IP block '{item}': {exc}")
                out.append(item)
        return out

    def in_sensor(self, s, cmd, args):
        if not args:
            self.fail(f"'{cmd}' needs a value")
        if cmd.endswith("-probes"):
            kind = cmd[:-len("-probes")]
            if kind not in PROBE_TYPES:
                self.fail(f"unsupported probe type in '{cmd}'")
            s.probes.extend(_split(args))
        elif cmd in ("source-network", "destination-network"):
            if args[0] not in NETWORKS:
                self.fail(f"unknown network '{args[0]}'")
            setattr(s, cmd.split("-")[0] + "_network", args[0])
        elif cmd.endswith(("-ipblocks", "-ipsets", "-interfaces")) and \
                cmd.split("-")[0] in NETWORKS:
            net, kind = cmd.split("-", 1)
            table = s.interfaces if kind == "interfaces" else s.ipblocks
            if net in table:
                self.fail(f"'{cmd}': the {net} network's "
                          f"{'interfaces' if kind == 'interfaces' else 'addresses'} "
                          "are already given")
            if args == ["remainder"]:
                if "remainder" in s.ipblocks.values() or "remainder" in s.interfaces.values():
                    self.fail("only one network may use remainder")
                table[net] = "remainder"
            else:
                table[net] = self.values(kind, _split(args))
        elif cmd in ("discard-when", "discard-unless"):
            prop = args[0]
            m = re.fullmatch(r"(source|destination|any)-(interfaces|ipblocks|ipsets)", prop)
            if not m:
                self.fail(f"unsupported {cmd} property '{prop}'")
            values = self.values(m.group(2), _split(args[1:]))
            if m.group(2) == "ipsets":      # addresses either way
                prop = f"{m.group(1)}-ipblocks"
            other = s.discard_unless if cmd == "discard-when" else s.discard_when
            if prop in other:
                self.fail(f"discard-when and discard-unless both given for {prop}")
            mine = s.discard_when if cmd == "discard-when" else s.discard_unless
            mine[prop] = values
        elif cmd == "isp-ip":
            pass
        else:
            self.fail(f"unknown sensor command '{cmd}'")


class _Group:
    def __init__(self, name):
        self.name, self.kind, self.values = name, None, []


def _check(conf):
    for p in conf.probes.values():
        sources = [x for x in (p.port, p.read_from_file, p.poll_directory) if x is not None]
        if len(sources) != 1:
            raise ConfigError(f"{p.where}: probe '{p.name}' needs exactly one of listen-on-port, "
                              "read-from-file, poll-directory")
        if p.port is not None and p.protocol is None:
            raise ConfigError(f"{p.where}: probe '{p.name}': listen-on-port needs "
                              "'protocol udp'")
    for s in conf.sensors:
        if s.fixed_flowtype or (s.source_network and s.destination_network):
            continue
        if not ({"internal", "external"} & (set(s.ipblocks) | set(s.interfaces))):
            raise ConfigError(f"{s.where}: sensor '{s.name}' needs internal or external "
                              "ipblocks or interfaces")
        if s.ipblocks and set(s.interfaces) - {"null"}:
            raise ConfigError(f"{s.where}: sensor '{s.name}' mixes ipblocks and interfaces")
        if len(s.ipblocks) == 1 and "remainder" in s.ipblocks.values():
            raise ConfigError(f"{s.where}: sensor '{s.name}': a single ipblocks "
                              "statement cannot be remainder")
