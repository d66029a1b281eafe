"""pyflow-bagbuild: build a bag from an IP set or from text (rwbagbuild)."""

from ..cli import Tool


def _arguments(p):
    p.add_argument("--set-input", metavar="SETFILE",
                   help="Build the bag from the addresses of an IP set (pyflow or SiLK; "
                        "'-' or 'stdin' for the standard input), each with the default "
                        "count.")
    p.add_argument("--bag-input", metavar="TEXTFILE",
                   help="Build the bag from text lines 'key|counter|' or 'key' (the "
                        "default count); a key is a number, an IP address, a CIDR block "
                        "or an IP wildcard (every address gets the counter); repeated keys "
                        "are summed; '#' starts a comment.")
    p.add_argument("--delimiter", metavar="C", default="|",
                   help="The character between key and counter in --bag-input (default "
                        "'|').")
    p.add_argument("--default-count", metavar="COUNT",
                   help="The counter of keys without one, and of every key when given "
                        "(default 1).")
    p.add_argument("--key-type", metavar="TYPE",
                   help="The key type recorded in the bag (sIPv4, dPort, sTime, ...; "
                        "default custom); it decides how pyflow-bagcat prints keys.")
    p.add_argument("--counter-type", metavar="TYPE",
                   help="The counter type recorded in the bag (records, sum-packets, "
                        "sum-bytes, ...; default custom).")
    p.add_argument("--output-format", choices=("pyflow", "silk"), default=None,
                   help="Format of the bag: pyflow (default) or silk. Default from "
                        "PYFLOW_BAG_FORMAT.")


TOOL = Tool(
    name="pyflow-bagbuild",
    summary="Build a bag from an IP set or from text.",
    description="Creates a bag, as SiLK's rwbagbuild, from the addresses of an IP set "
                "(--set-input) or from delimited text (--bag-input), and writes it to "
                "--output-path. Text keys may be numbers or IP addresses, CIDR blocks and "
                "wildcards but numbers and IPv6 addresses may not be mixed; a bag with "
                "any IPv6 key is an IPv6 bag.",
    uses=("output", "compression", "notes"),
    add_arguments=_arguments,
    examples=["pyflow-bagbuild --bag-input=counts.txt --output-path=counts.bag",
              "pyflow-bagbuild --set-input=hosts.set --default-count=5 > hosts.bag",
              "pyflow-cut --fields=sip,bytes --no-titles f.pf | pyflow-bagbuild "
              "--bag-input=- --key-type=sipv4 --counter-type=sum-bytes > b.bag"],
)


def _count(text, where):
    from ..errors import FlowError
    t = text.strip()
    if not t.isdigit() or int(t) >= 2**64:
        raise FlowError(f"{where}: invalid count '{text.strip()}'")
    return int(t)


def parse_text(data, name, delimiter="|", default=1, fixed=None):
    """Keys and counters from rwbagbuild text: (integer keys, their counters, [(IPSet,
    counter)] of address keys, any IPv6 key?). Wildcards match every address they name."""
    import socket

    import numpy as np

    from .. import addrs
    from ..errors import FlowError
    from ..ipset import IPSet
    ints, counts = [], []
    ranges = []  # (IPSet, counter)
    # plain addresses (most lines) are packed by the C parser and added in one piece
    plain = {socket.AF_INET: ([], []), socket.AF_INET6: ([], [])}
    seen_num = seen_v6 = False
    for lineno, raw in enumerate(data.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{name}: line {lineno}"
        key, sep, rest = line.partition(delimiter)
        key = key.strip()
        rest = rest.strip()
        if fixed is not None:
            ctr = fixed
        elif not sep or not rest:
            ctr = default
        else:
            text, _, _ = rest.partition(delimiter)
            if not text.strip() and rest.strip():
                raise FlowError(f"{where}: extra text after count")
            head = text.strip().split()
            if len(head) > 1:
                raise FlowError(f"{where}: extra text after count")
            ctr = _count(text, where)
        if key.isdigit():
            if seen_v6:
                raise FlowError(f"{where}: may not mix integer keys with IPv6 keys")
            if int(key) > 2**32 - 1:
                raise FlowError(f"{where}: key {key} is too large (at most 4294967295)")
            seen_num = True
            ints.append(int(key))
            counts.append(ctr)
            continue
        family = socket.AF_INET6 if ":" in key else socket.AF_INET
        try:
            packed = socket.inet_pton(family, key)
        except OSError:
            packed = None
        if packed is not None:
            if family == socket.AF_INET6:
                if seen_num:
                    raise FlowError(f"{where}: may not mix integer keys with IPv6 keys")
                seen_v6 = True
            plain[family][0].append(packed)
            plain[family][1].append(ctr)
            continue
        try:
            m = addrs.parse_wildcard(key, "key")
        except FlowError:
            raise FlowError(f"{where}: cannot parse key '{key}' as a number or IP "
                            "address") from None
        v6 = m.is_ipv6
        if v6:
            if seen_num:
                raise FlowError(f"{where}: may not mix integer keys with IPv6 keys")
            seen_v6 = True
        s = IPSet.from_matcher(m)
        ranges.append((s, ctr))
    for family, (keys, ctrs) in plain.items():
        if keys:
            raw = np.frombuffer(b"".join(keys), ">u4" if family == socket.AF_INET else ">u8")
            addr = raw.astype(np.uint32) if family == socket.AF_INET else \
                raw.astype(np.uint64).reshape(-1, 2)
            ranges.append((addr, np.array(ctrs, np.uint64)))
    return ints, counts, ranges, seen_v6


def build_from_text(data, name, delimiter="|", default=1, fixed=None, key="custom",
                    counter="custom"):
    import numpy as np

    from .. import bag as bagmod
    ints, counts, ranges, v6 = parse_text(data, name, delimiter, default, fixed)
    any_v6 = v6 or key in bagmod.TO_V4
    key = bagmod.TO_V6.get(key, key) if any_v6 else bagmod.TO_V4.get(key, key)
    b = bagmod.Builder((key,), counter, any_v6)
    pieces = []
    if ints:
        k = np.array(ints, np.uint64)
        if any_v6:
            col = np.zeros((len(k), 2), np.uint64)
            col[:, 1] = k | np.uint64(0xFFFF00000000)
            k = col
        else:
            k = k.astype(np.uint32)
        pieces.append((k, np.array(counts, np.uint64)))
    for s, ctr in ranges:
        if isinstance(s, np.ndarray):  # plain addresses, one counter each
            addr = s
            if any_v6 and addr.ndim == 1:
                addr = np.stack([np.zeros(len(s), np.uint64),
                                 s.astype(np.uint64) | np.uint64(0xFFFF00000000)], axis=1)
            pieces.append((addr, ctr))
            continue
        s = s.to_v6() if any_v6 else s
        addr = s.addresses()
        pieces.append((addr, np.full(len(addr), ctr, np.uint64)))
    for k, c in pieces:
        b.add(k, c)
    return b.bag()


def main(opts):
    import sys

    from .. import bag as bagmod
    from .. import cli, io
    from ..errors import FlowError
    from ..ipset import read_set
    if (opts.set_input is None) == (opts.bag_input is None):
        raise FlowError("exactly one of --set-input and --bag-input is required")
    if len(opts.delimiter) != 1 or opts.delimiter in "\n#":
        raise FlowError(f"invalid --delimiter '{opts.delimiter}': one character, not "
                        "newline or '#'")
    fixed = _count(opts.default_count, "--default-count") \
        if opts.default_count is not None else None
    default = 1 if fixed is None else fixed
    key = bagmod.lookup_type(opts.key_type, "--key-type") if opts.key_type else "custom"
    counter = bagmod.lookup_type(opts.counter_type, "--counter-type") \
        if opts.counter_type else "custom"
    if key.endswith("pmap") or key.endswith("country"):
        raise FlowError(f"--key-type {key} is not supported (no prefix maps or country "
                        "codes)")
    fmt = opts.output_format or io.env("BAG_FORMAT", "pyflow")
    io.check_output(opts.output_path)  # a terminal, or a file not to clobber: before reading
    src = opts.set_input if opts.set_input is not None else opts.bag_input
    f = io.open_input(src) if src not in io.STDIN_NAMES else sys.stdin.buffer
    name = io.display_name(src)
    metas = []
    try:
        if opts.set_input is not None:
            s = read_set(f, name)
            metas.append(s.meta)
            if key == "custom":
                key = "any-IPv6" if not s.ipv4_only() else "any-IPv4"
            v6 = not s.ipv4_only() or key in bagmod.TO_V4
            key = bagmod.TO_V6.get(key, key) if v6 else key
            col = s.to_v6().addresses() if v6 else s.to_v4().addresses()
            result = bagmod.Bag((key,), counter, v6, col,
                                bagmod.np.full(len(col), default, bagmod.np.uint64))
        else:
            data = f.read().decode("utf-8", "replace")
            result = build_from_text(data, name, opts.delimiter, default, fixed, key,
                                     counter)
    finally:
        if f is not sys.stdin.buffer:
            f.close()
    if default == 0:
        result = result.between_counters(1, None)
    meta = cli.output_meta(opts, metas)
    method, _ = cli.compression(opts)
    bagmod.write_bag(result, opts.output_path, fmt, meta["history"], meta["notes"],
                     ("none" if method == "none" else "zlib") if fmt == "silk" else
                     ("none" if method == "none" else "zstd"))
    return 0
