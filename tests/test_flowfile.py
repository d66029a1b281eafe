"""Round trips and corruption handling of the pyflow flow format."""

import io
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, assert_batches_equal, random_batch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowtools import container, schema
from flowtools.errors import FlowError, FormatError
from flowtools.flowfile import FlowReader, FlowWriter


def write(batches, **kw):
    buf = io.BytesIO()
    w = FlowWriter(buf, {"history": ["test"]}, **kw)
    for b in batches:
        w.write(b)
    w.close()
    return buf.getvalue()


def read(data, threads=2, **kw):
    r = FlowReader(io.BytesIO(data), "mem", threads=threads)
    return list(r.batches(**kw)), r


@pytest.mark.parametrize("v6", [False, True])
@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_round_trip(rng, v6, compression):
    b = random_batch(rng, 5000, v6=v6, extremes=True)
    data = write([b], compression=compression, block_records=1024)
    out, r = read(data)
    assert len(out) == 5  # 1024-record blocks
    assert_batches_equal(b, schema.concat(out))
    assert r.segments == [{"records": 5000, "blocks": 5}]


def test_mixed_stream_keeps_ipv4_blocks_narrow(rng):
    a, b, c = random_batch(rng, 300), random_batch(rng, 200, v6=True), random_batch(rng, 100)
    data = write([a, b, c])
    out, _ = read(data)
    assert [schema.is_v6(x) for x in out] == [False, True, False]
    assert_batches_equal(a, out[0])
    assert_batches_equal(b, out[1])
    assert_batches_equal(c, out[2])


@pytest.mark.parametrize("share", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("columns", [None, ["sip", "dport"], ["dip", "nhip", "stime"]])
def test_decode_families_splits_like_split_families(rng, share, columns):
    """A block decoded straight into its IPv4 and IPv6 records (32-bit addresses for the
    former) equals the whole block decoded and then split."""
    from flowtools.schema import split_families
    b = random_batch(rng, 3000, v6=True)
    b["ipv6"] = rng.random(3000) < share
    for c in schema.IP_COLUMNS:     # IPv4 records hold ::ffff:a.b.c.d
        b[c][~b["ipv6"], 0] = 0
        b[c][~b["ipv6"], 1] = (b[c][~b["ipv6"], 1] & np.uint64(0xFFFFFFFF)) | \
            schema.V4_MAPPED_LO
    data = write([b], block_records=1000)
    r = FlowReader(io.BytesIO(data), "mem")
    seen = 0
    for pending in r.blocks():
        block = pending.load()
        got = block.decode_families(columns)
        want = split_families(block.decode(columns))
        assert len(got) == len(want) and len(got) in (1, 2)
        for g, w in zip(got, want, strict=True):
            assert g.keys() == w.keys()
            for k in g:
                assert g[k].dtype == w[k].dtype and np.array_equal(g[k], w[k]), k
        v4 = [g for g in got if "ipv6" not in g]
        assert all(g[c].ndim == 1 for g in v4 for c in g if c in schema.IP_COLUMNS)
        seen += sum(len(next(iter(g.values()))) for g in got)
    assert seen == 3000


def test_selected_columns_and_block_skipping(rng):
    b = random_batch(rng, 4000)
    b["stime"] = np.sort(b["stime"])
    data = write([b], block_records=1000)
    cut = int(b["stime"][2500])
    out, _ = read(data, columns=["stime", "sport"], keep=lambda s: s["stime"][1] >= cut)
    assert len(out) == 2 and set(out[0]) == {"stime", "sport"}
    np.testing.assert_array_equal(np.concatenate([x["sport"] for x in out]), b["sport"][2000:])


def test_sorted_time_uses_delta_encoding(rng):
    b = random_batch(rng, 10000)
    b["stime"] = np.sort(b["stime"])
    data = write([b])
    r = FlowReader(io.BytesIO(data), "mem")
    header = next(r.blocks()).header
    enc = {c[0]: c[1] for c in header["cols"]}
    assert enc["stime"] == "d"
    assert header["stats"]["stime"] == [int(b["stime"].min()), int(b["stime"].max())]


def test_constant_columns_cost_nothing(rng):
    b = random_batch(rng, 1000)
    b["sensor"][:] = 7
    data = write([b])
    r = FlowReader(io.BytesIO(data), "mem")
    header = next(r.blocks()).header
    assert [c for c in header["cols"] if c[0] == "sensor"][0][1:3] == ["c", 0]


def test_empty_stream():
    out, r = read(write([]))
    assert out == [] and r.segments == [{"records": 0, "blocks": 0}]


def test_truncated_everywhere(rng):
    data = write([random_batch(rng, 2000)], block_records=500)
    for cut in list(range(0, 200, 7)) + list(range(200, len(data), max(1, len(data) // 60))):
        with pytest.raises(FormatError):
            read(data[:cut])


def test_flipped_byte_is_detected(rng):
    data = bytearray(write([random_batch(rng, 2000)]))
    rng2 = np.random.default_rng(3)
    for pos in rng2.integers(container.META_AT, len(data), 40):
        bad = bytearray(data)
        bad[pos] ^= 0x5A
        with pytest.raises(FormatError):
            read(bytes(bad))


def test_wrong_magic_and_future_version():
    data = bytearray(write([]))
    bad = b"XXXX" + bytes(data[4:])
    with pytest.raises(FormatError, match="bad magic"):
        read(bad)
    data[8] = container.MAJOR + 1
    with pytest.raises(FormatError, match="newer than this pyflow"):
        read(bytes(data))


def test_committed_length_hides_uncommitted_tail(rng, tmp_path):
    b = random_batch(rng, 100)
    path = tmp_path / "f.pf"
    with open(path, "w+b") as f:
        w = FlowWriter(f)
        w.write(b)
        w.close()
        container.commit(f, f.tell(), None)
        f.seek(0, os.SEEK_END)
        f.write(b"B\x10\x00\x00\x00half-written-block")
    with open(path, "rb") as f:
        out = list(FlowReader(f, str(path)))
    assert_batches_equal(b, schema.concat(out))
    # shorter than the committed length: truncated
    data = path.read_bytes()
    committed = container.read_header(io.BytesIO(data), "x").committed[0]
    (tmp_path / "t.pf").write_bytes(data[: committed - 1])
    with open(tmp_path / "t.pf", "rb") as f, pytest.raises(FormatError, match="truncated"):
        list(FlowReader(f, "t.pf"))


def test_reads_from_a_pipe_block_by_block(rng):
    b = random_batch(rng, 3000)
    data = write([b], block_records=1000)
    code = (f"import sys; sys.path.insert(0, {ROOT!r})\n"
            "from flowtools.flowfile import FlowReader\n"
            "r = FlowReader(sys.stdin.buffer, 'stdin')\n"
            "print(sum(len(x['stime']) for x in r))\n")
    out = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True,
                         check=True)
    assert out.stdout.strip() == b"3000"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_reader_raises_only_format_errors(data):
    rng = np.random.default_rng(data.draw(st.integers(0, 1000)))
    base = bytearray(write([random_batch(rng, 300, v6=data.draw(st.booleans()))],
                           block_records=100))
    edits = data.draw(st.lists(st.tuples(st.integers(0, len(base) - 1), st.integers(0, 255)),
                               min_size=1, max_size=8))
    for pos, value in edits:
        base[pos] = value
    cut = data.draw(st.integers(0, len(base)))
    try:
        read(bytes(base[:cut]), threads=1)
    except FlowError:
        pass


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3000), st.booleans(), st.integers(1, 2000))
def test_round_trip_property(n, v6, block):
    b = random_batch(np.random.default_rng(n), n, v6=v6)
    out, _ = read(write([b], block_records=block))
    assert_batches_equal(b, schema.concat(out))


def test_header_struct_layout():
    data = write([])
    magic, major, minor, _, meta_len = struct.unpack_from("<8sBBHI", data)
    assert magic == container.MAGIC and major == 1 and meta_len > 0


def test_ipv6_block_keeps_ipv4_addresses_32_bit_and_odd_ones_exact(rng):
    b = random_batch(rng, 1000, v6=True)
    r = FlowReader(io.BytesIO(write([b])), "mem")
    header = next(r.blocks()).header
    subs = {c[0]: c[7] for c in header["cols"]}
    n6 = int(b["ipv6"].sum())
    assert subs["sip.v4"] == 1000 and subs["sip.hi"] == n6
    # an IPv4 record whose address is not ::ffff:a.b.c.d is still stored exactly
    b["nhip"][~b["ipv6"]] = [7, 9]
    out, _ = read(write([b]))
    assert_batches_equal(b, out[0])


@pytest.mark.parametrize("v6", [False, True])
def test_repeated_addresses_use_a_dictionary(rng, v6):
    b = random_batch(rng, 5000, v6=v6)
    few = random_batch(rng, 50, v6=v6)
    pick = rng.integers(0, 50, 5000)
    for name in ("sip", "dip"):
        b[name] = few[name][pick]
    if v6:
        b["ipv6"] = few["ipv6"][pick]
    data = write([b])
    header = next(FlowReader(io.BytesIO(data), "mem").blocks()).header
    assert "x" in {c[1] for c in header["cols"] if c[0].startswith("sip")}
    out, _ = read(data)
    assert_batches_equal(b, schema.concat(out))
    out, _ = read(data, columns=["dip"])
    np.testing.assert_array_equal(out[0]["dip"], b["dip"])


@pytest.mark.parametrize("v6", [False, True])
def test_large_blocks_compress_columns_separately(rng, v6):
    b = random_batch(rng, 40000, v6=v6)
    b["sip"] = b["sip"][rng.integers(0, 100, 40000)]
    data = write([b])
    header = next(FlowReader(io.BytesIO(data), "mem").blocks()).header
    assert "z" not in header and all(c[5] or c[1] == "c" for c in header["cols"])
    out, _ = read(data, columns=["sip", "bytes"])
    np.testing.assert_array_equal(out[0]["sip"], b["sip"])
    assert_batches_equal(b, schema.concat(read(data)[0]))
    small = write([schema.take(b, slice(0, 1000))])
    assert "z" in next(FlowReader(io.BytesIO(small), "mem").blocks()).header


def _fresh_block(data):
    reader = FlowReader(io.BytesIO(data), "mem")
    return next(reader.blocks()).load()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(schema.NAMES), min_size=1, max_size=5, unique=True),
       st.lists(st.sampled_from(schema.NAMES), min_size=1, max_size=5, unique=True),
       st.booleans())
def test_packed_block_decodes_any_columns_in_any_order(first, second, v6):
    """A small block's frame is decompressed only as far as the columns asked for need;
    any column subsets, asked for one after the other, give the full decode's values."""
    b = random_batch(np.random.default_rng(len(first) * 7 + len(second)), 3000, v6=v6)
    data = write([b])
    block = _fresh_block(data)
    assert "zc" in block.header
    for cols in (first, second):
        part = block.decode(cols)
        for c in cols:
            np.testing.assert_array_equal(part[c], b[c], err_msg=c)


def test_leading_columns_do_not_decompress_the_whole_frame(rng):
    b = random_batch(rng, 3000)
    block = _fresh_block(write([b]))
    block.decode(["protocol", "dport"])
    assert 0 < block.avail < block.header["z"] / 4
    block.decode(["bytes"])
    assert block.avail < block.header["z"]
    assert_batches_equal(block.decode(), b)
    assert block.avail == block.header["z"]


def test_packed_frame_end_offsets_are_checked(rng):
    """A corrupt list of column ends is a format error, never a wrong value."""
    b = random_batch(rng, 2000)
    block = _fresh_block(write([b]))
    block.header["zc"] = [x // 2 for x in block.header["zc"]]
    with pytest.raises(FormatError):
        block.decode(["sip"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=300),
       st.integers(1, 40))
def test_dictionary_is_np_unique(pool, n_per):
    """The encoder's sort-based dictionary gives np.unique's values and inverse."""
    from flowtools.flowfile import _dictionary
    col = np.array(pool * n_per, np.uint32)
    np.random.default_rng(len(pool)).shuffle(col)
    uniq, index = _dictionary(col, 1.0)
    want, inverse = np.unique(col, return_inverse=True)
    assert np.array_equal(uniq, want) and uniq.dtype == col.dtype
    assert np.array_equal(index, inverse.ravel())
    assert _dictionary(col, (len(want) - 1) / len(col))[0] is None
