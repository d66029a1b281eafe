"""CSV and JSON-lines output of fields, built on the same vectorised column text."""

import numpy as np

from . import text


def _const(s, n):
    b = s.encode()
    return (np.broadcast_to(np.frombuffer(b, np.uint8), (n, len(b))),
            np.full(n, len(b), np.int64))


def _join(parts):
    """Bytes of rows made of right-aligned (matrix, lengths) parts without padding."""
    n = len(parts[0][1])
    mats, masks = [], []
    for mat, lens in parts:
        mats.append(mat)
        masks.append(np.arange(mat.shape[1])[None, :] >= (mat.shape[1] - lens[:, None]))
    big = np.concatenate(mats, axis=1)
    return big[np.concatenate(masks, axis=1)].tobytes() if n else b""


_QUOTED = ("ip", "time", "flags", "attributes", "sensor", "class", "type", "text")


class CsvEmitter:
    """CSV with a header line of field names; values as in rwcut's delimited layout."""

    def __init__(self, renderer, fields, write):
        self.r, self.fields, self.write = renderer, fields, write
        renderer.sep, renderer.columnar, renderer.final = ",", False, False

    def header(self):
        self.write((",".join(f.name for f in self.fields) + "\n").encode())

    def finish(self):
        pass

    def records(self, batch):
        if len(batch["stime"]):
            self.write(self.r.lines(self.fields, batch))  # rwcut's delimited layout


class JsonEmitter:
    """One JSON object per record; numbers unquoted, absent ICMP values null."""

    def __init__(self, renderer, fields, write):
        self.r, self.fields, self.write = renderer, fields, write
        renderer.columnar = False  # values unpadded, flags without their blanks

    def header(self):
        pass

    def finish(self):
        pass

    def records(self, batch):
        n = len(batch["stime"])
        if not n:
            return
        parts = []
        for k, f in enumerate(self.fields):
            parts.append(_const(("{" if k == 0 else ",") + f'"{f.name}":', n))
            mat, lens = self.r.column(f, batch)
            quoted = f.kind in _QUOTED and not (
                f.kind == "sensor" and (self.r.integer_sensors or self.r.config is None)) \
                and not (f.kind == "flags" and self.r.integer_flags)
            if f.kind == "ip" and self.r.ip_style == "decimal":
                quoted = False
            if f.kind == "time" and self.r.ts == "epoch":
                quoted = False
            if f.kind == "icmp":
                null, nlen = _const("null", n)
                w = max(mat.shape[1], 4)
                mat, null = text.fit(mat, lens, w), text.fit(np.array(null), nlen, w)
                mat = np.where((lens == 0)[:, None], null, mat)
                lens = np.where(lens == 0, 4, lens)
            if quoted:
                parts += [_const('"', n), (mat, lens), _const('"', n)]
            else:
                parts.append((mat, lens))
        parts.append(_const("}\n", n))
        self.write(_join(parts))
