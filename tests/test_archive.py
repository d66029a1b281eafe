"""Writing into the archive: layout, appends, and crash safety."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
from conftest import ROOT, assert_batches_equal, random_batch
from hypothesis import given, settings
from hypothesis import strategies as st

from flowtools import archive, schema, siteconf
from flowtools.flowfile import FlowReader

CONFIG = siteconf.load(os.path.join(ROOT, "etc", "silk.conf"))


def read_file(path):
    with open(path, "rb") as f:
        return schema.concat(list(FlowReader(f, path)))


def all_files(root, temps=False):
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs
                  if temps or not f.startswith("."))


def test_split_into_hourly_files(rng, tmp_path):
    b = random_batch(rng, 5000)
    b["stime"] = b["stime"] + rng.integers(0, 3, 5000) * archive.HOUR_MS
    b["flowtype"] = rng.choice([0, 1, 2], 5000).astype(np.uint8)
    b["sensor"] = rng.choice([0, 3], 5000).astype(np.uint16)
    w = archive.ArchiveWriter(str(tmp_path), CONFIG, {"history": ["t"]})
    w.write(b)
    w.close()
    files = all_files(tmp_path)
    assert len(files) == 3 * 3 * 2 and w.records == 5000
    total = 0
    for path in files:
        rel = os.path.relpath(path, tmp_path)
        ft, sensor, hour = CONFIG.parse_path(rel)
        got = read_file(path)
        assert (got["flowtype"] == ft).all() and (got["sensor"] == sensor).all()
        assert ((got["stime"] // archive.HOUR_MS) * archive.HOUR_MS == hour).all()
        mask = (b["flowtype"] == ft) & (b["sensor"] == sensor) & \
            (b["stime"] // archive.HOUR_MS * archive.HOUR_MS == hour)
        assert_batches_equal(schema.take(b, mask), got)  # input order kept
        total += len(got["stime"])
    assert total == 5000
    assert any("inweb/" in f and "/iw-S3_" in f for f in files)


def test_files_encoded_on_workers_while_reading_on(rng, tmp_path, monkeypatch):
    """With processes, buffers are encoded by workers while the next fills: many flushes,
    files appended to across them, every record in its file in input order."""
    monkeypatch.setattr(archive.ArchiveWriter, "FORK_RECORDS", 0)
    b = random_batch(rng, 12000, v6=True)
    b["stime"] = b["stime"] + rng.integers(0, 4, 12000) * archive.HOUR_MS
    b["flowtype"] = rng.choice([0, 1, 2, 3], 12000).astype(np.uint8)
    b["sensor"] = rng.choice([0, 1, 3], 12000).astype(np.uint16)
    w = archive.ArchiveWriter(str(tmp_path), CONFIG, {"history": ["t"]}, processes=True,
                              buffer_records=2500)
    for at in range(0, 12000, 1000):
        w.write(schema.take(b, slice(at, at + 1000)))
    w.close()
    files = all_files(tmp_path)
    assert len(files) == 4 * 4 * 3 and w.records == 12000 and len(w.files) == len(files)
    for path in files:
        ft, sensor, hour = CONFIG.parse_path(os.path.relpath(path, tmp_path))
        mask = (b["flowtype"] == ft) & (b["sensor"] == sensor) & \
            (b["stime"] // archive.HOUR_MS * archive.HOUR_MS == hour)
        assert_batches_equal(schema.take(b, mask), read_file(path))


def _stream(tmp_path, batches, name="in.pf", compression="zstd"):
    from flowtools.flowfile import FlowWriter
    path = str(tmp_path / name)
    with open(path, "wb") as f:
        w = FlowWriter(f, {}, compression, block_records=700)
        for b in batches:
            w.write(b)
        w.close()
    return path


def _mixed(rng, n, v6):
    b = random_batch(rng, n, v6=v6)
    b["stime"] = np.sort(b["stime"] + rng.integers(0, 3, n) * archive.HOUR_MS)
    b["flowtype"] = rng.choice([0, 1, 2], n).astype(np.uint8)
    b["sensor"] = rng.choice([0, 3], n).astype(np.uint16)
    return b


def test_write_blocks_stores_a_stream_as_write_does(rng, tmp_path, monkeypatch):
    """Blocks handed to workers undecoded (runs of a few blocks here) give every file the
    records, in input order, that decoded batches give it; IPv4 and IPv6 blocks mixed."""
    monkeypatch.setattr(archive, "_TASK_RECORDS", 1500)
    batches = [_mixed(rng, 3000, False), _mixed(rng, 2500, True), _mixed(rng, 800, False),
               _mixed(rng, 1000, True)]
    batches[3]["sip"][5] = [1, 2]  # an IPv4 record kept 128-bit: blocks decoded whole
    batches[3]["ipv6"][5] = False
    path = _stream(tmp_path, batches)
    with open(path, "rb") as f:
        split = [p.load().decode_split() for p in FlowReader(f, path).blocks()]
    assert any(s is None for s in split) and any(s is not None for s in split)
    import io as _io
    for how in ("blocks", "piped", "batches"):
        w = archive.ArchiveWriter(str(tmp_path / how), CONFIG, {}, processes=True)
        with open(path, "rb") as f:
            # a file's blocks go to the workers by place, a stream's by value
            r = FlowReader(_io.BytesIO(f.read()) if how == "piped" else f, path)
            if how == "batches":
                for b in r:
                    w.write(b)
            else:
                w.write_blocks(r, sensor=None, flowtype=None)
        w.close()
        assert w.records == 7300
    want_files = [os.path.relpath(f, tmp_path / "batches")
                  for f in all_files(tmp_path / "batches")]
    for how in ("blocks", "piped"):
        files = all_files(tmp_path / how)
        assert [os.path.relpath(f, tmp_path / how) for f in files] == want_files
        for f in files:
            want = read_file(f.replace(f"/{how}/", "/batches/"))
            assert_batches_equal(schema.to_v6(read_file(f)), schema.to_v6(want))
    # with the sensor and flowtype given
    w = archive.ArchiveWriter(str(tmp_path / "fixed"), CONFIG, {}, processes=True)
    with open(path, "rb") as f:
        w.write_blocks(FlowReader(f, path), sensor=4, flowtype=1)
    w.close()
    fixed = all_files(tmp_path / "fixed")
    assert len(fixed) == 3 and all("-S4_" in f for f in fixed)
    assert sum(len(read_file(f)["stime"]) for f in fixed) == 7300


def test_write_blocks_gathers_many_inputs_into_one_run(rng, tmp_path):
    """Small inputs share worker runs: a file whose records come from several inputs
    gets one block of them, in input order; batches given in between keep their place."""
    parts = [_mixed(rng, 500, i == 1) for i in range(4)]
    paths = [_stream(tmp_path, [b], name=f"in{i}.pf") for i, b in enumerate(parts)]
    w = archive.ArchiveWriter(str(tmp_path / "a"), CONFIG, {}, processes=True)
    for i, path in enumerate(paths):
        if i == 2:
            w.write(parts[2])  # decoded, between the blocks of inputs 1 and 3
            continue
        with open(path, "rb") as f:
            w.write_blocks(FlowReader(f, path))
    w.close()
    for f in all_files(tmp_path / "a"):
        ft, sensor, hour = CONFIG.parse_path(os.path.relpath(f, tmp_path / "a"))
        want = [schema.take(b, (b["flowtype"] == ft) & (b["sensor"] == sensor) &
                            (b["stime"] // archive.HOUR_MS * archive.HOUR_MS == hour))
                for b in parts]
        assert_batches_equal(schema.to_v6(read_file(f)),
                             schema.to_v6(schema.concat([schema.to_v6(b) for b in want])))
        blocks = 0
        with open(f, "rb") as fh:
            for pending in FlowReader(fh, f).blocks():
                pending.skip()
                blocks += 1
        # one block for inputs 0 and 1 (one run), one for input 2, one for input 3
        runs = [(0, 1), (2,), (3,)]
        assert blocks == sum(1 for r in runs if any(len(want[i]["stime"]) for i in r))


def test_write_blocks_appends_to_a_file_of_other_compression(rng, tmp_path):

    b = _mixed(rng, 2000, True)
    w = archive.ArchiveWriter(str(tmp_path / "a"), CONFIG, {}, compression="none")
    w.write(b)
    w.close()
    path = _stream(tmp_path, [b])
    w = archive.ArchiveWriter(str(tmp_path / "a"), CONFIG, {}, processes=True)
    with open(path, "rb") as f:
        w.write_blocks(FlowReader(f, path))
    w.close()
    for f in all_files(tmp_path / "a"):
        with open(f, "rb") as fh:
            assert FlowReader(fh, f).meta["compression"] == "none"
        got = read_file(f)
        half = len(got["stime"]) // 2
        assert_batches_equal(schema.take(got, slice(0, half)),
                             schema.take(got, slice(half, None)))
    assert sum(len(read_file(f)["stime"]) for f in all_files(tmp_path / "a")) == 4000


def test_write_blocks_reports_a_corrupt_block(rng, tmp_path, monkeypatch):
    """A flipped byte, or a file cut short: the error names the file (and the block or
    the truncation), and no file of the run that held it appears, whole or torn."""
    import pytest

    from flowtools.errors import FlowError
    monkeypatch.setattr(archive, "_TASK_RECORDS", 10**6)
    path = _stream(tmp_path, [_mixed(rng, 3000, False)])
    data = bytearray(open(path, "rb").read())
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    for name, bad, message in (("a", flipped, r"in\.pf: .*block"),
                               ("b", data[: len(data) * 2 // 3], r"in\.pf: truncated")):
        open(path, "wb").write(bytes(bad))
        w = archive.ArchiveWriter(str(tmp_path / name), CONFIG, {}, processes=True)
        with pytest.raises(FlowError, match=message):
            with open(path, "rb") as f:
                w.write_blocks(FlowReader(f, path))
            w.close()  # the workers' errors come out by then
        w.abort()
        assert all_files(tmp_path / name, temps=True) == []


def test_append_adds_segments(rng, tmp_path):
    path = str(tmp_path / "in" / "f")
    a, b = random_batch(rng, 100), random_batch(rng, 50, v6=True)
    archive.append_file(path, [a], {"sensor": 1})
    archive.append_file(path, [b], {"sensor": 1})
    with open(path, "rb") as f:
        r = FlowReader(f, path)
        out = list(r)
    assert len(r.segments) == 2
    assert_batches_equal(a, out[0])
    assert_batches_equal(b, out[1])


def test_append_drops_a_torn_tail(rng, tmp_path):
    path = str(tmp_path / "f")
    a = random_batch(rng, 100)
    archive.append_file(path, [a], {})
    with open(path, "ab") as f:
        f.write(b"B\x40\x00\x00\x00garbage from a crashed writer")
    assert_batches_equal(a, read_file(path))
    archive.append_file(path, [a], {})
    assert_batches_equal(schema.concat([a, a]), read_file(path))


WRITER = """
import sys, numpy as np
sys.path.insert(0, {root!r}); sys.path.insert(0, {tests!r})
from conftest import random_batch
from flowtools import archive, siteconf
cfg = siteconf.load({conf!r})
rng = np.random.default_rng(int(sys.argv[1]))
w_root = sys.argv[2]
i = 0
while True:
    b = random_batch(rng, 1000)
    b["stime"] = b["stime"] - b["stime"] % archive.HOUR_MS + rng.integers(0, 1000, 1000)
    b["sensor"][:] = i % 3
    b["flowtype"][:] = 0
    w = archive.ArchiveWriter(w_root, cfg, block_records=300)
    w.write(b)
    w.close()
    i += 1
"""


def test_killed_writer_never_leaves_a_torn_file(tmp_path):
    root = str(tmp_path / "arch")
    code = WRITER.format(root=ROOT, tests=os.path.join(ROOT, "tests"),
                         conf=os.path.join(ROOT, "etc", "silk.conf"))
    env = dict(os.environ, PYFLOW_FSYNC="0")
    rng = np.random.default_rng(9)
    for attempt in range(6):
        p = subprocess.Popen([sys.executable, "-c", code, str(attempt), root], env=env)
        time.sleep(0.4 + rng.random() * 0.8)
        p.send_signal(signal.SIGKILL)
        p.wait()
        for path in all_files(root):
            got = read_file(path)  # raises on any torn or corrupt file
            assert len(got["stime"]) % 1000 == 0  # only whole appends are visible
    assert all_files(root), "the writer never got to write anything"
    # a later writer clears the temporary files killed writers left behind
    w = archive.ArchiveWriter(root, CONFIG)
    for path in all_files(root):
        ft, sensor, hour = CONFIG.parse_path(os.path.relpath(path, root))
        b = random_batch(np.random.default_rng(1), 10)
        b["stime"][:] = hour
        b["sensor"][:] = sensor
        b["flowtype"][:] = ft
        w.write(b)
    w.close()
    assert all_files(root, temps=True) == all_files(root)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 400 * archive.HOUR_MS), st.integers(0, 255),
                          st.integers(0, 65535)), min_size=1, max_size=200),
       st.booleans())
def test_group_by_file_groups_records_by_hour_flowtype_sensor(rows, narrow):
    """Every record goes to exactly its (hour, flowtype, sensor) file, in input order."""
    if narrow:  # few cells: the 16-bit radix path
        rows = [(t % (3 * archive.HOUR_MS), f % 4, s % 5) for t, f, s in rows]
    stime, ft, sensor = (np.array(c) for c in zip(*rows, strict=True))
    batch = {"stime": stime.astype(np.int64), "flowtype": ft.astype(np.uint8),
             "sensor": sensor.astype(np.uint16)}
    want = {}
    for i, (t, f, s) in enumerate(rows):
        want.setdefault((t // archive.HOUR_MS * archive.HOUR_MS, f, s), []).append(i)
    keys, lens, order = archive.group_by_file(batch)
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    order = np.arange(len(rows)) if order is None else order
    ends = np.cumsum(lens)
    got = {key: order[end - n: end].tolist()
           for key, n, end in zip(keys, lens, ends, strict=True)}
    assert got == want
