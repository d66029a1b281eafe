"""Printing fields as SiLK does: the options every text tool shares, and column rendering.

A Renderer holds the choices (IP format and IPv6 policy, timestamp format, integer sensors
and flags, the site config for names) and turns a field of a batch into a text column; the
column widths and titles follow rwcut's.
"""

import numpy as np

from . import schema, text
from .errors import FlowError

IP_FORMATS = ("canonical", "no-mixed", "decimal", "hexadecimal", "zero-padded", "map-v4",
              "unmap-v6", "force-ipv6")
TS_FORMATS = ("default", "iso", "m/d/y", "epoch")
TS_MODIFIERS = ("utc", "local", "no-msec")
POLICIES = ("ignore", "asv4", "mix", "force", "only")
V4_MAPPED = np.uint64(0xFFFF00000000)
LOW32 = np.uint64(0xFFFFFFFF)


def add_text_options(p, timestamps=True, ips=True, sensors=True, flags=True, policy=True):
    """The formatting switches shared by the text tools (help written once)."""
    if ips:
        p.add_argument("--ip-format", metavar="FORMAT",
                       help="How to print IP addresses: canonical (default), no-mixed, "
                            "decimal, hexadecimal, zero-padded, with modifiers map-v4, "
                            "unmap-v6, force-ipv6 (comma separated). Default from "
                            "SILK_IP_FORMAT.")
        p.add_argument("--integer-ips", action="store_true",
                       help="Print IP addresses as integers (--ip-format=decimal).")
        p.add_argument("--zero-pad-ips", action="store_true",
                       help="Print IP addresses fully expanded and zero-padded.")
    if timestamps:
        p.add_argument("--timestamp-format", metavar="FORMAT",
                       help="How to print timestamps: default, iso, m/d/y or epoch, "
                            "optionally with utc or local and no-msec (comma separated). "
                            "Default from SILK_TIMESTAMP_FORMAT.")
        p.add_argument("--epoch-time", action="store_true",
                       help="Print timestamps as epoch seconds (--timestamp-format=epoch).")
        p.add_argument("--legacy-timestamps", nargs="?", const="1", metavar="NUM",
                       help="Print timestamps as MM/DD/YYYY hh:mm:ss (m/d/y,no-msec).")
    if sensors:
        p.add_argument("--integer-sensors", action="store_true",
                       help="Print the sensor ID rather than its name.")
    if flags:
        p.add_argument("--integer-tcp-flags", action="store_true",
                       help="Print TCP flag fields as integers.")
    if policy:
        p.add_argument("--ipv6-policy", metavar="POLICY",
                       help="How to treat IPv4 and IPv6 records: ignore (IPv4 only), asv4 "
                            "(IPv6 in ::ffff:0:0/96 as IPv4, others dropped), mix (default), "
                            "force (IPv4 as IPv6), only (IPv6 only). Default from "
                            "SILK_IPV6_POLICY.")
    p.add_argument("--no-titles", action="store_true", help="Do not print column titles.")
    p.add_argument("--no-columns", action="store_true",
                   help="Do not pad columns to fixed widths.")
    p.add_argument("--column-separator", metavar="C",
                   help="Print C between columns and after the last one (default '|').")
    p.add_argument("--no-final-delimiter", action="store_true",
                   help="Do not print the column separator after the last column.")
    p.add_argument("--delimited", nargs="?", const="|", metavar="C",
                   help="Same as --no-columns --no-final-delimiter --column-separator=C "
                        "(C defaults to '|').")


class Renderer:
    def __init__(self, opts, config=None):
        from .io import env
        self.config = config
        ipf = getattr(opts, "ip_format", None) or env("IP_FORMAT", "canonical")
        if getattr(opts, "integer_ips", False):
            ipf = "decimal"
        if getattr(opts, "zero_pad_ips", False):
            ipf = "zero-padded"
        self.ip_style, self.map_v4, self.unmap_v6 = "canonical", False, False
        no_mixed = False
        for part in ipf.lower().split(","):
            if part not in IP_FORMATS:
                raise FlowError(f"invalid --ip-format value '{part}'")
            if part == "map-v4":
                self.map_v4 = True
            elif part == "unmap-v6":
                self.unmap_v6 = True
            elif part == "force-ipv6":
                self.map_v4, no_mixed = True, True
            else:
                self.ip_style = part
        if no_mixed and self.ip_style == "canonical":
            self.ip_style = "no-mixed"
        tsf = getattr(opts, "timestamp_format", None) or env("TIMESTAMP_FORMAT", "default")
        if getattr(opts, "epoch_time", False):
            tsf = "epoch"
        if getattr(opts, "legacy_timestamps", None) not in (None, "0"):
            tsf = "m/d/y,no-msec"
        self.ts, self.msec, self.local = "default", True, False
        for part in tsf.lower().split(","):
            if part in TS_FORMATS:
                self.ts = part
            elif part == "no-msec":
                self.msec = False
            elif part == "local":
                self.local = True
            elif part != "utc":
                raise FlowError(f"invalid --timestamp-format value '{part}'")
        policy = getattr(opts, "ipv6_policy", None) or env("IPV6_POLICY", "mix")
        if policy not in POLICIES:
            raise FlowError(f"invalid --ipv6-policy value '{policy}'")
        self.policy = policy
        self.integer_sensors = getattr(opts, "integer_sensors", False)
        self.integer_flags = getattr(opts, "integer_tcp_flags", False)
        if getattr(opts, "delimited", None) is not None:
            self.sep, self.columnar, self.final = opts.delimited or "|", False, False
        else:
            self.sep = getattr(opts, "column_separator", None) or "|"
            self.columnar = not getattr(opts, "no_columns", False)
            self.final = not getattr(opts, "no_final_delimiter", False)
        self.titles = not getattr(opts, "no_titles", False)

    # ------------------------------------------------------------------ widths and titles

    def width(self, field):
        if field.kind == "ip":
            if self.ip_style == "decimal" and self.policy in ("ignore", "asv4"):
                return 10
            return 15 if self.policy in ("ignore", "asv4") else 39
        if field.kind == "time":
            return (14 if self.msec else 10) if self.ts == "epoch" else (23 if self.msec
                                                                           else 19)
        if field.kind == "sensor":
            if self.integer_sensors or self.config is None:
                return 5
            return max([len(s.name) for s in self.config.sensors.values()] + [1])
        if field.kind in ("class", "type"):
            if self.config is None:
                return 3
            if field.kind == "class":
                return max([len(c) for c in self.config.classes] + [1])
            return max([len(t.type_name) for t in self.config.flowtypes.values()] + [1])
        if field.kind == "flags" and self.integer_flags:
            return 3
        return field.width

    def title(self, field):
        return field.title[: self.width(field)] if self.columnar else field.title

    def header(self, fields):
        if not self.titles:
            return b""
        cols = []
        for f in fields:
            t = self.title(f).encode()
            mat = np.frombuffer(t, np.uint8).reshape(1, -1)
            cols.append((mat, np.array([len(t)])))
        return text.layout(cols, [self.width(f) for f in fields], self.sep.encode(),
                           self.columnar, self.final)

    # ------------------------------------------------------------------ records

    def apply_policy(self, batch):
        """The records the IPv6 policy keeps, converted as it says."""
        v6 = schema.is_v6(batch)
        if self.policy == "mix":
            return batch
        if self.policy == "force":
            out = dict(schema.to_v6(batch))
            out["ipv6"] = np.ones(len(batch["stime"]), bool)  # printed as ::ffff:a.b.c.d
            return out
        if self.policy == "only":
            return schema.take(batch, batch["ipv6"]) if v6 else schema.take(batch, slice(0, 0))
        if not v6:
            return batch
        if self.policy == "ignore":
            return schema.to_v4(schema.take(batch, ~batch["ipv6"]))
        # asv4: IPv6 records inside ::ffff:0:0/96 become IPv4, others are dropped
        mapped = np.ones(len(batch["stime"]), bool)
        for name in schema.IP_COLUMNS:
            col = batch[name]
            mapped &= (col[:, 0] == 0) & ((col[:, 1] & ~LOW32) == V4_MAPPED)
        keep = ~batch["ipv6"] | mapped
        out = schema.take(batch, keep)
        out["ipv6"] = np.zeros(int(keep.sum()), bool)
        return schema.to_v4(out)

    def column(self, field, batch, out=None):
        """(matrix, lengths) of the field's text for every record; written into out, an
        (n, W) view, when given (W from out_width)."""
        # without columns nothing is padded: widths are only minimums for the text
        w = self.width(field) if self.columnar else 1
        values = field.values(batch)
        kind = field.kind
        if kind in ("flags", "attributes") and not self.columnar and not self.integer_flags \
                and out is None:  # (with out: the blanks are dropped by _spaceless_lines)
            letters = text.TCP_FLAGS if kind == "flags" else text.ATTRIBUTES
            return text.squeeze_blanks(*text.flag_letters(values, letters, w))
        if kind == "ip":
            mat, lens = self._ips(values, batch, w, out)
            if out is not None and mat is not out:
                out[...] = text.fit(mat, lens, out.shape[1])
            return mat, lens
        if kind == "uint":
            return text.uint(values, w, out=out)
        if kind == "text":  # a field that formats itself (fields.py: match)
            return field.text(values, w, out)
        if kind == "flags":
            return text.flag_letters(values, text.TCP_FLAGS, w, self.integer_flags, out)
        if kind == "attributes":
            return text.flag_letters(values, text.ATTRIBUTES, w, self.integer_flags, out)
        if kind == "time":
            offset = _local_offsets(values) if self.local else None
            return text.timestamps(values, self.ts, self.msec, offset, out)
        if kind == "duration":
            return text.seconds(values, self.msec, out)
        if kind == "icmp":
            mat, lens = text.uint(values, w, out=out)
            icmp = np.isin(batch["protocol"], (1, 58))
            mat[~icmp] = text.SPACE
            return mat, np.where(icmp, lens, 0)
        if kind == "sensor":
            if self.integer_sensors or self.config is None:
                return text.uint(values, w, out=out)
            return self._names(values, w, lambda i: self.config.sensor_name(i), out)
        if kind in ("class", "type"):
            if self.config is None:
                return text.uint(values, w, out=out)
            return self._names(values, w, lambda i: self._flowtype_name(i, kind), out)
        raise FlowError(f"cannot print field {field.name}")

    def _flowtype_name(self, i, kind):
        ft = self.config.flowtypes.get(i)
        if ft is None:
            return "?"
        return ft.class_name if kind == "class" else ft.type_name

    def out_width(self, field, batch, w=None):
        """The column width a batch needs, when known without formatting it (else None);
        w: the minimum (else the field's width)."""
        w = self.width(field) if w is None else w
        kind = field.kind
        if kind in ("uint", "icmp") or (kind in ("flags", "attributes")
                                        and self.integer_flags):
            v = field.values(batch)
            return max(w, text.digits(v.max())) if len(v) else w
        if kind in ("flags", "attributes"):
            return max(w, 8)
        if kind == "time" and self.ts != "epoch":
            return max(w, 23 if self.msec else 19)
        if kind == "duration":
            v = batch["duration"]
            return max(w, text.digits(v.max() // 1000) + (4 if self.msec else 0)) \
                if len(v) else w
        if kind == "ip" and not schema.is_v6(batch) and not self.map_v4 and \
                self.ip_style in ("canonical", "no-mixed", "zero-padded"):
            return max(w, 15)
        if kind in ("sensor", "class", "type") and self.config is not None and \
                not (kind == "sensor" and self.integer_sensors):
            return None
        return None

    def _names(self, values, width, name_of, out=None):
        v = np.asarray(values)
        if v.dtype.kind == "u" and v.itemsize <= 2 and len(v):
            # small codes: distinct values by counting, not sorting (1M records: 40 ms
            # -> 5 ms)
            uniq = np.flatnonzero(np.bincount(v))
            lookup = np.zeros(int(uniq[-1]) + 1, np.intp)
            lookup[uniq] = np.arange(len(uniq))
            index = lookup[v]
        else:
            uniq, index = np.unique(v, return_inverse=True)
        return text.from_strings([name_of(int(u)) for u in uniq], index.ravel(), width, out)

    def _ips(self, col, batch, width, out=None):
        if col.ndim == 1:  # an IPv4 batch
            if self.map_v4:
                col = schema.v4_to_v6(col)
                return self._v6(col, np.ones(len(col), bool), width, force_v6=True)
            return self._v4(col, width, out)
        ipv6 = batch["ipv6"]
        if self.map_v4:
            return self._v6(col, np.ones(len(col), bool), width, force_v6=True)
        if self.unmap_v6:
            mapped = (col[:, 0] == 0) & ((col[:, 1] & ~LOW32) == V4_MAPPED)
            ipv6 = ipv6 & ~mapped
        if not ipv6.any():
            return self._v4((col[:, 1] & LOW32).astype(np.uint32), width)
        if ipv6.all():
            return self._v6(col, ipv6, width)
        # Mostly IPv4 records: all rows through the fast IPv4 path, then the IPv6 rows
        # (formatted once per distinct address) put in their place.
        where6 = np.flatnonzero(ipv6)
        mat6, len6 = self._v6(col[where6], ipv6[where6], width)
        mat, lens = self._v4((col[:, 1] & LOW32).astype(np.uint32), width)
        w = max(mat.shape[1], mat6.shape[1])
        mat = text.fit(mat, lens, w)
        if not mat.flags.writeable or mat is out:
            mat = mat.copy()
        mat[where6] = text.fit(mat6, len6, w)
        lens = lens.copy()
        lens[where6] = len6
        return mat, lens

    def _mixed_ips(self, field, batch):
        """An IP field of an IPv6-capable batch split once per batch: (IPv4 addresses of
        every row, IPv6 row numbers, their text, lengths); None where not applicable. The
        slabs then take the IPv4 text straight into place and the few IPv6 rows on top
        (1M records, 2% IPv6: 0.5 s when each slab found and formatted its own)."""
        if field.kind != "ip" or self.map_v4 or self.ip_style == "decimal" or \
                not schema.is_v6(batch):
            return None
        col = field.values(batch)
        if col.ndim != 2:
            return None
        ipv6 = batch["ipv6"]
        if self.unmap_v6:
            ipv6 = ipv6 & ~((col[:, 0] == 0) & ((col[:, 1] & ~LOW32) == V4_MAPPED))
        where6 = np.flatnonzero(ipv6)
        if len(where6) * 2 > len(ipv6):
            return None  # mostly IPv6: formatted whole
        v4 = (col[:, 1] & LOW32).astype(np.uint32)
        if len(where6):
            mat6, len6 = self._v6(col[where6], ipv6[where6], 1)
        else:
            mat6, len6 = text.blank(0, 1)
        return v4, where6, mat6, len6

    def _mixed_slab(self, mixed, rows, view):
        v4, where6, mat6, len6 = mixed
        w = view.shape[1]
        view[:, : w - 15] = text.SPACE
        self._v4(v4[rows], 15, view[:, w - 15:])
        a, b = np.searchsorted(where6, (rows.start, rows.stop))
        if b > a:
            view[where6[a:b] - rows.start] = text.fit(mat6[a:b], len6[a:b], w)

    def _v4(self, addr, width, out=None):
        if self.ip_style == "decimal":
            return text.uint(addr, width, out=out)
        if self.ip_style == "hexadecimal":
            return text.uint(addr, width, base=16, out=out)
        return text.ipv4(addr, width, zero_pad=self.ip_style == "zero-padded", out=out)

    def _v6(self, col, ipv6, width, force_v6=False):
        if self.ip_style in ("decimal", "hexadecimal"):
            base = 10 if self.ip_style == "decimal" else 16
            uniq, index = np.unique(np.ascontiguousarray(col).view(
                [("hi", np.uint64), ("lo", np.uint64)]).ravel(), return_inverse=True)
            fmt = "{:d}" if base == 10 else "{:x}"
            strings = [fmt.format((int(h) << 64) | int(lo))
                       for h, lo in zip(uniq["hi"], uniq["lo"], strict=True)]
            return text.from_strings(strings, index.ravel(), width)
        return text.ipv6(col, width, self.ip_style)

    def _overflowing(self, fields, batch):
        """As rwcut does with printf widths: a value wider than its column widens only its
        own line."""
        cols = []
        for f in fields:
            mat, lens = self.column(f, batch)
            w = self.width(f)
            if mat.shape[1] < w:
                mat = text.fit(mat, lens, w)
            cols.append((mat, np.maximum(lens, w)))
        return text.layout(cols, [0] * len(cols), self.sep.encode(), False, self.final)

    def _spaceless(self, fields):
        """Whether no value of these fields can hold a blank (nor can the separator), so
        delimited lines are the padded columns with every blank dropped."""
        if b" " in self.sep.encode():
            return False
        for f in fields:
            kind = f.kind
            if kind == "time" and self.ts in ("iso", "m/d/y"):
                return False
            if kind == "sensor" and not (self.integer_sensors or self.config is None):
                return False
            if kind in ("class", "type") and self.config is not None:
                return False
            if kind not in _SPACELESS:
                return False
        return True

    def _delimited_width(self, field, batch):
        """The narrowest column holding every value of the batch (None: format to know)."""
        kind = field.kind
        if kind in ("flags", "attributes") and not self.integer_flags:
            return len(text.TCP_FLAGS if kind == "flags" else text.ATTRIBUTES)
        if kind == "ip" and not self.map_v4 and self.ip_style in ("canonical", "no-mixed",
                                                                  "zero-padded"):
            return 39 if schema.is_v6(batch) and batch["ipv6"].any() else 15
        if kind == "time" and self.ts != "epoch":
            return 23 if self.msec else 19
        return self.out_width(field, batch, 1)

    def _spaceless_lines(self, fields, batch):
        """Delimited lines cut from one padded matrix: one compaction drops the padding
        (1M records, 5 fields: 0.45 s with a mask per column, 0.15 s so)."""
        n = len(batch["stime"])
        widths, ready = [], {}
        for i, f in enumerate(fields):
            mixed = self._mixed_ips(f, batch)
            if mixed is not None:
                ready[i] = mixed
                widths.append(max(15, mixed[2].shape[1]))
                continue
            w = self._delimited_width(f, batch)
            if w is None:
                ready[i] = self.column(f, batch)
                w = ready[i][0].shape[1]
            widths.append(w)
        out = self._fill(fields, batch, widths, ready, n)
        return out[out != text.SPACE].data

    def lines(self, fields, batch):
        """The text lines of a batch (a bytes-like object)."""
        if not self.columnar and len(batch["stime"]) and self._spaceless(fields):
            return self._spaceless_lines(fields, batch)
        if not self.columnar:
            cols = [self.column(f, batch) for f in fields]
            return text.layout(cols, [self.width(f) for f in fields], self.sep.encode(),
                               self.columnar, self.final)
        # Columnar: every column is written straight into its place in one matrix.
        n = len(batch["stime"])
        if n == 0:
            return b""
        widths, ready = [], {}
        for i, f in enumerate(fields):
            mixed = self._mixed_ips(f, batch)
            if mixed is not None:
                ready[i] = mixed
                widths.append(max(self.width(f), 15, mixed[2].shape[1]))
                continue
            w = self.out_width(f, batch)
            if w is None:
                ready[i] = self.column(f, batch)
                w = max(self.width(f), ready[i][0].shape[1])
            widths.append(w)
        if any(w > self.width(f) for f, w in zip(fields, widths, strict=True)):
            return self._overflowing(fields, batch)
        return self._fill(fields, batch, widths, ready, n).data

    def _fill(self, fields, batch, widths, ready, n):
        """The (n, W) matrix of the lines: columns of the given widths, separators, and
        newlines."""
        sep = self.sep.encode()
        nsep = len(fields) - (0 if self.final else 1)
        out = np.empty((n, sum(widths) + len(sep) * nsep + 1), np.uint8)
        sepm = np.frombuffer(sep, np.uint8)
        # Filled a slab of rows at a time: column after column over the whole batch would
        # walk a matrix larger than the cache once per field.
        for lo in range(0, n, _SLAB):
            rows = slice(lo, min(n, lo + _SLAB))
            part = {k: v[rows] for k, v in batch.items()}
            at = 0
            for i, (f, w) in enumerate(zip(fields, widths, strict=True)):
                view = out[rows, at: at + w]
                if i in ready and len(ready[i]) == 4:
                    self._mixed_slab(ready[i], rows, view)
                elif i in ready:
                    view[...] = text.fit(ready[i][0][rows], ready[i][1][rows], w)
                else:
                    self.column(f, part, view)
                at += w
                if i < nsep:
                    out[rows, at: at + len(sep)] = sepm
                    at += len(sep)
            out[rows, at] = 10
        return out


_SLAB = 8192
_SPACELESS = {"ip", "uint", "icmp", "flags", "attributes", "duration", "time", "sensor",
              "class", "type"}


def _local_offsets(ms):
    """Seconds east of UTC of the local time zone at each time (distinct hours only)."""
    import time
    hours = np.asarray(ms, np.int64) // 3_600_000
    uniq, index = np.unique(hours, return_inverse=True)
    offs = np.array([time.localtime(int(h) * 3600).tm_gmtoff for h in uniq], np.int64)
    return offs[index.ravel()]
