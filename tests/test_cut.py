"""pyflow-cut against rwcut's layouts (examples from the SiLK reference, demo4 records)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT

from flowtools import api, schema

CONF = os.path.join(ROOT, "tests", "data", "twoway.conf")
T0 = 1234396800000  # 2009/02/12T00:00:00Z


def ip(s):
    a, b, c, d = (int(x) for x in s.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


@pytest.fixture(scope="module")
def demo4(tmp_path_factory):
    """The four records of the reference's demo4.rw."""
    b = schema.make_batch(
        4, sip=[ip("10.0.0.1"), ip("10.0.0.1"), ip("10.0.0.2"), ip("192.168.1.10")],
        dip=[ip("192.168.1.10"), ip("192.168.1.11"), ip("192.168.1.10"), ip("10.0.0.3")],
        sport=[51234, 51235, 53, 12345], dport=[80, 443, 53000, 22], protocol=[6, 6, 17, 6],
        packets=[10, 5, 1, 20], bytes=[1500, 800, 120, 4000], flags=[0x1B, 0x12, 0, 0x1B],
        stime=[T0 + 1000, T0 + 2250, T0 + 60000, T0 + 120000],
        duration=[1500, 750, 0, 10000], sensor=[0, 0, 0, 1], flowtype=[1, 1, 1, 0])
    path = str(tmp_path_factory.mktemp("cut") / "demo4.pf")
    api.write_flows(path, [b])
    return path


def cut(*args, input=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SILK_", "PYFLOW_"))}
    p = subprocess.run([sys.executable, os.path.join(ROOT, "bin", "pyflow-cut"),
                        f"--site-config-file={CONF}", *args], capture_output=True, env=env,
                       input=input)
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout.decode()


def lines(block):
    return [ln for ln in block.strip("\n").split("\n")]


def test_many_fields(demo4):
    out = cut("--fields=sip,dip,sport,dport,proto,packets,bytes,flags,stime,dur,etime,"
              "sensor,class,type,in,out,nhip", demo4)
    assert out.splitlines()[0] == (
        "                                    sIP|                                    dIP|"
        "sPort|dPort|pro|   packets|     bytes|   flags|                  sTime| duration|"
        "                  eTime|sen|cla|   type|   in|  out|"
        "                                   nhIP|")
    assert out.splitlines()[1] == (
        "                               10.0.0.1|                           192.168.1.10|"
        "51234|   80|  6|        10|      1500|FS PA   |2009/02/12T00:00:01.000|    1.500|"
        "2009/02/12T00:00:02.500| S0|all|    out|    0|    0|"
        "                                0.0.0.0|")
    assert out.splitlines()[4].endswith(
        "|12345|   22|  6|        20|      4000|FS PA   |2009/02/12T00:02:00.000|   10.000|"
        "2009/02/12T00:02:10.000| S1|all|     in|    0|    0|"
        "                                0.0.0.0|")


def test_ignore_policy_widths(demo4):
    assert lines(cut("--ipv6-policy=ignore", "--fields=1-5,stime", demo4)) == [
        "            sIP|            dIP|sPort|dPort|pro|                  sTime|",
        "       10.0.0.1|   192.168.1.10|51234|   80|  6|2009/02/12T00:00:01.000|",
        "       10.0.0.1|   192.168.1.11|51235|  443|  6|2009/02/12T00:00:02.250|",
        "       10.0.0.2|   192.168.1.10|   53|53000| 17|2009/02/12T00:01:00.000|",
        "   192.168.1.10|       10.0.0.3|12345|   22|  6|2009/02/12T00:02:00.000|"]


def test_epoch_and_decimal(demo4):
    out = lines(cut("--fields=sip,dip,stime,etime,dur", "--timestamp-format=epoch",
                    "--ip-format=decimal", demo4))
    assert out[0].endswith("|         sTime|         eTime| duration|")
    assert out[1] == ("                              167772161|"
                      "                             3232235786|"
                      "1234396801.000|1234396802.500|    1.500|")


def test_separator_iso_no_final(demo4):
    assert lines(cut("--fields=sip,dport,stime", "--timestamp-format=iso",
                     "--no-final-delimiter", "--column-separator=,", demo4)) == [
        "                                    sIP,dPort,                  sTime",
        "                               10.0.0.1,   80,2009-02-12 00:00:01.000",
        "                               10.0.0.1,  443,2009-02-12 00:00:02.250",
        "                               10.0.0.2,53000,2009-02-12 00:01:00.000",
        "                           192.168.1.10,   22,2009-02-12 00:02:00.000"]


def test_no_titles_no_columns(demo4):
    assert cut("--fields=sip,sport,dport", "--no-titles", "--no-columns", demo4) == (
        "10.0.0.1|51234|80|\n10.0.0.1|51235|443|\n10.0.0.2|53|53000|\n192.168.1.10|12345|22|\n")
    assert cut("--fields=sip,sport", "--delimited=,", "--no-titles", demo4).startswith(
        "10.0.0.1,51234\n")
    # without columns the flags lose their blank positions, as in rwtuc's input
    assert cut("--fields=flags,sport", "--delimited", "--no-titles", demo4).splitlines() == [
        "FSPA|51234", "SA|51235", "|53", "FSPA|12345"]


def test_zero_padded_force_ipv6(demo4):
    assert lines(cut("--fields=sip", "--ip-format=zero-padded,force-ipv6", "--num-recs=1",
                     demo4)) == ["                                    sIP|",
                                 "0000:0000:0000:0000:0000:ffff:0a00:0001|"]


def test_icmp_and_flag_fields(demo4):
    assert lines(cut("--fields=sip,proto,icmptypecode,initialflags,sessionflags,attributes,"
                     "application", "--num-recs=2", demo4)) == [
        "                                    sIP|pro|iTy|iCo|initialF|sessionF|attribut|appli|",
        "                               10.0.0.1|  6|   |   |        |        |        |    0|",
        "                               10.0.0.1|  6|   |   |        |        |        |    0|"]


def test_record_windows(demo4):
    out = lines(cut("--fields=dport", "--delimited", "--no-titles", "--start-rec-num=2",
                    "--end-rec-num=3", demo4))
    assert out == ["443", "53000"]
    out = lines(cut("--fields=sport", "--no-titles", "--tail-recs=2", demo4))
    assert out == ["   53|", "12345|"]
    out = lines(cut("--fields=sport", "--no-titles", "--num-recs=3", "--start-rec-num=2",
                    demo4))
    assert out == ["51235|", "   53|", "12345|"]


def test_dry_run_and_help_fields(demo4):
    assert cut("--fields=sport,dport", "--dry-run", demo4) == "sPort|dPort|\n"
    assert "sessionFlags - " in cut("--help-fields")


def test_csv_and_json(demo4):
    out = cut("--fields=sip,sport,flags,stime,sensor,iType", "--output-format=csv", demo4)
    assert out.splitlines()[:2] == ["sIP,sPort,flags,sTime,sensor,iType",
                                    "10.0.0.1,51234,FSPA,2009/02/12T00:00:01.000,S0,"]
    rows = [json.loads(x) for x in cut("--fields=sip,sport,flags,dur,iType",
                                       "--output-format=json", demo4).splitlines()]
    assert rows[0] == {"sIP": "10.0.0.1", "sPort": 51234, "flags": "FSPA", "duration": 1.5,
                       "iType": None}


def test_ipv6_records_and_policies(tmp_path):
    col = np.array([[0x20010DB800C000A8, 0x6F00C9], [0, 0xFFFF0A000001]], dtype=np.uint64)
    dcol = np.array([[0, 0xFFFF0A000002], [0, 0xFFFF0A000003]], dtype=np.uint64)
    b = schema.make_batch(2, v6=True, sip=col, dip=dcol, ipv6=[True, False],
                          protocol=[17, 6], stime=[T0, T0])
    path = str(tmp_path / "v6.pf")
    api.write_flows(path, [b])
    out = lines(cut("--fields=sip,dip", "--no-titles", path))
    assert out[0] == " " * 18 + "2001:db8:c0:a8::6f:c9|" + " " * 24 + "::ffff:10.0.0.2|"
    assert out[1] == " " * 31 + "10.0.0.1|" + " " * 31 + "10.0.0.3|"
    assert lines(cut("--fields=sip", "--no-titles", "--delimited", "--ipv6-policy=ignore",
                     path)) == ["10.0.0.1"]
    assert lines(cut("--fields=sip", "--no-titles", "--delimited", "--ipv6-policy=force",
                     path)) == ["2001:db8:c0:a8::6f:c9", "::ffff:10.0.0.1"]
    assert lines(cut("--fields=sip", "--no-titles", "--delimited", "--ipv6-policy=only",
                     path)) == ["2001:db8:c0:a8::6f:c9"]


SILK_FILES = ["FT_RWGENERIC-v5-c1-L.dat", "FT_RWIPV6-v2-c3-L.dat",
              "FT_RWIPV6ROUTING-v1-c1-B.dat", "FT_RWIPV6ROUTING-v3-c2-L.dat"]


@pytest.mark.parametrize("name", SILK_FILES)
@pytest.mark.parametrize("all_fields", [False, True])
def test_silk_files_print_exactly_as_rwcut(name, all_fields):
    import hashlib

    from conftest import shared
    path = shared("silk", name)
    expected_dir = shared("silk", "expected")
    conf = os.path.join(os.path.dirname(path), "silk.conf")
    args = [f"--site-config-file={conf}"] + (["--all-fields"] if all_fields else [])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SILK_", "PYFLOW_"))}
    p = subprocess.run([sys.executable, os.path.join(ROOT, "bin", "pyflow-cut"), *args, path],
                       capture_output=True, env=env, check=True)
    golden = "rwcut-all-fields-first-300.txt" if all_fields else "rwcut-first-300.txt"
    with open(os.path.join(expected_dir, golden), "rb") as f:
        first = f.read().splitlines()
    got = p.stdout.splitlines()
    assert got[: len(first)] == first  # readable: a failure shows the differing lines
    sums = dict(line.split("  ", 1)[::-1] for line in
                open(os.path.join(expected_dir, "MD5SUMS")).read().splitlines())
    key = f"rwcut {'--all-fields ' if all_fields else ''}{name}"
    assert hashlib.md5(p.stdout).hexdigest() == sums[key]


def test_wide_counters_in_every_layout(tmp_path):
    b = schema.make_batch(3, bytes=[5, 123_456_789, 2**40], packets=[70_000, 1, 0],
                          stime=[T0, T0, T0])
    path = str(tmp_path / "wide.pf")
    api.write_flows(path, [b])
    assert lines(cut("--fields=bytes,packets", "--delimited", "--no-titles", path)) == [
        "5|70000", "123456789|1", "1099511627776|0"]
    # as rwcut's printf widths: only the line with the wide value is wider
    assert lines(cut("--fields=bytes,packets", "--no-titles", path)) == [
        "         5|     70000|", " 123456789|         1|", "1099511627776|         0|"]
