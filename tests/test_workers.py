import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT

from flowtools import api, workers


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("archive")
    p = subprocess.run([sys.executable, f"{ROOT}/bin/pyflow-gen", f"--data-rootdir={root}",
                        "--flows=30000", "--seed=5", "--start-date=2024/03/01", "--hours=4",
                        "--sensors=S0,S1"], capture_output=True)
    assert p.returncode == 0, p.stderr
    names = api.archive_files(str(root), "2024/03/01", None, types=["all"])
    assert len(names) >= 16
    return names


def _bytes_by_port(batch):
    return np.bincount(batch["dport"], weights=batch["bytes"].astype(float),
                       minlength=65536)


@pytest.mark.parametrize("parallel", [False, True])
def test_scan_sees_every_block_once_in_order(files, parallel):
    runs = list(workers.scan(files, ["dport", "bytes"], _bytes_by_port,
                             combine=lambda parts: np.sum(parts, axis=0), parallel=parallel))
    want = np.zeros(65536)
    times = []
    for name in files:
        for b in api.read_flows(name):
            want += _bytes_by_port(b)
            times.append(b["stime"])
    np.testing.assert_array_equal(np.sum(runs, axis=0), want)
    seen = [t for r in workers.scan(files, ["stime"], lambda b: b["stime"],
                                    parallel=parallel) for t in r]
    np.testing.assert_array_equal(np.concatenate(seen), np.concatenate(times))


def test_scan_decodes_only_the_columns_asked_for(files):
    seen = {k for r in workers.scan(files[:3], ["sport"], lambda b: set(b)) for s in r
            for k in s}
    assert seen <= {"sport", "ipv6"}


def test_runs_stop_at_a_count_or_a_size(tmp_path):
    sizes = [10, 10, 50, 5, 5, 5, 100, 1]
    names = []
    for i, n in enumerate(sizes):
        (tmp_path / f"f{i}").write_bytes(b"x" * n)
        names.append(str(tmp_path / f"f{i}"))
    runs = workers._runs(names + [str(tmp_path / "absent")], 3, 30)
    assert [[int(n.rsplit("f", 1)[1]) if "absent" not in n else -1 for n in r]
            for r in runs] == [[0, 1], [2], [3, 4, 5], [6], [7, -1]]

