"""decoding.decode_parts gives, for many blocks at once, the records Block.decode gives for
each block alone; what it cannot decode goes back to Block.decode and its errors."""

import io
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import assert_batches_equal
from hypothesis import given, settings
from hypothesis import strategies as st
from test_segments import _batch

from flowtools import decoding, flowfile, schema
from flowtools.errors import FormatError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "bin")


def _blocks(batches, compression="zstd", block_records=flowfile.DEFAULT_BLOCK_RECORDS):
    """The blocks of a flow file holding batches, one block each (more when a batch has
    more than block_records records)."""
    f = io.BytesIO()
    w = flowfile.FlowWriter(f, compression=compression, block_records=block_records)
    for b in batches:
        w.write(b)
        w.flush()
    w.close()
    f.seek(4)
    reader = flowfile.FlowReader(f, "t.pf", prefix=f.getvalue()[:4], threads=1)
    return [p.load() for p in reader.blocks()]


def _families(blocks, columns):
    parts = [f for b in blocks for f in b.decode_families(columns)]
    four = [p for p in parts if not schema.is_v6(p)]
    six = [p for p in parts if schema.is_v6(p)]
    return [schema.concat(x) for x in (four, six) if x]


PER_BLOCK = decoding._PER_BLOCK
_COLUMN_SETS = [None, ["sip"], ["stime", "bytes"], ["dip", "protocol", "dport", "nhip"],
                ["packets", "flags", "application"]]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.lists(st.tuples(st.integers(1, 300), st.booleans(),
                                                 st.booleans()), min_size=1, max_size=10),
       st.sampled_from(range(len(_COLUMN_SETS))), st.booleans(), st.sampled_from(["zstd", "none"]))
def test_many_blocks_decode_as_each_alone(seed, shapes, which, per_block, compression):
    """IPv4 and IPv6 blocks, canonical or not, in any order and any column selection,
    compressed or not; values finished block by block (as large blocks are) or all at
    once."""
    decoding._PER_BLOCK = 1 if per_block else PER_BLOCK
    try:
        batches = [_batch(seed + i, n, v6, odd and v6) for i, (n, v6, odd) in enumerate(shapes)]
        columns = _COLUMN_SETS[which]
        blocks = _blocks(batches, compression)
        want = schema.concat([b.decode(columns) for b in _blocks(batches, compression)])
        assert_batches_equal(decoding.decode_run(blocks, columns), want)
        got = decoding.decode_run_families(_blocks(batches, compression), columns)
        want = _families(_blocks(batches, compression), columns)
        assert len(got) == len(want)
        for a, b in zip(got, want, strict=True):
            assert_batches_equal(a, b)
    finally:
        decoding._PER_BLOCK = PER_BLOCK


def test_large_and_uncompressed_blocks_are_decoded_with_the_others():
    """Blocks whose columns are compressed one by one (of PACKED_BELOW records or more)
    or not at all (an uncompressed file's) join the runs of packed ones."""
    small = [_batch(s, 200, s % 2 == 0, False) for s in range(4)]
    big = _batch(9, flowfile.PACKED_BELOW + 10, True, False)
    blocks = _blocks(small[:2]) + _blocks([big]) + _blocks(small[2:]) + \
        _blocks(small[:1], compression="none")
    assert [b.packed for b in blocks] == [True, True, False, True, True, False]
    for columns in (None, ["sip", "bytes"]):
        want = schema.concat([b.decode(columns) for b in blocks])
        parts = decoding.decode_parts(blocks, columns)
        assert len(parts) == 1
        assert_batches_equal(parts[0], want)
    blocks[2].payload = bytes(len(blocks[2].payload))  # its checksums no longer match
    with pytest.raises(FormatError, match="t.pf: block 0: checksum mismatch in column"):
        decoding.check(blocks)


def test_constant_columns_stay_zero_stride():
    a = schema.make_batch(100, sensor=3, stime=np.arange(100) + 10**12)
    b = schema.make_batch(50, sensor=3, stime=np.arange(50) + 10**12)
    got = decoding.decode_run(_blocks([a, b]))
    assert got["sensor"].strides == (0,) and (got["sensor"] == 3).all()


def test_a_block_it_cannot_decode_is_reported_by_the_block_decoder():
    blocks = _blocks([_batch(s, 100, False, False) for s in range(3)])
    desc = blocks[1].index["dport"][0]
    desc[7] += 1  # a column count that does not match the block's
    with pytest.raises(FormatError, match=r"t\.pf: block 1: block lacks column dport"):
        decoding.decode_parts(blocks)


def test_an_index_past_its_dictionary_is_refused():
    batch = _batch(3, 300, False, False)
    batch["sip"] = np.resize(np.array([1, 2, 3], np.uint32), 300)
    blocks = _blocks([batch, batch])
    assert blocks[1].index["sip"][0][1] == "x"
    table = blocks[1].index["sip#d"][0]
    table[7] -= 1  # the dictionary says it has fewer values than the indices use
    with pytest.raises(FormatError, match=r"block 1"):
        decoding.decode_parts(blocks)


def test_decoded_runs_over_files_and_streams(tmp_path):
    batches = [_batch(s, 500, s % 3 == 0, False) for s in range(6)]
    paths = []
    for i, b in enumerate(batches):
        path = tmp_path / f"{i}.pf"
        with open(path, "wb") as f:
            w = flowfile.FlowWriter(f, compression="none" if i == 4 else "zstd")
            w.write(b)
            w.close()
        paths.append(path)
    readers = [flowfile.FlowReader(open(p, "rb"), str(p), threads=1) for p in paths]
    got = list(decoding.decoded_runs(readers, ["sip", "bytes"]))
    assert_batches_equal(schema.concat(got), schema.concat(
        [{k: b[k] for k in ("sip", "bytes", "ipv6") if k in b} for b in
         [schema.to_v6(x) for x in batches]]))
    assert all(r.f.closed for r in readers)


def _run(*args, **kw):
    return subprocess.run([sys.executable, os.path.join(BIN, args[0]), *args[1:]],
                          capture_output=True, **kw)


@pytest.fixture(scope="module")
def archive_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("arch")
    p = _run("pyflow-gen", f"--data-rootdir={root}", "--flows=20000", "--seed=4",
             "--start-date=2024/03/01", "--hours=3", "--sensors=S0,S1")
    assert p.returncode == 0, p.stderr
    files = sorted(str(f) for f in root.rglob("*_2024*"))
    assert len(files) >= 16  # pyflow-cat's workers read them
    return files


def test_cat_of_many_files_copies_their_blocks(archive_files, tmp_path):
    out = tmp_path / "all.pf"
    p = _run("pyflow-cat", *archive_files, f"--output-path={out}", "--print-filenames")
    assert p.returncode == 0, p.stderr
    counts = [int(line.rsplit(": ", 1)[1].split()[0])
              for line in p.stderr.decode().splitlines()]
    with open(out, "rb") as f:
        got = schema.concat(list(flowfile.FlowReader(f, str(out), threads=1).batches()))
    want = []
    for name in archive_files:
        with open(name, "rb") as f:
            want.append(schema.concat(list(flowfile.FlowReader(f, name).batches())))
    assert counts == [schema.nrecords(w) for w in want]
    assert_batches_equal(got, schema.concat(want))
    piped = _run("pyflow-cat", *archive_files)
    assert piped.returncode == 0
    stream = io.BytesIO(piped.stdout)
    stream.seek(4)
    assert_batches_equal(schema.concat(list(flowfile.FlowReader(
        stream, "stdout", prefix=piped.stdout[:4]).batches())), got)


def test_cat_of_many_files_refuses_a_corrupt_one(archive_files, tmp_path):
    files = list(archive_files)
    data = bytearray(open(files[7], "rb").read())
    data[-40] ^= 0xFF  # in the last block's payload
    bad = tmp_path / "bad.pf"
    bad.write_bytes(bytes(data))
    files[7] = str(bad)
    out = tmp_path / "out.pf"
    p = _run("pyflow-cat", *files, f"--output-path={out}")
    assert p.returncode == 1
    assert p.stderr.decode().startswith(f"pyflow-cat: {bad}: block ")
    assert len(p.stderr.decode().splitlines()) == 1
    assert not out.exists()


def test_cat_of_a_stream_longer_than_a_run(tmp_path):
    """A stream of more small blocks than one run holds is copied whole, in order."""
    batch = _batch(5, decoding.RUN_RECORDS + 5000, True, False)
    path = tmp_path / "in.pf"
    with open(path, "wb") as f:
        w = flowfile.FlowWriter(f, block_records=4096)
        w.write(batch)
        w.close()
    p = _run("pyflow-cat", input=path.read_bytes())
    assert p.returncode == 0, p.stderr
    stream = io.BytesIO(p.stdout)
    stream.seek(4)
    reader = flowfile.FlowReader(stream, "stdout", prefix=p.stdout[:4])
    got = schema.concat(list(reader.batches()))
    assert_batches_equal(got, batch)
    assert reader.block_no == -(-schema.nrecords(batch) // 4096)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32), st.integers(0, 3), st.integers(0, 60), st.integers(1, 7),
       st.one_of(st.integers(-3, 2**64 + 3), st.sampled_from(["o", "d", "x", "c", "z", None]),
                 st.just([1])), st.booleans())
def test_a_corrupt_descriptor_raises_format_error_or_decodes_as_alone(
        seed, which, col, field, value, big):
    """A block header whose column descriptor says anything (as a crafted file with good
    checksums could): the run either raises FormatError or gives what each block
    decoded alone gives."""
    batches = [_batch(seed + i, 40, i % 2 == 0, False) for i in range(3)]
    if big:
        batches[1] = _batch(seed, flowfile.PACKED_BELOW + 1, True, False)
    blocks = _blocks(batches)
    cols = blocks[which % 3].header["cols"]
    cols[col % len(cols)][field] = value

    def outcome(decode):
        try:
            return decode()
        except FormatError as exc:
            return str(exc)

    want = outcome(lambda: schema.concat([_decode_alone(b) for b in blocks]))
    for b in blocks:  # fresh state for the run decoder
        b.segments, b.avail, b._plan, b._dobj, b._index = [], 0, None, None, None
    got = outcome(lambda: decoding.decode_run(blocks))
    if isinstance(want, str):
        assert isinstance(got, str)
    else:
        assert not isinstance(got, str), got
        assert_batches_equal(got, want)


def _decode_alone(block):
    out = block.decode()
    block.segments, block.avail, block._plan, block._dobj, block._index = [], 0, None, None, None
    return out
