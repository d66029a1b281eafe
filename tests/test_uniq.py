"""pyflow-uniq: SiLK's own rwuniq tests (their MD5s), a plain-Python reference on random
records, spilling, presorted input, cross-checks and bad input."""

import hashlib
import io
import os
import shlex
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, SHARED, random_batch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowtools import aggregate, api, cli, fields, schema

SILK_TESTS = os.path.join(SHARED, "silk-tests")
TWOWAY = os.path.join(ROOT, "tests", "data", "twoway.conf")
need_silk = pytest.mark.skipif(not os.path.exists(os.path.join(SILK_TESTS, "data.rwf")),
                               reason="needs ../shared/data/silk-tests")
TOOLS = {"uniq": "uniq", "stats": "stats", "filter": "filter", "sort": "sort"}


# --- running tools in this process (SiLK's fixtures are read once, as pyflow files) ----

class _Out:
    closed = False

    def __init__(self):
        self.buffer = io.BytesIO()

    def isatty(self):
        return False

    def write(self, text):
        self.buffer.write(text.encode())

    def flush(self):
        pass


class _In:
    def __init__(self, path):
        self.buffer = open(path, "rb")

    def isatty(self):
        return False

    def read(self):
        return self.buffer.read().decode()


def run_tool(name, args, stdin=None):
    """(exit status, standard output bytes, standard error text) of a tool run here."""
    import importlib
    mod = importlib.import_module(f"flowtools.tools.{TOOLS[name]}")
    out, err = _Out(), io.StringIO()
    saved = sys.stdout, sys.stderr, sys.stdin
    sys.stdout, sys.stderr = out, err
    if stdin is not None:
        sys.stdin = _In(stdin)
    try:
        rc = cli.run(mod.TOOL, mod.main, list(args))
    finally:
        if stdin is not None:
            sys.stdin.buffer.close()
        sys.stdout, sys.stderr, sys.stdin = saved
    return rc, out.buffer.getvalue(), err.getvalue()


@pytest.fixture(scope="session")
def silk_data(tmp_path_factory):
    """SiLK's data.rwf, data-v6.rwf and empty.rwf, converted once to pyflow files."""
    if not os.path.exists(os.path.join(SILK_TESTS, "data.rwf")):
        pytest.skip("needs ../shared/data/silk-tests")
    from flowtools import io as fio
    d = tmp_path_factory.mktemp("silk")
    out = {}
    for key, name in (("DATA", "data.rwf"), ("V6", "data-v6.rwf"), ("EMPTY", "empty.rwf")):
        r = fio.open_flows(os.path.join(SILK_TESTS, name))
        batches = list(r.batches())
        r.close()
        out[key] = str(d / (name + ".pf"))
        api.write_flows(out[key], batches)
    out["dir"] = d
    return out


def silk_pipeline(cmd, files, tmp):
    """Output bytes of one of SiLK's test commands: tools joined by '|' run in turn
    through temporary files; DATA, V6 and EMPTY name the fixtures."""
    stages = [shlex.split(s) for s in cmd.split("|")]
    data = None
    for k, argv in enumerate(stages):
        name, args = argv[0], [files.get(a, a) for a in argv[1:]]
        last = k == len(stages) - 1
        if name == "unixsort":
            return b"".join(sorted(data.splitlines(keepends=True)))
        stdin = None
        if "-" in args:
            stdin = files["DATA"]
        if data is not None:
            args.append(data)
        if not last and stages[k + 1][0] != "unixsort":
            nxt = str(tmp / f"stage{k}.pf")
            args = [a.replace("=-", "=" + nxt).replace("=stdout", "=" + nxt) for a in args]
            if name == "sort":
                args.append(f"--output-path={nxt}")
            rc, out, err = run_tool(name, args, stdin)
            assert rc == 0, err
            data = nxt
            continue
        rc, out, err = run_tool(name, args, stdin)
        assert rc == 0, err
        if not last:
            data = out
    return out


SILK_UNIQ = [
    ("c413b77bbfee676c91c560d181f95aa2",
     "uniq --fields=etime --bin-time=3600 --values=bytes --sort-output DATA"),
    ("c17d1b4d092c2a77c9c85d4548696fcf",
     "uniq --fields=stime,dur --bin-time=0.001 --values=bytes,packets,flows "
     "--sort-output DATA"),
    ("9a1ef7d81732fb3a52fc2e335c576941",
     "uniq --fields=stime,etime,dur --bin-time=3600 --values=bytes,packets,flows "
     "--sort-output DATA"),
    ("092cbaa59bfa93d6917237c51452b83b",
     "uniq --fields=stime,etime --bin-time=3600 --values=bytes,packets,flows "
     "--sort-output DATA"),
    ("a8e4b0d6eabd6eaf16f8729da38b5541",
     "uniq --fields=stime --bin-time=3600 --sort-output DATA"),
    ("9c75b830f20c5de33e22ef7df5e3884d",
     "uniq --fields=sensor,class,type --sort-output DATA"),
    ("8e4ae981669dd04d23ce93630345bfff",
     "uniq --fields=sport --output-path=/dev/null --copy-input=stdout DATA | uniq "
     "--fields=sport --sort-output"),
    ("0252020803dc8eb45ad32cc55f01ca8e",
     "uniq --fields=sport --delimited --sort-output DATA"),
    ("31d5ab1a3d45d90798add0a3ebe69b9c",
     "uniq --fields=2 --ipv6-policy=ignore --ip-format=decimal --bytes --sort-output "
     "DATA"),
    ("fc6357a25897be21e1c62658ef20f88d",
     "uniq --fields=2 --values=packets --ipv6-policy=force --sort-output V6"),
    ("4a5a76df0bf8cdf8144569e3f41b52a6",
     "uniq --fields=dip --ipv6-policy=ignore --ip-format=zero-padded --packets "
     "--sort-output DATA"),
    ("25a9d4633e6f90d5150e9de38d572417",
     "uniq --fields=dport --all-counts --sort-output DATA"),
    ("cc6191757c3dc8d2d2d0a4aaa2453e0e",
     "uniq --fields=dport,iType,iCode,proto --sort-output DATA"),
    ("c5e1d99bff97b9de64b26d57184321ee",
     "uniq --fields=dur --bytes --sort-output DATA"),
    ("318c4ea2128a1d2bdc45a98208dd773c",
     "uniq --fields=sport --presorted-input EMPTY"),
    ("318c4ea2128a1d2bdc45a98208dd773c",
     "uniq --fields=sport --sort-output EMPTY"),
    ("99b324d3b11f13d558ef84e794e309d9",
     "uniq --fields=etime --timestamp-format=epoch --sort-output DATA"),
    ("6e72fd0103d60d0dfb3d876c7b4fdac5",
     "uniq --fields=iType,iCode,dport,proto --sort-output DATA"),
    ("2adae71d6fe8383839747da0ee34287d",
     "filter --proto=1 --pass=- DATA | uniq --fields=iType,iCode --sort-output"),
    ("c52632951ea930f61237abf63b440b77",
     "uniq --fields=9,11 --timestamp-format=default --sort-output DATA"),
    ("fe4a972eeb8364177701806a13525537",
     "uniq --fields=9,11 --timestamp-format=m/d/y --sort-output DATA"),
    ("8e4ae981669dd04d23ce93630345bfff",
     "uniq --fields=sport --sort-output EMPTY DATA EMPTY"),
    ("191a7cdb4172c1a6e747a6c01b263f2c",
     "uniq --fields=sport --no-column --column-sep=, --sort-output DATA"),
    ("8dae8a4e2ad9878a4c8f2817aa6cb925",
     "uniq --fields=sport --no-titles --sort-output DATA"),
    ("cf89a898adcf8c160f270351dfd0469a",
     "sort --fields=3-5 DATA | uniq --fields=3-5 --presorted-input --no-title"),
    ("880eb330d6ee83f0870acba792f0530c",
     "uniq --fields=sport,dport,proto --no-title --sort-output V6"),
    ("cf89a898adcf8c160f270351dfd0469a",
     "uniq --fields=sport,dport,proto --no-title --sort-output DATA"),
    ("cf89a898adcf8c160f270351dfd0469a",
     "uniq --fields=3-5 --no-title DATA | unixsort"),
    ("8d9f931e8e37efd312a6dd09ea9da0eb",
     "uniq --fields=proto --sort-output DATA"),
    ("9a7628f6bf4b3cfb1feaaf289bb62aca",
     "uniq --fields=sip --values=bytes --sort-output V6"),
    ("39884aedf3ed40f6220f9044f3c0488f",
     "uniq --fields=sip --bytes --ipv6-policy=ignore --sort-output DATA"),
    ("57c6c37c5bc522ff9a9227faf9ee9ebf",
     "sort --fields=sport DATA | uniq --fields=sport --sip-distinct --dip-distinct "
     "--presorted-input --ipv6-policy=ignore"),
    ("9570d11206a18ac99e3df75c1fa233b0",
     "uniq --fields=sport --sip-distinct --dip-distinct --sort-output V6"),
    ("57c6c37c5bc522ff9a9227faf9ee9ebf",
     "uniq --fields=sport --sip-distinct --dip-distinct --ipv6-policy=ignore "
     "--sort-output DATA"),
    ("4723bef4df2379f64de3bb1677b59d42",
     "sort --fields=sport V6 | uniq --fields=sport --sip-distinct --presorted-input"),
    ("5bec172887009c1adadc4e6c939086f4",
     "sort --fields=sport DATA | uniq --fields=sport --sip-distinct --presorted-input "
     "--ipv6-policy=ignore"),
    ("4723bef4df2379f64de3bb1677b59d42",
     "uniq --fields=sport --sip-distinct --sort-output V6"),
    ("5bec172887009c1adadc4e6c939086f4",
     "uniq --fields=sport --sip-distinct --sort-output --ipv6-policy=ignore DATA"),
    ("9570d11206a18ac99e3df75c1fa233b0",
     "uniq --fields=sport --values=distinct:sip,distinct:dip --sort-output V6"),
    ("0e39348130f91bf0d48fb626f340c1e8",
     "uniq --fields=sport --bytes=2000 --sort-output DATA"),
    ("c2250494883064b052cabaa25f472ea1",
     "uniq --fields=sport --packets=20 --sort-output DATA"),
    ("84c459a326c84a6a9423cc2196566019",
     "uniq --fields=sport --flows=10 --sort-output DATA"),
    ("48a87ceae6ed7a867a98e9708060a3f0",
     "uniq --fields=sport --bytes=0-2000 --sort-output DATA"),
    ("b0953356203710b12d315e8c5b4dffbe",
     "uniq --fields=sport --packets=0-20 --sort-output DATA"),
    ("9cf54071d5aa0781c33fffe12f18940d",
     "uniq --fields=sport --flows=0-10 --sort-output DATA"),
    ("8e4ae981669dd04d23ce93630345bfff",
     "uniq --fields=sport --sort-output -"),
    ("a4a90a93208b4cf6c8424932a813fd40",
     "uniq --fields=stime --packets --flows --sort-output DATA"),
    ("7429f78964a152d9e8250c07202cec56",
     "uniq --fields=stime,proto --bin-time=86400 --sort-output DATA"),
]


@need_silk
@pytest.mark.parametrize("md5,cmd", SILK_UNIQ, ids=[c for _, c in SILK_UNIQ])
def test_silk_rwuniq(md5, cmd, silk_data, tmp_path, monkeypatch):
    monkeypatch.setenv("SILK_CONFIG_FILE", TWOWAY)
    for var in ("SILK_IP_FORMAT", "SILK_IPV6_POLICY", "SILK_TIMESTAMP_FORMAT"):
        monkeypatch.delenv(var, raising=False)
    cmd = cmd.replace("| sort", "| unixsort")
    assert hashlib.md5(silk_pipeline(cmd, silk_data, tmp_path)).hexdigest() == md5


# --- the engine against a plain Python reference ------------------------------------------

KEY_CHOICES = ["sip", "dip", "sport", "dport", "protocol", "sip,dport", "sport,dport,protocol",
               "sip,dip", "stime", "etime,protocol", "stime,dur", "sensor,class,type",
               "iType,iCode", "dip,bytes", "flags,in"]
DISTINCT_CHOICES = ["dip", "sip", "dport", "protocol", "stime"]


def _ip_int(col, i):
    v = col[i]
    if np.ndim(v):
        return (int(v[0]) << 64) | int(v[1])
    return 0xFFFF00000000 | int(v)


def _ref_value(name, batch, i, bin_ms, times):
    s = int(batch["stime"][i])
    d = int(batch["duration"][i])
    if bin_ms > 1 and times & {"sTime", "eTime"}:
        if "sTime" in times and "eTime" not in times:
            s -= s % bin_ms
        elif "sTime" in times:
            mod = s % bin_ms
            s, d = s - mod, d + mod - (s + d) % bin_ms
        else:
            s -= (s + d) % bin_ms
    if name in ("sIP", "dIP", "nhIP"):
        return _ip_int(batch[{"sIP": "sip", "dIP": "dip", "nhIP": "nhip"}[name]], i)
    if name == "sTime":
        return s // 1000
    if name == "eTime":
        return (s + d) // 1000
    if name == "duration":
        return d // 1000
    f = fields.find(name)
    return int(f.values(batch)[i])


def reference(batch, keys, distinct, bin_ms=0):
    """{key tuple: [records, packets, bytes, stime_min, etime_max, {distinct sets}]}."""
    times = {k for k in keys if k in aggregate.TIMES}
    out = {}
    for i in range(schema.nrecords(batch)):
        key = tuple(_ref_value(k, batch, i, bin_ms, times) for k in keys)
        row = out.setdefault(key, [0, 0, 0, None, None, {d: set() for d in distinct}])
        row[0] += 1
        row[1] += int(batch["packets"][i])
        row[2] += int(batch["bytes"][i])
        st = _ref_value("sTime", batch, i, bin_ms, times)
        et = _ref_value("eTime", batch, i, bin_ms, times)
        row[3] = st if row[3] is None else min(row[3], st)
        row[4] = et if row[4] is None else max(row[4], et)
        for d in distinct:
            row[5][d].add(_ref_value(d, batch, i, bin_ms, times))
    return out


def engine(batches, keys, distinct, bin_ms=0, budget=None, tempdir=None):
    spec = aggregate.KeySpec(fields.parse_list(",".join(keys)), bin_ms)
    gb = aggregate.GroupBy(spec, ["records", "packets", "bytes", "stime_min", "etime_max"],
                           fields.parse_list(",".join(distinct)) if distinct else [],
                           budget=budget or aggregate.DEFAULT_BUDGET, tempdir=tempdir,
                           total_distinct=True)
    for b in batches:
        gb.add(b)
    comps, values, counts, wide, totals = gb.finish()
    out = {}
    n = len(comps[0]) if comps else 0
    for i in range(n):
        key, c = [], 0
        for f in spec.fields:
            if f.kind == "ip":
                if wide:
                    key.append((int(comps[c][i]) << 64) | int(comps[c + 1][i]))
                    c += 2
                else:
                    key.append(0xFFFF00000000 | int(comps[c][i]))
                    c += 1
            else:
                key.append(int(comps[c][i]))
                c += 1
        out[tuple(key)] = [int(values[v][i]) for v in ("records", "packets", "bytes",
                                                        "stime_min", "etime_max")] + \
            [{d: int(counts[fields.find(d).name][i]) for d in distinct}]
    order = list(out)
    return out, order, totals


def _compare(batches, keys, distinct, bin_ms=0, **kw):
    names = [fields.find(k).name for k in keys.split(",")]
    dnames = [fields.find(d).name for d in distinct]
    ref = reference(schema.concat(batches), names, dnames, bin_ms)
    got, order, totals = engine(batches, names, dnames, bin_ms, **kw)
    assert order == sorted(order)          # bins come out in key order
    assert set(got) == set(ref)
    for k, row in ref.items():
        assert got[k][:5] == row[:5], k
        assert got[k][5] == {d: len(s) for d, s in row[5].items()}, k
    for d in dnames:   # rwstats' total distinct count: over all records, not summed
        every = set().union(*(row[5][d] for row in ref.values())) if ref else set()
        assert totals[d] == len(every)
    assert sum(r[0] for r in got.values()) == sum(schema.nrecords(b) for b in batches)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), keys=st.sampled_from(KEY_CHOICES),
       distinct=st.lists(st.sampled_from(DISTINCT_CHOICES), max_size=2, unique=True),
       v6=st.booleans(), nbatch=st.integers(1, 3), small=st.booleans(),
       bin_s=st.sampled_from([0, 60, 3600]))
def test_bins_equal_a_plain_reference(seed, keys, distinct, v6, nbatch, small, bin_s):
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(nbatch):
        b = random_batch(rng, int(rng.integers(0, 60)), v6=v6 and rng.random() < 0.7)
        if small:   # few distinct values, so that bins hold many records
            for c in ("sport", "dport"):
                b[c] = (b[c] % 4).astype(b[c].dtype)
            b["protocol"] = (b["protocol"] % 3).astype(np.uint8)
            for c in schema.IP_COLUMNS:
                b[c] = b[c] & (3 if b[c].ndim == 1 else np.array([0, 3], np.uint64)) \
                    if not v6 else b[c]
        batches.append(b)
    _compare(batches, keys, distinct, bin_s * 1000)


def test_merging_and_spilling_give_the_same_bins(rng, tmp_path, monkeypatch):
    batches = [random_batch(rng, 3000, v6=(i % 2 == 1)) for i in range(6)]
    for b in batches:
        b["sport"] = (b["sport"] % 50).astype(np.uint16)
        b["dip"] = b["dip"] % 40 if b["dip"].ndim == 1 else b["dip"]
    monkeypatch.setattr(aggregate, "CHUNK", 1000)      # many runs to merge
    monkeypatch.setattr(aggregate, "MIN_HOLD", 0)
    _compare(batches, "sport,sip", ["dip"])
    _compare(batches, "sport,protocol", ["dip"])     # one-word keys met in many runs
    spill = tmp_path / "spill"
    spill.mkdir()
    _compare(batches, "sport,sip", ["dip"], budget=1, tempdir=str(spill))   # every merge
    # one-word keys and pairs (merged into their run by binary search), spilled
    _compare(batches, "sip", ["dip", "sport"], budget=1, tempdir=str(spill))
    assert os.listdir(spill) == []           # temporary runs removed


@settings(max_examples=40, deadline=None)
@given(runs=st.lists(st.lists(st.tuples(st.integers(0, 40), st.integers(1, 5)), max_size=30),
                     max_size=8),
       budget=st.sampled_from([1, 64, 1 << 30]))
def test_one_word_table_merges_runs_into_one(runs, budget, tmp_path_factory):
    """A one-word Table merges runs into its merged run by binary search (and spills it
    beyond the budget): the result is every key once, in order, values combined."""
    t = aggregate.Table(1, {"n": "sum", "lo": "min", "hi": "max"}, budget=budget,
                        tempdir=str(tmp_path_factory.mktemp("spill")))
    ref = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(aggregate, "MIN_HOLD", 0)         # merge as soon as runs come
        for run in runs:
            if not run:
                continue
            keys = np.array([k for k, _ in run], np.uint64)
            vals = np.array([v for _, v in run], np.uint64)
            t.add([keys], {"n": vals, "lo": vals, "hi": vals})
            for k, v in run:
                n, lo, hi = ref.get(k, (0, v, v))
                ref[k] = (n + v, min(lo, v), max(hi, v))
    got = {}
    for chunk in t.chunks(chunk=3):
        for i, k in enumerate(chunk.words[0].tolist()):
            assert k not in got
            got[k] = tuple(int(chunk.values[c][i]) for c in ("n", "lo", "hi"))
    assert list(got) == sorted(ref) and got == ref


def test_chunked_merge_of_spilled_runs(rng, tmp_path, monkeypatch):
    """Table.chunks merges spilled runs a chunk at a time, keys in order, none lost."""
    monkeypatch.setattr(aggregate, "MIN_HOLD", 0)
    t = aggregate.Table(2, {"n": "sum"}, budget=1, tempdir=str(tmp_path))
    allw = []
    for _ in range(5):
        w = [rng.integers(0, 3, 500).astype(np.uint64), rng.integers(0, 200, 500)
             .astype(np.uint64)]
        allw.append(w)
        t.add(w, {"n": np.ones(500, np.uint64)})
    assert t.spilled
    got = list(t.chunks(chunk=37))
    hi = np.concatenate([c.words[0] for c in got])
    lo = np.concatenate([c.words[1] for c in got])
    n = np.concatenate([c.values["n"] for c in got])
    pairs = list(zip(hi.tolist(), lo.tolist(), strict=True))
    assert pairs == sorted(set(pairs)) and n.sum() == 2500
    ref = {}
    for w in allw:
        for a, b in zip(w[0].tolist(), w[1].tolist(), strict=True):
            ref[(a, b)] = ref.get((a, b), 0) + 1
    assert dict(zip(pairs, n.tolist(), strict=True)) == ref
    assert not os.listdir(tmp_path)


def test_layout_packs_in_key_order(rng):
    bits = [32, 16, 8, 64, 32, 32]
    lay = aggregate.Layout(bits)
    comps = [rng.integers(0, 1 << min(b, 63), 200, dtype=np.uint64) for b in bits]
    words = lay.pack(comps)
    assert lay.nwords == 3
    for a, b in zip(lay.unpack(words), comps, strict=True):
        np.testing.assert_array_equal(a, b)
    tuples = sorted(zip(*[c.tolist() for c in comps], strict=True))
    order = np.lexsort(words[::-1])
    assert [tuple(int(c[i]) for c in comps) for i in order] == tuples


# --- the tool -----------------------------------------------------------------------------

def tool(name):
    return [sys.executable, os.path.join(ROOT, "bin", name)]


def write(tmp_path, batches, name="in.pf"):
    path = str(tmp_path / name)
    api.write_flows(path, batches)
    return path


def delimited_rows(text):
    return [line.split("|") for line in text.decode().splitlines()[1:]]


def test_totals_equal_the_record_count_and_stats_agree(tmp_path, rng):
    batches = [random_batch(rng, 4000), random_batch(rng, 3000, v6=True)]
    for b in batches:
        b["dport"] = (b["dport"] % 300).astype(np.uint16)
    path = write(tmp_path, batches)
    env = dict(os.environ, SILK_CONFIG_FILE=TWOWAY)
    p = subprocess.run(tool("pyflow-uniq") + ["--fields=dport", "--values=records,bytes",
                                              "--delimited", path],
                       capture_output=True, env=env, check=True)
    rows = delimited_rows(p.stdout)
    assert sum(int(r[1]) for r in rows) == 7000
    assert sum(int(r[2]) for r in rows) == sum(int(b["bytes"].sum()) for b in batches)
    # pyflow-stats --count=0 ranks the same bins
    s = subprocess.run(tool("pyflow-stats") + ["--fields=dport", "--values=records,bytes",
                                               "--count=0", "--delimited", "--no-percents",
                                               path],
                       capture_output=True, env=env, check=True)
    srows = [r for r in (line.split("|") for line in s.stdout.decode().splitlines()[3:])]
    assert sorted(map(tuple, srows)) == sorted(map(tuple, rows))
    counts = [int(r[1]) for r in srows]
    assert counts == sorted(counts, reverse=True)


def test_pipes_compose(tmp_path, rng):
    """pyflow-filter | pyflow-uniq, through a real pipe."""
    path = write(tmp_path, [random_batch(rng, 2000)])
    env = dict(os.environ, SILK_CONFIG_FILE=TWOWAY)
    f = subprocess.Popen(tool("pyflow-filter") + ["--proto=0-127", "--pass=-", path],
                         stdout=subprocess.PIPE, env=env)
    u = subprocess.run(tool("pyflow-uniq") + ["--fields=protocol", "--no-titles",
                                              "--delimited"],
                       stdin=f.stdout, capture_output=True, env=env, check=True)
    f.wait()
    rows = [line.split("|") for line in u.stdout.decode().splitlines()]
    assert [int(r[0]) for r in rows] == sorted(int(r[0]) for r in rows)
    assert all(int(r[0]) < 128 for r in rows)
    b = api.read_flows(path)
    b = schema.concat(list(b)) if not isinstance(b, dict) else b
    assert sum(int(r[1]) for r in rows) == int((b["protocol"] < 128).sum())


def test_temp_directory_spill_through_the_tool(tmp_path, rng, monkeypatch, silk_data):
    monkeypatch.setenv("SILK_CONFIG_FILE", TWOWAY)
    monkeypatch.setattr(aggregate, "DEFAULT_BUDGET", 1 << 16)
    monkeypatch.setattr(aggregate, "MIN_HOLD", 1 << 14)
    tmp = tmp_path / "t"
    tmp.mkdir()
    rc, out, err = run_tool("uniq", ["--fields=sport", "--sip-distinct", "--sort-output",
                                     "--ipv6-policy=ignore", f"--temp-directory={tmp}",
                                     silk_data["DATA"]])
    assert rc == 0, err
    assert hashlib.md5(out).hexdigest() == "5bec172887009c1adadc4e6c939086f4"
    assert not os.listdir(tmp)


@pytest.mark.parametrize("args,message", [
    (["--fields=sip,records"], "--fields value 'records': a value, not a key"),
    (["--fields=bogus"], "--fields value 'bogus': unknown field"),
    (["--values=records"], "--fields switch is required"),
    (["--fields=sip", "--values=nosuch"], "--values value 'nosuch'"),
    (["--fields=sip", "--values=distinct:nosuch"], "--values value 'nosuch'"),
    (["--fields=sip", "--values=records", "--threshold=bytes=5"], "not among --values"),
    (["--fields=sip", "--threshold=bytes"], "--threshold 'bytes'"),
    (["--fields=sip", "--threshold=bytes=x-y"], "--threshold 'bytes=x-y'"),
    (["--fields=sip", "--values=bytes,bytes"], "duplicate value"),
    (["--fields=stime", "--bin-time=0"], "--bin-time '0'"),
    (["--fields=sip,sip"], "named twice"),
    (["--fields=sip", "--ipv6-policy=sideways"], "--ipv6-policy"),
])
def test_bad_usage_is_one_line(tmp_path, rng, args, message):
    path = write(tmp_path, [random_batch(rng, 10)])
    out = tmp_path / "out.txt"
    rc, _, err = run_tool("uniq", args + [f"--output-path={out}", path])
    assert rc == 1 and err.count("\n") == 1 and err.startswith("pyflow-uniq: "), err
    assert message in err, err
    assert not out.exists()


def test_unsorted_presorted_input_is_an_error(tmp_path, rng):
    b = random_batch(rng, 500)
    path = write(tmp_path, [b])
    out = tmp_path / "out.txt"
    rc, _, err = run_tool("uniq", ["--fields=sport", "--presorted-input",
                                   f"--output-path={out}", path])
    assert rc == 1 and "not sorted" in err and "--presorted-input" in err
    assert not out.exists()
    order = np.argsort(b["sport"], kind="stable")
    spath = write(tmp_path, [schema.take(b, order)], "sorted.pf")
    rc1, sorted_out, _ = run_tool("uniq", ["--fields=sport", "--presorted-input", spath])
    rc2, plain_out, _ = run_tool("uniq", ["--fields=sport", path])
    assert rc1 == rc2 == 0 and sorted_out == plain_out
