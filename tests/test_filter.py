"""pyflow-filter: switches against a plain reference, pass/fail partitions, SiLK's own
statistics tests, archive selection and block skipping, bad input."""

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, SHARED, random_batch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowtools import dates, filtering, schema
from flowtools.errors import FlowError
from flowtools.flowfile import FlowWriter

SILK_TESTS = os.path.join(SHARED, "silk-tests")
TWOWAY = os.path.join(ROOT, "tests", "data", "twoway.conf")
FLAGS = "FSRPAUEC"
HOUR = 1_700_000_000_000 - 1_700_000_000_000 % 3_600_000


def tool(name):
    return [sys.executable, os.path.join(ROOT, "bin", name)]


def run(args, **kw):
    env = dict(os.environ, SILK_CONFIG_FILE=TWOWAY)
    env.pop("SILK_CLOBBER", None)
    return subprocess.run(args, capture_output=True, env=env, **kw)


# --- a plain reference: one record at a time ----------------------------------------

def _in_list(value, items):
    return any(lo <= value <= hi for lo, hi in items)


def _letters(text):
    value = 0
    for c in text:
        value |= 1 << FLAGS.index(c)
    return value


def reference(switches, rec):
    """Whether one record (a dict of Python values) passes every switch."""
    for name, arg in switches:
        if name in ("sport", "dport", "protocol", "application"):
            ok = _in_list(rec[name], arg)
        elif name == "aport":
            ok = _in_list(rec["sport"], arg) or _in_list(rec["dport"], arg)
        elif name in ("icmp-type", "icmp-code"):
            v = rec["dport"] >> 8 if name == "icmp-type" else rec["dport"] & 255
            ok = rec["protocol"] in (1, 58) and _in_list(v, arg)
        elif name in ("bytes", "packets"):
            ok = arg[0] <= rec[name] <= arg[1]
        elif name == "duration":
            ok = int(arg[0] * 1000) <= rec["duration"] <= int(arg[1] * 1000)
        elif name in ("flags-all", "flags-initial", "flags-session"):
            col = {"flags-all": "flags", "flags-initial": "initflags",
                   "flags-session": "sessflags"}[name]
            ok = any(rec[col] & _letters(m) == _letters(h) for h, m in arg)
        elif name == "tcp-flags":
            ok = bool(rec["flags"] & _letters(arg))
        elif name == "stime":
            ok = arg[0] <= rec["stime"] <= arg[1]
        elif name == "etime":
            ok = arg[0] <= rec["stime"] + rec["duration"] <= arg[1]
        elif name == "active-time":
            ok = rec["stime"] <= arg[1] and rec["stime"] + rec["duration"] >= arg[0]
        elif name in ("input-index", "output-index"):
            ok = _in_list(rec["input" if name == "input-index" else "output"], arg)
        elif name == "any-index":
            ok = _in_list(rec["input"], arg) or _in_list(rec["output"], arg)
        elif name == "bytes-per-packet":
            bpp = rec["bytes"] / rec["packets"] if rec["packets"] else float("inf")
            ok = arg[0] <= bpp <= arg[1]
        elif name == "ip-version":
            ok = (6 if rec["ipv6"] else 4) in arg
        else:
            raise AssertionError(name)
        if not ok:
            return False
    return True


def _list_text(items):
    return ",".join(f"{lo}" if lo == hi else f"{lo}-{hi}" for lo, hi in items)


def _window_text(lo, hi):
    return f"{dates.format_ms(lo)}-{dates.format_ms(hi)}"


def int_list(limit):
    pair = st.tuples(st.integers(0, limit), st.integers(0, limit)).map(sorted).map(tuple)
    return st.lists(pair, min_size=1, max_size=3)


high_mask = st.lists(st.tuples(st.text(FLAGS, max_size=3), st.text(FLAGS, min_size=1,
                                                                    max_size=4))
                     .map(lambda hm: ("".join(sorted(set(hm[0]) & set(hm[1]))), hm[1])),
                     min_size=1, max_size=2)
window = st.tuples(st.integers(HOUR - 1000, HOUR + 3_700_000),
                   st.integers(0, 2_000_000)).map(lambda t: (t[0], t[0] + t[1]))

SWITCHES = {
    "sport": int_list(65535), "dport": int_list(65535), "aport": int_list(65535),
    "protocol": int_list(255), "application": int_list(65535),
    "icmp-type": int_list(255), "icmp-code": int_list(255),
    "bytes": st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)).map(sorted),
    "packets": st.tuples(st.integers(0, 1000), st.integers(0, 1000)).map(sorted),
    "duration": st.tuples(st.integers(0, 100), st.integers(0, 100)).map(sorted),
    "flags-all": high_mask, "flags-initial": high_mask, "flags-session": high_mask,
    "tcp-flags": st.text(FLAGS, min_size=1, max_size=3),
    "stime": window, "etime": window, "active-time": window,
    "input-index": int_list(65535), "output-index": int_list(65535),
    "any-index": int_list(65535),
    "bytes-per-packet": st.tuples(st.integers(0, 3000), st.integers(0, 3000)).map(sorted),
    "ip-version": st.sampled_from([{4}, {6}, {4, 6}]),
}


def switch_text(name, arg):
    if name in ("bytes", "packets", "duration", "bytes-per-packet"):
        return f"{arg[0]}-{arg[1]}"
    if name in ("flags-all", "flags-initial", "flags-session"):
        return ",".join(f"{h}/{m}" for h, m in arg)
    if name == "tcp-flags":
        return arg
    if name in ("stime", "etime", "active-time"):
        return _window_text(*arg)
    if name == "ip-version":
        return ",".join(str(v) for v in sorted(arg))
    return _list_text(arg)


def records(batch):
    n = schema.nrecords(batch)
    out = []
    for i in range(n):
        rec = {k: int(v[i]) for k, v in batch.items() if v.ndim == 1 and k != "ipv6"}
        rec["ipv6"] = bool(batch["ipv6"][i]) if "ipv6" in batch else False
        out.append(rec)
    return out


def small_batch(rng, n, v6):
    b = random_batch(rng, n, v6=v6)
    # narrow the values so that switches hit often
    b["sport"] = rng.choice([22, 25, 53, 80, 443, 3389, 65535], n).astype(np.uint16)
    b["dport"] = np.where(rng.random(n) < 0.3, rng.integers(0, 65536, n),
                          rng.choice([0, 25, 771, 2048, 445], n)).astype(np.uint16)
    b["protocol"] = rng.choice([1, 6, 17, 58], n).astype(np.uint8)
    b["input"] = rng.integers(0, 70000, n).astype(np.uint32)
    b["output"] = rng.integers(0, 70000, n).astype(np.uint32)
    b["packets"][:3] = 0
    return b


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(sorted(SWITCHES)), min_size=1, max_size=4, unique=True)
       .flatmap(lambda names: st.tuples(*[st.tuples(st.just(n), SWITCHES[n])
                                          for n in names])),
       st.integers(0, 2**32 - 1), st.booleans())
def test_switches_agree_with_a_plain_reference(switches, seed, v6):
    rng = np.random.default_rng(seed)
    batch = small_batch(rng, 200, v6)
    values = {name: [switch_text(name, arg)] for name, arg in switches}
    predicate = filtering.compile_switches(values)
    mask = predicate.mask(batch)
    want = [reference(switches, rec) for rec in records(batch)]
    assert mask.tolist() == want
    # block skipping never drops a block holding a passing record
    from flowtools.flowfile import _stats
    if any(want):
        assert predicate.may_match(_stats(batch))


def test_single_flags_join_flags_all_as_one_more_pair():
    rng = np.random.default_rng(3)
    batch = small_batch(rng, 500, False)
    p = filtering.compile_switches({"syn-flag": ["1"], "ack-flag": ["0"],
                                    "flags-all": ["F/F"]})
    f = batch["flags"]
    want = ((f & 0x12) == 0x02) | ((f & 1) == 1)
    assert p.mask(batch).tolist() == want.tolist()


@pytest.mark.parametrize("values, message", [
    ({"sport": ["70000"]}, "--sport"),
    ({"sport": ["5-3"]}, "reversed"),
    ({"protocol": ["a"]}, "--protocol"),
    ({"protocol": ["1,,2"]}, "empty"),
    ({"flags-all": ["S"]}, "'/'"),
    ({"flags-all": ["SA/S"]}, "subset"),
    ({"flags-all": ["X/X"]}, "unexpected character"),
    ({"bytes": ["1-x"]}, "--bytes"),
    ({"duration": ["nan"]}, "--duration"),
    ({"stime": ["2009/13/01"]}, "--stime"),
    ({"stime": ["2009/02/02-2009/02/01"]}, "before"),
    ({"ip-version": ["5"]}, "--ip-version"),
    ({"syn-flag": ["2"]}, "--syn-flag"),
    ({"sport": ["1", "2"]}, "multiple"),
])
def test_malformed_values_name_the_switch(values, message):
    with pytest.raises(FlowError, match=message):
        filtering.compile_switches(values)


# --- the tool ---------------------------------------------------------------------------

@pytest.fixture
def flows(tmp_path):
    rng = np.random.default_rng(11)
    path = tmp_path / "in.pf"
    batches = [small_batch(rng, 3000, False), small_batch(rng, 2000, True)]
    with open(path, "wb") as f:
        w = FlowWriter(f, block_records=1000)
        for b in batches:
            w.write(b)
        w.close()
    return path, batches


def read_all(path):
    from flowtools import api
    batches = [schema.to_v6(b) for b in api.read_flows(str(path))]
    return schema.concat(batches) if batches else schema.empty(True)


def test_pass_and_fail_partition_the_input(tmp_path, flows):
    path, batches = flows
    p = run(tool("pyflow-filter") + ["--proto=6,17", "--dport=25,445", f"--pass={tmp_path}/p",
                                     f"--fail={tmp_path}/f", "--print-statistics",
                                     str(path)])
    assert p.returncode == 0, p.stderr
    passed, failed = read_all(tmp_path / "p"), read_all(tmp_path / "f")
    allrec = schema.concat([schema.to_v6(b) for b in batches])
    m = np.isin(allrec["protocol"], [6, 17]) & np.isin(allrec["dport"], [25, 445])
    assert schema.nrecords(passed) == m.sum()
    assert schema.nrecords(failed) == (~m).sum()
    np.testing.assert_array_equal(schema.to_v6(passed)["stime"], allrec["stime"][m])
    np.testing.assert_array_equal(schema.to_v6(failed)["stime"], allrec["stime"][~m])
    assert p.stderr.decode() == (f"Files     1.  Read       5000.  Pass {m.sum():10d}. "
                                 f"Fail  {(~m).sum():10d}.\n")


def test_max_pass_stops_reading(tmp_path, flows):
    path, _ = flows
    p = run(tool("pyflow-filter") + ["--proto=6", "--max-pass=10", "--pass=stdout",
                                     "--print-stat=" + str(tmp_path / "s"), str(path)])
    assert p.returncode == 0, p.stderr
    out = tmp_path / "o"
    out.write_bytes(p.stdout)
    got = read_all(out)
    assert schema.nrecords(got) == 10
    stats = (tmp_path / "s").read_text()
    read = int(stats.split("Read")[1].split(".")[0])
    allrec = read_all(path)
    # reading stops at the 10th passing record, as rwfilter does
    assert read == np.flatnonzero(allrec["protocol"] == 6)[9] + 1


def test_pipes_compose(tmp_path, flows):
    path, _ = flows
    a = subprocess.Popen(tool("pyflow-filter") + ["--proto=6", "--pass=stdout", str(path)],
                         stdout=subprocess.PIPE)
    b = run(tool("pyflow-filter") + ["--input-pipe=stdin", "--dport=25",
                                     "--print-statistics=stdout"], stdin=a.stdout)
    a.wait()
    allrec = read_all(path)
    want = ((allrec["protocol"] == 6) & (allrec["dport"] == 25)).sum()
    assert b.returncode == 0, b.stderr
    assert f"Pass {want:10d}." in b.stdout.decode()


@pytest.mark.parametrize("args, message", [
    (["--proto=6"], "no output"),
    (["--pass=stdout"], "partitioning rules"),
    (["--print-statistics"], "partitioning rules"),
    (["--proto=6", "--pass=stdout", "--fail=-"], "already allocated"),
    (["--proto=6", "--pass=stderr"], "standard error"),
    (["--proto=6", "--pass=stdout", "--start-date=2009/02/12"], "start-date"),
    (["--proto=6", "--pass=stdout", "--sipset=/nonexistent.set"], "--sipset"),
    (["--proto=6", "--pass=stdout", "--tuple-fields=sip"], "--tuple-file"),
    (["--proto=6,x", "--pass=stdout"], "--protocol"),
    (["--input-pipe=/dev/null", "--all=/dev/null"], "named pipe"),
])
def test_bad_usage_is_one_line_and_no_output(tmp_path, flows, args, message):
    path, _ = flows
    target = tmp_path / "out.pf"
    argv = [a.replace("stdout", str(target)) if a == "--pass=stdout" and "-" in args
            else a for a in args]
    p = run(tool("pyflow-filter") + argv + ([] if "--input-pipe" in " ".join(args)
                                            else [str(path)]), stdin=subprocess.DEVNULL)
    assert p.returncode == 1
    err = p.stderr.decode()
    assert err.startswith("pyflow-filter: ") and err.count("\n") == 1, err
    assert message in err
    assert not target.exists()


def test_corrupt_input_leaves_no_output(tmp_path, flows):
    path, _ = flows
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "bad.pf"
    bad.write_bytes(bytes(data))
    out = tmp_path / "p.pf"
    p = run(tool("pyflow-filter") + ["--proto=0-", f"--pass={out}", str(bad)])
    assert p.returncode == 1
    assert p.stderr.decode().startswith("pyflow-filter: ")
    assert not out.exists() and not list(tmp_path.glob(".p.pf*"))


# --- the archive ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("archive")
    p = run(tool("pyflow-gen") + [f"--data-rootdir={root}", "--flows=60000", "--seed=4",
                                  "--start-date=2024/03/01", "--hours=6",
                                  "--sensors=S0,S1"])
    assert p.returncode == 0, p.stderr
    return root


def test_archive_selection_by_hour_and_type(archive):
    base = ["--data-rootdir", str(archive), "--print-statistics=stdout"]
    p = run(tool("pyflow-filter") + base + ["--start-date=2024/03/01:02",
                                            "--end-date=2024/03/01:03", "--type=all",
                                            "--proto=0-"])
    assert p.returncode == 0, p.stderr
    from flowtools import api
    files = api.archive_files(str(archive), "2024/03/01:02", "2024/03/01:03", types=["all"])
    n = sum(schema.nrecords(b) for f in files for b in api.read_flows(f))
    assert p.stdout.decode() == (f"Files {len(files):5d}.  Read {n:10d}.  Pass {n:10d}. "
                                 f"Fail  {0:10d}.\n")


def test_class_type_partition_files_as_the_archive_selects(archive):
    """--type with input files tests the records; from the archive it selects files."""
    from flowtools import api
    files = api.archive_files(str(archive), "2024/03/01", None, types=["all"])
    listing = "\n".join(files) + "\n"
    a = run(tool("pyflow-filter") + ["--xargs", "--type=in,inweb", "--sensors=S1",
                                     "--print-statistics=stdout"], input=listing.encode())
    b = run(tool("pyflow-filter") + ["--data-rootdir", str(archive), "--start-date=2024/03/01",
                                     "--type=in,inweb", "--sensors=S1", "--proto=0-",
                                     "--print-statistics=stdout"])
    assert a.returncode == 0 and b.returncode == 0, (a.stderr, b.stderr)
    pa = int(a.stdout.split(b"Pass")[1].split(b".")[0])
    pb = int(b.stdout.split(b"Pass")[1].split(b".")[0])
    assert pa == pb > 0


def test_blocks_that_cannot_match_are_not_decoded(flows, monkeypatch):
    from flowtools import flowfile, passfail
    path, batches = flows
    decoded = []
    real = flowfile._decode
    monkeypatch.setattr(flowfile, "_decode",
                        lambda block, cols: decoded.append(cols) or real(block, cols))
    first = batches[0]["stime"].min()
    p = filtering.compile_switches({"stime": [f"{dates.format_ms(first)}-"
                                              f"{dates.format_ms(first)}"]})
    judge = passfail.Judge(p)
    from flowtools import io
    out = list(passfail.judged_blocks([io.open_flows(str(path))], judge, threads=1))
    assert len(out) == 5
    assert sum(j.mask is False for _, j in out) >= 1  # skipped by its statistics
    assert all(cols == ["stime"] for cols in decoded)   # only the column tested


def test_missing_files_and_empty_selection(tmp_path):
    root = tmp_path / "empty"
    root.mkdir()
    p = run(tool("pyflow-filter") + [f"--data-rootdir={root}", "--start-date=2009/02/12:12",
                                     "--type=in", "--sensors=S4", "--all=/dev/null"])
    assert p.returncode == 0
    assert b"warning" in p.stderr


# --- SiLK's own tests (src/rwfilter/tests), where the outputs are text ------------------

need_silk = pytest.mark.skipif(not os.path.exists(os.path.join(SILK_TESTS, "data.rwf")),
                               reason="needs ../shared/data/silk-tests")

VOLUME_17 = """\
     |              Recs|           Packets|               Bytes|     Files|
Total|            501876|         144556974|        120571390518|         1|
 Pass|            155528|            155528|            24500079|          |
 Fail|            346348|         144401446|        120546890439|          |
"""


@need_silk
@pytest.mark.parametrize("name", ["data.rwf", "data-v6.rwf"])
def test_silk_print_volume(name):
    p = run(tool("pyflow-filter") + ["--proto=17", "--print-volume-statistics=stdout",
                                     os.path.join(SILK_TESTS, name)])
    assert p.stdout.decode() == VOLUME_17
    assert hashlib.md5(p.stdout).hexdigest() == "5360ad5a52678d4936e5a83822e86b1a"


def _silk_layout(tmp_path):
    """SiLK's test layout, so that file names print as in its expected outputs."""
    (tmp_path / "tests").mkdir()
    os.symlink(os.path.join(SILK_TESTS, "data.rwf"), tmp_path / "tests" / "data.rwf")
    cwd = tmp_path / "src" / "rwfilter"
    cwd.mkdir(parents=True)
    return cwd


@need_silk
def test_silk_print_stats_file(tmp_path):
    cwd = _silk_layout(tmp_path)
    p = run(tool("pyflow-filter") + ["--proto=17", "--print-statistics", "--print-filenames",
                                     "--pass=/dev/null", "../../tests/data.rwf"], cwd=cwd)
    out = p.stdout + p.stderr
    assert out == (b"../../tests/data.rwf\n"
                   b"Files     1.  Read     501876.  Pass     155528. Fail      346348.\n")
    assert hashlib.md5(out).hexdigest() == "52f4ec7de9b7047cdf0f112f66919edd"


@need_silk
def test_silk_max_pass_fail(tmp_path):
    data = os.path.join(SILK_TESTS, "data.rwf")
    p = run(tool("pyflow-filter") + ["--proto=17", "--max-pass=100", "--max-fail=200",
                                     f"--pass={tmp_path}/p", f"--fail={tmp_path}/f", data])
    assert p.returncode == 0, p.stderr
    cut = run(tool("pyflow-cut") + ["--fields=1-10", "--ipv6-policy=ignore",
                                    f"{tmp_path}/p", f"{tmp_path}/f"])
    lines = cut.stdout.decode().splitlines()
    assert len(lines) == 301  # one title line, 100 + 200 records
    assert hashlib.md5(cut.stdout).hexdigest() == "fc0690bbd0932b2d445222f074f02d15"


@need_silk
def test_silk_fglob_print_missing(tmp_path):
    cwd = _silk_layout(tmp_path)
    p = run(tool("pyflow-filter") + ["--data-rootdir=.", "--print-missing",
                                     "--start-date=2009/02/12:12", "--end-date=2009/02/12:14",
                                     "--sensors=S4,S6,S7,S8,S10", "--type=in,outweb",
                                     "--all=/dev/null"], cwd=cwd)
    out = p.stdout + p.stderr
    assert out.splitlines()[0] == b"Missing ./in/2009/02/12/in-S4_20090212.12"
    assert len(out.splitlines()) == 30
    assert hashlib.md5(out).hexdigest() == "388ee36e337d4aa64d7ed1d8376d34bc"


@need_silk
def test_silk_counts_match_numpy(tmp_path):
    """Switches over SiLK's data.rwf agree with numpy over the same records."""
    data = os.path.join(SILK_TESTS, "data.rwf")
    b = read_all(data)
    cases = {
        "--dport=25": b["dport"] == 25,
        "--flags-init=S/SA": (b["initflags"] & 0x12) == 0x02,
        "--bytes-per-packet=39-60": (b["bytes"] / b["packets"] >= 39)
        & (b["bytes"] / b["packets"] <= 60),
        "--type=in": b["flowtype"] == 0,
    }
    for arg, want in cases.items():
        p = run(tool("pyflow-filter") + [arg, "--print-statistics=stdout", data])
        assert f"Pass {want.sum():10d}." in p.stdout.decode(), (arg, p.stderr)


# SiLK's address tests come in pairs: data-v6.rwf holds data.rwf's flows with w.x.y.z
# written as 2001:db8:w:x::y:z, so each IPv6 form must pass exactly what its IPv4 twin does.
ADDRESS_TWINS = [
    ("--any-address=192.168.192-255.x", "--any-address=2001:db8:c0:a8::x:c1-ff,c0:x", 461017),
    ("--any-cidr=192.168.192.0/18",
     "--any-cidr=2001:db8:c0:a8::c0:0/107,2001:db8:c0:a8::e0:0/107", 461017),
    ("--not-any-address=192.168.255,192-254.x",
     "--not-any-address=2001:db8:c0:a8:x:x:c0-ff:x", 40859),
    ("--not-saddress=10.252-255.0-255.0,1-100,102-255,101",
     "--not-saddress=x:x:a:fc-ff::0-ffff:0,1-fab,fad-ffff,fac", 476846),
    ("--not-scidr=10.254.0.0/16,10.252.0.0/16,10.255.0.0/16,10.253.0.0/16",
     "--not-scidr=2001:db8:a:fc::/62", 476846),
    ("--saddress=10.252-255.x.x", "--saddress=2001:db8:a:fc-ff::x:x", 25030),
    ("--scidr=10.252.0.0/15,10.254.0.0/15",
     "--scidr=2001:db8:a:fc::/63,2001:db8:a:fe::/63", 25030),
    ("--expr=src net 10.252.0.0/14", "--expr=src net 2001:db8:a:fc::/62", 25030),
]


@need_silk
@pytest.mark.parametrize("v4, v6, passed", ADDRESS_TWINS)
def test_silk_address_twins(v4, v6, passed):
    outs = []
    for arg, name in ((v4, "data.rwf"), (v6, "data-v6.rwf")):
        p = run(tool("pyflow-filter") + [arg, "--print-statistics=stdout",
                                         os.path.join(SILK_TESTS, name)])
        assert p.returncode == 0, p.stderr
        outs.append(p.stdout.decode())
    assert outs[0] == outs[1]
    assert f"Pass {passed:10d}." in outs[0]


def test_parallel_and_serial_runs_write_the_same(tmp_path, archive):
    from flowtools import api
    files = api.archive_files(str(archive), "2024/03/01", None, types=["all"])
    listing = ("\n".join(files) + "\n").encode()
    outs = []
    for threads in ("1", "2"):
        d = tmp_path / threads
        d.mkdir()
        p = run(tool("pyflow-filter") + ["--xargs", f"--threads={threads}", "--proto=6",
                                         f"--pass={d}/p", f"--fail={d}/f", f"--all={d}/a"],
                input=listing)
        assert p.returncode == 0, p.stderr
        outs.append([read_all(d / k) for k in "pfa"])
    for a, b in zip(*outs, strict=True):
        assert set(a) == set(b)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    assert schema.nrecords(outs[0][0]) + schema.nrecords(outs[0][1]) == \
        schema.nrecords(outs[0][2])


@pytest.mark.parametrize("threads", ["1", "2"])
def test_blocks_that_go_whole_are_copied_undecoded(tmp_path, archive, threads):
    """A block whose records all pass (or all fail) goes to the outputs as it was stored:
    the same records, in the same blocks; a compression change re-encodes instead."""
    from flowtools import api, io
    files = api.archive_files(str(archive), "2024/03/01", None, types=["all"])
    listing = ("\n".join(files) + "\n").encode()
    def blocks(path):
        n = 0
        for pending in io.open_flows(str(path)).blocks():
            pending.skip()
            n += 1
        return n
    blocks_in = sum(blocks(f) for f in files)
    for opts, kind in ((["--proto=0-"], "pass"), (["--scidr=255.255.255.255"], "fail")):
        out = tmp_path / f"{kind}{threads}.pf"
        p = run(tool("pyflow-filter") + ["--xargs", f"--threads={threads}", *opts,
                                         f"--{kind}={out}"], input=listing)
        assert p.returncode == 0, p.stderr
        got = read_all(out)
        want = schema.concat([schema.to_v6(b) for f in files for b in api.read_flows(f)])
        for k in want:
            np.testing.assert_array_equal(got[k], want[k], err_msg=k)
        assert blocks(out) == blocks_in
    out = tmp_path / f"none{threads}.pf"
    p = run(tool("pyflow-filter") + ["--xargs", f"--threads={threads}", "--proto=0-",
                                     "--compression-method=none", f"--pass={out}"],
            input=listing)
    assert p.returncode == 0, p.stderr
    assert io.open_flows(str(out)).meta["compression"] == "none"
    assert schema.nrecords(read_all(out)) == schema.nrecords(want)


def _set_text_as_cidrs(name):
    with open(os.path.join(SILK_TESTS, name)) as f:
        return ",".join(line.split("#")[0].strip() for line in f
                        if line.split("#")[0].strip())


@need_silk
@pytest.mark.parametrize("n", [1, 2, 3, 4])
@pytest.mark.parametrize("which", ["s", "d", "any"])
def test_silk_sets_pass_what_their_text_says(n, which):
    """--sipset (SiLK's own IPset files) passes exactly what --scidr of the addresses the
    set was built from passes, and --not-sipset the rest."""
    data = os.path.join(SILK_TESTS, "data.rwf")
    setfile = os.path.join(SILK_TESTS, f"set{n}-v4.set")
    cidrs = _set_text_as_cidrs(f"set{n}-v4.txt")
    setopt = {"s": "sipset", "d": "dipset", "any": "anyset"}[which]
    cidropt = {"s": "scidr", "d": "dcidr", "any": "any-cidr"}[which]
    outs = []
    for arg in (f"--{setopt}={setfile}", f"--{cidropt}={cidrs}",
                f"--not-{setopt}={setfile}"):
        p = run(tool("pyflow-filter") + [arg, "--print-statistics=stdout", data])
        assert p.returncode == 0, p.stderr
        outs.append(p.stdout.decode())
    assert outs[0] == outs[1]
    passed = int(outs[0].split("Pass")[1].split(".")[0])
    assert f"Pass {501876 - passed:10d}." in outs[2]


def test_a_set_from_standard_input(tmp_path, flows):
    from flowtools import ipset
    path, _ = flows
    allrec = read_all(path)
    chosen = allrec["sip"][::7]
    s = ipset.IPSet.from_addresses(chosen)
    setfile = tmp_path / "a.set"
    ipset.write_set(s, str(setfile))
    p = run(tool("pyflow-filter") + ["--sipset=-", "--print-statistics=stdout", str(path)],
            stdin=open(setfile, "rb"))
    assert p.returncode == 0, p.stderr
    want = s.contains(allrec["sip"]).sum()
    assert want >= len(np.unique(chosen, axis=0)) > 0
    assert f"Pass {want:10d}." in p.stdout.decode()


def test_tuple_file(tmp_path, flows):
    path, _ = flows
    (tmp_path / "t.txt").write_text("# sport and protocol\n25,6\n53 , 17\n")
    allrec = read_all(path)
    s, d, pr = allrec["sport"], allrec["dport"], allrec["protocol"]
    fwd = ((s == 25) & (pr == 6)) | ((s == 53) & (pr == 17))
    rev = ((d == 25) & (pr == 6)) | ((d == 53) & (pr == 17))
    for direction, want in (("forward", fwd), ("reverse", rev), ("both", fwd | rev)):
        p = run(tool("pyflow-filter") + [f"--tuple-file={tmp_path}/t.txt",
                                         "--tuple-fields=sport,proto", "--tuple-delim=,",
                                         f"--tuple-direction={direction}",
                                         "--print-statistics=stdout", str(path)])
        assert p.returncode == 0, p.stderr
        assert f"Pass {want.sum():10d}." in p.stdout.decode(), direction
    (tmp_path / "bad.txt").write_text("25,6\n25,x\n")
    p = run(tool("pyflow-filter") + [f"--tuple-file={tmp_path}/bad.txt",
                                     "--tuple-fields=sport,proto", "--tuple-delim=,",
                                     "--print-statistics", str(path)])
    assert p.returncode == 1 and b"line 2" in p.stderr


@pytest.mark.parametrize("exact", [False, True])
def test_unique_passes_the_first_record_of_each_key(tmp_path, flows, exact):
    path, _ = flows
    allrec = read_all(path)
    key = np.stack([allrec["sport"], allrec["protocol"]], axis=1)
    _, first = np.unique(key, axis=0, return_index=True)
    p = run(tool("pyflow-filter") + ["--unique=sport,protocol", f"--pass={tmp_path}/u"]
            + (["--unique-exact"] if exact else []) + [str(path)])
    assert p.returncode == 0, p.stderr
    got = read_all(tmp_path / "u")
    np.testing.assert_array_equal(got["stime"], allrec["stime"][np.sort(first)])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(sorted(SWITCHES)), min_size=1, max_size=3, unique=True)
       .flatmap(lambda names: st.tuples(*[st.tuples(st.just(n), SWITCHES[n])
                                          for n in names])),
       st.integers(0, 2**32 - 1), st.lists(st.booleans(), min_size=1, max_size=6),
       st.sampled_from([(True, False, False), (False, True, False), (True, True, False),
                        (False, False, True), (False, False, False)]))
def test_blocks_judged_in_runs_as_one_by_one(switches, seed, families, wants):
    """judged_runs (many blocks decoded at once) finds, block by block, what
    judged_blocks finds: the same masks, records and copied blocks."""
    import io as pyio

    from flowtools import flowfile, passfail
    rng = np.random.default_rng(seed)
    f = pyio.BytesIO()
    w = flowfile.FlowWriter(f)
    for v6 in families:
        w.write(small_batch(rng, int(rng.integers(1, 300)), v6))
        w.flush()
    w.close()
    data = f.getvalue()
    predicate = filtering.compile_switches({name: [switch_text(name, arg)]
                                            for name, arg in switches})

    def judged(how):
        judge = passfail.Judge(predicate, want_pass=wants[0], want_fail=wants[1],
                               want_all=wants[2])
        judge.copy_format = (True, flowfile.DEFAULT_LEVEL)
        stream = pyio.BytesIO(data)
        stream.seek(4)
        reader = flowfile.FlowReader(stream, "t.pf", prefix=data[:4], threads=1)
        return [j for _, j in how(reader, judge)]

    runs = judged(lambda r, j: passfail.judged_runs([r], j))
    one = judged(lambda r, j: passfail.judged_blocks([r], j, threads=1))
    assert len(runs) == len(one) == len(families)
    for a, b in zip(runs, one, strict=True):
        assert a.n == b.n and (a.block is None) == (b.block is None)
        assert (a.mask is False) == (b.mask is False)
        if a.mask is not False:
            np.testing.assert_array_equal(a.mask, b.mask)
        assert (a.batch is None) == (b.batch is None)
        if a.batch is not None:
            assert set(a.batch) == set(b.batch)
            for k in a.batch:
                np.testing.assert_array_equal(a.batch[k], b.batch[k], err_msg=k)
