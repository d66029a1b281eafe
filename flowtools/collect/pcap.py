"""UDP payloads out of packet captures (pcap and pcapng), to re-play export traffic.

Link layers: Ethernet (with 802.1Q/802.1ad VLAN tags), Linux cooked capture v1 and v2,
BSD loopback and raw IP. Network: IPv4 (first fragments only: a NetFlow datagram split in
IP fragments is not reassembled) and IPv6 (hop-by-hop, routing and destination option
headers skipped). Yields (source address, source port, destination port, payload).
"""

import gzip
import ipaddress
import struct

from ..errors import FlowError

ETHERNET, RAW, LINUX_SLL, LINUX_SLL2, NULL, LOOP = 1, 101, 113, 276, 0, 108
RAW4, RAW6 = 228, 229


def read(path):
    """Yield (src_host, src_port, dst_port, payload) for every UDP packet of the capture."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise FlowError(f"cannot read pcap file {path}: {exc.strerror}") from None
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    magic = data[:4]
    if magic == b"\x0a\x0d\x0d\x0a":
        frames = _pcapng(data, path)
    elif magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\xc3\xd4",
                   b"\xa1\xb2\x3c\x4d"):
        frames = _pcap(data, path)
    else:
        raise FlowError(f"{path}: not a pcap or pcapng file")
    for link, frame in frames:
        hit = _udp(link, frame)
        if hit is not None:
            yield hit


def _pcap(data, path):
    end = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    if len(data) < 24:
        raise FlowError(f"{path}: truncated pcap header")
    link = struct.unpack(end + "I", data[20:24])[0] & 0xFFFF
    pos = 24
    rec = struct.Struct(end + "IIII")
    while pos + 16 <= len(data):
        _, _, caplen, _ = rec.unpack_from(data, pos)
        pos += 16
        if pos + caplen > len(data):
            return  # a capture cut short: its last packet is lost
        yield link, data[pos:pos + caplen]
        pos += caplen


def _pcapng(data, path):
    links = []
    pos, end = 0, "<"
    while pos + 12 <= len(data):
        btype = struct.unpack_from(end + "I", data, pos)[0]
        if btype == 0x0A0D0D0A:
            end = "<" if data[pos + 8:pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            links = []
        blen = struct.unpack_from(end + "I", data, pos + 4)[0]
        if blen < 12 or pos + blen > len(data):
            return
        body = data[pos + 8:pos + blen - 4]
        if btype == 1 and len(body) >= 2:
            links.append(struct.unpack_from(end + "H", body, 0)[0])
        elif btype == 6 and len(body) >= 20:
            iface, _, _, caplen, _ = struct.unpack_from(end + "IIIII", body, 0)
            if iface < len(links):
                yield links[iface], body[20:20 + caplen]
        elif btype == 3 and len(body) >= 4 and links:
            yield links[0], body[4:]
        pos += blen


def _udp(link, frame):
    if link == ETHERNET:
        if len(frame) < 14:
            return None
        etype, pos = struct.unpack_from(">H", frame, 12)[0], 14
        while etype in (0x8100, 0x88A8, 0x9100) and pos + 4 <= len(frame):
            etype, pos = struct.unpack_from(">H", frame, pos + 2)[0], pos + 4
    elif link == LINUX_SLL:
        if len(frame) < 16:
            return None
        etype, pos = struct.unpack_from(">H", frame, 14)[0], 16
    elif link == LINUX_SLL2:
        if len(frame) < 20:
            return None
        etype, pos = struct.unpack_from(">H", frame, 0)[0], 20
    elif link in (NULL, LOOP):
        if len(frame) < 4:
            return None
        family = int.from_bytes(frame[:4], "little" if frame[0] else "big")
        etype, pos = (0x0800 if family == 2 else 0x86DD), 4
    elif link in (RAW, RAW4, RAW6):
        etype, pos = (0x86DD if frame[:1] and frame[0] >> 4 == 6 else 0x0800), 0
    else:
        return None
    if etype == 0x0800:
        return _ipv4(frame, pos)
    if etype == 0x86DD:
        return _ipv6(frame, pos)
    return None


def _ipv4(frame, pos):
    if len(frame) < pos + 20 or frame[pos] >> 4 != 4:
        return None
    ihl = (frame[pos] & 0x0F) * 4
    total = struct.unpack_from(">H", frame, pos + 2)[0]
    frag = struct.unpack_from(">H", frame, pos + 6)[0] & 0x1FFF
    if frame[pos + 9] != 17 or frag:
        return None
    src = str(ipaddress.IPv4Address(frame[pos + 12:pos + 16]))
    end = min(len(frame), pos + total) if total else len(frame)
    return _udp_payload(frame[pos + ihl:end], src)


def _ipv6(frame, pos):
    if len(frame) < pos + 40:
        return None
    nxt = frame[pos + 6]
    src = str(ipaddress.IPv6Address(frame[pos + 8:pos + 24]))
    plen = struct.unpack_from(">H", frame, pos + 4)[0]
    end = min(len(frame), pos + 40 + plen)
    pos += 40
    while nxt in (0, 43, 60) and pos + 8 <= end:
        nxt, pos = frame[pos], pos + 8 * (frame[pos + 1] + 1)
    if nxt != 17:
        return None
    return _udp_payload(frame[pos:end], src)


def _udp_payload(seg, src):
    if len(seg) < 8:
        return None
    sport, dport, length = struct.unpack_from(">HHH", seg, 0)
    payload = seg[8:length] if 8 <= length <= len(seg) else seg[8:]
    return src, sport, dport, payload
