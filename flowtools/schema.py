"""The stored columns of a flow record and the batch that carries them.

A batch is a plain ``dict`` mapping column name to a numpy array of one length. IP address
columns (sip, dip, nhip) are ``uint32`` in an IPv4 batch and ``uint64`` of shape (n, 2)
(high, low halves of the 128-bit address) in an IPv6 batch; an IPv6 batch also carries the
bool column ``ipv6`` that tells genuinely IPv6 records from IPv4 ones held as ::ffff:a.b.c.d.
Times are milliseconds since the epoch (UTC); eTime is derived as sTime + duration.
"""

import numpy as np

# name -> decoded dtype.  Order is the canonical column order in files and batches.
COLUMNS = {
    "stime": np.dtype(np.int64),
    "duration": np.dtype(np.uint32),
    "sip": None,  # address: uint32 or (n, 2) uint64
    "dip": None,
    "nhip": None,
    "sport": np.dtype(np.uint16),
    "dport": np.dtype(np.uint16),
    "protocol": np.dtype(np.uint8),
    "packets": np.dtype(np.uint64),
    "bytes": np.dtype(np.uint64),
    "flags": np.dtype(np.uint8),
    "initflags": np.dtype(np.uint8),
    "sessflags": np.dtype(np.uint8),
    "attributes": np.dtype(np.uint8),
    "application": np.dtype(np.uint16),
    "sensor": np.dtype(np.uint16),
    "flowtype": np.dtype(np.uint8),
    "input": np.dtype(np.uint32),
    "output": np.dtype(np.uint32),
}
IP_COLUMNS = ("sip", "dip", "nhip")
NAMES = tuple(COLUMNS)
V4_MAPPED_HI = np.uint64(0)
V4_MAPPED_LO = np.uint64(0xFFFF00000000)


def is_v6(batch):
    return "ipv6" in batch


def nrecords(batch):
    col = batch.get("stime")
    if col is None:  # a batch of only some columns
        col = next(iter(batch.values()), ())
    return len(col)


def empty(v6=False):
    return {name: np.zeros((0, 2) if (v6 and name in IP_COLUMNS) else 0,
                           np.uint64 if (v6 and name in IP_COLUMNS)
                           else (np.uint32 if name in IP_COLUMNS else COLUMNS[name]))
            for name in NAMES} | ({"ipv6": np.zeros(0, bool)} if v6 else {})


def v4_to_v6(addr32):
    """IPv4 uint32 addresses as ::ffff:a.b.c.d (n, 2) uint64."""
    out = np.empty((len(addr32), 2), np.uint64)
    out[:, 0] = 0
    out[:, 1] = addr32.astype(np.uint64) | V4_MAPPED_LO
    return out


def to_v6(batch):
    """The same records as an IPv6 batch (IPv4 records keep ipv6=False)."""
    if is_v6(batch):
        return batch
    out = dict(batch)
    for name in IP_COLUMNS:
        if name in batch:
            out[name] = v4_to_v6(batch[name])
    out["ipv6"] = np.zeros(nrecords(batch), bool)
    return out


def v4_representable(batch):
    """True when every record of an IPv6 batch is an IPv4 record."""
    return not is_v6(batch) or not batch["ipv6"].any()


def to_v4(batch):
    """An IPv6 batch whose records are all IPv4, as an IPv4 batch."""
    if not is_v6(batch):
        return batch
    out = {k: v for k, v in batch.items() if k != "ipv6"}
    for name in IP_COLUMNS:
        if name not in batch:
            continue
        out[name] = (batch[name][:, 1] & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    return out


def concat(batches):
    """One batch from several; mixes of IPv4 and IPv6 batches become IPv6."""
    batches = [b for b in batches if nrecords(b)] or batches[:1]
    if not batches:
        return empty()
    if len(batches) == 1:
        return batches[0]
    if any(is_v6(b) for b in batches):
        batches = [to_v6(b) for b in batches]
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def take(batch, index):
    """Records selected by a boolean mask, an index array or a slice."""
    if isinstance(index, slice):
        return {k: v[index] for k, v in batch.items()}
    return {k: _take(v, index) for k, v in batch.items()}


def _take(col, index):
    if col.ndim == 2 and col.flags.c_contiguous:
        # 128-bit addresses gathered as one 16-byte item each (complex128 is only a
        # same-sized vehicle: the bits are copied, never computed on): 3x faster.
        return col.view(np.complex128)[:, 0][index].view(np.uint64).reshape(-1, 2)
    return col[index]


def etime(batch):
    return batch["stime"] + batch["duration"].astype(np.int64)


def make_batch(n, v6=False, **columns):
    """A batch of n records from the given columns; missing ones are zero."""
    out = empty(v6)
    for name in out:
        if name in columns:
            col = np.asarray(columns[name])
            want = out[name].dtype
            if col.shape[:1] != (n,):
                col = np.broadcast_to(col, (n,) + out[name].shape[1:])
            out[name] = np.ascontiguousarray(col, dtype=want)
        else:
            out[name] = np.zeros((n,) + out[name].shape[1:], out[name].dtype)
    unknown = set(columns) - set(out)
    if unknown:
        raise ValueError(f"unknown columns {sorted(unknown)}")
    return out


def record_bytes(v6):
    """Bytes one decoded record occupies in a batch."""
    total = sum(dt.itemsize for dt in COLUMNS.values() if dt is not None)
    return total + (3 * 16 + 1 if v6 else 3 * 4)


def split_families(batch):
    """A batch as batches of one address family each: its IPv4 records (held as
    ::ffff:a.b.c.d) with 32-bit addresses and no ipv6 column, then its IPv6 ones. A batch
    with no ipv6 column is one already."""
    if "ipv6" not in batch:
        return [batch]
    v6 = batch["ipv6"]
    if v6.all():
        return [batch]
    rows = None if not v6.any() else ~v6
    four = {}
    for k, v in batch.items():
        if k == "ipv6":
            continue
        if k in IP_COLUMNS and v.ndim == 2:
            four[k] = (v[:, 1] if rows is None else v[rows, 1]).astype(np.uint32)
        else:
            four[k] = v if rows is None else v[rows]
    return [four] if rows is None else [four, {k: v[v6] for k, v in batch.items()}]
