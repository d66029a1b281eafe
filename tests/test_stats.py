"""pyflow-stats: SiLK's own rwstats tests (their MD5s), limits and percentages against
pyflow-uniq, protocol statistics, --plot and bad input."""

import hashlib
import os

import numpy as np
import pytest
import test_uniq
from conftest import random_batch
from test_uniq import TWOWAY, need_silk, run_tool, silk_pipeline, write

silk_data = test_uniq.silk_data   # the session fixture of SiLK's fixtures as pyflow files

SILK_STATS = [
    ("6bd91d202c8785bd039df13ebae22efa",
     "stats --fields=etime --bin-time=3600 --values=bytes --count=100 DATA"),
    ("dd9100d5e4079e63c2767a69c37ac4d3",
     "stats --fields=stime,etime,dur --bin-time=3600 --values=bytes,packets,flows "
     "--count=500 DATA"),
    ("f9f8cd6ac64143b47b1fc91c66a36d1f",
     "stats --fields=stime,etime --bin-time=3600 --values=bytes,packets,flows "
     "--count=500 DATA"),
    ("12579d4e773d8af6290b0dea4e552e64",
     "stats --fields=stime --bin-time=3600 --values=packets --count=100 DATA"),
    ("32aca6a2c406f4524f62083b857226b1",
     "stats --count=9 --fields=dip --column-sep=/ --top --ipv6-policy=ignore DATA"),
    ("09dc844c11f47ce482e1c6ca4826060d",
     "stats --fields=sip --top --count=10 --output-path=/dev/null --copy-input=stdout "
     "DATA | stats --fields=dip --count=9 --ipv6-policy=ignore"),
    ("7ac81abd69e6be8a75bc2a199cc2b625",
     "stats --fields=dip --count=9 --delimited=, --top --ipv6-policy=ignore DATA"),
    ("cc3dbb0dc6981d21e0fd22cbdb1b315c",
     "stats --fields=dip --values=records --percentage=4 --ipv6-policy=ignore DATA"),
    ("f12b22035c6456a4d0572d9093ee0096",
     "stats --fields=dip --values=packets --threshold=25000 --top V6"),
    ("b0917e13da4ea4396498f1fc69d7945d",
     "stats --fields=dip --values=packets --threshold=25000 --top --ipv6-policy=ignore "
     "DATA"),
    ("1035013a65322c1fbf7a166e70c3fc06",
     "stats --dip=16 --values=bytes --count=10 --bottom --ipv6-policy=ignore DATA"),
    ("056642fdbae32c33e6e1b4948721eb62",
     "filter --dport=0-66,69-1023,8080 --pass=- DATA | stats --fields=dport --bottom "
     "--values=bytes --count=20"),
    ("5e45a97228ead801f3e2d37702012e0d",
     "stats --fields=dport --values=dip-distinct,records --threshold=5000 "
     "--ipv6-policy=ignore DATA"),
    ("50f5f16e92e627def9f7d5f9a6e58b7b",
     "filter --dport=68 --fail=- DATA | stats --fields=proto,dport,iType,iCode "
     "--count=16"),
    ("6d4f0df0a5160f5f41a0d7fb68b901db",
     "stats --fields=dport --threshold=8000 --top DATA"),
    ("801e3a96fd06d45f22ed09e2d5fa871f",
     "stats --fields=dip --count=10 --top --ipv6-policy=ignore --presorted-input EMPTY"),
    ("801e3a96fd06d45f22ed09e2d5fa871f",
     "stats --fields=dip --count=10 --top --ipv6-policy=ignore EMPTY"),
    ("b7eb674a49a5a452eee1aac031dd08cf",
     "filter --dport=68 --fail=- DATA | stats --fields=proto,iType,iCode,dport "
     "--count=16"),
    ("77646ee10637c1741b66f381d6c2e8f6",
     "filter --proto=1 --pass=- DATA | stats --fields=iType,iCode --byte "
     "--percentage=5"),
    ("9c7a742c3348d750d56e0e39afb553ad",
     "stats --fields=sip,dip --values=bytes --count=8 --top --ip-format=decimal "
     "--ipv6-policy=ignore DATA"),
    ("6acc4b5d8569198f2f414125d6239dfd",
     "stats --fields=dport --values=bytes --count=20 --top EMPTY V6 EMPTY DATA"),
    ("6acc4b5d8569198f2f414125d6239dfd",
     "stats --fields=dport --values=bytes --count=20 --top V6 V6 EMPTY"),
    ("6acc4b5d8569198f2f414125d6239dfd",
     "stats --fields=dport --values=bytes --count=20 --top DATA EMPTY DATA"),
    ("f125a8590fa4d3009335e85b8a3566b2",
     "stats --fields=dip --count=9 --top --no-column --column-sep=, "
     "--ipv6-policy=ignore DATA"),
    ("64af832cf406c8df000906b40741b461",
     "stats --fields=dip --count=9 --top --no-titles --ipv6-policy=ignore DATA"),
    ("ed6dc3497209dc2632bc77a289fb794f",
     "stats --overall-stats DATA"),
    ("1262d14f8982acea841db26629b74b2a",
     "stats --fields=protocol --values=packets --count=15 --bottom DATA"),
    ("e8ed04713a21d27fad93e200d37c675d",
     "stats --fields=proto --values=distinct:sip,distinct:dip --count=5 --no-percent "
     "V6"),
    ("b4685edb1ad6e3be32ab1d5295fab0ea",
     "stats --fields=proto --values=sip-distinct,dip-distinct --count=5 "
     "--ipv6-policy=ignore DATA"),
    ("886ac7910929a3e83305568a00c88cff",
     "stats --detail-proto-stats=1 DATA"),
    ("3b0ec45c576fde51676566b8f7e53fb0",
     "stats --fields=protocol --values=packets --count=15 DATA"),
    ("2dfd16850cabde1372ab1270b9fc0386",
     "stats --fields=sip,dip --values=bytes --count=8 --top V6"),
    ("16389d9154c30cf9e58ad7ea5afdeab4",
     "stats --fields=sip,dip --values=bytes --count=8 --top --ipv6-policy=ignore DATA"),
    ("b8064d7870a4e3077cb84b61865b4979",
     "filter --type=in,inweb --pass=stdout DATA | stats --fields=sport,dport --count=5"),
    ("a3ff9dd764d7f3a206d011467d8a679d",
     "stats --fields=sip --values=bytes --count=100 --top --ipv6-policy=ignore DATA"),
    ("91616a2320bd0ac2470df097a5d4f2a3",
     "stats --fields=sip --percentage=4 --top V6"),
    ("63b20207e102b276b30127124df41783",
     "stats --fields=sip --percentage=4 --top --ipv6-policy=ignore DATA"),
    ("d772133f1a95ac50fd6196ea81ffdf15",
     "stats --sip=24 --values=packets --percentage=1 --top --ipv6-policy=ignore DATA"),
    ("d79a4dbf5917c4dd712e1ca4a00780e9",
     "stats --sip=24 --values=packets --percentage=2 --top --ipv6-policy=ignore DATA"),
    ("0e0d04411ae51f6b3f307d369a73f6c2",
     "filter --sport=0-66,69-1023,8080 --pass=- DATA | stats --fields=sport "
     "--values=records --bottom --count=4"),
    ("c83dd71269726bed997713ac037a0caa",
     "stats --fields=sport --values=sip-distinct --threshold=5000 --ipv6-policy=ignore "
     "DATA"),
    ("8fb9d8cf9d4ce725f623156e25c50a7d",
     "stats --fields=sport,sip --values=packets,bytes --count=10 --ipv6-policy=ignore "
     "DATA"),
    ("964aedf5104f9f7407fdbd7ae76d9486",
     "stats --fields=sport --percentage=5 DATA"),
    ("09dc844c11f47ce482e1c6ca4826060d",
     "stats --fields=dip --top --count=9 --ipv6-policy=ignore -"),
]


@need_silk
@pytest.mark.parametrize("md5,cmd", SILK_STATS, ids=[c for _, c in SILK_STATS])
def test_silk_rwstats(md5, cmd, silk_data, tmp_path, monkeypatch):
    monkeypatch.setenv("SILK_CONFIG_FILE", TWOWAY)
    for var in ("SILK_IP_FORMAT", "SILK_IPV6_POLICY", "SILK_TIMESTAMP_FORMAT"):
        monkeypatch.delenv(var, raising=False)
    assert hashlib.md5(silk_pipeline(cmd, silk_data, tmp_path)).hexdigest() == md5


@need_silk
def test_silk_layout_in_full(silk_data, monkeypatch):
    """The text itself, for one of SiLK's cases (rwstats-proto-top-pkt-c15)."""
    monkeypatch.setenv("SILK_CONFIG_FILE", TWOWAY)
    rc, out, _ = run_tool("stats", ["--fields=protocol", "--values=packets", "--count=15",
                                    silk_data["DATA"]])
    assert out.decode() == (
        "INPUT: 501876 Records for 3 Bins and 144556974 Total Packets\n"
        "OUTPUT: Top 15 Bins by Packets\n"
        "pro|        Packets|  %Packets|   cumul_%|\n"
        "  6|      144254362| 99.790662| 99.790662|\n"
        " 17|         155528|  0.107589| 99.898252|\n"
        "  1|         147084|  0.101748|100.000000|\n")


def _rows(out, skip=3):
    return [line.split("|") for line in out.decode().splitlines()[skip:]]


def test_limits_agree_with_uniq(tmp_path, rng):
    b = random_batch(rng, 5000)
    b["sport"] = (b["sport"] % 200).astype(np.uint16)
    path = write(tmp_path, [b])
    rc, out, _ = run_tool("uniq", ["--fields=sport", "--values=bytes,records",
                                   "--delimited", "--no-titles", path])
    bins = {int(r[0]): (int(r[1]), int(r[2])) for r in
            (line.split("|") for line in out.decode().splitlines())}
    total = sum(v[0] for v in bins.values())
    ranked = sorted(bins.items(), key=lambda kv: (-kv[1][0], kv[0]))
    # --count
    rc, out, _ = run_tool("stats", ["--fields=sport", "--values=bytes,records",
                                    "--count=7", "--delimited", path])
    rows = _rows(out)
    assert [(int(r[0]), int(r[1])) for r in rows] == [(k, v[0]) for k, v in ranked[:7]]
    assert out.decode().splitlines()[0] == \
        f"INPUT: 5000 Records for {len(bins)} Bins and {total} Total Bytes"
    pct = [float(r[3]) for r in rows]
    cum = [float(r[4]) for r in rows]
    assert np.allclose(np.cumsum(pct), cum, atol=1e-5)
    assert np.allclose(pct, [100.0 * v[0] / total for _, v in ranked[:7]], atol=1e-5)
    # --threshold and --percentage keep the bins at or above the limit
    limit = ranked[20][1][0]
    rc, out, _ = run_tool("stats", ["--fields=sport", "--values=bytes", f"--threshold={limit}",
                                    "--delimited", path])
    assert [int(r[0]) for r in _rows(out)] == [k for k, v in ranked if v[0] >= limit]
    rc, out, _ = run_tool("stats", ["--fields=sport", "--values=bytes", "--percentage=1",
                                    "--delimited", path])
    cut = int(1.0 * total / 100.0)
    assert [int(r[0]) for r in _rows(out)] == [k for k, v in ranked if v[0] >= cut]
    # --bottom
    rc, out, _ = run_tool("stats", ["--fields=sport", "--values=bytes", "--count=5",
                                    "--bottom", "--delimited", path])
    low = sorted(bins.items(), key=lambda kv: (kv[1][0], kv[0]))[:5]
    assert [int(r[0]) for r in _rows(out)] == [k for k, _ in low]
    assert out.decode().splitlines()[1] == "OUTPUT: Bottom 5 Bins by Bytes"


@pytest.mark.parametrize("count", [1, 2, 4, 5, 6, 7])
@pytest.mark.parametrize("bottom", [False, True])
def test_top_n_ties_keep_key_order(tmp_path, rng, count, bottom):
    """Bins tied on the value rank in key order, also where the cut falls among them."""
    per_port = {10: 3, 20: 5, 30: 5, 40: 2, 50: 5, 60: 5, 70: 2}
    b = random_batch(rng, sum(per_port.values()))
    b["sport"] = np.repeat(np.array(list(per_port), np.uint16), list(per_port.values()))
    path = write(tmp_path, [b])
    rc, out, _ = run_tool("stats", ["--fields=sport", "--values=records", f"--count={count}",
                                    "--delimited", "--no-percents"]
                          + (["--bottom"] if bottom else []) + [path])
    ranked = sorted(per_port, key=lambda p: (per_port[p] if bottom else -per_port[p], p))
    assert [int(r[0]) for r in _rows(out)] == ranked[:count]


def test_no_bins_above_threshold(tmp_path, rng):
    path = write(tmp_path, [random_batch(rng, 100)])
    rc, out, _ = run_tool("stats", ["--fields=sport", "--threshold=1000", path])
    assert rc == 0 and out.decode().splitlines()[1] == \
        "OUTPUT: No bins above threshold of 1000 Records"
    assert len(out.splitlines()) == 2


@need_silk
def test_protocol_statistics_text(silk_data, monkeypatch):
    monkeypatch.setenv("SILK_CONFIG_FILE", TWOWAY)
    rc, out, _ = run_tool("stats", ["--overall-stats", "--detail-proto-stats=17",
                                    silk_data["DATA"]])
    text = out.decode()
    assert text.startswith("FLOW STATISTICS--ALL PROTOCOLS:  501876 records\n*BYTES min ")
    assert "\nFLOW STATISTICS--PROTOCOL 17:  155528/501876 records\n" in text
    lines = text.splitlines()
    # every interval table's counts add up to its records
    tables = [i for i, line in enumerate(lines) if line.strip().startswith("interval_max")]
    assert len(tables) == 6
    for i in tables:
        counts = [int(lines[i + k].split("|")[1]) for k in range(1, 11)]
        assert sum(counts) in (501876, 155528)


def test_plot(tmp_path, rng):
    path = write(tmp_path, [random_batch(rng, 500)])
    png = tmp_path / "top.png"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        rc, _, err = run_tool("stats", ["--fields=sport", "--count=5", f"--plot={png}", path])
        assert rc == 1 and "matplotlib" in err and not png.exists()
        return
    rc, out, err = run_tool("stats", ["--fields=sport", "--count=5", f"--plot={png}", path])
    assert rc == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rc, plain, _ = run_tool("stats", ["--fields=sport", "--count=5", path])
    assert out == plain                      # the text is unchanged
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp") or p.startswith(".")]


@pytest.mark.parametrize("args,message", [
    (["--fields=sip"], "no stopping condition"),
    (["--fields=sip", "--count=3", "--threshold=5"], "only give one of"),
    (["--fields=sip", "--count=-3"], "--count '-3'"),
    (["--fields=sip", "--percentage=101"], "--percentage '101'"),
    (["--fields=sip", "--count=3", "--values=sTime-Earliest"], "--values value"),
    (["--fields=sip", "--count=3", "--top", "--bottom"], "--top or --bottom"),
    (["--count=3"], "--fields switch is required"),
    (["--fields=sip", "--percentage=3", "--presorted-input"], "--percentage"),
    (["--sip", "--sport", "--count=3"], "not supported"),
    (["--detail-proto-stats=300"], "--detail-proto-stats"),
])
def test_bad_usage_is_one_line(tmp_path, rng, args, message):
    path = write(tmp_path, [random_batch(rng, 10)])
    out = tmp_path / "out.txt"
    rc, _, err = run_tool("stats", args + [f"--output-path={out}", path])
    assert rc == 1 and err.count("\n") == 1 and err.startswith("pyflow-stats: "), err
    assert message in err, err
    assert not out.exists()
