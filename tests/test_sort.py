"""pyflow-sort and flowtools.sorting: the order against Python's sorted(), the merge, the
external sort through temporary runs, and the tool as a user runs it."""

import io
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ROOT, assert_batches_equal, random_batch

from flowtools import api, fields, schema, sorting
from flowtools.errors import FlowError
from flowtools.tools import sort as sort_tool

BIN = os.path.join(ROOT, "bin")


def run(tool, *args, input=None, env=None, check=True):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("SILK_", "PYFLOW_"))}
    e.update(env or {})
    p = subprocess.run([sys.executable, os.path.join(BIN, tool), *args], input=input,
                       capture_output=True, env=e)
    if check and p.returncode != 0:
        raise AssertionError(f"{tool} {args} exit {p.returncode}: {p.stderr.decode()}")
    return p


def read(path_or_bytes):
    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else str(path_or_bytes)
    return schema.concat(list(api.read_flows(src)))


def write(path, batches):
    api.write_flows(str(path), batches)
    return str(path)


def python_order(batch, flist, reverse=False):
    """The reference: sorted() with a key of Python ints (addresses as 128-bit IPv6 when
    the batch is IPv6), stable, reverse=True keeping equal keys in input order."""
    cols = []
    for f in flist:
        v = f.values(batch)
        if v.ndim == 2:
            cols.append([(int(h) << 64) | int(lo) for h, lo in v])
        else:
            cols.append([int(x) for x in v])
    keys = list(zip(*cols, strict=True))
    return sorted(range(len(keys)), key=keys.__getitem__, reverse=reverse)


def addresses(rng, n, v6_share, below_share=0.0):
    """An IPv6 batch's address column: IPv4-mapped, IPv6 above ::ffff:0:0/96 and some
    below it (::x), from few distinct values so that keys tie."""
    col = schema.v4_to_v6(rng.integers(0, 40, n).astype(np.uint32) + np.uint32(0x0A000000))
    k = rng.random(n)
    high = k < v6_share
    col[high, 0] = np.uint64(0x20010DB800000000) + rng.integers(0, 3, high.sum()).astype(
        np.uint64)
    col[high, 1] = rng.integers(0, 4, high.sum()).astype(np.uint64)
    low = (k >= v6_share) & (k < v6_share + below_share)
    col[low, 0] = 0
    col[low, 1] = rng.integers(0, 5, low.sum()).astype(np.uint64)
    return col, high | low


def few_values(rng, n, v6=False, v6_share=0.3, below_share=0.0):
    """Random records with many equal keys, so that stability is tested."""
    b = random_batch(rng, n, v6=v6)
    b["protocol"] = rng.choice([1, 6, 17], n).astype(np.uint8)
    b["sport"] = rng.integers(0, 4, n).astype(np.uint16)
    b["stime"] = b["stime"][0] + rng.integers(0, 50, n) * 1000
    b["bytes"] = rng.integers(0, 10, n).astype(np.uint64)
    if v6:
        b["sip"], b["ipv6"] = addresses(rng, n, v6_share, below_share)
        b["dip"], _ = addresses(rng, n, v6_share / 5)
    else:
        b["sip"] = rng.integers(0, 30, n).astype(np.uint32)
    return b


FIELD_LISTS = ["sip", "sip,stime", "proto,sport", "stime,sip", "bytes,dur,proto",
               "sensor,type,dport", "etime", "dip,sip,sport", "flags,itype,icode",
               "class,application,in,out", "nhip,initialflags,sessionflags,attributes",
               "1-5", "packets,bytes"]


@pytest.mark.parametrize("spec", FIELD_LISTS)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("v6", [False, True])
def test_order_is_pythons_stable_sort(rng, spec, reverse, v6):
    b = few_values(rng, 3000, v6=v6)
    flist = fields.parse_list(spec)
    assert sorting.order(b, flist, reverse).tolist() == python_order(b, flist, reverse)


@pytest.mark.parametrize("v6_share,below_share", [(0.0, 0.0), (0.02, 0.0), (0.05, 0.03),
                                                  (0.0, 0.1), (0.2, 0.04), (0.6, 0.2),
                                                  (1.0, 0.0)])
@pytest.mark.parametrize("reverse", [False, True])
def test_mixed_ipv4_ipv6_compare_as_ipv6(rng, v6_share, below_share, reverse):
    b = few_values(rng, 4000, v6=True, v6_share=v6_share, below_share=below_share)
    flist = fields.parse_list("sip,sport")
    assert sorting.order(b, flist, reverse).tolist() == python_order(b, flist, reverse)


def test_ipv4_and_ipv6_batches_sort_together(rng):
    a, b = few_values(rng, 1000), few_values(rng, 1000, v6=True)
    whole = schema.concat([a, b])   # the IPv4 batch becomes ::ffff:a.b.c.d
    flist = fields.parse_list("sip,proto")
    got = sorting.sort_batch(whole, flist)
    assert_batches_equal(got, schema.take(whole, python_order(whole, flist)))
    ips = [(int(h) << 64) | int(lo) for h, lo in got["sip"]]
    assert ips == sorted(ips)


def test_extremes_and_wide_keys(rng):
    b = random_batch(rng, 2000, extremes=True)
    b["stime"][:3] = [-5, np.iinfo(np.int64).min, np.iinfo(np.int64).max]
    # bytes, packets and stime spans of 64 bits: several radix passes
    flist = fields.parse_list("bytes,packets,stime,dur")
    for reverse in (False, True):
        assert sorting.order(b, flist, reverse).tolist() == python_order(b, flist, reverse)


def test_sort_key_columns_are_compact(rng):
    b = few_values(rng, 1000)
    comps = sorting.sort_key_columns(b, fields.parse_list("proto,sport,sip"))
    assert [bits for _, bits in comps] == [5, 2, 5]   # 1..17, 0..3, 0..29
    for arr, bits in comps:
        assert int(arr.max()) < 1 << bits
    b["sensor"][:] = 3
    assert sorting.sort_key_columns(b, fields.parse_list("sensor")) == []   # constant
    one = {k: v[:1] for k, v in b.items()}
    assert sorting.order(one, fields.parse_list("sip")).tolist() == [0]
    empty = schema.empty()
    assert sorting.order(empty, fields.parse_list("sip,stime")).tolist() == []


def test_fields_sort_order_reverse_is_stable(rng):
    b = few_values(rng, 2000)
    flist = fields.parse_list("proto")
    assert fields.sort_order(b, flist, reverse=True).tolist() == \
        python_order(b, flist, reverse=True)


def sorted_sources(rng, n_sources, flist, reverse, make):
    return [sorting.sort_batch(make(i), flist, reverse) for i in range(n_sources)]


@pytest.mark.parametrize("step", [256, 1000, 1 << 16])
@pytest.mark.parametrize("reverse", [False, True])
def test_merge_is_the_stable_sort_of_the_concatenation(rng, step, reverse):
    cases = {
        "interleaved": (fields.parse_list("sip,stime"), lambda i: few_values(rng, 2500)),
        "ties": (fields.parse_list("proto"), lambda i: few_values(rng, 1500, v6=i % 2 == 1)),
        "disjoint": (fields.parse_list("stime"),
                     lambda i: {**few_values(rng, 1200),
                                "stime": few_values(rng, 1200)["stime"] + i * 10**8}),
        "one busy key": (fields.parse_list("sport,stime"),
                         lambda i: {**few_values(rng, 3000),
                                    "sport": np.full(3000, 7, np.uint16)}),
    }
    for name, (flist, make) in cases.items():
        srcs = sorted_sources(rng, 7, flist, reverse, make)
        # sources given as several batches each, of uneven sizes
        split = [[schema.take(s, slice(a, b)) for a, b in ((0, 100), (100, 1000),
                                                          (1000, None))] for s in srcs]
        got = schema.concat(list(sorting.merge(split, flist, reverse, step)))
        want = sorting.sort_batch(schema.concat(srcs), flist, reverse)
        assert_batches_equal(schema.to_v6(got), schema.to_v6(want)), name


def test_merge_of_nothing_and_of_one():
    flist = fields.parse_list("sip")
    assert list(sorting.merge([], flist)) == []
    assert list(sorting.merge([[], [schema.empty()]], flist)) == []


@pytest.mark.parametrize("reverse", [False, True])
def test_external_sorter_spills_and_merges(rng, tmp_path, reverse, monkeypatch):
    monkeypatch.setattr(sorting, "MAX_RUNS", 4)
    flist = fields.parse_list("sip,stime")
    batches = [few_values(rng, 3000, v6=i % 4 == 3) for i in range(24)]
    with sorting.ExternalSorter(flist, reverse, 200_000, str(tmp_path)) as s:
        for b in batches:
            s.add(b)
        assert s.spilled <= 2 * 4 and s.runs.count > 24   # runs merged into fewer runs
        got = schema.concat(list(s.batches()))
    assert os.listdir(tmp_path) == []
    whole = schema.concat(batches)
    assert_batches_equal(got, schema.take(whole, python_order(whole, flist, reverse)))


@pytest.mark.parametrize("spec", ["proto", "sip,stime", "sport,proto"])
@pytest.mark.parametrize("reverse", [False, True])
def test_merge_runs_of_memory_and_file_runs(rng, tmp_path, spec, reverse):
    """Keys so common that a step cannot hold them all (merged run by run), runs of
    several chunks on file and runs in memory, of IPv4 and IPv6 records."""
    flist = fields.parse_list(spec)
    srcs = [sorting.sort_batch(few_values(rng, int(rng.integers(1, 3000)), v6=i == 4),
                               flist, reverse) for i in range(7)]
    files = sorting.RunFiles(str(tmp_path))
    sample = lambda b, first=0: sorting._samples(b, flist, reverse, first)  # noqa: E731
    try:
        chunks = [[schema.take(b, slice(0, i * 100)), schema.take(b, slice(i * 100, None))]
                  if i % 2 else [b] for i, b in enumerate(srcs[:4])]
        chunks[3][1] = schema.to_v6(chunks[3][1])   # a run of IPv4 and IPv6 chunks
        runs = files.write_runs(chunks, sample)
        runs += [sorting._MemoryRun(b, sample(b)) for b in srcs[4:]]
        got = schema.concat([schema.to_v6(b) for b in
                             sorting.merge_runs(runs, flist, reverse, step=600)])
    finally:
        files.close()
    whole = schema.to_v6(schema.concat(srcs))
    assert_batches_equal(got, schema.take(whole, python_order(whole, flist, reverse)))
    assert os.listdir(tmp_path) == []


def test_recut_gives_batches_of_the_size(rng):
    for _ in range(50):
        batches = [random_batch(rng, int(rng.integers(1, 50)))
                   for _ in range(int(rng.integers(0, 8)))]
        size = int(rng.integers(1, 60))
        out = list(sorting._recut(iter(batches), size))
        assert [schema.nrecords(b) for b in out[:-1]] == [size] * (len(out) - 1)
        assert sum(schema.nrecords(b) for b in out) == sum(schema.nrecords(b) for b in batches)
        if batches:
            assert_batches_equal(schema.concat(out), schema.concat(batches))


def test_external_sorter_in_memory_writes_no_files(rng, tmp_path):
    flist = fields.parse_list("proto")
    s = sorting.ExternalSorter(flist, tempdir=str(tmp_path))
    for _ in range(3):
        s.add(random_batch(rng, 1000))
    assert s.spilled == 0
    assert sum(schema.nrecords(b) for b in s.batches()) == 3000
    assert os.listdir(tmp_path) == []


def test_external_sorter_removes_runs_when_abandoned(rng, tmp_path):
    s = sorting.ExternalSorter(fields.parse_list("sport"), buffer_bytes=150_000,
                               tempdir=str(tmp_path))
    for _ in range(10):
        s.add(random_batch(rng, 2000))
    assert s.spilled and os.listdir(tmp_path)
    out = s.batches()
    next(out)
    out.close()         # a consumer that stops early (an error downstream)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("text,value", [("99000", 99000), ("512k", 512 << 10),
                                        ("512M", 512 << 20), ("1.5g", 3 << 29),
                                        ("2T", 2 << 40), (" 100 k ", 100 << 10)])
def test_parse_size(text, value):
    assert sort_tool.parse_size(text) == value


@pytest.mark.parametrize("text", ["", "12q", "k", "-5m", "1e6", "98999", "1k"])
def test_parse_size_rejects(text):
    with pytest.raises(FlowError):
        sort_tool.parse_size(text)


# ------------------------------------------------------------------ the tool

DEMO4 = """sIP|dIP|sPort|dPort|protocol|packets|bytes|flags|sTime|duration|sensor|class|type
10.0.0.1|192.168.1.10|51234|80|6|10|1500|FSPA|2009/02/12T00:00:01.000|1.500|S0|all|out
10.0.0.1|192.168.1.11|51235|443|6|5|800|SA|2009/02/12T00:00:02.250|0.750|S0|all|out
10.0.0.2|192.168.1.10|53|53000|17|1|120||2009/02/12T00:01:00.000|0.000|S0|all|out
192.168.1.10|10.0.0.3|12345|22|6|20|4000|FSPA|2009/02/12T00:02:00.000|10.000|S1|all|in
"""


@pytest.fixture
def demo4(tmp_path):
    text = tmp_path / "flows4.txt"
    text.write_text(DEMO4)
    path = tmp_path / "demo4.pf"
    run("pyflow-tuc", f"--output-path={path}", str(text))
    return str(path)


def test_rwsort_examples(demo4):
    """The two rwsort examples of the SiLK reference (section 1.3), through a pipe."""
    out = run("pyflow-sort", "--fields=dport", demo4).stdout
    cut = run("pyflow-cut", "--fields=sip,dport", input=out).stdout.decode()
    assert cut == ("                                    sIP|dPort|\n"
                   "                           192.168.1.10|   22|\n"
                   "                               10.0.0.1|   80|\n"
                   "                               10.0.0.1|  443|\n"
                   "                               10.0.0.2|53000|\n")
    out = run("pyflow-sort", "--fields=bytes", "--reverse", demo4).stdout
    cut = run("pyflow-cut", "--fields=sip,bytes", input=out).stdout.decode()
    assert cut == ("                                    sIP|     bytes|\n"
                   "                           192.168.1.10|      4000|\n"
                   "                               10.0.0.1|      1500|\n"
                   "                               10.0.0.1|       800|\n"
                   "                               10.0.0.2|       120|\n")


def test_shell_pipeline(demo4):
    sh = (f"{sys.executable} {BIN}/pyflow-sort --fields=sport {demo4} | "
          f"{sys.executable} {BIN}/pyflow-cut --fields=sport --no-titles --delimited")
    p = subprocess.run(sh, shell=True, capture_output=True, check=True)
    assert p.stdout.decode().split() == ["53", "12345", "51234", "51235"]


def test_tool_sorts_several_inputs_and_stdin(rng, tmp_path):
    a, b = few_values(rng, 3000), few_values(rng, 2000, v6=True)
    fa, fb = write(tmp_path / "a.pf", [a]), write(tmp_path / "b.pf", [b])
    flist = fields.parse_list("sip,proto")
    whole = schema.concat([a, b])
    want = schema.take(whole, python_order(whole, flist))
    assert_batches_equal(read(run("pyflow-sort", "--fields=sip,proto", fa, fb).stdout), want)
    piped = run("pyflow-sort", "--fields=1,5", "-", fb,
                input=open(fa, "rb").read()).stdout
    assert_batches_equal(read(piped), want)
    listed = run("pyflow-sort", "--fields=sIP,protocol", "--xargs",
                 input=f"{fa}\n{fb}\n".encode()).stdout
    assert_batches_equal(read(listed), want)
    p = run("pyflow-sort", "--fields=sip,proto", "--print-filenames", "--input-pipe=stdin",
            input=open(fa, "rb").read())
    assert p.stderr == b"stdin\n"
    assert_batches_equal(read(p.stdout), schema.take(a, python_order(a, flist)))


def test_tool_reverse_is_stable(rng, tmp_path):
    b = few_values(rng, 5000)
    fa = write(tmp_path / "a.pf", [b])
    flist = fields.parse_list("proto")
    got = read(run("pyflow-sort", "--fields=proto", "--reverse", fa).stdout)
    assert_batches_equal(got, schema.take(b, python_order(b, flist, reverse=True)))


@pytest.mark.parametrize("mixed", [False, True])
def test_external_path_gives_the_same_bytes(rng, tmp_path, mixed):
    batches = [few_values(rng, 4000, v6=mixed and i == 3) for i in range(8)]
    fa = write(tmp_path / "in.pf", batches)
    temp = tmp_path / "tmp"
    temp.mkdir()
    mem, ext = tmp_path / "mem.pf", tmp_path / "ext.pf"
    common = ["--fields=sip,stime", "--invocation-strip", fa]
    run("pyflow-sort", *common, f"--output-path={mem}", f"--temp-directory={temp}")
    run("pyflow-sort", *common, f"--output-path={ext}", "--sort-buffer-size=100k",
        env={"SILK_TMPDIR": str(temp)})
    assert open(mem, "rb").read() == open(ext, "rb").read()
    assert os.listdir(temp) == []
    whole = schema.concat(batches)
    assert_batches_equal(read(ext), schema.take(whole, python_order(
        whole, fields.parse_list("sip,stime"))))


def test_presorted_input_merges(rng, tmp_path):
    flist = fields.parse_list("proto,stime")
    files = []
    for i in range(5):
        f = write(tmp_path / f"raw{i}.pf", [few_values(rng, 2000, v6=i == 2)])
        files.append(str(tmp_path / f"s{i}.pf"))
        run("pyflow-sort", "--fields=proto,stime", f, f"--output-path={files[-1]}")
    merged = read(run("pyflow-sort", "--fields=proto,stime", "--presorted-input",
                      *files).stdout)
    whole = schema.concat([read(f) for f in files])
    assert_batches_equal(schema.to_v6(merged),
                         schema.to_v6(schema.take(whole, python_order(whole, flist))))


def test_presorted_input_of_many_files(rng, tmp_path, monkeypatch):
    """More inputs than one merge takes: merged in groups through temporary runs."""
    flist = fields.parse_list("sport")
    srcs = [sorting.sort_batch(few_values(rng, 300), flist) for _ in range(9)]
    names = [write(tmp_path / f"s{i}.pf", [b]) for i, b in enumerate(srcs)]
    monkeypatch.setattr(sorting, "MAX_FANIN", 2)
    temp = tmp_path / "tmp"
    temp.mkdir()
    out = tmp_path / "out.pf"
    argv = ["--fields=sport", "--presorted-input", f"--temp-directory={temp}",
            f"--output-path={out}", *names]
    from flowtools import cli
    assert cli.run(sort_tool.TOOL, sort_tool.main, argv) == 0
    whole = schema.concat(srcs)
    assert_batches_equal(read(out), schema.take(whole, python_order(whole, flist)))
    assert os.listdir(temp) == []


def test_empty_input_gives_an_empty_flow_file(tmp_path):
    empty = write(tmp_path / "empty.pf", [])
    for extra in ([], ["--presorted-input"]):
        out = run("pyflow-sort", "--fields=sip", empty, *extra).stdout
        assert schema.nrecords(read(out)) == 0


def test_output_notes_and_history(demo4, tmp_path):
    out = tmp_path / "out.pf"
    run("pyflow-sort", "--fields=sip", demo4, f"--output-path={out}", "--note-add=sorted")
    info = run("pyflow-fileinfo", str(out)).stdout.decode()
    assert "pyflow-tuc" in info and "pyflow-sort --fields=sip" in info and "sorted" in info


def test_help_fields_and_help(demo4):
    text = run("pyflow-sort", "--help-fields").stdout.decode()
    assert "sIP" in text and "Alias: pkts,6" in text
    text = run("pyflow-sort", "--help").stdout.decode()
    for option in ("--fields", "--reverse", "--presorted-input", "--sort-buffer-size",
                   "--temp-directory", "--print-filenames", "--input-pipe", "--xargs",
                   "--output-path", "--compression-method", "--note-add",
                   "--site-config-file"):
        assert option in text, option


@pytest.mark.parametrize("args,message", [
    (["--fields=bogus", "DEMO"],
     "pyflow-sort: invalid --fields value 'bogus': unknown field\n"),
    (["DEMO"], "pyflow-sort: the sorting key (--fields switch) was not given\n"),
    (["--fields=sip", "--sort-buffer-size=12q", "DEMO"],
     "pyflow-sort: invalid --sort-buffer-size '12q': expected a number of bytes with an "
     "optional k, m, g or t suffix\n"),
    (["--fields=sip", "--sort-buffer-size=1k", "DEMO"],
     "pyflow-sort: the --sort-buffer-size value must be between 99000 and "
     "18446744073709551615\n"),
    (["--fields=sip", "--temp-directory=/nonexistent/dir", "DEMO"],
     "pyflow-sort: temporary directory '/nonexistent/dir' does not exist\n"),
    (["--fields=sip", "--input-pipe=stdin", "DEMO"],
     "pyflow-sort: --input-pipe may not be combined with input files or --xargs\n"),
    (["--fields=sip", "/nonexistent.pf"],
     "pyflow-sort: cannot open /nonexistent.pf: No such file or directory\n"),
])
def test_errors_are_one_line(demo4, args, message):
    p = run("pyflow-sort", *[demo4 if a == "DEMO" else a for a in args], check=False)
    assert (p.returncode, p.stderr.decode(), p.stdout) == (1, message, b"")


def test_unreadable_input_leaves_no_output(rng, tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    fa = write(tmp_path / "a.pf", [few_values(rng, 20000)])
    bad = tmp_path / "bad.pf"
    bad.write_bytes(b"not a flow file at all")
    out = tmp_path / "out.pf"
    for second in (str(bad), str(tmp_path / "missing.pf")):
        p = run("pyflow-sort", "--fields=sip", fa, second, f"--output-path={out}",
                "--sort-buffer-size=100k", f"--temp-directory={temp}", check=False)
        assert p.returncode == 1 and p.stderr.count(b"\n") == 1
        assert p.stderr.startswith(b"pyflow-sort: ") and second.encode() in p.stderr
        assert not out.exists() and os.listdir(tmp_path).count("out.pf") == 0
        assert os.listdir(temp) == []
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".out.pf")]
    exists = write(tmp_path / "exists.pf", [few_values(rng, 10)])
    p = run("pyflow-sort", "--fields=sip", fa, f"--output-path={exists}", check=False)
    assert p.stderr == f"pyflow-sort: will not create new file over existing file " \
                       f"'{exists}'\n".encode()


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 130)])
def test_interrupt_removes_temporary_files(rng, tmp_path, sig, code):
    temp = tmp_path / "tmp"
    temp.mkdir()
    from flowtools.io import FlowSink
    sink = FlowSink(str(tmp_path / "a.pf"), {}, block_records=1000)   # many blocks
    sink.write(few_values(rng, 30000))
    sink.close()
    data = open(tmp_path / "a.pf", "rb").read()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SILK_", "PYFLOW_"))}
    p = subprocess.Popen([sys.executable, os.path.join(BIN, "pyflow-sort"), "--fields=sip",
                          "--sort-buffer-size=100k", f"--temp-directory={temp}",
                          f"--output-path={tmp_path / 'out.pf'}"],
                         stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    p.stdin.write(data[:-100])      # an unfinished stream: it waits for the rest
    p.stdin.flush()
    deadline = time.time() + 30
    while not any(os.listdir(os.path.join(temp, d)) for d in os.listdir(temp)):
        assert time.time() < deadline and p.poll() is None, "no temporary run appeared"
        time.sleep(0.05)
    p.send_signal(sig)
    _, err = p.communicate(timeout=30)
    assert p.returncode == code and err == b"pyflow-sort: interrupted\n"
    assert os.listdir(temp) == []
    assert not os.path.exists(tmp_path / "out.pf")
