"""The study scripts of examples/, run as a user would, checked against numpy references."""

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, shared

from flowtools import api, schema

START, END = "2024/03/01:00", "2024/03/01:05"


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("archive")
    p = subprocess.run([sys.executable, f"{ROOT}/bin/pyflow-gen", f"--data-rootdir={root}",
                        "--flows=30000", "--seed=2", "--start-date=2024/03/01", "--hours=6",
                        "--sensors=S0,S1"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return root


def _example(name, *args):
    p = subprocess.run(["bash", os.path.join(ROOT, "examples", name), *map(str, args)],
                       capture_output=True, text=True, env=dict(os.environ, PYTHON=sys.executable))
    assert p.returncode == 0, p.stderr
    return p.stdout


def _inbound(root, start=START, end=END):
    """Inbound records (types in and inweb) as sIP, dIP integer columns."""
    b = schema.to_v6(api.archive_flows(str(root), start=start, end=end,
                                       types=["in", "inweb"], columns=["stime", "sip", "dip"]))
    sip = b["sip"][:, 0].astype(object) * 2**64 + b["sip"][:, 1].astype(object)
    dip = b["dip"][:, 0].astype(object) * 2**64 + b["dip"][:, 1].astype(object)
    return sip, dip


def _line(out, prefix):
    return [line for line in out.splitlines() if line.startswith(prefix)]


def test_vlf_study_counts(archive, tmp_path):
    out = _example("vlf.sh", archive, START, END, tmp_path)
    sip, dip = _inbound(archive)
    flows = {}
    dests = {}
    for s, d in zip(sip, dip, strict=True):
        flows[s] = flows.get(s, 0) + 1
        dests.setdefault(s, set()).add(d)
    # an IPv4-keyed bag becomes an IPv6 one when IPv6 records arrive (as rwbag's does)
    v4 = set(flows)
    f = {s for s in v4 if flows[s] <= 10}
    d = {s for s in v4 if len(dests[s]) == 1}
    vlf = f & d
    want = [f"vlf: {len(sip)} inbound records from {START} to {END}",
            f"vlf: {len(v4)} sources",
            f"vlf: {len(f)} sources sent at most 10 flows",
            f"vlf: {len(d)} sources contacted a single destination",
            f"vlf: {len(vlf)} sources are both (very low frequency)",
            f"vlf: {sum(flows[s] for s in vlf)} flows from them in {tmp_path}/vlf-flows.pf"]
    assert out.splitlines() == want
    assert 0 < len(vlf) < len(v4)


def test_active_hours_bag(archive, tmp_path):
    out = _example("active-hours.sh", archive, START, END, tmp_path)
    hours = {}
    for h in range(6):
        stamp = f"2024/03/01:{h:02d}"
        sip, _ = _inbound(archive, stamp, stamp)
        for s in set(sip):
            hours[s] = hours.get(s, 0) + 1
    assert _line(out, "active-hours: 6 hours")[0].startswith(
        f"active-hours: 6 hours, {len(hours)} sources")
    table = out.splitlines()[out.splitlines().index(
        "active-hours: sources by hours active (hours|sources|)") + 1:]
    got = {int(a): int(b) for a, b, _ in (line.split("|") for line in table)}
    assert got == {k: list(hours.values()).count(k) for k in set(hours.values())}
    assert max(got) > 1


def test_honeypot_port_study(tmp_path):
    import gzip
    log = shared("marx", "marx.csv.gz")
    rows = tmp_path / "marx.csv"
    with gzip.open(log, "rt") as src, open(rows, "w") as dst:
        for i, line in enumerate(src):
            if i > 8000:
                break
            dst.write(line)
    root = tmp_path / "root"
    subprocess.run(["bash", os.path.join(ROOT, "examples", "marx-import.sh"), str(root),
                    str(rows)], check=True, capture_output=True,
                   env=dict(os.environ, PYTHON=sys.executable))
    out = _example("honeypot-ports.sh", root, tmp_path / "out")
    import csv
    with open(rows) as f:
        data = list(csv.DictReader(f))
    protocols = {}
    for r in data:
        protocols[r["proto"]] = protocols.get(r["proto"], 0) + 1
    section = out.split("== records per protocol\n")[1].split("==")[0].splitlines()[1:]
    got = {line.split("|")[0].strip(): int(line.split("|")[1]) for line in section}
    names = {"TCP": "6", "UDP": "17", "ICMP": "1"}
    assert got == {names.get(k, k): v for k, v in protocols.items()}
    ports = {}
    for r in data:
        if r["proto"] == "TCP":
            ports[int(r["dpt"])] = ports.get(int(r["dpt"]), 0) + 1
    top = out.split("== top 10 TCP destination ports\n")[1].splitlines()[3]
    assert int(top.split("|")[1]) == max(ports.values())
    assert "unique sources per day per sensor" in out
    if "the chart:" in out:
        assert (tmp_path / "out" / "sources-per-day.png").stat().st_size > 1000
    days = np.loadtxt(tmp_path / "out" / "sources-per-day.txt", delimiter="|", skiprows=1,
                      usecols=2)
    assert days.sum() == len({(r["host"], r["datetime"][:10], r["src"]) for r in data})
