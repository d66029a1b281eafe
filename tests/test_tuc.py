"""pyflow-tuc: rwcut's text back to flows, other tools' CSV exports, and rejected lines."""

import gzip
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, random_batch, shared

from flowtools import api, schema, textin

BIN = os.path.join(ROOT, "bin")
CONF = os.path.join(ROOT, "tests", "data", "twoway.conf")
T0 = 1234396800000  # 2009/02/12T00:00:00Z


def run(tool, *args, input=None, check=True):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SILK_", "PYFLOW_"))}
    p = subprocess.run([sys.executable, os.path.join(BIN, tool), *args], input=input,
                       capture_output=True, env=env)
    if check and p.returncode != 0:
        raise AssertionError(f"{tool} {args} exit {p.returncode}: {p.stderr.decode()}")
    return p


def tuc(*args, input=None, conf=True):
    """The records pyflow-tuc makes of the input (text given as str or bytes)."""
    if isinstance(input, str):
        input = input.encode()
    extra = [f"--site-config-file={CONF}"] if conf else []
    p = run("pyflow-tuc", *extra, *args, input=input)
    return read(p.stdout)


def read(data):
    import io
    return schema.concat(list(api.read_flows(io.BytesIO(data))))


def tuc_error(tmp_path, text, *args):
    """(exit status, stderr) of a run expected to fail; no output file may remain."""
    src = tmp_path / "in.txt"
    src.write_bytes(text if isinstance(text, bytes) else text.encode())
    out = tmp_path / "out.pf"
    p = run("pyflow-tuc", f"--site-config-file={CONF}", *args, f"--output-path={out}",
            str(src), check=False)
    assert not out.exists()
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".out.pf")]
    return p.returncode, p.stderr.decode()


# ----------------------------------------------------------------------------- round trips

# Field name as pyflow-cut prints it -> the stored columns it carries.
COLUMNS = {"sIP": ["sip"], "dIP": ["dip"], "sPort": ["sport"], "dPort": ["dport"],
           "protocol": ["protocol"], "packets": ["packets"], "bytes": ["bytes"],
           "flags": ["flags"], "sTime": ["stime"], "duration": ["duration"],
           "eTime": ["stime", "duration"], "sensor": ["sensor"], "in": ["input"],
           "out": ["output"], "nhIP": ["nhip"], "initialFlags": ["initflags"],
           "sessionFlags": ["sessflags"], "attributes": ["attributes"],
           "application": ["application"], "class": ["flowtype"], "type": ["flowtype"]}
ALL = ("sIP,dIP,sPort,dPort,protocol,packets,bytes,flags,sTime,duration,eTime,sensor,in,out,"
       "nhIP,initialFlags,sessionFlags,attributes,application,class,type")
DEFAULT = "sIP,dIP,sPort,dPort,protocol,packets,bytes,flags,sTime,duration,eTime,sensor"

LAYOUTS = [
    # (pyflow-cut switches, fields they print, extra pyflow-tuc switches)
    ([], DEFAULT, []),
    (["--all-fields"], ALL, []),
    (["--all-fields", "--delimited"], ALL, []),
    (["--all-fields", "--delimited=,", "--ip-format=zero-padded"], ALL,
     ["--column-separator=,"]),
    (["--fields=" + ALL, "--no-titles"], ALL, ["--fields=" + ALL]),
    (["--fields=sip,dip,dport,proto,stime,etime", "--no-titles", "--delimited=;"],
     "sIP,dIP,dPort,protocol,sTime,eTime",
     ["--fields=sip,dip,dport,proto,stime,etime", "--no-titles", "--column-separator=;"]),
    (["--all-fields", "--ip-format=decimal"], ALL, []),
    (["--all-fields", "--ip-format=hexadecimal"], ALL, ["--ip-format=hexadecimal"]),
    (["--all-fields", "--timestamp-format=epoch"], ALL, []),
    (["--all-fields", "--timestamp-format=iso", "--no-final-delimiter"], ALL, []),
    (["--all-fields", "--timestamp-format=m/d/y", "--column-separator=!"], ALL,
     ["--column-separator=!"]),
    (["--all-fields", "--integer-tcp-flags", "--integer-sensors"], ALL, []),
    (["--fields=sip,dip,stime,sensor,class,type", "--output-format=csv"],
     "sIP,dIP,sTime,sensor,class,type", ["--input-format=csv"]),
]


def _check_round_trip(batch, got, printed):
    n = len(batch["stime"])
    assert len(got["stime"]) == n
    for name in printed.split(","):
        for col in COLUMNS[name]:
            np.testing.assert_array_equal(got[col], batch[col], err_msg=f"{name} ({col})")
    if schema.is_v6(batch) and "sIP" in printed:
        # IPv4 records come back as IPv4, IPv6 ones as IPv6
        np.testing.assert_array_equal(got["ipv6"], batch["ipv6"])


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("cut_args,printed,tuc_args", LAYOUTS,
                         ids=[" ".join(c) or "default" for c, _, _ in LAYOUTS])
def test_round_trip(tmp_path, v6, cut_args, printed, tuc_args):
    rng = np.random.default_rng(7)
    batch = random_batch(rng, 3000, v6=v6)
    batch["attributes"] &= 0x78  # the bits attribute letters (TCFS) can show
    if "--integer-tcp-flags" in cut_args:
        batch["attributes"] = random_batch(rng, 3000)["attributes"]
    path = tmp_path / "in.pf"
    api.write_flows(str(path), [batch])
    text = run("pyflow-cut", f"--site-config-file={CONF}", *cut_args, str(path)).stdout
    got = tuc(*tuc_args, input=text)
    _check_round_trip(batch, got, printed)


def test_round_trip_extremes(tmp_path):
    rng = np.random.default_rng(8)
    batch = random_batch(rng, 500, v6=True, extremes=True)
    path = tmp_path / "in.pf"
    api.write_flows(str(path), [batch])
    text = run("pyflow-cut", f"--site-config-file={CONF}", "--all-fields",
               "--integer-tcp-flags", str(path)).stdout
    got = tuc(input=text)
    _check_round_trip(batch, got, ALL)
    assert got["packets"].max() == 2**64 - 1 and got["duration"].max() > 4_000_000_000


def test_flowtype_numbers():
    """pyflow-cut prints flowtype numbers as class and type without a configuration."""
    got = tuc(input="class|type|sPort\n3|3|1\n10|10|2\n", conf=False)
    assert list(got["flowtype"]) == [3, 10]


@pytest.mark.parametrize("ip_format", ["no-mixed", "map-v4", "force-ipv6", "unmap-v6"])
def test_round_trip_ipv6_forms(tmp_path, ip_format):
    """The addresses come back whatever the form; map-v4 and force-ipv6 print IPv4
    records as ::ffff:a.b.c.d, which come back as IPv6 records of the same addresses."""
    rng = np.random.default_rng(12)
    batch = random_batch(rng, 1000, v6=True)
    batch["sip"][:10] = schema.v4_to_v6(np.arange(10, dtype=np.uint32))  # ::ffff:0.0.0.k
    path = tmp_path / "in.pf"
    api.write_flows(str(path), [batch])
    text = run("pyflow-cut", f"--site-config-file={CONF}", "--fields=sip,dip,nhip",
               f"--ip-format={ip_format}", str(path)).stdout
    got = tuc(input=text)
    for col in ("sip", "dip", "nhip"):
        np.testing.assert_array_equal(got[col], batch[col], err_msg=col)
    if ip_format in ("map-v4", "force-ipv6"):
        assert got["ipv6"].all()


def test_seconds_precision(tmp_path):
    """no-msec times and durations come back truncated to the second."""
    rng = np.random.default_rng(13)
    batch = random_batch(rng, 1000)
    path = tmp_path / "in.pf"
    api.write_flows(str(path), [batch])
    for fmt in ("epoch,no-msec", "default,no-msec", "iso,no-msec"):
        text = run("pyflow-cut", f"--site-config-file={CONF}", "--fields=stime,dur,etime",
                   f"--timestamp-format={fmt}", str(path)).stdout
        got = tuc(input=text)
        np.testing.assert_array_equal(got["stime"], batch["stime"] // 1000 * 1000)
        np.testing.assert_array_equal(got["duration"], batch["duration"] // 1000 * 1000)


def test_gzip_input_and_several_files(tmp_path):
    rng = np.random.default_rng(10)
    batch = random_batch(rng, 2000)
    path = tmp_path / "in.pf"
    api.write_flows(str(path), [batch])
    text = run("pyflow-cut", f"--site-config-file={CONF}", str(path)).stdout
    (tmp_path / "a.txt.gz").write_bytes(gzip.compress(text))
    (tmp_path / "b.txt").write_bytes(text)
    out = tmp_path / "out.pf"
    run("pyflow-tuc", f"--site-config-file={CONF}", f"--output-path={out}",
        str(tmp_path / "a.txt.gz"), str(tmp_path / "b.txt"))
    got = schema.concat(list(api.read_flows(str(out))))
    assert len(got["stime"]) == 4000
    np.testing.assert_array_equal(got["sip"][2000:], batch["sip"])
    np.testing.assert_array_equal(got["stime"][:2000], batch["stime"])


def test_many_chunks(tmp_path):
    """Inputs longer than a chunk keep their order and line numbers."""
    rng = np.random.default_rng(11)
    batch = random_batch(rng, 120_000)
    path = tmp_path / "in.pf"
    api.write_flows(str(path), [batch])
    text = run("pyflow-cut", f"--site-config-file={CONF}", "--fields=1-10",
               str(path)).stdout
    got = tuc(input=text)
    _check_round_trip(batch, got, "sIP,dIP,sPort,dPort,protocol,packets,bytes,flags,sTime,"
                                  "duration")
    lines = text.split(b"\n")
    lines[100_001] = lines[100_001].replace(b"|", b"!", 1)
    code, err = tuc_error(tmp_path, b"\n".join(lines))
    assert code == 1 and ":100002: 9 '|' separators where the title line has 10" in err


# ----------------------------------------------------------------------------- titles

@pytest.mark.parametrize("title,key", [
    ("pro", "protocol"), ("sen", "sensor"), ("initialF", "initflags"),
    ("sessionF", "sessflags"), ("attribut", "attributes"), ("appli", "application"),
    ("iTy", "itype"), ("iCo", "icode"), ("cla", "class"), ("ty", "type"), ("se", "sensor"),
    ("S", "sensor"), ("SIP", "sip"), ("dur", "duration"), ("sTime+msec", "stime"),
    ("dur+msec", "duration"), ("pkts", "packets"), ("in", "input"), ("ignore", None)])
def test_title_names(title, key):
    assert textin.resolve_field(title) == key


def test_title_line_gives_the_order():
    text = ("   dPort|sIP  |  pro|sTime|\n"
            "   80|10.0.0.1|6|2009/02/12T00:00:01.000|\n")
    got = tuc(input=text)
    assert got["dport"][0] == 80 and got["sip"][0] == 0x0A000001
    assert got["protocol"][0] == 6 and got["stime"][0] == T0 + 1000
    # rwtuc's defaults for the rest
    assert got["packets"][0] == 1 and got["bytes"][0] == 1 and got["sensor"][0] == 0


def test_fields_with_and_without_title():
    data = "1.2.3.4|5.6.7.8|17|2009/02/12T01:02:03\n"
    got = tuc("--fields=sip,dip,proto,stime", "--no-titles", input=data)
    assert got["stime"][0] == T0 + 3723000
    # a title line is recognised and skipped when --fields is given
    got2 = tuc("--fields=sip,dip,proto,stime", input="sIP|dIP|protocol|sTime|\n" + data)
    assert len(got2["stime"]) == 1 and got2["dip"][0] == 0x05060708
    # the reference's example: a numeric first line is a record
    got3 = tuc("--fields=sip,dip,proto,stime", "--column-separator=,",
               input="1.2.3.4,5.6.7.8,17,2009/02/12T01:02:03")
    assert got3["protocol"][0] == 17 and got3["packets"][0] == 1


def test_no_title_needs_fields(tmp_path):
    code, err = tuc_error(tmp_path, "1.2.3.4|5.6.7.8|\n")
    assert code == 1 and "in.txt:1: the first line is not a title line" in err
    code, err = tuc_error(tmp_path, "sIP|bogus|\n1.2.3.4|x|\n")
    assert code == 1 and "in.txt:1:" in err and "bogus" in err


# ----------------------------------------------------------------------------- values

def test_value_forms():
    text = ("sIP|dIP|sTime|duration|flags|protocol|sensor|class|type\n"
            "10.0.0.1|::ffff:1.2.3.4|2009/02/12T00:00:01|1|AS|tcp|S3|all|out\n"
            "010.000.000.001|2001:db8::1|2009-02-12 00:00:01.5|1.25|2|17|4|all|inweb\n"
            "167772161|::1|02/12/2009 00:00:01.123|0.5|fspa|1|S0|all|in\n"
            "0x0a000001|10.0.0.2|1234396801.25|  3 | . A . S |UDP|S1|all|in\n"
            "10.0.0.1|10.0.0.3|2009/02/12|0|  |6|S1|all|in\n"
            "10.0.0.1|10.0.0.3|2009/02/12T01|0|C|6|S1|all|in\n")
    got = tuc("--column-separator=|", input=text)
    assert list(got["sip"][:, 1] & np.uint64(0xFFFFFFFF)) == [0x0A000001] * 6
    assert list(got["ipv6"]) == [True, True, True, False, False, False]
    assert got["dip"][0, 1] == 0xFFFF01020304 and got["dip"][1, 0] == 0x20010DB800000000
    assert list(got["stime"] - T0) == [1000, 1500, 1123, 1250, 0, 3_600_000]
    assert list(got["duration"]) == [1000, 1250, 500, 3000, 0, 0]
    assert list(got["flags"]) == [0x12, 2, 0x1B, 0x12, 0, 0x80]
    assert list(got["protocol"]) == [6, 17, 1, 17, 6, 6]
    assert list(got["sensor"]) == [3, 4, 0, 1, 1, 1]
    assert list(got["flowtype"]) == [1, 2, 0, 0, 0, 0]


def test_etime_and_duration():
    text = ("sTime|eTime\n2009/02/12T00:00:01.000|2009/02/12T00:00:03.500\n")
    got = tuc(input=text)
    assert got["stime"][0] == T0 + 1000 and got["duration"][0] == 2500
    got = tuc(input="eTime|duration\n2009/02/12T00:00:03.500|2.5\n")
    assert got["stime"][0] == T0 + 1000 and got["duration"][0] == 2500
    # consistent within the precision the text was written with
    got = tuc(input="sTime|duration|eTime\n2009/02/12T00:00:01|1|2009/02/12T00:00:02\n"
                    "2009/02/12T00:00:01.900|0.200|2009/02/12T00:00:02.100\n")
    assert list(got["duration"]) == [1000, 200]


def test_icmp_type_and_code():
    text = ("protocol|dPort|iType|iCode\n1|0|8|0\n58|0|128|3\n6|443|  |  \n1|771|   |   \n")
    got = tuc(input=text)
    assert list(got["dport"]) == [0x0800, 0x8003, 443, 771]


def test_fixed_values():
    got = tuc("--fields=sip", "--no-titles", "--sensor=S3", "--class=all", "--type=outweb",
              "--protocol=udp", "--dport=53", "--sport=1024", "--packets=3", "--bytes=300",
              "--flags-all=SA", "--flags-initial=S", "--flags-session=A", "--attributes=T",
              "--stime=2009/02/12T00:00:05", "--duration=1.5", "--input-index=7",
              "--output-index=9", "--next-hop-ip=10.9.9.9", "--daddress=192.168.0.1",
              "--application=80", input="10.0.0.1\n10.0.0.2\n")
    assert list(got["sensor"]) == [3, 3] and list(got["flowtype"]) == [3, 3]
    assert got["protocol"][0] == 17 and got["dport"][0] == 53 and got["sport"][0] == 1024
    assert got["packets"][0] == 3 and got["bytes"][0] == 300
    assert (got["flags"][0], got["initflags"][0], got["sessflags"][0]) == (0x12, 2, 0x10)
    assert got["attributes"][0] == 0x20 and got["application"][0] == 80
    assert got["stime"][0] == T0 + 5000 and got["duration"][0] == 1500
    assert (got["input"][0], got["output"][0]) == (7, 9)
    assert got["nhip"][0] == 0x0A090909 and got["dip"][1] == 0xC0A80001
    got = tuc("--fields=proto", "--no-titles", "--icmp-type=3", "--icmp-code=1",
              input="1\n6\n")
    assert list(got["dport"]) == [0x0301, 0]
    # a fixed value wins over the column of that field
    got = tuc("--sport=9", input="sPort|dPort\n1|2\n")
    assert got["sport"][0] == 9 and got["dport"][0] == 2
    # packets without bytes: bytes = packets (rwtuc)
    got = tuc(input="packets\n5\n")
    assert got["bytes"][0] == 5


def test_bad_fixed_values(tmp_path):
    for args, what in ((["--sport=70000"], "--sport"), (["--protocol=256"], "--protocol"),
                       (["--saddress=1.2.3"], "--saddress"), (["--stime=yesterday"],
                                                              "--stime"),
                       (["--class=nope", "--type=in"], "--class")):
        code, err = tuc_error(tmp_path, "sIP\n1.2.3.4\n", *args)
        assert code == 1 and what in err, err


# ----------------------------------------------------------------------------- bad lines

HEAD = "sIP|dIP|sPort|protocol|packets|sTime|flags|sensor\n"
GOOD = "10.0.0.1|10.0.0.2|80|6|1|2009/02/12T00:00:01.000|FSA|S1\n"
BAD_LINES = [
    ("10.0.0.1|10.0.0.2|80|6|1|2009/02/12T00:00:01.000|FSA\n", "too few fields"),
    ("10.0.0.1|10.0.0.2|80|6|1|2009/02/12T00:00:01.000|FSA|S1|x\n", "too many fields"),
    ("10.0.0.1|10.0.0.256|80|6|1|2009/02/12T00:00:01.000|FSA|S1\n", "invalid dIP"),
    ("10.0.0.1|10.0.0|80|6|1|2009/02/12T00:00:01.000|FSA|S1\n", "invalid dIP"),
    ("10.0.0.1|fe80::1::2|80|6|1|2009/02/12T00:00:01.000|FSA|S1\n", "invalid dIP"),
    ("10.0.0.1|10.0.0.2|70000|6|1|2009/02/12T00:00:01.000|FSA|S1\n",
     "invalid sPort '70000': larger than 65535"),
    ("10.0.0.1|10.0.0.2|80|256|1|2009/02/12T00:00:01.000|FSA|S1\n",
     "invalid protocol '256'"),
    ("10.0.0.1|10.0.0.2|-80|6|1|2009/02/12T00:00:01.000|FSA|S1\n", "negative"),
    ("10.0.0.1|10.0.0.2|80|6|-1|2009/02/12T00:00:01.000|FSA|S1\n", "negative"),
    ("10.0.0.1|10.0.0.2|80|6|1|2009/02/30T00:00:01.000|FSA|S1\n", "invalid sTime"),
    ("10.0.0.1|10.0.0.2|80|6|1|2009/02/12T25:00:01.000|FSA|S1\n", "invalid sTime"),
    ("10.0.0.1|10.0.0.2|80|6|1|yesterday|FSA|S1\n", "invalid sTime"),
    ("10.0.0.1|10.0.0.2|80|6|1|2009/02/12T00:00:01.000|FSX|S1\n", "invalid flags"),
    ("10.0.0.1|10.0.0.2|80|6|1|2009/02/12T00:00:01.000|300|S1\n", "invalid flags"),
    ("10.0.0.1|10.0.0.2|80|6|1|2009/02/12T00:00:01.000|FSA|S99\n", "unknown sensor"),
    ("10.0.0.1|10.0.0.2|8 0|6|1|2009/02/12T00:00:01.000|FSA|S1\n", "invalid sPort"),
    ("10.0.0.1|10.0.0.2||6|1|2009/02/12T00:00:01.000|FSA|S1\n", "invalid sPort"),
    ("10.0.0.1|10.0.0.2|80|6|99999999999999999999|2009/02/12T00:00:01.000|FSA|S1\n",
     "invalid packets"),
    (b"10.0.0.1|10.0.0.2|80|6|1|2009/02/12T00:00:01.000|FS\xe9|S1\n", "not UTF-8"),
    (b"10.0.0.1|10.0.0.2|80|6|1|2009/02/12T00:00:01.000|FS\0|S1\n", "NUL"),
]


@pytest.mark.parametrize("line,message", BAD_LINES,
                         ids=[str(m) for _, m in BAD_LINES])
def test_bad_line_is_an_error(tmp_path, line, message):
    line = line if isinstance(line, bytes) else line.encode()
    text = (HEAD + GOOD * 3).encode() + line + GOOD.encode()
    code, err = tuc_error(tmp_path, text)
    assert code == 1
    assert err.startswith(f"pyflow-tuc: {tmp_path / 'in.txt'}:5: "), err
    assert message in err, err
    assert err.count("\n") == 1


def test_missing_last_field(tmp_path):
    """With the title line's final separator a line without its last field is an error
    (not blank flags); a line without the final separator is read."""
    got = tuc(input="sPort|flags|\n1|FS|\n2|A\n")
    assert list(got["flags"]) == [3, 16]
    code, err = tuc_error(tmp_path, "sPort|dPort|flags|\n1|2|FS|\n1|2|\n")
    assert code == 1 and "in.txt:3: 2 '|' separators where the title line has 3" in err
    # without a title either reading is allowed: a blank last field is 0
    got = tuc("--fields=sport,dport,flags", "--no-titles", input="1|2|\n3|4|S|\n")
    assert list(got["flags"]) == [0, 2]


def test_time_consistency_errors(tmp_path):
    code, err = tuc_error(tmp_path, "sTime|duration|eTime\n"
                                    "2009/02/12T00:00:01.000|1.000|2009/02/12T00:00:02.000\n"
                                    "2009/02/12T00:00:01.000|1.000|2009/02/12T00:00:03.000\n")
    assert code == 1 and "in.txt:3: sTime + duration is not eTime" in err
    code, err = tuc_error(tmp_path, "sTime|eTime\n"
                                    "2009/02/12T00:00:05.000|2009/02/12T00:00:03.000\n")
    assert code == 1 and "in.txt:2: eTime is before sTime" in err


def test_bad_input_lines_file(tmp_path):
    text = HEAD + GOOD + "".join(line if isinstance(line, str) else "" for line, _ in
                                 BAD_LINES) + GOOD
    src = tmp_path / "in.txt"
    src.write_text(text)
    bad = tmp_path / "bad.txt"
    p = run("pyflow-tuc", f"--site-config-file={CONF}", f"--bad-input-lines={bad}",
            str(src))
    got = read(p.stdout)
    assert len(got["stime"]) == 2
    rejected = bad.read_text().splitlines()
    nbad = sum(isinstance(line, str) for line, _ in BAD_LINES)
    assert len(rejected) == nbad
    assert rejected[0] == f"{src}:3:" + BAD_LINES[0][0].rstrip("\n")
    assert f"could not parse {nbad} lines" in p.stderr.decode()


def test_stop_on_error_and_bad_gzip(tmp_path):
    src = tmp_path / "in.txt"
    src.write_text(HEAD + GOOD + BAD_LINES[5][0] + GOOD)
    bad, out = tmp_path / "bad.txt", tmp_path / "out.pf"
    p = run("pyflow-tuc", f"--site-config-file={CONF}", f"--bad-input-lines={bad}",
            "--stop-on-error", f"--output-path={out}", str(src), check=False)
    assert p.returncode == 1 and "in.txt:3: invalid sPort '70000'" in p.stderr.decode()
    assert not out.exists() and not bad.exists()
    data = bytearray(gzip.compress((HEAD + GOOD * 5000).encode()))
    data[len(data) // 2: len(data) // 2 + 50] = b"x" * 50
    code, err = tuc_error(tmp_path, bytes(data))
    assert code == 1 and "cannot read input" in err and err.count("\n") == 1


def test_blank_lines_and_crlf():
    got = tuc(input="sPort|dPort\r\n\r\n1|2\r\n   \n3|4\r\n")
    assert list(got["sport"]) == [1, 3] and list(got["dport"]) == [2, 4]


def test_output_never_to_a_terminal_nor_over_a_file(tmp_path):
    out = tmp_path / "x.pf"
    out.write_bytes(b"keep")
    p = run("pyflow-tuc", f"--output-path={out}", input=b"sPort\n1\n", check=False)
    assert p.returncode == 1 and out.read_bytes() == b"keep"


# ----------------------------------------------------------------------------- other tools

NFDUMP = """\
ts,te,td,sa,da,sp,dp,pr,flg,fwd,stos,ipkt,ibyt,opkt,obyt,in,out,sas,das,smk,dmk,dtos,dir,nh,\
nhb,svln,dvln,ismc,odmc,idmc,osmc,mpls1,mpls2,mpls3,mpls4,mpls5,mpls6,mpls7,mpls8,mpls9,mpls10,\
cl,sl,al,ra,eng,exid,tr
2018-01-12 15:37:30.447,2018-01-12 15:37:31.000,0.553,147.32.80.119,147.32.82.62,52324,902,\
TCP,......S.,0,0,1,60,0,0,3,4,2852,2852,0,0,0,0,10.0.0.254,0.0.0.0,0,0,00:00:00:00:00:00,\
00:00:00:00:00:00,00:00:00:00:00:00,00:00:00:00:00:00,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,\
0-0-0,0-0-0,0-0-0,0-0-0,    0.000,    0.000,    0.000,147.32.82.62,0/58,1,\
1970-01-01 00:00:00.000
2018-01-12 15:37:32,2018-01-12 15:37:32,0.000,2001:db8::1,2001:db8::2,0,8.0,ICMP6,........,\
0,0,2,128,0,0,0,0,0,0,0,0,0,0,::,::,0,0,00:00:00:00:00:00,00:00:00:00:00:00,\
00:00:00:00:00:00,00:00:00:00:00:00,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,\
0-0-0,    0.000,    0.000,    0.000,147.32.82.62,0/58,1,1970-01-01 00:00:00.000
2018-01-12 15:37:33.001,2018-01-12 15:37:35.001,2.000,147.32.82.62,147.32.80.119,902,52324,\
UDP,.AP.SF,0,0,1000000,4000000000,0,0,0,0,0,0,0,0,0,0,0.0.0.0,0.0.0.0,0,0,00:00:00:00:00:00,\
00:00:00:00:00:00,00:00:00:00:00:00,00:00:00:00:00:00,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,\
0-0-0,0-0-0,0-0-0,0-0-0,    0.000,    0.000,    0.000,147.32.82.62,0/58,1,\
1970-01-01 00:00:00.000

Summary
flows,bytes,packets,avg_bps,avg_pps,avg_bpp
3,4000000188,1000003,58357,140,51
"""


def test_nfdump_csv():
    got = tuc("--preset=nfdump", input=NFDUMP, conf=False)
    assert len(got["stime"]) == 3
    t = 1515771450000  # 2018-01-12 15:37:30 UTC
    assert list(got["stime"] - t) == [447, 2000, 3001]
    assert list(got["duration"]) == [553, 0, 2000]
    assert list(got["protocol"]) == [6, 58, 17]
    assert list(got["flags"]) == [0x02, 0, 0x1B]
    assert list(got["dport"]) == [902, 0x0800, 52324]
    assert list(got["packets"]) == [1, 2, 1000000]
    assert list(got["bytes"]) == [60, 128, 4000000000]
    assert list(got["ipv6"]) == [False, True, False]
    assert (got["input"][0], got["output"][0]) == (3, 4)
    assert got["nhip"][0, 1] & np.uint64(0xFFFFFFFF) == 0x0A0000FE


def test_real_nfdump_export(tmp_path):
    """nfdump 1.7's own -o csv of a real capture, when nfdump is installed."""
    import shutil
    capture = shared("nfdump", "test1-malicious.nfdump")
    if shutil.which("nfdump") is None:
        pytest.skip("nfdump is not installed")
    env = {**os.environ, "TZ": "UTC"}
    text = subprocess.run(["nfdump", "-r", capture, "-o", "csv"], capture_output=True,
                          env=env, check=True).stdout
    got = tuc("--preset=nfdump", input=text, conf=False)
    # nfdump's own summary of the capture: 4593 flows, 4652 packets, 241025 bytes
    assert len(got["stime"]) == 4593
    assert int(got["packets"].sum()) == 4652 and int(got["bytes"].sum()) == 241025


def test_column_map(tmp_path):
    text = "when,from,to,port,what,count\n1234396801,10.0.0.1,10.0.0.2,80,tcp,7\n"
    got = tuc("--input-format=csv", "--column-map=when:stime,from:sip,to:dip,port:dport,"
              "what:protocol,count:packets", input=text, conf=False)
    assert got["stime"][0] == T0 + 1000 and got["dport"][0] == 80
    assert got["protocol"][0] == 6 and got["packets"][0] == 7 and got["bytes"][0] == 7
    code, err = tuc_error(tmp_path, text, "--input-format=csv", "--column-map=nope:sip")
    assert code == 1 and "'nope', which is not in the header" in err
    code, err = tuc_error(tmp_path, text, "--input-format=csv")
    assert code == 1 and "in.txt:1: header" in err and "--column-map" in err


def test_argus_binetflow():
    files = [shared("argus", f) for f in ("test2-malicious.binetflow",
                                         "test4-malicious.binetflow")]
    p = run("pyflow-tuc", "--preset=argus", "--bad-input-lines=stderr", *files)
    got = read(p.stdout)
    rows = sum(sum(1 for _ in open(f)) - 1 for f in files)
    err = p.stderr.decode()
    # the two ARP flows are not IP flows: they are set aside, not made records
    assert err.count(",arp,") == 2 and "could not parse 2 lines" in err
    assert len(got["stime"]) == rows - 2
    icmp = got["protocol"] == 1
    # Argus prints an ICMP flow's type in the low byte of Sport, the code in the high one
    dports = set(got["dport"][icmp].tolist())
    assert {0x0800, 0x0303, 0x0304} <= dports and not got["sport"][icmp].any()
    first = [line.split(",") for line in open(files[0]).read().splitlines()[1:3]]
    assert got["packets"][0] == int(first[0][11]) and got["bytes"][1] == int(first[1][12])
    assert got["stime"][0] == 1554394980325  # 2019/04/04 16:23:00.325010, truncated to ms
    assert got["duration"][0] == 27  # 0.027947 s


def test_marx_import(tmp_path):
    data = shared("marx", "marx.csv.gz")
    rows = gzip.open(data, "rt").read().splitlines()[1:]
    hosts = sorted({line.split(",")[1] for line in rows})
    assert len(hosts) == 9
    conf = tmp_path / "silk.conf"
    conf.write_text("version 2\n" + "".join(f"sensor {i} {h}\n" for i, h in enumerate(hosts))
                    + "class all\n    sensors " + " ".join(hosts)
                    + "\n    type 0 in\nend class\ndefault-class all\n")
    out = tmp_path / "marx.pf"
    run("pyflow-tuc", "--preset=marx", f"--site-config-file={conf}", "--class=all",
        "--type=in", f"--output-path={out}", data)
    got = schema.concat(list(api.read_flows(str(out))))
    assert len(got["stime"]) == 451_581
    sensors, counts = np.unique(got["sensor"], return_counts=True)
    assert dict(zip([hosts[s] for s in sensors], counts.tolist(), strict=True)) == {
        "groucho-eu": 23954, "groucho-norcal": 24566, "groucho-oregon": 94076,
        "groucho-sa": 24316, "groucho-singapore": 78151, "groucho-sydney": 24456,
        "groucho-tokyo": 126189, "groucho-us-east": 31779, "zeppo-norcal": 24094}
    protos, counts = np.unique(got["protocol"], return_counts=True)
    assert dict(zip(protos.tolist(), counts.tolist(), strict=True)) == {
        1: 44811, 6: 327991, 17: 78779}
    icmp = got["protocol"] == 1
    types, counts = np.unique(got["dport"][icmp] >> 8, return_counts=True)
    assert dict(zip(types.tolist(), counts.tolist(), strict=True)) == {
        0: 536, 3: 4251, 5: 127, 8: 38597, 11: 1156, 12: 2, 13: 142}
    assert not (got["dport"][icmp] & 0xFF).any() and not got["sport"][icmp].any()
    assert not got["dip"].any() and not got["bytes"].any() and (got["packets"] == 1).all()
    assert (got["flowtype"] == 0).all() and not got["duration"].any()
    assert got["stime"].min() == 1362347639000  # 2013-03-03 21:53:59
    assert got["sip"][0] == int(rows[0].split(",")[2])


def test_marx_example_script(tmp_path):
    """examples/marx-import.sh on the first 5000 rows of the log (the whole log makes some
    40,000 hourly files: about a minute of pyflow-pack)."""
    rows = gzip.open(shared("marx", "marx.csv.gz"), "rt").read().splitlines()[:5001]
    part = tmp_path / "part.csv.gz"
    part.write_bytes(gzip.compress(("\n".join(rows) + "\n").encode()))
    root = tmp_path / "archive"
    p = subprocess.run(["bash", os.path.join(ROOT, "examples", "marx-import.sh"), str(root),
                        str(part)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    hosts = sorted({r.split(",")[1] for r in rows[1:]})
    assert f"{len(hosts)} sensors in" in p.stdout
    assert "stored 5000 records" in p.stdout
    conf = (root / "silk.conf").read_text()
    assert all(f"sensor {i} {h}\n" in conf for i, h in enumerate(hosts))
    files = [os.path.join(d, f) for d, _, fs in os.walk(root / "in") for f in fs]
    assert files and all(os.path.basename(f).startswith("allin-") for f in files)
    got = schema.concat([b for f in files for b in api.read_flows(f)])
    assert len(got["stime"]) == 5000
