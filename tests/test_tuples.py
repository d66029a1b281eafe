import io
import ipaddress
import zlib

import numpy as np
import pytest

from flowtools import schema
from flowtools.errors import FlowError
from flowtools.predicate import Predicate
from flowtools.tuples import load_tuples, parse_tuples

MAPPED = 0xFFFF << 32
NAMES = ("sIP", "dIP", "sPort", "dPort", "protocol")
SWAP = {"sIP": "dIP", "dIP": "sIP", "sPort": "dPort", "dPort": "sPort", "protocol": "protocol"}
COL = {"sIP": "sip", "dIP": "dip", "sPort": "sport", "dPort": "dport", "protocol": "protocol"}


def pools(rng):
    return {"v4": [int(x) for x in rng.integers(0, 2**32, 25)],
            "v6": [int(a) << 64 | int(b) for a, b in rng.integers(0, 2**64, (8, 2),
                                                                  dtype=np.uint64)],
            "port": [0, 22, 53, 80, 443, 8080, 65535], "protocol": [1, 6, 17, 255]}


def records(rng, pool, n, v6):
    """A batch drawing every value from the pools (IPv6 batches mix in IPv4 records)."""
    cols = {c: rng.choice(pool["port"], n) for c in ("sport", "dport")}
    cols["protocol"] = rng.choice(pool["protocol"], n)
    is6 = rng.random(n) < (0.5 if v6 else 0)
    for c in ("sip", "dip"):
        vals = [int(rng.choice(pool["v6"])) if six else MAPPED | int(rng.choice(pool["v4"]))
                for six in is6]
        if v6:
            cols[c] = np.array([[v >> 64, v & (2**64 - 1)] for v in vals], np.uint64)
        else:
            cols[c] = np.array([v & 0xFFFFFFFF for v in vals], np.uint32)
    if v6:
        return schema.make_batch(n, v6=True, ipv6=is6, **cols)
    return schema.make_batch(n, **cols)


def value_of(batch, name, i):
    v = batch[COL[name]]
    if name in ("sIP", "dIP"):
        return int(v[i, 0]) << 64 | int(v[i, 1]) if v.ndim == 2 else MAPPED | int(v[i])
    return int(v[i])


def random_tuples(rng, pool, names, count):
    """(text cells, reference tests) for count tuples: an address or a CIDR block holding a
    pool address; a number, a number list or a range."""
    rows = []
    for _ in range(count):
        cells, tests = [], {}
        for name in names:
            if name in ("sIP", "dIP"):
                six = rng.random() < 0.3
                v = int(rng.choice(pool["v6"])) if six else int(rng.choice(pool["v4"]))
                width = 128 if six else 32
                p = width if rng.random() < 0.6 else int(rng.integers(width // 4, width + 1))
                net = (ipaddress.IPv6Network if six else ipaddress.IPv4Network)(
                    (v >> (width - p) << (width - p), p))
                text = str(net.network_address) if p == width else str(net)
                if six:
                    lo = net.network_address._ip
                else:  # an IPv4 block as its ::ffff:0:0/96 image
                    lo, p = MAPPED | net.network_address._ip, p + 96
                tests[name] = (lambda x, lo=lo, p=p: x >> (128 - p) == lo >> (128 - p))
                cells.append(text)
            else:
                choices = pool[name.lower() if name == "protocol" else "port"]
                r = rng.random()
                if r < 0.6:
                    vals = {int(rng.choice(choices))}
                    text = str(min(vals))
                elif r < 0.8:
                    vals = {int(x) for x in rng.choice(choices, 2)}
                    text = ",".join(str(x) for x in sorted(vals))
                else:
                    a = int(rng.choice(choices))
                    b = min(a + int(rng.integers(0, 4)), max(choices))
                    vals = set(range(a, b + 1))
                    text = f"{a}-{b}"
                tests[name] = (lambda x, vals=vals: x in vals)
                cells.append(text)
        rows.append((cells, tests))
    return rows


def reference(batch, rows, direction):
    n = schema.nrecords(batch)
    out = np.zeros(n, bool)
    for i in range(n):
        rec = {name: value_of(batch, name, i) for name in NAMES}
        for _, tests in rows:
            if ((direction != "reverse" and all(t(rec[k]) for k, t in tests.items()))
                    or (direction != "forward"
                        and all(t(rec[SWAP[k]]) for k, t in tests.items()))):
                out[i] = True
                break
    return out


def write(tmp_path, text, name="tuples.txt"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("names", [("sIP",), ("sIP", "dPort"), ("dIP", "sIP", "protocol"),
                                   ("sPort", "protocol"), NAMES, ("dPort", "dIP", "sPort")])
@pytest.mark.parametrize("direction", ["forward", "reverse", "both"])
def test_matches_reference(tmp_path, names, direction):
    rng = np.random.default_rng(zlib.crc32(repr((names, direction)).encode()))
    pool = pools(rng)
    rows = random_tuples(rng, pool, names, 30)
    text = "|".join(names) + "\n" + "".join("|".join(c) + "\n" for c, _ in rows)
    pred = load_tuples(write(tmp_path, text), direction=direction)
    assert isinstance(pred, Predicate)
    for v6 in (False, True, True):
        batch = records(rng, pool, 250, v6)
        want = reference(batch, rows, direction)
        assert 0 < want.sum() < 250 or len(names) > 2
        np.testing.assert_array_equal(pred.mask(batch), want)
        # a batch with only the predicate's columns is enough
        np.testing.assert_array_equal(pred.mask({c: batch[c] for c in pred.columns}), want)


def test_columns_follow_direction(tmp_path):
    path = write(tmp_path, "sip|dport\n10.0.0.1|80\n")
    assert load_tuples(path).columns == ("sip", "dport")
    assert load_tuples(path, direction="reverse").columns == ("dip", "sport")
    assert load_tuples(path, direction="b").columns == ("sip", "dport", "dip", "sport")
    with pytest.raises(FlowError, match="invalid --tuple-direction value 'sideways'"):
        load_tuples(path, direction="sideways")


def test_title_line_forms(tmp_path):
    b = schema.make_batch(3, sip=[0x0A000001, 0x0A000002, 0x0A000001], dport=[80, 80, 443])
    want = [True, False, False]
    for text in ["sIP|dPort\n10.0.0.1|80\n",
                 "      SIP|dPort|\n  10.0.0.1|   80|\n",       # rwcut's layout
                 "1|4\n10.0.0.1|80\n",                          # field numbers
                 "si | dp \n10.0.0.1 | 80\n",                   # unique prefixes
                 "# comment\n\n  sip|dport # title\n# more\n10.0.0.1|80  # trailing\n\n"]:
        np.testing.assert_array_equal(load_tuples(write(tmp_path, text)).mask(b), want)
    for text in ["10.0.0.1|80\n", "sIP|dPort\n10.0.0.1|80\n", "dPort|sIP\n10.0.0.1|80\n"]:
        # with --tuple-fields, a first line naming fields is skipped, whatever its order
        got = load_tuples(write(tmp_path, text), fields_text="sip,dport").mask(b)
        np.testing.assert_array_equal(got, want)
    got = load_tuples(write(tmp_path, "80|10.0.0.2\n"), fields_text="4,1").mask(b)
    np.testing.assert_array_equal(got, [False, True, False])


def test_delimiters(tmp_path):
    b = schema.make_batch(3, sip=[0x0A000001, 0x0A000002, 0x0A000001], dport=[80, 80, 443],
                          protocol=6)
    for text, delim in [("sip,dport\n10.0.0.1,80\n10.0.0.2 , 443\n", ","),
                        ("sip dport\n10.0.0.1   80\n\t10.0.0.2 443\n", " "),
                        ("sip\tdport\n10.0.0.1\t80\n10.0.0.2\t443\n", "\t"),
                        ("sip;dport\n10.0.0.1;80\n10.0.0.2;443\n", ";;")]:  # first character
        got = load_tuples(write(tmp_path, text), delimiter=delim).mask(b)
        np.testing.assert_array_equal(got, [True, False, False])
    with pytest.raises(FlowError, match="delimiter"):
        load_tuples(write(tmp_path, "sip\n10.0.0.1\n"), delimiter="")


def test_number_lists_and_ranges(tmp_path):
    b = schema.make_batch(6, sport=[79, 80, 81, 443, 1000, 65535], protocol=[6, 6, 6, 6, 17, 6])
    text = "sport|protocol\n80-81,443|6\n1000-|17\n65535|5-7\n"
    got = load_tuples(write(tmp_path, text)).mask(b)
    np.testing.assert_array_equal(got, [False, True, True, True, True, True])


def test_cidr_blocks_and_mapped_addresses(tmp_path):
    a = [0x0A000001, 0x0A010203, 0x0B000001, 0xC0A80101]
    text = ("sip\n10.0.0.0/8\n::ffff:192.168.1.1\n2001:db8::/32\n"
            "172.16.0.0/12\n10.1.2.3/8\n")  # host bits beyond the prefix are ignored
    pred = load_tuples(write(tmp_path, text))
    assert len(pred.groups) == 4  # by prefix: /8, /12, /32 IPv6, /128 (and IPv4 /32)
    want = [True, True, False, True]
    np.testing.assert_array_equal(pred.mask(schema.make_batch(4, sip=a)), want)
    v6 = schema.to_v6(schema.make_batch(4, sip=a))
    v6["sip"][2] = [0x20010DB8_00000000, 7]
    v6["ipv6"][2] = True
    np.testing.assert_array_equal(pred.mask(v6), [True, True, True, True])
    v6["sip"][2] = [0x20010DB9_00000000, 7]
    np.testing.assert_array_equal(pred.mask(v6), want)


def test_standard_input(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("25,6\n"))
    pred = load_tuples("-", fields_text="sport,proto", delimiter=",", direction="reverse")
    b = schema.make_batch(3, sport=[25, 1, 1], dport=[1, 25, 25], protocol=[6, 6, 17])
    np.testing.assert_array_equal(pred.mask(b), [False, True, False])


@pytest.mark.parametrize("text, fields_text, message", [
    ("sIP|nosuch\n1.2.3.4|5\n", None, r"line 1: bad title line 'sIP,nosuch': unknown field "
                                      r"'nosuch'; name the fields with --tuple-fields"),
    ("# c\n\nsIP|sport\n1.2.3.4\n", None, "line 4: too few fields (found 1, expected 2)"),
    ("sIP|sport\n1.2.3.4|5\n1.2.3.4|5|6\n", None,
     "line 3: too many fields (found 3, expected 2)"),
    ("sIP\n10.1.2.300\n", None, "line 2: bad sIP value '10.1.2.300'"),
    ("dIP\n10.0.0.0/33\n", None, "line 2: bad dIP value '10.0.0.0/33'"),
    ("dIP\n2001:db8::/129\n", None, "line 2: bad dIP value '2001:db8::/129'"),
    ("sip\n\n\n10.0.0.x\n", None, "line 4: bad sIP value '10.0.0.x'"),
    ("dport\n70000\n", None, "line 2: bad dPort value '70000': larger than 65535"),
    ("sport\n80,\n", None, "line 2: bad sPort value '80,': empty value"),
    ("sport\n90-80\n", None, "line 2: bad sPort value '90-80': range 90-80 runs backwards"),
    ("protocol\n256\n", None, "line 2: bad protocol value '256': larger than 255"),
    ("protocol\ntcp\n", None, "line 2: bad protocol value 'tcp': not a number or range"),
    ("sip|dport\n", None, "no tuples"),
    ("# nothing\n", "sip", "no tuples"),
    ("", None, "no tuples"),
])
def test_errors(tmp_path, text, fields_text, message):
    path = write(tmp_path, text)
    with pytest.raises(FlowError) as exc:
        load_tuples(path, fields_text=fields_text)
    assert str(exc.value).startswith(f"--tuple-file {path}: ")
    assert message in str(exc.value)


def test_field_list_errors(tmp_path):
    path = write(tmp_path, "1.2.3.4\n")
    for fields_text, message in [("sip,sip", "sIP given twice"), ("sip,6", "unknown field '6'"),
                                 ("s", "unknown field 's'"), (",", "no fields")]:
        with pytest.raises(FlowError, match=f"invalid --tuple-fields value '{fields_text}': "
                                            f"{message}"):
            load_tuples(path, fields_text=fields_text)
    with pytest.raises(FlowError, match="--tuple-file /no/such/file: No such file"):
        load_tuples("/no/such/file")


def test_parse_tuples_from_lines():
    pred = parse_tuples(["dport|protocol", "53|17", "53|17"], "x", None)
    assert [g.set.count for g in pred.groups] == [1]  # duplicates are stored once
    b = schema.make_batch(2, dport=[53, 53], protocol=[17, 6])
    np.testing.assert_array_equal(pred.mask(b), [True, False])
    np.testing.assert_array_equal(pred.mask(schema.empty()), np.zeros(0, bool))


def test_expansion_limit(tmp_path, monkeypatch):
    monkeypatch.setattr("flowtools.tuples.MAX_TUPLES", 1000)
    path = write(tmp_path, "sport|dport\n1-10|1-10\n1-31|1-31\n")  # 100, then 961 more
    with pytest.raises(FlowError, match=r"line 3: more than 1000 tuples"):
        load_tuples(path)
    pred = load_tuples(write(tmp_path, "sip\n10.0.0.0/9\n", "t2.txt"))  # 128 /16 blocks
    assert [g.set.count for g in pred.groups] == [128]
    b = schema.make_batch(3, sip=[0x0A7FFFFF, 0x0A800000, 0x0A000000])
    np.testing.assert_array_equal(pred.mask(b), [True, False, True])
