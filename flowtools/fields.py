"""The one field table: every record field a tool can name, print, sort or count by.

Each Field says which stored columns it reads, how it is computed from them (``values``),
how wide its text column is and which formatter prints it (``kind``; the formatters live in
text.py), and how it sorts (``sort_key``). cut, sort, uniq, stats, count, bag and every
``--help-fields`` take their field lists from here, with SiLK's names, numbers and aliases.
"""

import numpy as np

from .errors import FlowError

ICMP_PROTOCOLS = (1, 58)


class Field:
    def __init__(self, name, number, kind, columns, width, help, aliases=(), values=None,
                 title=None, deprecated=False):
        self.name = name
        self.number = number
        self.kind = kind
        self.columns = tuple(columns)
        self.width = width  # None: decided at print time (IPs by policy, names by config)
        self.help = help
        self.aliases = tuple(aliases)
        self._values = values
        self.title = title or name
        self.deprecated = deprecated

    def values(self, batch):
        """The field's value for every record (an (n, 2) array for IPv6 addresses)."""
        if self._values is not None:
            return self._values(batch)
        return batch[self.columns[0]]

    def sort_key(self, batch):
        """Arrays for np.lexsort, most significant last."""
        v = self.values(batch)
        if v.ndim == 2:
            return [v[:, 1], v[:, 0]]
        return [v]

    def __repr__(self):
        return f"Field({self.name})"


def _etime(b):
    return b["stime"] + b["duration"].astype(np.int64)


def _is_icmp(b):
    return np.isin(b["protocol"], ICMP_PROTOCOLS)


def _itype(b):
    return np.where(_is_icmp(b), b["dport"] >> 8, 0).astype(np.uint8)


def _icode(b):
    return np.where(_is_icmp(b), b["dport"] & 0xFF, 0).astype(np.uint8)


def _icmp_type_code(b):
    return np.where(_is_icmp(b), b["dport"], 0).astype(np.uint16)


def _class(b):
    return b["flowtype"]


FIELDS = [
    Field("sIP", 1, "ip", ["sip"], None, "Source IP address"),
    Field("dIP", 2, "ip", ["dip"], None, "Destination IP address"),
    Field("sPort", 3, "uint", ["sport"], 5, "Source port for TCP, UDP, or equivalent"),
    Field("dPort", 4, "uint", ["dport"], 5, "Destination port for TCP, UDP, or equivalent"),
    Field("protocol", 5, "uint", ["protocol"], 3, "IP protocol"),
    Field("packets", 6, "uint", ["packets"], 10, "Number of packets in the flow",
          aliases=("pkts",)),
    Field("bytes", 7, "uint", ["bytes"], 10, "Number of octets (bytes) in the flow"),
    Field("flags", 8, "flags", ["flags"], 8,
          "Bit-wise OR of TCP flags over all packets [FSRPAUEC]"),
    Field("sTime", 9, "time", ["stime"], 23, "Starting time of the flow"),
    Field("duration", 10, "duration", ["duration"], 9, "Duration of the flow",
          aliases=("dur",)),
    Field("eTime", 11, "time", ["stime", "duration"], 23, "Ending time of the flow",
          values=_etime),
    Field("sensor", 12, "sensor", ["sensor"], None,
          "Name or ID of the sensor as assigned by the packer"),
    Field("in", 13, "uint", ["input"], 5, "Router SNMP input interface or vlanId"),
    Field("out", 14, "uint", ["output"], 5, "Router SNMP output interface or postVlanId"),
    Field("nhIP", 15, "ip", ["nhip"], None, "Router next-hop IP address"),
    Field("initialFlags", 26, "flags", ["initflags"], 8,
          "TCP flags on first packet in the flow"),
    Field("sessionFlags", 27, "flags", ["sessflags"], 8,
          "Bit-wise OR of TCP flags over second through final packet"),
    Field("attributes", 28, "attributes", ["attributes"], 8,
          "Flow attributes set by flow generator [SFTC]"),
    Field("application", 29, "uint", ["application"], 5,
          "Guess as to content of flow (appLabel)"),
    Field("class", 20, "class", ["flowtype"], None,
          "Class of the sensor as assigned by the packer", values=_class),
    Field("type", 21, "type", ["flowtype"], None,
          "Type within the class as assigned by the packer", values=_class),
    Field("sTime+msec", 22, "time", ["stime"], 23,
          "Starting time of the flow [DEPRECATED: Use sTime instead]", deprecated=True),
    Field("eTime+msec", 23, "time", ["stime", "duration"], 23,
          "Ending time of the flow [DEPRECATED: Use eTime instead]", values=_etime,
          deprecated=True),
    Field("dur+msec", 24, "duration", ["duration"], 9,
          "Duration of the flow [DEPRECATED: Use duration instead]", deprecated=True),
    Field("iType", None, "icmp", ["protocol", "dport"], 3,
          "ICMP type value for ICMP or ICMPv6 flows; empty otherwise", values=_itype),
    Field("iCode", None, "icmp", ["protocol", "dport"], 3,
          "ICMP code value for ICMP or ICMPv6 flows; empty otherwise", values=_icode),
    Field("icmpTypeCode", 25, "icmp", ["protocol", "dport"], None,
          "Equivalent to iType,iCode [DEPRECATED]", values=_icmp_type_code,
          deprecated=True),
]


def _match_label(b):
    col = b["nhip"]
    return (col[:, 1] & np.uint64(0xFFFFFFFF)).astype(np.uint32) if col.ndim == 2 else col


def _match_text(values, width, out=None):
    """'->' (query) or '<-' (response) and the match number in 8 columns, blank for
    unmatched records: the text of SiLK's cutmatch plug-in."""
    from . import text
    v = np.asarray(values).astype(np.uint32)
    n = len(v)
    mat = np.full((n, max(width, 10)), text.SPACE, np.uint8)
    ids = v & np.uint32(0xFFFFFF)
    digits, _ = text.uint(ids, 8)
    body = mat[:, mat.shape[1] - 10:]
    body[:, 2:] = np.where((ids > 0)[:, None], text.fit(digits, None, 8), text.SPACE)
    reply = (v >> np.uint32(24)) > 0
    body[:, 0] = np.where(reply, ord("<"), ord("-"))
    body[:, 1] = np.where(reply, ord("-"), ord(">"))
    lens = np.full(n, 10, np.int64)
    if out is not None:
        out[...] = text.fit(mat, lens, out.shape[1])
        return out, lens
    return mat, lens


# Derived from nhIP as pyflow-match (rwmatch) labels records; printed by its own text.
_MATCH = Field("match", None, "text", ["nhip"], 10,
               "Direction (->, <-) and number of the pyflow-match match in nhIP",
               values=_match_label, title="<->Match#")
_MATCH.text = _match_text
FIELDS.append(_MATCH)
BY_NAME = {f.name.lower(): f for f in FIELDS}
DEFAULT_CUT = "1-12"


def _lookup():
    table = {}
    for f in FIELDS:
        for key in (f.name.lower(), *f.aliases, *(() if f.number is None else (str(f.number),))):
            table[key.lower()] = f
    return table


_LOOKUP = _lookup()


def find(token, option="--fields"):
    """The Field a name, alias, number or unique name prefix refers to (case-insensitive)."""
    key = token.strip().lower()
    if key in _LOOKUP:
        return _LOOKUP[key]
    hits = {f for k, f in _LOOKUP.items() if k.startswith(key) and not k.isdigit()} \
        if key else set()
    if len(hits) == 1:
        return hits.pop()
    if hits:
        names = ", ".join(sorted(f.name for f in hits))
        raise FlowError(f"invalid {option} value '{token}': ambiguous ({names})")
    raise FlowError(f"invalid {option} value '{token}': unknown field")


def parse_list(text, option="--fields"):
    """Fields named by a comma list of names, aliases, numbers and number ranges."""
    out = []
    for token in text.split(","):
        token = token.strip()
        if not token:
            raise FlowError(f"invalid {option} value '{text}': empty field name")
        a, dash, b = token.partition("-")
        if dash and a.isdigit() and b.isdigit():
            lo, hi = int(a), int(b)
            if lo > hi:
                raise FlowError(f"invalid {option} range '{token}'")
            numbered = {f.number: f for f in FIELDS if f.number is not None}
            for n in range(lo, hi + 1):
                if n not in numbered:
                    raise FlowError(f"invalid {option} value '{n}' in range '{token}'")
                out.append(numbered[n])
        else:
            out.append(find(token, option))
    return out


def help_text():
    """The --help-fields listing."""
    lines = ["The following name(s) may be used in the --fields switch."]
    for f in FIELDS:
        alias = list(f.aliases) + ([str(f.number)] if f.number is not None else [])
        text = f"{f.help}." + (f" Alias: {','.join(alias)}" if alias else "")
        lines.append(f"\t{f.name:<12} - {text}")
    return "\n".join(lines) + "\n"


def columns_for(fields):
    """The stored columns a list of fields reads."""
    need = []
    for f in fields:
        for c in f.columns:
            if c not in need:
                need.append(c)
    return need


def sort_order(batch, fields, reverse=False):
    """A stable permutation ordering records by fields (first field most significant);
    reversed, equal keys still keep their input order (see sorting.order)."""
    from .sorting import order
    return order(batch, fields, reverse)
