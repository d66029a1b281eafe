"""The pyflow container: header, framed blocks, end markers and commit slots.

Flow, set and bag files share this container (docs/FORMAT.md is the specification):

    magic(8) major(1) minor(1) reserved(2) meta_len(4) slotA(24) slotB(24) meta crc32(4)
    frames...

A frame is ``kind(1) header_len(4) header(msgpack) crc32(4) payload`` where the header says
how long the payload is. Kind ``B`` is a data block, ``E`` ends a segment and carries the
segment's record and block counts. A file is a header followed by one or more segments.

Commit slots make appending safe without rewriting: a file written in place records its
committed length in the newer valid slot; readers stop there and ignore anything beyond, so a
crashed or in-progress append is never seen. Streams (pipes) leave both slots zero and are
read up to EOF, which must come right after an end marker.
"""

import io
import os
import struct

import msgpack

from .errors import FlowError, FormatError

try:
    # ISA-L's CRC-32 is zlib's own (same polynomial and values), computed with carry-less
    # multiplication: 1.6 -> 24 GB/s measured; it was 13% of the instructions of reading
    # the sIP column of an archive file (the whole block is checked, even when only the
    # front of its frame is decompressed)
    from isal.isal_zlib import crc32
except ImportError:              # no wheel for the platform: zlib's is the same sum
    from zlib import crc32

MAGIC = b"\x89PYF\r\n\x1a\n"
MAJOR = 1
MINOR = 0
_FIXED = struct.Struct("<8sBBHI")  # magic, major, minor, reserved, meta_len
_SLOT = struct.Struct("<QQII")  # committed length, sequence, crc32(length, sequence), pad
SLOT_A = _FIXED.size
SLOT_B = SLOT_A + _SLOT.size
META_AT = SLOT_B + _SLOT.size
_FRAME = struct.Struct("<cI")
_CRC = struct.Struct("<I")
MAX_FRAME_HEADER = 1 << 24  # a block header is a few hundred bytes; bounds bad lengths
BLOCK = b"B"
END = b"E"


def packb(obj):
    return msgpack.packb(obj, use_bin_type=True)


def unpackb(data, where, at=None):
    """The object msgpack-encoded in data; a FormatError naming where (and byte `at`,
    when given: the message is built only on error, as a file's frames are many)."""
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types
        if at is not None:
            where = f"{where} at byte {at}"
        raise FormatError(f"{where}: corrupt metadata ({exc.__class__.__name__})") from None


def slot_bytes(length, seq):
    head = struct.pack("<QQ", length, seq)
    return _SLOT.pack(length, seq, crc32(head), 0)


def _read_slot(raw):
    length, seq, crc, _ = _SLOT.unpack(raw)
    if seq == 0 or crc32(raw[:16]) != crc:  # the bytes of (length, seq)
        return None
    return length, seq


def header_bytes(meta):
    """The bytes of a new file's header (both commit slots empty)."""
    body = packb(meta)
    fixed = _FIXED.pack(MAGIC, MAJOR, MINOR, 0, len(body))
    crc = crc32(body, crc32(fixed[8:]))
    return fixed + bytes(2 * _SLOT.size) + body + _CRC.pack(crc)


def frame_bytes(kind, header, payload_len=0):
    """The frame prefix; the caller writes payload_len payload bytes after it."""
    head = packb(header)
    return _FRAME.pack(kind, len(head)) + head + _CRC.pack(crc32(head))


class Header:
    """A parsed file header: meta dict, version, and where the frames start."""

    def __init__(self, meta, major, minor, data_start, committed):
        self.meta = meta
        self.major = major
        self.minor = minor
        self.data_start = data_start
        self.committed = committed  # (length, seq) or None for a stream


def _read_exact(f, n, name, what):
    data = f.read(n)
    if len(data) != n:
        raise FormatError(f"{name}: truncated {what}")
    return data


def read_header(f, name, prefix=b""):
    """Parse the header from f (prefix: magic bytes already consumed by a sniffer)."""
    fixed = prefix + _read_exact(f, _FIXED.size - len(prefix), name, "header")
    magic, major, minor, _, meta_len = _FIXED.unpack(fixed)
    if magic != MAGIC:
        raise FormatError(f"{name}: not a pyflow file (bad magic)")
    if major > MAJOR:
        raise FormatError(
            f"{name}: file format version {major}.{minor} is newer than this pyflow "
            f"reads ({MAJOR}.x); upgrade pyflow")
    if meta_len > MAX_FRAME_HEADER:
        raise FormatError(f"{name}: corrupt header (metadata length {meta_len})")
    slots = _read_exact(f, 2 * _SLOT.size, name, "header")
    body = _read_exact(f, meta_len, name, "header")
    (crc,) = _CRC.unpack(_read_exact(f, 4, name, "header"))
    if crc32(body, crc32(fixed[8:])) != crc:
        raise FormatError(f"{name}: header checksum mismatch")
    meta = unpackb(body, name)
    if not isinstance(meta, dict):
        raise FormatError(f"{name}: corrupt header metadata")
    valid = [s for s in (_read_slot(slots[: _SLOT.size]), _read_slot(slots[_SLOT.size:])) if s]
    committed = max(valid, key=lambda s: s[1]) if valid else None
    return Header(meta, major, minor, META_AT + meta_len + 4, committed)


class FrameReader:
    """Reads frames sequentially from a file or stream, up to a limit when committed."""

    def __init__(self, f, name, header):
        self.f = f
        self.name = name
        self.pos = header.data_start
        self.limit = header.committed[0] if header.committed else None
        self.seekable = _seekable(f)
        self.saw_end = False
        self.frame_at = self.pos
        if self.limit is not None and self.seekable:
            try:
                size = os.fstat(f.fileno()).st_size
            except (AttributeError, OSError, ValueError):  # in-memory files have no fileno
                size = f.seek(0, io.SEEK_END)
                f.seek(self.pos)
            if size is not None and size < self.limit:
                raise FormatError(f"{name}: truncated file ({size} of {self.limit} bytes)")

    def _read(self, n, what):
        data = self.f.read(n)
        if len(data) != n:
            raise FormatError(f"{self.name}: truncated {what} at byte {self.pos}")
        self.pos += n
        return data

    def next_frame(self):
        """(kind, header dict, payload offset) or None at the end of the data."""
        self.frame_at = self.pos  # where the frame starts (a copy of it starts there)
        if self.limit is not None and self.pos >= self.limit:
            if self.pos > self.limit or not self.saw_end:
                raise FormatError(f"{self.name}: corrupt file (frames overrun committed end)")
            return None
        at = self.pos
        first = self.f.read(_FRAME.size)
        if not first:
            if self.saw_end:
                return None
            raise FormatError(f"{self.name}: truncated file (no end marker) at byte {at}")
        if len(first) != _FRAME.size:
            raise FormatError(f"{self.name}: truncated frame at byte {at}")
        self.pos += _FRAME.size
        kind, hlen = _FRAME.unpack(first)
        if kind not in (BLOCK, END) or hlen > MAX_FRAME_HEADER:
            raise FormatError(f"{self.name}: corrupt frame at byte {at}")
        head = self._read(hlen, "frame")
        (crc,) = _CRC.unpack(self._read(4, "frame"))
        if crc32(head) != crc:
            raise FormatError(f"{self.name}: corrupt block header at byte {at}")
        header = unpackb(head, self.name, at)
        if not isinstance(header, dict):
            raise FormatError(f"{self.name}: corrupt frame at byte {at}")
        self.saw_end = kind == END
        return kind, header, self.pos

    def read_payload(self, n):
        if n < 0 or (self.limit is not None and self.pos + n > self.limit):
            raise FormatError(f"{self.name}: corrupt block length at byte {self.pos}")
        return self._read(n, "block")

    def skip_payload(self, n):
        if n < 0 or (self.limit is not None and self.pos + n > self.limit):
            raise FormatError(f"{self.name}: corrupt block length at byte {self.pos}")
        if self.seekable:
            self.f.seek(n, io.SEEK_CUR)
            self.pos += n
        else:
            while n:
                chunk = self._read(min(n, 1 << 20), "block")
                n -= len(chunk)


def _seekable(f):
    try:
        return f.seekable()
    except (AttributeError, ValueError, OSError):
        return False


def commit(f, length, previous):
    """Record length as committed in the older slot; previous is (length, seq) or None."""
    seq = previous[1] + 1 if previous else 1
    slot = SLOT_B if (previous and previous[1] % 2 == 1) else SLOT_A
    f.flush()
    os.fsync(f.fileno())
    f.seek(slot)
    f.write(slot_bytes(length, seq))
    f.flush()
    os.fsync(f.fileno())
    return length, seq


def read_source(source, name, read):
    """read(f, name) on a path (opened here) or a binary file object, named 'stdin'
    unless it has a real name."""
    if isinstance(source, (str, bytes, os.PathLike)):
        name = name or os.fsdecode(source)
        try:
            f = open(source, "rb")
        except OSError as exc:
            raise FlowError(f"cannot open {name}: {exc.strerror}") from None
        with f:
            return read(f, name)
    if name is None:
        name = getattr(source, "name", None)
        name = name if isinstance(name, str) and not name.startswith("<") else "stdin"
    return read(source, name)


def sniff(f, name, what, pyflow, silk_magic, silk):
    """pyflow(f, name, magic) or silk(f, name, magic) by the file's first four bytes;
    what names the kind of file expected ('a bag', 'an IP set')."""
    magic = f.read(4)
    if magic == MAGIC[:4]:
        return pyflow(f, name, magic)
    if magic == silk_magic:
        return silk(f, name, magic)
    if not magic:
        raise FormatError(f"{name}: empty input (no header)")
    raise FormatError(f"{name}: not {what} file (unknown magic {magic.hex()})")
