"""pyflow-count and flowtools.binning: SiLK's rwcount tests (same commands, same MD5s),
totals kept by every load scheme, the %.2f text, plots and errors."""

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, random_batch, shared
from hypothesis import given, settings
from hypothesis import strategies as st

from flowtools import api, binning, schema
from flowtools.cli import run as run_tool
from flowtools.tools import count as count_tool

BIN = os.path.join(ROOT, "bin")


@pytest.fixture(autouse=True)
def _plain_env(monkeypatch):
    for k in list(os.environ):
        if k.startswith(("SILK_", "PYFLOW_")):
            monkeypatch.delenv(k)


def count(tmp_path, *args):
    """pyflow-count run in this process; its text output."""
    out = tmp_path / f"out{len(os.listdir(tmp_path))}.txt"
    code = run_tool(count_tool.TOOL, count_tool.main, [*args, f"--output-path={out}"])
    assert code == 0
    return out.read_bytes()


def run(tool, *args, input=None, check=True):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SILK_", "PYFLOW_"))}
    p = subprocess.run([sys.executable, os.path.join(BIN, tool), *args], input=input,
                       capture_output=True, env=env)
    if check and p.returncode != 0:
        raise AssertionError(f"{tool} {args} exit {p.returncode}: {p.stderr.decode()}")
    return p


# src/rwcount/tests/*.pl: (MD5, arguments after the tool name; DATA/EMPTY/V6 are the
# fixtures). rwcount-no-switches accepts either of two MD5s; the first is this build's.
SILK_TESTS = [
    ("d56d49ba2cd419a0074be12b640777b3", "--bin-size=1 --load-scheme=1 DATA"),
    ("12285910e0c46b1d0c10fb648eed3bfe", "--bin-size=1800 --load-scheme=middle-spike DATA"),
    ("7196f1be88bdcc1b296e4df76b0e92ad",
     "--bin-size=1800 --load-scheme=time-proportional DATA"),
    ("39817571ebd011f54fa48c1c58fb99a6", "--bin-size=1800 --load-scheme=maximum-volume DATA"),
    ("dcf63bbf88f5acc1ad181ae316d79832", "--bin-size=1800 --load-scheme=minimum-volume DATA"),
    ("96bc0c8ef52aca21855f435742f8213d", "--bin-size=30 --load-scheme=2 DATA"),
    ("b96d11dae92cb09a9980a76ba94435a9",
     "--bin-size=3600 --load-scheme=end-spike --bin-slots DATA"),
    ("518f7eaca8f9d9e38a86681a1df7e414", "--bin-size=3600 --no-title DATA"),
    ("4427d543fa01929159d9419cc3a1110f",
     "--bin-size=86400 --load-scheme=start-spike --timestamp-format=epoch DATA"),
    ("32ccef40e0a3b477b1747abb48d07499", "--bin-size=900 --load-scheme=3 DATA"),
    ("a6692ea30fff26f4b4f1a475faf6526a",
     "--bin-size=3600 --load-scheme=1 --column-separator=/ --no-final-delimiter DATA"),
    ("8950b28226714bd815cce45ab7ff935f", "--bin-size=3600 --load-scheme=1 --delimited=, DATA"),
    ("c567b46a1e56d38962d57a3c8e88b00a", "--bin-size=3600 EMPTY"),
    ("c567b46a1e56d38962d57a3c8e88b00a", "EMPTY"),
    ("fbab4b85c63316bcfc365f424ed5b560",
     "--bin-size=3600 --load-scheme=0 --end-time=2009/02/14T19:30:00 DATA"),
    ("ca768d650b48fc42a4ee8534b643ecf7",
     "--bin-size=3600 --load-scheme=1 --timestamp-format=default DATA"),
    ("42225c369e5eab1756000cb6582cf354",
     "--bin-size=3600 --load-scheme=1 --timestamp-format=m/d/y DATA"),
    ("6767ae7692f04673bae59b15df1b1556", "--bin-size=0.500 --skip-zero --load-scheme=1 "
     "--start-time=2009/02/14T20:00:00 DATA"),
    ("2c7da978f6efb777cf8bf9de64c2120a", "--bin-size=0.1 --load-scheme=2 DATA"),
    ("11151f02e3e150ffd4b2915cd8d4f190", "--bin-size=3600 --load-scheme=1 EMPTY DATA V6 EMPTY"),
    ("11151f02e3e150ffd4b2915cd8d4f190", "--bin-size=3600 --load-scheme=1 V6 EMPTY V6 EMPTY"),
    ("11151f02e3e150ffd4b2915cd8d4f190",
     "--bin-size=3600 --load-scheme=1 EMPTY DATA EMPTY DATA"),
    ("07ebe40111c431517a65dd08656976e0",
     "--bin-size=3600 --load-scheme=1 --no-columns --no-title DATA"),
    ("db1962ccbbdc28b58007bea886e2a371", "DATA"),
    ("e7dda1e25cecd550585fe7e272ab0350", "--bin-size=3600 --load-scheme=0 "
     "--start-epoch=2009/02/12T20:00:00 --end-epoch=2009/02/13T20:00:00 DATA"),
    ("2fe9b77b2b66f7b38bcd0140066cfdd8", "--bin-size=3600 --load-scheme=0 --skip-zero "
     "--start-time=2009/02/11T20:30:00 DATA"),
    ("10c2ee2963d953f280162e5d337c3d9f",
     "--bin-size=604800 --load-scheme=0 --start-time=2009/02/10:00:00:00 DATA"),
    ("aac37bddeb60bb860c996649ccba5d26",
     "--bin-size=3600 --load-scheme=bin-uniform --start-time=2009/02/12T20:30:00 DATA"),
]


@pytest.mark.parametrize("md5,args", SILK_TESTS, ids=[a for _, a in SILK_TESTS])
def test_silk_rwcount(tmp_path, md5, args):
    names = {"DATA": ("silk-tests", "data.rwf"), "EMPTY": ("silk-tests", "empty.rwf"),
             "V6": ("silk-tests", "data-v6.rwf")}
    argv = [shared(*names[a]) if a in names else a for a in args.split()]
    assert hashlib.md5(count(tmp_path, *argv)).hexdigest() == md5


def test_silk_rwcount_pipelines(tmp_path):
    """rwcount-copy-input, -stdin and -reversed-input: through real pipes."""
    data = shared("silk-tests", "data.rwf")
    first = run("pyflow-count", "--bin-size=3600", "--load-scheme=1", "--output-path=/dev/null",
                "--copy-input=stdout", data).stdout
    text = run("pyflow-count", "--bin-size=86400", "--load-scheme=1",
               "--timestamp-format=epoch", input=first).stdout
    assert hashlib.md5(text).hexdigest() == "4427d543fa01929159d9419cc3a1110f"
    with open(data, "rb") as f:
        text = run("pyflow-count", "--bin-size=3600", "--load-scheme=1", input=f.read()).stdout
    assert hashlib.md5(text).hexdigest() == "ca768d650b48fc42a4ee8534b643ecf7"
    rev = run("pyflow-sort", "--fields=stime", "--reverse", data).stdout
    text = run("pyflow-count", "--load-scheme=1", input=rev).stdout
    assert hashlib.md5(text).hexdigest() == "cb5efde20d8f8b51a852fff7ea6d0772"


def test_reference_examples(tmp_path):
    """The demo of the behaviour reference (§1.6), line for line."""
    t0 = 1_234_396_800_000
    b = schema.make_batch(4, stime=[t0 + 1000, t0 + 2250, t0 + 60_000, t0 + 120_000],
                          duration=[1500, 750, 0, 10_000], packets=[10, 5, 1, 20],
                          bytes=[1500, 800, 120, 4000])
    path = str(tmp_path / "demo4.pf")
    api.write_flows(path, [b])
    assert count(tmp_path, path).decode().splitlines() == [
        "               Date|        Records|               Bytes|          Packets|",
        "2009/02/12T00:00:00|           2.00|             2300.00|            15.00|",
        "2009/02/12T00:00:30|           0.00|                0.00|             0.00|",
        "2009/02/12T00:01:00|           1.00|              120.00|             1.00|",
        "2009/02/12T00:01:30|           0.00|                0.00|             0.00|",
        "2009/02/12T00:02:00|           1.00|             4000.00|            20.00|"]
    assert count(tmp_path, "--bin-size=3600", "--load-scheme=1", path).decode().splitlines() \
        == ["               Date|        Records|               Bytes|          Packets|",
            "2009/02/12T00:00:00|           4.00|             6420.00|            36.00|"]


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32), st.sampled_from(sorted(binning.SCHEMES)),
       st.sampled_from([7, 1000, 30_000, 3_600_000, 90_000_000, 700_000_000]))
def test_every_scheme_keeps_the_totals(seed, scheme, size):
    """Without a start or end time nothing is dropped: records, bytes and packets over all
    bins add up to the input's, whatever the scheme (maximum and minimum count a record
    once per bin, so their records add up to the bins each record touches; rwcount then
    prints the bins from the first to the last with bytes)."""
    rng = np.random.default_rng(seed)
    b = random_batch(rng, 300)
    b["duration"] = rng.integers(0, min(200_000, 40 * size), 300).astype(np.uint32)
    c = binning.Counter(size, scheme)
    for lo in range(0, 300, 97):  # several batches, as a reader gives them
        c.add(b["stime"][lo:lo + 97], b["duration"][lo:lo + 97], b["bytes"][lo:lo + 97],
              b["packets"][lo:lo + 97])
    flows, nbytes, npkts = c.flows, c.bytes, c.pkts  # every bin, printed or not
    total_b, total_p = b["bytes"].astype(float).sum(), b["packets"].astype(float).sum()
    if scheme in ("maximum-volume", "minimum-volume"):
        s = b["stime"] - c.wmin
        e = s + b["duration"].astype(np.int64)
        spans = e // size - s // size + 1
        assert flows.sum() == spans.sum()
        if scheme == "maximum-volume":
            assert nbytes.sum() == pytest.approx((b["bytes"] * spans).astype(float).sum())
        else:
            one = spans == 1
            assert nbytes.sum() == pytest.approx(b["bytes"][one].astype(float).sum())
        return
    assert flows.sum() == pytest.approx(300)
    assert nbytes.sum() == pytest.approx(total_b, rel=1e-9)
    assert npkts.sum() == pytest.approx(total_p, rel=1e-9)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.floats(0, 2.0**44, allow_nan=False),
                 st.integers(0, 10**12).map(lambda k: k / 1000),
                 st.integers(0, 10**9).map(lambda k: k / 8)))
def test_fixed2_is_printf(x):
    mat, lens = binning.fixed2(np.array([x, 0.0, 12.345]))
    got = bytes(mat[0, mat.shape[1] - lens[0]:]).decode()
    assert got == f"{x:.2f}"


def test_fixed2_halves_and_large_values():
    values = np.array([0.125, 0.375, 2.675, 1e15 + 0.5, 2.0**60, 0.005, 99.995])
    mat, lens = binning.fixed2(values)
    texts = [bytes(m[len(m) - n:]).decode() for m, n in zip(mat, lens, strict=True)]
    assert texts == [f"{v:.2f}" for v in values]


def test_time_proportional_splits_by_milliseconds():
    """A 3 s record from 1.5 s into a 1 s bin series: half, 1, 1, half."""
    c = binning.Counter(1000, "time-proportional")
    t0 = 1_000_000_000_000
    c.add(np.array([t0 + 1500]), np.array([2999]), np.array([3000]), np.array([30]))
    _, _, flows, nbytes, npkts = c.rows()
    assert flows.tolist() == pytest.approx([1 / 6, 1 / 3, 1 / 3, 1 / 6])
    assert nbytes.tolist() == [500.0, 1000.0, 1000.0, 500.0]
    assert npkts.tolist() == [5.0, 10.0, 10.0, 5.0]


@pytest.mark.parametrize("args,message", [
    (["--bin-size=0"], "invalid --bin-size '0'"),
    (["--bin-size=abc"], "invalid --bin-size 'abc'"),
    (["--bin-size=-5"], "invalid --bin-size '-5'"),
    (["--load-scheme=bogus"], "invalid --load-scheme: 'bogus' is not recognized"),
    (["--load-scheme=m"], "invalid --load-scheme: 'm' is ambiguous"),
    (["--start-time=2009/13/01"], "invalid --start-time '2009/13/01'"),
    (["--start-time=2009/02/13", "--end-time=2009/02/12"], "--end-time is less than"),
    (["--moving-average=0"], "invalid --moving-average"),
])
def test_errors_are_one_line(tmp_path, args, message):
    b = random_batch(np.random.default_rng(1), 10)
    path = str(tmp_path / "in.pf")
    api.write_flows(path, [b])
    p = run("pyflow-count", *args, path, f"--output-path={tmp_path / 'out.txt'}", check=False)
    assert p.returncode == 1
    err = p.stderr.decode()
    assert err.count("\n") == 1 and err.startswith("pyflow-count: ") and message in err, err
    assert not os.path.exists(tmp_path / "out.txt")


def test_plot(tmp_path, rng):
    b = random_batch(rng, 2000)
    path = str(tmp_path / "in.pf")
    api.write_flows(path, [b])
    png = tmp_path / "series.png"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        p = run("pyflow-count", f"--plot={png}", path, check=False)
        assert p.returncode == 1 and b"matplotlib" in p.stderr and not png.exists()
        return
    text = count(tmp_path, "--bin-size=300", f"--plot={png}", "--plot-by=sensor",
                 "--moving-average=3", "--plot-values=bytes", path)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert text == count(tmp_path, "--bin-size=300", path)  # the text is unchanged
    facets = tmp_path / "facets.png"
    count(tmp_path, "--bin-size=300", f"--plot={facets}", "--plot-by=sensor",
          "--plot-facets", path)
    assert facets.stat().st_size > 1000


@pytest.mark.parametrize("tool", ["count", "stats"])
def test_plot_without_matplotlib_is_one_clear_line(tmp_path, rng, tool):
    """With matplotlib absent (hidden here), --plot fails before reading, in one line."""
    path = str(tmp_path / "in.pf")
    api.write_flows(path, [random_batch(rng, 100)])
    png = tmp_path / "x.png"
    extra = ["--fields=sip"] if tool == "stats" else []
    code = ("import sys; sys.modules['matplotlib'] = None; "
            f"sys.path.insert(0, {ROOT!r}); from flowtools.cli import entry; "
            f"sys.argv = ['pyflow-{tool}', '--plot={png}', *{extra!r}, {path!r}]; "
            f"entry('flowtools.tools.{tool}')")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 1, p.stderr
    assert p.stderr.count("\n") == 1 and "matplotlib" in p.stderr, p.stderr
    assert p.stderr.startswith(f"pyflow-{tool}: ") and not png.exists()
